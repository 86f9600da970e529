//! Runs waiting for a worker, and the lease a worker drives a run under.
//!
//! Every run that is not finished has an entry in this deployment's `~agentq` partition:
//! when it may next be driven (now, or when its wait for approval times out), and — while a
//! worker drives it — that worker's lease. The entry is the queue itself in `jarvis-local`;
//! on AWS an SQS message wakes a worker and the entry still holds the lease, so two
//! deliveries of one run never drive it at once, and `/health` reads queue depth from it
//! on either host.
//!
//! How a run reaches a worker is a [`Dispatch`]: SQS on AWS, a wake-up of the in-process
//! worker locally.

use std::time::Duration;

use async_trait::async_trait;
use jarvis_crdt::{Crdt, Entity};
use jarvis_store::{Key, MergeOptions, Site, StoreError};
use serde::{Deserialize, Serialize};

use crate::AgentError;

/// The partition of the queue entries.
pub const PARTITION: &str = "~agentq";

/// A run for a worker to drive, as a queue message carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// The run's user.
    pub user: String,
    /// The run.
    pub run: String,
}

/// How a run reaches a worker.
#[async_trait]
pub trait Dispatch: Send + Sync {
    /// Hands `job` to a worker after `delay` (zero: now).
    async fn dispatch(&self, job: &Job, delay: Duration) -> Result<(), AgentError>;
}

fn key(run: &str) -> Result<Key, StoreError> {
    Key::new(PARTITION, run)
}

fn number(entity: &Entity, name: &str) -> u64 {
    entity.field(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Puts `job` in the queue, to be driven from `not_before_ms`, releasing the lease `holder`
/// held (if it is given and holds it).
pub async fn put(
    site: &Site,
    job: &Job,
    not_before_ms: u64,
    now_ms: u64,
    holder: Option<&str>,
) -> Result<(), StoreError> {
    let clock = &site.clock;
    site.store
        .update(&key(&job.run)?, |entry: &mut Entity| {
            let stamp = clock.stamp_after(entry.latest_stamp());
            let mut delta = Entity::new();
            if entry.field("user").is_none() {
                delta.join(entry.set("user", stamp, job.user.clone()));
                delta.join(entry.set("queued_at", stamp, now_ms.to_string()));
            }
            if number(entry, "not_before") != not_before_ms {
                delta.join(entry.set("not_before", stamp, not_before_ms.to_string()));
            }
            let held_by_caller = holder.is_some() && entry.field("holder") == holder;
            if held_by_caller {
                delta.join(entry.unset("holder", stamp));
                delta.join(entry.set("until", stamp, "0"));
            }
            delta
        })
        .await?;
    Ok(())
}

/// What taking the lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// The caller holds the lease until the time it asked.
    Held,
    /// Another worker holds it.
    Busy,
    /// The run is not queued (finished, or never queued here).
    Absent,
    /// The run is queued for later (a wait that has not timed out): `not_before` ms.
    NotYet(u64),
}

/// Takes the lease of `run` for `holder` until `until_ms`.
pub async fn lease(
    site: &Site,
    run: &str,
    holder: &str,
    until_ms: u64,
    now_ms: u64,
) -> Result<Lease, StoreError> {
    let clock = &site.clock;
    let (_, lease) = site
        .store
        .transact(&key(run)?, MergeOptions::default(), |entry: &mut Entity| {
            if entry.field("user").is_none() {
                return (Entity::new(), Lease::Absent);
            }
            let held_elsewhere = entry.field("holder").is_some_and(|h| h != holder)
                && number(entry, "until") > now_ms;
            if held_elsewhere {
                return (Entity::new(), Lease::Busy);
            }
            let not_before = number(entry, "not_before");
            if not_before > now_ms {
                return (Entity::new(), Lease::NotYet(not_before));
            }
            let stamp = clock.stamp_after(entry.latest_stamp());
            let mut delta = entry.set("holder", stamp, holder);
            delta.join(entry.set("until", stamp, until_ms.to_string()));
            (delta, Lease::Held)
        })
        .await?;
    Ok(lease)
}

/// Takes `run` off the queue: it finished.
pub async fn finish(site: &Site, run: &str) -> Result<(), StoreError> {
    // Expired at once, so the purge takes it away; a later `put` starts it afresh.
    let options = MergeOptions {
        expires_at: Some(jarvis_store::now_secs()),
        retry: None,
    };
    let clock = &site.clock;
    site.store
        .update_with(
            &key(run)?,
            |entry: &mut Entity| {
                let stamp = clock.stamp_after(entry.latest_stamp());
                entry.set("finished", stamp, "true")
            },
            options,
        )
        .await?;
    Ok(())
}

/// One queue entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The job.
    pub job: Job,
    /// When it may be driven, ms since the epoch.
    pub not_before_ms: u64,
    /// When it was first queued.
    pub queued_at_ms: u64,
    /// Whether a worker holds its lease now.
    pub leased: bool,
}

/// Up to `limit` queue entries, oldest run first.
pub async fn entries(site: &Site, now_ms: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
    let page = site
        .store
        .list_documents::<Entity>(PARTITION, None, None, limit)
        .await?;
    Ok(page
        .items
        .iter()
        .filter(|doc| doc.state.field("finished").is_none())
        .filter_map(|doc| {
            let user = doc.state.field("user")?.to_owned();
            Some(Entry {
                job: Job {
                    user,
                    run: doc.key.sort().to_owned(),
                },
                not_before_ms: number(&doc.state, "not_before"),
                queued_at_ms: number(&doc.state, "queued_at"),
                leased: doc.state.field("holder").is_some() && number(&doc.state, "until") > now_ms,
            })
        })
        .collect())
}

/// What `/health` says of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Depth {
    /// Runs that may be driven now and no worker drives.
    pub ready: usize,
    /// Runs a worker drives now.
    pub running: usize,
    /// Runs waiting for approval.
    pub waiting: usize,
    /// How long the oldest ready run has waited, in seconds.
    pub oldest_ready_secs: u64,
    /// Whether there were more entries than were counted.
    pub more: bool,
}

/// Entries counted for `/health` at most.
pub const DEPTH_LIMIT: usize = 1_000;

/// The queue's depth now.
pub async fn depth(site: &Site, now_ms: u64) -> Result<Depth, StoreError> {
    let entries = entries(site, now_ms, DEPTH_LIMIT).await?;
    let mut depth = Depth {
        more: entries.len() >= DEPTH_LIMIT,
        ..Depth::default()
    };
    for entry in &entries {
        if entry.leased {
            depth.running += 1;
        } else if entry.not_before_ms > now_ms {
            depth.waiting += 1;
        } else {
            depth.ready += 1;
            let waited = now_ms.saturating_sub(entry.not_before_ms.max(entry.queued_at_ms)) / 1000;
            depth.oldest_ready_secs = depth.oldest_ready_secs.max(waited);
        }
    }
    Ok(depth)
}
