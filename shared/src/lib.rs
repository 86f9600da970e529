//! The common crate of Jarvis.
//!
//! Everything two functions need lives here: typed configuration ([`config`]), telemetry
//! ([`telemetry`]), the error type and its single mapping to HTTP ([`error`]), the HTTP
//! plumbing shared by every host ([`http`]), component health ([`health`]), the state store
//! ([`store`]), the conflict-free replicated data types the store merges ([`crdt`]), this
//! replica's clock ([`clock`]), the local data directory ([`datadir`]), AWS client configuration ([`aws`]), secrets ([`secrets`]), identity and request security
//! ([`auth`]), who owns a document ([`principal`]), what a handler receives ([`state`]) and
//! the Lambda entry point ([`lambda`]).
#![deny(missing_docs)]

pub mod auth;
pub mod aws;
pub mod clock;
pub mod config;
pub mod crdt;
pub mod datadir;
pub mod error;
pub mod health;
pub mod http;
pub mod lambda;
pub mod principal;
pub mod secrets;
pub mod state;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod testing;
pub mod time;

pub use config::Config;
pub use error::ApiError;
pub use state::AppState;
