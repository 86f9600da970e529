//! Logging: JSON lines on Lambda (each carrying our request id and the Lambda request id
//! from the request span), readable lines locally.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::state::StartupError;
use jarvis_config::{Config, LogFormat};

/// Installs the global `tracing` subscriber described by the configuration.
///
/// Fails, rather than panicking, when the filter does not parse or a subscriber is already
/// installed.
pub fn init(config: &Config) -> Result<(), StartupError> {
    let filter = EnvFilter::try_new(&config.log_filter)
        .map_err(|e| StartupError::Telemetry(format!("JARVIS_LOG: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_target(true)
            .try_init(),
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .compact()
            .try_init(),
    };
    result.map_err(|e| StartupError::Telemetry(e.to_string()))
}
