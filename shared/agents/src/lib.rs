//! Durable agent runs: a goal worked toward in steps — model calls and tool calls — each
//! recorded in a journal as it completes, so a run survives the end of the worker driving
//! it (a Lambda's timeout, a crash) and resumes where it was.
//!
//! The operations are named after AWS's durable-execution model, so a move to Lambda
//! durable functions is mechanical: each model call and each tool call is a **step** (its
//! result checkpointed in the journal; replayed, never repeated, once recorded); a run that
//! needs the user's approval **waits for a callback** (no worker held) until approved,
//! denied or timed out; a run that yields at its invocation's deadline is **invoked again**
//! from the queue.
//!
//! | document | key | kind |
//! | --- | --- | --- |
//! | run | `agent#<user>` / `run#<id>` | [`Entity`](jarvis_crdt::Entity): the request, its delegation, status, result; levels `invocations`, `retries`; marks `cancel`, `finished` |
//! | step | `agent#<user>#<run>` / `step#<seq>` | [`Entity`](jarvis_crdt::Entity): kind, status, the reply, call or decision; level `done` |
//! | queue entry | `~agentq` / `<run>` | [`Entity`](jarvis_crdt::Entity): the run's user, when it may be driven, the lease of the worker driving it (replica-local) |
//!
//! - [`run`]: the run record and its request.
//! - [`journal`]: steps, written once each.
//! - [`queue`]: runs waiting for a worker, and the lease one worker drives a run under.
//! - [`tools`]: what an agent may call, with the JSON Schema of its input, the scope it
//!   needs and whether it has side effects; the built-in ones.
//! - [`service`]: starting, reading, cancelling and approving runs, and driving them.
//!
//! Owns these documents and how a run proceeds; changes when either does. Imports the
//! provider layer, automations (the reminder tool), identity and realtime (progress).
#![deny(missing_docs)]

pub mod journal;
pub mod queue;
pub mod run;
pub mod service;
pub mod tools;

pub use run::{RunRequest, RunStatus};
pub use service::{Agents, Invoked};
pub use tools::{Effect, Tool, ToolCall, ToolError, Toolbox};

use jarvis_store::StoreError;

/// Why an agent request was refused or a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A field of the request is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The delegation does not carry a scope a tool needs.
    #[error("{0}")]
    Forbidden(String),
    /// No such run.
    #[error("no such agent run")]
    NotFound,
    /// The run is not in a state that allows this (cancelling a finished run, approving a
    /// run that waits for nothing).
    #[error("{0}")]
    Conflict(String),
    /// Another worker recorded this step first: this invocation stops.
    #[error("another worker drives this run")]
    Taken,
    /// Runs cannot be queued on this host.
    #[error("runs cannot be queued: {0}")]
    Queue(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests;

impl jarvis_http::Capability for Agents {
    const WHAT: &'static str = "agents";
}
