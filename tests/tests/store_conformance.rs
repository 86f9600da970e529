//! One conformance suite for every store backend: the same behaviours, checked the same way.

use std::sync::Arc;
use std::time::Duration;

use jarvis_crdt::{Crdt, GCounter, GSet, OrSet, ReplicaId};
use jarvis_store::{Key, MergeOptions, RetryPolicy, Store, StoreError, Write, now_secs};

fn key(partition: &str, sort: &str) -> Key {
    Key::new(partition, sort).expect("valid key")
}

fn replica() -> ReplicaId {
    ReplicaId::from_name("conformance")
}

/// Generous: these tests are about correctness under contention, not latency.
fn patient() -> MergeOptions {
    MergeOptions {
        retry: Some(RetryPolicy {
            deadline: Duration::from_secs(60),
            ..RetryPolicy::default()
        }),
        ..MergeOptions::default()
    }
}

async fn reading_an_absent_document_gives_none(store: Arc<dyn Store>) {
    let doc = store
        .read::<GCounter>(&key("p", "absent"))
        .await
        .expect("read");
    assert!(doc.is_none());
}

async fn updates_create_then_build_on_the_stored_state(store: Arc<dyn Store>) {
    let k = key("counters", "visits");
    let first = store
        .update(&k, |c: &mut GCounter| c.increment(replica(), 2))
        .await
        .expect("first");
    assert_eq!((first.state.value(), first.version), (2, 1));
    let second = store
        .update(&k, |c: &mut GCounter| c.increment(replica(), 3))
        .await
        .expect("second");
    assert_eq!((second.state.value(), second.version), (5, 2));
    let read = store
        .read::<GCounter>(&k)
        .await
        .expect("read")
        .expect("present");
    assert_eq!(read.state.value(), 5);
}

async fn merging_a_remote_state_joins_it(store: Arc<dyn Store>) {
    let k = key("counters", "joined");
    store
        .update(&k, |c: &mut GCounter| c.increment(replica(), 4))
        .await
        .expect("local");
    let mut remote = GCounter::new();
    remote.increment(ReplicaId::from_name("elsewhere"), 10);
    let merged = store.merge(&k, remote).await.expect("merge");
    assert_eq!(merged.value(), 14);
}

async fn a_duplicate_delta_changes_nothing_and_writes_nothing(store: Arc<dyn Store>) {
    let k = key("sets", "tags");
    let mut delta = OrSet::new();
    delta.add(ReplicaId::from_name("elsewhere"), "rust".to_owned());
    let feed_before = store.changes(0, 10_000).await.expect("feed").len();
    let once = store
        .merge_with(&k, delta.clone(), MergeOptions::default())
        .await
        .expect("once");
    let twice = store
        .merge_with(&k, delta, MergeOptions::default())
        .await
        .expect("twice");
    assert_eq!(once.state, twice.state);
    assert_eq!(once.version, twice.version, "no second write");
    let feed_after = store.changes(0, 10_000).await.expect("feed").len();
    assert_eq!(feed_after, feed_before + 1, "one feed entry");
}

async fn a_write_on_a_stale_version_is_a_conflict(store: Arc<dyn Store>) {
    let k = key("raw", "doc");
    let write = |expected_version| Write {
        expected_version,
        state: b"state",
        delta: b"delta",
        expires_at: None,
    };
    assert_eq!(store.put(&k, write(0)).await.expect("create"), 1);
    assert!(matches!(
        store.put(&k, write(0)).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        store.put(&k, write(7)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.put(&k, write(1)).await.expect("update"), 2);
    let stored = store.get(&k).await.expect("get").expect("present");
    assert_eq!(
        (stored.bytes.as_slice(), stored.version),
        (&b"state"[..], 2)
    );
}

async fn listing_pages_through_a_prefix_in_sort_order(store: Arc<dyn Store>) {
    for i in (0..25).rev() {
        let k = key("archive#local", &format!("entry#{i:03}"));
        store.merge(&k, GSet::from_iter([i])).await.expect("merge");
    }
    store
        .merge(&key("archive#local", "other#1"), GSet::from_iter([99]))
        .await
        .expect("merge");
    store
        .merge(
            &key("archive#elsewhere", "entry#000"),
            GSet::from_iter([98]),
        )
        .await
        .expect("merge");

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_documents::<GSet<i32>>("archive#local", Some("entry#"), cursor.as_deref(), 10)
            .await
            .expect("page");
        pages += 1;
        seen.extend(page.items.iter().map(|doc| doc.key.sort().to_owned()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("entry#{i:03}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
}

async fn a_cursor_that_is_not_ours_is_rejected(store: Arc<dyn Store>) {
    let err = store
        .list_documents::<GSet<i32>>("p", None, Some("not-hex!"), 10)
        .await
        .expect_err("garbage cursor");
    assert!(matches!(err, StoreError::InvalidKey("cursor")), "{err:?}");
}

async fn expired_documents_read_as_absent_and_start_over(store: Arc<dyn Store>) {
    let k = key("sessions", "expired");
    let past = MergeOptions {
        expires_at: Some(now_secs() - 10),
        ..MergeOptions::default()
    };
    store
        .update_with(&k, |c: &mut GCounter| c.increment(replica(), 5), past)
        .await
        .expect("write");
    assert!(store.read::<GCounter>(&k).await.expect("read").is_none());
    let listed = store
        .list_documents::<GCounter>("sessions", None, None, 10)
        .await
        .expect("list");
    assert!(listed.items.is_empty());
    let fresh = store
        .update(&k, |c: &mut GCounter| c.increment(replica(), 1))
        .await
        .expect("rewrite");
    assert_eq!(fresh.state.value(), 1, "an expired document starts over");
    // Written conditionally on what is stored: over the expired item (version 2), or, when
    // the engine's time-to-live sweep deleted it in between (DynamoDB's, in the
    // background), as a new one (version 1).
    assert!(
        [1, 2].contains(&fresh.version),
        "written conditionally on the stored version: {}",
        fresh.version
    );
}

async fn purging_removes_only_expired_documents(store: Arc<dyn Store>) {
    let past = MergeOptions {
        expires_at: Some(now_secs() - 10),
        ..MergeOptions::default()
    };
    let future = MergeOptions {
        expires_at: Some(now_secs() + 3_600),
        ..MergeOptions::default()
    };
    store
        .merge_with(&key("ttl", "old"), GSet::from_iter([1]), past)
        .await
        .expect("old");
    store
        .merge_with(&key("ttl", "new"), GSet::from_iter([1]), future)
        .await
        .expect("new");
    assert_eq!(store.purge_expired(now_secs()).await.expect("purge"), 1);
    assert!(store.get(&key("ttl", "old")).await.expect("get").is_none());
    assert!(
        store
            .read::<GSet<i32>>(&key("ttl", "new"))
            .await
            .expect("read")
            .is_some()
    );
}

async fn the_change_feed_lets_a_replica_catch_up(store: Arc<dyn Store>) {
    use jarvis_crdt::Codec;
    let start = store
        .changes(0, 100_000)
        .await
        .expect("feed")
        .last()
        .map_or(0, |c| c.seq);
    for i in 0..6 {
        let k = key("feed", &format!("doc{}", i % 3));
        store.merge(&k, GSet::from_iter([i])).await.expect("merge");
    }
    // Page through the feed two entries at a time, joining every payload.
    let mut caught_up: std::collections::BTreeMap<Key, GSet<i32>> = Default::default();
    let mut cursor = start;
    let mut entries = 0;
    loop {
        let page = store.changes(cursor, 2).await.expect("feed page");
        if page.is_empty() {
            break;
        }
        assert!(page.windows(2).all(|w| w[0].seq < w[1].seq), "ascending");
        assert!(page[0].seq > cursor, "strictly after the cursor");
        for change in page {
            entries += 1;
            let state = GSet::<i32>::decode(change.payload.bytes()).expect("payload decodes");
            caught_up.entry(change.key.clone()).or_default().join(state);
            cursor = change.seq;
        }
    }
    assert!(entries >= 3, "every changed document is in the feed");
    for i in 0..3 {
        let k = key("feed", &format!("doc{i}"));
        let stored = store
            .read::<GSet<i32>>(&k)
            .await
            .expect("read")
            .expect("present");
        assert_eq!(caught_up.get(&k), Some(&stored.state), "{k:?} caught up");
    }
}

async fn a_document_over_the_backend_limit_is_refused_before_writing(store: Arc<dyn Store>) {
    let k = key("big", "doc");
    let huge = "x".repeat(store.max_document_bytes() + 1);
    let err = store
        .merge(&k, GSet::from_iter([huge]))
        .await
        .expect_err("too large");
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err:?}");
    assert!(
        store.get(&k).await.expect("get").is_none(),
        "nothing written"
    );
}

async fn peer_cursors_persist_and_stay_out_of_the_feed(store: Arc<dyn Store>) {
    assert_eq!(
        store.load_cursor("http://peer-a").await.expect("load"),
        None
    );
    let feed_before = store.changes(0, 100_000).await.expect("feed").len();
    store
        .save_cursor("http://peer-a", "41")
        .await
        .expect("save");
    store
        .save_cursor("http://peer-a", "42")
        .await
        .expect("save again");
    store
        .save_cursor("http://peer-b", "7")
        .await
        .expect("save b");
    assert_eq!(
        store
            .load_cursor("http://peer-a")
            .await
            .expect("load")
            .as_deref(),
        Some("42")
    );
    assert_eq!(
        store
            .load_cursor("http://peer-b")
            .await
            .expect("load")
            .as_deref(),
        Some("7")
    );
    assert_eq!(
        store.changes(0, 100_000).await.expect("feed").len(),
        feed_before
    );
}

async fn replica_local_documents_stay_out_of_the_feed(store: Arc<dyn Store>) {
    let start = store
        .changes(0, 100_000)
        .await
        .expect("feed")
        .last()
        .map_or(0, |c| c.seq);
    let local = key("~rate#alice", "w#1");
    let shared = key("local-test", "doc");
    assert!(!local.is_replicated() && shared.is_replicated());
    store
        .update(&local, |c: &mut GCounter| c.increment(replica(), 1))
        .await
        .expect("local write");
    store
        .update(&shared, |c: &mut GCounter| c.increment(replica(), 1))
        .await
        .expect("replicated write");
    let changed: Vec<Key> = store
        .changes(start, 100)
        .await
        .expect("feed")
        .into_iter()
        .map(|c| c.key)
        .collect();
    assert_eq!(changed, vec![shared]);
    let read = store.read::<GCounter>(&local).await.expect("read");
    assert_eq!(read.map(|d| d.state.value()), Some(1), "still stored");
}

async fn concurrent_writers_lose_no_update(store: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const MERGES: usize = 250;
    let counter = key("contended", "counter");
    let set = key("contended", "orset");
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        let (counter, set) = (counter.clone(), set.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..MERGES {
                store
                    .update_with(
                        &counter,
                        |c: &mut GCounter| c.increment(replica(), 1),
                        patient(),
                    )
                    .await
                    .expect("counter merge");
                let element = format!("w{writer}-{i}");
                store
                    .update_with(
                        &set,
                        |s: &mut OrSet<String>| s.add(replica(), element.clone()),
                        patient(),
                    )
                    .await
                    .expect("set merge");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer finished");
    }
    let total = store
        .read::<GCounter>(&counter)
        .await
        .expect("read")
        .expect("present");
    assert_eq!(total.state.value(), (WRITERS * MERGES) as u64);
    let elements = store
        .read::<OrSet<String>>(&set)
        .await
        .expect("read")
        .expect("present");
    assert_eq!(elements.state.len(), WRITERS * MERGES);
}

/// libSQL keeps every delta in its feed: sync cost follows the number of changes.
#[tokio::test]
async fn the_libsql_feed_holds_one_delta_per_merge() {
    let backend = jarvis_tests::backends::libsql().await;
    let store = backend.store.clone();
    for i in 0..4 {
        store
            .merge(&key("feed", "one"), GSet::from_iter([i]))
            .await
            .expect("merge");
    }
    let changes = store.changes(0, 100).await.expect("feed");
    assert_eq!(changes.len(), 4);
    assert!(
        changes
            .iter()
            .all(|c| matches!(c.payload, jarvis_store::Payload::Delta(_)))
    );
}

/// Runs every check against every backend, one test per pair: `libsql::…`, `dynamodb::…`.
macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        conformance!(@backend libsql: $($check),*);
        conformance!(@backend dynamodb: $($check),*);
    };
    (@backend $backend:ident: $($check:ident),*) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let backend = jarvis_tests::backends::$backend().await;
                    super::$check(backend.store.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    reading_an_absent_document_gives_none,
    updates_create_then_build_on_the_stored_state,
    merging_a_remote_state_joins_it,
    a_duplicate_delta_changes_nothing_and_writes_nothing,
    a_write_on_a_stale_version_is_a_conflict,
    listing_pages_through_a_prefix_in_sort_order,
    a_cursor_that_is_not_ours_is_rejected,
    expired_documents_read_as_absent_and_start_over,
    purging_removes_only_expired_documents,
    the_change_feed_lets_a_replica_catch_up,
    a_document_over_the_backend_limit_is_refused_before_writing,
    peer_cursors_persist_and_stay_out_of_the_feed,
    replica_local_documents_stay_out_of_the_feed,
    concurrent_writers_lose_no_update,
);
