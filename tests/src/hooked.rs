//! A store that lets a test watch or disturb what the application does with it.

use std::sync::Arc;

use async_trait::async_trait;
use jarvis_store::{Change, Key, ListQuery, Store, StoreError, Stored, Write};

/// A document operation, as DynamoDB names it in IAM policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// `dynamodb:GetItem` (a read, or the health probe).
    GetItem,
    /// `dynamodb:PutItem` (a conditional write).
    PutItem,
    /// `dynamodb:Query` (a partition listing).
    Query,
    /// `dynamodb:Scan` (the expiry purge's search, across partitions).
    Scan,
    /// `dynamodb:DeleteItem` (the expiry purge's conditional deletes).
    DeleteItem,
}

impl Operation {
    /// The IAM action.
    pub fn action(self) -> &'static str {
        match self {
            Self::GetItem => "dynamodb:GetItem",
            Self::PutItem => "dynamodb:PutItem",
            Self::Query => "dynamodb:Query",
            Self::Scan => "dynamodb:Scan",
            Self::DeleteItem => "dynamodb:DeleteItem",
        }
    }
}

/// Delegates to `inner`, calling `hook` with the operation and partition before every read,
/// write and listing; an error from the hook fails the call instead.
pub struct Hooked<F> {
    /// The real store.
    pub inner: Arc<dyn Store>,
    /// Called before each operation.
    pub hook: F,
}

impl<F> std::fmt::Debug for Hooked<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooked")
            .field("inner", &self.inner)
            .finish()
    }
}

#[async_trait]
impl<F> Store for Hooked<F>
where
    F: Fn(Operation, &str) -> Result<(), StoreError> + Send + Sync,
{
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn max_document_bytes(&self) -> usize {
        self.inner.max_document_bytes()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        (self.hook)(Operation::GetItem, "_health")?;
        self.inner.ping().await
    }
    async fn get(&self, key: &Key) -> Result<Option<Stored>, StoreError> {
        (self.hook)(Operation::GetItem, key.partition())?;
        self.inner.get(key).await
    }
    async fn put(&self, key: &Key, write: Write<'_>) -> Result<u64, StoreError> {
        (self.hook)(Operation::PutItem, key.partition())?;
        self.inner.put(key, write).await
    }
    async fn list(
        &self,
        partition: &str,
        query: ListQuery<'_>,
    ) -> Result<Vec<(Key, Stored)>, StoreError> {
        (self.hook)(Operation::Query, partition)?;
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
        // Every partition: what the purge may reach is the whole table.
        (self.hook)(Operation::Scan, "*")?;
        (self.hook)(Operation::DeleteItem, "*")?;
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
