//! Firing: the due entries of the minutes since the last firing, each automation's action
//! run once for its scheduled time, and its next time indexed.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use jarvis_store::StoreError;

use crate::automation::{Automation, Automations};
use crate::due::{self, Entry};
use crate::runs::{self, Claim};
use crate::{millis, timestamp};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The action did what it was asked.
    Succeeded,
    /// The action was refused or failed for good (the reason is in the detail).
    Failed,
}

impl Status {
    /// Its name: `succeeded` or `failed`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// How it ended.
    pub status: Status,
    /// What it did, or why it failed, for the user.
    pub detail: String,
    /// The agent run it started, for an agent action.
    pub agent_run: Option<String>,
}

impl Outcome {
    /// A success saying what was done.
    pub fn succeeded(detail: impl Into<String>) -> Self {
        Self {
            status: Status::Succeeded,
            detail: detail.into(),
            agent_run: None,
        }
    }

    /// A failure for good, saying why.
    pub fn failed(detail: impl Into<String>) -> Self {
        Self {
            status: Status::Failed,
            detail: detail.into(),
            agent_run: None,
        }
    }
}

/// One firing of an automation, as its action sees it.
#[derive(Debug)]
pub struct Fired<'a> {
    /// The automation.
    pub automation: &'a Automation,
    /// The run's id ([`runs::run_id`]): what the action makes takes its id from it.
    pub run_id: &'a str,
    /// The time it was due, ms since the epoch.
    pub scheduled_at_ms: u64,
    /// Which attempt this is (1 for the first).
    pub attempt: u64,
}

/// Runs the actions of automations.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Runs `fired`'s action. An error means "try again later" (the store or a queue was
    /// unavailable): the run stays claimed and is claimed again after its lease. A refusal
    /// for good is an [`Outcome`] with [`Status::Failed`].
    async fn execute(&self, fired: &Fired<'_>) -> Result<Outcome, String>;
}

/// What one firing round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Actions run.
    pub fired: u64,
    /// Entries dropped: their automation is gone, disabled, changed or fired elsewhere.
    pub dropped: u64,
    /// Entries passed over because a later time of the same automation is also due (only
    /// the latest missed time runs, late).
    pub superseded: u64,
    /// Entries left for the next round: claimed by another firing, or their action asked to
    /// be tried again.
    pub deferred: u64,
    /// Minute buckets read.
    pub buckets: u64,
}

/// Minutes a firing with no cursor yet looks back.
const FIRST_LOOK_BACK_MINUTES: u64 = 60;
/// Minute buckets one round reads at most (a firer that was down catches up over rounds).
const BUCKETS_PER_ROUND: u64 = 240;
/// Entries read per page of a bucket.
const PAGE: usize = 256;
/// Actions run at once.
const CONCURRENCY: usize = 16;
/// How far back a firer catches up: what the due entries are kept for.
const CATCH_UP_MINUTES: u64 = 7 * 24 * 60;

/// What became of one entry.
enum Fate {
    Fired,
    Dropped,
    Superseded,
    Deferred,
}

impl Automations {
    /// Fires everything due at or before `now_ms`: the buckets from the minute after the
    /// last one finished through the current one. A bucket is finished — and the cursor
    /// moves past it — once its minute is over and none of its entries was deferred.
    pub async fn fire_due(
        &self,
        executor: &dyn Executor,
        now_ms: u64,
    ) -> Result<Report, StoreError> {
        let site = self.site();
        let current = due::minute_of(now_ms);
        let oldest = current.saturating_sub(CATCH_UP_MINUTES);
        let first = match due::cursor(site).await? {
            Some(done) => (done + 1).max(oldest),
            None => current.saturating_sub(FIRST_LOOK_BACK_MINUTES),
        };
        let last = current.min(first + BUCKETS_PER_ROUND - 1);
        let mut report = Report::default();
        let mut finished_through = None;
        let mut contiguous = true;
        for minute in first..=last {
            report.buckets += 1;
            let deferred = self
                .fire_bucket(executor, minute, now_ms, &mut report)
                .await?;
            // The current minute may yet gain due entries; a deferred entry is read again.
            if minute < current && deferred == 0 && contiguous {
                finished_through = Some(minute);
            } else {
                contiguous = false;
            }
        }
        if let Some(minute) = finished_through {
            due::advance(site, minute).await?;
        }
        metrics::counter!("automations_fired_total").increment(report.fired);
        Ok(report)
    }

    /// Fires the due entries of one minute's bucket; answers how many were deferred.
    async fn fire_bucket(
        &self,
        executor: &dyn Executor,
        minute: u64,
        now_ms: u64,
        report: &mut Report,
    ) -> Result<u64, StoreError> {
        let mut cursor: Option<String> = None;
        let mut deferred = 0;
        loop {
            let (entries, next) =
                due::due_page(self.site(), minute, now_ms, cursor.as_deref(), PAGE).await?;
            let fates: Vec<Result<Fate, StoreError>> = futures_util::stream::iter(entries)
                .map(|entry| async move { self.fire_entry(executor, entry, now_ms).await })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for fate in fates {
                match fate? {
                    Fate::Fired => report.fired += 1,
                    Fate::Dropped => report.dropped += 1,
                    Fate::Superseded => report.superseded += 1,
                    Fate::Deferred => {
                        report.deferred += 1;
                        deferred += 1;
                    }
                }
            }
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(deferred),
            }
        }
    }

    async fn fire_entry(
        &self,
        executor: &dyn Executor,
        entry: Entry,
        now_ms: u64,
    ) -> Result<Fate, StoreError> {
        let site = self.site();
        let Some(automation) = self.behind(&entry).await? else {
            due::remove(site, &entry).await?;
            return Ok(Fate::Dropped);
        };
        let start = timestamp(automation.start_ms);
        // Behind (the firer was down): only the latest time already due runs, late.
        let next = automation
            .schedule
            .next_after(timestamp(entry.at_ms), start);
        if let Some(next) = next.filter(|n| millis(*n) <= now_ms) {
            let mut latest = next;
            while let Some(later) = automation
                .schedule
                .next_after(latest, start)
                .filter(|l| millis(*l) <= now_ms)
            {
                latest = later;
            }
            if let Some(newer) = due::next_entry(
                &entry.user,
                &entry.automation,
                &entry.generation,
                Some(latest),
            ) {
                due::put(site, &newer).await?;
            }
            due::remove(site, &entry).await?;
            return Ok(Fate::Superseded);
        }
        let claim = runs::claim(site, &entry.user, &entry.automation, entry.at_ms, now_ms).await?;
        let attempt = match claim {
            Claim::Busy => return Ok(Fate::Deferred),
            Claim::Finished => None,
            Claim::Claimed { attempt } => Some(attempt),
        };
        if let Some(attempt) = attempt {
            let run_id = runs::run_id(&entry.automation, entry.at_ms);
            let fired = Fired {
                automation: &automation,
                run_id: &run_id,
                scheduled_at_ms: entry.at_ms,
                attempt,
            };
            let mut outcome = match executor.execute(&fired).await {
                Ok(outcome) => outcome,
                Err(reason) => {
                    tracing::warn!(automation = %entry.automation, %reason, "an automation's action will be tried again");
                    return Ok(Fate::Deferred);
                }
            };
            let late_ms = now_ms.saturating_sub(entry.at_ms);
            if late_ms >= 60_000 {
                outcome.detail = format!("{} (ran {} s late)", outcome.detail, late_ms / 1000);
            }
            let finished_at = jarvis_crdt::hlc::system_time_ms();
            runs::finish(
                site,
                &entry.user,
                &entry.automation,
                entry.at_ms,
                &outcome,
                finished_at,
            )
            .await?;
            metrics::histogram!("automation_fire_delay_seconds")
                .record(finished_at.saturating_sub(entry.at_ms) as f64 / 1000.0);
        }
        // The next time is indexed before this entry goes: a crash in between fires this
        // time again (its run is finished, so nothing runs) rather than never again.
        if let Some(next) = due::next_entry(&entry.user, &entry.automation, &entry.generation, next)
        {
            due::put(site, &next).await?;
        }
        due::remove(site, &entry).await?;
        Ok(if attempt.is_some() {
            Fate::Fired
        } else {
            Fate::Dropped
        })
    }
}

/// How often `jarvis-local` fires: every second, so an automation runs within a second of
/// its time.
pub const LOCAL_TICK: Duration = Duration::from_secs(1);

/// Fires automations every [`LOCAL_TICK`] until `shutdown` resolves (`jarvis-local`; on AWS
/// the `automations-due` job fires once a minute).
pub async fn run_locally(
    automations: Automations,
    executor: std::sync::Arc<dyn Executor>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let firing = async {
        let mut tick = tokio::time::interval(LOCAL_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = jarvis_crdt::hlc::system_time_ms();
            if let Err(err) = automations.fire_due(executor.as_ref(), now).await {
                tracing::warn!(error = %err, "automations could not be fired; trying again");
            }
        }
    };
    tokio::select! {
        () = firing => {}
        () = shutdown => {}
    }
}
