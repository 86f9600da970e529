//! Replica ids, dots and causal contexts: the bookkeeping that lets observed-remove types
//! tell "removed" from "not yet seen".

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::InvalidState;

/// The identity of a replica: a deployment (a region, a laptop), never a process.
///
/// 64 bits, shown as 16 hex digits. [`ReplicaId::from_name`] derives it from the configured
/// name (`JARVIS_REPLICA_ID`): the first 8 bytes of the name's SHA-256, so every process of
/// one deployment agrees on it without coordination. Two names colliding needs about 2³²
/// deployments.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(u64);

impl ReplicaId {
    /// The id with this numeric value.
    pub const fn from_u64(value: u64) -> Self {
        Self(value)
    }

    /// The id of the replica named `name`.
    pub fn from_name(name: &str) -> Self {
        let digest = Sha256::digest(name.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Self(u64::from_be_bytes(first))
    }

    /// The numeric value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplicaId({self})")
    }
}

impl std::str::FromStr for ReplicaId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(Self)
    }
}

// Hex string in JSON (a u64 does not survive a JavaScript number), a varint in binary.
impl Serialize for ReplicaId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for ReplicaId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            if text.len() != 16 {
                return Err(serde::de::Error::custom("replica id must be 16 hex digits"));
            }
            text.parse()
                .map_err(|_| serde::de::Error::custom("replica id must be 16 hex digits"))
        } else {
            u64::deserialize(deserializer).map(Self)
        }
    }
}

/// One event of one replica: the replica and its event counter (from 1).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The replica that made the event.
    pub replica: ReplicaId,
    /// The replica's event number, starting at 1.
    pub counter: u64,
}

impl Dot {
    /// The dot `(replica, counter)`.
    pub const fn new(replica: ReplicaId, counter: u64) -> Self {
        Self { replica, counter }
    }
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.replica, self.counter)
    }
}

impl fmt::Debug for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dot({self})")
    }
}

/// The set of events a state has seen: a version vector (every dot up to a counter, per
/// replica) plus a cloud of dots seen out of order.
///
/// Kept compact: no cloud dot is covered by the vector or contiguous with it.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct CausalContext {
    // Sorted by replica, counters ≥ 1. A sorted vector beats a tree map for the handful of
    // replicas a deployment has.
    vv: Vec<(ReplicaId, u64)>,
    cloud: BTreeSet<Dot>,
}

impl CausalContext {
    /// The empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest contiguous counter seen from `replica`.
    pub fn max_contiguous(&self, replica: ReplicaId) -> u64 {
        match self.vv.binary_search_by_key(&replica, |(r, _)| *r) {
            Ok(i) => self.vv[i].1,
            Err(_) => 0,
        }
    }

    /// Whether the context has seen `dot`.
    #[inline]
    pub fn contains(&self, dot: &Dot) -> bool {
        dot.counter <= self.max_contiguous(dot.replica) || self.cloud.contains(dot)
    }

    /// The next dot `replica` should mint: one past everything seen from it.
    pub fn next_dot(&self, replica: ReplicaId) -> Dot {
        let in_cloud = self
            .cloud
            .range(Dot::new(replica, 0)..=Dot::new(replica, u64::MAX))
            .next_back()
            .map_or(0, |d| d.counter);
        Dot::new(replica, self.max_contiguous(replica).max(in_cloud) + 1)
    }

    /// Records `dot` as seen.
    pub fn insert(&mut self, dot: Dot) {
        if !self.contains(&dot) {
            self.cloud.insert(dot);
            self.compact();
        }
    }

    /// Records every dot of `other` as seen.
    pub fn join(&mut self, other: &Self) {
        join_max(&mut self.vv, &other.vv);
        self.cloud.extend(other.cloud.iter().copied());
        self.compact();
    }

    /// Folds cloud dots contiguous with the version vector into it and drops covered ones.
    pub fn compact(&mut self) {
        if self.cloud.is_empty() {
            return;
        }
        let cloud = std::mem::take(&mut self.cloud);
        for dot in cloud {
            let max = self.max_contiguous(dot.replica);
            if dot.counter <= max {
                continue;
            }
            if dot.counter == max + 1 {
                self.set_max(dot.replica, dot.counter);
            } else {
                self.cloud.insert(dot);
            }
        }
    }

    fn set_max(&mut self, replica: ReplicaId, counter: u64) {
        match self.vv.binary_search_by_key(&replica, |(r, _)| *r) {
            Ok(i) => self.vv[i].1 = counter,
            Err(i) => self.vv.insert(i, (replica, counter)),
        }
    }

    /// The version vector: `(replica, highest contiguous counter)`, ascending by replica.
    pub fn version_vector(&self) -> &[(ReplicaId, u64)] {
        &self.vv
    }

    /// Dots seen out of order.
    pub fn cloud(&self) -> impl ExactSizeIterator<Item = &Dot> {
        self.cloud.iter()
    }

    /// Whether nothing has been seen.
    pub fn is_empty(&self) -> bool {
        self.vv.is_empty() && self.cloud.is_empty()
    }

    /// Builds a context from its parts, checking them; the result is compacted.
    pub fn from_parts(vv: Vec<(ReplicaId, u64)>, cloud: Vec<Dot>) -> Result<Self, InvalidState> {
        for pair in vv.windows(2) {
            if pair[0].0 >= pair[1].0 {
                return Err(if pair[0].0 == pair[1].0 {
                    InvalidState::Duplicate("replica in version vector")
                } else {
                    InvalidState::Unsorted("version vector")
                });
            }
        }
        if vv.iter().any(|(_, c)| *c == 0) {
            return Err(InvalidState::ZeroDot);
        }
        let mut set = BTreeSet::new();
        for dot in cloud {
            if dot.counter == 0 {
                return Err(InvalidState::ZeroDot);
            }
            if !set.insert(dot) {
                return Err(InvalidState::Duplicate("dot in causal context"));
            }
        }
        let mut context = Self { vv, cloud: set };
        context.compact();
        Ok(context)
    }
}

/// Joins two lists of `(key, counter)` sorted by key into `mine`, keeping the larger counter
/// of a key both hold: the join of version vectors and of grow-only counters (keyed by
/// replica) and of escrow transfers (keyed by a pair of replicas).
pub(crate) fn join_max<K: Ord + Copy>(mine: &mut Vec<(K, u64)>, theirs: &[(K, u64)]) {
    // The steady state: the same replicas on both sides, merged in place.
    if mine.len() == theirs.len() && mine.iter().zip(theirs).all(|(a, b)| a.0 == b.0) {
        for (a, b) in mine.iter_mut().zip(theirs) {
            a.1 = a.1.max(b.1);
        }
        return;
    }
    let mut merged = Vec::with_capacity(mine.len() + theirs.len());
    let (mut i, mut j) = (0, 0);
    while let (Some(a), Some(b)) = (mine.get(i), theirs.get(j)) {
        match a.0.cmp(&b.0) {
            std::cmp::Ordering::Less => {
                merged.push(*a);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                merged.push(*b);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                merged.push((a.0, a.1.max(b.1)));
                i += 1;
                j += 1;
            }
        }
    }
    merged.extend_from_slice(&mine[i..]);
    merged.extend_from_slice(&theirs[j..]);
    *mine = merged;
}

/// The serialised form of a [`CausalContext`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextRepr {
    vv: Vec<(ReplicaId, u64)>,
    // Always written: binary formats have no field names to skip by.
    #[serde(default)]
    cloud: Vec<Dot>,
}

impl Serialize for CausalContext {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ContextRepr {
            vv: self.vv.clone(),
            cloud: self.cloud.iter().copied().collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CausalContext {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = ContextRepr::deserialize(deserializer)?;
        Self::from_parts(repr.vv, repr.cloud).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ReplicaId = ReplicaId::from_u64(1);
    const B: ReplicaId = ReplicaId::from_u64(2);

    #[test]
    fn replica_ids_from_names_are_stable() {
        assert_eq!(
            ReplicaId::from_name("eu-west-1"),
            ReplicaId::from_name("eu-west-1")
        );
        assert_ne!(
            ReplicaId::from_name("eu-west-1"),
            ReplicaId::from_name("laptop")
        );
        // Pinned: changing the derivation would orphan every stored dot.
        assert_eq!(
            ReplicaId::from_name("laptop").to_string(),
            "5eec0dc419aa8337"
        );
    }

    #[test]
    fn out_of_order_dots_wait_in_the_cloud_until_the_gap_fills() {
        let mut context = CausalContext::new();
        context.insert(Dot::new(A, 2));
        assert_eq!(context.max_contiguous(A), 0);
        assert_eq!(context.cloud().len(), 1);
        context.insert(Dot::new(A, 1));
        assert_eq!(context.max_contiguous(A), 2);
        assert_eq!(context.cloud().len(), 0);
    }

    #[test]
    fn next_dot_is_past_the_cloud() {
        let mut context = CausalContext::new();
        context.insert(Dot::new(A, 5));
        assert_eq!(context.next_dot(A), Dot::new(A, 6));
        assert_eq!(context.next_dot(B), Dot::new(B, 1));
    }

    #[test]
    fn join_merges_vectors_and_clouds() {
        let a = CausalContext::from_parts(vec![(A, 3)], vec![Dot::new(B, 4)]).expect("valid");
        let b = CausalContext::from_parts(vec![(B, 3)], vec![]).expect("valid");
        let mut joined = a.clone();
        joined.join(&b);
        assert_eq!(joined.version_vector(), &[(A, 3), (B, 4)]);
        assert_eq!(joined.cloud().len(), 0);
    }

    #[test]
    fn unsorted_or_duplicate_vectors_are_rejected() {
        assert!(CausalContext::from_parts(vec![(B, 1), (A, 1)], vec![]).is_err());
        assert!(CausalContext::from_parts(vec![(A, 1), (A, 2)], vec![]).is_err());
        assert!(CausalContext::from_parts(vec![(A, 0)], vec![]).is_err());
        assert!(CausalContext::from_parts(vec![], vec![Dot::new(A, 0)]).is_err());
    }
}
