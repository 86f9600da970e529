//! The store backends the conformance suite runs against.

use std::sync::Arc;

use jarvis_config::AwsTarget;
use jarvis_store::Store;
use jarvis_store::dynamo::{DynamoConfig, DynamoStore};
use jarvis_store::libsql::LibsqlStore;

/// The variable naming the DynamoDB Local endpoint that `infra/test.sh` starts.
pub const DYNAMODB_ENDPOINT_VAR: &str = "JARVIS_TEST_DYNAMODB_ENDPOINT";

/// A store under test and whatever must live as long as it.
pub struct Backend {
    /// The store.
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh libSQL store on a temporary file.
pub async fn libsql() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LibsqlStore::open(&dir.path().join("jarvis.db"))
        .await
        .expect("open libsql");
    Backend {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

/// A fresh table on the DynamoDB Local engine the test command started.
///
/// Without `JARVIS_TEST_DYNAMODB_ENDPOINT` the test fails and says how to run it: the
/// suite must never pass by skipping a backend.
pub async fn dynamodb() -> Backend {
    let endpoint = std::env::var(DYNAMODB_ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{DYNAMODB_ENDPOINT_VAR} is not set: run ./infra/test.sh, which starts DynamoDB Local"
        )
    });
    let store = dynamodb_store(&endpoint, &format!("jarvis-test-{}", uuid::Uuid::new_v4())).await;
    Backend {
        store: Arc::new(store),
        _dir: None,
    }
}

/// A store on `table` (created if missing) at a local endpoint, with no feed lag.
pub async fn dynamodb_store(endpoint: &str, table: &str) -> DynamoStore {
    let mut config = DynamoConfig::new(table);
    config.aws = AwsTarget::local(endpoint);
    config.feed_lag = std::time::Duration::ZERO;
    let store = DynamoStore::connect(config).await;
    store.create_table_if_missing().await.expect("create table");
    store
}
