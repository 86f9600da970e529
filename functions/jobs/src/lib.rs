//! System jobs: the work Jarvis does on a timer rather than on a request.
//!
//! [`SYSTEM_JOBS`] is the one table of them. On AWS each is a `ScheduleV2` event of
//! `JobsFunction` in `template.yaml` (EventBridge Scheduler, with the retry policy and
//! dead-letter queue the table gives; a test keeps the two in agreement), which invokes
//! this function with `{"job": "<name>"}`. In `jarvis-local`, [`run_locally`] fires the
//! same expressions in process. Either way a job runs through [`run`].

use std::time::Duration;

use jarvis_app::state::AppState;
use jarvis_schedule::{Schedule, ScheduleError};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// One system job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemJob {
    /// Its name, as the schedule's input names it.
    pub name: &'static str,
    /// The function that runs it on AWS: its logical id in `template.yaml`
    /// ([`JOBS_FUNCTION`] for the jobs of this crate; a capability's own function for the
    /// jobs it owns).
    pub function: &'static str,
    /// When it runs: an AWS schedule expression.
    pub schedule: &'static str,
    /// The IANA time zone the expression is read in.
    pub time_zone: &'static str,
    /// What it does.
    pub about: &'static str,
    /// Times EventBridge Scheduler retries a failed run (0 to 185).
    pub retries: u32,
    /// How long a run may wait to be retried before it goes to the dead-letter queue, in
    /// seconds (60 to 86,400): no longer than the interval, so a late retry never overlaps
    /// the next run.
    pub max_age_secs: u32,
}

/// The function of this crate's jobs.
pub const JOBS_FUNCTION: &str = "JobsFunction";

/// Every system job.
pub const SYSTEM_JOBS: [SystemJob; 5] = [
    SystemJob {
        name: "sync-round",
        function: JOBS_FUNCTION,
        schedule: "rate(1 minute)",
        time_zone: "UTC",
        about: "pulls each peer deployment's changes and merges them",
        retries: 0,
        max_age_secs: 60,
    },
    SystemJob {
        name: "expiry-purge",
        function: JOBS_FUNCTION,
        schedule: "rate(10 minutes)",
        time_zone: "UTC",
        about: "deletes documents whose time to live has passed",
        retries: 2,
        max_age_secs: 600,
    },
    SystemJob {
        name: "feed-prune",
        function: JOBS_FUNCTION,
        schedule: "rate(1 hour)",
        time_zone: "UTC",
        about: "drops change-feed entries older than the feed's retention",
        retries: 2,
        max_age_secs: 3_600,
    },
    SystemJob {
        name: "health-probe",
        function: JOBS_FUNCTION,
        schedule: "rate(5 minutes)",
        time_zone: "UTC",
        about: "checks every component and records the health score as a metric",
        retries: 0,
        max_age_secs: 300,
    },
    SystemJob {
        name: "automations-due",
        function: "AutomationsDueFunction",
        schedule: "rate(1 minute)",
        time_zone: "UTC",
        about: "fires the users' automations and reminders that are due (every second in jarvis-local)",
        retries: 0,
        max_age_secs: 60,
    },
];

/// The job of that name.
pub fn job(name: &str) -> Option<&'static SystemJob> {
    SYSTEM_JOBS.iter().find(|j| j.name == name)
}

impl SystemJob {
    /// Its schedule, parsed.
    pub fn parsed(&self) -> Result<Schedule, ScheduleError> {
        Schedule::parse(self.schedule, self.time_zone)
    }
}

/// What EventBridge Scheduler sends: the job to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fire {
    /// The job's name.
    pub job: String,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The job's name.
    pub job: String,
    /// What it found or changed (counts, statuses).
    pub detail: serde_json::Value,
}

/// Why a run failed (EventBridge Scheduler retries it as the table says).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No job has that name.
    #[error("there is no system job {0:?}")]
    Unknown(String),
    /// The job is another function's.
    #[error("{job} runs in {function}, not here")]
    Elsewhere {
        /// The job.
        job: &'static str,
        /// The function that runs it.
        function: &'static str,
    },
    /// The job's work failed.
    #[error("{job} failed: {reason}")]
    Failed {
        /// The job.
        job: &'static str,
        /// Why.
        reason: String,
    },
}

/// Runs the job named `name` once.
pub async fn run(state: &AppState, name: &str) -> Result<Outcome, JobError> {
    let job = job(name).ok_or_else(|| JobError::Unknown(name.to_owned()))?;
    if job.function != JOBS_FUNCTION {
        return Err(JobError::Elsewhere {
            job: job.name,
            function: job.function,
        });
    }
    let failed = |reason: String| JobError::Failed {
        job: job.name,
        reason,
    };
    let detail = match job.name {
        "sync-round" => {
            let results = state.sync.run_round().await;
            let merged: u64 = results.iter().map(|r| r.merged).sum();
            let failing = results.iter().filter(|r| !r.ok).count();
            // A peer that failed is pulled again next round, from the same cursor.
            serde_json::json!({"peers": results.len(), "merged": merged, "failed": failing})
        }
        "expiry-purge" => {
            let purged = state
                .store
                .purge_expired(jarvis_store::now_secs())
                .await
                .map_err(|e| failed(e.to_string()))?;
            serde_json::json!({"purged": purged})
        }
        "feed-prune" => {
            let retention =
                i64::try_from(state.config.sync.feed_retention.as_secs()).unwrap_or(i64::MAX);
            let before = jarvis_store::now_secs().saturating_sub(retention);
            let pruned = state
                .store
                .prune_feed(before)
                .await
                .map_err(|e| failed(e.to_string()))?;
            serde_json::json!({"pruned": pruned})
        }
        "health-probe" => {
            let report = state.health.report().await;
            metrics::gauge!("health_score").set(f64::from(report.score));
            let down: Vec<&str> = report
                .components
                .iter()
                .filter(|c| c.status != jarvis_health::Status::Ok)
                .map(|c| c.name.as_str())
                .collect();
            if !down.is_empty() {
                tracing::warn!(
                    score = report.score,
                    ?down,
                    "health probe: not every component is ok"
                );
            }
            serde_json::json!({"status": report.status, "score": report.score, "not_ok": down})
        }
        other => return Err(JobError::Unknown(other.to_owned())),
    };
    tracing::info!(job = job.name, %detail, "system job done");
    Ok(Outcome {
        job: job.name.to_owned(),
        detail,
    })
}

/// When a job runs in `jarvis-local`.
#[derive(Debug, Clone)]
enum Timing {
    /// As on AWS.
    Schedule(Box<Schedule>),
    /// Every so often from the start (the sync interval, which may be under a minute).
    Every(Duration),
}

impl Timing {
    fn next_after(&self, after: Timestamp, start: Timestamp) -> Option<Timestamp> {
        match self {
            Self::Schedule(schedule) => schedule.next_after(after, start),
            Self::Every(every) => {
                let every = SignedDuration::try_from(*every).ok()?;
                let mut next = start;
                // The first multiple of the interval after `after` (at `start` itself when
                // `after` is before it).
                if after >= start {
                    let since = after.duration_since(start);
                    let periods = since.as_nanos() / every.as_nanos().max(1) + 1;
                    let offset = every.checked_mul(i32::try_from(periods).ok()?)?;
                    next = start.checked_add(offset).ok()?;
                }
                Some(next)
            }
        }
    }
}

/// The jobs `jarvis-local` runs here, and when: this crate's jobs on the table's schedules,
/// except that sync rounds follow `JARVIS_SYNC_INTERVAL` and run only with peers configured.
/// (The jobs of other functions run in their own loops of `jarvis-local`: automations
/// every second.)
fn local_timings(state: &AppState) -> Result<Vec<(&'static SystemJob, Timing)>, ScheduleError> {
    let mut timings = Vec::new();
    for job in SYSTEM_JOBS.iter().filter(|j| j.function == JOBS_FUNCTION) {
        let timing = match job.name {
            "sync-round" if state.config.sync.peers.is_empty() => continue,
            "sync-round" => Timing::Every(state.config.sync.interval),
            _ => Timing::Schedule(Box::new(job.parsed()?)),
        };
        timings.push((job, timing));
    }
    Ok(timings)
}

/// Fires every system job at its times until `shutdown` resolves: each job is a task that
/// sleeps until its next time, runs, and looks again, so a slow job delays only itself. A
/// rate's first run is at the start, as on AWS; a time missed while the process was down is
/// not made up (the next run covers it: every job works on whatever is due).
pub async fn run_locally(state: AppState, shutdown: impl std::future::Future<Output = ()>) {
    let timings = match local_timings(&state) {
        Ok(timings) => timings,
        Err(err) => {
            tracing::error!(error = %err, "a system job's schedule does not parse");
            return;
        }
    };
    let start = Timestamp::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (job, timing) in timings {
        let state = state.clone();
        tasks.spawn(async move {
            // Just before the start, so a rate fires at it.
            let mut after = start
                .checked_sub(SignedDuration::from_nanos(1))
                .unwrap_or(start);
            while let Some(next) = timing.next_after(after, start) {
                let wait = next.duration_since(Timestamp::now());
                if wait.is_positive() {
                    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
                }
                if let Err(err) = run(&state, job.name).await {
                    tracing::warn!(error = %err, "system job failed");
                }
                after = next.max(Timestamp::now());
            }
        });
    }
    shutdown.await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// The Lambda entry point.
pub mod lambda {
    use lambda_runtime::LambdaEvent;

    use super::{Fire, Outcome};

    /// Serves EventBridge Scheduler's invocations until the sandbox is shut down. A failed
    /// job fails its invocation, which Scheduler retries and then sends to the dead-letter
    /// queue.
    pub async fn run() -> Result<(), jarvis_app::lambda::Error> {
        let (state, collector) = jarvis_app::lambda::start().await?;
        jarvis_app::lambda::run_events(collector, |event: LambdaEvent<Fire>| {
            let state = state.clone();
            async move {
                let outcome: Outcome = super::run(&state, &event.payload.job).await?;
                Ok(outcome)
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests;
