//! The firer on Lambda: EventBridge Scheduler invokes it every minute with
//! `{"job": "automations-due"}` (the system jobs' table, `jarvis_fn_jobs::SYSTEM_JOBS`); each
//! invocation fires what is due since the last. A round that cannot read or write the store
//! fails its invocation, which Scheduler retries and then sends to the dead-letter queue;
//! the next minute's round picks up what it left.

use std::sync::Arc;

use jarvis_app::lambda::{Error, run_events, start};
use lambda_runtime::LambdaEvent;
use serde::{Deserialize, Serialize};

/// What EventBridge Scheduler sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fire {
    /// The job's name: `automations-due`.
    pub job: String,
}

/// The job this function runs.
pub const JOB: &str = "automations-due";

/// What a round did.
#[derive(Debug, Serialize)]
pub struct Fired {
    /// The job.
    pub job: String,
    /// Actions run.
    pub fired: u64,
    /// Entries dropped (their automation gone, disabled, changed, fired elsewhere).
    pub dropped: u64,
    /// Missed times passed over for a later one.
    pub superseded: u64,
    /// Entries left for the next round.
    pub deferred: u64,
}

/// Serves Scheduler's invocations until the sandbox is shut down.
pub async fn run() -> Result<(), Error> {
    let (mut state, collector) = start().await?;
    let automating = crate::lambda_service(&mut state).await;
    run_events(collector, move |event: LambdaEvent<Fire>| {
        let automating = Arc::clone(&automating);
        async move {
            if event.payload.job != JOB {
                return Err(Error::from(format!(
                    "this function runs {JOB}, not {:?}",
                    event.payload.job
                )));
            }
            let now = jarvis_store::now_secs().saturating_mul(1000);
            let report = automating
                .automations
                .fire_due(automating.actions.as_ref(), u64::try_from(now).unwrap_or(0))
                .await
                .map_err(|err| Error::from(err.to_string()))?;
            tracing::info!(?report, "automations fired");
            Ok(Fired {
                job: JOB.to_owned(),
                fired: report.fired,
                dropped: report.dropped,
                superseded: report.superseded,
                deferred: report.deferred,
            })
        }
    })
    .await
}
