//! The state store: where documents live, behind a narrow trait with one implementation per
//! backend.
//!
//! The embedded libSQL backend ([`libsql::LibsqlStore`]) is the default and what
//! `jarvis-local` runs on. [`StoreHealth`] reports the store as the `store` component of
//! `/health`.

pub mod libsql;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::config::StoreConfig;
use crate::error::{ApiError, BoxError};
use crate::health::{Finding, HealthCheck, Status};

/// What can go wrong in the store, with the kinds callers act on kept apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or refused the operation; retrying later may work.
    #[error("store unavailable")]
    Unavailable(#[source] BoxError),
    /// The store could not be opened or prepared (bad path, failed migration…).
    #[error("store could not be opened: {context}")]
    Open {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) | StoreError::Open { .. } => {
                ApiError::Unavailable(Box::new(err))
            }
        }
    }
}

/// A document store.
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// The backend's name as reported by `/health`, e.g. `libsql`.
    fn backend(&self) -> &'static str;

    /// Proves the store answers, with the cheapest round trip the backend has.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Opens the store the configuration names.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    match config {
        StoreConfig::Libsql { path } => Ok(Arc::new(libsql::LibsqlStore::open(path).await?)),
    }
}

/// Latency above which the store is reported degraded.
pub const SLOW_STORE_MS: f64 = 250.0;

/// The `store` component of `/health`: reachable, and how fast.
#[derive(Debug, Clone)]
pub struct StoreHealth(pub Arc<dyn Store>);

#[async_trait]
impl HealthCheck for StoreHealth {
    fn name(&self) -> &'static str {
        "store"
    }

    async fn check(&self) -> Finding {
        let started = Instant::now();
        let result = self.0.ping().await;
        let ping_ms = started.elapsed().as_secs_f64() * 1000.0;
        let reachable = result.is_ok();
        let finding = match result {
            Ok(()) if ping_ms > SLOW_STORE_MS => Finding {
                status: Status::Degraded,
                message: Some(format!("slow: ping took {ping_ms:.0} ms")),
                details: serde_json::Map::new(),
            },
            Ok(()) => Finding::ok(),
            Err(err) => {
                tracing::warn!(error = %err, "store health check failed");
                Finding::down("store unreachable")
            }
        };
        finding
            .with_detail("backend", self.0.backend())
            .with_detail("reachable", reachable)
    }
}
