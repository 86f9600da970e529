//! The libSQL backend: documents in an embedded database file (WAL journal, busy timeout, so
//! several processes can share one file), with versioned migrations applied at startup.
//!
//! Tables: `documents` (partition, sort, state, version, expiry, delta of the last write) and
//! `changes` (the change feed: one row per merge, holding its delta). A write is a single
//! statement — insert the document if absent, or update it only if its version is the one
//! read — and a trigger appends the delta to the feed within it; if the document moved on,
//! nothing is written and the caller gets [`StoreError::Conflict`]. Hot statements are
//! prepared once per pooled connection.

use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use libsql::{Builder, Connection, Database, Statement, TransactionBehavior, params};

use secrecy::{ExposeSecret, SecretString};

use super::remote::RemoteConnector;
use super::{
    Change, Key, ListQuery, Payload, Store, StoreError, Stored, Write, prefix_upper_bound,
};

/// How long a writer waits for another connection's lock before failing.
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// Largest document this backend stores.
pub const MAX_DOCUMENT_BYTES: usize = crate::LARGEST_DOCUMENT_BYTES;

/// Connections kept open for reuse.
const POOL_SIZE: usize = 16;

/// Schema migrations, applied in order, each once, each in its own transaction.
///
/// A document row keeps the delta of its last write; triggers append it to `changes` inside
/// the same statement, so a conditional write and its feed entry are one atomic statement.
/// `changes.seq` is a plain rowid key (no AUTOINCREMENT, which costs a second table write
/// per insert): it only ever grows, since feed entries are never deleted from the top.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE documents (
             partition  TEXT    NOT NULL,
             sort       TEXT    NOT NULL,
             state      BLOB    NOT NULL,
             version    INTEGER NOT NULL,
             expires_at INTEGER,
             delta      BLOB    NOT NULL,
             PRIMARY KEY (partition, sort)
         ) WITHOUT ROWID;
         CREATE INDEX documents_by_expiry ON documents (expires_at) WHERE expires_at IS NOT NULL;
         CREATE TABLE changes (
             seq        INTEGER PRIMARY KEY,
             partition  TEXT    NOT NULL,
             sort       TEXT    NOT NULL,
             delta      BLOB    NOT NULL
         );
         CREATE TRIGGER documents_feed_on_insert AFTER INSERT ON documents BEGIN
             INSERT INTO changes (partition, sort, delta) VALUES (NEW.partition, NEW.sort, NEW.delta);
         END;
         CREATE TRIGGER documents_feed_on_update AFTER UPDATE OF version ON documents BEGIN
             INSERT INTO changes (partition, sort, delta) VALUES (NEW.partition, NEW.sort, NEW.delta);
         END;",
    ),
    (
        2,
        "CREATE TABLE sync_cursors (
             peer   TEXT PRIMARY KEY,
             cursor TEXT NOT NULL
         ) WITHOUT ROWID;",
    ),
    // Replica-local partitions (see `Key::is_replicated`) stay out of the feed.
    (
        3,
        "DROP TRIGGER documents_feed_on_insert;
         DROP TRIGGER documents_feed_on_update;
         CREATE TRIGGER documents_feed_on_insert AFTER INSERT ON documents
         WHEN substr(NEW.partition, 1, 1) <> '~' BEGIN
             INSERT INTO changes (partition, sort, delta) VALUES (NEW.partition, NEW.sort, NEW.delta);
         END;
         CREATE TRIGGER documents_feed_on_update AFTER UPDATE OF version ON documents
         WHEN substr(NEW.partition, 1, 1) <> '~' BEGIN
             INSERT INTO changes (partition, sort, delta) VALUES (NEW.partition, NEW.sort, NEW.delta);
         END;",
    ),
    // Feed entries carry when they were written (entries of earlier builds: NULL, the
    // oldest), so the feed can be pruned by age; `feed_meta.floor` is the highest position
    // pruned away.
    (
        4,
        "ALTER TABLE changes ADD COLUMN at INTEGER;
         CREATE TABLE feed_meta (
             name  TEXT    PRIMARY KEY,
             value INTEGER NOT NULL
         ) WITHOUT ROWID;
         DROP TRIGGER documents_feed_on_insert;
         DROP TRIGGER documents_feed_on_update;
         CREATE TRIGGER documents_feed_on_insert AFTER INSERT ON documents
         WHEN substr(NEW.partition, 1, 1) <> '~' BEGIN
             INSERT INTO changes (partition, sort, delta, at)
             VALUES (NEW.partition, NEW.sort, NEW.delta, CAST(strftime('%s', 'now') AS INTEGER));
         END;
         CREATE TRIGGER documents_feed_on_update AFTER UPDATE OF version ON documents
         WHEN substr(NEW.partition, 1, 1) <> '~' BEGIN
             INSERT INTO changes (partition, sort, delta, at)
             VALUES (NEW.partition, NEW.sort, NEW.delta, CAST(strftime('%s', 'now') AS INTEGER));
         END;",
    ),
];

/// Most feed entries one pruning statement deletes, so the write lock is never held long.
const PRUNE_BATCH: u64 = 10_000;
/// The feed's floor: the highest position pruned away (0 when none was).
const FEED_FLOOR: &str = "SELECT COALESCE(MAX(value), 0) FROM feed_meta WHERE name = 'floor'";
/// The feed's newest position (0 when empty).
const FEED_HEAD: &str = "SELECT COALESCE(MAX(seq), 0) FROM changes";

const GET: &str =
    "SELECT state, version, expires_at FROM documents WHERE partition = ?1 AND sort = ?2";
const INSERT: &str = "INSERT INTO documents (partition, sort, state, version, expires_at, delta)
     VALUES (?1, ?2, ?3, 1, ?4, ?5) ON CONFLICT DO NOTHING";
const UPDATE: &str =
    "UPDATE documents SET state = ?3, version = version + 1, expires_at = ?4, delta = ?5
     WHERE partition = ?1 AND sort = ?2 AND version = ?6";

/// A connection with the hot statements prepared once.
struct Conn {
    conn: Connection,
    get: Statement,
    insert: Statement,
    update: Statement,
}

/// A store on an embedded libSQL database file.
pub struct LibsqlStore {
    /// The file, or the URL of a remote database (for logs).
    location: String,
    db: Database,
    idle: Mutex<Vec<Conn>>,
    // A remote database manages its own journal and locking: no connection pragmas.
    remote: bool,
}

impl std::fmt::Debug for LibsqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibsqlStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

fn open_error(context: impl Into<String>, source: impl Into<super::BoxError>) -> StoreError {
    StoreError::Open {
        context: context.into(),
        source: source.into(),
    }
}

fn unavailable(err: libsql::Error) -> StoreError {
    StoreError::Unavailable(Box::new(err))
}

/// A pooled connection, returned to the pool when dropped.
struct Pooled<'a> {
    store: &'a LibsqlStore,
    slot: Option<Conn>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        // Present from creation until drop.
        self.slot
            .as_ref()
            .unwrap_or_else(|| unreachable!("connection taken before drop"))
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let (Some(conn), Ok(mut idle)) = (self.slot.take(), self.store.idle.lock())
            && idle.len() < POOL_SIZE
        {
            idle.push(conn);
        }
    }
}

impl LibsqlStore {
    /// Opens (creating if needed) the database file at `path` and its directory, and brings
    /// the schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            jarvis_config::datadir::create_private(dir)
                .map_err(|e| open_error(format!("creating {}", dir.display()), e))?;
        }
        let db = Builder::new_local(path)
            .build()
            .await
            .map_err(|e| open_error(format!("opening {}", path.display()), e))?;
        let store = Self {
            location: path.display().to_string(),
            db,
            idle: Mutex::new(Vec::new()),
            remote: false,
        };
        let conn = store.raw_connection().await?;
        enable_wal(&conn).await?;
        migrate(&conn).await?;
        store.keep(conn).await?;
        Ok(store)
    }

    /// Opens a remote libSQL database (`libsql://`, `https://` or `http://` URL) with its
    /// auth token, over the workspace's rustls stack, and brings its schema up to date.
    pub async fn open_remote(url: &str, token: &SecretString) -> Result<Self, StoreError> {
        let connector = RemoteConnector::new()
            .map_err(|e| open_error("setting up TLS for the remote database", e))?;
        let db = Builder::new_remote(url.to_owned(), token.expose_secret().to_owned())
            .connector(connector)
            .build()
            .await
            .map_err(|e| open_error("opening the remote database", e))?;
        let store = Self {
            location: url.to_owned(),
            db,
            idle: Mutex::new(Vec::new()),
            remote: true,
        };
        let conn = store.raw_connection().await?;
        migrate(&conn).await?;
        store.keep(conn).await?;
        Ok(store)
    }

    /// Puts the connection that opened the store into the pool, so the first request does
    /// not open another.
    async fn keep(&self, conn: Connection) -> Result<(), StoreError> {
        let conn = prepared(conn).await?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
        Ok(())
    }

    async fn new_connection(&self) -> Result<Conn, StoreError> {
        prepared(self.raw_connection().await?).await
    }

    async fn raw_connection(&self) -> Result<Connection, StoreError> {
        let conn = self
            .db
            .connect()
            .map_err(|e| open_error("connecting to the database", e))?;
        if self.remote {
            return Ok(conn);
        }
        conn.execute_batch(&format!(
            "PRAGMA busy_timeout={BUSY_TIMEOUT_MS}; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
        ))
        .await
        .map_err(|e| open_error("setting connection pragmas", e))?;
        Ok(conn)
    }

    async fn connection(&self) -> Result<Pooled<'_>, StoreError> {
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match reused {
            Some(conn) => conn,
            None => self.new_connection().await?,
        };
        Ok(Pooled {
            store: self,
            slot: Some(conn),
        })
    }
}

/// Prepares the hot statements on a connection.
async fn prepared(conn: Connection) -> Result<Conn, StoreError> {
    let prepare = |sql: &'static str| {
        let conn = conn.clone();
        async move {
            conn.prepare(sql)
                .await
                .map_err(|e| open_error("preparing statements", e))
        }
    };
    Ok(Conn {
        get: prepare(GET).await?,
        insert: prepare(INSERT).await?,
        update: prepare(UPDATE).await?,
        conn,
    })
}

/// How long opening waits for another process to let go of a new file's journal.
const WAL_SWITCH_ATTEMPTS: u32 = 100;

/// Switches the file to the WAL journal (a property of the file: once set, every later
/// connection sees it). Two processes opening a brand-new file at once can find the switch
/// refused while the other holds a lock, without the busy timeout applying, so the switch is
/// retried until the file reports `wal`.
async fn enable_wal(conn: &Connection) -> Result<(), StoreError> {
    let mut last_error = None;
    for _ in 0..WAL_SWITCH_ATTEMPTS {
        match journal_mode_wal(conn).await {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => last_error = Some(format!("journal mode stayed {mode}")),
            Err(err) => last_error = Some(err.to_string()),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(open_error(
        "enabling the WAL journal",
        last_error.unwrap_or_else(|| "no answer".to_owned()),
    ))
}

/// `PRAGMA journal_mode=WAL`, which answers with the resulting mode.
async fn journal_mode_wal(conn: &Connection) -> Result<String, libsql::Error> {
    let mut rows = conn.query("PRAGMA journal_mode=WAL", ()).await?;
    let mode = match rows.next().await? {
        Some(row) => row.get::<String>(0)?,
        None => String::new(),
    };
    while rows.next().await?.is_some() {}
    Ok(mode)
}

/// Applies every migration not yet recorded, each in an `IMMEDIATE` transaction so two
/// processes starting at once apply it exactly once.
async fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
        (),
    )
    .await
    .map_err(|e| open_error("creating schema_migrations", e))?;
    for (version, sql) in MIGRATIONS {
        let context = || format!("applying migration {version}");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .await
            .map_err(|e| open_error(context(), e))?;
        let mut rows = tx
            .query(
                "SELECT 1 FROM schema_migrations WHERE version = ?1",
                params![*version],
            )
            .await
            .map_err(|e| open_error(context(), e))?;
        let applied = rows
            .next()
            .await
            .map_err(|e| open_error(context(), e))?
            .is_some();
        drop(rows);
        if applied {
            tx.rollback().await.map_err(|e| open_error(context(), e))?;
            continue;
        }
        tx.execute_batch(sql)
            .await
            .map_err(|e| open_error(context(), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![*version, super::now_secs()],
        )
        .await
        .map_err(|e| open_error(context(), e))?;
        tx.commit().await.map_err(|e| open_error(context(), e))?;
    }
    Ok(())
}

fn column_u64(row: &libsql::Row, index: i32) -> Result<u64, StoreError> {
    let value: i64 = row.get(index).map_err(unavailable)?;
    u64::try_from(value).map_err(|e| StoreError::Unavailable(Box::new(e)))
}

fn stored_from(row: &libsql::Row, first: i32) -> Result<Stored, StoreError> {
    Ok(Stored {
        bytes: row.get(first).map_err(unavailable)?,
        version: column_u64(row, first + 1)?,
        expires_at: row.get(first + 2).map_err(unavailable)?,
    })
}

fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|e| StoreError::Unavailable(Box::new(e)))
}

#[async_trait]
impl Store for LibsqlStore {
    fn backend(&self) -> &'static str {
        "libsql"
    }

    fn max_document_bytes(&self) -> usize {
        MAX_DOCUMENT_BYTES
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let conn = self.connection().await?;
        let mut rows = conn.conn.query("SELECT 1", ()).await.map_err(unavailable)?;
        rows.next().await.map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, key: &Key) -> Result<Option<Stored>, StoreError> {
        let conn = self.connection().await?;
        conn.get.reset();
        let mut rows = conn
            .get
            .query(params![key.partition(), key.sort()])
            .await
            .map_err(unavailable)?;
        let found = match rows.next().await.map_err(unavailable)? {
            Some(row) => Some(stored_from(&row, 0)?),
            None => None,
        };
        drop(rows);
        conn.get.reset();
        Ok(found)
    }

    async fn put(&self, key: &Key, write: Write<'_>) -> Result<u64, StoreError> {
        if write.state.len() > MAX_DOCUMENT_BYTES {
            return Err(StoreError::TooLarge {
                size: write.state.len(),
                limit: MAX_DOCUMENT_BYTES,
            });
        }
        let conn = self.connection().await?;
        // One statement: the condition, the write and (by trigger) the feed entry commit
        // together or not at all.
        let written = if write.expected_version == 0 {
            conn.insert.reset();
            conn.insert
                .execute(params![
                    key.partition(),
                    key.sort(),
                    write.state,
                    write.expires_at,
                    write.delta
                ])
                .await
        } else {
            conn.update.reset();
            conn.update
                .execute(params![
                    key.partition(),
                    key.sort(),
                    write.state,
                    write.expires_at,
                    write.delta,
                    to_i64(write.expected_version)?
                ])
                .await
        }
        .map_err(unavailable)?;
        if written == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(write.expected_version + 1)
    }

    async fn list(
        &self,
        partition: &str,
        query: ListQuery<'_>,
    ) -> Result<Vec<(Key, Stored)>, StoreError> {
        let conn = self.connection().await?;
        let upper = query.prefix.and_then(prefix_upper_bound);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let mut rows = conn
            .conn
            .query(
                "SELECT sort, state, version, expires_at FROM documents
                 WHERE partition = ?1 AND sort > ?2 AND sort >= ?3 AND (?4 IS NULL OR sort < ?4)
                   AND (expires_at IS NULL OR expires_at > ?5)
                 ORDER BY sort LIMIT ?6",
                params![
                    partition,
                    query.after.unwrap_or(""),
                    query.prefix.unwrap_or(""),
                    upper,
                    query.now,
                    limit
                ],
            )
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().await.map_err(unavailable)? {
            let sort: String = row.get(0).map_err(unavailable)?;
            out.push((Key::new(partition, sort)?, stored_from(&row, 1)?));
        }
        Ok(out)
    }

    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let conn = self.connection().await?;
        let mut rows = conn
            .conn
            .query(
                "SELECT seq, partition, sort, delta FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                params![to_i64(after)?, i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().await.map_err(unavailable)? {
            let partition: String = row.get(1).map_err(unavailable)?;
            let sort: String = row.get(2).map_err(unavailable)?;
            out.push(Change {
                seq: column_u64(&row, 0)?,
                key: Key::new(partition, sort)?,
                payload: Payload::Delta(row.get(3).map_err(unavailable)?),
            });
        }
        Ok(out)
    }

    async fn load_cursor(&self, peer: &str) -> Result<Option<String>, StoreError> {
        let conn = self.connection().await?;
        let mut rows = conn
            .conn
            .query(
                "SELECT cursor FROM sync_cursors WHERE peer = ?1",
                params![peer],
            )
            .await
            .map_err(unavailable)?;
        match rows.next().await.map_err(unavailable)? {
            Some(row) => Ok(Some(row.get(0).map_err(unavailable)?)),
            None => Ok(None),
        }
    }

    async fn save_cursor(&self, peer: &str, cursor: &str) -> Result<(), StoreError> {
        let conn = self.connection().await?;
        conn.conn
            .execute(
                "INSERT INTO sync_cursors (peer, cursor) VALUES (?1, ?2)
             ON CONFLICT (peer) DO UPDATE SET cursor = excluded.cursor",
                params![peer, cursor],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        let conn = self.connection().await?;
        conn.conn
            .execute(
                "DELETE FROM documents WHERE expires_at IS NOT NULL AND expires_at <= ?1",
                params![now],
            )
            .await
            .map_err(unavailable)
    }

    async fn feed_floor(&self) -> Result<u64, StoreError> {
        let conn = self.connection().await?;
        query_u64(&conn.conn, FEED_FLOOR, ()).await
    }

    async fn feed_head(&self) -> Result<u64, StoreError> {
        let conn = self.connection().await?;
        query_u64(&conn.conn, FEED_HEAD, ()).await
    }

    async fn prune_feed(&self, before: i64) -> Result<u64, StoreError> {
        let conn = self.connection().await?;
        // Entries are in write order, so the first one young enough ends the pruned range.
        // The newest entry always stays: deleting it would let a position be handed out again.
        let first_kept = query_u64(
            &conn.conn,
            "SELECT COALESCE(
                 (SELECT seq FROM changes WHERE at >= ?1 ORDER BY seq LIMIT 1),
                 (SELECT MAX(seq) FROM changes),
                 0)",
            params![before],
        )
        .await?;
        let target = first_kept.saturating_sub(1);
        let mut floor = query_u64(&conn.conn, FEED_FLOOR, ()).await?;
        let mut pruned = 0;
        while floor < target {
            let upto = target.min(floor + PRUNE_BATCH);
            // The floor rises before the entries go: a reader that checks the floor after
            // reading the feed never misses a deleted entry unknowingly.
            conn.conn
                .execute(
                    "INSERT INTO feed_meta (name, value) VALUES ('floor', ?1)
                     ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                    params![to_i64(upto)?],
                )
                .await
                .map_err(unavailable)?;
            pruned += conn
                .conn
                .execute(
                    "DELETE FROM changes WHERE seq <= ?1",
                    params![to_i64(upto)?],
                )
                .await
                .map_err(unavailable)?;
            floor = upto;
        }
        Ok(pruned)
    }

    async fn snapshot(
        &self,
        after: Option<&Key>,
        now: i64,
        limit: usize,
    ) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        let conn = self.connection().await?;
        let (partition, sort) = after.map_or(("", ""), |k| (k.partition(), k.sort()));
        let mut rows = conn
            .conn
            .query(
                "SELECT partition, sort, state FROM documents
                 WHERE (partition, sort) > (?1, ?2)
                   AND substr(partition, 1, 1) <> '~'
                   AND (expires_at IS NULL OR expires_at > ?3)
                 ORDER BY partition, sort LIMIT ?4",
                params![
                    partition,
                    sort,
                    now,
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
            )
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().await.map_err(unavailable)? {
            let partition: String = row.get(0).map_err(unavailable)?;
            let sort: String = row.get(1).map_err(unavailable)?;
            out.push((Key::new(partition, sort)?, row.get(2).map_err(unavailable)?));
        }
        Ok(out)
    }
}

/// The one whole number a query answers.
async fn query_u64(
    conn: &Connection,
    sql: &str,
    params: impl libsql::params::IntoParams,
) -> Result<u64, StoreError> {
    let mut rows = conn.query(sql, params).await.map_err(unavailable)?;
    match rows.next().await.map_err(unavailable)? {
        Some(row) => column_u64(&row, 0),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jarvis_crdt::Codec;

    #[tokio::test]
    async fn opening_creates_the_data_dir_and_answers_a_ping() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/data/jarvis.db");
        let store = LibsqlStore::open(&path).await.expect("open");
        store.ping().await.expect("ping");
        assert!(path.exists());
    }

    #[tokio::test]
    async fn reopening_applies_migrations_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jarvis.db");
        drop(LibsqlStore::open(&path).await.expect("first open"));
        let store = LibsqlStore::open(&path).await.expect("second open");
        let conn = store.connection().await.expect("conn");
        let mut rows = conn
            .conn
            .query("SELECT COUNT(*) FROM schema_migrations", ())
            .await
            .expect("query");
        let row = rows.next().await.expect("row").expect("one row");
        let count: i64 = row.get(0).expect("count");
        assert_eq!(count, i64::try_from(MIGRATIONS.len()).expect("small"));
    }

    /// Without a libSQL server at hand: a local listener stands in for one, and proves the
    /// remote path reaches the wire with the token as a bearer credential.
    #[tokio::test]
    async fn the_remote_client_sends_its_token_to_the_database_url() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 8192];
            let n = socket.read(&mut buf).await.expect("read");
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ = socket
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await;
            request
        });
        let token = SecretString::from("remote-token-123".to_owned());
        let err = LibsqlStore::open_remote(&format!("http://{addr}"), &token)
            .await
            .expect_err("the stand-in is no database");
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        let request = server.await.expect("server");
        assert!(request.starts_with("POST "), "{request}");
        assert!(
            request
                .to_ascii_lowercase()
                .contains("authorization: bearer remote-token-123"),
            "{request}"
        );
        assert!(!err.to_string().contains("remote-token-123"));
    }

    #[tokio::test]
    async fn an_unreachable_remote_database_is_an_open_error() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let token = SecretString::from("t".to_owned());
        let err = LibsqlStore::open_remote(&format!("http://127.0.0.1:{port}"), &token)
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
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

    #[tokio::test]
    async fn pruning_keeps_young_entries_and_the_newest_and_never_reuses_a_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LibsqlStore::open(&dir.path().join("j.db"))
            .await
            .expect("open");
        let conn = store.connection().await.expect("conn");
        let create = |sort: String| async {
            let bytes = jarvis_crdt::GCounter::new().encode().expect("encode");
            let key = Key::new("crdt#u".to_owned(), sort).expect("key");
            let write = Write {
                expected_version: 0,
                state: &bytes,
                delta: &bytes,
                expires_at: None,
            };
            store.put(&key, write).await.expect("put");
        };
        for i in 0..5 {
            create(format!("c{i}")).await;
        }
        // Entries 1 and 2 as an earlier build wrote them (no time), 3 an hour old.
        conn.conn
            .execute("UPDATE changes SET at = NULL WHERE seq <= 2", ())
            .await
            .expect("age");
        conn.conn
            .execute("UPDATE changes SET at = at - 3600 WHERE seq = 3", ())
            .await
            .expect("age");
        let now = crate::now_secs();
        assert_eq!(store.prune_feed(now - 60).await.expect("prune"), 3);
        assert_eq!(store.feed_floor().await.expect("floor"), 3);
        let left: Vec<u64> = store
            .changes(0, 10)
            .await
            .expect("feed")
            .iter()
            .map(|c| c.seq)
            .collect();
        assert_eq!(left, [4, 5]);

        // Even pruning everything keeps the newest entry, so the next write is at 6.
        assert_eq!(store.prune_feed(now + 60).await.expect("prune"), 1);
        assert_eq!(store.feed_head().await.expect("head"), 5);
        create("c9".to_owned()).await;
        assert_eq!(store.feed_head().await.expect("head"), 6);
        assert_eq!(store.feed_floor().await.expect("floor"), 4);
    }
}
