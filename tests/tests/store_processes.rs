//! Two OS processes merging into one libSQL file lose no update.

use std::process::Command;

use jarvis_crdt::{GCounter, OrSet};
use jarvis_store::libsql::LibsqlStore;
use jarvis_store::{Key, Store};

#[tokio::test]
async fn two_processes_merging_into_one_libsql_file_lose_no_update() {
    const MERGES: usize = 300;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jarvis.db");
    let workers: Vec<_> = ["left", "right"]
        .iter()
        .map(|name| {
            Command::new(env!("CARGO_BIN_EXE_store-worker"))
                .arg(&path)
                .arg(name)
                .arg(MERGES.to_string())
                .spawn()
                .expect("worker starts")
        })
        .collect();
    for mut worker in workers {
        let status = worker.wait().expect("worker exits");
        assert!(status.success(), "worker failed: {status:?}");
    }

    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(LibsqlStore::open(&path).await.expect("open"));
    let counter = store
        .read::<GCounter>(&Key::new("processes", "counter").expect("key"))
        .await
        .expect("read")
        .expect("present");
    assert_eq!(counter.state.value(), 2 * MERGES as u64);
    let set = store
        .read::<OrSet<String>>(&Key::new("processes", "orset").expect("key"))
        .await
        .expect("read")
        .expect("present");
    assert_eq!(set.state.len(), 2 * MERGES);
    assert!(
        set.state.contains(&"left-0".to_owned()) && set.state.contains(&"right-299".to_owned())
    );
}
