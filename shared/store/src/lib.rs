//! The state store: CRDT documents addressed by `(partition, sort key)`, merged on write.
//!
//! Two layers:
//!
//! - [`Store`], the narrow trait each backend implements over encoded bytes: read a
//!   document, write it *only if its version is still the one read*, list a partition by
//!   sort-key range, read the change feed. [`libsql::LibsqlStore`] is the embedded default.
//! - Typed operations on `dyn Store` ([`read`](Store::read), [`merge`](Store::merge),
//!   [`list_documents`](Store::list_documents)) that callers use: `store.merge(&key, delta)`
//!   reads the document, joins the delta, and writes back conditionally on the version it
//!   read. On a conflict it re-reads and re-joins after a jittered backoff until a deadline;
//!   the join being commutative, associative and idempotent, a retry can neither lose nor
//!   double an update.
//!
//! Every merge also appends its delta to the change feed that replicas sync from.
//! Expired documents (see [`MergeOptions::expires_at`]) read as absent on every backend,
//! whenever the backend physically deletes them.
//!
//! Owns persistence; changes when a backend or the stored layout does. Each backend is a
//! cargo feature (`libsql` embedded and remote, `libsql-remote` remote only, `dynamodb`) so a
//! function links only the one it is deployed with. May import the CRDTs, configuration and
//! health; never HTTP: a request's deadline arrives as a value ([`deadline`]).

#![deny(missing_docs)]

pub mod clock;
pub mod deadline;
#[cfg(feature = "dynamodb")]
pub mod dynamo;
pub mod ids;
#[cfg(feature = "libsql-remote")]
pub mod libsql;
pub mod metered;
pub mod principal;
#[cfg(feature = "libsql-remote")]
pub mod remote;
pub mod retry;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use jarvis_config::StoreConfig;
use jarvis_crdt::{Codec, Crdt, DecodeError};
/// The largest document any backend stores (libSQL's limit; DynamoDB's item limit is
/// smaller), so a reader of another replica's feed can bound what it accepts.
pub const LARGEST_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// Any error, as a cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
use jarvis_health::{Finding, HealthCheck, Status};
pub use retry::RetryPolicy;

/// Largest partition or sort key, in bytes (DynamoDB's sort-key limit).
pub const MAX_KEY_BYTES: usize = 1024;

/// The address of a document.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Key {
    partition: String,
    sort: String,
}

impl Key {
    /// A key; both parts non-empty, at most [`MAX_KEY_BYTES`] bytes, without NUL.
    pub fn new(partition: impl Into<String>, sort: impl Into<String>) -> Result<Self, StoreError> {
        let (partition, sort) = (partition.into(), sort.into());
        for (part, value) in [("partition", &partition), ("sort", &sort)] {
            if value.is_empty() || value.len() > MAX_KEY_BYTES || value.contains('\0') {
                return Err(StoreError::InvalidKey(part));
            }
        }
        Ok(Self { partition, sort })
    }

    /// The partition key.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The sort key.
    pub fn sort(&self) -> &str {
        &self.sort
    }

    /// Whether the document enters the change feed and so reaches peer replicas. Partitions
    /// starting with [`LOCAL_PARTITION_PREFIX`] hold replica-local bookkeeping (rate-limit
    /// windows, idempotency records, lockouts) that is written on every request and means
    /// nothing elsewhere.
    pub fn is_replicated(&self) -> bool {
        !self.partition.starts_with(LOCAL_PARTITION_PREFIX)
    }
}

/// First character of a replica-local partition (see [`Key::is_replicated`]).
pub const LOCAL_PARTITION_PREFIX: char = '~';

/// A stored document as the backend holds it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Stored {
    /// The encoded CRDT state.
    pub bytes: Vec<u8>,
    /// Incremented by every write; the condition of the next one.
    pub version: u64,
    /// When the document expires (seconds since the Unix epoch), if ever.
    pub expires_at: Option<i64>,
}

impl Stored {
    /// Whether the document has expired at `now` (seconds since the Unix epoch).
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// A conditional write.
#[derive(Clone, Copy, Debug)]
pub struct Write<'a> {
    /// The version read; 0 when the document did not exist. The write fails with
    /// [`StoreError::Conflict`] if the stored version differs.
    pub expected_version: u64,
    /// The new encoded state.
    pub state: &'a [u8],
    /// The encoded delta that produced it, for the change feed.
    pub delta: &'a [u8],
    /// Expiry of the document after the write.
    pub expires_at: Option<i64>,
}

/// Which documents of a partition to list.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListQuery<'a> {
    /// Only sort keys starting with this.
    pub prefix: Option<&'a str>,
    /// Only sort keys after this one (exclusive), for pagination.
    pub after: Option<&'a str>,
    /// At most this many documents.
    pub limit: usize,
    /// Skip documents expired at this time (seconds since the Unix epoch).
    pub now: i64,
}

/// One entry of the change feed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Change {
    /// Position in the feed, never decreasing along it: the cursor to ask with next. (A
    /// backend may serve an entry too recent to pass the cursor over at an earlier position,
    /// and again later; joining it twice changes nothing.)
    pub seq: u64,
    /// The document changed.
    pub key: Key,
    /// What to join into the document to catch up with the change.
    pub payload: Payload,
}

/// The encoded CRDT a change carries. Either way, joining it is what a replica does.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Payload {
    /// The delta of one merge (libSQL keeps every delta: sync cost follows the changes).
    Delta(Vec<u8>),
    /// The document's whole state after its latest change (DynamoDB's feed index).
    State(Vec<u8>),
}

impl Payload {
    /// The encoded CRDT bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Delta(bytes) | Self::State(bytes) => bytes,
        }
    }
}

/// What can go wrong in the store, with the kinds callers act on kept apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The document's version changed since it was read (a concurrent writer won).
    #[error("document changed concurrently")]
    Conflict,
    /// Conflicts kept happening until the merge deadline.
    #[error("document is too contended: gave up after {attempts} attempts")]
    ConflictExhausted {
        /// How many writes were tried.
        attempts: u32,
    },
    /// The backend asked us to slow down and retries did not get through.
    #[error("store throttled the request")]
    Throttled,
    /// No such document.
    #[error("document not found")]
    NotFound,
    /// The document would exceed what the backend can store.
    #[error("document of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The backend's limit.
        limit: usize,
    },
    /// A key part is empty, too long or contains NUL.
    #[error("invalid {0} key")]
    InvalidKey(&'static str),
    /// Stored bytes do not decode: corruption or a format this build cannot read.
    #[error("stored document does not decode")]
    Corrupt(#[source] DecodeError),
    /// The backend cannot be reached or refused the operation; retrying later may work.
    #[error("store unavailable")]
    Unavailable(#[source] BoxError),
    /// The store could not be opened or prepared (bad path, failed migration…).
    #[error("store could not be opened: {context}")]
    Open {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

/// A document store backend.
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// The backend's name as reported by `/health`, e.g. `libsql`.
    fn backend(&self) -> &'static str;

    /// Largest encoded document the backend accepts.
    fn max_document_bytes(&self) -> usize;

    /// Proves the store answers, with the cheapest round trip the backend has.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Reads a document, expired or not (strongly consistent).
    async fn get(&self, key: &Key) -> Result<Option<Stored>, StoreError>;

    /// Writes a document if its version is still `write.expected_version`, and records the
    /// delta in the change feed, atomically. Returns the new version. A state larger than
    /// [`max_document_bytes`](Self::max_document_bytes) is refused with
    /// [`StoreError::TooLarge`] before anything is written.
    async fn put(&self, key: &Key, write: Write<'_>) -> Result<u64, StoreError>;

    /// Lists a partition in ascending sort-key order, skipping expired documents.
    async fn list(
        &self,
        partition: &str,
        query: ListQuery<'_>,
    ) -> Result<Vec<(Key, Stored)>, StoreError>;

    /// Change-feed entries after `after` (exclusive), oldest first, at most `limit`.
    /// Joining every payload of the feed into the documents it names reproduces them.
    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError>;

    /// This deployment's position in a peer's change feed (`None` before the first pull).
    /// Local bookkeeping: never part of the change feed.
    async fn load_cursor(&self, peer: &str) -> Result<Option<String>, StoreError>;

    /// Records this deployment's position in a peer's change feed.
    async fn save_cursor(&self, peer: &str, cursor: &str) -> Result<(), StoreError>;

    /// Physically deletes documents expired at `now`; returns how many. Reads already skip
    /// them, so this only reclaims space.
    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError>;

    /// The highest feed position pruned away (0 when none was): a reader whose cursor is
    /// below it missed entries and catches up from a [`snapshot`](Self::snapshot) instead.
    /// A backend whose feed keeps every document's latest entry never prunes.
    async fn feed_floor(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// The newest feed position (0 for an empty feed).
    async fn feed_head(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Deletes feed entries written before `before` (seconds since the epoch), always
    /// keeping the newest, and raises the floor first; returns how many went.
    async fn prune_feed(&self, before: i64) -> Result<u64, StoreError> {
        let _ = before;
        Ok(0)
    }

    /// Full states of the replicated documents after `after` in (partition, sort) order,
    /// unexpired at `now`, at most `limit`: what a reader behind the floor catches up from.
    async fn snapshot(
        &self,
        after: Option<&Key>,
        now: i64,
        limit: usize,
    ) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        let _ = (after, now, limit);
        Ok(Vec::new())
    }

    /// When the answer of the request this handle serves is due, if it has a deadline
    /// (see [`deadline::Deadlined`]); merges stop retrying in time to answer.
    fn deadline(&self) -> Option<Instant> {
        None
    }
}

/// Options of a merge.
#[derive(Clone, Copy, Debug, Default)]
pub struct MergeOptions {
    /// Sets the document's expiry (seconds since the Unix epoch). `None` keeps the current one.
    pub expires_at: Option<i64>,
    /// Overrides the default retry policy.
    pub retry: Option<RetryPolicy>,
}

/// A decoded document with its version.
#[derive(Clone, Debug, PartialEq)]
pub struct Document<C> {
    /// The document's key.
    pub key: Key,
    /// The CRDT state.
    pub state: C,
    /// The stored version.
    pub version: u64,
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Encodes a sort key as an opaque page cursor.
pub fn encode_cursor(sort: &str) -> String {
    hex::encode(sort)
}

/// Decodes a page cursor; `None` when it is not one of ours.
pub fn decode_cursor(cursor: &str) -> Option<String> {
    // No listing hands out an empty cursor: the last page has none at all.
    if cursor.is_empty() {
        return None;
    }
    decode_hex_text(cursor, MAX_KEY_BYTES)
}

/// The UTF-8 text whose lowercase hex form is `hex`, when it is one of at most `max_bytes`.
pub fn decode_hex_text(hex: &str, max_bytes: usize) -> Option<String> {
    // Lowercase only, as encoded: one text, one spelling.
    if hex.len() > 2 * max_bytes || hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    String::from_utf8(hex::decode(hex).ok()?).ok()
}

/// The smallest string greater than every string starting with `prefix`, when one exists.
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Where work runs: the store, this replica and its clock — what a domain service needs to
/// read and merge documents as this deployment.
#[derive(Clone)]
pub struct Site {
    /// The document store.
    pub store: Arc<dyn Store>,
    /// This deployment's replica id.
    pub replica: jarvis_crdt::ReplicaId,
    /// Timestamps for last-writer-wins writes.
    pub clock: Arc<clock::Clock>,
}

impl dyn Store + '_ {
    /// Reads and decodes a document; `None` when absent or expired.
    pub async fn read<C: Codec>(&self, key: &Key) -> Result<Option<Document<C>>, StoreError> {
        match self.get(key).await? {
            Some(stored) if !stored.is_expired(now_secs()) => Ok(Some(Document {
                key: key.clone(),
                state: C::decode(&stored.bytes).map_err(StoreError::Corrupt)?,
                version: stored.version,
            })),
            _ => Ok(None),
        }
    }

    /// Merges `delta` (a delta or state from elsewhere, e.g. another replica) into the
    /// document at `key`, creating it, and returns the merged state.
    pub async fn merge<C: Crdt + Codec + Send + Sync>(
        &self,
        key: &Key,
        delta: C,
    ) -> Result<C, StoreError> {
        self.merge_with(key, delta, MergeOptions::default())
            .await
            .map(|doc| doc.state)
    }

    /// [`merge`](Self::merge) with options; returns the merged document and its version.
    pub async fn merge_with<C: Crdt + Codec + Send + Sync>(
        &self,
        key: &Key,
        delta: C,
        options: MergeOptions,
    ) -> Result<Document<C>, StoreError> {
        self.update_with(
            key,
            |state: &mut C| {
                state.join(delta.clone());
                delta.clone()
            },
            options,
        )
        .await
    }

    /// Applies a local mutation to the current state of the document at `key` and writes
    /// it back conditionally, with its delta in the change feed.
    ///
    /// `mutate` receives the freshly read state (the empty state for a new document) and
    /// returns the delta of what it did, e.g. `|set| set.add(replica, element)`. It runs
    /// again on every retry, against the re-read state, so dots and counts are always
    /// minted from what is stored: concurrent writers of one replica never reuse a dot.
    pub async fn update<C, F>(&self, key: &Key, mutate: F) -> Result<Document<C>, StoreError>
    where
        C: Crdt + Codec + Send + Sync,
        F: Fn(&mut C) -> C + Send + Sync,
    {
        self.update_with(key, mutate, MergeOptions::default()).await
    }

    /// [`update`](Self::update) with options.
    pub async fn update_with<C, F>(
        &self,
        key: &Key,
        mutate: F,
        options: MergeOptions,
    ) -> Result<Document<C>, StoreError>
    where
        C: Crdt + Codec + Send + Sync,
        F: Fn(&mut C) -> C + Send + Sync,
    {
        self.transact(key, options, |state: &mut C| (mutate(state), ()))
            .await
            .map(|(doc, ())| doc)
    }

    /// An [`update`](Self::update) whose closure also decides something from the state it
    /// sees — "claim this email if nobody holds it", "accept this one-time code if its step
    /// is new" — and returns the decision of the run that was committed.
    ///
    /// Within a replica the conditional write makes this a compare-and-set: of two
    /// concurrent callers, exactly one sees the state before the other's change. A closure
    /// that decides to change nothing returns an empty delta, and nothing is written.
    #[tracing::instrument(level = "debug", skip_all, fields(partition = key.partition(), sort = key.sort()))]
    pub async fn transact<C, T, F>(
        &self,
        key: &Key,
        options: MergeOptions,
        decide: F,
    ) -> Result<(Document<C>, T), StoreError>
    where
        C: Crdt + Codec + Send + Sync,
        T: Send,
        F: Fn(&mut C) -> (C, T) + Send + Sync,
    {
        let policy = options.retry.unwrap_or_default().until(self.deadline());
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let current = self.get(key).await?;
            let now = now_secs();
            let (mut state, expected_version, expires_at, stored_bytes) = match current {
                Some(stored) if !stored.is_expired(now) => (
                    C::decode(&stored.bytes).map_err(StoreError::Corrupt)?,
                    stored.version,
                    stored.expires_at,
                    Some(stored.bytes),
                ),
                // An expired document starts over, but the write is still conditional on
                // the version that is there.
                Some(stored) => (C::default(), stored.version, None, None),
                None => (C::default(), 0, None, None),
            };
            let (delta, decision) = decide(&mut state);
            let bytes = encode(&state)?;
            let expires_at = options.expires_at.or(expires_at);
            // Nothing new (a duplicate delivery, an element already present): no write, no
            // feed entry.
            if stored_bytes.as_deref() == Some(bytes.as_slice()) && options.expires_at.is_none() {
                let doc = Document {
                    key: key.clone(),
                    state,
                    version: expected_version,
                };
                return Ok((doc, decision));
            }
            // Each backend's `put` refuses a document over its limit before writing.
            let delta_bytes = encode(&delta)?;
            let write = Write {
                expected_version,
                state: &bytes,
                delta: &delta_bytes,
                expires_at,
            };
            match self.put(key, write).await {
                Ok(version) => {
                    let doc = Document {
                        key: key.clone(),
                        state,
                        version,
                    };
                    return Ok((doc, decision));
                }
                Err(StoreError::Conflict) => {
                    metrics::counter!("store_conflicts_total", "backend" => self.backend())
                        .increment(1);
                    let pause = policy.backoff(attempt);
                    if started.elapsed() + pause > policy.deadline {
                        metrics::counter!("store_retries_exhausted_total", "backend" => self.backend())
                            .increment(1);
                        tracing::warn!(attempts = attempt, "merge gave up on a contended document");
                        return Err(StoreError::ConflictExhausted { attempts: attempt });
                    }
                    tokio::time::sleep(pause).await;
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Lists decoded documents of a partition, a page at a time.
    pub async fn list_documents<C: Codec>(
        &self,
        partition: &str,
        prefix: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Document<C>>, StoreError> {
        let after = match cursor {
            Some(cursor) => Some(decode_cursor(cursor).ok_or(StoreError::InvalidKey("cursor"))?),
            None => None,
        };
        let limit = limit.max(1);
        let rows = self
            .list(
                partition,
                ListQuery {
                    prefix,
                    after: after.as_deref(),
                    limit,
                    now: now_secs(),
                },
            )
            .await?;
        let next_cursor = (rows.len() == limit)
            .then(|| rows.last().map(|(key, _)| encode_cursor(key.sort())))
            .flatten();
        let items = rows
            .into_iter()
            .map(|(key, stored)| {
                Ok(Document {
                    key,
                    state: C::decode(&stored.bytes).map_err(StoreError::Corrupt)?,
                    version: stored.version,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Page { items, next_cursor })
    }

    /// A page of the documents of `partition` whose sort keys start with `prefix`, each read
    /// by `read` from the rest of its sort key (an id) and its state; those it cannot read
    /// are left out.
    pub async fn list_by_id<C: Codec, T>(
        &self,
        partition: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
        read: impl Fn(&str, &C) -> Option<T>,
    ) -> Result<Page<T>, StoreError> {
        let page = self
            .list_documents::<C>(partition, Some(prefix), cursor, limit)
            .await?;
        Ok(Page {
            items: page
                .items
                .iter()
                .filter_map(|doc| read(doc.key.sort().strip_prefix(prefix)?, &doc.state))
                .collect(),
            next_cursor: page.next_cursor,
        })
    }
}

fn encode<C: Codec>(state: &C) -> Result<Vec<u8>, StoreError> {
    state
        .encode()
        .map_err(|e| StoreError::Unavailable(Box::new(e)))
}

/// Opens the store the configuration names, its operations recorded ([`metered`]). A
/// backend this build was made without is a startup error naming the cargo feature.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    let store = open_backend(config).await?;
    Ok(Arc::new(metered::Metered::new(store)))
}

async fn open_backend(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    match config {
        #[cfg(feature = "libsql")]
        StoreConfig::Libsql { path } => Ok(Arc::new(libsql::LibsqlStore::open(path).await?)),
        #[cfg(feature = "libsql-remote")]
        StoreConfig::LibsqlRemote { url, token } => Ok(Arc::new(
            libsql::LibsqlStore::open_remote(url, token).await?,
        )),
        #[cfg(feature = "dynamodb")]
        StoreConfig::Dynamodb { table, aws } => {
            let mut dynamo = dynamo::DynamoConfig::new(table.clone());
            dynamo.aws = aws.clone();
            let store = dynamo::DynamoStore::connect(dynamo).await;
            // A local engine starts empty; on AWS the template owns the table.
            if aws.endpoint.is_some() {
                store.create_table_if_missing().await?;
            }
            Ok(Arc::new(store))
        }
        #[allow(unreachable_patterns)]
        other => Err(StoreError::Open {
            context: format!(
                "this build has no {0} backend (cargo feature `{0}`)",
                other.backend()
            ),
            source: "backend not built in".into(),
        }),
    }
}

/// Latency above which the store is reported degraded.
pub const SLOW_STORE_MS: f64 = 250.0;

/// The `store` component of `/health`: reachable, and how fast.
#[derive(Debug, Clone)]
pub struct StoreHealth(pub Arc<dyn Store>);

#[async_trait]
impl HealthCheck for StoreHealth {
    fn name(&self) -> &'static str {
        "store"
    }

    async fn check(&self) -> Finding {
        let started = Instant::now();
        let result = self.0.ping().await;
        let ping_ms = started.elapsed().as_secs_f64() * 1000.0;
        let reachable = result.is_ok();
        let finding = match result {
            Ok(()) if ping_ms > SLOW_STORE_MS => Finding {
                status: Status::Degraded,
                message: Some(format!("slow: ping took {ping_ms:.0} ms")),
                details: serde_json::Map::new(),
            },
            Ok(()) => Finding::ok(),
            Err(err) => {
                tracing::warn!(error = %err, "store health check failed");
                Finding::down("store unreachable")
            }
        };
        finding
            .with_detail("backend", self.0.backend())
            .with_detail("reachable", reachable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_cursor_is_not_a_cursor() {
        assert_eq!(decode_cursor(""), None);
        assert_eq!(decode_cursor(&encode_cursor("a")), Some("a".to_owned()));
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(
            decode_cursor(&encode_cursor("entry#ü")).as_deref(),
            Some("entry#ü")
        );
        assert_eq!(decode_cursor("zz"), None);
        assert_eq!(decode_cursor("abc"), None);
        assert_eq!(decode_cursor("ff"), None, "not UTF-8");
        assert_eq!(decode_cursor("+a"), None, "a sign is not a digit");
        assert_eq!(decode_cursor("4A"), None, "lowercase only, as encoded");
    }

    #[test]
    fn prefix_upper_bound_is_just_past_every_extension() {
        assert_eq!(prefix_upper_bound("tag#a").as_deref(), Some("tag#b"));
        assert_eq!(prefix_upper_bound("").as_deref(), None);
        let bound = prefix_upper_bound("a\u{10FFFF}").expect("bound");
        assert_eq!(bound, "b");
        assert!("a\u{10FFFF}\u{10FFFF}zz" < bound.as_str());
    }

    #[test]
    fn keys_reject_empty_long_and_nul_parts() {
        assert!(Key::new("", "x").is_err());
        assert!(Key::new("p", "").is_err());
        assert!(Key::new("p", "a\0b").is_err());
        assert!(Key::new("p", "x".repeat(MAX_KEY_BYTES + 1)).is_err());
        assert!(Key::new("p", "x".repeat(MAX_KEY_BYTES)).is_ok());
    }
}
