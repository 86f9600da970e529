//! The knowledge base's test corpus: the Python 3.11 documentation as Debian's
//! `python3.11-doc` package ships it (HTML, PSF license; `infra/fetch-corpus.sh` fetches it
//! into `.tools/corpus`), read, chunked and embedded as ingestion does, and indexed in a
//! per-user libSQL file.

use std::path::{Path, PathBuf};

use jarvis_knowledge::index::{Entry, LibsqlIndex, Source, VectorIndex};
use jarvis_knowledge::service::{count_tokens, embedding_text};
use jarvis_knowledge::{ChunkRules, Processed, Registry, chunk};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::workspace_root;

/// The user every corpus index belongs to.
pub const USER: &str = "corpus";
/// The embedding model the corpus is embedded with, as the provider layer names it.
pub const MODEL: &str = "local:all-minilm-l6-v2";

/// The documentation's HTML root, or `None` when it is missing: a test then says so and
/// passes, unless `JARVIS_TEST_CORPUS=required` (set by `infra/test.sh`) where it fails.
pub fn html_root() -> Option<PathBuf> {
    let dir = std::env::var_os("JARVIS_CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools/corpus"))
        .join("python3.11-doc/html");
    if dir.join("library/functions.html").is_file() {
        return Some(dir);
    }
    assert_ne!(
        std::env::var("JARVIS_TEST_CORPUS").as_deref(),
        Ok("required"),
        "the corpus is required and missing from {}",
        dir.display()
    );
    eprintln!(
        "the corpus is missing from {}: run ./infra/fetch-corpus.sh",
        dir.display()
    );
    None
}

/// Every page of the documentation, by path under `root`, sorted; the generated indexes
/// (general index, module index, search) left out.
pub fn pages(root: &Path) -> Vec<String> {
    let mut pages = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() && !name.starts_with('_') {
                stack.push(path);
            } else if name.ends_with(".html")
                && !["genindex", "py-modindex", "search"]
                    .iter()
                    .any(|skip| name.starts_with(skip))
                && let Ok(relative) = path.strip_prefix(root)
            {
                pages.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    pages.sort();
    pages
}

/// One chunk of the corpus.
#[derive(Debug, Clone)]
pub struct Piece {
    /// The page it is on, under the HTML root.
    pub page: String,
    /// The page's document id.
    pub document: Uuid,
    /// Its position in the page.
    pub ordinal: u32,
    /// The headings it sits under.
    pub section: Option<String>,
    /// Its text.
    pub text: String,
    /// What is embedded for it: the page title and headings, then the text.
    pub embedded: String,
}

/// The document id of a page.
pub fn document_of(page: &str) -> Uuid {
    let digest = Sha256::digest(page.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::new_v8(bytes)
}

/// The chunks of `pages` as ingestion cuts them (the HTML processor, the default rules);
/// with `limit`, pages are taken in order until that many chunks are reached.
pub fn pieces(root: &Path, pages: &[String], limit: Option<usize>) -> Vec<Piece> {
    let registry = Registry::builtin().expect("the processors validate");
    let mut out = Vec::new();
    for page in pages {
        if limit.is_some_and(|limit| out.len() >= limit) {
            break;
        }
        let Ok(bytes) = std::fs::read(root.join(page)) else {
            continue;
        };
        let Processed::Ready { extracted, .. } = registry.process(&bytes) else {
            continue;
        };
        let document = document_of(page);
        for c in chunk(&extracted, ChunkRules::default(), &count_tokens) {
            out.push(Piece {
                page: page.clone(),
                document,
                ordinal: u32::try_from(c.index).unwrap_or(u32::MAX),
                section: (!c.headings.is_empty()).then(|| c.headings.join(" › ")),
                embedded: embedding_text(&extracted, &c),
                text: c.text,
            });
        }
    }
    out
}

/// The local embedder, when the local models are installed.
pub fn embedder() -> Option<jarvis_ai::local::Local> {
    let dir = crate::local_models_dir()?;
    let local = jarvis_ai::local::Local::discover(&dir)
        .expect("the local models load")
        .expect("the local models are there");
    assert!(local.has_embedder(), "the embedder is installed");
    Some(local)
}

/// The length of the embedder's vectors.
const DIMENSIONS: usize = 384;

/// The vectors of `texts`, embedded by `local`, a batch at a time. Vectors already embedded
/// on this machine are read from the corpus directory's `vectors.f32` (each record the
/// SHA-256 of the model and text, then the vector), and new ones are appended to it, so
/// only the first run over a text pays for its embedding.
pub async fn embed(local: &jarvis_ai::local::Local, texts: &[String]) -> Vec<Vec<f32>> {
    use jarvis_ai::Provider as _;
    use std::io::Write as _;
    let path = cache_path();
    let mut cached = read_cache(&path);
    let key = |text: &str| -> [u8; 32] {
        let mut digest = Sha256::new();
        digest.update(MODEL.as_bytes());
        digest.update([0]);
        digest.update(text.as_bytes());
        digest.finalize().into()
    };
    let missing: Vec<&String> = {
        let mut seen = std::collections::HashSet::new();
        texts
            .iter()
            .filter(|t| !cached.contains_key(&key(t)) && seen.insert(key(t)))
            .collect()
    };
    let mut file = path.parent().and_then(|dir| {
        std::fs::create_dir_all(dir).ok()?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok()
    });
    // A torn last record is cut off before more are appended.
    if let Some(file) = file.as_ref()
        && let Ok(meta) = file.metadata()
    {
        let _ = file.set_len(meta.len() - meta.len() % (32 + DIMENSIONS as u64 * 4));
    }
    for batch in missing.chunks(64) {
        let owned: Vec<String> = batch.iter().map(|t| (*t).clone()).collect();
        let vectors = local.embed(&owned).await.expect("embedded");
        let mut record = Vec::with_capacity(batch.len() * (32 + DIMENSIONS * 4));
        for (text, vector) in batch.iter().zip(vectors) {
            assert_eq!(vector.len(), DIMENSIONS, "the embedder's dimensions");
            record.extend_from_slice(&key(text));
            record.extend(vector.iter().flat_map(|x| x.to_le_bytes()));
            cached.insert(key(text), vector);
        }
        if let Some(file) = file.as_mut() {
            // A cache that cannot be written only costs the next run time.
            let _ = file.write_all(&record);
        }
    }
    texts
        .iter()
        .map(|t| cached.get(&key(t)).cloned().expect("embedded"))
        .collect()
}

fn cache_path() -> PathBuf {
    std::env::var_os("JARVIS_CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools/corpus"))
        .join("vectors.f32")
}

/// The cached vectors; a torn last record (a run stopped mid-write) is ignored.
fn read_cache(path: &Path) -> std::collections::HashMap<[u8; 32], Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes
        .chunks_exact(32 + DIMENSIONS * 4)
        .map(|record| {
            let (key, vector) = record.split_at(32);
            let mut digest = [0u8; 32];
            digest.copy_from_slice(key);
            let vector = vector
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (digest, vector)
        })
        .collect()
}

/// What is embedded for each of `pieces`.
pub fn embedded_texts(pieces: &[Piece]) -> Vec<String> {
    pieces.iter().map(|p| p.embedded.clone()).collect()
}

/// An index in `dir` of `pieces` with their `vectors`, exact up to `exact_up_to` chunks.
pub async fn index(
    dir: &Path,
    pieces: &[Piece],
    vectors: &[Vec<f32>],
    exact_up_to: u64,
) -> LibsqlIndex {
    let index = LibsqlIndex::new(dir, exact_up_to);
    let mut start = 0;
    while start < pieces.len() {
        let page = &pieces[start].page;
        let end = pieces[start..]
            .iter()
            .position(|p| &p.page != page)
            .map_or(pieces.len(), |n| start + n);
        let source = Source {
            document: pieces[start].document,
            name: page.clone(),
            title: None,
            media_type: "text/html".into(),
            tags: Vec::new(),
        };
        index.begin(USER, &source).await.expect("begin");
        let entries: Vec<Entry> = pieces[start..end]
            .iter()
            .zip(&vectors[start..end])
            .map(|(p, v)| Entry {
                ordinal: p.ordinal,
                page: None,
                section: p.section.clone(),
                text: p.text.clone(),
                vector: v.clone(),
            })
            .collect();
        for batch in entries.chunks(256) {
            index
                .add(USER, MODEL, source.document, batch)
                .await
                .expect("add");
        }
        start = end;
    }
    index
}
