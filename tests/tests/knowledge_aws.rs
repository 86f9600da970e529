//! The knowledge base's AWS side against a moto server and DynamoDB Local (started by the
//! test command): the ingestion queue on SQS (jobs, and the archive function's changes),
//! chunk vectors written to and removed from S3 Vectors, and keyword search over the
//! posting lists in DynamoDB.
//! (moto does not answer `QueryVectors`; the query's filter and the metadata it reads back
//! are tested in `jarvis-knowledge` itself.)

use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::config::Credentials;
use jarvis_config::AwsTarget;
use jarvis_knowledge::aws::{Keywords, Location, S3Vectors, Sqs, vector_key};
use jarvis_knowledge::documents::Job;
use jarvis_knowledge::index::{Entry, Filter, Found, LibsqlIndex, Source, VectorIndex};
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
    let job = Job::read("u1", "user", Uuid::new_v4());
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

/// A new queue's URL.
async fn queue(sqs: &aws_sdk_sqs::Client) -> String {
    let name = format!("jarvis-knowledge-{}", Uuid::new_v4().simple());
    sqs.create_queue()
        .queue_name(&name)
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url")
}

#[tokio::test]
async fn the_archive_function_sends_each_change_to_the_ingestion_queue_as_the_worker_reads_it() {
    use axum::http::{Method, StatusCode};
    use jarvis_fn_archive::Changed;
    use jarvis_knowledge::documents::ArchiveWork;
    use serde_json::json;

    let sqs = aws_sdk_sqs::Client::new(&sdk().await);
    let url = queue(&sqs).await;
    let moto = endpoint();
    let env = [
        ("JARVIS_KNOWLEDGE_QUEUE_URL", url.as_str()),
        ("JARVIS_SQS_ENDPOINT", moto.as_str()),
    ];
    // The routes as the archive Lambda builds them from its configuration.
    let configured = jarvis_fn_auth::testing::TestApp::with_env(axum::Router::new(), &env).await;
    let app = jarvis_fn_auth::testing::TestApp::signed_in_with_env(
        jarvis_fn_archive::lambda_routes(&configured.state),
        &env,
    )
    .await;
    let (status, created) = app
        .call(
            Method::POST,
            "/archive",
            Some(json!({"kind": "note", "title": "Boats", "content": "Paint the hull."})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id");
    let (status, _) = app
        .call(Method::DELETE, &format!("/archive/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let mut changes = Vec::new();
    for _ in 0..5 {
        let received = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("received");
        for message in received.messages() {
            let body = message.body().expect("body");
            changes.push(serde_json::from_str::<Changed>(body).expect("a change"));
        }
        if changes.len() == 2 {
            break;
        }
    }
    // A standard queue keeps no order.
    let mut seen: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| (c.archive_entry.as_str(), c.change.as_str()))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, [(id, "created"), (id, "deleted")]);
    let job = jarvis_fn_knowledge::job_of(&changes[0]);
    assert_eq!(job.user, changes[0].user);
    assert_eq!(job.role, changes[0].role);
    assert_eq!(job.archive, Some(ArchiveWork::Entry(id.to_owned())));
}

#[tokio::test]
async fn chunk_vectors_are_written_replaced_and_removed_by_key() {
    let client = aws_sdk_s3vectors::Client::new(&sdk().await);
    let location = vector_index(&client).await;
    let Location::Named { bucket, .. } = location.clone() else {
        panic!("a named index");
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

/// A fresh vector index of 4 dimensions in moto, and where it is.
async fn vector_index(client: &aws_sdk_s3vectors::Client) -> Location {
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
    Location::Named {
        bucket,
        index: "chunks".into(),
    }
}

/// A fresh keyword table in DynamoDB Local, as `template.yaml` declares it, and its client.
async fn keyword_table() -> (String, AwsTarget, aws_sdk_dynamodb::Client) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let endpoint = std::env::var(jarvis_tests::backends::DYNAMODB_ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!("JARVIS_TEST_DYNAMODB_ENDPOINT is not set: run ./infra/test.sh, which starts DynamoDB Local")
    });
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "test"))
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let table = format!("jarvis-keywords-{}", Uuid::new_v4().simple());
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .send()
        .await
        .expect("table");
    (table, AwsTarget::local(endpoint), client)
}

fn chunk(ordinal: u32, text: &str) -> Entry {
    Entry {
        ordinal,
        page: Some(ordinal + 1),
        section: Some("House notes".into()),
        text: text.to_owned(),
        vector: vec![1.0, ordinal as f32, 0.5, 0.25],
    }
}

/// Who found what, and how well, best first; equal scores in a stable order.
fn ranking(found: &[Found]) -> Vec<(Uuid, u32, i64)> {
    let mut ranked: Vec<(Uuid, u32, i64)> = found
        .iter()
        .map(|f| (f.document, f.ordinal, (f.score * 1e9).round() as i64))
        .collect();
    ranked.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    ranked
}

#[tokio::test]
async fn keyword_search_on_aws_ranks_as_fts5_filters_and_forgets_what_is_removed() {
    let vectors = aws_sdk_s3vectors::Client::new(&sdk().await);
    let (table, dynamodb, tables) = keyword_table().await;
    let aws = S3Vectors::new(vector_index(&vectors).await, target())
        .with_keywords(Keywords::new(table.clone(), dynamodb));
    let dir = tempfile::tempdir().expect("tempdir");
    let local = LibsqlIndex::new(dir.path(), 1_000);

    let (home, work, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let documents = [
        (
            "u1",
            Source {
                document: home,
                name: "home.txt".into(),
                title: Some("Home".into()),
                media_type: "text/plain".into(),
                tags: vec!["home".into()],
            },
            vec![
                chunk(0, "kettle water kettle boil"),
                chunk(1, "water for the garden and the lawn"),
                chunk(2, "a kettle on the stove"),
            ],
        ),
        (
            "u1",
            Source {
                document: work,
                name: "work.pdf".into(),
                title: None,
                media_type: "application/pdf".into(),
                tags: vec!["work".into(), "tools".into()],
            },
            vec![
                chunk(0, "garden tools: spade, rake, hoe and more tools"),
                chunk(1, "boil water for tea in a kettle or a pot"),
            ],
        ),
        (
            "u2",
            Source {
                document: other,
                name: "theirs.txt".into(),
                title: None,
                media_type: "text/plain".into(),
                tags: vec![],
            },
            vec![chunk(0, "kettle kettle kettle")],
        ),
    ];
    for (user, source, entries) in &documents {
        for index in [&aws as &dyn VectorIndex, &local] {
            index.begin(user, source).await.expect("begin");
            index
                .add(user, "local:minilm", source.document, entries)
                .await
                .expect("add");
        }
    }

    let everything = Filter::default();
    for query in [
        "kettle",
        "boil water",
        "garden tools",
        "How do I boil a kettle?",
        "house",
    ] {
        let on_aws = aws
            .matching("u1", query, 10, &everything)
            .await
            .expect("aws");
        let here = local
            .matching("u1", query, 10, &everything)
            .await
            .expect("local");
        assert!(!on_aws.is_empty(), "{query}");
        assert_eq!(
            ranking(&on_aws),
            ranking(&here),
            "{query}: AWS and FTS5 rank alike"
        );
        assert!(
            on_aws.iter().all(|f| f.document != other),
            "{query}: only u1's chunks"
        );
    }
    let best = &aws
        .matching("u1", "kettle", 1, &everything)
        .await
        .expect("best")[0];
    assert_eq!((best.document, best.ordinal), (home, 0));
    assert_eq!(best.text, "kettle water kettle boil");
    assert_eq!(best.page, Some(1));
    assert_eq!(best.section.as_deref(), Some("House notes"));
    assert_eq!(best.title.as_deref(), Some("Home"));
    assert!(
        aws.matching("u1", " -- ", 10, &everything)
            .await
            .expect("no words")
            .is_empty()
    );

    // Filters, by tag, media type and document, as locally.
    let filters = [
        Filter {
            tag: Some("tools".into()),
            ..Filter::default()
        },
        Filter {
            media_type: Some("text/plain".into()),
            ..Filter::default()
        },
        Filter {
            document: Some(home),
            ..Filter::default()
        },
    ];
    for filter in &filters {
        let on_aws = aws
            .matching("u1", "kettle water", 10, filter)
            .await
            .expect("aws");
        let here = local
            .matching("u1", "kettle water", 10, filter)
            .await
            .expect("local");
        assert!(!on_aws.is_empty(), "{filter:?}");
        assert_eq!(ranking(&on_aws), ranking(&here), "{filter:?}");
    }

    // Read again with fewer chunks: the stove is gone; removed: the tools are.
    aws.begin("u1", &documents[0].1).await.expect("begin again");
    aws.add("u1", "local:minilm", home, &documents[0].2[..2])
        .await
        .expect("add again");
    assert!(
        aws.matching("u1", "stove", 10, &everything)
            .await
            .expect("stove")
            .is_empty()
    );
    aws.remove("u1", work).await.expect("remove");
    assert!(
        aws.matching("u1", "tools", 10, &everything)
            .await
            .expect("tools")
            .is_empty()
    );
    let kettles = aws
        .matching("u1", "kettle", 10, &everything)
        .await
        .expect("kettle");
    assert_eq!(
        kettles
            .iter()
            .map(|f| (f.document, f.ordinal))
            .collect::<Vec<_>>(),
        [(home, 0)]
    );

    // Nothing of the removed document is left behind in the table.
    let items = tables
        .scan()
        .table_name(&table)
        .send()
        .await
        .expect("scan")
        .items
        .unwrap_or_default();
    let work_key = work.hyphenated().to_string();
    assert!(!items.is_empty());
    assert!(
        items.iter().all(|item| match item.get("sk") {
            Some(aws_sdk_dynamodb::types::AttributeValue::S(sk)) => !sk.starts_with(&work_key),
            _ => false,
        }),
        "every posting and group of the removed document is deleted"
    );
}
