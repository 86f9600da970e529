//! Logging: JSON lines on Lambda (each carrying our request id and the Lambda request id
//! from the request span), readable lines locally.

use std::io::IsTerminal;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::state::StartupError;
use jarvis_config::{Config, LogFormat};

/// Installs the global `tracing` subscriber described by the configuration.
///
/// The filter is a list of `target=level` directives and a default level
/// (`jarvis_store=debug,info`): `tracing-subscriber`'s `Targets`, which needs no regex engine
/// (`EnvFilter`'s span and field matching would link one into every bootstrap).
///
/// Fails, rather than panicking, when the filter does not parse or a subscriber is already
/// installed.
pub fn init(config: &Config) -> Result<(), StartupError> {
    let filter: Targets = config
        .log_filter
        .parse()
        .map_err(|e| StartupError::Telemetry(format!("JARVIS_LOG: {e}")))?;
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr);
    let result = match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_target(true)
            .finish()
            .with(filter)
            .try_init(),
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .compact()
            .finish()
            .with(filter)
            .try_init(),
    };
    result.map_err(|e| StartupError::Telemetry(e.to_string()))
}
