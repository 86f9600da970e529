//! The API error type and the one place where errors become HTTP responses.
//!
//! Every failure a client can see is an [`ApiError`]. Its [`IntoResponse`] picks the status
//! and writes the JSON envelope `{"error":{"code","message","request_id"}}`; the client gets a
//! short message, the log gets the whole cause chain. Internal causes never reach the body.

use std::borrow::Cow;
use std::error::Error as StdError;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use jarvis_secrets::SecretError;
use jarvis_store::StoreError;

use crate::request_id;

/// A boxed error cause, kept for the log only.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything a request can fail with, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a field is invalid (400).
    #[error("{message}")]
    BadRequest {
        /// The offending field, when one is to blame.
        field: Option<Cow<'static, str>>,
        /// What is wrong, for the client.
        message: Cow<'static, str>,
    },
    /// The request is well formed but cannot be processed as asked (422).
    #[error("{message}")]
    Unprocessable {
        /// The offending field, when one is to blame.
        field: Option<Cow<'static, str>>,
        /// What is wrong, for the client.
        message: Cow<'static, str>,
    },
    /// The body is not of a media type the route accepts (415).
    #[error("{0}")]
    UnsupportedMediaType(Cow<'static, str>),
    /// Credentials are missing or wrong (401).
    #[error("{0}")]
    Unauthorized(Cow<'static, str>),
    /// A sign-in step failed for a reason the client acts on (401), e.g. `totp_required`.
    #[error("{message}")]
    SignInFailed {
        /// Stable code: `invalid_credentials`, `totp_required`, `refresh_token_reused`…
        code: &'static str,
        /// What happened, for the client; never which part of the credentials was wrong.
        message: &'static str,
    },
    /// Authenticated, but not allowed to do this (403).
    #[error("{0}")]
    Forbidden(Cow<'static, str>),
    /// No resource at this path, or not one the caller may see (404).
    #[error("{0}")]
    NotFound(Cow<'static, str>),
    /// The path exists but not with this method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(Cow<'static, str>),
    /// The body is larger than the configured limit (413).
    #[error("request body too large")]
    PayloadTooLarge,
    /// Too many requests; retry after the given number of seconds (429).
    #[error("too many requests")]
    TooManyRequests {
        /// Seconds the client should wait.
        retry_after_secs: u64,
    },
    /// The caller's token budget for a period is spent (429), until `resets_at`.
    #[error("the {period} token budget is spent until {resets_at}")]
    QuotaExceeded {
        /// `day` or `month`.
        period: &'static str,
        /// When the budget starts again, RFC 3339.
        resets_at: String,
        /// Seconds until then.
        retry_after_secs: u64,
    },
    /// Too many failed sign-ins for this account; retry after the given seconds (429).
    #[error("too many failed sign-ins; try again later")]
    LockedOut {
        /// Seconds until the lockout ends.
        retry_after_secs: u64,
    },
    /// A capability is switched off on this deployment (503); the message says what turns
    /// it on.
    #[error("{0}")]
    NotConfigured(Cow<'static, str>),
    /// The request took longer than this deployment allows (503). A write may or may not
    /// have happened; retrying with the same `Idempotency-Key` is safe.
    #[error("the request took too long")]
    Timeout,
    /// A dependency is unavailable; retrying later may succeed (503).
    #[error("service unavailable")]
    Unavailable(#[source] BoxError),
    /// A fault on our side (500). The cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl ApiError {
    /// A 400 naming the field at fault.
    pub fn invalid_field(
        field: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::BadRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// A 422 naming the field at fault: it fits the schema, but a rule no schema can state
    /// refuses it.
    pub fn unprocessable_field(
        field: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::Unprocessable {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// A 400 not tied to one field.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::BadRequest {
            field: None,
            message: message.into(),
        }
    }

    /// A 422 for a page cursor of the right form that this API did not return (forged,
    /// from another listing, or past its end).
    pub fn unknown_cursor(field: &'static str) -> Self {
        Self::Unprocessable {
            field: Some(field.into()),
            message: "is not a cursor this API returned".into(),
        }
    }

    /// A 500 carrying its cause for the log.
    pub fn internal(cause: impl Into<BoxError>) -> Self {
        Self::Internal(cause.into())
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized(_) | Self::SignInFailed { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } | Self::LockedOut { .. } | Self::QuotaExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::NotConfigured(_) | Self::Timeout | Self::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable code clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "bad_request",
            Self::Unprocessable { .. } => "unprocessable",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Unauthorized(_) => "unauthorized",
            Self::SignInFailed { code, .. } => code,
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::LockedOut { .. } => "locked_out",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::NotConfigured(_) => "not_configured",
            Self::Timeout => "timeout",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Self::BadRequest { field, .. } | Self::Unprocessable { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    /// The error itself.
    pub error: ErrorBody,
}

/// The answers every route behind authentication may give besides its own, for the OpenAPI
/// document: `responses((status = 200, …), AuthRejections)`.
#[derive(utoipa::IntoResponses)]
pub enum AuthRejections {
    /// No or invalid credentials.
    #[response(status = 401)]
    Unauthenticated(ErrorEnvelope),
    /// The credential lacks the scope this route needs.
    #[response(status = 403)]
    Forbidden(ErrorEnvelope),
}

/// The inside of [`ErrorEnvelope`].
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `not_found`.
    pub code: String,
    /// Short human-readable message.
    pub message: String,
    /// The request id, also sent as the `x-request-id` header.
    pub request_id: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// When a spent budget starts again (RFC 3339), on `quota_exceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<String>,
}

/// Formats a cause chain for the log: `outer: inner: innermost`.
fn cause_chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

impl ApiError {
    /// Logs the error as its answer is sent: causes of 500 and 503 at warning or error
    /// level (never to the client), refusals at debug.
    pub fn log(&self) {
        match self {
            Self::Internal(cause) => {
                tracing::error!(error = %cause_chain(cause.as_ref()), "request failed")
            }
            Self::Unavailable(cause) => {
                tracing::warn!(error = %cause_chain(cause.as_ref()), "dependency unavailable")
            }
            Self::Timeout => tracing::warn!("request timed out"),
            other => tracing::debug!(code = other.code(), message = %other, "request rejected"),
        }
    }

    /// The error as the client sees it, in the envelope's body, for the request `request_id`.
    pub fn body(&self, request_id: String) -> ErrorBody {
        ErrorBody {
            code: self.code().to_owned(),
            message: self.to_string(),
            request_id,
            field: self.field().map(str::to_owned),
            resets_at: match self {
                Self::QuotaExceeded { resets_at, .. } => Some(resets_at.clone()),
                _ => None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        self.log();
        let body = ErrorEnvelope {
            error: self.body(request_id::current().unwrap_or_default()),
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, Self::Unauthorized(_) | Self::SignInFailed { .. }) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Self::TooManyRequests { retry_after_secs }
        | Self::LockedOut { retry_after_secs }
        | Self::QuotaExceeded {
            retry_after_secs, ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict | StoreError::ConflictExhausted { .. } => {
                ApiError::Conflict("the document is being changed concurrently; retry".into())
            }
            StoreError::Throttled => ApiError::TooManyRequests {
                retry_after_secs: 1,
            },
            StoreError::NotFound => ApiError::NotFound("not found".into()),
            StoreError::TooLarge { .. } => ApiError::PayloadTooLarge,
            // A listing cursor the client passed back: name the query field.
            StoreError::InvalidKey("cursor") => ApiError::unknown_cursor("cursor"),
            StoreError::InvalidKey(part) => ApiError::bad_request(format!("invalid {part} key")),
            StoreError::Corrupt(_) => ApiError::Internal(Box::new(err)),
            StoreError::Unavailable(_) | StoreError::Open { .. } => {
                ApiError::Unavailable(Box::new(err))
            }
        }
    }
}

impl From<SecretError> for ApiError {
    fn from(err: SecretError) -> Self {
        match err {
            SecretError::NotConfigured => ApiError::NotConfigured(
                "authentication needs a secret source (JARVIS_SECRET_ID)".into(),
            ),
            other => ApiError::Unavailable(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn body_of(err: ApiError) -> (StatusCode, serde_json::Value) {
        let response = err.into_response();
        let status = response.status();
        let bytes = to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let cause = std::io::Error::other("disk /secret/path failed");
        let (status, body) = body_of(ApiError::internal(cause)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal");
        assert_eq!(body["error"]["message"], "internal error");
        assert!(!body.to_string().contains("secret"));
    }

    #[tokio::test]
    async fn invalid_field_names_the_field() {
        let (status, body) = body_of(ApiError::invalid_field("by", "must be at least 1")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["field"], "by");
        assert_eq!(body["error"]["message"], "must be at least 1");
    }

    #[tokio::test]
    async fn rate_limit_carries_retry_after() {
        let response = ApiError::TooManyRequests {
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }

    #[tokio::test]
    async fn envelope_carries_the_current_request_id() {
        let (_, body) = request_id::scope(
            "req-123".into(),
            body_of(ApiError::NotFound("no such entry".into())),
        )
        .await;
        assert_eq!(body["error"]["request_id"], "req-123");
    }
}
