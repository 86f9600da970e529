//! The knowledge base of a host: adding documents, reading them off the request path,
//! hybrid search and answers with citations.
//!
//! Adding a document keeps its file in the blob store, records it (pending) and queues a
//! [`Job`]; [`Knowledge::ingest`] is what a worker runs for a job: detect and read the file
//! (audio transcribed and images captioned through the provider layer), cut it into chunks,
//! embed them a batch at a time (progress recorded after each) and index them. A job run
//! again (a redelivered message, a restarted host) starts the document over, so a crash
//! loses nothing and duplicates nothing.
//!
//! Search runs the vector and the keyword search and fuses their rankings by reciprocal
//! rank. An answer gives the model the best chunks as numbered sources and returns the
//! ones its answer cites by marker; when no chunk is relevant enough, no model is asked and
//! the answer says the sources do not cover the question.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use jarvis_ai::service::{Ai, CallError, Payer, Site};
use jarvis_ai::{Audio, ChatRequest, Message, Part};
use jarvis_blobs::{Blob, BlobError, Blobs};
use jarvis_config::KnowledgeConfig;
use jarvis_store::{Page, StoreError};
use uuid::Uuid;

use crate::documents::{self, ArchiveWork, Document, Job, NewDocument, Origin, Progress, Status};
use crate::index::{Entry, Filter, Found, IndexError, Source, VectorIndex};
use crate::settings::{self, Settings};
use crate::{ChunkRules, Extracted, Processed, Registry, Section, SectionKind, chunk};

/// Chunks embedded in one call.
pub const EMBED_BATCH: usize = 32;
/// The constant of reciprocal rank fusion. The usual 60 flattens the ranks so far that a
/// chunk both lists place in their middle outranks either list's first; 10 keeps the first
/// few ranks of each list ahead (measured on the Python documentation: README, "Knowledge
/// retrieval").
pub const RRF_K: f64 = 10.0;
/// What a keyword rank weighs in a fusion against a vector rank's 1: a question's words are
/// often not its answer's, so BM25 ranks a passage that shares them with no answer in it
/// more often than vector similarity does, and it tips close cases rather than leads.
pub const KEYWORD_WEIGHT: f64 = 0.5;
/// Candidates each search contributes to a fusion, at least: enough that a section's
/// earlier chunk, ranked lower than the one after it, is still there to be shown.
pub const MIN_CANDIDATES: usize = 50;
/// Chunks an answer is given as sources.
pub const ANSWER_SOURCES: usize = 6;
/// Longest excerpt a citation quotes, in characters.
pub const EXCERPT_CHARS: usize = 400;
/// What the model says when the sources do not answer.
const NOT_IN_SOURCES: &str = "NOT IN SOURCES";
/// What an answer says when the sources do not answer.
pub const UNANSWERED: &str = "The sources do not answer this question.";
/// Times a document is started before it is given up as failed.
pub const MAX_ATTEMPTS: u32 = 3;

/// Why a knowledge operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    /// No such document.
    #[error("no such document")]
    NotFound,
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The blob store failed.
    #[error(transparent)]
    Blobs(#[from] BlobError),
    /// A model call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue refused the job.
    #[error("the ingestion queue is unavailable: {0}")]
    Queue(String),
    /// A document's source could not be read again.
    #[error("reading the document's source failed: {0}")]
    Source(String),
}

/// Where ingestion jobs go: SQS on AWS, the host's own worker locally.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Hands `job` to a worker.
    async fn send(&self, job: &Job) -> Result<(), KnowledgeError>;
}

/// An archive entry as the knowledge base reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSource {
    /// What its document is named: the entry's title.
    pub name: String,
    /// Its text as it is indexed.
    pub text: Vec<u8>,
    /// Its tags.
    pub tags: Vec<String>,
}

/// A user's archive, where the knowledge base reads entries: to index them as they change,
/// and to read again a document this deployment holds no file of (it came from a peer by
/// sync, and so did its entry).
#[async_trait]
pub trait Sources: Send + Sync {
    /// `user`'s archive entry `id`, or `None` when it is gone.
    async fn archive_entry(
        &self,
        user: &str,
        id: &str,
    ) -> Result<Option<ArchiveSource>, KnowledgeError>;

    /// A page of the ids of `user`'s entries after `cursor`, and the next page's cursor.
    async fn archive_entries(
        &self,
        user: &str,
        cursor: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), KnowledgeError>;
}

/// Which rankings a search uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMode {
    /// Vector and keyword, fused.
    #[default]
    Hybrid,
    /// Vector similarity only.
    Vector,
    /// Keywords (BM25) only.
    Keyword,
}

/// A chunk a search found, with its place in each ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The chunk.
    pub chunk: Found,
    /// Its fused score (higher is better).
    pub score: f64,
    /// Its cosine similarity to the query, when the vector search found it.
    pub similarity: Option<f64>,
    /// Its rank in the vector search (from 1).
    pub vector_rank: Option<usize>,
    /// Its rank in the keyword search (from 1).
    pub keyword_rank: Option<usize>,
}

/// A source an answer cites.
#[derive(Debug, Clone, PartialEq)]
pub struct Citation {
    /// The marker the answer refers to it by (`[1]` is 1).
    pub marker: usize,
    /// The chunk quoted.
    pub chunk: Found,
    /// The quoted excerpt.
    pub excerpt: String,
}

/// An answer from the knowledge base.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The answer's text, with markers like `[1]`.
    pub text: String,
    /// Whether the sources answered the question.
    pub answered: bool,
    /// The sources the answer cites, by marker.
    pub citations: Vec<Citation>,
    /// `provider:model` that answered, when one was asked.
    pub model: Option<String>,
}

/// The caller of an operation.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The user.
    pub user: &'a str,
    /// Their role (whose token budget applies).
    pub role: &'a str,
}

impl<'a> Caller<'a> {
    fn payer(self) -> Payer<'a> {
        Payer::User {
            id: self.user,
            role: self.role,
        }
    }
}

/// The knowledge base of a host.
pub struct Knowledge {
    ai: Arc<Ai>,
    site: Site,
    blobs: Arc<dyn Blobs>,
    index: Arc<dyn VectorIndex>,
    registry: Registry,
    config: KnowledgeConfig,
    queue: std::sync::OnceLock<Arc<dyn Queue>>,
    sources: std::sync::OnceLock<Arc<dyn Sources>>,
}

impl std::fmt::Debug for Knowledge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Knowledge")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// The text of a document's sections for the token counter of chunking: the estimate the
/// provider layer budgets with.
pub fn count_tokens(text: &str) -> usize {
    usize::try_from(jarvis_ai::scripted::estimate_tokens(text)).unwrap_or(usize::MAX)
}

fn section_label(headings: &[String]) -> Option<String> {
    (!headings.is_empty()).then(|| headings.join(" › "))
}

/// `text` cut to [`EXCERPT_CHARS`] characters, marked when cut.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The markers `[n]` in `text`, first appearance first, within `1..=sources`.
pub fn markers(text: &str, sources: usize) -> Vec<usize> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find(']') else { break };
        // `[1, 3]` and `[1][3]` both cite 1 and 3.
        for part in rest[..close].split(',') {
            if let Ok(n) = part.trim().parse::<usize>()
                && (1..=sources).contains(&n)
                && !found.contains(&n)
            {
                found.push(n);
            }
        }
        rest = &rest[close + 1..];
    }
    found
}

/// Fuses rankings by weighted reciprocal rank, one hit per section.
///
/// Each chunk scores `1 / (RRF_K + rank)` for its vector rank and [`KEYWORD_WEIGHT`] times
/// that for its keyword rank. Chunks of one section (same document, same headings) are one
/// passage cut to the embedder's window, so they make one hit: scored as its best chunk,
/// with the best ranks and similarity of any of them, and shown as the earliest of them,
/// where the passage begins (an API entry's first chunk says what the entry does; the ones
/// after it continue). A chunk with no headings is a hit of its own.
pub fn fuse(vector: Vec<Found>, keyword: Vec<Found>, k: usize) -> Vec<Hit> {
    let mut hits: Vec<Hit> = Vec::new();
    let mut at: HashMap<(Uuid, u32), usize> = HashMap::new();
    for (list, is_vector) in [(vector, true), (keyword, false)] {
        for (i, found) in list.into_iter().enumerate() {
            let rank = i + 1;
            let weight = if is_vector { 1.0 } else { KEYWORD_WEIGHT };
            let share = weight / (RRF_K + rank as f64);
            let slot = *at
                .entry((found.document, found.ordinal))
                .or_insert_with(|| {
                    hits.push(Hit {
                        chunk: found.clone(),
                        score: 0.0,
                        similarity: None,
                        vector_rank: None,
                        keyword_rank: None,
                    });
                    hits.len() - 1
                });
            let hit = &mut hits[slot];
            hit.score += share;
            if is_vector {
                hit.vector_rank = Some(rank);
                hit.similarity = Some(found.score);
            } else {
                hit.keyword_rank = Some(rank);
            }
        }
    }
    let mut passages: Vec<Hit> = Vec::new();
    let mut of_section: HashMap<(Uuid, String), usize> = HashMap::new();
    for hit in hits {
        let Some(section) = hit.chunk.section.clone() else {
            passages.push(hit);
            continue;
        };
        let Some(&slot) = of_section.get(&(hit.chunk.document, section.clone())) else {
            of_section.insert((hit.chunk.document, section), passages.len());
            passages.push(hit);
            continue;
        };
        let passage = &mut passages[slot];
        passage.score = passage.score.max(hit.score);
        passage.similarity = better_of(passage.similarity, hit.similarity, f64::max);
        passage.vector_rank = better_of(passage.vector_rank, hit.vector_rank, usize::min);
        passage.keyword_rank = better_of(passage.keyword_rank, hit.keyword_rank, usize::min);
        if hit.chunk.ordinal < passage.chunk.ordinal {
            passage.chunk = hit.chunk;
        }
    }
    passages.sort_by(|a, b| b.score.total_cmp(&a.score));
    passages.truncate(k);
    passages
}

/// The better of two optional values by `better`, either when only one is there.
fn better_of<T: Copy>(a: Option<T>, b: Option<T>, better: fn(T, T) -> T) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(better(a, b)),
        (a, b) => a.or(b),
    }
}

/// The `k` best chunks of `user`'s for `query` (whose embedding, with its model, is
/// `vector`), ranked as `mode` says: the vector and the keyword search each give at least
/// [`MIN_CANDIDATES`], fused by reciprocal rank. Where the index has no keyword search,
/// hybrid ranks by vectors alone.
pub async fn hybrid(
    index: &dyn VectorIndex,
    user: &str,
    query: &str,
    vector: Option<(&str, &[f32])>,
    k: usize,
    filter: &Filter,
    mode: SearchMode,
) -> Result<Vec<Hit>, IndexError> {
    let candidates = k.max(MIN_CANDIDATES);
    let by_vector = match (mode, vector) {
        (SearchMode::Keyword, _) | (_, None) => Vec::new(),
        (SearchMode::Hybrid | SearchMode::Vector, Some((model, vector))) => {
            match index.nearest(user, model, vector, candidates, filter).await {
                Ok(found) => found,
                // Nothing was indexed yet: nothing is near.
                Err(IndexError::ModelChanged { built, .. }) if built.is_empty() => Vec::new(),
                Err(err) => return Err(err),
            }
        }
    };
    let by_keyword = match mode {
        SearchMode::Vector => Vec::new(),
        SearchMode::Hybrid | SearchMode::Keyword => {
            match index.matching(user, query, candidates, filter).await {
                Ok(found) => found,
                Err(IndexError::Unsupported(_)) if mode == SearchMode::Hybrid => Vec::new(),
                Err(err) => return Err(err),
            }
        }
    };
    Ok(fuse(by_vector, by_keyword, k))
}

impl Knowledge {
    /// The knowledge base over `site`, keeping files in `blobs` and chunks in `index`.
    pub fn new(
        ai: Arc<Ai>,
        site: Site,
        blobs: Arc<dyn Blobs>,
        index: Arc<dyn VectorIndex>,
        registry: Registry,
        config: KnowledgeConfig,
    ) -> Self {
        Self {
            ai,
            site,
            blobs,
            index,
            registry,
            config,
            queue: std::sync::OnceLock::new(),
            sources: std::sync::OnceLock::new(),
        }
    }

    /// Sets where documents are read again from when this deployment has no file of them
    /// (once; later calls change nothing).
    pub fn attach_sources(&self, sources: Arc<dyn Sources>) {
        let _ = self.sources.set(sources);
    }

    /// Attaches the queue jobs go to; the first attached stays.
    pub fn attach_queue(&self, queue: Arc<dyn Queue>) {
        let _ = self.queue.set(queue);
    }

    /// Where the knowledge base runs.
    pub fn site(&self) -> &Site {
        &self.site
    }

    /// Its settings.
    pub fn config(&self) -> &KnowledgeConfig {
        &self.config
    }

    /// The file processors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Adds a document: keeps the file, records it and queues it to be read. Answers the
    /// document and whether it is new (the same bytes added again change nothing).
    pub async fn add(
        &self,
        caller: Caller<'_>,
        name: String,
        bytes: Vec<u8>,
        origin: Origin,
        tags: Vec<String>,
    ) -> Result<(Document, bool), KnowledgeError> {
        let media_type = crate::detect(&bytes).to_owned();
        let hash = documents::sha256(&bytes);
        let id = documents::id_for(caller.user, &origin, &hash);
        if let Some(existing) = documents::get(&self.site, caller.user, &id).await?
            && existing.sha256 == hash
        {
            return Ok((existing, false));
        }
        // The file first: a record never points at a file that is not there.
        self.blobs
            .put(
                &documents::blob_key(caller.user, &id)?,
                &Blob {
                    media_type: media_type.clone(),
                    bytes: bytes.clone(),
                },
            )
            .await?;
        let new = NewDocument {
            name,
            media_type,
            bytes,
            origin,
            tags,
        };
        let (document, created) = documents::create(&self.site, caller.user, &new).await?;
        if created {
            self.queue_job(Job::read(caller.user, caller.role, document.id))
                .await?;
        }
        Ok((document, created))
    }

    async fn queue_job(&self, job: Job) -> Result<(), KnowledgeError> {
        match self.queue.get() {
            Some(queue) => queue.send(&job).await,
            None => Err(KnowledgeError::Queue(
                "this host has no ingestion queue".into(),
            )),
        }
    }

    /// A user's document.
    pub async fn get(&self, caller: Caller<'_>, id: &Uuid) -> Result<Document, KnowledgeError> {
        let mut document = documents::get(&self.site, caller.user, id)
            .await?
            .ok_or(KnowledgeError::NotFound)?;
        self.adopt(caller, &mut document).await?;
        Ok(document)
    }

    /// A page of a user's documents.
    pub async fn list(
        &self,
        caller: Caller<'_>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Document>, KnowledgeError> {
        let mut page = documents::list(&self.site, caller.user, cursor, limit).await?;
        for document in &mut page.items {
            self.adopt(caller, document).await?;
        }
        Ok(page)
    }

    /// Queues a document that came from a peer by sync, the first time it is read here:
    /// chunks and vectors are not replicated, so each deployment reads its documents itself.
    async fn adopt(
        &self,
        caller: Caller<'_>,
        document: &mut Document,
    ) -> Result<(), KnowledgeError> {
        if document.here {
            return Ok(());
        }
        // Pending before it is queued, so a fast worker's progress is never overwritten;
        // forgotten again when the queue refuses it, so the next read queues it anew.
        documents::set_status(&self.site, caller.user, &document.id, Progress::pending()).await?;
        let queued = self
            .queue_job(Job::read(caller.user, caller.role, document.id))
            .await;
        if let Err(err) = queued {
            documents::forget_status(&self.site, caller.user, &document.id).await?;
            return Err(err);
        }
        // It had no progress here: pending is all there is to show.
        document.status = Status::Pending;
        document.here = true;
        Ok(())
    }

    /// Deletes a document, its file, and its chunks and vectors.
    pub async fn delete(&self, user: &str, id: &Uuid) -> Result<(), KnowledgeError> {
        if !documents::delete(&self.site, user, id).await? {
            return Err(KnowledgeError::NotFound);
        }
        self.index.remove(user, *id).await?;
        self.blobs.delete(&documents::blob_key(user, id)?).await?;
        Ok(())
    }

    /// Reads one queued document into the index. An error is worth retrying (the store,
    /// the blob store, a provider or the index failed); a file that cannot be read ends as
    /// `failed` and answers `Ok`.
    pub async fn ingest(&self, job: &Job) -> Result<(), KnowledgeError> {
        match &job.archive {
            None => self.read_document(job, job.document).await,
            Some(ArchiveWork::Entry(entry)) => self.follow_entry(job, entry).await,
            Some(ArchiveWork::All(cursor)) => self.index_archive_page(job, cursor.as_deref()).await,
        }
    }

    /// A user's settings.
    pub async fn settings(&self, user: &str) -> Result<Settings, KnowledgeError> {
        Ok(settings::get(&self.site, user).await?)
    }

    /// Sets a user's settings. Turning archive indexing on queues every entry already there.
    pub async fn set_settings(
        &self,
        caller: Caller<'_>,
        new: Settings,
    ) -> Result<Settings, KnowledgeError> {
        // Queued before it is set: a queue that refuses leaves the setting as it was, so
        // asking again queues again (an entry job that finds it off does nothing).
        let before = settings::get(&self.site, caller.user).await?;
        if new.index_archive && !before.index_archive {
            self.queue_job(Job::whole_archive(caller.user, caller.role, None))
                .await?;
        }
        settings::set(&self.site, caller.user, new).await?;
        Ok(new)
    }

    fn sources(&self) -> Result<&Arc<dyn Sources>, KnowledgeError> {
        self.sources
            .get()
            .ok_or_else(|| KnowledgeError::Source("this host reads no archive".into()))
    }

    /// Brings the document of an archive entry up to date with it: indexed when the user
    /// indexes their archive or indexed it already, read again when its text changed, gone
    /// when the entry is.
    async fn follow_entry(&self, job: &Job, entry: &str) -> Result<(), KnowledgeError> {
        let (site, user) = (&self.site, job.user.as_str());
        let origin = Origin::Archive(entry.to_owned());
        let id = documents::id_for(user, &origin, "");
        let existing = documents::get(site, user, &id).await?;
        let Some(source) = self.sources()?.archive_entry(user, entry).await? else {
            if existing.is_some() {
                match self.delete(user, &id).await {
                    Ok(()) | Err(KnowledgeError::NotFound) => {}
                    Err(err) => return Err(err),
                }
            }
            return Ok(());
        };
        let wanted = existing.is_some() || settings::get(site, user).await?.index_archive;
        if !wanted {
            return Ok(());
        }
        let hash = documents::sha256(&source.text);
        if existing
            .as_ref()
            .is_some_and(|d| d.sha256 == hash && d.here)
        {
            // Read here already, or being read: the entry's text is what it was.
            return Ok(());
        }
        let media_type = crate::detect(&source.text).to_owned();
        self.blobs
            .put(
                &documents::blob_key(user, &id)?,
                &Blob {
                    media_type: media_type.clone(),
                    bytes: source.text.clone(),
                },
            )
            .await?;
        let new = NewDocument {
            name: source.name,
            media_type,
            bytes: source.text,
            origin,
            // A document the user tagged keeps its tags; a new one takes the entry's.
            tags: existing.map_or(source.tags, |d| d.tags),
        };
        documents::create(site, user, &new).await?;
        self.read_document(job, id).await
    }

    /// Queues one job per entry of a page of the user's archive, then the next page's job.
    async fn index_archive_page(
        &self,
        job: &Job,
        cursor: Option<&str>,
    ) -> Result<(), KnowledgeError> {
        let (ids, next) = self.sources()?.archive_entries(&job.user, cursor).await?;
        for entry in ids {
            self.queue_job(Job::archive_entry(&job.user, &job.role, &entry))
                .await?;
        }
        if let Some(next) = next {
            self.queue_job(Job::whole_archive(&job.user, &job.role, Some(next)))
                .await?;
        }
        Ok(())
    }

    async fn read_document(&self, job: &Job, id: Uuid) -> Result<(), KnowledgeError> {
        let site = &self.site;
        let user = job.user.as_str();
        let Some(document) = documents::get(site, user, &id).await? else {
            // Deleted since it was queued.
            return Ok(());
        };
        if matches!(document.status, Status::Ready | Status::Failed) {
            // A redelivered job for a document already read.
            return Ok(());
        }
        let attempt = document.attempts + 1;
        if attempt > MAX_ATTEMPTS {
            documents::set_status(
                site,
                user,
                &id,
                Progress::failed(&format!(
                    "reading it failed {MAX_ATTEMPTS} times; the last error is in the logs"
                )),
            )
            .await?;
            return Ok(());
        }
        documents::set_status(site, user, &id, Progress::processing(attempt)).await?;
        let caller = Caller {
            user,
            role: &job.role,
        };
        let outcome = self.read_into_index(caller, &document).await;
        match outcome {
            Ok(Ok(chunks)) => {
                documents::set_status(site, user, &id, Progress::ready(chunks)).await?;
                Ok(())
            }
            Ok(Err(reason)) => {
                // Nothing of it may stay searchable.
                self.index.remove(user, id).await?;
                documents::set_status(site, user, &id, Progress::failed(&reason)).await?;
                Ok(())
            }
            Err(KnowledgeError::Call(CallError::Quota(exceeded))) => {
                self.index.remove(user, id).await?;
                let reason = CallError::Quota(exceeded).to_string();
                documents::set_status(site, user, &id, Progress::failed(&reason)).await?;
                Ok(())
            }
            Err(err) => {
                tracing::warn!(document = %id, attempt, error = %err, "reading a document failed; it will be retried");
                Err(err)
            }
        }
    }

    /// The content of a document this deployment has no file of, where it can be read again.
    async fn content_elsewhere(
        &self,
        user: &str,
        document: &Document,
    ) -> Result<Option<Vec<u8>>, KnowledgeError> {
        match (&document.origin, self.sources.get()) {
            (Origin::Archive(entry), Some(sources)) => Ok(sources
                .archive_entry(user, entry)
                .await?
                .map(|source| source.text)),
            _ => Ok(None),
        }
    }

    /// Reads `document` into the index: `Ok(Err(reason))` when its file cannot be read.
    async fn read_into_index(
        &self,
        caller: Caller<'_>,
        document: &Document,
    ) -> Result<Result<usize, String>, KnowledgeError> {
        let user = caller.user;
        let blob_key = documents::blob_key(user, &document.id)?;
        let blob = match self.blobs.get(&blob_key).await? {
            Some(blob) => blob,
            None => {
                let Some(bytes) = self.content_elsewhere(user, document).await? else {
                    return Ok(Err(match document.origin {
                        Origin::Upload => "the file was uploaded to another deployment and is not stored on this one".into(),
                        Origin::Archive(_) => "its archive entry was deleted".into(),
                    }));
                };
                let blob = Blob {
                    media_type: crate::detect(&bytes).to_owned(),
                    bytes,
                };
                self.blobs.put(&blob_key, &blob).await?;
                blob
            }
        };
        let extracted = match self.extract(caller, &blob.bytes).await? {
            Ok(extracted) => extracted,
            Err(reason) => return Ok(Err(reason)),
        };
        let rules = ChunkRules {
            budget: self.config.chunk_tokens,
            overlap: self.config.chunk_overlap,
        };
        let chunks = chunk(&extracted, rules, &count_tokens);
        if chunks.is_empty() {
            return Ok(Err("the file holds no text".into()));
        }
        let pages = extracted.sections.iter().filter_map(|s| s.page).max();
        documents::set_status(
            &self.site,
            user,
            &document.id,
            Progress::read(chunks.len(), pages, extracted.title.as_deref()),
        )
        .await?;
        self.index
            .begin(
                user,
                &Source {
                    document: document.id,
                    name: document.name.clone(),
                    title: extracted.title.clone(),
                    media_type: document.media_type.clone(),
                    tags: document.tags.clone(),
                },
            )
            .await?;
        let mut done = 0;
        for batch in chunks.chunks(EMBED_BATCH) {
            let texts: Vec<String> = batch
                .iter()
                .map(|c| embedding_text(&extracted, c))
                .collect();
            let embedded = self
                .ai
                .embed(&self.site, caller.payer(), &self.config.embed_model, texts)
                .await?;
            if embedded.vectors.len() != batch.len() {
                return Err(KnowledgeError::Index(IndexError::Invalid(format!(
                    "{} answered {} vectors for {} texts",
                    embedded.model,
                    embedded.vectors.len(),
                    batch.len()
                ))));
            }
            let entries: Vec<Entry> = batch
                .iter()
                .zip(embedded.vectors)
                .map(|(c, vector)| Entry {
                    ordinal: u32::try_from(c.index).unwrap_or(u32::MAX),
                    page: c.page,
                    section: section_label(&c.headings),
                    text: c.text.clone(),
                    vector,
                })
                .collect();
            self.index
                .add(user, &embedded.model, document.id, &entries)
                .await?;
            done += batch.len();
            documents::set_status(
                &self.site,
                user,
                &document.id,
                Progress::embedded(done, &embedded.model),
            )
            .await?;
        }
        Ok(Ok(chunks.len()))
    }

    /// The text and structure of a file: through its processor, or, for sound and images,
    /// through the provider layer. `Ok(Err(reason))` when it cannot be read.
    async fn extract(
        &self,
        caller: Caller<'_>,
        bytes: &[u8],
    ) -> Result<Result<Extracted, String>, KnowledgeError> {
        match self.registry.process(bytes) {
            Processed::Ready { extracted, .. } => Ok(Ok(extracted)),
            Processed::Failed { media_type, .. } if media_type.starts_with("audio/") => {
                self.transcribe(caller, media_type, bytes).await
            }
            Processed::Failed { media_type, .. } if crate::detect::is_image(media_type) => {
                self.caption(caller, media_type, bytes).await
            }
            Processed::Failed { reason, .. } => Ok(Err(reason)),
        }
    }

    async fn transcribe(
        &self,
        caller: Caller<'_>,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Result<Extracted, String>, KnowledgeError> {
        let audio = Audio {
            media_type: media_type.to_owned(),
            bytes: bytes.to_vec(),
        };
        let alias = &self.config.transcribe_model;
        match self
            .ai
            .transcribe(&self.site, caller.payer(), alias, audio, None)
            .await
        {
            Ok((_, text)) => Ok(Ok(prose(None, &text))),
            Err(CallError::UnknownAlias(_)) => Ok(Err(format!(
                "skipped: sound is transcribed by the model alias {alias:?}, which is not configured"
            ))),
            Err(CallError::Provider(err)) if !err.is_transient() => {
                Ok(Err(format!("the transcription failed: {err}")))
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn caption(
        &self,
        caller: Caller<'_>,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Result<Extracted, String>, KnowledgeError> {
        let Some(alias) = self.config.vision_model.as_deref() else {
            return Ok(Err(
                "skipped: images are captioned by a vision model, and none is configured \
                 (JARVIS_KNOWLEDGE_VISION_MODEL)"
                    .into(),
            ));
        };
        use base64::Engine as _;
        let request = ChatRequest {
            model: String::new(),
            system: Some(
                "Describe the image for a search index: what it shows, and every piece of text in it, verbatim."
                    .into(),
            ),
            messages: vec![Message {
                role: jarvis_ai::Role::User,
                parts: vec![
                    Part::Image {
                        media_type: media_type.to_owned(),
                        data: base64::engine::general_purpose::STANDARD.encode(bytes),
                    },
                    Part::Text {
                        text: "Describe this image.".into(),
                    },
                ],
            }],
            tools: Vec::new(),
            temperature: Some(0.0),
            max_output_tokens: Some(512),
            stop: Vec::new(),
        };
        match self
            .ai
            .complete(&self.site, caller.payer(), alias, request, 2_600)
            .await
        {
            Ok(done) => Ok(Ok(prose(Some("Image".into()), &done.reply.text))),
            Err(CallError::UnknownAlias(_)) => Ok(Err(format!(
                "skipped: the vision model alias {alias:?} is not configured"
            ))),
            Err(CallError::Provider(err)) if !err.is_transient() => {
                Ok(Err(format!("the caption failed: {err}")))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The `k` best chunks for `query`, ranked as `mode` says.
    pub async fn search(
        &self,
        caller: Caller<'_>,
        query: &str,
        k: usize,
        filter: &Filter,
        mode: SearchMode,
    ) -> Result<Vec<Hit>, KnowledgeError> {
        let embedded = match mode {
            SearchMode::Keyword => None,
            SearchMode::Hybrid | SearchMode::Vector => {
                let embedded = self
                    .ai
                    .embed(
                        &self.site,
                        caller.payer(),
                        &self.config.embed_model,
                        vec![query.to_owned()],
                    )
                    .await?;
                let model = embedded.model;
                embedded.vectors.into_iter().next().map(|v| (model, v))
            }
        };
        let query_vector = embedded.as_ref().map(|(m, v)| (m.as_str(), v.as_slice()));
        Ok(hybrid(
            self.index.as_ref(),
            caller.user,
            query,
            query_vector,
            k,
            filter,
            mode,
        )
        .await?)
    }

    /// Answers `question` from the user's documents, citing them.
    pub async fn ask(
        &self,
        caller: Caller<'_>,
        question: &str,
        filter: &Filter,
    ) -> Result<Answer, KnowledgeError> {
        let hits = self
            .search(caller, question, ANSWER_SOURCES, filter, SearchMode::Hybrid)
            .await?;
        let sources: Vec<Found> = hits
            .into_iter()
            .filter(|hit| self.relevant(hit))
            .map(|hit| hit.chunk)
            .collect();
        if sources.is_empty() {
            return Ok(Answer {
                text: UNANSWERED.to_owned(),
                answered: false,
                citations: Vec::new(),
                model: None,
            });
        }
        let request = answer_request(question, &sources);
        let prompt: u64 = request
            .messages
            .iter()
            .map(|m| jarvis_ai::scripted::estimate_tokens(&m.text()))
            .sum();
        let worst = prompt + u64::from(request.max_output_tokens.unwrap_or(0));
        let done = self
            .ai
            .complete(
                &self.site,
                caller.payer(),
                &self.config.answer_model,
                request,
                worst,
            )
            .await?;
        let text = done.reply.text.trim().to_owned();
        if text.contains(NOT_IN_SOURCES) {
            return Ok(Answer {
                text: UNANSWERED.to_owned(),
                answered: false,
                citations: Vec::new(),
                model: Some(done.model),
            });
        }
        let citations = markers(&text, sources.len())
            .into_iter()
            .map(|marker| {
                let chunk = sources[marker - 1].clone();
                Citation {
                    marker,
                    excerpt: excerpt(&chunk.text),
                    chunk,
                }
            })
            .collect();
        Ok(Answer {
            text,
            answered: true,
            citations,
            model: Some(done.model),
        })
    }

    /// The chunks a reply in a conversation is given, for `{"knowledge": true}`: the best
    /// relevant ones, as numbered sources.
    pub async fn context_for(
        &self,
        caller: Caller<'_>,
        question: &str,
    ) -> Result<Vec<Found>, KnowledgeError> {
        let hits = self
            .search(
                caller,
                question,
                ANSWER_SOURCES,
                &Filter::default(),
                SearchMode::Hybrid,
            )
            .await?;
        Ok(hits
            .into_iter()
            .filter(|hit| self.relevant(hit))
            .map(|hit| hit.chunk)
            .collect())
    }

    /// Whether a hit is close enough to the question to be a source: a keyword match, or a
    /// vector similarity of at least the configured minimum.
    fn relevant(&self, hit: &Hit) -> bool {
        hit.keyword_rank.is_some()
            || hit
                .similarity
                .is_some_and(|s| s >= self.config.min_similarity)
    }
}

/// What a chunk is embedded as: its document's title and its headings before its text, so
/// a chunk deep in a section still carries what the section is about.
pub fn embedding_text(extracted: &Extracted, chunk: &crate::Chunk) -> String {
    let mut context: Vec<&str> = Vec::new();
    if let Some(title) = extracted.title.as_deref() {
        context.push(title);
    }
    context.extend(chunk.headings.iter().map(String::as_str));
    if context.is_empty() {
        chunk.text.clone()
    } else {
        format!("{}\n\n{}", context.join(" › "), chunk.text)
    }
}

/// Text from a model (a transcript, a caption) as a document of prose.
fn prose(heading: Option<String>, text: &str) -> Extracted {
    Extracted {
        title: None,
        sections: vec![Section {
            headings: heading.into_iter().collect(),
            page: None,
            text: text.trim().to_owned(),
            kind: SectionKind::Prose,
        }],
    }
}

/// The numbered sources, `[n] (document, page n, section): text`, the instructions and
/// the question.
pub fn answer_request(question: &str, sources: &[Found]) -> ChatRequest {
    let mut listed = String::new();
    for (i, source) in sources.iter().enumerate() {
        let label = source.title.clone().unwrap_or_else(|| source.name.clone());
        let section = source.section.clone().filter(|section| *section != label);
        let mut place = vec![label];
        if let Some(page) = source.page {
            place.push(format!("page {page}"));
        }
        place.extend(section);
        listed.push_str(&format!(
            "[{}] ({}): {}\n\n",
            i + 1,
            place.join(", "),
            source.text
        ));
    }
    ChatRequest {
        model: String::new(),
        system: Some(format!(
            "Answer the question from the numbered sources only. After each statement, cite \
             the sources it comes from by number in brackets, like [1] or [2][3]. If the \
             sources do not contain the answer, reply with exactly: {NOT_IN_SOURCES}"
        )),
        messages: vec![Message::user(format!(
            "Sources:\n\n{listed}Question: {question}"
        ))],
        tools: Vec::new(),
        temperature: Some(0.0),
        max_output_tokens: Some(512),
        stop: Vec::new(),
    }
}

/// The queue of a host without SQS: jobs recorded in the store's queue partition (so a
/// restarted host resumes them) and a worker task in the process that reads them in order.
pub struct LocalQueue {
    site: Site,
    wake: Arc<tokio::sync::Notify>,
}

impl LocalQueue {
    /// A queue over `site`'s store; [`run_local_worker`] serves it.
    pub fn new(site: Site) -> Self {
        Self {
            site,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

#[async_trait]
impl Queue for LocalQueue {
    async fn send(&self, job: &Job) -> Result<(), KnowledgeError> {
        documents::enqueue(&self.site, job).await?;
        self.wake.notify_one();
        Ok(())
    }
}

/// How long the local worker waits before it looks at the queue again unprompted.
const WORKER_POLL: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `queue` for `knowledge` until the process ends: each queued job is ingested, and
/// taken off the queue once it ends (ready or failed); one that failed in a way worth
/// retrying stays, and is tried again after a pause that grows with its attempts.
pub async fn run_local_worker(knowledge: Arc<Knowledge>, queue: Arc<LocalQueue>) {
    let site = knowledge.site().clone();
    loop {
        let jobs = match documents::queued(&site, 16).await {
            Ok(jobs) => jobs,
            Err(err) => {
                tracing::warn!(error = %err, "the ingestion queue could not be read");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if jobs.is_empty() {
            let _ = tokio::time::timeout(WORKER_POLL, queue.wake.notified()).await;
            continue;
        }
        for job in jobs {
            match knowledge.ingest(&job).await {
                Ok(()) => {
                    if let Err(err) = documents::finished(&site, &job).await {
                        tracing::warn!(error = %err, "a finished ingestion job could not be taken off the queue");
                    }
                }
                Err(_) => {
                    let attempts = documents::get(&site, &job.user, &job.document)
                        .await
                        .ok()
                        .flatten()
                        .map_or(1, |d| d.attempts);
                    let pause = std::time::Duration::from_millis(500 << attempts.min(6));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
