//! The runs of an automation: one document per scheduled time, newest first, claimed before
//! its action runs and finished after.

use jarvis_crdt::{Crdt, Entity};
use jarvis_store::{Key, MergeOptions, Page, Site, StoreError};

use crate::fire::{Outcome, Status};

/// How long a claimed run may stay unfinished before another firing claims it again (the
/// first firer is taken to have crashed).
pub const LEASE_MS: u64 = 5 * 60_000;

/// The largest time a run key inverts.
const LATEST_MS: u64 = 9_999_999_999_999;

/// The partition of an automation's runs.
pub fn partition(user: &str, automation: &str) -> String {
    format!("automation#{user}#{automation}")
}

/// The key of the run at `at_ms`: runs list newest first.
pub fn key(user: &str, automation: &str, at_ms: u64) -> Result<Key, StoreError> {
    Key::new(
        partition(user, automation),
        format!("run#{:013}", LATEST_MS - at_ms.min(LATEST_MS)),
    )
}

fn scheduled_ms(sort: &str) -> Option<u64> {
    let inverted: u64 = sort.strip_prefix("run#")?.parse().ok()?;
    LATEST_MS.checked_sub(inverted)
}

/// A run's id: the automation and the scheduled time. What an action makes takes its id
/// from it, so a repeated action makes the same thing.
pub fn run_id(automation: &str, at_ms: u64) -> String {
    format!("{automation}@{at_ms}")
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This firing runs the action (its `attempt`-th time).
    Claimed {
        /// 1 for the first attempt.
        attempt: u64,
    },
    /// The run finished before: nothing to do.
    Finished,
    /// Another firing claimed it within the lease.
    Busy,
}

/// Claims the run of `automation` at `at_ms`.
pub async fn claim(
    site: &Site,
    user: &str,
    automation: &str,
    at_ms: u64,
    now_ms: u64,
) -> Result<Claim, StoreError> {
    let clock = &site.clock;
    let (_, claim) = site
        .store
        .transact(
            &key(user, automation, at_ms)?,
            MergeOptions::default(),
            |run: &mut Entity| {
                if run.level("state") >= 2 {
                    return (Entity::new(), Claim::Finished);
                }
                let claimed_at = run
                    .field("claimed_at")
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                if run.level("state") == 1 && claimed_at.saturating_add(LEASE_MS) > now_ms {
                    return (Entity::new(), Claim::Busy);
                }
                let attempt = run.level("attempts") + 1;
                let stamp = clock.stamp_after(run.latest_stamp());
                let mut delta = run.raise("state", 1);
                delta.join(run.raise("attempts", attempt));
                delta.join(run.set("scheduled_at", stamp, at_ms.to_string()));
                delta.join(run.set("claimed_at", stamp, now_ms.to_string()));
                (delta, Claim::Claimed { attempt })
            },
        )
        .await?;
    Ok(claim)
}

/// Finishes the run of `automation` at `at_ms` with `outcome`.
pub async fn finish(
    site: &Site,
    user: &str,
    automation: &str,
    at_ms: u64,
    outcome: &Outcome,
    now_ms: u64,
) -> Result<(), StoreError> {
    let clock = &site.clock;
    site.store
        .update(&key(user, automation, at_ms)?, |run: &mut Entity| {
            let stamp = clock.stamp_after(run.latest_stamp());
            let mut delta = run.raise("state", 2);
            delta.join(run.set("scheduled_at", stamp, at_ms.to_string()));
            delta.join(run.set("finished_at", stamp, now_ms.to_string()));
            delta.join(run.set("outcome", stamp, outcome.status.name()));
            delta.join(run.set("detail", stamp, outcome.detail.clone()));
            if let Some(agent_run) = &outcome.agent_run {
                delta.join(run.set("agent_run", stamp, agent_run.clone()));
            }
            delta
        })
        .await?;
    Ok(())
}

/// A run as it is listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Its id (the automation and the scheduled time).
    pub id: String,
    /// When it was due.
    pub scheduled_at_ms: u64,
    /// When its action last began.
    pub claimed_at_ms: Option<u64>,
    /// When it finished.
    pub finished_at_ms: Option<u64>,
    /// How it ended; `None` while it runs.
    pub status: Option<Status>,
    /// What the action did or why it failed.
    pub detail: String,
    /// The agent run it started, for an agent action.
    pub agent_run: Option<String>,
    /// How many times its action began.
    pub attempts: u64,
}

fn view(automation: &str, sort: &str, run: &Entity) -> Option<Run> {
    let at_ms = scheduled_ms(sort)?;
    let number = |name: &str| run.field(name).and_then(|v| v.parse::<u64>().ok());
    Some(Run {
        id: run_id(automation, at_ms),
        scheduled_at_ms: at_ms,
        claimed_at_ms: number("claimed_at"),
        finished_at_ms: number("finished_at"),
        status: (run.level("state") >= 2)
            .then(|| run.field("outcome").and_then(Status::parse))
            .flatten(),
        detail: run.field("detail").unwrap_or_default().to_owned(),
        agent_run: run.field("agent_run").map(str::to_owned),
        attempts: run.level("attempts"),
    })
}

/// A page of `automation`'s runs, newest first.
pub async fn list(
    site: &Site,
    user: &str,
    automation: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Run>, StoreError> {
    let page = site
        .store
        .list_documents::<Entity>(&partition(user, automation), Some("run#"), cursor, limit)
        .await?;
    Ok(Page {
        items: page
            .items
            .iter()
            .filter_map(|doc| view(automation, doc.key.sort(), &doc.state))
            .collect(),
        next_cursor: page.next_cursor,
    })
}

/// The run of `automation` at `at_ms`, when there is one.
pub async fn get(
    site: &Site,
    user: &str,
    automation: &str,
    at_ms: u64,
) -> Result<Option<Run>, StoreError> {
    let key = key(user, automation, at_ms)?;
    Ok(site
        .store
        .read::<Entity>(&key)
        .await?
        .and_then(|doc| view(automation, key.sort(), &doc.state)))
}
