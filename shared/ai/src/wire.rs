//! What every HTTP provider does with an answer's status: success goes on, a failure becomes
//! a typed [`ProviderError`] with the provider's own message and never the credentials.

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::ProviderError;

/// Sends `request`; a failed status is the error it stands for. Providers put their
/// message in `{"error":{"message"}}`, which every adapter here reads.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ProviderError> {
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = retry_after(response.headers());
    let message = response
        .json::<Value>()
        .await
        .ok()
        .and_then(|body| body["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    Err(match status.as_u16() {
        429 => ProviderError::RateLimited {
            retry_after_secs: retry_after,
        },
        status @ 500..=599 => ProviderError::Failed { status },
        status => ProviderError::Refused { status, message },
    })
}

/// `Retry-After` in seconds, when it is a number of seconds.
fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

/// A transport error, without the URL (which may carry a key in a query string).
pub(crate) fn unreachable(err: reqwest::Error) -> ProviderError {
    ProviderError::Unreachable {
        message: err.without_url().to_string(),
    }
}

/// An API key as a header value, marked sensitive so no debug output shows it.
pub(crate) fn key_header(key: &SecretString) -> Result<HeaderValue, ProviderError> {
    let mut value =
        HeaderValue::from_str(key.expose_secret()).map_err(|_| ProviderError::Refused {
            status: 0,
            message: "the API key is not a valid header value".into(),
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A sampling parameter as JSON, written as its shortest decimal (`0.3`, not the
/// `0.30000001192092896` an `f32` widened to `f64` would give).
pub(crate) fn decimal(value: f32) -> serde_json::Value {
    value
        .to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// An embedding: a JSON array of numbers as `f32`s; `None` when it is anything else.
pub(crate) fn vector(value: &serde_json::Value) -> Option<Vec<f32>> {
    value
        .as_array()?
        .iter()
        // Embeddings are f32 at every provider; the JSON number is its decimal form.
        .map(|x| x.as_f64().map(|x| x as f32))
        .collect()
}
