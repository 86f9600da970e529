//! [`Record`]: a document made of named fields that merge independently (last writer wins
//! per field), named sets of strings that merge as observed-remove sets, and that can be
//! deleted by an observed remove.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Crdt, InvalidState, LwwMap, OrSet, ReplicaId, Timestamp, Validate};

/// A record: its fields, its named sets, and its presence as an add-wins set of one element.
///
/// Creating the record adds a presence dot; deleting removes the dots it has seen. An edit
/// never touches presence, so an edit concurrent with a delete does not bring the record
/// back, while a re-creation concurrent with a delete wins (add wins).
///
/// A named set (an entry's tags) is an observed-remove set: replacing it removes the
/// elements seen here and adds the new ones, so two replicas replacing it at once keep both
/// sides' additions. A set's name, once written, stays (empty when every element is gone).
#[derive(Clone, Default, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    fields: LwwMap<String, String>,
    presence: OrSet<()>,
    #[serde(default)]
    sets: BTreeMap<String, OrSet<String>>,
}

/// The layout of records written before named sets (type tag 8): read and upgraded, never
/// written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordV1 {
    fields: LwwMap<String, String>,
    presence: OrSet<()>,
}

impl From<RecordV1> for Record {
    fn from(old: RecordV1) -> Self {
        Self {
            fields: old.fields,
            presence: old.presence,
            sets: BTreeMap::new(),
        }
    }
}

impl Record {
    /// The empty, absent record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates the record with `fields` on behalf of `replica`; returns the delta.
    pub fn create<I>(&mut self, replica: ReplicaId, stamp: Timestamp, fields: I) -> Self
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut delta = Self {
            presence: self.presence.add(replica, ()),
            ..Self::default()
        };
        for (name, value) in fields {
            delta.fields.join(self.fields.set(name, stamp, value));
        }
        delta
    }

    /// Sets one field; returns the delta.
    pub fn set(&mut self, name: String, stamp: Timestamp, value: String) -> Self {
        Self {
            fields: self.fields.set(name, stamp, value),
            ..Self::default()
        }
    }

    /// Removes one field; returns the delta.
    pub fn unset(&mut self, name: String, stamp: Timestamp) -> Self {
        Self {
            fields: self.fields.remove(name, stamp),
            ..Self::default()
        }
    }

    /// Makes the named set hold `elements`: removes the elements seen here that are not
    /// among them and adds those not yet present, on behalf of `replica`; returns the delta.
    pub fn replace_set<I>(&mut self, replica: ReplicaId, name: &str, elements: I) -> Self
    where
        I: IntoIterator<Item = String>,
    {
        let wanted: std::collections::BTreeSet<String> = elements.into_iter().collect();
        let set = self.sets.entry(name.to_owned()).or_default();
        let mut change = OrSet::default();
        let present: Vec<String> = set.iter().cloned().collect();
        for element in present.iter().filter(|e| !wanted.contains(*e)) {
            change.join(set.remove(element));
        }
        for element in wanted {
            if !set.contains(&element) {
                change.join(set.add(replica, element));
            }
        }
        Self {
            sets: BTreeMap::from([(name.to_owned(), change)]),
            ..Self::default()
        }
    }

    /// The elements of a named set, in ascending order; `None` when the set was never
    /// written.
    pub fn set_elements(&self, name: &str) -> Option<Vec<&str>> {
        self.sets.get(name).map(|set| {
            let mut elements: Vec<&str> = set.iter().map(String::as_str).collect();
            elements.sort_unstable();
            elements
        })
    }

    /// Deletes the record: removes the creations seen here (an observed remove, so a
    /// concurrent edit elsewhere does not bring it back) and drops every field's value, so
    /// the content neither lingers in the document nor travels on to peers. `stamp` must be
    /// after every field's (`clock.stamp_after(record.latest_stamp())`). Returns the delta.
    pub fn delete(&mut self, stamp: Timestamp) -> Self {
        let names: Vec<String> = self.fields.iter().map(|(name, _)| name.clone()).collect();
        let mut delta = Self {
            presence: self.presence.remove(&()),
            ..Self::default()
        };
        for name in names {
            delta.fields.join(self.fields.remove(name, stamp));
        }
        for (name, set) in &mut self.sets {
            delta.sets.insert(name.clone(), set.clear());
        }
        delta
    }

    /// Whether the record exists.
    pub fn is_live(&self) -> bool {
        !self.presence.is_empty()
    }

    /// A field's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// When a field was last written.
    pub fn stamp(&self, name: &str) -> Option<Timestamp> {
        self.fields.stamp(name)
    }

    /// The newest stamp of any field.
    pub fn latest_stamp(&self) -> Option<Timestamp> {
        self.fields.latest_stamp()
    }

    /// The fields.
    pub fn fields(&self) -> &LwwMap<String, String> {
        &self.fields
    }
}

impl Crdt for Record {
    fn join(&mut self, other: Self) {
        self.fields.join(other.fields);
        self.presence.join(other.presence);
        for (name, set) in other.sets {
            self.sets.entry(name).or_default().join(set);
        }
    }
}

impl Validate for Record {
    fn validate(&self) -> Result<(), InvalidState> {
        self.fields.validate()?;
        self.presence.validate()?;
        self.sets.values().try_for_each(Validate::validate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ReplicaId = ReplicaId::from_u64(1);
    const B: ReplicaId = ReplicaId::from_u64(2);

    fn fields(title: &str) -> Vec<(String, String)> {
        vec![("title".to_owned(), title.to_owned())]
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn concurrent_replacements_of_a_set_keep_both_sides_additions() {
        let mut a = Record::new();
        a.create(A, Timestamp::new(1, 0, A), fields("draft"));
        a.replace_set(A, "tags", strings(&["home", "food"]));
        let mut b = a.clone();
        a.replace_set(A, "tags", strings(&["home", "week"]));
        b.replace_set(B, "tags", strings(&["food", "shop"]));
        let mut ab = a.clone();
        ab.join(b.clone());
        b.join(a);
        assert_eq!(ab, b);
        // `home` removed on B, `food` removed on A; `week` and `shop` both kept.
        assert_eq!(ab.set_elements("tags"), Some(vec!["shop", "week"]));
    }

    #[test]
    fn a_delete_drops_the_elements_of_every_set() {
        let mut a = Record::new();
        a.create(A, Timestamp::new(1, 0, A), fields("draft"));
        a.replace_set(A, "tags", strings(&["private"]));
        let delta = a.delete(Timestamp::new(2, 0, A));
        assert_eq!(a.set_elements("tags"), Some(vec![]));
        let json = serde_json::to_string(&delta).expect("json");
        assert!(!json.contains("private"), "{json}");
        assert!(!serde_json::to_string(&a).expect("json").contains("private"));
    }

    #[test]
    fn an_edit_concurrent_with_a_delete_does_not_resurrect_the_record() {
        let mut a = Record::new();
        a.create(A, Timestamp::new(1, 0, A), fields("draft"));
        let mut b = a.clone();
        a.delete(Timestamp::new(3, 0, A));
        b.set("title".into(), Timestamp::new(5, 0, B), "edited".into());
        let merged = a.joined(b);
        assert!(!merged.is_live());
    }

    #[test]
    fn a_delete_drops_the_content_of_every_field() {
        let mut a = Record::new();
        a.create(
            A,
            Timestamp::new(1, 0, A),
            [
                ("title".to_owned(), "diary".to_owned()),
                ("content".to_owned(), "private words".to_owned()),
            ],
        );
        let mut b = a.clone();
        let delta = a.delete(Timestamp::new(2, 0, A));
        assert!(!a.is_live());
        assert!(a.fields().is_empty(), "no value is left");
        let bytes = crate::Codec::encode(&a).expect("encode");
        assert!(!bytes.windows(13).any(|w| w == b"private words"));
        // A replica that hears of the delete drops the content too.
        b.join(delta);
        assert!(!b.is_live() && b.fields().is_empty());
    }

    #[test]
    fn fields_merge_independently() {
        let mut a = Record::new();
        a.create(A, Timestamp::new(1, 0, A), fields("draft"));
        let mut b = a.clone();
        a.set("title".into(), Timestamp::new(3, 0, A), "final".into());
        b.set("kind".into(), Timestamp::new(2, 0, B), "note".into());
        let merged = a.joined(b);
        assert_eq!(merged.get("title"), Some("final"));
        assert_eq!(merged.get("kind"), Some("note"));
        assert!(merged.is_live());
    }
}
