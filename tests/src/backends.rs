//! The store backends the conformance suite runs against.

use std::sync::Arc;

use jarvis_shared::store::Store;
use jarvis_shared::store::libsql::LibsqlStore;

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
