//! Counters: [`GCounter`] (grow only) and [`PNCounter`] (increments and decrements).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Crdt, InvalidState, ReplicaId, Validate};

/// A grow-only counter: one monotonically growing count per replica; the value is their sum.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct GCounter {
    // Sorted by replica; no zero entries. A sorted vector joins in one linear pass.
    counts: Vec<(ReplicaId, u64)>,
}

impl GCounter {
    /// The zero counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter's value: the sum of every replica's count (saturating).
    pub fn value(&self) -> u64 {
        self.counts
            .iter()
            .fold(0u64, |sum, (_, c)| sum.saturating_add(*c))
    }

    /// `replica`'s count.
    pub fn count(&self, replica: ReplicaId) -> u64 {
        self.counts
            .binary_search_by_key(&replica, |(r, _)| *r)
            .map_or(0, |i| self.counts[i].1)
    }

    /// Adds `by` on behalf of `replica`; returns the delta (that replica's new count).
    /// A count saturates at `u64::MAX`.
    pub fn increment(&mut self, replica: ReplicaId, by: u64) -> Self {
        let total = match self.counts.binary_search_by_key(&replica, |(r, _)| *r) {
            Ok(i) => {
                self.counts[i].1 = self.counts[i].1.saturating_add(by);
                self.counts[i].1
            }
            Err(i) => {
                if by == 0 {
                    return Self::default();
                }
                self.counts.insert(i, (replica, by));
                by
            }
        };
        Self {
            counts: vec![(replica, total)],
        }
    }

    /// Every `(replica, count)`, ascending by replica.
    pub fn counts(&self) -> &[(ReplicaId, u64)] {
        &self.counts
    }

    /// Builds a counter from `(replica, count)` pairs, checking them.
    pub fn from_counts(counts: Vec<(ReplicaId, u64)>) -> Result<Self, InvalidState> {
        let counter = Self { counts };
        counter.validate()?;
        Ok(counter)
    }
}

impl Crdt for GCounter {
    fn join(&mut self, other: Self) {
        super::causal::join_max(&mut self.counts, &other.counts);
    }
}

impl Validate for GCounter {
    fn validate(&self) -> Result<(), InvalidState> {
        for pair in self.counts.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(InvalidState::Duplicate("replica in counter"));
            }
            if pair[0].0 > pair[1].0 {
                return Err(InvalidState::Unsorted("counter entries"));
            }
        }
        match self.counts.iter().find(|(_, c)| *c == 0) {
            Some((replica, _)) => Err(InvalidState::ZeroCount(*replica)),
            None => Ok(()),
        }
    }
}

// JSON: `{"replica hex": count, …}`; binary: a sorted sequence of pairs.
impl Serialize for GCounter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_map(self.counts.iter().map(|(r, c)| (r, c)))
        } else {
            self.counts.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for GCounter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let counts = if deserializer.is_human_readable() {
            BTreeMap::<ReplicaId, u64>::deserialize(deserializer)?
                .into_iter()
                .collect()
        } else {
            Vec::<(ReplicaId, u64)>::deserialize(deserializer)?
        };
        Self::from_counts(counts).map_err(serde::de::Error::custom)
    }
}

/// A counter that goes both ways: two grow-only counters, increments minus decrements.
#[derive(Clone, Default, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PNCounter {
    /// Increments.
    #[serde(rename = "p")]
    pub increments: GCounter,
    /// Decrements.
    #[serde(rename = "n")]
    pub decrements: GCounter,
}

impl PNCounter {
    /// The zero counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Increments minus decrements.
    pub fn value(&self) -> i128 {
        i128::from(self.increments.value()) - i128::from(self.decrements.value())
    }

    /// Adds `by`; returns the delta.
    pub fn increment(&mut self, replica: ReplicaId, by: u64) -> Self {
        Self {
            increments: self.increments.increment(replica, by),
            decrements: GCounter::default(),
        }
    }

    /// Subtracts `by`; returns the delta.
    pub fn decrement(&mut self, replica: ReplicaId, by: u64) -> Self {
        Self {
            increments: GCounter::default(),
            decrements: self.decrements.increment(replica, by),
        }
    }
}

impl Crdt for PNCounter {
    fn join(&mut self, other: Self) {
        self.increments.join(other.increments);
        self.decrements.join(other.decrements);
    }
}

impl Validate for PNCounter {
    fn validate(&self) -> Result<(), InvalidState> {
        self.increments.validate()?;
        self.decrements.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ReplicaId = ReplicaId::from_u64(1);
    const B: ReplicaId = ReplicaId::from_u64(2);
    const C: ReplicaId = ReplicaId::from_u64(3);

    #[test]
    fn concurrent_increments_add_up() {
        let mut a = GCounter::new();
        let mut b = GCounter::new();
        a.increment(A, 3);
        b.increment(B, 4);
        a.join(b);
        assert_eq!(a.value(), 7);
    }

    #[test]
    fn join_keeps_replicas_from_both_sides_in_order() {
        let mut a = GCounter::from_counts(vec![(A, 1), (C, 5)]).expect("valid");
        let b = GCounter::from_counts(vec![(B, 2), (C, 3)]).expect("valid");
        a.join(b);
        assert_eq!(a.counts(), &[(A, 1), (B, 2), (C, 5)]);
    }

    #[test]
    fn the_delta_of_an_increment_is_the_new_count_only() {
        let mut counter = GCounter::from_counts(vec![(A, 10), (B, 4)]).expect("valid");
        let delta = counter.increment(B, 1);
        assert_eq!(delta.counts(), &[(B, 5)]);
    }

    #[test]
    fn pn_counter_goes_below_zero() {
        let mut counter = PNCounter::new();
        counter.increment(A, 2);
        counter.decrement(B, 5);
        assert_eq!(counter.value(), -3);
    }

    #[test]
    fn zero_and_unsorted_entries_are_invalid() {
        assert_eq!(
            GCounter::from_counts(vec![(A, 0)]),
            Err(InvalidState::ZeroCount(A))
        );
        assert!(GCounter::from_counts(vec![(B, 1), (A, 1)]).is_err());
        assert!(GCounter::from_counts(vec![(A, 1), (A, 2)]).is_err());
    }
}
