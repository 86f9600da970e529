//! The ingestion worker's Lambda handler: one SQS message per document to read, or per
//! archive change the archive function sent ([`Changed`]). A message
//! whose document could not be read for a reason worth retrying is reported as a batch item
//! failure, so SQS delivers it again (and, after the queue's receive limit, moves it to the
//! dead-letter queue); every other message of the batch is done.

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use jarvis_app::lambda::{Error, run_events, start};
use jarvis_fn_archive::Changed;
use jarvis_knowledge::documents::Job;
use jarvis_knowledge::service::Knowledge;
use lambda_runtime::LambdaEvent;

/// Reads the documents of `event`'s messages; answers the messages to deliver again.
pub async fn handle(knowledge: &Knowledge, event: SqsEvent) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        let job = message.body.as_deref().and_then(|body| {
            serde_json::from_str::<Job>(body).ok().or_else(|| {
                let change = serde_json::from_str::<Changed>(body).ok()?;
                Some(crate::job_of(&change))
            })
        });
        let Some(job) = job else {
            // Not a job: delivering it again cannot help.
            tracing::warn!(message = %id, "an ingestion message that is not a job was dropped");
            continue;
        };
        if let Err(err) = knowledge.ingest(&job).await {
            tracing::warn!(message = %id, document = %job.document, error = %err, "a document will be read again");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failures.push(failure);
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

/// Serves the queue's batches until the sandbox is shut down.
pub async fn run() -> Result<(), Error> {
    let (mut state, collector) = start().await?;
    let ai = jarvis_fn_ai::lambda_service(&mut state).await;
    let knowledge = crate::service(&state, ai).map_err(|err| Error::from(err.to_string()))?;
    run_events(collector, move |event: LambdaEvent<SqsEvent>| {
        let knowledge = Arc::clone(&knowledge);
        async move { Ok::<_, Error>(handle(&knowledge, event.payload).await) }
    })
    .await
}
