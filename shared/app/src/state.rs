//! What every handler receives: the configuration and the services built from it, each
//! behind a trait so tests can substitute their own.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use jarvis_config::{Config, ConfigError};
use jarvis_crdt::ReplicaId;
use jarvis_health::{HealthCheck, HealthRegistry};
use jarvis_identity::limits::RateLimiter;
use jarvis_realtime::{Notifier, Registry};
use jarvis_replication::{SyncHealth, Syncer};
use jarvis_secrets::{self as secrets, SecretHealth, SecretSource};
use jarvis_store::clock::Clock;
use jarvis_store::{self as store, Store, StoreError, StoreHealth};

/// Why the process could not start. Each variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A configuration variable is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Logging could not be set up.
    #[error("telemetry: {0}")]
    Telemetry(String),
}

/// Shared state of a Jarvis application, cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The configuration the process started with.
    pub config: Arc<Config>,
    /// The document store.
    pub store: Arc<dyn Store>,
    /// The components `/health` reports on.
    pub health: Arc<HealthRegistry>,
    /// This deployment's replica id: the actor of every CRDT change made here.
    pub replica: ReplicaId,
    /// Timestamps for last-writer-wins writes.
    pub clock: Arc<Clock>,
    /// Sync with peer deployments.
    pub sync: Arc<Syncer>,
    /// Signing keys and the master key, fetched lazily and cached.
    pub secrets: Arc<dyn SecretSource>,
    /// Rate-limit tokens this process has leased from the store.
    pub limiter: Arc<RateLimiter>,
    /// Publishes changes to the WebSocket connections of their users (nobody hears of them
    /// on a host without a WebSocket API).
    pub realtime: Arc<Notifier>,
}

impl AppState {
    /// Builds the state from configuration: opens the store and registers its health check.
    pub async fn from_config(config: Config) -> Result<Self, StartupError> {
        let store = store::open(&config.store).await?;
        let state = Self::with_store(config, store);
        #[cfg(feature = "realtime-aws")]
        if let Some(endpoint) = &state.config.realtime.endpoint {
            let target = jarvis_config::AwsTarget {
                endpoint: Some(endpoint.clone()),
                ..state.config.realtime.aws.clone()
            };
            let gateway = jarvis_realtime::apigateway::ApiGateway::new(&target).await;
            state.realtime.attach(Arc::new(gateway));
        }
        Ok(state)
    }

    /// Adds a component to the `/health` of this state (and of the apps built from it after).
    pub fn register_health(&mut self, check: Arc<dyn HealthCheck>) {
        let mut health = (*self.health).clone();
        health.register(check);
        self.health = Arc::new(health);
    }

    /// Builds the state around an already opened store.
    pub fn with_store(config: Config, store: Arc<dyn Store>) -> Self {
        let secrets = secrets::source(&config.secrets);
        let mut health = HealthRegistry::default();
        health.register(Arc::new(StoreHealth(Arc::clone(&store))));
        health.register(Arc::new(SecretHealth(Arc::clone(&secrets))));
        health.register(Arc::new(SyncHealth(Arc::clone(&store))));
        let replica = ReplicaId::from_name(&config.replica_id);
        let sync = Arc::new(Syncer::new(
            config.replica_id.clone(),
            Arc::clone(&store),
            config.sync.clone(),
            Arc::clone(&secrets),
        ));
        let clock = Arc::new(Clock::new(replica));
        let registry = Registry::new(
            Arc::clone(&store),
            replica,
            Arc::clone(&clock),
            config.realtime.max_lifetime,
        );
        Self {
            sync,
            config: Arc::new(config),
            store,
            health: Arc::new(health),
            replica,
            clock,
            secrets,
            limiter: Arc::new(RateLimiter::default()),
            realtime: Arc::new(Notifier::new(registry)),
        }
    }
}

/// When the answer to the current request is due (on Lambda, the invocation's deadline): a
/// request extension the request context sets.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

impl AppState {
    /// Where domain services of this deployment work: its store, replica and clock.
    pub fn site(&self) -> jarvis_store::Site {
        jarvis_store::Site {
            store: Arc::clone(&self.store),
            replica: self.replica,
            clock: Arc::clone(&self.clock),
        }
    }

    /// This state for one request: its store stops retrying merges in time to answer by `due`.
    pub fn until(&self, due: Option<Instant>) -> Self {
        let mut state = self.clone();
        state.store = store::deadline::with_deadline(Arc::clone(&self.store), due);
        state
    }
}

/// Handlers take the state as an extractor so that it carries the request's deadline.
impl FromRequestParts<AppState> for AppState {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        Ok(state.until(parts.extensions.get::<Deadline>().map(|d| d.0)))
    }
}
