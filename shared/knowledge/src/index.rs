//! The index of a user's chunks: their text, where they come from, and their vectors, for
//! nearest-neighbour and keyword search.
//!
//! [`VectorIndex`] is the one narrow trait retrieval and ingestion use. [`LibsqlIndex`]
//! implements it over one libSQL file per user (`<dir>/<user>.db`): chunks with a native
//! vector column (`F32_BLOB`), an FTS5 table over their text for BM25 keyword search, and,
//! once a user holds more chunks than the configured size, a DiskANN index
//! (`libsql_vector_idx`) with 8-bit compressed neighbours, searched by `vector_top_k`. Below
//! that size a search is exact (`vector_distance_cos` over every chunk), which is fast there
//! and never misses.
//!
//! Chunks and vectors are derived data: they live outside the document store and its change
//! feed, and a replica rebuilds them from the documents.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use libsql::{Builder, Connection, Database, Value};
use uuid::Uuid;

/// Held while an index file is opened (see `LibsqlIndex::file`).
static OPENING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Users whose index files stay open at once; beyond it an idle one is closed.
const OPEN_FILES: usize = 64;
/// Largest number of neighbours a DiskANN node keeps. The default, 3 × √dimensions ≈ 60 for
/// 384 dimensions, makes each node several 4 KiB pages; on 10,000 chunks of the Python
/// documentation 16 neighbours of 8 bits kept recall@10 at 0.991 with an index of 8 KiB a
/// chunk (32 of them: 0.998 and 16 KiB; 1-bit neighbours: 0.974 and 4 KiB; README,
/// "Knowledge retrieval").
pub const MAX_NEIGHBORS: u32 = 16;
/// Candidates the approximate search takes per result wanted when a filter may drop some.
const FILTERED_FANOUT: usize = 8;
/// Most words of a keyword query that are searched for.
pub const MAX_QUERY_WORDS: usize = 32;

/// A document as the index knows it: enough to cite it and to filter by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The document's id.
    pub document: Uuid,
    /// Its file name (or the archive entry it came from).
    pub name: String,
    /// The title the file names, when it does.
    pub title: Option<String>,
    /// Its detected media type.
    pub media_type: String,
    /// Its tags.
    pub tags: Vec<String>,
}

/// One chunk to index.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its position in the document, from 0.
    pub ordinal: u32,
    /// Its page, for paged formats.
    pub page: Option<u32>,
    /// The headings it sits under, joined with ` › `.
    pub section: Option<String>,
    /// Its text.
    pub text: String,
    /// Its embedding.
    pub vector: Vec<f32>,
}

/// What a search is limited to; every part that is set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// One document.
    pub document: Option<Uuid>,
    /// Documents with this tag.
    pub tag: Option<String>,
    /// Documents of this media type.
    pub media_type: Option<String>,
}

/// A chunk a search found.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Its document.
    pub document: Uuid,
    /// The document's name.
    pub name: String,
    /// The document's title.
    pub title: Option<String>,
    /// The document's media type.
    pub media_type: String,
    /// Its position in the document.
    pub ordinal: u32,
    /// Its page.
    pub page: Option<u32>,
    /// Its section's headings.
    pub section: Option<String>,
    /// Its text.
    pub text: String,
    /// How well it matched: cosine similarity for vectors, the negated BM25 rank for
    /// keywords; higher is better, comparable only within one search.
    pub score: f64,
}

/// How a vector search runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Exact up to the configured size, approximate beyond it.
    Auto,
    /// Every chunk compared.
    Exact,
    /// The DiskANN index (built first if missing).
    Approximate,
}

/// What a user's index holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Chunks indexed.
    pub chunks: u64,
    /// The embedding model the vectors come from, once any were added.
    pub model: Option<String>,
    /// Whether the approximate index exists.
    pub approximate: bool,
    /// The index file's size in bytes (its write-ahead log included).
    pub bytes: u64,
}

/// Why an index operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The index was built from another embedding model's vectors.
    #[error("the index holds vectors of {built}, not {asked}; it must be rebuilt")]
    ModelChanged {
        /// The model the index holds.
        built: String,
        /// The model asked for.
        asked: String,
    },
    /// A vector of the wrong length or with a non-finite number.
    #[error("{0}")]
    Invalid(String),
    /// This index does not do that (S3 Vectors has no keyword search).
    #[error("{0} is not available on this deployment")]
    Unsupported(&'static str),
    /// The index could not be read or written.
    #[error("the knowledge index is unavailable: {0}")]
    Unavailable(String),
}

fn unavailable(err: impl std::fmt::Display) -> IndexError {
    IndexError::Unavailable(err.to_string())
}

/// A user's chunks, searchable by vector and by keyword.
#[async_trait]
pub trait VectorIndex: Send + Sync {
    /// Records `source` and drops whatever chunks its document had: what ingestion does
    /// before it adds the chunks of a (re)read document.
    async fn begin(&self, user: &str, source: &Source) -> Result<(), IndexError>;

    /// Adds `entries` of `document` (a later entry of the same ordinal replaces the earlier),
    /// their vectors from `model`.
    async fn add(
        &self,
        user: &str,
        model: &str,
        document: Uuid,
        entries: &[Entry],
    ) -> Result<(), IndexError>;

    /// Removes a document and every chunk of it.
    async fn remove(&self, user: &str, document: Uuid) -> Result<(), IndexError>;

    /// The `k` chunks nearest `vector` (from `model`), best first.
    async fn nearest(
        &self,
        user: &str,
        model: &str,
        vector: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Found>, IndexError>;

    /// The `k` chunks that best match the words of `query` (BM25), best first; none when
    /// the query has no words.
    async fn matching(
        &self,
        user: &str,
        query: &str,
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Found>, IndexError>;
}

/// English words too common to say what a query is about: a question's "what is the" would
/// otherwise match nearly every chunk.
const STOP_WORDS: &[&str] = &[
    "a", "about", "an", "and", "are", "as", "at", "be", "by", "can", "could", "did", "do", "does",
    "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me",
    "my", "of", "on", "or", "should", "so", "than", "that", "the", "their", "them", "then",
    "there", "these", "they", "this", "those", "to", "was", "we", "were", "what", "when", "where",
    "which", "who", "whom", "why", "will", "with", "would", "you", "your",
];

/// The words of `query` a keyword search looks for, lowercased: common English words left
/// out unless there is nothing else, at most [`MAX_QUERY_WORDS`] of them.
pub fn query_words(query: &str) -> Vec<String> {
    let words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let telling: Vec<String> = words
        .iter()
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .cloned()
        .collect();
    let mut chosen = if telling.is_empty() { words } else { telling };
    chosen.truncate(MAX_QUERY_WORDS);
    chosen
}

/// The words of `query` as an FTS5 expression: each quoted (so no word is an operator),
/// any of them matching ([`query_words`] chooses them).
pub fn keyword_query(query: &str) -> Option<String> {
    let quoted: Vec<String> = query_words(query)
        .into_iter()
        .map(|w| format!("\"{w}\""))
        .collect();
    (!quoted.is_empty()).then(|| quoted.join(" OR "))
}

/// A vector as libSQL stores an `F32_BLOB`: little-endian 32-bit floats.
fn vector_blob(vector: &[f32]) -> Result<Vec<u8>, IndexError> {
    if vector.is_empty() || vector.iter().any(|x| !x.is_finite()) {
        return Err(IndexError::Invalid(
            "a vector must be non-empty and finite".into(),
        ));
    }
    Ok(vector.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// Tables every user file starts with; chunks come with the first vectors, whose length
/// fixes the column's.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS meta (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS documents (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        title      TEXT,
        media_type TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS document_tags (
        tag      TEXT NOT NULL,
        document TEXT NOT NULL,
        PRIMARY KEY (tag, document)
    ) WITHOUT ROWID;";

fn chunk_schema(dimensions: usize) -> String {
    format!(
        "CREATE TABLE chunks (
             id        INTEGER PRIMARY KEY,
             document  TEXT    NOT NULL,
             ordinal   INTEGER NOT NULL,
             page      INTEGER,
             section   TEXT,
             text      TEXT    NOT NULL,
             embedding F32_BLOB({dimensions}) NOT NULL,
             UNIQUE (document, ordinal)
         );
         CREATE VIRTUAL TABLE chunks_fts USING fts5(
             text, section, content = 'chunks', content_rowid = 'id',
             tokenize = 'porter unicode61'
         );
         CREATE TRIGGER chunks_keywords_on_insert AFTER INSERT ON chunks BEGIN
             INSERT INTO chunks_fts (rowid, text, section) VALUES (NEW.id, NEW.text, NEW.section);
         END;
         CREATE TRIGGER chunks_keywords_on_delete AFTER DELETE ON chunks BEGIN
             INSERT INTO chunks_fts (chunks_fts, rowid, text, section)
             VALUES ('delete', OLD.id, OLD.text, OLD.section);
         END;"
    )
}

/// The DiskANN index: cosine distance, neighbours compressed to 8 bits and at most
/// [`MAX_NEIGHBORS`] of them.
fn approximate_schema() -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS chunks_ann ON chunks (
             libsql_vector_idx(embedding, 'metric=cosine', 'compress_neighbors=float8',
                               'max_neighbors={MAX_NEIGHBORS}')
         )"
    )
}

/// The columns of a [`Found`], then its distance or rank.
const FOUND_COLUMNS: &str =
    "c.document, d.name, d.title, d.media_type, c.ordinal, c.page, c.section, c.text";

/// The filter over `c` (chunks) and `d` (documents), its parameters numbered from `first`.
fn filter_sql(first: usize) -> String {
    let (doc, media, tag) = (first, first + 1, first + 2);
    format!(
        "(?{doc} IS NULL OR c.document = ?{doc})
         AND (?{media} IS NULL OR d.media_type = ?{media})
         AND (?{tag} IS NULL OR EXISTS (
             SELECT 1 FROM document_tags g WHERE g.tag = ?{tag} AND g.document = c.document))"
    )
}

fn filter_values(filter: &Filter) -> [Value; 3] {
    let text = |v: Option<String>| v.map_or(Value::Null, Value::Text);
    [
        text(filter.document.map(|d| d.hyphenated().to_string())),
        text(filter.media_type.clone()),
        text(filter.tag.clone()),
    ]
}

fn is_filtered(filter: &Filter) -> bool {
    filter.document.is_some() || filter.tag.is_some() || filter.media_type.is_some()
}

/// One user's open index file.
struct UserFile {
    // Kept open for as long as the connection is used.
    _db: Database,
    conn: tokio::sync::Mutex<Connection>,
    path: PathBuf,
}

/// Chunks in one libSQL file per user.
pub struct LibsqlIndex {
    dir: PathBuf,
    approximate_above: u64,
    open: Mutex<HashMap<String, Arc<UserFile>>>,
}

impl std::fmt::Debug for LibsqlIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibsqlIndex")
            .field("dir", &self.dir)
            .field("approximate_above", &self.approximate_above)
            .finish_non_exhaustive()
    }
}

/// A user id as a file name: letters, digits, `-` and `_` only.
fn file_name(user: &str) -> Result<String, IndexError> {
    let safe = (1..=128).contains(&user.len())
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if safe {
        Ok(format!("{user}.db"))
    } else {
        Err(IndexError::Invalid(
            "a user id must be 1 to 128 letters, digits, '-' or '_'".into(),
        ))
    }
}

/// The rows `sql` answers, each as its column values (read while the statement steps:
/// a row does not outlive the step that produced it).
async fn rows_of(
    conn: &Connection,
    sql: &str,
    params: Vec<Value>,
) -> Result<Vec<Vec<Value>>, IndexError> {
    let mut rows = conn.query(sql, params).await.map_err(unavailable)?;
    let columns = rows.column_count();
    let mut out = Vec::new();
    while let Some(row) = rows.next().await.map_err(unavailable)? {
        let values = (0..columns)
            .map(|i| row.get_value(i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        out.push(values);
    }
    Ok(out)
}

fn text_of(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::Text(text)) => Some(text.clone()),
        _ => None,
    }
}

fn integer_of(value: Option<&Value>) -> Option<i64> {
    match value {
        Some(Value::Integer(n)) => Some(*n),
        _ => None,
    }
}

fn real_of(value: Option<&Value>) -> Option<f64> {
    match value {
        Some(Value::Real(x)) => Some(*x),
        Some(Value::Integer(n)) => Some(*n as f64),
        _ => None,
    }
}

fn corrupt(what: &str) -> IndexError {
    IndexError::Unavailable(format!("the index holds a malformed {what}"))
}

/// A row of [`FOUND_COLUMNS`] with `score`.
fn found(row: &[Value], score: f64) -> Result<Found, IndexError> {
    let document = text_of(row.first()).ok_or_else(|| corrupt("document id"))?;
    let small = |v: Option<&Value>| integer_of(v).and_then(|n| u32::try_from(n).ok());
    Ok(Found {
        document: Uuid::parse_str(&document).map_err(|_| corrupt("document id"))?,
        name: text_of(row.get(1)).unwrap_or_default(),
        title: text_of(row.get(2)),
        media_type: text_of(row.get(3)).unwrap_or_default(),
        ordinal: small(row.get(4)).ok_or_else(|| corrupt("chunk position"))?,
        page: small(row.get(5)),
        section: text_of(row.get(6)),
        text: text_of(row.get(7)).unwrap_or_default(),
        score,
    })
}

async fn meta(conn: &Connection, name: &str) -> Result<Option<String>, IndexError> {
    let rows = rows_of(
        conn,
        "SELECT value FROM meta WHERE name = ?1",
        vec![Value::Text(name.to_owned())],
    )
    .await?;
    Ok(rows.first().and_then(|row| text_of(row.first())))
}

async fn has_table(conn: &Connection, name: &str) -> Result<bool, IndexError> {
    let rows = rows_of(
        conn,
        "SELECT 1 FROM sqlite_master WHERE name = ?1",
        vec![Value::Text(name.to_owned())],
    )
    .await?;
    Ok(!rows.is_empty())
}

async fn count_chunks(conn: &Connection) -> Result<u64, IndexError> {
    if !has_table(conn, "chunks").await? {
        return Ok(0);
    }
    let rows = rows_of(conn, "SELECT COUNT(*) FROM chunks", Vec::new()).await?;
    Ok(rows
        .first()
        .and_then(|row| integer_of(row.first()))
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0))
}

impl LibsqlIndex {
    /// An index keeping each user's file in `dir`; searches are exact up to
    /// `approximate_above` chunks per user and use the DiskANN index beyond.
    pub fn new(dir: impl Into<PathBuf>, approximate_above: u64) -> Self {
        Self {
            dir: dir.into(),
            approximate_above,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The directory of the users' files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn file(&self, user: &str) -> Result<Arc<UserFile>, IndexError> {
        let name = file_name(user)?;
        if let Some(file) = self.open.lock().map_err(unavailable)?.get(user) {
            return Ok(Arc::clone(file));
        }
        // Another index over the same directory (the chat and knowledge services each keep
        // one) may be opening this file too, and SQLite answers "database is locked" at once,
        // without its busy handler, to a connection switching a new file to WAL while another
        // does: files are opened one at a time in the process.
        let _opening = OPENING.lock().await;
        jarvis_config::datadir::create_private(&self.dir).map_err(unavailable)?;
        let path = self.dir.join(name);
        let db = Builder::new_local(&path)
            .build()
            .await
            .map_err(unavailable)?;
        let conn = db.connect().map_err(unavailable)?;
        // Wait for other connections' locks from the very first statement. The journal mode
        // answers with a row, so it is queried rather than executed.
        conn.execute_batch("PRAGMA busy_timeout=5000;")
            .await
            .map_err(unavailable)?;
        rows_of(&conn, "PRAGMA journal_mode=WAL", Vec::new()).await?;
        conn.execute_batch("PRAGMA synchronous=NORMAL;")
            .await
            .map_err(unavailable)?;
        conn.execute_batch(SCHEMA).await.map_err(unavailable)?;
        let file = Arc::new(UserFile {
            _db: db,
            conn: tokio::sync::Mutex::new(conn),
            path,
        });
        let mut open = self.open.lock().map_err(unavailable)?;
        if open.len() >= OPEN_FILES {
            // Close one nobody is using; a file in use stays open until its caller is done.
            let idle = open
                .iter()
                .find(|(_, f)| Arc::strong_count(f) == 1)
                .map(|(u, _)| u.clone());
            if let Some(idle) = idle {
                open.remove(&idle);
            }
        }
        Ok(Arc::clone(open.entry(user.to_owned()).or_insert(file)))
    }

    /// What `user`'s index holds.
    pub async fn stats(&self, user: &str) -> Result<Stats, IndexError> {
        let file = self.file(user).await?;
        let conn = file.conn.lock().await;
        let chunks = count_chunks(&conn).await?;
        let model = meta(&conn, "model").await?;
        let approximate = has_table(&conn, "chunks_ann").await?;
        // Settle the log into the file so the size is the index's own.
        rows_of(&conn, "PRAGMA wal_checkpoint(TRUNCATE)", Vec::new()).await?;
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let mut wal = file.path.clone().into_os_string();
        wal.push("-wal");
        let bytes = size(&file.path) + size(Path::new(&wal));
        Ok(Stats {
            chunks,
            model,
            approximate,
            bytes,
        })
    }

    /// Builds `user`'s approximate (DiskANN) index now, if it is not there yet.
    pub async fn build_approximate(&self, user: &str) -> Result<(), IndexError> {
        let file = self.file(user).await?;
        let conn = file.conn.lock().await;
        if has_table(&conn, "chunks").await? && !has_table(&conn, "chunks_ann").await? {
            conn.execute_batch(&approximate_schema())
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// The `k` chunks nearest `vector`, searched as `mode` says.
    pub async fn nearest_with(
        &self,
        user: &str,
        model: &str,
        vector: &[f32],
        k: usize,
        filter: &Filter,
        mode: Mode,
    ) -> Result<Vec<Found>, IndexError> {
        let blob = vector_blob(vector)?;
        let file = self.file(user).await?;
        let conn = file.conn.lock().await;
        let count = count_chunks(&conn).await?;
        if count == 0 || k == 0 {
            return Ok(Vec::new());
        }
        let built = meta(&conn, "model").await?.unwrap_or_default();
        if built != model {
            return Err(IndexError::ModelChanged {
                built,
                asked: model.to_owned(),
            });
        }
        let dimensions: usize = meta(&conn, "dimensions")
            .await?
            .and_then(|d| d.parse().ok())
            .unwrap_or_default();
        if dimensions != vector.len() {
            return Err(IndexError::Invalid(format!(
                "the query vector has {} dimensions, the index {dimensions}",
                vector.len()
            )));
        }
        let approximate = match mode {
            Mode::Exact => false,
            Mode::Approximate => true,
            Mode::Auto => count > self.approximate_above,
        };
        if approximate {
            if !has_table(&conn, "chunks_ann").await? {
                conn.execute_batch(&approximate_schema())
                    .await
                    .map_err(unavailable)?;
            }
            let fanout = if is_filtered(filter) {
                k.saturating_mul(FILTERED_FANOUT)
            } else {
                k
            };
            let sql = format!(
                "SELECT {FOUND_COLUMNS}, vector_distance_cos(c.embedding, ?1) AS distance
                 FROM vector_top_k('chunks_ann', ?1, ?2) AS t
                 JOIN chunks c ON c.id = t.id
                 JOIN documents d ON d.id = c.document
                 WHERE {}
                 ORDER BY distance LIMIT ?3",
                filter_sql(4)
            );
            let mut params = vec![
                Value::Blob(blob.clone()),
                Value::Integer(fanout as i64),
                Value::Integer(k as i64),
            ];
            params.extend(filter_values(filter));
            let rows = rows_of(&conn, &sql, params).await?;
            // A filter that leaves too few of the candidates falls back to an exact search
            // of what it allows.
            if rows.len() >= k || !is_filtered(filter) || mode == Mode::Approximate {
                return rows.iter().map(|row| distance_found(row)).collect();
            }
        }
        let sql = format!(
            "SELECT {FOUND_COLUMNS}, vector_distance_cos(c.embedding, ?1) AS distance
             FROM chunks c JOIN documents d ON d.id = c.document
             WHERE {}
             ORDER BY distance LIMIT ?2",
            filter_sql(3)
        );
        let mut params = vec![Value::Blob(blob), Value::Integer(k as i64)];
        params.extend(filter_values(filter));
        let rows = rows_of(&conn, &sql, params).await?;
        rows.iter().map(|row| distance_found(row)).collect()
    }
}

fn distance_found(row: &[Value]) -> Result<Found, IndexError> {
    let distance = real_of(row.get(8)).ok_or_else(|| corrupt("distance"))?;
    found(row, 1.0 - distance)
}

#[async_trait]
impl VectorIndex for LibsqlIndex {
    async fn begin(&self, user: &str, source: &Source) -> Result<(), IndexError> {
        let file = self.file(user).await?;
        let conn = file.conn.lock().await;
        let id = source.document.hyphenated().to_string();
        // A write takes the lock as it begins, so one that meets another index's write
        // waits for it (the busy timeout) instead of failing when its read would upgrade.
        let tx = conn
            .transaction_with_behavior(libsql::TransactionBehavior::Immediate)
            .await
            .map_err(unavailable)?;
        if has_table(&tx, "chunks").await? {
            tx.execute(
                "DELETE FROM chunks WHERE document = ?1",
                vec![Value::Text(id.clone())],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.execute(
            "DELETE FROM document_tags WHERE document = ?1",
            vec![Value::Text(id.clone())],
        )
        .await
        .map_err(unavailable)?;
        tx.execute(
            "INSERT INTO documents (id, name, title, media_type) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET name = ?2, title = ?3, media_type = ?4",
            vec![
                Value::Text(id.clone()),
                Value::Text(source.name.clone()),
                source.title.clone().map_or(Value::Null, Value::Text),
                Value::Text(source.media_type.clone()),
            ],
        )
        .await
        .map_err(unavailable)?;
        for tag in &source.tags {
            tx.execute(
                "INSERT OR IGNORE INTO document_tags (tag, document) VALUES (?1, ?2)",
                vec![Value::Text(tag.clone()), Value::Text(id.clone())],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn add(
        &self,
        user: &str,
        model: &str,
        document: Uuid,
        entries: &[Entry],
    ) -> Result<(), IndexError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let dimensions = first.vector.len();
        let blobs = entries
            .iter()
            .map(|e| {
                if e.vector.len() == dimensions {
                    vector_blob(&e.vector)
                } else {
                    Err(IndexError::Invalid(
                        "vectors of one batch differ in length".into(),
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let file = self.file(user).await?;
        let conn = file.conn.lock().await;
        let tx = conn
            .transaction_with_behavior(libsql::TransactionBehavior::Immediate)
            .await
            .map_err(unavailable)?;
        match meta(&tx, "model").await? {
            Some(built) if built != model => {
                return Err(IndexError::ModelChanged {
                    built,
                    asked: model.to_owned(),
                });
            }
            Some(_) => {
                let built: usize = meta(&tx, "dimensions")
                    .await?
                    .and_then(|d| d.parse().ok())
                    .unwrap_or_default();
                if built != dimensions {
                    return Err(IndexError::Invalid(format!(
                        "{model} gave {dimensions} dimensions, the index holds {built}"
                    )));
                }
            }
            None => {
                tx.execute_batch(&chunk_schema(dimensions))
                    .await
                    .map_err(unavailable)?;
                for (name, value) in [
                    ("model", model.to_owned()),
                    ("dimensions", dimensions.to_string()),
                ] {
                    tx.execute(
                        "INSERT INTO meta (name, value) VALUES (?1, ?2)",
                        vec![Value::Text(name.to_owned()), Value::Text(value)],
                    )
                    .await
                    .map_err(unavailable)?;
                }
            }
        }
        let id = document.hyphenated().to_string();
        for (entry, blob) in entries.iter().zip(blobs) {
            tx.execute(
                "DELETE FROM chunks WHERE document = ?1 AND ordinal = ?2",
                vec![
                    Value::Text(id.clone()),
                    Value::Integer(i64::from(entry.ordinal)),
                ],
            )
            .await
            .map_err(unavailable)?;
            tx.execute(
                "INSERT INTO chunks (document, ordinal, page, section, text, embedding)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                vec![
                    Value::Text(id.clone()),
                    Value::Integer(i64::from(entry.ordinal)),
                    entry
                        .page
                        .map_or(Value::Null, |p| Value::Integer(i64::from(p))),
                    entry.section.clone().map_or(Value::Null, Value::Text),
                    Value::Text(entry.text.clone()),
                    Value::Blob(blob),
                ],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        // Past the size exact search is meant for, the approximate index is built once and
        // kept up to date by every later insert and delete.
        if count_chunks(&conn).await? > self.approximate_above
            && !has_table(&conn, "chunks_ann").await?
        {
            conn.execute_batch(&approximate_schema())
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn remove(&self, user: &str, document: Uuid) -> Result<(), IndexError> {
        let file = self.file(user).await?;
        let conn = file.conn.lock().await;
        let id = Value::Text(document.hyphenated().to_string());
        let tx = conn
            .transaction_with_behavior(libsql::TransactionBehavior::Immediate)
            .await
            .map_err(unavailable)?;
        if has_table(&tx, "chunks").await? {
            tx.execute("DELETE FROM chunks WHERE document = ?1", vec![id.clone()])
                .await
                .map_err(unavailable)?;
        }
        tx.execute(
            "DELETE FROM document_tags WHERE document = ?1",
            vec![id.clone()],
        )
        .await
        .map_err(unavailable)?;
        tx.execute("DELETE FROM documents WHERE id = ?1", vec![id])
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn nearest(
        &self,
        user: &str,
        model: &str,
        vector: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Found>, IndexError> {
        self.nearest_with(user, model, vector, k, filter, Mode::Auto)
            .await
    }

    async fn matching(
        &self,
        user: &str,
        query: &str,
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Found>, IndexError> {
        let Some(expression) = keyword_query(query) else {
            return Ok(Vec::new());
        };
        let file = self.file(user).await?;
        let conn = file.conn.lock().await;
        if k == 0 || !has_table(&conn, "chunks").await? {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {FOUND_COLUMNS}, bm25(chunks_fts) AS rank
             FROM chunks_fts
             JOIN chunks c ON c.id = chunks_fts.rowid
             JOIN documents d ON d.id = c.document
             WHERE chunks_fts MATCH ?1 AND {}
             ORDER BY rank LIMIT ?2",
            filter_sql(3)
        );
        let mut params = vec![Value::Text(expression), Value::Integer(k as i64)];
        params.extend(filter_values(filter));
        let rows = rows_of(&conn, &sql, params).await?;
        rows.iter()
            .map(|row| {
                let rank = real_of(row.get(8)).ok_or_else(|| corrupt("rank"))?;
                found(row, -rank)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
