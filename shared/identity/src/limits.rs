//! Rate limits and login lockout, kept in the store so they hold across Lambda instances and
//! processes. Both live in replica-local partitions: they mean nothing to another deployment.
//!
//! **Rate limits lease tokens in slices.** A fixed one-minute window per bucket is a counter
//! document of the tokens *granted* in it. An instance that has no token left for a bucket
//! takes a slice (a tenth of the limit, at least one) with one conditional write, capped at
//! what the window still has, and then spends it in memory; the slice dies with its window.
//! The grants of a window never add up past the limit, so there is **no overshoot**, across
//! any number of instances and processes. The price is an undershoot: tokens an instance
//! leased but did not spend are not available to other instances, so a caller spread over
//! `k` warm instances may be refused up to `k` slices (`k` × 10 % of the limit) early. In
//! steady state a bucket costs one store write per slice: 0.017 writes per request at the
//! default 600 per minute.

use std::collections::HashMap;
use std::sync::Mutex;

use jarvis_crdt::{Codec, GCounter, ReplicaId};
use jarvis_http::error::ApiError;
use jarvis_store::{Key, MergeOptions, Store, now_secs};

/// Length of a rate-limit window, in seconds.
pub const WINDOW_SECS: i64 = 60;

/// The share of a limit one lease takes: a tenth.
pub const SLICES_PER_WINDOW: u64 = 10;

/// Buckets kept in memory before leases of past windows are dropped.
const MAX_LEASES: usize = 10_000;

fn key(partition: String, sort: String) -> Result<Key, ApiError> {
    Key::new(partition, sort).map_err(ApiError::from)
}

/// Tokens this process holds for one bucket in one window.
#[derive(Debug, Clone, Copy)]
struct Lease {
    window: i64,
    left: u64,
    /// The store granted nothing more in this window.
    spent: bool,
}

/// Rate limits with leased tokens (see the module documentation). One per process.
#[derive(Debug, Default)]
pub struct RateLimiter {
    leases: Mutex<HashMap<String, Lease>>,
}

/// What one request against a bucket came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// A token this process already held.
    Leased,
    /// A token of a slice just taken from the store.
    Granted,
}

impl RateLimiter {
    /// Counts one request against `bucket` (e.g. `user:<id>`, `ip:<addr>`); 429 with
    /// `Retry-After` once `limit` tokens of the current window are spent or leased elsewhere.
    pub async fn hit(
        &self,
        store: &dyn Store,
        replica: ReplicaId,
        bucket: &str,
        limit: u64,
    ) -> Result<Spent, ApiError> {
        let now = now_secs();
        let window = now - now.rem_euclid(WINDOW_SECS);
        let refused = || {
            let retry_after_secs = u64::try_from(window + WINDOW_SECS - now)
                .unwrap_or(1)
                .max(1);
            ApiError::TooManyRequests { retry_after_secs }
        };
        match self.spend_leased(bucket, window) {
            Some(true) => return Ok(Spent::Leased),
            // Grants only grow within a window: a spent window stays spent, with no store read.
            Some(false) => return Err(refused()),
            None => {}
        }
        let granted = lease(store, replica, bucket, window, limit).await?;
        self.keep(bucket, window, granted);
        if granted == 0 {
            return Err(refused());
        }
        Ok(Spent::Granted)
    }

    /// Spends a held token: `Some(true)`; `Some(false)` when this window is known to be
    /// spent; `None` when the store must be asked.
    fn spend_leased(&self, bucket: &str, window: i64) -> Option<bool> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let lease = leases
            .get_mut(bucket)
            .filter(|lease| lease.window == window)?;
        if lease.left > 0 {
            lease.left -= 1;
            return Some(true);
        }
        lease.spent.then_some(false)
    }

    /// Keeps what the store granted, less the token this request takes; a grant of nothing
    /// marks the window spent.
    fn keep(&self, bucket: &str, window: i64, granted: u64) {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        if leases.len() >= MAX_LEASES {
            leases.retain(|_, lease| lease.window == window && (lease.left > 0 || lease.spent));
        }
        let fresh = Lease {
            window,
            left: 0,
            spent: false,
        };
        let lease = leases.entry(bucket.to_owned()).or_insert(fresh);
        if lease.window != window {
            *lease = fresh;
        }
        lease.left += granted.saturating_sub(1);
        lease.spent = granted == 0;
    }
}

/// Takes a slice of `bucket`'s window from the store: at most a tenth of `limit`, at most what
/// is left of it. Returns the tokens granted, 0 when the window is spent.
async fn lease(
    store: &dyn Store,
    replica: ReplicaId,
    bucket: &str,
    window: i64,
    limit: u64,
) -> Result<u64, ApiError> {
    let key = key(format!("~rate#{bucket}"), format!("w#{window}"))?;
    let options = MergeOptions {
        expires_at: Some(window + 2 * WINDOW_SECS),
        ..MergeOptions::default()
    };
    let slice = (limit / SLICES_PER_WINDOW).max(1);
    let (_, granted) = store
        .transact(&key, options, |counter: &mut GCounter| {
            let granted = slice.min(limit.saturating_sub(counter.value()));
            if granted == 0 {
                return (GCounter::default(), 0);
            }
            (counter.increment(replica, granted), granted)
        })
        .await?;
    Ok(granted)
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
            .map_err(|e| ApiError::from(jarvis_store::StoreError::Corrupt(e)))?
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

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use jarvis_store::libsql::LibsqlStore;

    const REPLICA: ReplicaId = ReplicaId::from_u64(1);

    async fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        Arc::new(
            LibsqlStore::open(&dir.path().join("limits.db"))
                .await
                .expect("store"),
        )
    }

    /// Waits for the next window when this one ends within 5 s, so a test stays in one.
    async fn within_one_window() {
        let left = WINDOW_SECS - now_secs().rem_euclid(WINDOW_SECS);
        if left < 5 {
            tokio::time::sleep(std::time::Duration::from_secs(left as u64 + 1)).await;
        }
    }

    /// Tokens granted in the current window of `bucket`, as the store holds them.
    async fn granted(store: &dyn Store, bucket: &str) -> u64 {
        let now = now_secs();
        let window = now - now.rem_euclid(WINDOW_SECS);
        let key = key(format!("~rate#{bucket}"), format!("w#{window}")).expect("key");
        store
            .read::<GCounter>(&key)
            .await
            .expect("read")
            .map_or(0, |doc| doc.state.value())
    }

    #[tokio::test]
    async fn a_slice_is_leased_in_one_write_and_spent_in_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        within_one_window().await;
        let limiter = RateLimiter::default();
        let mut spent = Vec::new();
        for _ in 0..11 {
            spent.push(
                limiter
                    .hit(store.as_ref(), REPLICA, "user:a", 100)
                    .await
                    .expect("within the limit"),
            );
        }
        // A slice is a tenth of the limit: the first request and the eleventh take one.
        assert_eq!(spent[0], Spent::Granted);
        assert!(
            spent[1..10].iter().all(|s| *s == Spent::Leased),
            "{spent:?}"
        );
        assert_eq!(spent[10], Spent::Granted);
        assert_eq!(granted(store.as_ref(), "user:a").await, 20);
    }

    #[tokio::test]
    async fn instances_sharing_a_store_never_get_more_than_the_limit_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        within_one_window().await;
        let instances = [RateLimiter::default(), RateLimiter::default()];
        let (mut accepted, mut refused) = (0, 0);
        for i in 0..60 {
            match instances[i % 2]
                .hit(store.as_ref(), REPLICA, "user:b", 25)
                .await
            {
                Ok(_) => accepted += 1,
                Err(ApiError::TooManyRequests { retry_after_secs }) => {
                    assert!((1..=60).contains(&retry_after_secs));
                    refused += 1;
                }
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(granted(store.as_ref(), "user:b").await, 25);
        assert!(accepted <= 25, "{accepted} accepted");
        // Round-robin callers spend every slice they lease: nothing is refused early.
        assert_eq!((accepted, refused), (25, 35));
    }

    #[tokio::test]
    async fn a_limit_below_ten_leases_one_token_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        within_one_window().await;
        let limiter = RateLimiter::default();
        for _ in 0..3 {
            let spent = limiter.hit(store.as_ref(), REPLICA, "ip:c", 3).await;
            assert_eq!(spent.expect("within"), Spent::Granted);
        }
        let over = limiter.hit(store.as_ref(), REPLICA, "ip:c", 3).await;
        assert!(matches!(over, Err(ApiError::TooManyRequests { .. })));
        assert_eq!(granted(store.as_ref(), "ip:c").await, 3);
    }

    #[tokio::test]
    async fn a_spent_window_refuses_without_asking_the_store_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        within_one_window().await;
        let limiter = RateLimiter::default();
        limiter
            .hit(store.as_ref(), REPLICA, "ip:d", 1)
            .await
            .expect("the one token");
        let over = limiter.hit(store.as_ref(), REPLICA, "ip:d", 1).await;
        assert!(matches!(over, Err(ApiError::TooManyRequests { .. })));
        // A store that would grant (it has never seen this bucket) is not consulted.
        let other = tempfile::tempdir().expect("tempdir");
        let untouched = self::store(&other).await;
        let again = limiter.hit(untouched.as_ref(), REPLICA, "ip:d", 1).await;
        assert!(matches!(again, Err(ApiError::TooManyRequests { .. })));
        assert_eq!(granted(untouched.as_ref(), "ip:d").await, 0);
    }
}
