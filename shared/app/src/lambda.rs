//! The Lambda entry point every function's `main` calls: configuration, telemetry, metrics,
//! state, then the runtime loop serving the function's routes (flushing metrics after each
//! invocation).

use axum::Router;

use crate::state::AppState;
use crate::telemetry;
use jarvis_config::Config;
pub use metrics_cloudwatch_embedded::Collector;

/// The error a function's `main` returns when it cannot start or the runtime fails.
pub type Error = lambda_http::Error;

/// Serves `routes` on the Lambda runtime until the sandbox is shut down.
///
/// Startup failures (a missing variable, an unreachable store) are returned with a message
/// that names what to fix; the runtime reports them as an init error.
pub async fn serve(routes: Router<AppState>) -> Result<(), Error> {
    serve_with(async |_| routes).await
}

/// [`serve`], with routes built from the state once it exists: a function that keeps
/// services of its own (clients, health components) sets them up in `build`.
pub async fn serve_with(
    build: impl AsyncFnOnce(&mut AppState) -> Router<AppState>,
) -> Result<(), Error> {
    let config = Config::from_env()?;
    telemetry::init(&config)?;
    let collector = crate::metrics::lambda_collector(&config.service);
    let app = build_app(config, build).await?;
    match collector {
        Some(collector) => {
            metrics_cloudwatch_embedded::lambda::service::run_http(collector, app).await
        }
        None => lambda_http::run(app).await,
    }
}

async fn build_app(
    config: Config,
    build: impl AsyncFnOnce(&mut AppState) -> Router<AppState>,
) -> Result<Router, Error> {
    let mut state = AppState::from_config(config).await?;
    let routes = build(&mut state).await;
    Ok(crate::app(routes, state))
}

/// What a function that serves events other than HTTP requests starts from: the state, built
/// from the environment with telemetry set up, and the metrics collector that flushes after
/// each invocation (when metrics are on).
pub async fn start() -> Result<(AppState, Option<&'static Collector>), Error> {
    let config = Config::from_env()?;
    telemetry::init(&config)?;
    let collector = crate::metrics::lambda_collector(&config.service);
    Ok((AppState::from_config(config).await?, collector))
}

/// Serves events of type `E` with `handle` until the sandbox is shut down, flushing metrics
/// after each invocation when `collector` is given.
pub async fn run_events<E, R, F, Fut>(
    collector: Option<&'static Collector>,
    handle: F,
) -> Result<(), Error>
where
    E: serde::de::DeserializeOwned,
    R: serde::Serialize,
    F: FnMut(lambda_runtime::LambdaEvent<E>) -> Fut,
    Fut: Future<Output = Result<R, Error>>,
{
    match collector {
        Some(collector) => {
            metrics_cloudwatch_embedded::lambda::handler::run(collector, handle).await
        }
        None => lambda_runtime::run(lambda_runtime::service_fn(handle)).await,
    }
}

/// [`serve_with`] in the runtime's response-streaming mode (a function URL with
/// `InvokeMode: RESPONSE_STREAM`): bodies reach the client as they are produced, so
/// Server-Sent Events stream. Metrics are logged through `tracing` rather than flushed as
/// EMF per invocation: a streamed invocation ends after its handler has returned.
pub async fn serve_streaming_with(
    build: impl AsyncFnOnce(&mut AppState) -> Router<AppState>,
) -> Result<(), Error> {
    let config = Config::from_env()?;
    telemetry::init(&config)?;
    let app = build_app(config, build).await?;
    lambda_http::run_with_streaming_response(app).await
}
