//! Users' automations: what a user asked Jarvis to do on a schedule, the index of when each
//! fires next, and firing every scheduled time once.
//!
//! | document | key | kind |
//! | --- | --- | --- |
//! | automation | `automation#<user>` / `auto#<id>` | [`Record`](jarvis_crdt::Record): name, schedule, time zone, action, enabled, start, generation, home, delegation, created_at |
//! | run | `automation#<user>#<id>` / `run#<inverted ms>` | [`Entity`](jarvis_crdt::Entity): levels `state` (1 claimed, 2 finished) and `attempts`; fields of the outcome |
//! | due entry | `~due#<minute>` / `<ms>#<user>#<id>` | [`Record`](jarvis_crdt::Record): the generation it was indexed for (replica-local) |
//! | firing cursor | `~automations` / `cursor` | [`Entity`](jarvis_crdt::Entity): level `minute`, the last minute fully fired (replica-local) |
//!
//! **Firing never scans the automations.** Each automation has one entry in the bucket of
//! the minute of its next time ([`due`]); the firer ([`fire`]) reads the buckets from the
//! last minute it finished up to now — on AWS once a minute (EventBridge Scheduler), in
//! `jarvis-local` every second — so its work follows the automations that are due, never
//! how many exist. A fired entry is replaced by the entry of the next time *before* it is
//! taken away, so a crash can repeat a firing but never lose the chain.
//!
//! **Once per scheduled time.** A run is keyed by the automation and the scheduled time,
//! claimed with a conditional write before its action runs and finished after; the action
//! is given the run's id, from which the things it makes take their ids (an agent run, an
//! archive note), so an action repeated after a crash makes nothing twice.
//!
//! **One deployment fires an automation**: its *home*, the deployment that last created or
//! changed it. Others hold it (it syncs) but do not index it; changing it elsewhere moves
//! the home there.
//!
//! Owns these documents and the rules of firing; changes when either does. Imports the
//! store, the CRDTs, schedules and delegations; what an action does is the caller's
//! ([`fire::Executor`]).
#![deny(missing_docs)]

pub mod action;
pub mod automation;
pub mod due;
pub mod fire;
pub mod runs;

pub use action::Action;
pub use automation::{Automation, Automations, Change, NewAutomation};
pub use fire::{Executor, Fired, Outcome, Report};

use jarvis_store::StoreError;

/// Why an automation request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AutomationError {
    /// A field is invalid; the message says why.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The schedule never fires (an `at(…)` in the past).
    #[error("the schedule never fires: {0}")]
    NeverFires(String),
    /// The user keeps as many automations as allowed.
    #[error("at most {0} automations per user")]
    TooMany(usize),
    /// No such automation.
    #[error("no such automation")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Milliseconds since the epoch of a timestamp (0 before it).
pub(crate) fn millis(at: jiff::Timestamp) -> u64 {
    u64::try_from(at.as_millisecond()).unwrap_or(0)
}

/// The timestamp of milliseconds since the epoch.
pub(crate) fn timestamp(ms: u64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or(jiff::Timestamp::MAX)
}

#[cfg(test)]
mod tests;
