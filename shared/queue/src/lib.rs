//! Messages between functions on AWS: the sender of an SQS queue.
//!
//! The client is built on the first message, so a function that never sends starts as fast
//! as one without a queue.

use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use jarvis_config::AwsTarget;

/// The longest delay SQS gives a message, in seconds.
pub const MAX_DELAY_SECS: u64 = 900;

/// Longest a send may take, retries included.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
#[error("the queue refused the message: {0}")]
pub struct SendError(String);

/// Sends messages to one SQS queue.
#[derive(Debug)]
pub struct Sender {
    url: String,
    aws: AwsTarget,
    client: tokio::sync::OnceCell<aws_sdk_sqs::Client>,
}

impl Sender {
    /// The sender to the queue at `url`, where `aws` says SQS is.
    pub fn new(url: String, aws: AwsTarget) -> Self {
        Self {
            url,
            aws,
            client: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_sqs::Client {
        self.client
            .get_or_init(|| async {
                let timeout = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(SEND_TIMEOUT)
                    .build();
                let sdk = jarvis_config::aws::sdk_config(
                    &self.aws,
                    aws_sdk_sqs::config::retry::RetryConfig::standard(),
                    timeout,
                )
                .await;
                aws_sdk_sqs::Client::new(&sdk)
            })
            .await
    }

    /// Sends `body` as one message.
    pub async fn send(&self, body: String) -> Result<(), SendError> {
        self.send_delayed(body, Duration::ZERO).await
    }

    /// Sends `body` as one message that becomes visible after `delay` (at most SQS's 15
    /// minutes; longer delays are cut to that).
    pub async fn send_delayed(&self, body: String, delay: Duration) -> Result<(), SendError> {
        let delay_secs = i32::try_from(delay.as_secs().min(MAX_DELAY_SECS)).unwrap_or(0);
        self.client()
            .await
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(delay_secs)
            .send()
            .await
            .map_err(|e| SendError(DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}
