//! [`Connections`] through API Gateway's management API (`POST`/`DELETE /@connections/{id}`
//! on `https://{api}.execute-api.{region}.amazonaws.com/{stage}`).

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::error::DisplayErrorContext;
use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use jarvis_config::AwsTarget;

use crate::{Connections, Delivery, MAX_MESSAGE_BYTES};

/// The management API of one WebSocket API stage.
#[derive(Debug, Clone)]
pub struct ApiGateway {
    client: Client,
}

impl ApiGateway {
    /// A client of the management endpoint `target.endpoint` (the stage's HTTPS URL).
    pub async fn new(target: &AwsTarget) -> Self {
        let sdk = jarvis_config::aws::sdk_config(
            target,
            RetryConfig::standard().with_max_attempts(3),
            TimeoutConfig::builder()
                .operation_attempt_timeout(std::time::Duration::from_secs(3))
                .build(),
        )
        .await;
        Self {
            client: Client::new(&sdk),
        }
    }
}

#[async_trait]
impl Connections for ApiGateway {
    async fn post(&self, connection: &str, data: &str) -> Result<(), Delivery> {
        if data.len() > MAX_MESSAGE_BYTES {
            return Err(Delivery::TooLarge);
        }
        let sent = self
            .client
            .post_to_connection()
            .connection_id(connection)
            .data(Blob::new(data.as_bytes()))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(err) => Err(match err.as_service_error() {
                Some(PostToConnectionError::GoneException(_)) => Delivery::Gone,
                Some(PostToConnectionError::PayloadTooLargeException(_)) => Delivery::TooLarge,
                _ => Delivery::Failed(DisplayErrorContext(&err).to_string()),
            }),
        }
    }

    async fn close(&self, connection: &str) -> Result<(), Delivery> {
        let closed = self
            .client
            .delete_connection()
            .connection_id(connection)
            .send()
            .await;
        match closed {
            Ok(_) => Ok(()),
            Err(err) => Err(match err.as_service_error() {
                Some(DeleteConnectionError::GoneException(_)) => Delivery::Gone,
                _ => Delivery::Failed(DisplayErrorContext(&err).to_string()),
            }),
        }
    }
}
