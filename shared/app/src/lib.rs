//! The application every Jarvis function serves.
//!
//! Owns what each request passes through and what each handler receives: the state built
//! from configuration ([`state`]), the layers in their order ([`app`], [`layers`]), the Lambda
//! entry point ([`lambda`]), logging ([`telemetry`]) and what is measured
//! ([`metrics`]). Changes when the request pipeline does. It is the top of the shared crates:
//! functions import it; no shared crate imports it.
//!
//! The crate map, lowest first (each may import only crates listed before it):
//!
//! `jarvis-crdt` → `jarvis-health` → `jarvis-config` → `jarvis-secrets` → `jarvis-store` →
//! `jarvis-http` → `jarvis-identity`, `jarvis-replication` → `jarvis-app` → functions.
#![deny(missing_docs)]

pub mod app;
pub mod lambda;
pub mod layers;
pub mod metrics;
pub mod state;
pub mod telemetry;

pub use app::app;
pub use state::AppState;
