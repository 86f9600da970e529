//! HTTP plumbing shared by every host: the layers every request passes through, the JSON
//! extractor whose rejections are [`ApiError`]s, and the fallbacks that keep unknown routes
//! and wrong methods inside the error envelope.
//!
//! [`app`] is the one function that turns function routers into a servable application; both
//! the Lambda entry point and `jarvis-local` call it, so the two hosts behave the same.

pub mod request_id;

use std::any::Any;
use std::time::Instant;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use lambda_http::RequestExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tracing::Instrument;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body extractor and response whose rejections are [`ApiError`]s, so a malformed body
/// gets the same envelope as every other error.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())
            }
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable {
                field: None,
                message: rejection.body_text().into(),
            },
            _ => ApiError::bad_request(rejection.body_text()),
        }
    }
}

/// Serves function routers as one application: fallbacks, body limit, panic guard, security
/// headers and the request context (request id, span, access log), over `state`.
pub fn app(routes: Router<AppState>, state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let mut router = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(panic_response));
    for (name, value) in SECURITY_HEADERS {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    router
        .layer(middleware::from_fn(request_context))
        .with_state(state)
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
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// Gives every request an id, a span carrying it (and the Lambda request id on Lambda), and
/// one access-log line when it finishes.
async fn request_context(request: Request, next: Next) -> Response {
    let id = request_id::generate();
    let lambda_request_id = request
        .lambda_context_ref()
        .map(|context| context.request_id.clone());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        lambda_request_id = tracing::field::Empty,
        method = %request.method(),
        path = %request.uri().path(),
    );
    if let Some(lambda_request_id) = &lambda_request_id {
        span.record("lambda_request_id", lambda_request_id.as_str());
    }
    let started = Instant::now();
    let mut response = request_id::scope(id.clone(), next.run(request))
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
