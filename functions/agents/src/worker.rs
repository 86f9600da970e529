//! The agents' worker on Lambda: SQS messages of the runs to drive, one invocation each
//! (batch size 1), driven until the Lambda's deadline less a margin, then queued again.
//! A message whose run could not be queued again is reported as a batch item failure, so
//! SQS delivers it again (and, after the queue's receive limit, moves it to the dead-letter
//! queue).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use jarvis_agents::queue::{Dispatch, Job};
use jarvis_agents::{AgentError, Agents};
use jarvis_app::lambda::{Error, run_events, start};
use lambda_runtime::LambdaEvent;

/// Runs sent to an SQS queue, delayed as asked (SQS delays at most 15 minutes; a later
/// time is reached by sending again when the message comes early).
pub struct Sqs(pub jarvis_queue::Sender);

#[async_trait]
impl Dispatch for Sqs {
    async fn dispatch(&self, job: &Job, delay: Duration) -> Result<(), AgentError> {
        let body = serde_json::to_string(job).map_err(|e| AgentError::Queue(e.to_string()))?;
        self.0
            .send_delayed(body, delay)
            .await
            .map_err(|e| AgentError::Queue(e.to_string()))
    }
}

/// Drives the runs of `event`'s messages until `deadline`, as `holder`; answers the
/// messages to deliver again.
pub async fn handle(
    agents: &Agents,
    event: SqsEvent,
    deadline: Instant,
    holder: &str,
) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        let Some(job) = message
            .body
            .as_deref()
            .and_then(|body| serde_json::from_str::<Job>(body).ok())
        else {
            // Not a run: delivering it again cannot help.
            tracing::warn!(message = %id, "an agent queue message that is not a run was dropped");
            continue;
        };
        match agents.invoke(&job, deadline, holder).await {
            Ok(invoked) => tracing::info!(run = %job.run, ?invoked, "agent invocation ended"),
            Err(err) => {
                tracing::warn!(message = %id, run = %job.run, error = %err, "a run will be delivered again");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                failures.push(failure);
            }
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

/// Serves the queue's batches until the sandbox is shut down.
pub async fn run() -> Result<(), Error> {
    let (mut state, collector) = start().await?;
    let agents = crate::lambda_service(&mut state)
        .await
        .map_err(|err| Error::from(err.to_string()))?;
    run_events(collector, move |event: LambdaEvent<SqsEvent>| {
        let agents = Arc::clone(&agents);
        async move {
            let now = jarvis_store::now_secs().saturating_mul(1000);
            let left = event
                .context
                .deadline
                .saturating_sub(u64::try_from(now).unwrap_or(0));
            let deadline = Instant::now() + Duration::from_millis(left);
            let holder = format!("lambda-{}", event.context.request_id);
            Ok::<_, Error>(handle(&agents, event.payload, deadline, &holder).await)
        }
    })
    .await
}
