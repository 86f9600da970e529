//! HTTP plumbing shared by every host: the layers every request passes through, the JSON
//! extractor whose rejections are [`ApiError`]s, and the fallbacks that keep unknown routes
//! and wrong methods inside the error envelope.
//!
//! [`app`] is the one function that turns function routers into a servable application; both
//! the Lambda entry point and `jarvis-local` call it, so the two hosts behave the same.

pub mod openapi;
pub mod request_id;
pub mod validate;

use std::any::Any;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use lambda_http::RequestExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tracing::Instrument;

use crate::auth::middleware as auth;
use crate::crdt::hlc::system_time_ms;
use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body extractor and response. A body that is not JSON, or not of the expected
/// shape, is a 400 whose envelope names the field at fault (`tags[2]`, `by`), so a malformed
/// body gets the same envelope as every other error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|media| {
                let media = media.trim();
                media.eq_ignore_ascii_case("application/json")
                    || (media.starts_with("application/") && media.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "expected Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::bad_request("the request body could not be read")
                }
            })?;
        // Every request body is a JSON object; serde would otherwise read an array into a
        // struct field by field.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        parse_json(&bytes).map(Json)
    }
}

/// One page of a listing, as every listing route answers it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Paged<T> {
    /// The items of this page, in the listing's order.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A path-parameter extractor whose rejections are [`ApiError`]s (400 in the envelope).
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

/// A query-string extractor whose rejections are [`ApiError`]s (400 in the envelope).
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

/// Parses a JSON document, naming the field at fault when it does not fit `T`.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request("the request body is not valid JSON");
        }
        // serde's message without its "at line 1 column 9" suffix.
        let message = inner.to_string();
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(text, _)| text)
            .to_owned();
        if path == "." {
            ApiError::bad_request(message)
        } else {
            ApiError::invalid_field(path, message)
        }
    })
}

/// Serves function routers as one application: fallbacks, body limit, panic guard, security
/// headers and the request context (request id, span, access log), over `state`.
///
/// In request order: request context → CORS → security headers → authentication → rate
/// limit → idempotency → panic guard → body limit → the route.
pub fn app(routes: Router<AppState>, state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let mut router = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::idempotent,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::rate_limit,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    for (name, value) in SECURITY_HEADERS {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    if let Some(cors) = cors(&state.config.security.cors_origins) {
        router = router.layer(cors);
    }
    router
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

/// CORS for the configured origins only; `None` (no CORS headers at all) when none are.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static(crate::auth::idempotency::HEADER),
            ])
            .expose_headers([
                HeaderName::from_static(request_id::HEADER),
                header::RETRY_AFTER,
                HeaderName::from_static(crate::auth::idempotency::REPLAYED_HEADER),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no route for this path".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panic_response(_payload: Box<dyn Any + Send + 'static>) -> Response {
    // The payload may hold request data; it is not logged or sent.
    ApiError::internal("handler panicked").into_response()
}

/// Headers every response carries unless a handler set its own.
const SECURITY_HEADERS: [(HeaderName, &str); 6] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
    (
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=63072000; includeSubDomains",
    ),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

/// Gives every request an id, a span carrying it (and the Lambda request id on Lambda), and
/// one access-log line when it finishes.
async fn request_context(request: Request, next: Next) -> Response {
    let id = request_id::generate();
    let lambda = request.lambda_context_ref();
    let lambda_request_id = lambda.map(|context| context.request_id.clone());
    let deadline = lambda.and_then(|context| {
        let left = context.deadline.checked_sub(system_time_ms())?;
        Some(Instant::now() + std::time::Duration::from_millis(left))
    });
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        lambda_request_id = tracing::field::Empty,
        user_id = tracing::field::Empty,
        method = %request.method(),
        path = %request.uri().path(),
    );
    if let Some(lambda_request_id) = &lambda_request_id {
        span.record("lambda_request_id", lambda_request_id.as_str());
    }
    let started = Instant::now();
    let mut response = request_id::scope_with_deadline(id.clone(), deadline, next.run(request))
        .instrument(span.clone())
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(request_id::HEADER), value);
    }
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request finished"
        )
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[allow(dead_code)]
        by: u64,
        #[allow(dead_code)]
        #[serde(default)]
        tags: Vec<String>,
    }

    fn field_of(err: &ApiError) -> Option<&str> {
        match err {
            ApiError::BadRequest { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let err = parse_json::<Body>(br#"{"by": -1}"#).expect_err("negative");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(field_of(&err), Some("by"));
        assert!(!err.to_string().contains("line"), "{err}");
    }

    #[test]
    fn a_nested_field_is_named_with_its_index() {
        let err = parse_json::<Body>(br#"{"by": 1, "tags": ["a", 7]}"#).expect_err("number tag");
        assert_eq!(field_of(&err), Some("tags[1]"));
    }

    #[test]
    fn malformed_json_is_a_400_without_a_field() {
        let err = parse_json::<Body>(b"{not json").expect_err("syntax");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(field_of(&err), None);
    }

    #[test]
    fn a_missing_field_is_reported() {
        let err = parse_json::<Body>(b"{}").expect_err("missing");
        assert!(err.to_string().contains("missing field `by`"), "{err}");
    }
}
