//! What the auth function stores about accounts, sessions and API keys, and how a presented
//! credential is checked against it: the part every function needs to know who calls.
//!
//! | document | key | kinds of state |
//! | --- | --- | --- |
//! | account | `users` / `<id>` | fields `email`, `role`, `password` (argon2id PHC), `created_at`, `totp_secret` and `totp_pending` (AES-GCM sealed), `recovery_codes` (peppered hashes); levels `totp` (flag), `totp_step` (last accepted step), `disabled` (a flag of earlier builds, only ever lowered by an enable); marks `disable:<stamp>` and `enable:<stamp>` (see [`is_disabled`]), `recovery_used:<hash>`, `abandoned` |
//! | email claim | `email#<address>` / `owner` | marks `claim:<stamp>:<id>` |
//! | session | `user#<id>` / `session#<sid>` | fields `seed` (AES-GCM sealed), `created_at`, `expires_at`, `ip`; level `generation` (of the live refresh token); mark `revoked` |
//! | API key | `user#<id>` / `apikey#<kid>` | fields `name`, `scopes`, `hash`, `created_at`, `expires_at`; mark `revoked` |
//! | first admin | `auth` / `bootstrap` | mark `admin:<id>` |
//!
//! What a sync must never undo is a level or a mark: revocations, spent recovery codes, the
//! generation of a session's refresh token (every earlier token is spent) and the last
//! accepted TOTP step only grow, and disabling resolves toward the safe side (a disable
//! that an enable has not seen wins; see [`is_disabled`]), so no stale copy from another
//! replica can bring a revoked token back, re-enable a code or undo a disable.
//!
//! A session's expiry is part of the session (`expires_at`), checked on every use on every
//! replica: the store's expiry of the document is only housekeeping, and a copy merged in by
//! sync carries none.

use jarvis_config::SecurityConfig;
use jarvis_crdt::{Crdt, Entity};
use jarvis_http::ApiError;
use jarvis_secrets::SecretSource;
use jarvis_store::{Key, Store, now_secs};

use crate::token::{self, API_KEY_PREFIX, Opaque};
use crate::{Credential, Identity, Role, Scope};

/// How long a session (and its refresh tokens) lives at most, in seconds.
pub const SESSION_SECS: i64 = 30 * 24 * 3600;
/// The partition of account documents.
pub const USERS: &str = "users";

/// A key, its refusal as an [`ApiError`].
pub fn key(partition: impl Into<String>, sort: impl Into<String>) -> Result<Key, ApiError> {
    Key::new(partition, sort).map_err(ApiError::from)
}

/// The key of an account.
pub fn user_key(user_id: &str) -> Result<Key, ApiError> {
    key(USERS, user_id)
}

/// The key of a session.
pub fn session_key(user_id: &str, session_id: &str) -> Result<Key, ApiError> {
    key(format!("user#{user_id}"), format!("session#{session_id}"))
}

/// The key of an API key.
pub fn api_key_key(user_id: &str, key_id: &str) -> Result<Key, ApiError> {
    key(format!("user#{user_id}"), format!("apikey#{key_id}"))
}

/// Whether the account is disabled. Each disable adds a mark named by its stamp; an enable
/// covers the disable marks it has seen. A disable no enable has seen — one made concurrently
/// on another replica — keeps the account disabled after sync, so security state resolves
/// toward the safe side and an administrator re-enables it knowingly. (Earlier builds kept
/// the flag as the parity of the `disabled` level, which an enable also lowers.)
pub fn is_disabled(account: &Entity) -> bool {
    account.flag("disabled") || uncovered_disables(account).next().is_some()
}

fn uncovered_disables(account: &Entity) -> impl Iterator<Item = &str> {
    account
        .marks()
        .filter_map(|m| m.strip_prefix("disable:"))
        .filter(|d| !account.has_mark(&format!("enable:{d}")))
}

/// Disables or enables the account; returns the delta (empty when nothing changes).
pub fn set_disabled(account: &mut Entity, stamp: jarvis_crdt::Timestamp, disabled: bool) -> Entity {
    if disabled {
        if is_disabled(account) {
            return Entity::new();
        }
        let jarvis_crdt::Timestamp {
            wall_ms,
            logical,
            replica,
        } = stamp;
        return account.mark(format!("disable:{wall_ms}.{logical}@{replica}"));
    }
    let seen: Vec<String> = uncovered_disables(account).map(str::to_owned).collect();
    let mut delta = account.toggle("disabled", false);
    for disable in seen {
        delta.join(account.mark(format!("enable:{disable}")));
    }
    delta
}

/// When a session ends: its own `expires_at` (sessions of earlier builds: `created_at` plus
/// [`SESSION_SECS`]).
pub fn session_expiry(session: &Entity) -> i64 {
    let secs = |name: &str| session.field(name).and_then(|v| v.parse::<i64>().ok());
    secs("expires_at")
        .or_else(|| secs("created_at").map(|at| at + SESSION_SECS))
        .unwrap_or(0)
}

/// Whether a session may be used at `now`: not revoked and not past its expiry.
pub fn session_live(session: &Entity, now: i64) -> bool {
    !session.has_mark("revoked") && session_expiry(session) > now
}

/// Whether an API key may be used at `now`: not revoked and not past its expiry, if any.
pub fn key_live(key: &Entity, now: i64) -> bool {
    !key.has_mark("revoked")
        && key
            .field("expires_at")
            .and_then(|v| v.parse::<i64>().ok())
            .is_none_or(|at| at > now)
}

/// Whether an account may act: neither disabled nor abandoned.
pub fn account_usable(account: &Entity) -> bool {
    !is_disabled(account) && !account.has_mark("abandoned")
}

/// The role an account holds.
pub fn role_of(account: &Entity) -> Role {
    // An unknown role (a newer build's) gets the least privilege.
    account
        .field("role")
        .and_then(Role::parse)
        .unwrap_or(Role::Viewer)
}

/// Resolves a bearer credential (an access token or an API key) to the caller, checking the
/// store on every call: the account must exist and not be disabled, the session or key must
/// be live. A disabled account or revoked key stops working on the next request.
pub async fn authenticate(
    store: &dyn Store,
    secrets: &dyn SecretSource,
    security: &SecurityConfig,
    credential: &str,
) -> Result<Identity, ApiError> {
    if credential.starts_with(API_KEY_PREFIX) {
        return authenticate_key(store, credential).await;
    }
    let claims = token::verify_access(credential, secrets, security).await?;
    let refused = || ApiError::Unauthorized("invalid or expired access token".into());
    let (account_key, session_key) = (
        user_key(&claims.sub)?,
        session_key(&claims.sub, &claims.sid)?,
    );
    let (account, session) = tokio::try_join!(
        store.read::<Entity>(&account_key),
        store.read::<Entity>(&session_key),
    )?;
    let session_live = session.is_some_and(|s| session_live(&s.state, now_secs()));
    let account = account.ok_or_else(refused)?.state;
    if !session_live || !account_usable(&account) {
        return Err(refused());
    }
    Ok(Identity {
        email: account.field("email").unwrap_or_default().to_owned(),
        role: role_of(&account),
        user_id: claims.sub,
        credential: Credential::Session {
            session_id: claims.sid,
        },
    })
}

/// Checks again that `identity`, resolved earlier from a credential that is no longer at
/// hand (a WebSocket connection keeps only who connected), may still act: the account exists
/// and is not disabled, and the session or key is live. Answers the identity with the
/// account's current role, or 401 as [`authenticate`] would.
pub async fn recheck(store: &dyn Store, identity: &Identity) -> Result<Identity, ApiError> {
    let refused =
        || ApiError::Unauthorized("the credential of this connection is no longer valid".into());
    let held = match &identity.credential {
        Credential::Session { session_id } => session_key(&identity.user_id, session_id)?,
        Credential::ApiKey { key_id, .. } => api_key_key(&identity.user_id, key_id)?,
        Credential::Delegated { scopes, api_key } => {
            let delegation = crate::delegation::Delegation {
                user_id: identity.user_id.clone(),
                scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
                api_key: api_key.clone(),
            };
            return delegation.act(store).await;
        }
    };
    let account = user_key(&identity.user_id)?;
    let (account, held) =
        tokio::try_join!(store.read::<Entity>(&account), store.read::<Entity>(&held),)?;
    let (account, held) = (
        account.ok_or_else(refused)?.state,
        held.ok_or_else(refused)?.state,
    );
    let live = match &identity.credential {
        Credential::Session { .. } => session_live(&held, now_secs()),
        _ => key_live(&held, now_secs()),
    };
    if !live || !account_usable(&account) {
        return Err(refused());
    }
    Ok(Identity {
        role: role_of(&account),
        ..identity.clone()
    })
}

async fn authenticate_key(store: &dyn Store, raw: &str) -> Result<Identity, ApiError> {
    let refused = || ApiError::Unauthorized("invalid, expired or revoked API key".into());
    let presented = Opaque::parse(API_KEY_PREFIX, raw.trim()).ok_or_else(refused)?;
    let account_key = user_key(&presented.user_id)?;
    let key_key = api_key_key(&presented.user_id, &presented.id)?;
    let (account, key) = tokio::try_join!(
        store.read::<Entity>(&account_key),
        store.read::<Entity>(&key_key),
    )?;
    let key = key.ok_or_else(refused)?.state;
    let account = account.ok_or_else(refused)?.state;
    let hash_ok = token::digests_match(key.field("hash").unwrap_or_default(), &presented.digest());
    if !hash_ok || !key_live(&key, now_secs()) || !account_usable(&account) {
        return Err(refused());
    }
    let scopes = key
        .field("scopes")
        .unwrap_or_default()
        .split(' ')
        .filter_map(Scope::parse)
        .collect();
    Ok(Identity {
        email: account.field("email").unwrap_or_default().to_owned(),
        role: role_of(&account),
        user_id: presented.user_id,
        credential: Credential::ApiKey {
            key_id: presented.id,
            scopes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use jarvis_crdt::{ReplicaId, Timestamp};

    const A: ReplicaId = ReplicaId::from_u64(1);
    const B: ReplicaId = ReplicaId::from_u64(2);

    #[test]
    fn a_concurrent_disable_survives_an_enable_that_did_not_see_it() {
        let mut a = Entity::new();
        let mut b = Entity::new();
        // Replica A disables and re-enables; replica B, not yet synced, disables.
        let mut deltas = vec![set_disabled(&mut a, Timestamp::new(10, 0, A), true)];
        deltas.push(set_disabled(&mut a, Timestamp::new(20, 0, A), false));
        assert!(!is_disabled(&a));
        let from_b = set_disabled(&mut b, Timestamp::new(15, 0, B), true);
        assert!(is_disabled(&b));
        // After sync, both ways and in any order: disabled.
        let mut synced_a = a.clone();
        synced_a.join(from_b.clone());
        let mut synced_b = b.clone();
        for delta in deltas {
            synced_b.join(delta);
        }
        assert!(is_disabled(&synced_a) && is_disabled(&synced_b));
        assert_eq!(synced_a, synced_b);
    }

    #[test]
    fn an_enable_that_saw_the_disable_re_enables_on_every_replica() {
        let mut a = Entity::new();
        let disable = set_disabled(&mut a, Timestamp::new(10, 0, A), true);
        let mut b = Entity::new();
        b.join(disable.clone());
        let enable = set_disabled(&mut b, Timestamp::new(20, 0, B), false);
        assert!(!is_disabled(&b));
        a.join(enable);
        assert!(!is_disabled(&a));
        // A stale copy of the disable arriving again changes nothing.
        a.join(disable);
        assert!(!is_disabled(&a));
    }

    #[test]
    fn an_account_disabled_by_an_earlier_build_is_disabled_until_enabled() {
        let mut account = Entity::new();
        account.toggle("disabled", true);
        assert!(is_disabled(&account));
        set_disabled(&mut account, Timestamp::new(5, 0, A), false);
        assert!(!is_disabled(&account));
    }

    #[test]
    fn a_session_ends_at_its_own_expiry_whatever_the_store_does() {
        let stamp = Timestamp::new(1, 0, A);
        let mut session = Entity::new();
        session.set("created_at", stamp, "1000");
        session.set("expires_at", stamp, "2000");
        assert!(session_live(&session, 1999));
        assert!(!session_live(&session, 2000));
        let mut legacy = Entity::new();
        legacy.set("created_at", stamp, "1000");
        assert!(session_live(&legacy, 1000 + SESSION_SECS - 1));
        assert!(!session_live(&legacy, 1000 + SESSION_SECS));
    }
}
