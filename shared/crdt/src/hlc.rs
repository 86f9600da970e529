//! Hybrid logical clocks: timestamps that follow wall-clock time when clocks behave, and
//! stay monotonic and causally ordered when they do not.
//!
//! A [`Timestamp`] is `(wall milliseconds, logical counter, replica)`, ordered in that order,
//! so two stamps never tie unless they are the same event of the same replica. The clock is
//! given the physical time by its caller ([`Hlc::now`], [`Hlc::observe`]); it never reads a
//! clock itself, which keeps merges pure and tests deterministic.
//!
//! Clock skew: a local clock that jumps backwards does not move timestamps backwards (the
//! logical counter advances instead). A remote stamp more than the configured drift ahead
//! of our physical time is refused with [`ClockError::TooFarAhead`] rather than adopted,
//! so one replica with a broken clock cannot drag every other replica's clock into the
//! future and win every last-writer-wins race.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::ReplicaId;

/// Default largest accepted lead of a remote stamp over our physical clock.
pub const DEFAULT_MAX_DRIFT: Duration = Duration::from_secs(60);

/// A hybrid-logical-clock timestamp, totally ordered.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp {
    /// Milliseconds since the Unix epoch (the physical component).
    pub wall_ms: u64,
    /// Events within the same millisecond, or while the wall clock lags.
    pub logical: u32,
    /// The replica that issued the stamp: the final tie-breaker.
    pub replica: ReplicaId,
}

impl Timestamp {
    /// The stamp `(wall_ms, logical, replica)`.
    pub const fn new(wall_ms: u64, logical: u32, replica: ReplicaId) -> Self {
        Self {
            wall_ms,
            logical,
            replica,
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.wall_ms, self.logical, self.replica)
    }
}

/// Why a remote timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// The remote stamp is further ahead of our physical clock than the drift allowed.
    #[error(
        "remote timestamp is {ahead_ms} ms ahead of the local clock (at most {max_drift_ms} ms accepted)"
    )]
    TooFarAhead {
        /// How far ahead the stamp was.
        ahead_ms: u64,
        /// The configured limit.
        max_drift_ms: u64,
    },
}

/// A hybrid logical clock of one replica.
#[derive(Debug, Clone)]
pub struct Hlc {
    replica: ReplicaId,
    wall_ms: u64,
    logical: u32,
    max_drift_ms: u64,
}

impl Hlc {
    /// A clock for `replica` refusing remote stamps more than `max_drift` ahead.
    pub fn new(replica: ReplicaId, max_drift: Duration) -> Self {
        Self {
            replica,
            wall_ms: 0,
            logical: 0,
            max_drift_ms: u64::try_from(max_drift.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The replica this clock stamps for.
    pub fn replica(&self) -> ReplicaId {
        self.replica
    }

    /// The last stamp issued or observed.
    pub fn last(&self) -> Timestamp {
        Timestamp::new(self.wall_ms, self.logical, self.replica)
    }

    /// A stamp for a local event at physical time `physical_ms`; strictly greater than every
    /// stamp this clock issued or observed before.
    pub fn now(&mut self, physical_ms: u64) -> Timestamp {
        if physical_ms > self.wall_ms {
            self.wall_ms = physical_ms;
            self.logical = 0;
        } else {
            self.tick();
        }
        self.last()
    }

    /// Takes a remote stamp into account (on receiving a change) and returns a stamp greater
    /// than both it and everything before. Refuses a stamp too far in the future; the clock
    /// is unchanged then.
    pub fn observe(
        &mut self,
        remote: Timestamp,
        physical_ms: u64,
    ) -> Result<Timestamp, ClockError> {
        let ahead_ms = remote.wall_ms.saturating_sub(physical_ms);
        if ahead_ms > self.max_drift_ms {
            return Err(ClockError::TooFarAhead {
                ahead_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        let wall = self.wall_ms.max(remote.wall_ms).max(physical_ms);
        if wall == self.wall_ms && wall == remote.wall_ms {
            self.logical = self.logical.max(remote.logical);
            self.tick();
        } else if wall == self.wall_ms {
            self.tick();
        } else if wall == remote.wall_ms {
            self.wall_ms = wall;
            self.logical = remote.logical;
            self.tick();
        } else {
            self.wall_ms = wall;
            self.logical = 0;
        }
        Ok(self.last())
    }

    /// Advances the logical counter; on overflow, borrows a millisecond from the future
    /// (after four billion events in one millisecond, which bounded drift makes harmless).
    fn tick(&mut self) {
        match self.logical.checked_add(1) {
            Some(next) => self.logical = next,
            None => {
                self.wall_ms = self.wall_ms.saturating_add(1);
                self.logical = 0;
            }
        }
    }
}

/// Physical time as milliseconds since the Unix epoch, for callers of [`Hlc`].
pub fn system_time_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: ReplicaId = ReplicaId::from_u64(0xA);
    const B: ReplicaId = ReplicaId::from_u64(0xB);

    fn clock(replica: ReplicaId) -> Hlc {
        Hlc::new(replica, DEFAULT_MAX_DRIFT)
    }

    #[test]
    fn follows_the_wall_clock_when_it_advances() {
        let mut hlc = clock(A);
        assert_eq!(hlc.now(1_000), Timestamp::new(1_000, 0, A));
        assert_eq!(hlc.now(1_005), Timestamp::new(1_005, 0, A));
    }

    #[test]
    fn same_millisecond_events_are_ordered_by_the_logical_counter() {
        let mut hlc = clock(A);
        let first = hlc.now(1_000);
        let second = hlc.now(1_000);
        assert!(second > first);
        assert_eq!(second, Timestamp::new(1_000, 1, A));
    }

    #[test]
    fn a_clock_going_backwards_does_not_move_stamps_backwards() {
        let mut hlc = clock(A);
        let before = hlc.now(10_000);
        let after = hlc.now(4_000);
        assert!(after > before);
        assert_eq!(after, Timestamp::new(10_000, 1, A));
        // Once the wall clock passes the old reading again, stamps follow it.
        assert_eq!(hlc.now(10_001), Timestamp::new(10_001, 0, A));
    }

    #[test]
    fn observing_a_remote_stamp_from_a_fast_clock_orders_after_it() {
        let mut hlc = clock(A);
        hlc.now(1_000);
        let remote = Timestamp::new(5_000, 3, B);
        let stamp = hlc.observe(remote, 1_001).expect("within drift");
        assert!(stamp > remote);
        assert_eq!(stamp, Timestamp::new(5_000, 4, A));
        // Local events after it stay after it, although our wall clock still lags.
        assert!(hlc.now(1_002) > stamp);
    }

    #[test]
    fn a_remote_stamp_far_in_the_future_is_refused_and_not_adopted() {
        let mut hlc = clock(A);
        let before = hlc.now(1_000);
        let remote = Timestamp::new(1_000 + 3_600_000, 0, B);
        let err = hlc.observe(remote, 1_000).expect_err("an hour ahead");
        assert_eq!(
            err,
            ClockError::TooFarAhead {
                ahead_ms: 3_600_000,
                max_drift_ms: 60_000
            }
        );
        assert_eq!(hlc.last(), before, "the clock did not move");
    }

    #[test]
    fn equal_wall_and_logical_parts_tie_break_on_the_replica() {
        let a = Timestamp::new(7, 0, A);
        let b = Timestamp::new(7, 0, B);
        assert!(a < b);
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn stamps_are_strictly_monotonic_under_any_clock_behaviour(
            events in proptest::collection::vec((any::<bool>(), 0u64..20_000, 0u32..5), 1..200)
        ) {
            let mut hlc = Hlc::new(A, Duration::from_secs(10));
            let mut last = hlc.last();
            for (remote, physical, logical) in events {
                let stamp = if remote {
                    match hlc.observe(Timestamp::new(physical + 5_000, logical, B), physical) {
                        Ok(stamp) => {
                            prop_assert!(stamp > Timestamp::new(physical + 5_000, logical, B));
                            stamp
                        }
                        Err(_) => continue,
                    }
                } else {
                    hlc.now(physical)
                };
                prop_assert!(stamp > last, "{stamp:?} after {last:?}");
                last = stamp;
            }
        }
    }
}
