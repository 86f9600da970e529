//! The request id: generated per request, sent back as `x-request-id`, carried by every log
//! line of the request and by every error envelope.
//!
//! The id lives in a task-local for the duration of the request future, so code far from the
//! handler (the error mapping, a panic handler) can read it without threading it through.
//! So does the request's deadline on Lambda, which bounds how long a merge may keep retrying.

use std::future::Future;
use std::time::Instant;

/// The response header that carries the request id.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
    static DEADLINE: Option<Instant>;
}

/// A fresh request id.
pub fn generate() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Runs `future` with `id` as the current request id.
pub async fn scope<F: Future>(id: String, future: F) -> F::Output {
    REQUEST_ID.scope(id, future).await
}

/// Runs `future` with `id` as the current request id and `deadline` as the moment its
/// answer is due (the Lambda invocation's deadline).
pub async fn scope_with_deadline<F: Future>(
    id: String,
    deadline: Option<Instant>,
    future: F,
) -> F::Output {
    REQUEST_ID.scope(id, DEADLINE.scope(deadline, future)).await
}

/// When the current request's answer is due, if it has a deadline.
pub fn deadline() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok().flatten()
}

/// The id of the request being served, when called inside one.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}
