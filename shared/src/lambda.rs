//! The Lambda entry point every function's `main` calls: configuration, telemetry, state,
//! then the runtime loop serving the function's routes.

use axum::Router;

use crate::config::Config;
use crate::state::AppState;
use crate::telemetry;

/// The error a function's `main` returns when it cannot start or the runtime fails.
pub type Error = lambda_http::Error;

/// Serves `routes` on the Lambda runtime until the sandbox is shut down.
///
/// Startup failures (a missing variable, an unreachable store) are returned with a message
/// that names what to fix; the runtime reports them as an init error.
pub async fn serve(routes: Router<AppState>) -> Result<(), Error> {
    let config = Config::from_env()?;
    telemetry::init(&config)?;
    let state = AppState::from_config(config).await?;
    lambda_http::run(crate::http::app(routes, state)).await
}
