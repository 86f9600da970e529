//! Blobs: bytes with a media type, kept by key outside the documents (conversation
//! attachments), so no CRDT document carries them and none grows by them.
//!
//! [`Blobs`] is the narrow trait; [`Directory`] keeps files under the data directory
//! (`jarvis-local`), [`s3::S3`] an S3 bucket (feature `s3`, the Lambda build). Both are
//! exercised by the same tests.
//!
//! Owns where blobs live; changes when a blob backend does. Imports only the configuration.
#![deny(missing_docs)]

#[cfg(feature = "s3")]
pub mod s3;

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use jarvis_config::BlobConfig;

/// Any error, as a cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Bytes and what they are.
#[derive(Clone, PartialEq, Eq)]
pub struct Blob {
    /// The media type, e.g. `image/png`.
    pub media_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("media_type", &self.media_type)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// A blob's key: 1 to 512 characters of `A-Z a-z 0-9 _ - . /`, segments between slashes
/// non-empty and not `.` or `..`, so a key is a path inside the store and nowhere else.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlobKey(String);

impl BlobKey {
    /// The key, when it is a valid one.
    pub fn parse(key: &str) -> Result<Self, BlobError> {
        let chars_ok = key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
        let segments_ok = key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
        if (1..=512).contains(&key.len()) && chars_ok && segments_ok {
            Ok(Self(key.to_owned()))
        } else {
            Err(BlobError::InvalidKey)
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What can go wrong with blobs.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The key is not a valid one.
    #[error("invalid blob key")]
    InvalidKey,
    /// The backend cannot be reached or refused; retrying later may work.
    #[error("blob store unavailable")]
    Unavailable(#[source] BoxError),
}

/// A blob store.
#[async_trait]
pub trait Blobs: Send + Sync + Debug {
    /// The backend's name, e.g. `directory`.
    fn backend(&self) -> &'static str;

    /// Keeps `blob` under `key`, replacing what was there.
    async fn put(&self, key: &BlobKey, blob: &Blob) -> Result<(), BlobError>;

    /// The blob under `key`, if any.
    async fn get(&self, key: &BlobKey) -> Result<Option<Blob>, BlobError>;

    /// Removes the blob under `key`; removing none is not an error.
    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError>;
}

/// The blob store the configuration names. A bucket in a build without the `s3` feature
/// is refused when first used, with an error naming the feature.
pub fn open(config: &BlobConfig) -> Arc<dyn Blobs> {
    match config {
        BlobConfig::Directory(dir) => Arc::new(Directory::new(dir.clone())),
        #[cfg(feature = "s3")]
        BlobConfig::S3 { bucket, aws } => Arc::new(s3::S3::new(bucket.clone(), aws.clone())),
        #[cfg(not(feature = "s3"))]
        BlobConfig::S3 { .. } => Arc::new(Missing),
    }
}

/// The stand-in for a backend this build lacks.
#[cfg(not(feature = "s3"))]
#[derive(Debug)]
struct Missing;

#[cfg(not(feature = "s3"))]
#[async_trait]
impl Blobs for Missing {
    fn backend(&self) -> &'static str {
        "missing"
    }
    async fn put(&self, _: &BlobKey, _: &Blob) -> Result<(), BlobError> {
        Err(missing())
    }
    async fn get(&self, _: &BlobKey) -> Result<Option<Blob>, BlobError> {
        Err(missing())
    }
    async fn delete(&self, _: &BlobKey) -> Result<(), BlobError> {
        Err(missing())
    }
}

#[cfg(not(feature = "s3"))]
fn missing() -> BlobError {
    BlobError::Unavailable("this build has no S3 blob store (cargo feature `s3`)".into())
}

/// Files under a directory: the blob at `<dir>/<key>`, its media type beside it in
/// `<key>.type`. Writes go to a temporary file renamed into place, so a reader never sees
/// half a blob.
#[derive(Debug, Clone)]
pub struct Directory {
    dir: PathBuf,
}

impl Directory {
    /// Blobs under `dir` (created on the first write).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn paths(&self, key: &BlobKey) -> (PathBuf, PathBuf) {
        let path = self.dir.join(key.as_str());
        let mut kind = path.clone().into_os_string();
        kind.push(".type");
        (path, PathBuf::from(kind))
    }
}

fn io(err: std::io::Error) -> BlobError {
    BlobError::Unavailable(Box::new(err))
}

async fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), BlobError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.part", uuid::Uuid::new_v4().simple()));
    let temporary = PathBuf::from(temporary);
    tokio::fs::write(&temporary, bytes).await.map_err(io)?;
    tokio::fs::rename(&temporary, path).await.map_err(io)
}

#[async_trait]
impl Blobs for Directory {
    fn backend(&self) -> &'static str {
        "directory"
    }

    async fn put(&self, key: &BlobKey, blob: &Blob) -> Result<(), BlobError> {
        let (path, kind) = self.paths(key);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        write_atomically(&kind, blob.media_type.as_bytes()).await?;
        write_atomically(&path, &blob.bytes).await
    }

    async fn get(&self, key: &BlobKey) -> Result<Option<Blob>, BlobError> {
        let (path, kind) = self.paths(key);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io(err)),
        };
        let media_type = tokio::fs::read_to_string(&kind)
            .await
            .unwrap_or_else(|_| "application/octet-stream".to_owned());
        Ok(Some(Blob { media_type, bytes }))
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        let (path, kind) = self.paths(key);
        for file in [path, kind] {
            match tokio::fs::remove_file(&file).await {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(io(err)),
            }
        }
        Ok(())
    }
}

/// The behaviour every backend must have; the S3 backend runs it against a local
/// stand-in in the workspace tests.
pub async fn conformance(blobs: &dyn Blobs) {
    let key = BlobKey::parse(&format!("conformance/{}/a.png", uuid::Uuid::new_v4()))
        .unwrap_or_else(|e| panic!("key: {e}"));
    let blob = Blob {
        media_type: "image/png".into(),
        bytes: vec![0x89, b'P', b'N', b'G', 0, 1, 2, 255],
    };
    let absent = blobs.get(&key).await.unwrap_or_else(|e| panic!("get: {e}"));
    assert_eq!(absent, None, "nothing before a put");
    blobs
        .put(&key, &blob)
        .await
        .unwrap_or_else(|e| panic!("put: {e}"));
    let read = blobs.get(&key).await.unwrap_or_else(|e| panic!("get: {e}"));
    assert_eq!(read.as_ref(), Some(&blob), "what was put");
    blobs
        .delete(&key)
        .await
        .unwrap_or_else(|e| panic!("delete: {e}"));
    let gone = blobs.get(&key).await.unwrap_or_else(|e| panic!("get: {e}"));
    assert_eq!(gone, None, "deleted");
    blobs
        .delete(&key)
        .await
        .unwrap_or_else(|e| panic!("deleting again: {e}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_directory_keeps_puts_reads_and_deletes_blobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        conformance(&Directory::new(dir.path().join("blobs"))).await;
    }

    #[test]
    fn keys_cannot_leave_the_store() {
        for bad in [
            "",
            "../etc/passwd",
            "a/../b",
            "/abs",
            "a//b",
            "a b",
            "a\\b",
            "./a",
        ] {
            assert!(BlobKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(BlobKey::parse("attachments/u/c/0193.png").is_ok());
    }
}
