//! Rate limits and login lockout, kept in the store so they hold across Lambda instances and
//! processes: a fixed one-minute window per bucket is a counter document, incremented by a
//! conditional write (so concurrent instances never lose a count) and expiring with its
//! window. Both live in replica-local partitions: they are written on every request and
//! mean nothing to another deployment.

use crate::crdt::{Codec, GCounter, ReplicaId};
use crate::error::ApiError;
use crate::store::{Key, MergeOptions, Store, now_secs};

/// Length of a rate-limit window, in seconds.
pub const WINDOW_SECS: i64 = 60;

fn key(partition: String, sort: String) -> Result<Key, ApiError> {
    Key::new(partition, sort).map_err(ApiError::from)
}

/// Counts one request against `bucket` (e.g. `user:<id>`, `ip:<addr>`); 429 with
/// `Retry-After` once more than `limit` arrived in the current window.
pub async fn hit(
    store: &dyn Store,
    replica: ReplicaId,
    bucket: &str,
    limit: u64,
) -> Result<(), ApiError> {
    let now = now_secs();
    let window = now - now.rem_euclid(WINDOW_SECS);
    let key = key(format!("~rate#{bucket}"), format!("w#{window}"))?;
    let options = MergeOptions {
        expires_at: Some(window + 2 * WINDOW_SECS),
        ..MergeOptions::default()
    };
    let doc = store
        .update_with(&key, |c: &mut GCounter| c.increment(replica, 1), options)
        .await?;
    if doc.state.value() > limit {
        let retry_after_secs = u64::try_from(window + WINDOW_SECS - now)
            .unwrap_or(1)
            .max(1);
        return Err(ApiError::TooManyRequests { retry_after_secs });
    }
    Ok(())
}

/// Failed sign-ins of one email, and the lockout they lead to.
#[derive(Debug, Clone, Copy)]
pub struct Lockout {
    /// Failures that lock the account.
    pub threshold: u64,
    /// Seconds a lockout lasts after the failure that caused it.
    pub duration_secs: i64,
}

fn lockout_key(email: &str) -> Result<Key, ApiError> {
    key(format!("~lockout#{email}"), "failures".to_owned())
}

impl Lockout {
    /// 429 `locked_out` (with `Retry-After`) while `email` is locked.
    pub async fn check(&self, store: &dyn Store, email: &str) -> Result<(), ApiError> {
        let key = lockout_key(email)?;
        let Some(stored) = store.get(&key).await? else {
            return Ok(());
        };
        let now = now_secs();
        if stored.is_expired(now) {
            return Ok(());
        }
        let failures = GCounter::decode(&stored.bytes)
            .map_err(|e| ApiError::from(crate::store::StoreError::Corrupt(e)))?
            .value();
        if failures >= self.threshold {
            let until = stored.expires_at.unwrap_or(now + self.duration_secs);
            return Err(ApiError::LockedOut {
                retry_after_secs: u64::try_from(until - now).unwrap_or(1).max(1),
            });
        }
        Ok(())
    }

    /// Records a failed sign-in; returns whether this failure locked the account.
    pub async fn record_failure(
        &self,
        store: &dyn Store,
        replica: ReplicaId,
        email: &str,
    ) -> Result<bool, ApiError> {
        let options = MergeOptions {
            expires_at: Some(now_secs() + self.duration_secs),
            ..MergeOptions::default()
        };
        let doc = store
            .update_with(
                &lockout_key(email)?,
                |c: &mut GCounter| c.increment(replica, 1),
                options,
            )
            .await?;
        Ok(doc.state.value() == self.threshold)
    }

    /// Clears the failures after a successful sign-in.
    pub async fn clear(&self, store: &dyn Store, email: &str) -> Result<(), ApiError> {
        let key = lockout_key(email)?;
        if store.get(&key).await?.is_none() {
            return Ok(());
        }
        let options = MergeOptions {
            expires_at: Some(now_secs()),
            ..MergeOptions::default()
        };
        store
            .update_with(&key, |_: &mut GCounter| GCounter::default(), options)
            .await?;
        Ok(())
    }
}
