//! The libSQL backend: an embedded database file, tuned for many short writers (WAL journal,
//! busy timeout) so several processes can share one file.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use libsql::{Builder, Connection, Database};

use super::{Store, StoreError};

/// How long a writer waits for another process's lock before failing.
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// A store on an embedded libSQL database file.
pub struct LibsqlStore {
    path: PathBuf,
    // The database handle must outlive its connections.
    _db: Database,
    conn: Connection,
}

impl std::fmt::Debug for LibsqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibsqlStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn open_error(context: impl Into<String>, source: impl Into<super::BoxError>) -> StoreError {
    StoreError::Open {
        context: context.into(),
        source: source.into(),
    }
}

impl LibsqlStore {
    /// Opens (creating if needed) the database file at `path`, and its directory.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)
                .map_err(|e| open_error(format!("creating {}", dir.display()), e))?;
        }
        let db = Builder::new_local(path)
            .build()
            .await
            .map_err(|e| open_error(format!("opening {}", path.display()), e))?;
        let conn = db
            .connect()
            .map_err(|e| open_error("connecting to the database", e))?;
        // `journal_mode` answers with a row, so it is a query, not an execute.
        let mut rows = conn
            .query("PRAGMA journal_mode=WAL", ())
            .await
            .map_err(|e| open_error("enabling the WAL journal", e))?;
        while rows
            .next()
            .await
            .map_err(|e| open_error("enabling the WAL journal", e))?
            .is_some()
        {}
        conn.execute_batch(&format!(
            "PRAGMA busy_timeout={BUSY_TIMEOUT_MS}; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
        ))
        .await
        .map_err(|e| open_error("setting connection pragmas", e))?;
        Ok(Self {
            path: path.to_owned(),
            _db: db,
            conn,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `dir` (and parents) readable by the owner only: it will hold secrets.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[async_trait]
impl Store for LibsqlStore {
    fn backend(&self) -> &'static str {
        "libsql"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut rows = self
            .conn
            .query("SELECT 1", ())
            .await
            .map_err(|e| StoreError::Unavailable(e.into()))?;
        rows.next()
            .await
            .map_err(|e| StoreError::Unavailable(e.into()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opening_creates_the_data_dir_and_answers_a_ping() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/data/jarvis.db");
        let store = LibsqlStore::open(&path).await.expect("open");
        store.ping().await.expect("ping");
        assert!(path.exists());
    }

    #[tokio::test]
    async fn two_handles_can_share_one_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jarvis.db");
        let a = LibsqlStore::open(&path).await.expect("open a");
        let b = LibsqlStore::open(&path).await.expect("open b");
        a.ping().await.expect("ping a");
        b.ping().await.expect("ping b");
    }

    #[tokio::test]
    async fn a_path_that_cannot_be_created_is_an_open_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("write");
        let err = LibsqlStore::open(&file.join("jarvis.db"))
            .await
            .expect_err("a file is in the way");
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    }
}
