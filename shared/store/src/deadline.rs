//! A store handle that knows when the request it serves must answer.
//!
//! The HTTP layer wraps the process's store in [`Deadlined`] per request (on Lambda, with the
//! invocation's deadline), so a contended merge stops retrying while the function can still
//! answer; the store itself never reads anything of HTTP.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::{Change, Key, ListQuery, Store, StoreError, Stored, Write};

/// `inner`, bounded by `due`: every operation is `inner`'s, and [`Store::deadline`] is `due`.
pub struct Deadlined {
    inner: Arc<dyn Store>,
    due: Instant,
}

impl fmt::Debug for Deadlined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deadlined")
            .field("inner", &self.inner)
            .field("due", &self.due)
            .finish()
    }
}

/// `store` bounded by `due`; `store` itself when there is no deadline.
pub fn with_deadline(store: Arc<dyn Store>, due: Option<Instant>) -> Arc<dyn Store> {
    match due {
        Some(due) => Arc::new(Deadlined { inner: store, due }),
        None => store,
    }
}

#[async_trait]
impl Store for Deadlined {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn max_document_bytes(&self) -> usize {
        self.inner.max_document_bytes()
    }
    fn deadline(&self) -> Option<Instant> {
        Some(self.inner.deadline().map_or(self.due, |d| d.min(self.due)))
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn get(&self, key: &Key) -> Result<Option<Stored>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &Key, write: Write<'_>) -> Result<u64, StoreError> {
        self.inner.put(key, write).await
    }
    async fn list(
        &self,
        partition: &str,
        query: ListQuery<'_>,
    ) -> Result<Vec<(Key, Stored)>, StoreError> {
        self.inner.list(partition, query).await
    }
    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        self.inner.changes(after, limit).await
    }
    async fn load_cursor(&self, peer: &str) -> Result<Option<String>, StoreError> {
        self.inner.load_cursor(peer).await
    }
    async fn save_cursor(&self, peer: &str, cursor: &str) -> Result<(), StoreError> {
        self.inner.save_cursor(peer, cursor).await
    }
    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        self.inner.purge_expired(now).await
    }
    async fn feed_floor(&self) -> Result<u64, StoreError> {
        self.inner.feed_floor().await
    }
    async fn feed_head(&self) -> Result<u64, StoreError> {
        self.inner.feed_head().await
    }
    async fn prune_feed(&self, before: i64) -> Result<u64, StoreError> {
        self.inner.prune_feed(before).await
    }
    async fn snapshot(
        &self,
        after: Option<&Key>,
        now: i64,
        limit: usize,
    ) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        self.inner.snapshot(after, now, limit).await
    }
}
