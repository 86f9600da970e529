//! Realtime delivery: who is connected to the WebSocket API, which of their topics each
//! connection listens to, and how a message reaches them.
//!
//! - [`Registry`]: the connections of this deployment, in the store (replica-local, expiring
//!   with the connection's maximum lifetime).
//! - [`Connections`]: how bytes reach one connection — API Gateway's management API on AWS
//!   ([`apigateway::ApiGateway`], feature `aws`), the local gateway's own sockets in
//!   `jarvis-local`.
//! - [`Notifier`]: publishes a message on one of a user's [`Topic`]s to every connection of
//!   theirs subscribed to it; a connection the gateway says is gone is forgotten.
//!
//! Owns the connection records and the topic names; changes when either does. May import
//! the store, identity and HTTP error types; never a function or a provider.

#![deny(missing_docs)]

#[cfg(feature = "aws")]
pub mod apigateway;
pub mod registry;
pub mod topic;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use futures_util::future::join_all;

pub use registry::{Connection, Registry};
pub use topic::Topic;

/// The largest message API Gateway carries over a WebSocket, either way (128 KiB).
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// Why a message did not reach a connection.
#[derive(Debug, thiserror::Error)]
pub enum Delivery {
    /// The connection is closed (API Gateway's 410 Gone): forget it.
    #[error("the connection is gone")]
    Gone,
    /// The message is larger than a WebSocket message may be.
    #[error("the message is larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    /// The gateway could not be reached or refused; the connection may still be there.
    #[error("delivery failed: {0}")]
    Failed(String),
}

/// Sends to one WebSocket connection.
#[async_trait]
pub trait Connections: Send + Sync + std::fmt::Debug {
    /// Sends `data` to the connection as one text message.
    async fn post(&self, connection: &str, data: &str) -> Result<(), Delivery>;

    /// Closes the connection (its `$disconnect` follows).
    async fn close(&self, connection: &str) -> Result<(), Delivery>;
}

/// What one publish reached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Connections the message was delivered to.
    pub delivered: usize,
    /// Connections found gone, and forgotten.
    pub gone: usize,
    /// Connections that could not be reached this time.
    pub failed: usize,
}

/// Publishes messages on users' topics to their connections.
///
/// A host attaches how messages reach connections once it has a WebSocket API; until then
/// (and on hosts without one) publishing reaches nobody and costs nothing.
#[derive(Debug)]
pub struct Notifier {
    registry: Registry,
    connections: OnceLock<Arc<dyn Connections>>,
}

impl Notifier {
    /// A notifier over `registry`, delivering nothing until [`attach`](Self::attach)ed.
    pub fn new(registry: Registry) -> Self {
        Self {
            registry,
            connections: OnceLock::new(),
        }
    }

    /// A notifier delivering through `connections` from the start.
    pub fn delivering(registry: Registry, connections: Arc<dyn Connections>) -> Self {
        let notifier = Self::new(registry);
        notifier.attach(connections);
        notifier
    }

    /// Delivers through `connections` from now on; answers `false` (and changes nothing)
    /// when the notifier already delivers.
    pub fn attach(&self, connections: Arc<dyn Connections>) -> bool {
        self.connections.set(connections).is_ok()
    }

    /// The connection records.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// How messages reach connections, once attached.
    pub fn connections(&self) -> Option<&Arc<dyn Connections>> {
        self.connections.get()
    }

    /// Sends `message` to every connection of `user` subscribed to `topic`, at once. Never
    /// fails the caller: a change is made whether or not anyone hears of it, so trouble is
    /// logged and counted.
    pub async fn publish(
        &self,
        user: &str,
        topic: &Topic,
        message: &serde_json::Value,
    ) -> Published {
        let Some(connections) = self.connections.get() else {
            return Published::default();
        };
        let listening = match self.registry.of_user(user).await {
            Ok(all) => all,
            Err(err) => {
                tracing::warn!(error = %err, "connections could not be listed; a change was not published");
                return Published::default();
            }
        };
        let name = topic.name();
        let data = &message.to_string();
        let subscribed = listening
            .iter()
            .filter(|c| c.topics.contains(&name))
            .map(|c| async move { (c, connections.post(&c.id, data).await) });
        let mut published = Published::default();
        for (connection, outcome) in join_all(subscribed).await {
            let counted = match &outcome {
                Ok(()) => "delivered",
                Err(Delivery::Gone) => "gone",
                Err(_) => "failed",
            };
            metrics::counter!("ws_deliveries_total", "outcome" => counted).increment(1);
            match outcome {
                Ok(()) => published.delivered += 1,
                Err(Delivery::Gone) => {
                    published.gone += 1;
                    if let Err(err) = self.registry.remove(&connection.id).await {
                        tracing::warn!(error = %err, "a gone connection could not be forgotten");
                    }
                }
                Err(err) => {
                    published.failed += 1;
                    tracing::warn!(error = %err, "a change did not reach a connection");
                }
            }
        }
        published
    }
}
