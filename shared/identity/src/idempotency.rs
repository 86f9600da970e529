//! `Idempotency-Key` on POST, with the guarantees of Powertools for AWS Lambda's idempotency
//! utility, kept in the store so they hold across instances:
//!
//! - the same key with the same request (method, path, query, body) replays the first
//!   response — status, body, `Content-Type` and `Location` — and the handler runs once;
//! - the same key with a different request is a 422;
//! - the same key while the first request is still running is a 409 (after a lease of
//!   [`LEASE_SECS`] an abandoned attempt, e.g. a crashed instance, can be taken over);
//! - only final answers are kept: a 5xx, and the refusals that a correct retry can get past
//!   (408 timeout, 409 conflict or contention, 423 locked, 425 too early, 429 rate limited
//!   or locked out) release the key, so a retry runs again;
//! - a response that cannot be kept (the store failing after the side effect) is still
//!   returned, and the key stays claimed until its lease ends;
//! - records expire after [`RECORD_SECS`].
//!
//! Written here rather than taken from a crate: no Rust crate offers Powertools-style
//! idempotency over a pluggable store (the Python and TypeScript utilities have no Rust
//! port), and sealing the kept answers is specific to this API's credentials.
//!
//! Keys are scoped to the caller (the account, or the client address when anonymous), and
//! records live in replica-local partitions.
//!
//! **No credential is kept readable.** Sign-in, refresh, API-key creation and 2FA answers
//! carry tokens, keys, secrets and recovery codes, and those routes are exactly where a
//! client most needs a safe retry, so they keep idempotency rather than refusing it. A kept
//! body is sealed (AES-256-GCM) under a key derived from the master key and the raw
//! `Idempotency-Key`, which the record only holds hashed: a copy of the table, or of the
//! table and the master key, reveals nothing; the client that holds the key gets its
//! answer back.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use jarvis_crdt::{Crdt, Entity};
use jarvis_http::error::ApiError;
use jarvis_secrets::Secrets;
use jarvis_store::clock::Clock;
use jarvis_store::{Key, MergeOptions, Store, now_secs};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The header set on a replayed response.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// How long a record is kept, in seconds.
pub const RECORD_SECS: i64 = 24 * 3600;
/// How long a running request holds its key, in seconds.
pub const LEASE_SECS: i64 = 60;
/// Largest response body kept for replay.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// A checked idempotency key: 1 to 255 visible ASCII characters.
pub fn parse_key(raw: &str) -> Result<&str, ApiError> {
    let ok = (1..=255).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(raw)
    } else {
        Err(ApiError::invalid_field(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        ))
    }
}

/// The fingerprint of a request: what must match for a replay.
pub fn fingerprint(method: &str, path_and_query: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0]);
    hasher.update(path_and_query.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hex::encode(hasher.finalize())
}

/// Whether an answer with `status` is final, and so kept for replay. A transient refusal is
/// not: replaying a 409 or 429 for a day would punish a client that retries correctly.
pub fn is_final(status: u16) -> bool {
    !(status >= 500 || matches!(status, 408 | 409 | 423 | 425 | 429))
}

/// A response kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The status code.
    pub status: u16,
    /// `Content-Type`, when set.
    pub content_type: Option<String>,
    /// `Location`, when set.
    pub location: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// What [`begin`] found.
#[derive(Debug)]
pub enum Begin {
    /// The key is ours: run the request, then [`finish`] or [`abandon`].
    Claimed,
    /// The first request finished: replay this.
    Replay(Saved),
}

/// What the sealing key of a record is derived from, besides the master key.
fn sealing_input(scope: &str, key: &str) -> Vec<u8> {
    [scope.as_bytes(), &[0], key.as_bytes()].concat()
}

fn record_key(scope: &str, key: &str) -> Result<Key, ApiError> {
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    Key::new(format!("~idem#{scope}"), digest).map_err(ApiError::from)
}

enum Found {
    Claimable,
    Mismatch,
    InFlight,
    Done(Entity),
}

/// What an existing record means for a request with `fingerprint` at `now`.
fn assess(record: &Entity, now: i64, fingerprint: &str) -> Found {
    let state = record.field("state").unwrap_or("");
    let lease_over = record
        .field("lease_until")
        .and_then(|v| v.parse::<i64>().ok())
        .is_none_or(|until| until <= now);
    if record.is_empty() || state == "failed" || (state == "running" && lease_over) {
        Found::Claimable
    } else if record.field("fingerprint") != Some(fingerprint) {
        Found::Mismatch
    } else if state == "done" {
        Found::Done(record.clone())
    } else {
        Found::InFlight
    }
}

/// Claims `key` for a request with `fingerprint`, or says what happened to it before.
/// Looking costs one read; only a claim writes.
pub async fn begin(
    store: &dyn Store,
    clock: &Clock,
    secrets: &Secrets,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Begin, ApiError> {
    let now = now_secs();
    let record_key = record_key(scope, key)?;
    let seen = store
        .read::<Entity>(&record_key)
        .await?
        .map(|doc| assess(&doc.state, now, fingerprint));
    let found = match seen {
        Some(found) if !matches!(found, Found::Claimable) => found,
        // Absent or claimable: claim it, conditionally on what is there by then.
        _ => {
            let options = MergeOptions {
                expires_at: Some(now + RECORD_SECS),
                ..MergeOptions::default()
            };
            let (_, found) = store
                .transact(&record_key, options, |record: &mut Entity| {
                    match assess(record, now, fingerprint) {
                        Found::Claimable => {
                            let stamp = clock.stamp_after(record.stamp("state"));
                            let mut delta = record.set("state", stamp, "running");
                            delta.join(record.set("fingerprint", stamp, fingerprint));
                            delta.join(record.set(
                                "lease_until",
                                stamp,
                                (now + LEASE_SECS).to_string(),
                            ));
                            (delta, Found::Claimable)
                        }
                        other => (Entity::new(), other),
                    }
                })
                .await?;
            found
        }
    };
    match found {
        Found::Claimable => Ok(Begin::Claimed),
        Found::Mismatch => Err(ApiError::Unprocessable {
            field: Some("Idempotency-Key".into()),
            message: "this key was already used with a different request".into(),
        }),
        Found::InFlight => Err(ApiError::Conflict(
            "a request with this Idempotency-Key is still in progress".into(),
        )),
        Found::Done(record) => {
            let body = match record.field("sealed") {
                Some(sealed) => secrets
                    .open_replay(&sealing_input(scope, key), sealed)
                    .ok_or_else(|| ApiError::internal("a kept response does not open"))?,
                // Kept by an earlier build, before responses were sealed.
                None => STANDARD
                    .decode(record.field("body").unwrap_or_default())
                    .map_err(ApiError::internal)?,
            };
            Ok(Begin::Replay(Saved {
                status: record
                    .field("status")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(200),
                content_type: record.field("content_type").map(str::to_owned),
                location: record.field("location").map(str::to_owned),
                body,
            }))
        }
    }
}

/// Keeps the response of a claimed request for replay.
pub async fn finish(
    store: &dyn Store,
    clock: &Clock,
    secrets: &Secrets,
    scope: &str,
    key: &str,
    saved: &Saved,
) -> Result<(), ApiError> {
    let sealed = secrets.seal_replay(&sealing_input(scope, key), &saved.body)?;
    store
        .update(&record_key(scope, key)?, |record: &mut Entity| {
            let stamp = clock.stamp_after(record.stamp("state"));
            let mut delta = record.set("state", stamp, "done");
            delta.join(record.set("status", stamp, saved.status.to_string()));
            delta.join(record.set("sealed", stamp, sealed.as_str()));
            if let Some(ct) = &saved.content_type {
                delta.join(record.set("content_type", stamp, ct.as_str()));
            }
            if let Some(location) = &saved.location {
                delta.join(record.set("location", stamp, location.as_str()));
            }
            delta
        })
        .await?;
    Ok(())
}

/// Releases a claimed key after an answer that is not [final](is_final), so a retry runs the
/// request again.
pub async fn abandon(
    store: &dyn Store,
    clock: &Clock,
    scope: &str,
    key: &str,
) -> Result<(), ApiError> {
    store
        .update(&record_key(scope, key)?, |record: &mut Entity| {
            let stamp = clock.stamp_after(record.stamp("state"));
            record.set("state", stamp, "failed")
        })
        .await?;
    Ok(())
}
