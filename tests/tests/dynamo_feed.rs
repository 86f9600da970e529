//! DynamoDB's change feed keeps a document's latest state at a position that moves with every
//! write, and the cursor only advances to positions older than the feed lag. A document
//! written more often than that lag must still reach peers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jarvis_config::AwsTarget;
use jarvis_crdt::{Codec, GCounter, ReplicaId};
use jarvis_store::dynamo::{DEFAULT_FEED_LAG, DynamoConfig, DynamoStore};
use jarvis_store::{Key, Store};
use jarvis_tests::backends::DYNAMODB_ENDPOINT_VAR;

#[tokio::test]
async fn a_document_written_at_2_hz_reaches_a_pulling_peer_within_a_bounded_lag() {
    let endpoint = std::env::var(DYNAMODB_ENDPOINT_VAR)
        .unwrap_or_else(|_| panic!("{DYNAMODB_ENDPOINT_VAR} is not set: run ./infra/test.sh"));
    let mut config = DynamoConfig::new(format!("jarvis-hot-{}", uuid::Uuid::new_v4()));
    config.aws = AwsTarget::local(&endpoint);
    config.feed_lag = DEFAULT_FEED_LAG;
    let dynamo = DynamoStore::connect(config).await;
    dynamo.create_table_if_missing().await.expect("table");
    let store: Arc<dyn Store> = Arc::new(dynamo);
    let key = Key::new("crdt#hot", "counter#c").expect("key");

    let started = Instant::now();
    let writer = {
        let store = Arc::clone(&store);
        let key = key.clone();
        tokio::spawn(async move {
            let mut written = Vec::new();
            let mut ticker = tokio::time::interval(Duration::from_millis(500));
            while started.elapsed() < Duration::from_secs(20) {
                ticker.tick().await;
                let doc = store
                    .update(&key, |c: &mut GCounter| {
                        c.increment(ReplicaId::from_u64(1), 1)
                    })
                    .await
                    .expect("write");
                written.push((started.elapsed(), doc.state.value()));
            }
            written
        })
    };

    let mut cursor = jarvis_replication::FeedCursor::Seq(0);
    let mut seen = Vec::new();
    let mut latest = 0;
    while started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let page = jarvis_replication::changes_page(store.as_ref(), "a", &cursor, 500)
            .await
            .expect("page");
        for change in &page.changes {
            if change.partition == "crdt#hot" {
                let bytes = base64_decode(&change.payload);
                latest = latest.max(GCounter::decode(&bytes).expect("state").value());
            }
        }
        cursor = jarvis_replication::FeedCursor::parse(&page.next_cursor).expect("cursor");
        seen.push((started.elapsed(), latest));
    }
    let written = writer.await.expect("writer");

    // At every poll, the peer has at least what was written two seconds earlier.
    for (at, value) in &seen {
        let due = written
            .iter()
            .filter(|(w, _)| *w + Duration::from_secs(2) <= *at)
            .map(|(_, v)| *v)
            .max()
            .unwrap_or(0);
        assert!(
            *value >= due,
            "at {at:?} the peer had {value}, but {due} was written 2 s earlier"
        );
    }
    assert!(latest >= 30, "the peer kept up: {latest}");
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}
