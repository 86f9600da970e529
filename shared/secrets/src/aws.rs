//! AWS Secrets Manager as a secret source: one `GetSecretValue` per refresh, the client built
//! on first use so a cold start makes no network call.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_secretsmanager::config::retry::RetryConfig;
use jarvis_config::AwsTarget;
use secrecy::SecretString;

use crate::{Fetch, SecretError};

#[derive(Debug)]
pub(crate) struct SecretsManager {
    secret_id: String,
    aws: AwsTarget,
    client: tokio::sync::OnceCell<aws_sdk_secretsmanager::Client>,
}

impl SecretsManager {
    pub(crate) fn new(secret_id: String, aws: AwsTarget) -> Self {
        Self {
            secret_id,
            aws,
            client: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_secretsmanager::Client {
        self.client
            .get_or_init(|| async {
                let timeout = aws_sdk_secretsmanager::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(5))
                    .build();
                let sdk =
                    jarvis_config::aws::sdk_config(&self.aws, RetryConfig::standard(), timeout)
                        .await;
                aws_sdk_secretsmanager::Client::new(&sdk)
            })
            .await
    }
}

#[async_trait]
impl Fetch for SecretsManager {
    fn name(&self) -> &'static str {
        "aws-secrets-manager"
    }

    async fn fetch(&self) -> Result<SecretString, SecretError> {
        let output = self
            .client()
            .await
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| SecretError::Unreachable {
                source_name: "aws-secrets-manager",
                cause: aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                    .to_string()
                    .into(),
            })?;
        output
            .secret_string
            .map(SecretString::from)
            .ok_or_else(|| SecretError::Invalid("the secret has no string value".into()))
    }
}
