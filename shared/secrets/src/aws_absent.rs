//! A build without the `aws` feature has no Secrets Manager client: naming one is reported
//! when the secrets are first needed, like an unreachable source.

use async_trait::async_trait;
use jarvis_config::AwsTarget;
use secrecy::SecretString;

use crate::{Fetch, SecretError};

#[derive(Debug)]
pub(crate) struct SecretsManager;

impl SecretsManager {
    pub(crate) fn new(_secret_id: String, _aws: AwsTarget) -> Self {
        Self
    }
}

#[async_trait]
impl Fetch for SecretsManager {
    fn name(&self) -> &'static str {
        "aws-secrets-manager"
    }

    async fn fetch(&self) -> Result<SecretString, SecretError> {
        Err(SecretError::Unreachable {
            source_name: "aws-secrets-manager",
            cause: "this build has no Secrets Manager client (cargo feature `aws`)".into(),
        })
    }
}
