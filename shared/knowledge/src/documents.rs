//! The knowledge base's documents, as records in the store.
//!
//! A document is one [`Record`] in its owner's partition (`knowledge#<user>`, sort key
//! `doc#<id>`): its name, media type, size, content hash, where it came from, its tags (a
//! set) and when it was added. It is replicated: every replica knows a user's documents.
//! How far this replica got reading one is a replica-local record (`~knowledge#<user>`, the
//! same sort key): status, the reason of a failure, chunks, pages and progress, since the
//! chunks and vectors it describes are this replica's own. The file itself is a blob
//! (`knowledge/<user>/<id>`).
//!
//! A document's id follows from what it is: the hash of an uploaded file's bytes, or the
//! archive entry it indexes. Uploading the same bytes again finds the same document.

use jarvis_ai::service::Site;
use jarvis_blobs::{BlobError, BlobKey};
use jarvis_crdt::{Crdt, Record};
use jarvis_store::{Key, Page, StoreError, encode_cursor};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const PREFIX: &str = "doc#";
/// The partition of pending ingestion jobs of this replica.
pub const QUEUE_PARTITION: &str = "~knowledge-queue";
/// Most documents one listing examines for a page.
pub const SCAN_BUDGET: usize = 1_000;

/// Fields of a document's record.
mod field {
    pub const NAME: &str = "name";
    pub const MEDIA_TYPE: &str = "media_type";
    pub const BYTES: &str = "bytes";
    pub const HASH: &str = "sha256";
    pub const ORIGIN: &str = "origin";
    pub const CREATED: &str = "created_at";
    pub const TAGS: &str = "tags";
    // The replica-local status record.
    pub const STATUS: &str = "status";
    pub const REASON: &str = "reason";
    pub const CHUNKS: &str = "chunks";
    pub const PAGES: &str = "pages";
    pub const DONE: &str = "done";
    pub const TOTAL: &str = "total";
    pub const TITLE: &str = "title";
    pub const MODEL: &str = "model";
    pub const ATTEMPTS: &str = "attempts";
    // A queued job.
    pub const ROLE: &str = "role";
    pub const ARCHIVE: &str = "archive";
}

/// Where a document's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file the user uploaded.
    Upload,
    /// An archive entry, by id.
    Archive(String),
}

impl Origin {
    fn encode(&self) -> String {
        match self {
            Self::Upload => "upload".to_owned(),
            Self::Archive(id) => format!("archive:{id}"),
        }
    }

    fn decode(value: &str) -> Self {
        match value.strip_prefix("archive:") {
            Some(id) => Self::Archive(id.to_owned()),
            None => Self::Upload,
        }
    }

    /// The archive entry, for a document that indexes one.
    pub fn archive_entry(&self) -> Option<&str> {
        match self {
            Self::Archive(id) => Some(id),
            Self::Upload => None,
        }
    }
}

/// How far this replica got reading a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting to be read.
    Pending,
    /// Being read, chunked and embedded.
    Processing,
    /// Searchable.
    Ready,
    /// Not readable; the reason says why.
    Failed,
}

impl Status {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }

    fn parse(value: &str) -> Self {
        match value {
            "processing" => Self::Processing,
            "ready" => Self::Ready,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// A document of the knowledge base, with this replica's progress reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its id.
    pub id: Uuid,
    /// Its file name, or the archive entry's title.
    pub name: String,
    /// Its media type, detected from its content.
    pub media_type: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// The SHA-256 of its content, hex.
    pub sha256: String,
    /// Where it came from.
    pub origin: Origin,
    /// Its tags, sorted.
    pub tags: Vec<String>,
    /// When it was added (ms since the epoch).
    pub created_ms: u64,
    /// This replica's progress.
    pub status: Status,
    /// Why it failed.
    pub reason: Option<String>,
    /// The title its file names.
    pub title: Option<String>,
    /// Chunks indexed.
    pub chunks: u64,
    /// Pages, for paged formats.
    pub pages: Option<u32>,
    /// Chunks embedded so far, while processing.
    pub done: u64,
    /// Chunks to embed, once known.
    pub total: u64,
    /// The embedding model of its vectors.
    pub model: Option<String>,
    /// How many times reading it was started.
    pub attempts: u32,
    /// Whether this replica has progress of its own on it: a document that came from a peer
    /// by sync has none until this replica queues it.
    pub here: bool,
}

/// What a new document starts with.
#[derive(Debug, Clone)]
pub struct NewDocument {
    /// Its name.
    pub name: String,
    /// Its detected media type.
    pub media_type: String,
    /// Its content.
    pub bytes: Vec<u8>,
    /// Where it came from.
    pub origin: Origin,
    /// Its tags.
    pub tags: Vec<String>,
}

/// The partition of a user's documents.
pub fn partition(user: &str) -> String {
    format!("knowledge#{user}")
}

fn status_partition(user: &str) -> String {
    format!("~knowledge#{user}")
}

fn sort(id: &Uuid) -> String {
    format!("{PREFIX}{}", id.hyphenated())
}

/// The key of a document.
pub fn key(user: &str, id: &Uuid) -> Result<Key, StoreError> {
    Key::new(partition(user), sort(id))
}

fn status_key(user: &str, id: &Uuid) -> Result<Key, StoreError> {
    Key::new(status_partition(user), sort(id))
}

/// Where a document's file is kept.
pub fn blob_key(user: &str, id: &Uuid) -> Result<BlobKey, BlobError> {
    BlobKey::parse(&format!("knowledge/{user}/{}", id.simple()))
}

/// The SHA-256 of `bytes`, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The id of `user`'s document with content `hash` from `origin`: uploads of the same bytes
/// share one, an archive entry has one whatever its content.
pub fn id_for(user: &str, origin: &Origin, hash: &str) -> Uuid {
    let identity = match origin {
        Origin::Upload => format!("upload\n{user}\n{hash}"),
        Origin::Archive(entry) => format!("archive\n{user}\n{entry}"),
    };
    let digest = Sha256::digest(identity.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::new_v8(bytes)
}

fn number<T: std::str::FromStr + Default>(record: &Record, name: &str) -> T {
    record
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

fn text(record: &Record, name: &str) -> Option<String> {
    record
        .get(name)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl Document {
    /// The document of `record` with the progress in `status`, when it is live.
    pub fn from_records(id: Uuid, record: &Record, status: Option<&Record>) -> Option<Self> {
        if !record.is_live() {
            return None;
        }
        let empty = Record::new();
        let present = status.is_some_and(Record::is_live);
        let status = status.unwrap_or(&empty);
        Some(Self {
            id,
            name: record.get(field::NAME).unwrap_or_default().to_owned(),
            media_type: record.get(field::MEDIA_TYPE).unwrap_or_default().to_owned(),
            bytes: number(record, field::BYTES),
            sha256: record.get(field::HASH).unwrap_or_default().to_owned(),
            origin: Origin::decode(record.get(field::ORIGIN).unwrap_or_default()),
            tags: record
                .set_elements(field::TAGS)
                .unwrap_or_default()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            created_ms: number(record, field::CREATED),
            status: Status::parse(status.get(field::STATUS).unwrap_or_default()),
            reason: text(status, field::REASON),
            title: text(status, field::TITLE),
            chunks: number(status, field::CHUNKS),
            pages: text(status, field::PAGES).and_then(|p| p.parse().ok()),
            done: number(status, field::DONE),
            total: number(status, field::TOTAL),
            model: text(status, field::MODEL),
            attempts: number(status, field::ATTEMPTS),
            here: present,
        })
    }
}

/// A user's document, if it exists.
pub async fn get(site: &Site, user: &str, id: &Uuid) -> Result<Option<Document>, StoreError> {
    let Some(doc) = site.store.read::<Record>(&key(user, id)?).await? else {
        return Ok(None);
    };
    let status = site.store.read::<Record>(&status_key(user, id)?).await?;
    Ok(Document::from_records(
        *id,
        &doc.state,
        status.as_ref().map(|s| &s.state),
    ))
}

/// Records a new document (live, pending on this replica). Answers it, and whether it is
/// new: a live document with the same id and content is left as it is.
pub async fn create(
    site: &Site,
    user: &str,
    new: &NewDocument,
) -> Result<(Document, bool), StoreError> {
    let hash = sha256(&new.bytes);
    let id = id_for(user, &new.origin, &hash);
    if let Some(existing) = get(site, user, &id).await?
        && existing.sha256 == hash
    {
        return Ok((existing, false));
    }
    let now = site.clock.now();
    let fields = vec![
        (field::NAME.to_owned(), new.name.clone()),
        (field::MEDIA_TYPE.to_owned(), new.media_type.clone()),
        (field::BYTES.to_owned(), new.bytes.len().to_string()),
        (field::HASH.to_owned(), hash.clone()),
        (field::ORIGIN.to_owned(), new.origin.encode()),
        (field::CREATED.to_owned(), now.wall_ms.to_string()),
    ];
    let (replica, clock) = (site.replica, &site.clock);
    let mut tags = new.tags.clone();
    tags.sort();
    tags.dedup();
    let doc = site
        .store
        .update(&key(user, &id)?, |record: &mut Record| {
            let mut delta = record.create(replica, clock.now(), fields.clone());
            delta.join(record.replace_set(replica, field::TAGS, tags.clone()));
            delta
        })
        .await?;
    let status = set_status(site, user, &id, Progress::pending()).await?;
    let document = Document::from_records(id, &doc.state, Some(&status))
        .ok_or(StoreError::InvalidKey("document"))?;
    Ok((document, true))
}

/// A change to this replica's progress on a document.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    fields: Vec<(&'static str, String)>,
    cleared: Vec<&'static str>,
}

impl Progress {
    /// Waiting again, from nothing.
    pub fn pending() -> Self {
        Self {
            fields: vec![
                (field::STATUS, Status::Pending.as_str().to_owned()),
                (field::DONE, "0".to_owned()),
                (field::TOTAL, "0".to_owned()),
                (field::CHUNKS, "0".to_owned()),
                (field::ATTEMPTS, "0".to_owned()),
            ],
            cleared: vec![field::REASON, field::PAGES, field::TITLE, field::MODEL],
        }
    }

    /// Started reading, for the `attempt`-th time.
    pub fn processing(attempt: u32) -> Self {
        Self {
            fields: vec![
                (field::STATUS, Status::Processing.as_str().to_owned()),
                (field::ATTEMPTS, attempt.to_string()),
            ],
            cleared: vec![field::REASON],
        }
    }

    /// Read: `total` chunks to embed, `pages` pages, the title it names.
    pub fn read(total: usize, pages: Option<u32>, title: Option<&str>) -> Self {
        let mut progress = Self {
            fields: vec![
                (field::TOTAL, total.to_string()),
                (field::DONE, "0".to_owned()),
            ],
            cleared: Vec::new(),
        };
        match pages {
            Some(pages) => progress.fields.push((field::PAGES, pages.to_string())),
            None => progress.cleared.push(field::PAGES),
        }
        match title {
            Some(title) => progress.fields.push((field::TITLE, title.to_owned())),
            None => progress.cleared.push(field::TITLE),
        }
        progress
    }

    /// `done` chunks embedded and indexed, by `model`.
    pub fn embedded(done: usize, model: &str) -> Self {
        Self {
            fields: vec![
                (field::DONE, done.to_string()),
                (field::MODEL, model.to_owned()),
            ],
            cleared: Vec::new(),
        }
    }

    /// Searchable, with `chunks` chunks.
    pub fn ready(chunks: usize) -> Self {
        Self {
            fields: vec![
                (field::STATUS, Status::Ready.as_str().to_owned()),
                (field::CHUNKS, chunks.to_string()),
            ],
            cleared: vec![field::REASON],
        }
    }

    /// Not readable, because of `reason`.
    pub fn failed(reason: &str) -> Self {
        Self {
            fields: vec![
                (field::STATUS, Status::Failed.as_str().to_owned()),
                (field::REASON, reason.to_owned()),
                (field::CHUNKS, "0".to_owned()),
            ],
            cleared: Vec::new(),
        }
    }
}

/// Applies `progress` to this replica's record of a document; answers the record.
pub async fn set_status(
    site: &Site,
    user: &str,
    id: &Uuid,
    progress: Progress,
) -> Result<Record, StoreError> {
    let (replica, clock) = (site.replica, &site.clock);
    let doc = site
        .store
        .update(&status_key(user, id)?, |record: &mut Record| {
            let stamp = clock.stamp_after(record.latest_stamp());
            let mut delta = if record.is_live() {
                Record::new()
            } else {
                record.create(replica, stamp, Vec::new())
            };
            for (name, value) in &progress.fields {
                delta.join(record.set((*name).to_owned(), stamp, value.clone()));
            }
            for name in &progress.cleared {
                if record.get(name).is_some() {
                    delta.join(record.unset((*name).to_owned(), stamp));
                }
            }
            delta
        })
        .await?;
    Ok(doc.state)
}

/// Deletes a document and this replica's record of it; answers whether it existed.
pub async fn delete(site: &Site, user: &str, id: &Uuid) -> Result<bool, StoreError> {
    if get(site, user, id).await?.is_none() {
        return Ok(false);
    }
    site.store.update(&key(user, id)?, erase(site)).await?;
    forget_status(site, user, id).await?;
    Ok(true)
}

/// Removes this replica's progress on a document: it reads as never begun here.
pub async fn forget_status(site: &Site, user: &str, id: &Uuid) -> Result<(), StoreError> {
    site.store
        .update(&status_key(user, id)?, erase(site))
        .await?;
    Ok(())
}

/// A write that deletes a live record and leaves any other as it is.
fn erase(site: &Site) -> impl Fn(&mut Record) -> Record + Send + Sync + '_ {
    move |record: &mut Record| {
        if !record.is_live() {
            return Record::new();
        }
        let stamp = site.clock.stamp_after(record.latest_stamp());
        record.delete(stamp)
    }
}

/// A page of a user's documents, oldest id first.
pub async fn list(
    site: &Site,
    user: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Document>, StoreError> {
    let partition = partition(user);
    let mut items = Vec::new();
    let mut cursor = cursor.map(str::to_owned);
    let mut examined = 0;
    loop {
        let page = site
            .store
            .list_documents::<Record>(&partition, Some(PREFIX), cursor.as_deref(), limit)
            .await?;
        let count = page.items.len();
        for (i, doc) in page.items.into_iter().enumerate() {
            let id = doc
                .key
                .sort()
                .strip_prefix(PREFIX)
                .and_then(|id| Uuid::try_parse(id).ok());
            let Some(id) = id.filter(|_| doc.state.is_live()) else {
                continue;
            };
            let status = site.store.read::<Record>(&status_key(user, &id)?).await?;
            if let Some(document) =
                Document::from_records(id, &doc.state, status.as_ref().map(|s| &s.state))
            {
                items.push(document);
            }
            if items.len() == limit {
                let last_of_all = page.next_cursor.is_none() && i + 1 == count;
                let next_cursor = (!last_of_all).then(|| encode_cursor(doc.key.sort()));
                return Ok(Page { items, next_cursor });
            }
        }
        examined += count;
        match page.next_cursor {
            Some(next) if examined < SCAN_BUDGET => cursor = Some(next),
            next => {
                return Ok(Page {
                    items,
                    next_cursor: next,
                });
            }
        }
    }
}

/// An ingestion job: read `document` of `user`, or do what `archive` says with their
/// archive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Job {
    /// The owner.
    pub user: String,
    /// Their role when they added it (whose token budget the embeddings spend).
    pub role: String,
    /// The document; for archive work, the job's own id.
    pub document: Uuid,
    /// Work on the owner's archive, instead of reading a document that is already recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveWork>,
}

/// What a job does with its owner's archive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ArchiveWork {
    /// An entry was created, changed or deleted: its document (the job's) follows it.
    Entry(String),
    /// Index every entry, a page at a time from this cursor (the first page when absent).
    All(Option<String>),
}

impl Job {
    /// Read `user`'s `document`, spending the budget of `role`.
    pub fn read(user: &str, role: &str, document: Uuid) -> Self {
        Self {
            user: user.to_owned(),
            role: role.to_owned(),
            document,
            archive: None,
        }
    }

    /// Bring the document of `user`'s archive entry `entry` up to date with it. Archive
    /// work has an id of its own in place of a document's, so a change queued while an
    /// earlier one runs is a job of its own, never taken off the queue with the earlier.
    pub fn archive_entry(user: &str, role: &str, entry: &str) -> Self {
        Self {
            archive: Some(ArchiveWork::Entry(entry.to_owned())),
            ..Self::read(user, role, Uuid::now_v7())
        }
    }

    /// Queue every entry of `user`'s archive after `cursor` to be indexed.
    pub fn whole_archive(user: &str, role: &str, cursor: Option<String>) -> Self {
        Self {
            archive: Some(ArchiveWork::All(cursor)),
            ..Self::read(user, role, Uuid::now_v7())
        }
    }

    fn sort(&self) -> String {
        format!("{}#{}", self.user, self.document.hyphenated())
    }

    fn from_record(sort: &str, record: &Record) -> Option<Self> {
        let (user, document) = sort.rsplit_once('#')?;
        let archive = match record.get(field::ARCHIVE) {
            Some(work) if !work.is_empty() => Some(serde_json::from_str(work).ok()?),
            _ => None,
        };
        Some(Self {
            user: user.to_owned(),
            role: record.get(field::ROLE).unwrap_or("user").to_owned(),
            document: Uuid::try_parse(document).ok()?,
            archive,
        })
    }
}

/// Records `job` in this replica's queue partition, so a restarted host finds it.
pub async fn enqueue(site: &Site, job: &Job) -> Result<(), StoreError> {
    let (replica, clock) = (site.replica, &site.clock);
    site.store
        .update(
            &Key::new(QUEUE_PARTITION, job.sort())?,
            |record: &mut Record| {
                let mut fields = vec![(field::ROLE.to_owned(), job.role.clone())];
                if let Some(work) = &job.archive {
                    let work = serde_json::to_string(work).unwrap_or_default();
                    fields.push((field::ARCHIVE.to_owned(), work));
                }
                record.create(replica, clock.now(), fields)
            },
        )
        .await?;
    Ok(())
}

/// Up to `limit` jobs waiting in this replica's queue partition.
pub async fn queued(site: &Site, limit: usize) -> Result<Vec<Job>, StoreError> {
    let page = site
        .store
        .list_documents::<Record>(QUEUE_PARTITION, None, None, limit)
        .await?;
    Ok(page
        .items
        .iter()
        .filter(|doc| doc.state.is_live())
        .filter_map(|doc| Job::from_record(doc.key.sort(), &doc.state))
        .collect())
}

/// Takes `job` off this replica's queue partition.
pub async fn finished(site: &Site, job: &Job) -> Result<(), StoreError> {
    let clock = &site.clock;
    // Deleted and expired at once, so the purge takes the tombstone away too.
    let options = jarvis_store::MergeOptions {
        expires_at: Some(jarvis_store::now_secs()),
        retry: None,
    };
    site.store
        .update_with(
            &Key::new(QUEUE_PARTITION, job.sort())?,
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
