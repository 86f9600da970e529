//! The one function that turns function routers into a servable application; both the Lambda
//! entry point and `jarvis-local` call it, so the two hosts behave the same.

use std::any::Any;
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use jarvis_crdt::hlc::system_time_ms;
use jarvis_http::ApiError;
use jarvis_http::request_id;
use lambda_http::RequestExt;
use tower::ServiceBuilder;
use tower::timeout::TimeoutLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::PropagateRequestIdLayer;
use tower_http::set_header::{SetRequestHeaderLayer, SetResponseHeaderLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::layers as auth;
use crate::state::{AppState, Deadline};

/// Serves function routers as one application: fallbacks, body limit, panic guard, timeout,
/// security headers and the request context (request id, span, access log, metrics), over
/// `state`.
///
/// In request order: request id → span and access log → request context → CORS → security
/// headers → timeout → authentication → rate limit → idempotency → panic guard → body
/// limit → the route.
pub fn app(routes: Router<AppState>, state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let timeout = state.config.request_timeout;
    let request_id = HeaderName::from_static(request_id::HEADER);
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
        ))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    ApiError::Timeout
                }))
                .layer(TimeoutLayer::new(timeout)),
        );
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
        .layer(
            ServiceBuilder::new()
                // The id is always this server's own: a client's `x-request-id` is replaced,
                // so no log line or envelope carries an id the client chose.
                .layer(SetRequestHeaderLayer::overriding(
                    request_id.clone(),
                    |_: &Request| HeaderValue::from_str(&request_id::generate()).ok(),
                ))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_request(())
                        .on_response(access_log)
                        .on_failure(()),
                ),
        )
        .with_state(state)
}

/// The span of one request: its id, the Lambda request id on Lambda, the user once known.
fn request_span(request: &Request) -> Span {
    let id = request
        .headers()
        .get(request_id::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        lambda_request_id = tracing::field::Empty,
        user_id = tracing::field::Empty,
        method = %request.method(),
        path = %request.uri().path(),
    );
    if let Some(context) = request.lambda_context_ref() {
        span.record("lambda_request_id", context.request_id.as_str());
    }
    span
}

/// One access-log line per request, inside its span.
fn access_log(response: &Response, latency: Duration, _span: &Span) {
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "request finished"
    );
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
                HeaderName::from_static(jarvis_identity::idempotency::HEADER),
            ])
            .expose_headers([
                HeaderName::from_static(request_id::HEADER),
                header::RETRY_AFTER,
                HeaderName::from_static(jarvis_identity::idempotency::REPLAYED_HEADER),
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

/// Makes the request id readable by the error envelope, hands the Lambda deadline on as a
/// value, and counts the request.
async fn request_context(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(request_id::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let deadline = request.lambda_context_ref().and_then(|context| {
        let left = context.deadline.checked_sub(system_time_ms())?;
        Some(Instant::now() + Duration::from_millis(left))
    });
    if let Some(due) = deadline {
        request.extensions_mut().insert(Deadline(due));
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = request_id::scope(id, next.run(request)).await;
    let status = response.status().as_u16();
    metrics::counter!(
        "http_requests_total",
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
