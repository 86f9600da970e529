//! [`Entity`]: a document whose state comes in three kinds — fields that the last writer
//! wins, levels that only rise, and marks that are only ever added — so that security state
//! a merge must never undo (a revocation, a disabled account, a spent one-time code) cannot
//! be undone by any sync, whatever order or age of state arrives.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Crdt, GSet, InvalidState, LwwMap, Timestamp, Validate};

/// Fields (last writer wins, by hybrid logical clock), levels (joined by maximum) and marks
/// (a grow-only set).
///
/// A flag that must be switchable both ways yet never flip back by a stale merge is a level
/// whose parity is the flag: each switch raises it by one, so the newest switch is always the
/// highest level (see [`Entity::toggle`]).
#[derive(Clone, Default, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    fields: LwwMap<String, String>,
    levels: BTreeMap<String, u64>,
    marks: GSet<String>,
}

impl Entity {
    /// The empty entity.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a field; returns the delta.
    pub fn set(&mut self, name: &str, stamp: Timestamp, value: impl Into<String>) -> Self {
        Self {
            fields: self.fields.set(name.to_owned(), stamp, value.into()),
            ..Self::default()
        }
    }

    /// Removes a field; returns the delta.
    pub fn unset(&mut self, name: &str, stamp: Timestamp) -> Self {
        Self {
            fields: self.fields.remove(name.to_owned(), stamp),
            ..Self::default()
        }
    }

    /// A field's value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// Every present field, by name.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Raises a level to at least `value`; returns the delta (empty when it was already
    /// that high).
    pub fn raise(&mut self, name: &str, value: u64) -> Self {
        if self.level(name) >= value {
            return Self::default();
        }
        self.levels.insert(name.to_owned(), value);
        Self {
            levels: BTreeMap::from([(name.to_owned(), value)]),
            ..Self::default()
        }
    }

    /// A level; 0 when never raised.
    pub fn level(&self, name: &str) -> u64 {
        self.levels.get(name).copied().unwrap_or(0)
    }

    /// Whether the flag kept in level `name` is on (the level is odd).
    pub fn flag(&self, name: &str) -> bool {
        self.level(name) % 2 == 1
    }

    /// Switches the flag kept in level `name` to `on` by raising the level to the next value
    /// of the right parity; returns the delta (empty when the flag already was `on`).
    pub fn toggle(&mut self, name: &str, on: bool) -> Self {
        if self.flag(name) == on {
            return Self::default();
        }
        let next = self.level(name).saturating_add(1);
        self.raise(name, next)
    }

    /// Adds a mark; returns the delta.
    pub fn mark(&mut self, mark: impl Into<String>) -> Self {
        Self {
            marks: self.marks.insert(mark.into()),
            ..Self::default()
        }
    }

    /// Whether a mark is present.
    pub fn has_mark(&self, mark: &str) -> bool {
        self.marks.contains(mark)
    }

    /// Every mark, ascending.
    pub fn marks(&self) -> impl Iterator<Item = &str> {
        self.marks.iter().map(String::as_str)
    }

    /// Whether nothing was ever written.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.levels.is_empty() && self.marks.is_empty()
    }

    /// The newest stamp of any field.
    pub fn latest_stamp(&self) -> Option<Timestamp> {
        self.fields.latest_stamp()
    }

    /// The timestamp of a field's latest write, when any.
    pub fn stamp(&self, name: &str) -> Option<Timestamp> {
        self.fields.stamp(name)
    }

    /// Every level, by name.
    pub fn levels(&self) -> impl Iterator<Item = (&str, u64)> {
        self.levels.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

impl Crdt for Entity {
    fn join(&mut self, other: Self) {
        self.fields.join(other.fields);
        for (name, value) in other.levels {
            let level = self.levels.entry(name).or_insert(0);
            *level = (*level).max(value);
        }
        self.marks.join(other.marks);
    }
}

impl Validate for Entity {
    fn validate(&self) -> Result<(), InvalidState> {
        self.fields.validate()?;
        self.marks.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReplicaId;

    fn at(ms: u64) -> Timestamp {
        Timestamp::new(ms, 0, ReplicaId::from_u64(1))
    }

    #[test]
    fn a_stale_copy_cannot_switch_a_flag_back() {
        let mut now = Entity::new();
        let stale = now.clone();
        now.toggle("disabled", true);
        now.toggle("disabled", false);
        now.toggle("disabled", true);
        let merged = now.clone().joined(stale);
        assert!(merged.flag("disabled"));
        assert_eq!(merged.level("disabled"), 3);
    }

    #[test]
    fn levels_join_by_maximum_and_marks_by_union() {
        let mut a = Entity::new();
        a.raise("step", 10);
        a.mark("used:1");
        let mut b = Entity::new();
        b.raise("step", 7);
        b.mark("used:2");
        b.set("role", at(5), "admin");
        let joined = a.joined(b);
        assert_eq!(joined.level("step"), 10);
        assert!(joined.has_mark("used:1") && joined.has_mark("used:2"));
        assert_eq!(joined.field("role"), Some("admin"));
    }

    #[test]
    fn raising_to_a_lower_value_is_an_empty_delta() {
        let mut a = Entity::new();
        a.raise("step", 10);
        assert!(a.raise("step", 9).is_empty());
        assert_eq!(a.level("step"), 10);
    }
}
