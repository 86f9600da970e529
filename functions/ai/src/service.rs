//! The AI service as this function uses it: its errors as HTTP answers and the Bedrock
//! client of the Lambda build.

use jarvis_ai::ProviderError;
use jarvis_ai::service::CallError;
use jarvis_http::ApiError;

/// The HTTP answer to a failed budgeted call.
pub fn call_error(err: CallError) -> ApiError {
    match err {
        CallError::UnknownAlias(alias) => {
            ApiError::NotFound(format!("no model alias {alias:?}").into())
        }
        CallError::Quota(exceeded) => ApiError::QuotaExceeded {
            period: exceeded.period.name(),
            resets_at: jarvis_http::time::rfc3339(exceeded.resets_at),
            retry_after_secs: u64::try_from(exceeded.resets_at - jarvis_store::now_secs())
                .unwrap_or(0)
                .max(1),
        },
        CallError::Provider(ProviderError::Refused { message, .. }) => ApiError::Unprocessable {
            field: None,
            message: format!("the model refused the request: {message}").into(),
        },
        CallError::Provider(ProviderError::Unsupported { what }) => ApiError::Unprocessable {
            field: Some("model".into()),
            message: format!("{what} is not supported by the models of this alias").into(),
        },
        CallError::Provider(other) => ApiError::Unavailable(Box::new(other)),
        CallError::Secrets(message) => {
            ApiError::Unavailable(format!("secrets unavailable: {message}").into())
        }
        CallError::Store(err) => err.into(),
        CallError::Task(message) => ApiError::Internal(message.into()),
    }
}

/// The Bedrock provider, through the function's IAM role. SDK retries are off: the chain
/// retries, with its own backoff and breaker.
#[cfg(feature = "bedrock")]
pub async fn bedrock() -> std::sync::Arc<dyn jarvis_ai::Provider> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    std::sync::Arc::new(jarvis_ai::bedrock::Bedrock::new(
        aws_sdk_bedrockruntime::Client::new(&config),
    ))
}
