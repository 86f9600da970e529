//! A user's settings of the knowledge base: one replicated record in their documents'
//! partition (`knowledge#<user>`, sort key `settings`), each setting a field of its own that
//! the last writer wins.

use jarvis_ai::service::Site;
use jarvis_crdt::{Crdt, Record};
use jarvis_store::{Key, StoreError};

use crate::documents::partition;

/// The sort key of the settings record.
pub const SORT: &str = "settings";
/// The field that says whether archive entries are indexed as they change.
const INDEX_ARCHIVE: &str = "index_archive";

/// What a user set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// Whether every archive entry is indexed, and kept up to date as it changes (off until
    /// set).
    pub index_archive: bool,
}

impl Settings {
    /// The settings a record holds; the defaults where it holds none.
    pub fn of(record: &Record) -> Self {
        Self {
            index_archive: record.get(INDEX_ARCHIVE) == Some("true"),
        }
    }
}

fn key(user: &str) -> Result<Key, StoreError> {
    Key::new(partition(user), SORT)
}

/// `user`'s settings.
pub async fn get(site: &Site, user: &str) -> Result<Settings, StoreError> {
    let record = site.store.read::<Record>(&key(user)?).await?;
    Ok(record.map_or_else(Settings::default, |doc| Settings::of(&doc.state)))
}

/// Sets `user`'s settings.
pub async fn set(site: &Site, user: &str, settings: Settings) -> Result<(), StoreError> {
    let clock = &site.clock;
    site.store
        .update(&key(user)?, |record: &mut Record| {
            let stamp = clock.stamp_after(record.stamp(INDEX_ARCHIVE));
            let value = settings.index_archive.to_string();
            let mut delta = Record::new();
            delta.join(record.set(INDEX_ARCHIVE.to_owned(), stamp, value));
            delta
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jarvis_crdt::{ReplicaId, Timestamp};

    /// The fields the settings are stored as: what every replica and every later build
    /// reads.
    #[test]
    fn settings_are_stored_in_their_golden_form() {
        let mut record = Record::new();
        let stamp = Timestamp {
            wall_ms: 1_733_000_000_000,
            logical: 0,
            replica: ReplicaId::from_name("a"),
        };
        record.set(INDEX_ARCHIVE.to_owned(), stamp, "true".to_owned());
        let fields: Vec<(&str, &str)> = record
            .fields()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        assert_eq!(fields, [("index_archive", "true")]);
        assert!(Settings::of(&record).index_archive);
        assert!(!Settings::of(&Record::new()).index_archive);
    }
}
