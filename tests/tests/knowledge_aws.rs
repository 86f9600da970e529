//! The knowledge base's AWS side against a moto server (started by the test command): the
//! ingestion queue on SQS, and chunk vectors written to and removed from S3 Vectors.
//! (moto does not answer `QueryVectors`; the query's filter and the metadata it reads back
//! are tested in `jarvis-knowledge` itself.)

use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::config::Credentials;
use jarvis_config::AwsTarget;
use jarvis_knowledge::aws::{Location, S3Vectors, Sqs, vector_key};
use jarvis_knowledge::documents::Job;
use jarvis_knowledge::index::{Entry, Source, VectorIndex};
use jarvis_knowledge::service::Queue;
use uuid::Uuid;

const ENDPOINT_VAR: &str = "JARVIS_TEST_SECRETS_ENDPOINT";

fn endpoint() -> String {
    std::env::var(ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!("{ENDPOINT_VAR} is not set: run ./infra/test.sh, which starts a moto server")
    })
}

async fn sdk() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "test"))
        .load()
        .await
}

fn target() -> AwsTarget {
    AwsTarget {
        endpoint: Some(endpoint()),
        region: Some("us-east-1".into()),
        env_credentials: false,
    }
}

#[tokio::test]
async fn an_ingestion_job_travels_over_sqs_as_the_worker_reads_it() {
    let sqs = aws_sdk_sqs::Client::new(&sdk().await);
    let name = format!("jarvis-knowledge-{}", Uuid::new_v4().simple());
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    let job = Job {
        user: "u1".into(),
        role: "user".into(),
        document: Uuid::new_v4(),
    };
    Sqs::new(url.clone(), target())
        .send(&job)
        .await
        .expect("sent");
    let received = sqs
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(2)
        .send()
        .await
        .expect("received");
    let messages = received.messages();
    assert_eq!(messages.len(), 1);
    let body = messages[0].body().expect("body");
    let read: Job = serde_json::from_str(body).expect("a job");
    assert_eq!(read, job);
}

#[tokio::test]
async fn chunk_vectors_are_written_replaced_and_removed_by_key() {
    let client = aws_sdk_s3vectors::Client::new(&sdk().await);
    let bucket = format!("jarvis-vectors-{}", Uuid::new_v4().simple());
    client
        .create_vector_bucket()
        .vector_bucket_name(&bucket)
        .send()
        .await
        .expect("bucket");
    client
        .create_index()
        .vector_bucket_name(&bucket)
        .index_name("chunks")
        .data_type(aws_sdk_s3vectors::types::DataType::Float32)
        .dimension(4)
        .distance_metric(aws_sdk_s3vectors::types::DistanceMetric::Cosine)
        .send()
        .await
        .expect("index");
    let location = Location::Named {
        bucket: bucket.clone(),
        index: "chunks".into(),
    };
    let index = S3Vectors::new(location, target());
    let document = Uuid::new_v4();
    let source = Source {
        document,
        name: "guide.md".into(),
        title: None,
        media_type: "text/markdown".into(),
        tags: vec!["birds".into()],
    };
    let entry = |ordinal: u32| Entry {
        ordinal,
        page: None,
        section: None,
        text: format!("chunk {ordinal}"),
        vector: vec![1.0, ordinal as f32, 0.5, 0.0],
    };
    let present = |keys: Vec<String>| {
        let client = client.clone();
        let bucket = bucket.clone();
        async move {
            let got = client
                .get_vectors()
                .vector_bucket_name(&bucket)
                .index_name("chunks")
                .set_keys(Some(keys))
                .return_metadata(true)
                .send()
                .await
                .expect("get");
            let mut keys: Vec<String> = got.vectors().iter().map(|v| v.key().to_owned()).collect();
            keys.sort();
            keys
        }
    };
    let keys = |n: u32| {
        (0..n)
            .map(|i| vector_key("u1", document, i))
            .collect::<Vec<_>>()
    };

    index.begin("u1", &source).await.expect("begin");
    index
        .add(
            "u1",
            "local:minilm",
            document,
            &[entry(0), entry(1), entry(2)],
        )
        .await
        .expect("add");
    assert_eq!(present(keys(5)).await, keys(3));

    // Read again with fewer chunks: the old ones go first.
    index.begin("u1", &source).await.expect("begin again");
    assert!(present(keys(5)).await.is_empty());
    index
        .add("u1", "local:minilm", document, &[entry(0), entry(1)])
        .await
        .expect("add again");
    assert_eq!(present(keys(5)).await, keys(2));

    index.remove("u1", document).await.expect("remove");
    assert!(present(keys(5)).await.is_empty());
}
