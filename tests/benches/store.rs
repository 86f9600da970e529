//! Store benchmark: `cargo bench -p jarvis-tests --bench store`.
//!
//! 1. Merge-on-write operations per second on embedded libSQL against a raw SQLite upsert of
//!    the same bytes, same file settings (WAL, synchronous=NORMAL), same run.
//! 2. Capacity consumed per uncontended merge on DynamoDB (needs DynamoDB Local: set
//!    `JARVIS_TEST_DYNAMODB_ENDPOINT`, as `infra/test.sh` does).
//! 3. Bytes a sync pull transfers for 10 changes on a 100,000-element OR-set.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use jarvis_config::AwsTarget;
use jarvis_crdt::{Codec, GCounter, OrSet, ReplicaId};
use jarvis_store::dynamo::{DynamoConfig, DynamoStore};
use jarvis_store::libsql::LibsqlStore;
use jarvis_store::{Key, Store};
use libsql::params;

const OPERATIONS: usize = 5_000;
const KEYS: usize = 100;

fn key(i: usize) -> Key {
    Key::new("bench", format!("counter#{:03}", i % KEYS)).expect("key")
}

async fn merge_rate(store: Arc<dyn Store>, replica: ReplicaId) -> f64 {
    // Warm the keys so both sides update existing rows.
    for i in 0..KEYS {
        store
            .update(&key(i), |c: &mut GCounter| c.increment(replica, 1))
            .await
            .expect("merge");
    }
    let started = Instant::now();
    for i in 0..OPERATIONS {
        store
            .update(&key(i), |c: &mut GCounter| c.increment(replica, 1))
            .await
            .expect("merge");
    }
    OPERATIONS as f64 / started.elapsed().as_secs_f64()
}

/// Upserts, for each operation, exactly the bytes the merge of that operation wrote (SQLite
/// skips rewriting identical bytes, so a constant value would measure no write at all).
async fn raw_upsert_rate(dir: &std::path::Path, states: &[Vec<u8>]) -> f64 {
    let db = libsql::Builder::new_local(dir.join("raw.db"))
        .build()
        .await
        .expect("open raw");
    let conn = db.connect().expect("connect");
    let mut rows = conn
        .query("PRAGMA journal_mode=WAL", ())
        .await
        .expect("wal");
    while rows.next().await.expect("row").is_some() {}
    drop(rows);
    conn.execute_batch(
        "PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;
         CREATE TABLE raw (partition TEXT NOT NULL, sort TEXT NOT NULL, state BLOB NOT NULL,
                           PRIMARY KEY (partition, sort)) WITHOUT ROWID;",
    )
    .await
    .expect("schema");
    let upsert = "INSERT INTO raw (partition, sort, state) VALUES (?1, ?2, ?3)
                  ON CONFLICT (partition, sort) DO UPDATE SET state = excluded.state";
    // Prepared once, as the store prepares its own statements.
    let statement = conn.prepare(upsert).await.expect("prepare");
    for (i, bytes) in states.iter().take(KEYS).enumerate() {
        let k = key(i);
        statement.reset();
        statement
            .execute(params![k.partition(), k.sort(), bytes.as_slice()])
            .await
            .expect("upsert");
    }
    let started = Instant::now();
    for (i, bytes) in states.iter().skip(KEYS).enumerate() {
        let k = key(i);
        statement.reset();
        statement
            .execute(params![k.partition(), k.sort(), bytes.as_slice()])
            .await
            .expect("upsert");
    }
    OPERATIONS as f64 / started.elapsed().as_secs_f64()
}

async fn libsql_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = ReplicaId::from_name("bench");
    let store: Arc<dyn Store> = Arc::new(
        LibsqlStore::open(&dir.path().join("jarvis.db"))
            .await
            .expect("open"),
    );
    let merges = merge_rate(Arc::clone(&store), replica).await;
    // The same bytes the merges wrote: each key's counter state after each increment,
    // encoded before timing so the baseline pays for nothing but the upsert.
    let states: Vec<Vec<u8>> = (0..KEYS + OPERATIONS)
        .map(|i| {
            let mut counter = GCounter::new();
            counter.increment(replica, (i / KEYS + 1) as u64);
            counter.encode().expect("encode")
        })
        .collect();
    let raw = raw_upsert_rate(dir.path(), &states).await;
    println!(
        "libSQL merge on write: {merges:.0} ops/s; raw SQLite upsert of the same bytes: {raw:.0} ops/s; ratio {:.2} (target >= 0.5)",
        merges / raw
    );
}

async fn dynamodb_figures() {
    let Ok(endpoint) = std::env::var("JARVIS_TEST_DYNAMODB_ENDPOINT") else {
        println!(
            "DynamoDB: skipped (set JARVIS_TEST_DYNAMODB_ENDPOINT to a DynamoDB Local endpoint)"
        );
        return;
    };
    let mut config = DynamoConfig::new(format!("jarvis-bench-{}", uuid::Uuid::new_v4()));
    config.aws = AwsTarget::local(endpoint);
    let dynamo = DynamoStore::connect(config).await;
    dynamo.create_table_if_missing().await.expect("table");
    let dynamo = Arc::new(dynamo);
    let store: Arc<dyn Store> = dynamo.clone();
    let replica = ReplicaId::from_name("bench");
    let k = Key::new("bench", "counter").expect("key");
    store
        .update(&k, |c: &mut GCounter| c.increment(replica, 1))
        .await
        .expect("create");
    let before = dynamo.consumed();
    const MERGES: usize = 100;
    for _ in 0..MERGES {
        store
            .update(&k, |c: &mut GCounter| c.increment(replica, 1))
            .await
            .expect("merge");
    }
    let after = dynamo.consumed();
    let per = |a: f64, b: f64| (a - b) / MERGES as f64;
    println!(
        "DynamoDB, per uncontended merge: {:.2} read requests, {:.2} write requests; {:.2} read units, {:.2} write units on the table, {:.2} on the feed index (as the engine reports them)",
        per(after.read_requests as f64, before.read_requests as f64),
        per(after.write_requests as f64, before.write_requests as f64),
        per(after.table_reads, before.table_reads),
        per(after.table_writes, before.table_writes),
        per(after.index_writes, before.index_writes),
    );
}

async fn sync_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(
        LibsqlStore::open(&dir.path().join("jarvis.db"))
            .await
            .expect("open"),
    );
    let replica = ReplicaId::from_name("bench");
    let k = Key::new("crdt#local", "orset#big").expect("key");
    let mut big = OrSet::new();
    for i in 0..100_000 {
        big.add(replica, format!("element-{i:06}"));
    }
    let full_state = big.encode().expect("encode").len();
    store.merge(&k, big).await.expect("seed");
    let cursor = store
        .changes(0, 10)
        .await
        .expect("feed")
        .last()
        .map_or(0, |c| c.seq);
    for i in 0..10 {
        store
            .update(&k, |set: &mut OrSet<String>| {
                if i % 2 == 0 {
                    set.add(replica, format!("new-{i}"))
                } else {
                    set.remove(&format!("element-{:06}", i * 1000))
                }
            })
            .await
            .expect("change");
    }
    let page = jarvis_replication::changes_page(
        store.as_ref(),
        "bench",
        &jarvis_replication::FeedCursor::Seq(cursor),
        500,
    )
    .await
    .expect("page");
    let json = serde_json::to_vec(&page).expect("json");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json).expect("gzip");
    let gzipped = gz.finish().expect("gzip").len();
    println!(
        "Sync of 10 changes on a 100,000-element OR-set: {} changes, {} bytes of JSON, {} gzipped (the full state is {} bytes)",
        page.changes.len(),
        json.len(),
        gzipped,
        full_state,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        libsql_figures().await;
        dynamodb_figures().await;
        sync_figures().await;
    });
}
