//! Backoff for merge retries: exponential with full jitter, bounded by a deadline.

use std::time::Duration;

/// Time kept back from a request's deadline to send the answer.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// How a merge retries on conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Pause ceiling of the first retry.
    pub base: Duration,
    /// Largest pause ceiling.
    pub cap: Duration,
    /// Give up when the next pause would end after this much time since the first attempt.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(2),
            cap: Duration::from_millis(100),
            deadline: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `attempt` (1 = first retry): uniformly random between
    /// zero and `min(cap, base · 2^(attempt-1))` ("full jitter"), so writers that collided
    /// spread out instead of colliding again in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.cap);
        let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(fastrand::u64(0..=micros))
    }

    /// A policy whose deadline is the smaller of this one's and `remaining` (e.g. what is
    /// left of a Lambda invocation, less a margin to answer in).
    pub fn within(mut self, remaining: Duration) -> Self {
        self.deadline = self.deadline.min(remaining);
        self
    }

    /// This policy, bounded by a request's deadline (on Lambda) less [`ANSWER_MARGIN`], so a
    /// contended merge gives up with a 409 while the function can still answer instead of
    /// being killed by its timeout.
    pub fn until(self, due: Option<std::time::Instant>) -> Self {
        match due {
            Some(due) => self.within(
                due.saturating_duration_since(std::time::Instant::now())
                    .saturating_sub(ANSWER_MARGIN),
            ),
            None => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_the_growing_ceiling_and_the_cap() {
        let policy = RetryPolicy::default();
        for attempt in 1..40 {
            let ceiling = (policy.base * 2u32.pow((attempt - 1).min(20))).min(policy.cap);
            for _ in 0..50 {
                assert!(policy.backoff(attempt) <= ceiling);
            }
        }
    }

    #[test]
    fn a_request_deadline_bounds_the_retries() {
        let due = std::time::Instant::now() + Duration::from_secs(2);
        let policy = RetryPolicy::default().until(Some(due));
        assert!(
            policy.deadline <= Duration::from_millis(1_500),
            "{policy:?}"
        );
        let outside = RetryPolicy::default().until(None);
        assert_eq!(outside, RetryPolicy::default());
    }

    #[test]
    fn within_never_extends_the_deadline() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.within(Duration::from_secs(1)).deadline,
            Duration::from_secs(1)
        );
        assert_eq!(
            policy.within(Duration::from_secs(60)).deadline,
            policy.deadline
        );
    }
}
