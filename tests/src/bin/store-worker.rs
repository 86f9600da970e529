//! A separate OS process merging into a libSQL file, for the multi-process tests:
//! `store-worker <db-path> <worker-name> <merges>` increments the shared counter and adds
//! `merges` elements named after the worker to the shared OR-set, one merge each.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use jarvis_crdt::{GCounter, OrSet, ReplicaId};
use jarvis_store::libsql::LibsqlStore;
use jarvis_store::{Key, MergeOptions, RetryPolicy, Store};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, worker, merges] = args.as_slice() else {
        eprintln!("usage: store-worker <db-path> <worker-name> <merges>");
        return ExitCode::FAILURE;
    };
    let Ok(merges) = merges.parse::<usize>() else {
        eprintln!("merges must be a number");
        return ExitCode::FAILURE;
    };
    match run(PathBuf::from(path), worker, merges).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("store-worker {worker}: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: PathBuf, worker: &str, merges: usize) -> Result<(), Box<dyn std::error::Error>> {
    let store: Arc<dyn Store> = Arc::new(LibsqlStore::open(&path).await?);
    // Both processes belong to one deployment: one replica id, serialised by the store.
    let replica = ReplicaId::from_name("shared-file");
    let options = MergeOptions {
        retry: Some(RetryPolicy {
            deadline: Duration::from_secs(60),
            ..RetryPolicy::default()
        }),
        ..MergeOptions::default()
    };
    let counter = Key::new("processes", "counter")?;
    let set = Key::new("processes", "orset")?;
    for i in 0..merges {
        store
            .update_with(
                &counter,
                |c: &mut GCounter| c.increment(replica, 1),
                options,
            )
            .await?;
        let element = format!("{worker}-{i}");
        store
            .update_with(
                &set,
                |s: &mut OrSet<String>| s.add(replica, element.clone()),
                options,
            )
            .await?;
    }
    Ok(())
}
