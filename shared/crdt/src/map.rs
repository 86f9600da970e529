//! [`LwwMap`]: a record whose fields merge independently, the last writer winning per field.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Crdt, InvalidState, LwwRegister, Timestamp, Validate};

/// A map of last-writer-wins registers. Writing one field never disturbs another, so two
/// replicas editing different fields of the same record both keep their edits.
///
/// A removed key keeps a timestamped tombstone so an older write cannot bring it back; the
/// tombstones are bounded by the number of distinct keys the record ever had.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LwwMap<K: Ord, V> {
    fields: BTreeMap<K, LwwRegister<Option<V>>>,
}

impl<K: Ord, V> Default for LwwMap<K, V> {
    fn default() -> Self {
        Self {
            fields: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, V: Ord + Clone> LwwMap<K, V> {
    /// The empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value` at `stamp`; returns the delta.
    pub fn set(&mut self, key: K, stamp: Timestamp, value: V) -> Self {
        self.write(key, stamp, Some(value))
    }

    /// Removes `key` at `stamp`; returns the delta.
    pub fn remove(&mut self, key: K, stamp: Timestamp) -> Self {
        self.write(key, stamp, None)
    }

    fn write(&mut self, key: K, stamp: Timestamp, value: Option<V>) -> Self {
        let delta_register = LwwRegister::with(stamp, value);
        self.fields
            .entry(key.clone())
            .or_default()
            .join(delta_register.clone());
        Self {
            fields: BTreeMap::from([(key, delta_register)]),
        }
    }

    /// The value of `key`, unless absent or removed.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.fields
            .get(key)
            .and_then(|r| r.get())
            .and_then(Option::as_ref)
    }

    /// When `key` was last written (set or removed).
    pub fn stamp<Q>(&self, key: &Q) -> Option<Timestamp>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.fields.get(key).and_then(LwwRegister::stamp)
    }

    /// The newest stamp of any entry, removed ones included.
    pub fn latest_stamp(&self) -> Option<Timestamp> {
        self.fields.values().filter_map(LwwRegister::stamp).max()
    }

    /// Present `(key, value)` pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.fields
            .iter()
            .filter_map(|(k, r)| r.get().and_then(Option::as_ref).map(|v| (k, v)))
    }

    /// Number of present keys.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no key is present.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl<K: Ord + Clone, V: Ord + Clone> Crdt for LwwMap<K, V> {
    fn join(&mut self, other: Self) {
        for (key, register) in other.fields {
            match self.fields.get_mut(&key) {
                Some(mine) => mine.join(register),
                None => {
                    self.fields.insert(key, register);
                }
            }
        }
    }
}

impl<K: Ord, V> Validate for LwwMap<K, V> {
    fn validate(&self) -> Result<(), InvalidState> {
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldRepr<K, V> {
    key: K,
    stamp: Timestamp,
    value: Option<V>,
}

impl<K: Ord + Serialize, V: Serialize> Serialize for LwwMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A written register always has a stamp; an unwritten one is never stored. Collected
        // first: binary formats need the exact length up front.
        let fields: Vec<_> = self
            .fields
            .iter()
            .filter_map(|(key, register)| {
                Some(FieldRepr {
                    key,
                    stamp: register.stamp()?,
                    value: register.get()?.as_ref(),
                })
            })
            .collect();
        fields.serialize(serializer)
    }
}

impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for LwwMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = Vec::<FieldRepr<K, V>>::deserialize(deserializer)?;
        if fields.windows(2).any(|w| w[0].key >= w[1].key) {
            return Err(serde::de::Error::custom(InvalidState::Unsorted("map keys")));
        }
        Ok(Self {
            fields: fields
                .into_iter()
                .map(|f| (f.key, LwwRegister::with(f.stamp, f.value)))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReplicaId;

    const A: ReplicaId = ReplicaId::from_u64(1);
    const B: ReplicaId = ReplicaId::from_u64(2);

    #[test]
    fn edits_to_different_fields_both_survive() {
        let mut base = LwwMap::new();
        base.set("title", Timestamp::new(1, 0, A), "draft".to_owned());
        base.set("kind", Timestamp::new(1, 1, A), "note".to_owned());
        let mut a = base.clone();
        let mut b = base;
        a.set("title", Timestamp::new(5, 0, A), "final".to_owned());
        b.set("kind", Timestamp::new(4, 0, B), "link".to_owned());
        a.join(b);
        assert_eq!(a.get(&"title").map(String::as_str), Some("final"));
        assert_eq!(a.get(&"kind").map(String::as_str), Some("link"));
    }

    #[test]
    fn an_older_write_cannot_resurrect_a_removed_key() {
        let mut map = LwwMap::new();
        map.set("k", Timestamp::new(1, 0, A), 1);
        map.remove("k", Timestamp::new(3, 0, B));
        map.set("k", Timestamp::new(2, 0, A), 2);
        assert_eq!(map.get(&"k"), None);
        assert_eq!(map.len(), 0);
    }
}
