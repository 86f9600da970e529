//! Store operations counted and timed (`store_operations_total`,
//! `store_operation_duration_seconds`, by backend and operation): [`open`](crate::open)
//! wraps every store it opens in [`Metered`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::{Change, Key, ListQuery, Store, StoreError, Stored, Write};

/// `inner`, with each operation recorded through the `metrics` facade.
pub struct Metered {
    inner: Arc<dyn Store>,
}

impl Metered {
    /// Records the operations of `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner }
    }

    async fn record<T>(&self, op: &'static str, future: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = future.await;
        let backend = self.inner.backend();
        metrics::counter!("store_operations_total", "backend" => backend, "op" => op).increment(1);
        metrics::histogram!("store_operation_duration_seconds", "backend" => backend, "op" => op)
            .record(started.elapsed().as_secs_f64());
        out
    }
}

impl fmt::Debug for Metered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Metered").field(&self.inner).finish()
    }
}

#[async_trait]
impl Store for Metered {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn max_document_bytes(&self) -> usize {
        self.inner.max_document_bytes()
    }
    fn deadline(&self) -> Option<Instant> {
        self.inner.deadline()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.record("ping", self.inner.ping()).await
    }
    async fn get(&self, key: &Key) -> Result<Option<Stored>, StoreError> {
        self.record("get", self.inner.get(key)).await
    }
    async fn put(&self, key: &Key, write: Write<'_>) -> Result<u64, StoreError> {
        self.record("put", self.inner.put(key, write)).await
    }
    async fn list(
        &self,
        partition: &str,
        query: ListQuery<'_>,
    ) -> Result<Vec<(Key, Stored)>, StoreError> {
        self.record("list", self.inner.list(partition, query)).await
    }
    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        self.record("changes", self.inner.changes(after, limit))
            .await
    }
    async fn load_cursor(&self, peer: &str) -> Result<Option<String>, StoreError> {
        self.record("load_cursor", self.inner.load_cursor(peer))
            .await
    }
    async fn save_cursor(&self, peer: &str, cursor: &str) -> Result<(), StoreError> {
        self.record("save_cursor", self.inner.save_cursor(peer, cursor))
            .await
    }
    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        self.record("purge_expired", self.inner.purge_expired(now))
            .await
    }
    async fn feed_floor(&self) -> Result<u64, StoreError> {
        self.record("feed_floor", self.inner.feed_floor()).await
    }
    async fn feed_head(&self) -> Result<u64, StoreError> {
        self.record("feed_head", self.inner.feed_head()).await
    }
    async fn prune_feed(&self, before: i64) -> Result<u64, StoreError> {
        self.record("prune_feed", self.inner.prune_feed(before))
            .await
    }
    async fn snapshot(
        &self,
        after: Option<&Key>,
        now: i64,
        limit: usize,
    ) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        self.record("snapshot", self.inner.snapshot(after, now, limit))
            .await
    }
}
