//! The request id: generated per request, sent back as `x-request-id`, carried by every log
//! line of the request and by every error envelope.
//!
//! The id lives in a task-local for the duration of the request future, so code far from the
//! handler (the error mapping, a panic handler) can read it without threading it through.

use std::future::Future;

/// The response header that carries the request id.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// A fresh request id.
pub fn generate() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Runs `future` with `id` as the current request id.
pub async fn scope<F: Future>(id: String, future: F) -> F::Output {
    REQUEST_ID.scope(id, future).await
}

/// The id of the request being served, when called inside one.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}
