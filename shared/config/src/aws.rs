//! The AWS SDK configuration every AWS client of this crate is built from, so each service
//! treats endpoints, regions and credentials the same way.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

use crate::AwsTarget;

/// Region of a local engine when none is set: local engines accept any.
const LOCAL_REGION: &str = "us-east-1";

/// Loads the SDK configuration for `target`. Makes no network call: credentials resolve on
/// the first request.
///
/// On AWS: the default credential and region chains. With an endpoint override (a local
/// engine): the region defaults to `us-east-1`, and fixed local credentials stand in unless
/// AWS credentials are in the environment.
pub async fn sdk_config(
    target: &AwsTarget,
    retry: RetryConfig,
    timeout: TimeoutConfig,
) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(timeout);
    if let Some(endpoint) = &target.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let region = target
        .region
        .clone()
        .or_else(|| target.endpoint.as_ref().map(|_| LOCAL_REGION.to_owned()));
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    if target.endpoint.is_some() && !target.env_credentials {
        loader = loader.credentials_provider(Credentials::new(
            "local",
            "local",
            None,
            None,
            "jarvis-local-engine",
        ));
    }
    loader.load().await
}
