//! [`GSet`]: a grow-only set, for records that are never taken back.

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Crdt, InvalidState, Validate};

/// A grow-only set. Its join is set union.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GSet<E: Ord> {
    elements: BTreeSet<E>,
}

impl<E: Ord> Default for GSet<E> {
    fn default() -> Self {
        Self {
            elements: BTreeSet::new(),
        }
    }
}

impl<E: Ord + Clone> GSet<E> {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `element`; returns the delta (the element alone).
    pub fn insert(&mut self, element: E) -> Self {
        self.elements.insert(element.clone());
        Self {
            elements: BTreeSet::from([element]),
        }
    }

    /// Whether `element` is in the set.
    pub fn contains<Q>(&self, element: &Q) -> bool
    where
        E: std::borrow::Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.elements.contains(element)
    }

    /// The elements, in ascending order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &E> {
        self.elements.iter()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }
}

impl<E: Ord + Clone> FromIterator<E> for GSet<E> {
    fn from_iter<I: IntoIterator<Item = E>>(iter: I) -> Self {
        Self {
            elements: iter.into_iter().collect(),
        }
    }
}

impl<E: Ord + Clone> Crdt for GSet<E> {
    fn join(&mut self, mut other: Self) {
        if other.elements.len() > self.elements.len() {
            std::mem::swap(self, &mut other);
        }
        self.elements.append(&mut other.elements);
    }
}

impl<E: Ord> Validate for GSet<E> {
    fn validate(&self) -> Result<(), InvalidState> {
        Ok(())
    }
}

impl<E: Ord + Serialize> Serialize for GSet<E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.elements)
    }
}

impl<'de, E: Ord + Deserialize<'de>> Deserialize<'de> for GSet<E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Canonical form is ascending and duplicate-free; anything else was not written by us.
        let elements = Vec::<E>::deserialize(deserializer)?;
        if elements.windows(2).any(|w| w[0] >= w[1]) {
            return Err(serde::de::Error::custom(InvalidState::Unsorted(
                "set elements",
            )));
        }
        Ok(Self {
            elements: elements.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_is_union() {
        let mut a: GSet<&str> = ["x", "y"].into_iter().collect();
        let b: GSet<&str> = ["y", "z"].into_iter().collect();
        a.join(b);
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), ["x", "y", "z"]);
    }

    #[test]
    fn unsorted_or_repeated_elements_do_not_decode() {
        assert!(serde_json::from_str::<GSet<String>>(r#"["b","a"]"#).is_err());
        assert!(serde_json::from_str::<GSet<String>>(r#"["a","a"]"#).is_err());
        assert!(serde_json::from_str::<GSet<String>>(r#"["a","b"]"#).is_ok());
    }
}
