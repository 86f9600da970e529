//! The knowledge base on AWS: vectors in one Amazon S3 Vectors index per deployment, with
//! the user as a filter, and ingestion jobs on an SQS queue.
//!
//! A chunk is the vector `<user>:<document>:<ordinal>`; its filterable metadata are the
//! user, document, embedding model, media type and tags (so a search never leaves its
//! user, and vectors of another model never mix in), its other metadata the text and where
//! it comes from (`text`, `name`, `title`, `section`, `page`, `ordinal`: declared
//! non-filterable in `template.yaml`). Chunks are numbered from 0 without gaps, so a
//! document's vectors are found by key, 500 at a time, without a scan.
//!
//! S3 Vectors has no keyword search: the chunks' words go to a DynamoDB table beside it
//! ([`Keywords`], posting lists ranked by the same BM25 as FTS5's), and a keyword hit's
//! text and source are read back from its vector's metadata. Without a keyword table,
//! [`S3Vectors::matching`] answers [`IndexError::Unsupported`] and hybrid search ranks by
//! the vectors alone.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3vectors::error::DisplayErrorContext;
use aws_sdk_s3vectors::types::{PutInputVector, VectorData};
use aws_smithy_types::{Document, Number};
use jarvis_config::AwsTarget;
use uuid::Uuid;

pub mod keywords;

pub use keywords::Keywords;

use crate::documents::Job;
use crate::index::{Entry, Filter, Found, IndexError, Source, VectorIndex};
use crate::service::{KnowledgeError, Queue};

/// Vectors one `PutVectors` or `DeleteVectors` call carries at most.
const BATCH: usize = 500;
/// Keys one `GetVectors` call asks for at most.
const GET_BATCH: usize = 100;

fn unavailable(err: impl std::error::Error) -> IndexError {
    IndexError::Unavailable(DisplayErrorContext(err).to_string())
}

/// The key of a chunk's vector.
pub fn vector_key(user: &str, document: Uuid, ordinal: u32) -> String {
    format!("{user}:{}:{ordinal}", document.hyphenated())
}

fn string(value: &str) -> Document {
    Document::String(value.to_owned())
}

/// The metadata of a chunk's vector.
pub fn metadata(user: &str, model: &str, source: &Source, entry: &Entry) -> Document {
    let mut fields = HashMap::from([
        ("user".to_owned(), string(user)),
        ("document".to_owned(), string(&source.document.to_string())),
        ("model".to_owned(), string(model)),
        ("media_type".to_owned(), string(&source.media_type)),
        ("name".to_owned(), string(&source.name)),
        ("text".to_owned(), string(&entry.text)),
        (
            "ordinal".to_owned(),
            Document::Number(Number::PosInt(u64::from(entry.ordinal))),
        ),
    ]);
    if !source.tags.is_empty() {
        fields.insert(
            "tags".to_owned(),
            Document::Array(source.tags.iter().map(|t| string(t)).collect()),
        );
    }
    if let Some(title) = &source.title {
        fields.insert("title".to_owned(), string(title));
    }
    if let Some(section) = &entry.section {
        fields.insert("section".to_owned(), string(section));
    }
    if let Some(page) = entry.page {
        fields.insert(
            "page".to_owned(),
            Document::Number(Number::PosInt(u64::from(page))),
        );
    }
    Document::Object(fields)
}

/// The filter of a search: the user's vectors of `model`, and what `filter` asks.
pub fn query_filter(user: &str, model: &str, filter: &Filter) -> Document {
    let equals = |name: &str, value: &str| {
        Document::Object(HashMap::from([(
            name.to_owned(),
            Document::Object(HashMap::from([("$eq".to_owned(), string(value))])),
        )]))
    };
    let mut all = vec![equals("user", user), equals("model", model)];
    if let Some(document) = filter.document {
        all.push(equals("document", &document.to_string()));
    }
    if let Some(media_type) = &filter.media_type {
        all.push(equals("media_type", media_type));
    }
    // `$eq` on a list matches when any element is equal.
    if let Some(tag) = &filter.tag {
        all.push(equals("tags", tag));
    }
    Document::Object(HashMap::from([("$and".to_owned(), Document::Array(all))]))
}

fn text_field(fields: &HashMap<String, Document>, name: &str) -> Option<String> {
    match fields.get(name) {
        Some(Document::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn number_field(fields: &HashMap<String, Document>, name: &str) -> Option<u32> {
    match fields.get(name) {
        Some(Document::Number(n)) => u32::try_from(n.to_f64_lossy() as u64).ok(),
        _ => None,
    }
}

/// A chunk from its vector's metadata and distance (cosine distance: 1 − similarity).
pub fn found_of(metadata: &Document, distance: f32) -> Option<Found> {
    let Document::Object(fields) = metadata else {
        return None;
    };
    Some(Found {
        document: Uuid::try_parse(&text_field(fields, "document")?).ok()?,
        name: text_field(fields, "name").unwrap_or_default(),
        title: text_field(fields, "title"),
        media_type: text_field(fields, "media_type").unwrap_or_default(),
        ordinal: number_field(fields, "ordinal")?,
        page: number_field(fields, "page"),
        section: text_field(fields, "section"),
        text: text_field(fields, "text").unwrap_or_default(),
        score: 1.0 - f64::from(distance),
    })
}

/// Which S3 Vectors index: by its ARN (as `template.yaml` passes it), or by bucket and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `arn:aws:s3vectors:<region>:<account>:bucket/<bucket>/index/<index>`.
    Arn(String),
    /// A bucket and an index in it.
    Named {
        /// The vector bucket.
        bucket: String,
        /// The index.
        index: String,
    },
}

/// Sets the index of a request from a [`Location`].
macro_rules! at {
    ($request:expr, $location:expr) => {
        match $location {
            Location::Arn(arn) => $request.index_arn(arn),
            Location::Named { bucket, index } => {
                $request.vector_bucket_name(bucket).index_name(index)
            }
        }
    };
}

/// One S3 Vectors index holding every user's chunks.
pub struct S3Vectors {
    location: Location,
    aws: AwsTarget,
    client: tokio::sync::OnceCell<aws_sdk_s3vectors::Client>,
    keywords: Option<Keywords>,
    // Sources as `begin` gave them, for the metadata of the chunks `add` writes next.
    sources: tokio::sync::Mutex<HashMap<(String, Uuid), Source>>,
}

impl std::fmt::Debug for S3Vectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Vectors")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl S3Vectors {
    /// The index at `location`, where `aws` says S3 Vectors is.
    pub fn new(location: Location, aws: AwsTarget) -> Self {
        Self {
            location,
            aws,
            client: tokio::sync::OnceCell::new(),
            keywords: None,
            sources: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The same index with the chunks' words kept in `keywords`, for keyword search.
    pub fn with_keywords(mut self, keywords: Keywords) -> Self {
        self.keywords = Some(keywords);
        self
    }

    async fn client(&self) -> &aws_sdk_s3vectors::Client {
        self.client
            .get_or_init(|| async {
                let timeout = aws_sdk_s3vectors::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(20))
                    .build();
                let sdk = jarvis_config::aws::sdk_config(
                    &self.aws,
                    aws_sdk_s3vectors::config::retry::RetryConfig::standard(),
                    timeout,
                )
                .await;
                aws_sdk_s3vectors::Client::new(&sdk)
            })
            .await
    }

    /// Deletes the vectors of a document: its chunks are numbered from 0 without gaps, so
    /// the keys are probed a batch at a time until a batch holds none.
    async fn delete_document(&self, user: &str, document: Uuid) -> Result<(), IndexError> {
        let client = self.client().await;
        let mut first = 0u32;
        loop {
            let keys: Vec<String> = (first..first + GET_BATCH as u32)
                .map(|ordinal| vector_key(user, document, ordinal))
                .collect();
            let present = at!(client.get_vectors(), &self.location)
                .set_keys(Some(keys))
                .send()
                .await
                .map_err(unavailable)?;
            let present: Vec<String> = present
                .vectors()
                .iter()
                .map(|v| v.key().to_owned())
                .collect();
            if present.is_empty() {
                return Ok(());
            }
            at!(client.delete_vectors(), &self.location)
                .set_keys(Some(present))
                .send()
                .await
                .map_err(unavailable)?;
            first += GET_BATCH as u32;
        }
    }

    /// The chunks of `hits` as their vectors' metadata describe them, in the order given,
    /// each with its score; a chunk whose vector is gone is left out.
    async fn read_back(
        &self,
        user: &str,
        hits: Vec<((Uuid, u32), f64)>,
    ) -> Result<Vec<Found>, IndexError> {
        let client = self.client().await;
        let mut described = HashMap::new();
        for batch in hits.chunks(GET_BATCH) {
            let keys = batch
                .iter()
                .map(|((document, ordinal), _)| vector_key(user, *document, *ordinal))
                .collect();
            let answer = at!(client.get_vectors(), &self.location)
                .set_keys(Some(keys))
                .return_metadata(true)
                .send()
                .await
                .map_err(unavailable)?;
            for vector in answer.vectors() {
                if let Some(found) = vector.metadata().and_then(|m| found_of(m, 0.0)) {
                    described.insert(vector.key().to_owned(), found);
                }
            }
        }
        Ok(hits
            .into_iter()
            .filter_map(|((document, ordinal), score)| {
                let mut found = described.remove(&vector_key(user, document, ordinal))?;
                found.score = score;
                Some(found)
            })
            .collect())
    }
}

#[async_trait]
impl VectorIndex for S3Vectors {
    async fn begin(&self, user: &str, source: &Source) -> Result<(), IndexError> {
        self.delete_document(user, source.document).await?;
        if let Some(keywords) = &self.keywords {
            keywords.remove(user, source.document).await?;
        }
        self.sources
            .lock()
            .await
            .insert((user.to_owned(), source.document), source.clone());
        Ok(())
    }

    async fn add(
        &self,
        user: &str,
        model: &str,
        document: Uuid,
        entries: &[Entry],
    ) -> Result<(), IndexError> {
        let source = self
            .sources
            .lock()
            .await
            .get(&(user.to_owned(), document))
            .cloned()
            .ok_or_else(|| {
                IndexError::Invalid("chunks were added before their document began".into())
            })?;
        let client = self.client().await;
        for batch in entries.chunks(BATCH) {
            let vectors = batch
                .iter()
                .map(|entry| {
                    if entry.vector.iter().any(|x| !x.is_finite()) {
                        return Err(IndexError::Invalid("a vector must be finite".into()));
                    }
                    PutInputVector::builder()
                        .key(vector_key(user, document, entry.ordinal))
                        .data(VectorData::Float32(entry.vector.clone()))
                        .metadata(metadata(user, model, &source, entry))
                        .build()
                        .map_err(|e| IndexError::Invalid(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            at!(client.put_vectors(), &self.location)
                .set_vectors(Some(vectors))
                .send()
                .await
                .map_err(unavailable)?;
        }
        if let Some(keywords) = &self.keywords {
            keywords.add(user, &source, entries).await?;
        }
        Ok(())
    }

    async fn remove(&self, user: &str, document: Uuid) -> Result<(), IndexError> {
        self.sources
            .lock()
            .await
            .remove(&(user.to_owned(), document));
        if let Some(keywords) = &self.keywords {
            keywords.remove(user, document).await?;
        }
        self.delete_document(user, document).await
    }

    async fn nearest(
        &self,
        user: &str,
        model: &str,
        vector: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Found>, IndexError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let client = self.client().await;
        let answer = at!(client.query_vectors(), &self.location)
            .top_k(i32::try_from(k).unwrap_or(i32::MAX))
            .query_vector(VectorData::Float32(vector.to_vec()))
            .filter(query_filter(user, model, filter))
            .return_metadata(true)
            .return_distance(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(answer
            .vectors()
            .iter()
            .filter_map(|v| found_of(v.metadata()?, v.distance().unwrap_or(1.0)))
            .collect())
    }

    async fn matching(
        &self,
        user: &str,
        query: &str,
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Found>, IndexError> {
        let Some(keywords) = &self.keywords else {
            return Err(IndexError::Unsupported("keyword search"));
        };
        let hits = keywords.search(user, query, k, filter).await?;
        self.read_back(user, hits).await
    }
}

/// Ingestion jobs as messages of an SQS queue.
pub struct Sqs(jarvis_queue::Sender);

impl Sqs {
    /// The queue at `url`, where `aws` says SQS is.
    pub fn new(url: String, aws: AwsTarget) -> Self {
        Self(jarvis_queue::Sender::new(url, aws))
    }
}

#[async_trait]
impl Queue for Sqs {
    async fn send(&self, job: &Job) -> Result<(), KnowledgeError> {
        let body = serde_json::to_string(job).map_err(|e| KnowledgeError::Queue(e.to_string()))?;
        self.0
            .send(body)
            .await
            .map_err(|e| KnowledgeError::Queue(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        Source {
            document: Uuid::nil(),
            name: "manual.pdf".into(),
            title: Some("Manual".into()),
            media_type: "application/pdf".into(),
            tags: vec!["home".into()],
        }
    }

    #[test]
    fn a_chunks_metadata_reads_back_as_the_chunk_it_describes() {
        let entry = Entry {
            ordinal: 7,
            page: Some(3),
            section: Some("Care".into()),
            text: "Oil the hinges.".into(),
            vector: vec![0.0; 4],
        };
        let meta = metadata("u1", "local:minilm", &source(), &entry);
        let found = found_of(&meta, 0.25).expect("readable");
        assert_eq!(found.document, Uuid::nil());
        assert_eq!(found.ordinal, 7);
        assert_eq!(found.page, Some(3));
        assert_eq!(found.section.as_deref(), Some("Care"));
        assert_eq!(found.text, "Oil the hinges.");
        assert_eq!(found.title.as_deref(), Some("Manual"));
        assert!((found.score - 0.75).abs() < 1e-9);
        assert_eq!(
            vector_key("u1", Uuid::nil(), 7),
            format!("u1:{}:7", Uuid::nil())
        );
    }

    #[test]
    fn a_search_is_always_limited_to_its_user_and_model() {
        let filter = Filter {
            document: None,
            tag: Some("home".into()),
            media_type: None,
        };
        let Document::Object(top) = query_filter("u1", "m", &filter) else {
            panic!("an object");
        };
        let Some(Document::Array(all)) = top.get("$and") else {
            panic!("$and");
        };
        let names: Vec<&String> = all
            .iter()
            .filter_map(|c| match c {
                Document::Object(o) => o.keys().next(),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["user", "model", "tags"]);
    }
}
