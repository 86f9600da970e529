//! [`OrSet`]: an observed-remove, add-wins set with no tombstones.
//!
//! Each present element carries the dots of the adds that put it there; the causal context
//! records every dot the set has seen. A remove drops the element's dots but keeps them in
//! the context, so a join can tell "removed here" (dot seen, absent) from "not yet seen
//! here" (dot unknown). An add concurrent with a remove mints a dot the remove never saw,
//! so the element survives: add wins. A remove only removes the adds it observed.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use foldhash::fast::RandomState;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;

use super::{CausalContext, Crdt, Dot, InvalidState, ReplicaId, Validate};

/// The dots of one element: almost always exactly one, kept inline.
type Dots = SmallVec<[Dot; 1]>;

/// An add-wins observed-remove set.
///
/// Elements need `Hash + Eq` for the set and `Serialize` for canonical ordering when
/// encoded: the binary form sorts elements by their encoded bytes and shares prefixes
/// between neighbours, so sets of similar strings (ids, tags, paths) store compactly.
#[derive(Clone, Debug)]
pub struct OrSet<E> {
    // A fast seeded hasher (not SipHash): elements come from users, so the seed matters,
    // but joins of large sets are dominated by hashing.
    entries: HashMap<E, Dots, RandomState>,
    context: CausalContext,
}

impl<E> Default for OrSet<E> {
    fn default() -> Self {
        Self {
            entries: HashMap::default(),
            context: CausalContext::default(),
        }
    }
}

impl<E: Hash + Eq> PartialEq for OrSet<E> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries && self.context == other.context
    }
}

impl<E: Hash + Eq> Eq for OrSet<E> {}

impl<E: Hash + Eq + Clone> OrSet<E> {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `element` on behalf of `replica`; returns the delta. The new add supersedes the
    /// element's earlier adds seen here.
    pub fn add(&mut self, replica: ReplicaId, element: E) -> Self {
        let dot = self.context.next_dot(replica);
        let mut delta_context = CausalContext::new();
        if let Some(old) = self.entries.get(&element) {
            for d in old {
                delta_context.insert(*d);
            }
        }
        delta_context.insert(dot);
        self.entries
            .insert(element.clone(), SmallVec::from_buf([dot]));
        self.context.insert(dot);
        let mut delta = Self::default();
        delta.entries.insert(element, SmallVec::from_buf([dot]));
        delta.context = delta_context;
        delta
    }

    /// Removes `element` (the adds of it seen here); returns the delta. Removing an absent
    /// element returns the empty delta.
    pub fn remove(&mut self, element: &E) -> Self {
        let mut delta = Self::default();
        if let Some(dots) = self.entries.remove(element) {
            for d in dots {
                delta.context.insert(d);
            }
        }
        delta
    }

    /// Removes every element seen here; returns the delta.
    pub fn clear(&mut self) -> Self {
        let mut delta = Self::default();
        for (_, dots) in self.entries.drain() {
            for d in dots {
                delta.context.insert(d);
            }
        }
        delta
    }

    /// Whether `element` is present.
    pub fn contains(&self, element: &E) -> bool {
        self.entries.contains_key(element)
    }

    /// The dots of the adds that keep `element` present.
    pub fn dots(&self, element: &E) -> Option<&[Dot]> {
        self.entries.get(element).map(|d| d.as_slice())
    }

    /// The present elements, in no particular order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &E> {
        self.entries.keys()
    }

    /// Number of present elements.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no element is present.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The causal context.
    pub fn context(&self) -> &CausalContext {
        &self.context
    }
}

impl<E: Hash + Eq + Clone> Crdt for OrSet<E> {
    fn join(&mut self, other: Self) {
        let Self {
            entries: mut theirs,
            context: their_context,
        } = other;
        let my_context = &self.context;
        // Elements on our side: keep dots both sides have, and ours the other side has not
        // seen (a dot it has seen but lacks was removed there).
        self.entries.retain(|element, dots| {
            match theirs.remove(element) {
                Some(their_dots) if their_dots == *dots => {}
                Some(their_dots) => {
                    dots.retain(|d| their_dots.contains(d) || !their_context.contains(d));
                    for d in their_dots {
                        if !dots.contains(&d) && !my_context.contains(&d) {
                            dots.push(d);
                        }
                    }
                    dots.sort_unstable();
                }
                None => dots.retain(|d| !their_context.contains(d)),
            }
            !dots.is_empty()
        });
        // Elements only on their side: keep the adds we have not seen.
        for (element, mut dots) in theirs {
            dots.retain(|d| !my_context.contains(d));
            if !dots.is_empty() {
                self.entries.insert(element, dots);
            }
        }
        self.context.join(&their_context);
    }
}

impl<E: Hash + Eq> Validate for OrSet<E> {
    fn validate(&self) -> Result<(), InvalidState> {
        let mut seen =
            HashSet::with_capacity_and_hasher(self.entries.len(), RandomState::default());
        for dots in self.entries.values() {
            if dots.is_empty() {
                return Err(InvalidState::EmptyDots);
            }
            for dot in dots {
                if dot.counter == 0 {
                    return Err(InvalidState::ZeroDot);
                }
                if !self.context.contains(dot) {
                    return Err(InvalidState::DotBeyondContext(*dot));
                }
                if !seen.insert(*dot) {
                    return Err(InvalidState::DuplicateDot(*dot));
                }
            }
            if dots.windows(2).any(|w| w[0] > w[1]) {
                return Err(InvalidState::Unsorted("element dots"));
            }
        }
        Ok(())
    }
}

// ---- Encoding ---------------------------------------------------------------------------
//
// JSON (human-readable): `{"entries":[{"element":…,"dots":[…]}],"context":{"vv":…}}`.
// Binary: replica ids once in a table and referred to by index; elements as their postcard
// bytes, sorted, each sharing a prefix with the one before; dots as (replica index,
// counter). Both sort elements by their encoded bytes, so equal sets encode identically.

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRepr<E> {
    entries: Vec<JsonEntry<E>>,
    context: CausalContext,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry<E> {
    element: E,
    dots: Vec<Dot>,
}

#[derive(Serialize, Deserialize)]
struct CompactRepr {
    replicas: Vec<ReplicaId>,
    vv: Vec<(u32, u64)>,
    cloud: Vec<(u32, u64)>,
    entries: Vec<CompactEntry>,
}

#[derive(Serialize, Deserialize)]
struct CompactEntry {
    shared: u32,
    suffix: Vec<u8>,
    dots: SmallVec<[(u32, u64); 1]>,
}

fn element_bytes<E: Serialize, Er: serde::ser::Error>(element: &E) -> Result<Vec<u8>, Er> {
    postcard::to_allocvec(element).map_err(Er::custom)
}

/// An entry with the encoded bytes of its element.
type EncodedEntry<'a, E> = (Vec<u8>, &'a E, &'a Dots);

impl<E: Hash + Eq + Serialize> OrSet<E> {
    /// Entries sorted by the encoded bytes of their elements.
    fn sorted_entries<Er: serde::ser::Error>(&self) -> Result<Vec<EncodedEntry<'_, E>>, Er> {
        let mut sorted = self
            .entries
            .iter()
            .map(|(e, d)| Ok((element_bytes::<E, Er>(e)?, e, d)))
            .collect::<Result<Vec<_>, Er>>()?;
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(sorted)
    }
}

impl<E: Hash + Eq + Serialize> Serialize for OrSet<E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let sorted = self.sorted_entries::<S::Error>()?;
        if serializer.is_human_readable() {
            return JsonRepr {
                entries: sorted
                    .into_iter()
                    .map(|(_, element, dots)| JsonEntry {
                        element,
                        dots: dots.to_vec(),
                    })
                    .collect(),
                context: self.context.clone(),
            }
            .serialize(serializer);
        }
        let mut replicas: Vec<ReplicaId> = self
            .context
            .version_vector()
            .iter()
            .map(|(r, _)| *r)
            .chain(self.context.cloud().map(|d| d.replica))
            .collect();
        replicas.sort_unstable();
        replicas.dedup();
        // Every dot of an entry is in the context, so its replica is in the table.
        let index = |r: ReplicaId| -> Result<u32, S::Error> {
            replicas
                .binary_search(&r)
                .map_err(|_| {
                    serde::ser::Error::custom(InvalidState::DotBeyondContext(Dot::new(r, 0)))
                })
                .and_then(|i| u32::try_from(i).map_err(serde::ser::Error::custom))
        };
        let mut entries = Vec::with_capacity(sorted.len());
        let mut previous: &[u8] = &[];
        for (bytes, _, dots) in &sorted {
            let shared = previous
                .iter()
                .zip(bytes.iter())
                .take_while(|(a, b)| a == b)
                .count();
            entries.push(CompactEntry {
                shared: u32::try_from(shared).map_err(serde::ser::Error::custom)?,
                suffix: bytes[shared..].to_vec(),
                dots: dots
                    .iter()
                    .map(|d| Ok((index(d.replica)?, d.counter)))
                    .collect::<Result<_, S::Error>>()?,
            });
            previous = bytes;
        }
        CompactRepr {
            vv: self
                .context
                .version_vector()
                .iter()
                .map(|(r, c)| Ok((index(*r)?, *c)))
                .collect::<Result<_, S::Error>>()?,
            cloud: self
                .context
                .cloud()
                .map(|d| Ok((index(d.replica)?, d.counter)))
                .collect::<Result<_, S::Error>>()?,
            replicas,
            entries,
        }
        .serialize(serializer)
    }
}

impl<'de, E: Hash + Eq + Clone + DeserializeOwned> Deserialize<'de> for OrSet<E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut set = Self::default();
        if deserializer.is_human_readable() {
            let repr = JsonRepr::<E>::deserialize(deserializer)?;
            set.context = repr.context;
            for entry in repr.entries {
                let mut dots: Dots = entry.dots.into_iter().collect();
                dots.sort_unstable();
                if set.entries.insert(entry.element, dots).is_some() {
                    return Err(D::Error::custom(InvalidState::Duplicate("set element")));
                }
            }
        } else {
            let repr = CompactRepr::deserialize(deserializer)?;
            if repr.replicas.windows(2).any(|w| w[0] >= w[1]) {
                return Err(D::Error::custom(InvalidState::Unsorted("replica table")));
            }
            let replica = |i: u32| -> Result<ReplicaId, D::Error> {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| repr.replicas.get(i).copied())
                    .ok_or_else(|| D::Error::custom("replica index out of range"))
            };
            let vv = repr
                .vv
                .iter()
                .map(|(i, c)| Ok((replica(*i)?, *c)))
                .collect::<Result<Vec<_>, D::Error>>()?;
            let cloud = repr
                .cloud
                .iter()
                .map(|(i, c)| Ok(Dot::new(replica(*i)?, *c)))
                .collect::<Result<Vec<_>, D::Error>>()?;
            set.context = CausalContext::from_parts(vv, cloud).map_err(D::Error::custom)?;
            set.entries.reserve(repr.entries.len());
            let mut previous: Vec<u8> = Vec::new();
            for entry in repr.entries {
                let shared = usize::try_from(entry.shared)
                    .ok()
                    .filter(|s| *s <= previous.len())
                    .ok_or_else(|| D::Error::custom("element prefix longer than its neighbour"))?;
                let mut bytes = previous[..shared].to_vec();
                bytes.extend_from_slice(&entry.suffix);
                if !previous.is_empty() && bytes <= previous {
                    return Err(D::Error::custom(InvalidState::Unsorted("set elements")));
                }
                let (element, rest) =
                    postcard::take_from_bytes::<E>(&bytes).map_err(D::Error::custom)?;
                if !rest.is_empty() {
                    return Err(D::Error::custom("trailing bytes after a set element"));
                }
                let mut dots = entry
                    .dots
                    .iter()
                    .map(|(i, c)| Ok(Dot::new(replica(*i)?, *c)))
                    .collect::<Result<Dots, D::Error>>()?;
                dots.sort_unstable();
                set.entries.insert(element, dots);
                previous = bytes;
            }
        }
        set.validate().map_err(D::Error::custom)?;
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ReplicaId = ReplicaId::from_u64(1);
    const B: ReplicaId = ReplicaId::from_u64(2);

    #[test]
    fn concurrent_add_and_remove_of_the_same_element_leaves_it_present() {
        let mut a = OrSet::new();
        a.add(A, "x");
        let mut b = a.clone();
        b.remove(&"x");
        a.add(A, "x");
        let merged_ab = a.clone().joined(b.clone());
        let merged_ba = b.joined(a);
        assert!(merged_ab.contains(&"x"));
        assert_eq!(merged_ab, merged_ba);
    }

    #[test]
    fn a_remove_only_removes_the_adds_it_observed() {
        let mut a = OrSet::new();
        let mut b = OrSet::new();
        a.add(A, "x");
        b.add(B, "x"); // concurrent add, unseen by a
        a.remove(&"x");
        a.join(b);
        assert!(a.contains(&"x"), "b's unseen add survives a's remove");
    }

    #[test]
    fn a_remove_that_saw_every_add_wins() {
        let mut a = OrSet::new();
        a.add(A, "x");
        let mut b = a.clone();
        b.add(B, "x");
        a.join(b.clone());
        a.remove(&"x");
        b.join(a.clone());
        assert!(!b.contains(&"x"));
        assert_eq!(a, b);
    }

    #[test]
    fn deltas_reproduce_the_mutation() {
        let mut state = OrSet::new();
        state.add(A, 1);
        state.add(B, 2);
        let before = state.clone();
        let delta = state.remove(&1).joined(state.add(A, 3));
        assert_eq!(before.joined(delta), state);
    }

    #[test]
    fn a_decoded_dot_beyond_the_context_is_rejected() {
        let json = r#"{"entries":[{"element":"x","dots":[{"replica":"0000000000000001","counter":9}]}],
                       "context":{"vv":[["0000000000000001",3]]}}"#;
        let err = serde_json::from_str::<OrSet<String>>(json).expect_err("invalid");
        assert!(
            err.to_string().contains("beyond the causal context"),
            "{err}"
        );
    }

    #[test]
    fn a_dot_shared_by_two_elements_is_rejected() {
        let json = r#"{"entries":[
            {"element":"x","dots":[{"replica":"0000000000000001","counter":1}]},
            {"element":"y","dots":[{"replica":"0000000000000001","counter":1}]}],
            "context":{"vv":[["0000000000000001",1]]}}"#;
        let err = serde_json::from_str::<OrSet<String>>(json).expect_err("invalid");
        assert!(err.to_string().contains("used twice"), "{err}");
    }
}
