//! Sync between deployments: every replica serves its change feed to peers that hold the
//! shared token, and pulls the feeds of its own peers, merging every change on write.
//!
//! Whatever the network does — a pull repeated, a page lost, peers pulling in any order —
//! the joins converge: a change merged twice is a no-op (and is not written or fed again,
//! so changes do not echo between peers), and each peer's cursor is saved after the page it
//! covers is merged, so a restart resumes where it stopped and at worst re-merges a page.
//! Changes a replica merged from one peer appear in its own feed, so updates also travel
//! through intermediaries.
//!
//! Owns the feed's wire format, cursors, pulling and dead letters; changes when the sync
//! protocol does. Imports the store, secrets, configuration, health and `jarvis-http` (its
//! error type and input rules); never identity or the application layer (the routes that
//! serve the feed are the sync function's).
#![deny(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{Mutex, OnceCell};

use jarvis_config::SyncConfig;
use jarvis_crdt::codec::TypeTag;
use jarvis_crdt::hlc::{DEFAULT_MAX_DRIFT, system_time_ms};
use jarvis_crdt::{
    BoundedCounter, Codec, Crdt, Entity, GCounter, GSet, LwwMap, LwwRegister, MvRegister, OrSet,
    PNCounter, Record, ReplicaId, Timestamp,
};
use jarvis_health::{Finding, HealthCheck, Status};
use jarvis_http::error::ApiError;
use jarvis_http::validate;
use jarvis_secrets::{SecretError, SecretSource};
use jarvis_store::{
    Change, Key, MAX_KEY_BYTES, MergeOptions, Payload, Store, StoreError, decode_hex_text, now_secs,
};

/// Default and largest number of changes in one feed page.
pub const DEFAULT_PAGE: usize = 500;
/// Largest feed page.
pub const MAX_PAGE: usize = 2_000;
/// Payload bytes (base64) after which a feed page is cut short, however few changes it has.
pub const PAGE_PAYLOAD_BUDGET: usize = 8 * 1024 * 1024;
/// Largest feed page a puller reads (decompressed): the budget, then one more change as large
/// as any backend stores (base64 of the largest libSQL document), and the JSON around them.
/// A larger answer is refused rather than held in memory.
pub const MAX_PAGE_BYTES: usize =
    PAGE_PAYLOAD_BUDGET + jarvis_store::LARGEST_DOCUMENT_BYTES / 3 * 4 + 1024 * 1024;

/// One change as it travels between peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WireChange {
    /// Position in the serving replica's feed.
    pub seq: u64,
    /// The document's partition.
    pub partition: String,
    /// The document's sort key.
    pub sort: String,
    /// `delta` or `state`: either way, joined into the document.
    pub kind: String,
    /// The encoded CRDT, base64.
    pub payload: String,
}

/// A page of a replica's change feed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangesPage {
    /// The serving replica.
    pub replica_id: String,
    /// Changes after the cursor asked for, oldest first.
    pub changes: Vec<WireChange>,
    /// The cursor to ask with next; the same as asked when there was nothing new.
    pub next_cursor: String,
    /// Whether more changes may follow at once (a full page, or one cut short by size).
    #[serde(default)]
    pub more: bool,
}

/// What one pull from one peer did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeerResult {
    /// The peer's base URL.
    pub peer: String,
    /// Whether the pull reached the end of the peer's feed without error.
    pub ok: bool,
    /// Changes merged.
    pub merged: u64,
    /// Changes refused and quarantined (see `GET /sync/dead-letters`): undecodable, of
    /// another type than the document they name, stamped too far ahead of this replica's
    /// clock, or more than this store can take.
    pub rejected: u64,
    /// Our cursor in the peer's feed after the pull.
    pub cursor: Option<String>,
    /// What went wrong, when something did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Checks the `Authorization: Bearer <token>` of a peer, in constant time.
pub fn authorize(headers: &HeaderMap, token: Option<&SecretString>) -> Result<(), ApiError> {
    let Some(token) = token else {
        return Err(ApiError::NotConfigured(
            "sync is off on this deployment: it has no JARVIS_SYNC_TOKEN or secret sync_token"
                .into(),
        ));
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Comparing digests keeps the comparison constant-time whatever the lengths.
    let expected = Sha256::digest(token.expose_secret().as_bytes());
    let offered = Sha256::digest(presented.as_bytes());
    if bool::from(expected.ct_eq(&offered)) && !presented.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "a valid peer token is required".into(),
        ))
    }
}

/// The peer token: `JARVIS_SYNC_TOKEN`, else the secret document's `sync_token`.
pub async fn peer_token(
    settings: &SyncConfig,
    secrets: &dyn SecretSource,
) -> Result<Option<SecretString>, ApiError> {
    if let Some(token) = &settings.token {
        return Ok(Some(token.clone()));
    }
    match secrets.current().await {
        Ok(secrets) => Ok(secrets.sync_token().cloned()),
        Err(SecretError::NotConfigured) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// A reader's position in a change feed, as `next_cursor` and `since` carry it.
///
/// Normally a feed position (`"1234"`). A reader whose position is below the feed's floor
/// (entries it has not seen were pruned) catches up from a snapshot instead: the full state
/// of every replicated document, in key order (`"s<head>-<hex of the last key>"`), and then
/// goes on in the feed from `head`, the newest position when the snapshot began. Every state
/// read later holds at least what the feed held up to `head`, so nothing is missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedCursor {
    /// After this feed position.
    Seq(u64),
    /// Inside a snapshot taken at feed position `head`, after the document `after`.
    Snapshot {
        /// The feed position the snapshot goes on from once every document is sent.
        head: u64,
        /// The last document sent; `None` at the start.
        after: Option<Key>,
    },
}

impl FeedCursor {
    /// The OpenAPI pattern of the text form.
    pub const PATTERN: &'static str = "^(?:[0-9]{1,19}|s[0-9]{1,19}-(?:[0-9a-f]{2})*)$";

    /// Parses the text form; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::from_param(text).ok()
    }

    /// Parses the `since` parameter: a 400 when it is not of the cursor's form, a 422 when
    /// it is but names no document key (a cursor this API did not return).
    pub fn from_param(text: &str) -> Result<Self, ApiError> {
        let malformed = || ApiError::invalid_field("since", "is not a feed cursor");
        let position = |s: &str| {
            ((1..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
                .ok_or_else(malformed)
        };
        let Some(rest) = text.strip_prefix('s') else {
            return position(text).map(Self::Seq);
        };
        let (head, key) = rest.split_once('-').ok_or_else(malformed)?;
        let head = position(head)?;
        if key.is_empty() {
            return Ok(Self::Snapshot { head, after: None });
        }
        if !validate::is_hex(key, key.len()) || !key.len().is_multiple_of(2) {
            return Err(malformed());
        }
        // A partition and a sort key, each up to `MAX_KEY_BYTES`, and the newline between.
        let after = decode_hex_text(key, 2 * MAX_KEY_BYTES + 1)
            .and_then(|key| {
                let (partition, sort) = key.split_once('\n')?;
                Key::new(partition.to_owned(), sort.to_owned()).ok()
            })
            .ok_or_else(|| ApiError::unknown_cursor("since"))?;
        Ok(Self::Snapshot {
            head,
            after: Some(after),
        })
    }

    /// Whether moving from `self` to `next` with changes in between is progress: a later
    /// feed position, a later document of the same snapshot, or entering or leaving one.
    pub fn advances_to(&self, next: &Self) -> bool {
        fn key(k: &Key) -> (&str, &str) {
            (k.partition(), k.sort())
        }
        match (self, next) {
            (Self::Seq(a), Self::Seq(b)) => b > a,
            (Self::Seq(_), Self::Snapshot { .. }) => true,
            (Self::Snapshot { head, .. }, Self::Seq(b)) => b >= head,
            (
                Self::Snapshot { head, after },
                Self::Snapshot {
                    head: next_head,
                    after: Some(next_after),
                },
            ) => head == next_head && after.as_ref().is_none_or(|a| key(next_after) > key(a)),
            (Self::Snapshot { .. }, Self::Snapshot { after: None, .. }) => false,
        }
    }
}

/// Longest feed cursor: `s`, a position, `-` and the hex of the longest key.
const MAX_FEED_CURSOR_CHARS: usize = 1 + 19 + 1 + 2 * (2 * MAX_KEY_BYTES + 1);

jarvis_http::string_schema!(
    /// A [`FeedCursor`] in its text form, for the OpenAPI document.
    FeedCursorText,
    || validate::bounded(
        validate::string("`next_cursor` of the previous page; from the start when absent")
            .pattern(Some(FeedCursor::PATTERN)),
        1,
        MAX_FEED_CURSOR_CHARS,
    )
);

impl std::fmt::Display for FeedCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Seq(seq) => write!(f, "{seq}"),
            Self::Snapshot { head, after: None } => write!(f, "s{head}-"),
            Self::Snapshot {
                head,
                after: Some(key),
            } => {
                let key = format!("{}\n{}", key.partition(), key.sort());
                write!(f, "s{head}-{}", jarvis_store::encode_cursor(&key))
            }
        }
    }
}

/// Reads a page of this replica's feed after `since`: at most `limit` changes, cut short
/// once their payloads pass [`PAGE_PAYLOAD_BUDGET`] (a page always holds at least one). A
/// reader behind the feed's floor gets a page of the snapshot instead (see [`FeedCursor`]).
pub async fn changes_page(
    store: &dyn Store,
    replica_id: &str,
    since: &FeedCursor,
    limit: usize,
) -> Result<ChangesPage, StoreError> {
    let since = match since {
        FeedCursor::Seq(since) => *since,
        FeedCursor::Snapshot { head, after } => {
            return snapshot_page(store, replica_id, *head, after.as_ref(), limit).await;
        }
    };
    let changes = store.changes(since, limit).await?;
    // Entries were pruned from under this reader only if the page does not start right after
    // `since` (pruning always keeps the newest entry, so an empty page missed nothing). The
    // floor is checked after reading: pruning raises it before deleting, so a read that raced
    // a prune is caught.
    let gap = changes.first().is_some_and(|c| c.seq != since + 1);
    if gap && since < store.feed_floor().await? {
        let head = store.feed_head().await?;
        return snapshot_page(store, replica_id, head, None, limit).await;
    }
    let full = changes.len() == limit;
    let (changes, cut) = within_budget(changes.into_iter().map(to_wire), PAGE_PAYLOAD_BUDGET);
    let next = changes.last().map_or(since, |c| c.seq);
    Ok(ChangesPage {
        replica_id: replica_id.to_owned(),
        changes,
        next_cursor: FeedCursor::Seq(next).to_string(),
        more: full || cut,
    })
}

/// A page of the snapshot taken at `head`, after the document `after`.
async fn snapshot_page(
    store: &dyn Store,
    replica_id: &str,
    head: u64,
    after: Option<&Key>,
    limit: usize,
) -> Result<ChangesPage, StoreError> {
    let documents = store.snapshot(after, now_secs(), limit).await?;
    let full = documents.len() == limit;
    let states = documents.into_iter().map(|(key, state)| {
        to_wire(Change {
            seq: head,
            key,
            payload: Payload::State(state),
        })
    });
    let (changes, cut) = within_budget(states, PAGE_PAYLOAD_BUDGET);
    let next = match changes.last() {
        Some(last) if full || cut => FeedCursor::Snapshot {
            head,
            after: Some(Key::new(last.partition.clone(), last.sort.clone())?),
        },
        _ => FeedCursor::Seq(head),
    };
    Ok(ChangesPage {
        replica_id: replica_id.to_owned(),
        changes,
        next_cursor: next.to_string(),
        // The feed goes on from `head` once the snapshot is through.
        more: true,
    })
}

/// The leading changes whose payloads fit in `budget` bytes (at least one), and whether any
/// were left out.
fn within_budget(
    changes: impl Iterator<Item = WireChange>,
    budget: usize,
) -> (Vec<WireChange>, bool) {
    let mut kept = Vec::new();
    let mut used = 0usize;
    for change in changes {
        used = used.saturating_add(change.payload.len());
        if used > budget && !kept.is_empty() {
            return (kept, true);
        }
        kept.push(change);
    }
    (kept, false)
}

/// Reads a response body of at most `limit` bytes, refusing a longer one without holding it.
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, PullError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(PullError::Page(format!(
                "the page is larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn to_wire(change: Change) -> WireChange {
    let (kind, bytes) = match &change.payload {
        Payload::Delta(bytes) => ("delta", bytes),
        Payload::State(bytes) => ("state", bytes),
    };
    WireChange {
        seq: change.seq,
        partition: change.key.partition().to_owned(),
        sort: change.key.sort().to_owned(),
        kind: kind.to_owned(),
        payload: BASE64.encode(bytes),
    }
}

/// Why a change from a peer was not merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The store could not take it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A last-writer-wins stamp is further ahead of this replica's clock than the allowed
    /// drift: adopting it would let a peer with a fast clock win every later edit.
    #[error(
        "a stamp is {ahead_ms} ms ahead of this replica's clock (at most {max_ms} ms accepted)"
    )]
    AheadOfClock {
        /// How far ahead the newest stamp was.
        ahead_ms: u64,
        /// The drift allowed.
        max_ms: u64,
    },
}

/// Merges one encoded CRDT into the document at `key`, decoding it as the type its header
/// names. Documents are always one of the product's concrete types, so the tag identifies
/// the type completely.
pub async fn merge_encoded(store: &dyn Store, key: &Key, bytes: &[u8]) -> Result<(), StoreError> {
    match merge_checked(store, key, bytes, None).await {
        Ok(()) => Ok(()),
        Err(MergeError::Store(err)) => Err(err),
        Err(MergeError::AheadOfClock { .. }) => Ok(()),
    }
}

/// [`merge_encoded`] for a change from a peer: refused when any stamp it carries is more than
/// [`DEFAULT_MAX_DRIFT`] ahead of this replica's clock, so this replica's HLC never sees it.
pub async fn merge_from_peer(store: &dyn Store, key: &Key, bytes: &[u8]) -> Result<(), MergeError> {
    let max_ms = u64::try_from(DEFAULT_MAX_DRIFT.as_millis()).unwrap_or(u64::MAX);
    merge_checked(store, key, bytes, Some((system_time_ms(), max_ms))).await
}

async fn merge_checked(
    store: &dyn Store,
    key: &Key,
    bytes: &[u8],
    clock: Option<(u64, u64)>,
) -> Result<(), MergeError> {
    async fn merge_as<C: Crdt + Codec + Send + Sync>(
        store: &dyn Store,
        key: &Key,
        bytes: &[u8],
        clock: Option<(u64, u64)>,
        latest: fn(&C) -> Option<Timestamp>,
    ) -> Result<(), MergeError> {
        let state = C::decode(bytes).map_err(StoreError::Corrupt)?;
        if let (Some((now_ms, max_ms)), Some(stamp)) = (clock, latest(&state)) {
            let ahead_ms = stamp.wall_ms.saturating_sub(now_ms);
            if ahead_ms > max_ms {
                return Err(MergeError::AheadOfClock { ahead_ms, max_ms });
            }
        }
        store.merge(key, state).await?;
        Ok(())
    }
    /// Types without last-writer-wins stamps: nothing a clock could push ahead.
    fn unstamped<C>(_: &C) -> Option<Timestamp> {
        None
    }
    match TypeTag::of(bytes) {
        Some(TypeTag::GCounter) => merge_as::<GCounter>(store, key, bytes, clock, unstamped).await,
        Some(TypeTag::PNCounter) => {
            merge_as::<PNCounter>(store, key, bytes, clock, unstamped).await
        }
        Some(TypeTag::BoundedCounter) => {
            merge_as::<BoundedCounter>(store, key, bytes, clock, unstamped).await
        }
        Some(TypeTag::GSet) => merge_as::<GSet<String>>(store, key, bytes, clock, unstamped).await,
        Some(TypeTag::LwwRegister) => {
            merge_as::<LwwRegister<String>>(store, key, bytes, clock, LwwRegister::stamp).await
        }
        Some(TypeTag::MvRegister) => {
            merge_as::<MvRegister<String>>(store, key, bytes, clock, unstamped).await
        }
        Some(TypeTag::OrSet) => {
            merge_as::<OrSet<String>>(store, key, bytes, clock, unstamped).await
        }
        Some(TypeTag::LwwMap) => {
            merge_as::<LwwMap<String, String>>(store, key, bytes, clock, LwwMap::latest_stamp).await
        }
        Some(TypeTag::Record | TypeTag::RecordV1) => {
            merge_as::<Record>(store, key, bytes, clock, Record::latest_stamp).await
        }
        Some(TypeTag::Entity) => {
            merge_as::<Entity>(store, key, bytes, clock, Entity::latest_stamp).await
        }
        None => Err(StoreError::Corrupt(jarvis_crdt::DecodeError::Malformed(
            "unknown document type".into(),
        ))
        .into()),
    }
}

/// Partition of the changes this replica refused (replica-local, never synced).
pub const DEAD_LETTER_PARTITION: &str = "~sync-dead-letters";
const DEAD_LETTER_COUNT: &str = "~sync-dead-letters-count";
/// How long a refused change stays listed, in seconds.
pub const DEAD_LETTER_SECS: i64 = 30 * 24 * 3600;

/// A change from a peer that this replica could not take, kept for an administrator.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// The peer it came from.
    pub peer: String,
    /// Its position in the peer's feed.
    pub seq: u64,
    /// The document's partition.
    pub partition: String,
    /// The document's sort key.
    pub sort: String,
    /// Why it was refused.
    pub reason: String,
    /// When it was refused (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub at: String,
}

/// Records `change` from `peer` as refused for `reason`, and counts it.
async fn quarantine(
    store: &dyn Store,
    replica: ReplicaId,
    peer: &str,
    change: &WireChange,
    reason: &str,
) -> Result<(), StoreError> {
    let now = now_secs();
    let peer_tag = hex::encode(&Sha256::digest(peer.as_bytes())[..6]);
    // The peer and its feed position name the letter, so a page pulled again (after a crash
    // before its cursor was saved) finds the letter already there and counts nothing twice.
    let key = Key::new(
        DEAD_LETTER_PARTITION,
        format!("{peer_tag}#{:020}", change.seq),
    )?;
    let at = jarvis_http::time::rfc3339(now);
    let stamp = Timestamp::new(system_time_ms(), 0, replica);
    let fields = [
        ("peer", peer),
        ("seq", &change.seq.to_string()),
        ("partition", change.partition.as_str()),
        ("sort", change.sort.as_str()),
        ("reason", reason),
        ("at", at.as_str()),
    ]
    .map(|(name, value)| (name, value.to_owned()));
    let options = MergeOptions {
        expires_at: Some(now + DEAD_LETTER_SECS),
        ..MergeOptions::default()
    };
    let (_, new) = store
        .transact(&key, options, |letter: &mut Entity| {
            if !letter.is_empty() {
                return (Entity::new(), false);
            }
            let mut delta = Entity::new();
            for (name, value) in &fields {
                delta.join(letter.set(name, stamp, value.as_str()));
            }
            (delta, true)
        })
        .await?;
    if new {
        store
            .update_with(
                &Key::new(DEAD_LETTER_COUNT, "count")?,
                |count: &mut GCounter| count.increment(replica, 1),
                options,
            )
            .await?;
    }
    Ok(())
}

/// How many changes this replica refused in the last [`DEAD_LETTER_SECS`].
pub async fn dead_letter_count(store: &dyn Store) -> Result<u64, StoreError> {
    let key = Key::new(DEAD_LETTER_COUNT, "count")?;
    Ok(store
        .read::<GCounter>(&key)
        .await?
        .map_or(0, |doc| doc.state.value()))
}

/// A page of refused changes, by peer and, for each, in feed order.
pub async fn dead_letters(
    store: &dyn Store,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<DeadLetter>, Option<String>), StoreError> {
    let page = store
        .list_documents::<Entity>(DEAD_LETTER_PARTITION, None, cursor, limit)
        .await?;
    let items = page
        .items
        .iter()
        .map(|doc| {
            let field = |name: &str| doc.state.field(name).unwrap_or_default().to_owned();
            DeadLetter {
                peer: field("peer"),
                seq: field("seq").parse().unwrap_or(0),
                partition: field("partition"),
                sort: field("sort"),
                reason: field("reason"),
                at: field("at"),
            }
        })
        .collect();
    Ok((items, page.next_cursor))
}

/// The `sync` component of `/health`: degraded while changes refused from peers in the last
/// [`DEAD_LETTER_SECS`] wait for an administrator (`GET /sync/dead-letters`).
#[derive(Debug, Clone)]
pub struct SyncHealth(pub Arc<dyn Store>);

#[async_trait::async_trait]
impl HealthCheck for SyncHealth {
    fn name(&self) -> &'static str {
        "sync"
    }

    async fn check(&self) -> Finding {
        match dead_letter_count(self.0.as_ref()).await {
            Ok(0) => Finding::ok().with_detail("dead_letters", 0),
            Ok(count) => Finding {
                status: Status::Degraded,
                message: Some(format!(
                    "{count} change(s) from peers could not be merged; see GET /sync/dead-letters"
                )),
                details: serde_json::Map::new(),
            }
            .with_detail("dead_letters", count),
            Err(err) => {
                // Sync merges into the store: without it, sync cannot work either.
                tracing::warn!(error = %err, "sync health check failed");
                Finding::down("the store holding sync state is unreachable")
            }
        }
    }
}

/// Pulls peers' feeds into this replica's store.
pub struct Syncer {
    replica_id: String,
    replica: ReplicaId,
    store: Arc<dyn Store>,
    settings: SyncConfig,
    secrets: Arc<dyn SecretSource>,
    client: OnceCell<reqwest::Client>,
    // One round at a time: the timer and `/sync/run` never pull the same peer at once.
    round: Mutex<()>,
    // When each peer's feed was last read to its end, and when this process started.
    caught_up: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    started: std::time::Instant,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("peers", &self.settings.peers)
            .finish_non_exhaustive()
    }
}

/// Why a pull from a peer stopped.
#[derive(Debug, thiserror::Error)]
enum PullError {
    #[error("peer unreachable: {0}")]
    Http(#[from] reqwest::Error),
    #[error("peer answered {0}")]
    Status(reqwest::StatusCode),
    #[error("peer sent an invalid page: {0}")]
    Page(String),
    #[error(
        "the peer's replica id is {0:?}, the same as this deployment's: two deployments with one id mint the same dots and share an audit chain; give each its own JARVIS_REPLICA_ID"
    )]
    SameReplica(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Syncer {
    /// A syncer for replica `replica_id`. The HTTP client is built on the first pull, not at
    /// start.
    pub fn new(
        replica_id: impl Into<String>,
        store: Arc<dyn Store>,
        settings: SyncConfig,
        secrets: Arc<dyn SecretSource>,
    ) -> Self {
        let replica_id = replica_id.into();
        Self {
            replica: ReplicaId::from_name(&replica_id),
            replica_id,
            store,
            settings,
            secrets,
            client: OnceCell::new(),
            round: Mutex::new(()),
            caught_up: std::sync::Mutex::default(),
            started: std::time::Instant::now(),
        }
    }

    async fn client(&self) -> Result<&reqwest::Client, reqwest::Error> {
        self.client
            .get_or_try_init(|| async {
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .timeout(Duration::from_secs(30))
                    .build()
            })
            .await
    }

    /// Records a pull: changes merged and rejected, and how long it has been since this
    /// replica last read the peer's feed to its end (0 right after it did).
    fn record(&self, result: &PeerResult) {
        let peer = result.peer.clone();
        metrics::counter!("sync_changes_total", "peer" => peer.clone(), "outcome" => "merged")
            .increment(result.merged);
        metrics::counter!("sync_changes_total", "peer" => peer.clone(), "outcome" => "rejected")
            .increment(result.rejected);
        let mut caught_up = self
            .caught_up
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = std::time::Instant::now();
        if result.ok {
            caught_up.insert(peer.clone(), now);
        }
        let since = caught_up
            .get(&peer)
            .map_or(self.started, |at| *at)
            .elapsed()
            .as_secs_f64();
        metrics::gauge!("sync_lag_seconds", "peer" => peer).set(since);
    }

    /// Pulls every peer once, to the end of its feed; returns one result per peer.
    pub async fn run_round(&self) -> Vec<PeerResult> {
        let _round = self.round.lock().await;
        let mut results = Vec::with_capacity(self.settings.peers.len());
        for peer in &self.settings.peers {
            results.push(self.pull(peer).await);
        }
        results
    }

    async fn pull(&self, peer: &str) -> PeerResult {
        let mut result = PeerResult {
            peer: peer.to_owned(),
            ok: false,
            merged: 0,
            rejected: 0,
            cursor: None,
            error: None,
        };
        match self.pull_pages(peer, &mut result).await {
            Ok(()) => result.ok = true,
            Err(err) => {
                tracing::warn!(peer, error = %err, "sync pull failed");
                result.error = Some(err.to_string());
            }
        }
        self.record(&result);
        result
    }

    async fn pull_pages(&self, peer: &str, result: &mut PeerResult) -> Result<(), PullError> {
        let token = peer_token(&self.settings, self.secrets.as_ref())
            .await
            .map_err(|e| PullError::Page(e.to_string()))?;
        let Some(token) = &token else {
            return Err(PullError::Page(
                "no peer token: set JARVIS_SYNC_TOKEN or the secret's sync_token".into(),
            ));
        };
        let client = self.client().await?;
        let mut cursor = self
            .store
            .load_cursor(peer)
            .await?
            .unwrap_or_else(|| "0".into());
        result.cursor = Some(cursor.clone());
        let mut snapshot_turns = 0;
        loop {
            let response = client
                .get(format!("{peer}/sync/changes"))
                .query(&[
                    ("since", cursor.as_str()),
                    ("limit", &DEFAULT_PAGE.to_string()),
                ])
                .bearer_auth(token.expose_secret())
                .send()
                .await?;
            if !response.status().is_success() {
                return Err(PullError::Status(response.status()));
            }
            let body = read_bounded(response, MAX_PAGE_BYTES).await?;
            let page: ChangesPage = serde_json::from_slice(&body)
                .map_err(|e| PullError::Page(format!("not a feed page: {e}")))?;
            if page.replica_id == self.replica_id {
                return Err(PullError::SameReplica(page.replica_id));
            }
            let (Some(next), Some(current)) = (
                FeedCursor::parse(&page.next_cursor),
                FeedCursor::parse(&cursor),
            ) else {
                return Err(PullError::Page("cursor is not a position".into()));
            };
            // A page of changes must move the cursor forward, or a round would never end.
            if !page.changes.is_empty() && !current.advances_to(&next) {
                return Err(PullError::Page("the feed cursor did not advance".into()));
            }
            if page.changes.is_empty() && page.more && next == current {
                return Err(PullError::Page("the feed cursor did not advance".into()));
            }
            // Entering a snapshot and leaving it happen once in a round, not over and over.
            let in_snapshot = |c: &FeedCursor| matches!(c, FeedCursor::Snapshot { .. });
            if in_snapshot(&next) != in_snapshot(&current) {
                snapshot_turns += 1;
                if snapshot_turns > 2 {
                    return Err(PullError::Page(
                        "the feed keeps restarting its snapshot".into(),
                    ));
                }
            }
            let done = !page.more && page.changes.len() < DEFAULT_PAGE;
            for change in &page.changes {
                match self.apply(change).await {
                    Ok(()) => result.merged += 1,
                    // Worth retrying: stop here, and the next round starts from this page.
                    Err(MergeError::Store(
                        err @ (StoreError::Unavailable(_)
                        | StoreError::Throttled
                        | StoreError::Open { .. }),
                    )) => return Err(PullError::Store(err)),
                    // This change will never go in: keep it aside and go on, so one poison
                    // change cannot stop sync for good.
                    Err(err) => {
                        let reason = err.to_string();
                        tracing::warn!(
                            peer,
                            seq = change.seq,
                            partition = %change.partition,
                            sort = %change.sort,
                            error = %reason,
                            "refused a change from a peer; quarantined"
                        );
                        quarantine(self.store.as_ref(), self.replica, peer, change, &reason)
                            .await?;
                        result.rejected += 1;
                    }
                }
            }
            // Saved only once the page is merged: a crash re-merges it, which is harmless.
            if page.next_cursor != cursor {
                self.store.save_cursor(peer, &page.next_cursor).await?;
                cursor = page.next_cursor;
                result.cursor = Some(cursor.clone());
            }
            if done {
                return Ok(());
            }
        }
    }

    async fn apply(&self, change: &WireChange) -> Result<(), MergeError> {
        let refused = |reason: String| {
            MergeError::Store(StoreError::Corrupt(jarvis_crdt::DecodeError::Malformed(
                reason,
            )))
        };
        let key = Key::new(change.partition.clone(), change.sort.clone())
            .map_err(|e| refused(e.to_string()))?;
        if !key.is_replicated() {
            return Err(refused("a replica-local document never syncs".into()));
        }
        let bytes = BASE64
            .decode(&change.payload)
            .map_err(|_| refused("payload is not base64".into()))?;
        merge_from_peer(self.store.as_ref(), &key, &bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(axum::http::header::AUTHORIZATION, value);
        }
        headers
    }

    #[test]
    fn only_the_exact_token_is_accepted() {
        let token = SecretString::from("correct-horse-battery-staple".to_owned());
        assert!(
            authorize(
                &headers("Bearer correct-horse-battery-staple"),
                Some(&token)
            )
            .is_ok()
        );
        for wrong in [
            "Bearer correct-horse-battery-stapl",
            "Bearer correct-horse-battery-staple ",
            "correct-horse-battery-staple",
            "Bearer ",
            "",
        ] {
            let err = authorize(&headers(wrong), Some(&token)).expect_err(wrong);
            assert_eq!(err.status(), axum::http::StatusCode::UNAUTHORIZED);
        }
    }

    /// A peer whose feed repeats itself cannot trap a round in a loop.
    #[tokio::test]
    async fn a_peer_whose_cursor_does_not_advance_fails_its_pull() {
        let stuck = axum::Router::new().route(
            "/sync/changes",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!({
                    "replica_id": "stuck",
                    "changes": (0..DEFAULT_PAGE).map(|i| serde_json::json!({
                        "seq": i, "partition": "p", "sort": "s", "kind": "delta", "payload": "AA=="
                    })).collect::<Vec<_>>(),
                    "next_cursor": "0"
                }))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, stuck).await });
        let (syncer, _store, _dir) = syncer_of(format!("http://{addr}")).await;
        let results = syncer.run_round().await;
        assert!(!results[0].ok);
        assert!(
            results[0]
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("did not advance"),
            "{:?}",
            results[0]
        );
    }

    /// With the peer token only in the secret document, a round still pulls, presenting
    /// that token.
    #[tokio::test]
    async fn a_round_pulls_with_the_token_from_the_secret_document() {
        let (seen, mut heard) = tokio::sync::mpsc::channel::<String>(4);
        let peer = axum::Router::new().route(
            "/sync/changes",
            axum::routing::get(move |headers: HeaderMap| {
                let seen = seen.clone();
                async move {
                    let auth = headers
                        .get(axum::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let _ = seen.send(auth).await;
                    axum::Json(serde_json::json!({
                        "replica_id": "peer", "changes": [], "next_cursor": "0"
                    }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, peer).await });
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            jarvis_store::libsql::LibsqlStore::open(&dir.path().join("j.db"))
                .await
                .expect("open"),
        );
        let document = serde_json::json!({
            "master_key": "a-master-key-of-at-least-32-characters",
            "sync_token": "secret-peer-token-0123456789"
        });
        let syncer = Arc::new(Syncer::new(
            "here",
            store,
            SyncConfig {
                token: None,
                peers: vec![format!("http://{addr}")],
                interval: Duration::from_millis(20),
                feed_retention: Duration::from_secs(3_600),
            },
            jarvis_secrets::source(&jarvis_config::SecretsConfig::Inline(SecretString::from(
                document.to_string(),
            ))),
        ));
        let results = syncer.run_round().await;
        assert!(results.iter().all(|r| r.ok), "{results:?}");
        let presented = tokio::time::timeout(Duration::from_secs(10), heard.recv())
            .await
            .expect("the round pulled")
            .expect("a request");
        assert_eq!(presented, "Bearer secret-peer-token-0123456789");
    }

    #[test]
    fn feed_cursors_round_trip_and_order_their_progress() {
        let key = |sort: &str| Key::new("crdt#u".to_owned(), sort.to_owned()).expect("key");
        let cursors = [
            FeedCursor::Seq(0),
            FeedCursor::Seq(42),
            FeedCursor::Snapshot {
                head: 9,
                after: None,
            },
            FeedCursor::Snapshot {
                head: 9,
                after: Some(key("counter#é")),
            },
        ];
        let long = Key::new("p".repeat(900), "s".repeat(900)).expect("a long key");
        let cursors = cursors.into_iter().chain([FeedCursor::Snapshot {
            head: 1,
            after: Some(long),
        }]);
        for cursor in cursors {
            assert_eq!(FeedCursor::parse(&cursor.to_string()), Some(cursor));
        }
        let status = |text: &str| FeedCursor::from_param(text).map_err(|e| e.status().as_u16());
        assert_eq!(status("s9-zz"), Err(400), "not of the form");
        assert_eq!(status("s9-61"), Err(422), "of the form, but no key");
        for bad in [
            "",
            "-1",
            "s",
            "s9",
            "s9-zz",
            "s9-61",
            "12345678901234567890",
            "+3",
        ] {
            assert_eq!(FeedCursor::parse(bad), None, "{bad}");
        }
        let at = |sort| FeedCursor::Snapshot {
            head: 9,
            after: Some(key(sort)),
        };
        assert!(FeedCursor::Seq(3).advances_to(&FeedCursor::Seq(4)));
        assert!(!FeedCursor::Seq(4).advances_to(&FeedCursor::Seq(4)));
        assert!(FeedCursor::Seq(3).advances_to(&at("a")));
        assert!(at("a").advances_to(&at("b")));
        assert!(!at("b").advances_to(&at("a")));
        assert!(at("b").advances_to(&FeedCursor::Seq(9)));
        assert!(!at("b").advances_to(&FeedCursor::Seq(8)));
    }

    /// A deployment serving its feed as the sync function does.
    async fn serve_feed(store: Arc<dyn Store>) -> String {
        let peer = axum::Router::new().route(
            "/sync/changes",
            axum::routing::get(
                move |axum::extract::Query(query): axum::extract::Query<
                    std::collections::HashMap<String, String>,
                >| {
                    let store = Arc::clone(&store);
                    async move {
                        let since = query
                            .get("since")
                            .and_then(|s| FeedCursor::parse(s))
                            .unwrap_or(FeedCursor::Seq(0));
                        let limit = query
                            .get("limit")
                            .and_then(|l| l.parse().ok())
                            .unwrap_or(500);
                        let page = changes_page(store.as_ref(), "there", &since, limit)
                            .await
                            .expect("page");
                        axum::Json(page)
                    }
                },
            ),
        );
        serve(peer).await
    }

    /// A peer whose cursor is older than what the other side's feed still holds catches up
    /// from full states, then goes on in the feed; nothing is lost either way.
    #[tokio::test]
    async fn a_peer_behind_the_pruned_feed_catches_up_from_full_states() {
        let dir = tempfile::tempdir().expect("tempdir");
        let there: Arc<dyn Store> = Arc::new(
            jarvis_store::libsql::LibsqlStore::open(&dir.path().join("there.db"))
                .await
                .expect("open"),
        );
        let replica = ReplicaId::from_name("there");
        let counter =
            |i: usize| Key::new("crdt#u".to_owned(), format!("counter#{i:03}")).expect("key");
        // 1,200 documents (more than one snapshot page), each written three times.
        for round in 0..3 {
            for i in 0..1_200 {
                there
                    .update(&counter(i), |c: &mut GCounter| {
                        c.increment(replica, 1 + round)
                    })
                    .await
                    .expect("update");
            }
        }
        let (syncer, here, _here_dir) = syncer_of(serve_feed(Arc::clone(&there)).await).await;
        // The first pull takes part of the feed, then everything but the newest entry is
        // pruned: this peer's cursor is now below the floor.
        here.save_cursor(&syncer.settings.peers[0], "100")
            .await
            .expect("cursor");
        let pruned = there.prune_feed(now_secs() + 10).await.expect("prune");
        assert_eq!(pruned, 3_600 - 1, "all but the newest entry");
        assert_eq!(there.feed_floor().await.expect("floor"), 3_600 - 1);

        let results = syncer.run_round().await;
        assert!(results[0].ok, "{results:?}");
        for i in [0, 599, 1_199] {
            let doc = here
                .read::<GCounter>(&counter(i))
                .await
                .expect("read")
                .expect("doc");
            assert_eq!(doc.state.value(), 1 + 2 + 3, "counter {i}");
        }
        assert_eq!(
            results[0].cursor.as_deref(),
            Some("3600"),
            "back in the feed at its head"
        );

        // Later writes arrive through the feed as usual.
        there
            .update(&counter(7), |c: &mut GCounter| c.increment(replica, 10))
            .await
            .expect("update");
        let results = syncer.run_round().await;
        assert!(results[0].ok, "{results:?}");
        assert_eq!(results[0].merged, 1, "only the new change");
        let doc = here
            .read::<GCounter>(&counter(7))
            .await
            .expect("read")
            .expect("doc");
        assert_eq!(doc.state.value(), 16);
    }

    /// Serves `router` on a free loopback port; its base URL.
    async fn serve(router: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    /// A peer serving `page` once, then an empty page at its cursor.
    async fn stub_peer(page: serde_json::Value) -> String {
        let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let peer = axum::Router::new().route(
            "/sync/changes",
            axum::routing::get(move || {
                let page = page.clone();
                let served = Arc::clone(&served);
                async move {
                    if served.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        axum::Json(serde_json::json!({
                            "replica_id": page["replica_id"],
                            "changes": [],
                            "next_cursor": page["next_cursor"],
                        }))
                    } else {
                        axum::Json(page)
                    }
                }
            }),
        );
        serve(peer).await
    }

    /// A syncer of replica `here` on a fresh store, pulling `peer`.
    async fn syncer_of(peer: String) -> (Syncer, Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            jarvis_store::libsql::LibsqlStore::open(&dir.path().join("j.db"))
                .await
                .expect("open"),
        );
        let syncer = Syncer::new(
            "here",
            Arc::clone(&store),
            SyncConfig {
                token: Some(SecretString::from("peer-token-0123456789".to_owned())),
                peers: vec![peer],
                interval: Duration::from_secs(60),
                feed_retention: Duration::from_secs(3_600),
            },
            jarvis_secrets::source(&jarvis_config::SecretsConfig::Missing),
        );
        (syncer, store, dir)
    }

    fn wire(seq: u64, sort: &str, state: &impl Codec) -> serde_json::Value {
        serde_json::json!({
            "seq": seq, "partition": "crdt#u", "sort": sort, "kind": "state",
            "payload": BASE64.encode(state.encode().expect("encode")),
        })
    }

    #[test]
    fn a_page_is_cut_once_its_payloads_pass_the_budget_but_never_empty() {
        let change = |seq: u64, size: usize| WireChange {
            seq,
            partition: "p".into(),
            sort: "s".into(),
            kind: "state".into(),
            payload: "A".repeat(size),
        };
        let (kept, cut) = within_budget((1..=5).map(|i| change(i, 40)), 100);
        assert_eq!(kept.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2]);
        assert!(cut);
        let (kept, cut) = within_budget([change(1, 500), change(2, 1)].into_iter(), 100);
        assert_eq!(kept.len(), 1, "one change over the budget still travels");
        assert!(cut);
        let (kept, cut) = within_budget((1..=2).map(|i| change(i, 10)), 100);
        assert_eq!((kept.len(), cut), (2, false));
    }

    #[tokio::test]
    async fn a_change_quarantined_again_is_kept_and_counted_once() {
        let (_syncer, store, _dir) = syncer_of("http://127.0.0.1:9".into()).await;
        let change = WireChange {
            seq: 7,
            partition: "crdt#u".into(),
            sort: "counter#c".into(),
            kind: "state".into(),
            payload: "AA==".into(),
        };
        let replica = jarvis_crdt::ReplicaId::from_name("here");
        for _ in 0..2 {
            quarantine(store.as_ref(), replica, "http://peer", &change, "bad")
                .await
                .expect("quarantine");
        }
        assert_eq!(dead_letter_count(store.as_ref()).await.expect("count"), 1);
        let (letters, _) = dead_letters(store.as_ref(), None, 10).await.expect("list");
        assert_eq!(letters.len(), 1);
        assert_eq!((letters[0].seq, letters[0].reason.as_str()), (7, "bad"));
    }

    #[tokio::test]
    async fn a_feed_page_over_the_size_limit_is_refused_unread() {
        let huge = "A".repeat(MAX_PAGE_BYTES + 1);
        let peer = stub_peer(serde_json::json!({
            "replica_id": "peer",
            "changes": [{"seq": 1, "partition": "p", "sort": "s", "kind": "state", "payload": huge}],
            "next_cursor": "1",
        }))
        .await;
        let (syncer, _store, _dir) = syncer_of(peer).await;
        let results = syncer.run_round().await;
        assert!(!results[0].ok);
        let error = results[0].error.as_deref().unwrap_or_default();
        assert!(error.contains("larger than"), "{error}");
    }

    #[tokio::test]
    async fn a_peer_with_this_replicas_id_is_refused_and_nothing_is_merged() {
        let mut counter = GCounter::new();
        counter.increment(jarvis_crdt::ReplicaId::from_name("here"), 3);
        let peer = stub_peer(serde_json::json!({
            "replica_id": "here",
            "changes": [wire(1, "counter#c", &counter)],
            "next_cursor": "1",
        }))
        .await;
        let (syncer, store, _dir) = syncer_of(peer).await;
        let results = syncer.run_round().await;
        assert!(!results[0].ok);
        let error = results[0].error.as_deref().unwrap_or_default();
        assert!(error.contains("same as this deployment's"), "{error}");
        let key = Key::new("crdt#u", "counter#c").expect("key");
        assert!(store.get(&key).await.expect("get").is_none());
        assert_eq!(
            store
                .load_cursor(&syncer.settings.peers[0])
                .await
                .expect("cursor"),
            None
        );
    }

    #[test]
    fn without_a_configured_token_sync_is_unavailable() {
        let err = authorize(&headers("Bearer anything"), None).expect_err("off");
        assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }
}
