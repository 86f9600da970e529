//! This replica's hybrid logical clock, shared by the handlers of a process.

use std::sync::Mutex;

use jarvis_crdt::hlc::{DEFAULT_MAX_DRIFT, system_time_ms};
use jarvis_crdt::{Hlc, ReplicaId, Timestamp};

/// Issues timestamps for last-writer-wins writes made here.
#[derive(Debug)]
pub struct Clock {
    hlc: Mutex<Hlc>,
}

impl Clock {
    /// A clock stamping for `replica`.
    pub fn new(replica: ReplicaId) -> Self {
        Self {
            hlc: Mutex::new(Hlc::new(replica, DEFAULT_MAX_DRIFT)),
        }
    }

    /// A stamp for a write now.
    pub fn now(&self) -> Timestamp {
        self.stamp_after(None)
    }

    /// A stamp for a write that replaces a value stamped `seen`: after it whenever `seen`
    /// is within the allowed drift, so a write made after reading a value wins over it. A
    /// stamp from a clock far ahead is not adopted; the write then carries our own time.
    pub fn stamp_after(&self, seen: Option<Timestamp>) -> Timestamp {
        let physical = system_time_ms();
        let mut hlc = match self.hlc.lock() {
            Ok(hlc) => hlc,
            // The clock holds no invariant a panicking holder could break half-way.
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(seen) = seen {
            match hlc.observe(seen, physical) {
                Ok(stamp) => return stamp,
                Err(err) => {
                    tracing::warn!(error = %err, "ignoring a stored timestamp from the future")
                }
            }
        }
        hlc.now(physical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_after_reading_a_value_is_stamped_after_it() {
        let clock = Clock::new(ReplicaId::from_u64(1));
        let seen = Timestamp::new(system_time_ms() + 30_000, 5, ReplicaId::from_u64(2));
        assert!(clock.stamp_after(Some(seen)) > seen);
    }

    #[test]
    fn stamps_increase() {
        let clock = Clock::new(ReplicaId::from_u64(1));
        let a = clock.now();
        let b = clock.now();
        assert!(b > a);
    }
}
