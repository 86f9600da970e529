//! [`Record`]: a document made of named fields that merge independently (last writer wins
//! per field) and that can be deleted by an observed remove.

use serde::{Deserialize, Serialize};

use super::{Crdt, InvalidState, LwwMap, OrSet, ReplicaId, Timestamp, Validate};

/// A record: its fields, and its presence as an add-wins set of one element.
///
/// Creating the record adds a presence dot; deleting removes the dots it has seen. An edit
/// never touches presence, so an edit concurrent with a delete does not bring the record
/// back, while a re-creation concurrent with a delete wins (add wins).
#[derive(Clone, Default, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    fields: LwwMap<String, String>,
    presence: OrSet<()>,
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
            fields: LwwMap::new(),
            presence: self.presence.add(replica, ()),
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
            presence: OrSet::default(),
        }
    }

    /// Removes one field; returns the delta.
    pub fn unset(&mut self, name: String, stamp: Timestamp) -> Self {
        Self {
            fields: self.fields.remove(name, stamp),
            presence: OrSet::default(),
        }
    }

    /// Deletes the record: removes the creations seen here (an observed remove, so a
    /// concurrent edit elsewhere does not bring it back) and drops every field's value, so
    /// the content neither lingers in the document nor travels on to peers. `stamp` must be
    /// after every field's (`clock.stamp_after(record.latest_stamp())`). Returns the delta.
    pub fn delete(&mut self, stamp: Timestamp) -> Self {
        let names: Vec<String> = self.fields.iter().map(|(name, _)| name.clone()).collect();
        let mut delta = Self {
            fields: LwwMap::new(),
            presence: self.presence.remove(&()),
        };
        for name in names {
            delta.fields.join(self.fields.remove(name, stamp));
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
    }
}

impl Validate for Record {
    fn validate(&self) -> Result<(), InvalidState> {
        self.fields.validate()?;
        self.presence.validate()
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
        let bytes = crate::crdt::Codec::encode(&a).expect("encode");
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
