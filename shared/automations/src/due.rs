//! The index of when automations fire next: one entry per automation in the bucket of the
//! minute it is due (`~due#<minute>`), sorted by time, replica-local.
//!
//! A bucket holds only what is due in its minute, so the firer reads one small partition per
//! minute whatever the number of automations; an entry lives eight days (a firer may catch
//! up a week of missed minutes) and is expired once fired.

use jarvis_crdt::Record;
use jarvis_store::{Key, MergeOptions, Site, StoreError};

use crate::millis;

/// How long an entry is kept after its time, for a firer that was down to catch up on.
pub const KEEP_SECS: i64 = 8 * 24 * 3600;

/// One due entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When it is due, in milliseconds since the epoch.
    pub at_ms: u64,
    /// The automation's owner.
    pub user: String,
    /// The automation.
    pub automation: String,
    /// The automation's generation when it was indexed.
    pub generation: String,
}

/// The minute (since the epoch) of a time in milliseconds.
pub fn minute_of(ms: u64) -> u64 {
    ms / 60_000
}

/// The partition of a minute's bucket.
pub fn bucket(minute: u64) -> String {
    format!("~due#{minute}")
}

fn sort_key(at_ms: u64, user: &str, automation: &str) -> String {
    format!("{at_ms:013}#{user}#{automation}")
}

fn key(entry: &Entry) -> Result<Key, StoreError> {
    Key::new(
        bucket(minute_of(entry.at_ms)),
        sort_key(entry.at_ms, &entry.user, &entry.automation),
    )
}

fn parse(sort: &str, record: &Record) -> Option<Entry> {
    let mut parts = sort.splitn(3, '#');
    let at_ms = parts.next()?.parse().ok()?;
    let user = parts.next()?.to_owned();
    let automation = parts.next()?.to_owned();
    Some(Entry {
        at_ms,
        user,
        automation,
        generation: record.get("generation")?.to_owned(),
    })
}

/// Adds `entry` to the index (again, harmlessly, when it is there).
pub async fn put(site: &Site, entry: &Entry) -> Result<(), StoreError> {
    let (replica, clock) = (site.replica, &site.clock);
    let expires_at = i64::try_from(entry.at_ms / 1000)
        .unwrap_or(i64::MAX)
        .saturating_add(KEEP_SECS);
    let options = MergeOptions {
        expires_at: Some(expires_at),
        retry: None,
    };
    let generation = entry.generation.clone();
    site.store
        .update_with(
            &key(entry)?,
            |record: &mut Record| {
                if record.is_live() && record.get("generation") == Some(generation.as_str()) {
                    return Record::new();
                }
                record.create(
                    replica,
                    clock.now(),
                    [("generation".to_owned(), generation.clone())],
                )
            },
            options,
        )
        .await?;
    Ok(())
}

/// Takes `entry` off the index.
pub async fn remove(site: &Site, entry: &Entry) -> Result<(), StoreError> {
    let clock = &site.clock;
    // Deleted and expired at once, so the purge takes the tombstone away too.
    let options = MergeOptions {
        expires_at: Some(jarvis_store::now_secs()),
        retry: None,
    };
    site.store
        .update_with(
            &key(entry)?,
            |record: &mut Record| {
                if record.is_live() {
                    record.delete(clock.stamp_after(record.latest_stamp()))
                } else {
                    Record::new()
                }
            },
            options,
        )
        .await?;
    Ok(())
}

/// A page of `minute`'s bucket: the entries due at or before `until_ms`, oldest first, at
/// most `limit`, from `cursor` (the page before's); and the cursor of the next page, when
/// more entries may be due.
pub async fn due_page(
    site: &Site,
    minute: u64,
    until_ms: u64,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<Entry>, Option<String>), StoreError> {
    let page = site
        .store
        .list_documents::<Record>(&bucket(minute), None, cursor, limit)
        .await?;
    let mut entries = Vec::new();
    let mut passed_until = false;
    for doc in page.items.iter().filter(|doc| doc.state.is_live()) {
        let Some(entry) = parse(doc.key.sort(), &doc.state) else {
            continue;
        };
        if entry.at_ms > until_ms {
            passed_until = true;
            break;
        }
        entries.push(entry);
    }
    let next = if passed_until { None } else { page.next_cursor };
    Ok((entries, next))
}

/// The minute the firer finished last, when it has run on this deployment.
pub async fn cursor(site: &Site) -> Result<Option<u64>, StoreError> {
    let doc = site
        .store
        .read::<jarvis_crdt::Entity>(&cursor_key()?)
        .await?;
    Ok(doc
        .map(|d| d.state.level("minute"))
        .filter(|minute| *minute > 0))
}

/// Records that every entry up to `minute` has fired.
pub async fn advance(site: &Site, minute: u64) -> Result<(), StoreError> {
    site.store
        .update(&cursor_key()?, |cursor: &mut jarvis_crdt::Entity| {
            cursor.raise("minute", minute)
        })
        .await?;
    Ok(())
}

fn cursor_key() -> Result<Key, StoreError> {
    Key::new("~automations", "cursor")
}

/// The entry of `automation`'s next time after `after`, when it fires again.
pub fn next_entry(
    user: &str,
    automation: &str,
    generation: &str,
    next: Option<jiff::Timestamp>,
) -> Option<Entry> {
    next.map(|at| Entry {
        at_ms: millis(at),
        user: user.to_owned(),
        automation: automation.to_owned(),
        generation: generation.to_owned(),
    })
}
