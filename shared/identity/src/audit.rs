//! The tamper-evident audit trail: one hash chain per replica.
//!
//! Each replica appends to its own chain (partition `audit#<replica>`): event `n` is the
//! document `e#<n>` (zero-padded), holding the event, the MAC of event `n-1` (`prev`) and its
//! own MAC — HMAC-SHA256, under a key derived from the master secret, over a canonical
//! encoding of the chain name, `n`, `prev` and every field. The chain's `head` document holds
//! the highest `n` and its MAC, so removing the newest events is detected too.
//!
//! An event is written create-only at `n = head + 1`: two writers never get the same `n`,
//! and a writer that finds `n` taken (another instance, or a crash between the event and
//! its head) moves the head forward and tries the next. Chains are ordinary documents, so
//! they sync: every replica can verify every chain.
//!
//! [`verify`] recomputes every MAC and link; changing, removing or reordering a stored
//! event, or forging one without the key, is reported as the first broken link.
//!
//! No gaps: [`record`] is how a state change is audited once it committed. When the append
//! fails, the event (with its time and request id) goes to a durable outbox, a replica-local
//! partition, and the client still gets its answer — the change happened, and an error would
//! only invite a retry that finds nothing to change and so writes no event. Every later
//! [`record`] first drains the outbox into the chain, oldest first.

use serde::Serialize;

use jarvis_crdt::{Codec, Crdt, Entity};
use jarvis_http::error::ApiError;
use jarvis_secrets::Secrets;
use jarvis_store::clock::Clock;
use jarvis_store::{Key, Store, StoreError, Write, decode_cursor, encode_cursor, now_secs};

const REGISTRY_PARTITION: &str = "audit";
const REGISTRY_SORT: &str = "chains";
const HEAD_SORT: &str = "head";
const EVENT_PREFIX: &str = "e#";
const GENESIS: &str = "genesis";

/// A security-relevant event to record.
#[derive(Debug, Clone, Default)]
pub struct Event {
    /// What happened, e.g. `login.failed`.
    pub kind: &'static str,
    /// Who did it (an account id), when known.
    pub actor: Option<String>,
    /// Whom it concerns (an account id), when known.
    pub subject: Option<String>,
    /// The client address.
    pub ip: Option<String>,
    /// A short detail (a key id, a new role); never a secret.
    pub detail: Option<String>,
}

impl Event {
    /// An event an account caused about itself.
    pub fn own(kind: &'static str, user_id: &str) -> Self {
        Self {
            kind,
            actor: Some(user_id.to_owned()),
            subject: Some(user_id.to_owned()),
            ..Self::default()
        }
    }

    /// The event with a detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// A recorded event, as `GET /audit` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Record {
    /// The replica whose chain holds it.
    pub chain: String,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened (RFC 3339, UTC, to the millisecond); kept as epoch milliseconds.
    #[serde(rename = "at", serialize_with = "jarvis_http::time::serialize_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub at_ms: u64,
    /// Who did it.
    pub actor: Option<String>,
    /// Whom it concerns.
    pub subject: Option<String>,
    /// The client address.
    pub ip: Option<String>,
    /// Detail.
    pub detail: Option<String>,
    /// The request that caused it.
    pub request_id: Option<String>,
    /// MAC of the previous event (`genesis` for the first).
    pub prev: String,
    /// This event's MAC.
    pub mac: String,
}

fn opt(entity: &Entity, name: &str) -> Option<String> {
    entity.field(name).map(str::to_owned)
}

impl Record {
    fn from_entity(chain: &str, seq: u64, entity: &Entity) -> Self {
        let event = Stamped::from_entity(entity);
        Self {
            chain: chain.to_owned(),
            seq,
            kind: event.kind,
            at_ms: event.at_ms,
            actor: event.actor,
            subject: event.subject,
            ip: event.ip,
            detail: event.detail,
            request_id: event.request_id,
            prev: entity.field("prev").unwrap_or_default().to_owned(),
            mac: entity.field("mac").unwrap_or_default().to_owned(),
        }
    }

    /// The bytes the MAC covers: every field but the MAC, in a fixed order.
    fn canonical(&self) -> Vec<u8> {
        serde_json::json!([
            "jarvis-audit-v1",
            self.chain,
            self.seq,
            self.prev,
            self.kind,
            self.at_ms,
            self.actor,
            self.subject,
            self.ip,
            self.detail,
            self.request_id,
        ])
        .to_string()
        .into_bytes()
    }
}

fn chain_partition(chain: &str) -> String {
    format!("audit#{chain}")
}

fn event_sort(seq: u64) -> String {
    format!("{EVENT_PREFIX}{seq:020}")
}

fn key(partition: &str, sort: &str) -> Result<Key, ApiError> {
    Key::new(partition, sort).map_err(ApiError::from)
}

/// An event as it is written: with its time and the request that caused it.
#[derive(Debug, Clone)]
struct Stamped {
    kind: String,
    at_ms: u64,
    actor: Option<String>,
    subject: Option<String>,
    ip: Option<String>,
    detail: Option<String>,
    request_id: Option<String>,
}

impl Stamped {
    fn now(event: Event) -> Self {
        Self {
            kind: event.kind.to_owned(),
            at_ms: jarvis_crdt::hlc::system_time_ms(),
            actor: event.actor,
            subject: event.subject,
            ip: event.ip,
            detail: event.detail,
            request_id: jarvis_http::request_id::current(),
        }
    }

    fn fields(&self) -> [(&'static str, Option<String>); 7] {
        [
            ("type", Some(self.kind.clone())),
            ("at_ms", Some(self.at_ms.to_string())),
            ("actor", self.actor.clone()),
            ("subject", self.subject.clone()),
            ("ip", self.ip.clone()),
            ("detail", self.detail.clone()),
            ("request_id", self.request_id.clone()),
        ]
    }

    fn from_entity(entity: &Entity) -> Self {
        Self {
            kind: entity.field("type").unwrap_or_default().to_owned(),
            at_ms: entity
                .field("at_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            actor: opt(entity, "actor"),
            subject: opt(entity, "subject"),
            ip: opt(entity, "ip"),
            detail: opt(entity, "detail"),
            request_id: opt(entity, "request_id"),
        }
    }
}

fn outbox_partition(chain: &str) -> String {
    format!("~audit-outbox#{chain}")
}

/// Audits a change that has committed: drains the outbox, then appends `event`; when the
/// append fails, keeps the event in the outbox for a later call. Fails only when the event
/// could be neither appended nor kept.
pub async fn record(
    store: &dyn Store,
    clock: &Clock,
    secrets: &Secrets,
    chain: &str,
    event: Event,
) -> Result<(), ApiError> {
    if let Err(err) = drain(store, clock, secrets, chain).await {
        tracing::warn!(error = %err, "the audit outbox could not be drained yet");
    }
    let event = Stamped::now(event);
    match append_stamped(store, clock, secrets, chain, &event).await {
        Ok(_) => Ok(()),
        Err(err) => {
            tracing::warn!(error = %err, kind = %event.kind, "audit append failed; event kept in the outbox");
            let outbox = key(
                &outbox_partition(chain),
                &uuid::Uuid::now_v7().simple().to_string(),
            )?;
            let stamp = clock.now();
            store
                .update(&outbox, |doc: &mut Entity| {
                    let mut delta = Entity::new();
                    for (name, value) in event.fields() {
                        if let Some(value) = value {
                            delta.join(doc.set(name, stamp, value));
                        }
                    }
                    delta
                })
                .await
                .map_err(|outbox_err| {
                    tracing::error!(error = %outbox_err, "audit event could be neither appended nor kept");
                    err
                })?;
            Ok(())
        }
    }
}

/// Appends the events waiting in `chain`'s outbox, oldest first; returns how many.
pub async fn drain(
    store: &dyn Store,
    clock: &Clock,
    secrets: &Secrets,
    chain: &str,
) -> Result<usize, ApiError> {
    let partition = outbox_partition(chain);
    let waiting = store
        .list_documents::<Entity>(&partition, None, None, 50)
        .await?;
    let mut drained = 0;
    for doc in waiting.items {
        append_stamped(
            store,
            clock,
            secrets,
            chain,
            &Stamped::from_entity(&doc.state),
        )
        .await?;
        // Gone once appended: expired documents read as absent and are purged.
        let options = jarvis_store::MergeOptions {
            expires_at: Some(now_secs()),
            ..jarvis_store::MergeOptions::default()
        };
        store
            .update_with(&doc.key, |_: &mut Entity| Entity::new(), options)
            .await?;
        drained += 1;
    }
    Ok(drained)
}

/// Appends `event` to `chain` (this replica's name); returns its position.
pub async fn append(
    store: &dyn Store,
    clock: &Clock,
    secrets: &Secrets,
    chain: &str,
    event: Event,
) -> Result<u64, ApiError> {
    append_stamped(store, clock, secrets, chain, &Stamped::now(event)).await
}

async fn append_stamped(
    store: &dyn Store,
    clock: &Clock,
    secrets: &Secrets,
    chain: &str,
    event: &Stamped,
) -> Result<u64, ApiError> {
    let partition = chain_partition(chain);
    let head_key = key(&partition, HEAD_SORT)?;
    loop {
        let head = store
            .read::<Entity>(&head_key)
            .await?
            .map(|d| d.state)
            .unwrap_or_default();
        let seq = head.level("seq") + 1;
        if seq == 1 {
            // A new chain: list it before its first event, so `verify` never misses one.
            let registry = key(REGISTRY_PARTITION, REGISTRY_SORT)?;
            store
                .update(&registry, |e: &mut Entity| e.mark(chain))
                .await?;
        }
        let mut record = Record {
            chain: chain.to_owned(),
            seq,
            kind: event.kind.clone(),
            at_ms: event.at_ms,
            actor: event.actor.clone(),
            subject: event.subject.clone(),
            ip: event.ip.clone(),
            detail: event.detail.clone(),
            request_id: event.request_id.clone(),
            prev: head.field("mac").unwrap_or(GENESIS).to_owned(),
            mac: String::new(),
        };
        record.mac = secrets.audit_mac(&record.canonical());
        let stamp = clock.now();
        let mut doc = Entity::new();
        let links = [
            ("prev", Some(record.prev.clone())),
            ("mac", Some(record.mac.clone())),
        ];
        for (name, value) in event.fields().into_iter().chain(links) {
            if let Some(value) = value {
                doc.set(name, stamp, value);
            }
        }
        doc.raise("seq", seq);
        let bytes = doc
            .encode()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let write = Write {
            expected_version: 0,
            state: &bytes,
            delta: &bytes,
            expires_at: None,
        };
        let event_key = key(&partition, &event_sort(seq))?;
        match store.put(&event_key, write).await {
            Ok(_) => {
                advance_head(store, clock, &head_key, seq, &record.mac).await?;
                return Ok(seq);
            }
            Err(StoreError::Conflict) => {
                // Taken: by a concurrent writer, or written before a crash that left the
                // head behind. Move the head to it and try the next position.
                if let Some(taken) = store.read::<Entity>(&event_key).await? {
                    let mac = taken.state.field("mac").unwrap_or_default().to_owned();
                    advance_head(store, clock, &head_key, seq, &mac).await?;
                }
            }
            Err(other) => return Err(other.into()),
        }
    }
}

async fn advance_head(
    store: &dyn Store,
    clock: &Clock,
    head_key: &Key,
    seq: u64,
    mac: &str,
) -> Result<(), ApiError> {
    store
        .update(head_key, |head: &mut Entity| {
            if head.level("seq") >= seq {
                return Entity::new();
            }
            let mut delta = head.raise("seq", seq);
            let stamp = clock.stamp_after(head.stamp("mac"));
            delta.join(head.set("mac", stamp, mac));
            delta
        })
        .await?;
    Ok(())
}

/// Up to `limit` stored events of a chain after the sort key `after`, in order.
async fn events_after(
    store: &dyn Store,
    partition: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(Key, jarvis_store::Stored)>, StoreError> {
    let query = jarvis_store::ListQuery {
        prefix: Some(EVENT_PREFIX),
        after,
        limit,
        now: now_secs(),
    };
    store.list(partition, query).await
}

async fn chains(store: &dyn Store) -> Result<Vec<String>, ApiError> {
    let registry = key(REGISTRY_PARTITION, REGISTRY_SORT)?;
    Ok(store
        .read::<Entity>(&registry)
        .await?
        .map(|d| d.state.marks().map(str::to_owned).collect())
        .unwrap_or_default())
}

/// Which events [`list`] returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only events of this type; one ending in `*` is a prefix (`trading.*`).
    pub kind: Option<String>,
    /// Only events whose actor or subject is this account.
    pub user: Option<String>,
    /// Only events whose detail holds this text (an order's id: its whole story).
    pub about: Option<String>,
}

impl Filter {
    /// Whether `record` passes.
    pub fn passes(&self, record: &Record) -> bool {
        let kind_ok = self
            .kind
            .as_deref()
            .is_none_or(|k| match k.strip_suffix('*') {
                Some(prefix) => record.kind.starts_with(prefix),
                None => record.kind == k,
            });
        let user_ok = self.user.as_deref().is_none_or(|u| {
            record.actor.as_deref() == Some(u) || record.subject.as_deref() == Some(u)
        });
        let about_ok = self
            .about
            .as_deref()
            .is_none_or(|a| record.detail.as_deref().is_some_and(|d| d.contains(a)));
        kind_ok && user_ok && about_ok
    }
}

/// Most events read to fill one page of a filtered listing.
const MAX_SCAN: usize = 2_000;

/// Events oldest first, chain by chain, filtered; a page at a time.
pub async fn list(
    store: &dyn Store,
    filter: &Filter,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<Record>, Option<String>), ApiError> {
    let bad_cursor = || ApiError::unknown_cursor("cursor");
    let (mut chain_from, mut after) = match cursor {
        Some(cursor) => {
            let decoded = decode_cursor(cursor).ok_or_else(bad_cursor)?;
            let (chain, sort) = decoded.split_once('\n').ok_or_else(bad_cursor)?;
            (Some(chain.to_owned()), Some(sort.to_owned()))
        }
        None => (None, None),
    };
    let mut out = Vec::new();
    let mut scanned = 0;
    for chain in chains(store).await? {
        if chain_from
            .as_deref()
            .is_some_and(|from| chain.as_str() < from)
        {
            continue;
        }
        if chain_from.as_deref() != Some(chain.as_str()) {
            after = None;
        }
        chain_from = None;
        let partition = chain_partition(&chain);
        loop {
            let rows = events_after(store, &partition, after.as_deref(), 200).await?;
            if rows.is_empty() {
                break;
            }
            for (row_key, stored) in rows {
                scanned += 1;
                let entity = Entity::decode(&stored.bytes).map_err(StoreError::Corrupt)?;
                let record = Record::from_entity(&chain, entity.level("seq"), &entity);
                after = Some(row_key.sort().to_owned());
                if filter.passes(&record) {
                    out.push(record);
                }
                if out.len() == limit || scanned >= MAX_SCAN {
                    let next = encode_cursor(&format!("{chain}\n{}", row_key.sort()));
                    return Ok((out, Some(next)));
                }
            }
        }
        after = None;
    }
    Ok((out, None))
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// Whether every chain is intact.
    pub ok: bool,
    /// Events checked.
    pub checked: u64,
    /// The first broken link, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<BrokenLink>,
    /// Present when the events checked so far are intact but more remain: pass it back as
    /// `cursor` to go on. Each request checks at most [`VERIFY_BUDGET`] events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Most events one `/audit/verify` request checks.
pub const VERIFY_BUDGET: u64 = 5_000;

/// Where a verification stopped: the chain, the next position and the MAC it must link to,
/// authenticated under the audit key so a cursor cannot be forged to skip events.
fn verify_cursor(secrets: &Secrets, chain: &str, seq: u64, prev: &str) -> String {
    let state = format!("{chain}\n{seq}\n{prev}");
    encode_cursor(&format!("{state}\n{}", verify_cursor_mac(secrets, &state)))
}

fn verify_cursor_mac(secrets: &Secrets, state: &str) -> String {
    secrets.audit_mac(format!("verify-cursor\n{state}").as_bytes())
}

fn parse_verify_cursor(secrets: &Secrets, cursor: &str) -> Result<(String, u64, String), ApiError> {
    let invalid = || ApiError::unknown_cursor("cursor");
    let text = decode_cursor(cursor).ok_or_else(invalid)?;
    let mut parts = text.splitn(4, '\n');
    let (Some(chain), Some(seq), Some(prev), Some(mac)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let expected = verify_cursor_mac(secrets, &format!("{chain}\n{seq}\n{prev}"));
    if !crate::token::digests_match(&expected, mac) {
        return Err(invalid());
    }
    let seq = seq.parse().map_err(|_| invalid())?;
    Ok((chain.to_owned(), seq, prev.to_owned()))
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BrokenLink {
    /// The chain (replica).
    pub chain: String,
    /// The position at fault.
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

/// Recomputes the MACs and links of every chain, [`VERIFY_BUDGET`] events at most per call:
/// from the start, or from where `cursor` (a previous answer's `next_cursor`) stopped.
pub async fn verify(
    store: &dyn Store,
    secrets: &Secrets,
    cursor: Option<&str>,
) -> Result<Verification, ApiError> {
    verify_within(store, secrets, cursor, VERIFY_BUDGET).await
}

async fn verify_within(
    store: &dyn Store,
    secrets: &Secrets,
    cursor: Option<&str>,
    budget: u64,
) -> Result<Verification, ApiError> {
    let resume = cursor
        .map(|c| parse_verify_cursor(secrets, c))
        .transpose()?;
    let mut checked = 0;
    let broken = |chain: &str, seq: u64, reason: &str, checked: u64| Verification {
        ok: false,
        checked,
        broken: Some(BrokenLink {
            chain: chain.to_owned(),
            seq,
            reason: reason.to_owned(),
        }),
        next_cursor: None,
    };
    let chains = chains(store).await?;
    let start = match &resume {
        Some((chain, _, _)) => chains
            .iter()
            .position(|c| c == chain)
            .ok_or_else(|| ApiError::unknown_cursor("cursor"))?,
        None => 0,
    };
    for (index, chain) in chains.iter().enumerate().skip(start) {
        let partition = chain_partition(chain);
        let (mut expected_seq, mut prev) = match &resume {
            Some((_, seq, prev)) if index == start => (*seq, prev.clone()),
            _ => (1, GENESIS.to_owned()),
        };
        let mut after: Option<String> = (expected_seq > 1).then(|| event_sort(expected_seq - 1));
        loop {
            if checked >= budget {
                return Ok(Verification {
                    ok: true,
                    checked,
                    broken: None,
                    next_cursor: Some(verify_cursor(secrets, chain, expected_seq, &prev)),
                });
            }
            let room = usize::try_from((budget - checked).min(500)).unwrap_or(500);
            let rows = events_after(store, &partition, after.as_deref(), room).await?;
            if rows.is_empty() {
                break;
            }
            for (row_key, stored) in rows {
                after = Some(row_key.sort().to_owned());
                let Ok(entity) = Entity::decode(&stored.bytes) else {
                    return Ok(broken(
                        chain,
                        expected_seq,
                        "event does not decode",
                        checked,
                    ));
                };
                let seq = entity.level("seq");
                if row_key.sort() != event_sort(seq) {
                    return Ok(broken(
                        chain,
                        expected_seq,
                        "event is stored out of place",
                        checked,
                    ));
                }
                if seq != expected_seq {
                    return Ok(broken(chain, expected_seq, "event is missing", checked));
                }
                let record = Record::from_entity(chain, seq, &entity);
                if record.prev != prev {
                    return Ok(broken(
                        chain,
                        seq,
                        "link to the previous event does not match",
                        checked,
                    ));
                }
                let mac = secrets.audit_mac(&record.canonical());
                if !crate::token::digests_match(&mac, &record.mac) {
                    return Ok(broken(
                        chain,
                        seq,
                        "MAC mismatch: the event was altered, or written under another master key",
                        checked,
                    ));
                }
                checked += 1;
                expected_seq += 1;
                prev = record.mac;
            }
        }
        let head = store
            .read::<Entity>(&key(&partition, HEAD_SORT)?)
            .await?
            .map(|d| d.state)
            .unwrap_or_default();
        let head_seq = head.level("seq");
        if head_seq >= expected_seq {
            return Ok(broken(
                chain,
                expected_seq,
                "events after this one were removed",
                checked,
            ));
        }
        // The head may lag the newest event (a crash between the two writes); when it names
        // the newest, it must name it exactly.
        if head_seq > 0 && head_seq + 1 == expected_seq && head.field("mac") != Some(prev.as_str())
        {
            return Ok(broken(
                chain,
                head_seq,
                "the chain head does not match the newest event",
                checked,
            ));
        }
    }
    Ok(Verification {
        ok: true,
        checked,
        broken: None,
        next_cursor: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            chain: "eu-west-1".into(),
            seq: 7,
            kind: "login.failed".into(),
            at_ms: 1_763_700_000_000,
            actor: None,
            subject: Some("0193a0c27a3e70008000000000000001".into()),
            ip: Some("203.0.113.9".into()),
            detail: Some("ada@example.com".into()),
            request_id: Some("56a7b072-2915-4484-9f64-40f02040330c".into()),
            prev: "genesis".into(),
            mac: String::new(),
        }
    }

    #[tokio::test]
    async fn verification_goes_on_from_its_cursor_and_a_forged_cursor_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(
            jarvis_store::libsql::LibsqlStore::open(&dir.path().join("j.db"))
                .await
                .expect("open"),
        );
        let secrets = Secrets::parse(r#"{"master_key":"a-master-key-of-at-least-32-characters"}"#)
            .expect("secrets");
        let clock = Clock::new(jarvis_crdt::ReplicaId::from_name("r"));
        for _ in 0..7 {
            append(
                store.as_ref(),
                &clock,
                &secrets,
                "r",
                Event::own("logout", "u"),
            )
            .await
            .expect("append");
        }
        let mut cursor = None;
        let mut checked = 0;
        let mut requests = 0;
        loop {
            let step = verify_within(store.as_ref(), &secrets, cursor.as_deref(), 3)
                .await
                .expect("verify");
            assert!(step.ok && step.checked <= 3, "{step:?}");
            checked += step.checked;
            requests += 1;
            match step.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!((checked, requests), (7, 3));

        let forged = encode_cursor("r\n6\ngenesis\n00");
        let err = verify_within(store.as_ref(), &secrets, Some(&forged), 3)
            .await
            .expect_err("forged");
        assert_eq!(err.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
    }

    /// The MAC input is a persisted format: chains written by one build verify in the next.
    #[test]
    fn the_canonical_encoding_of_an_event_is_stable() {
        assert_eq!(
            String::from_utf8(record().canonical()).expect("utf-8"),
            r#"["jarvis-audit-v1","eu-west-1",7,"genesis","login.failed",1763700000000,null,"0193a0c27a3e70008000000000000001","203.0.113.9","ada@example.com","56a7b072-2915-4484-9f64-40f02040330c"]"#
        );
    }

    #[test]
    fn every_field_is_covered_by_the_mac() {
        let base = record().canonical();
        let changes: [fn(&mut Record); 9] = [
            |r| r.chain.push('x'),
            |r| r.seq += 1,
            |r| r.prev = "other".into(),
            |r| r.kind = "login.succeeded".into(),
            |r| r.at_ms += 1,
            |r| r.actor = Some("someone".into()),
            |r| r.subject = None,
            |r| r.ip = None,
            |r| r.detail = Some("other".into()),
        ];
        for change in changes {
            let mut altered = record();
            change(&mut altered);
            assert_ne!(altered.canonical(), base);
        }
    }
}
