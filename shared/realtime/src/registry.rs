//! The connections of this deployment, in the store.
//!
//! | document | key | state |
//! | --- | --- | --- |
//! | connection | `~ws#<user>` / `<connection id>` | [`Record`]: fields `role`, `credential` (`session` or `key`), `credential_id`, `connected_ms`, `source_ip`, `user_agent`; sets `scopes` (an API key's), `topics` |
//! | owner | `~wsc#<connection id>` / `owner` | [`Record`]: field `user` |
//!
//! Both are replica-local (a connection lives on one deployment's gateway) and expire with
//! the connection's maximum lifetime. The owner document is how a message, which names only
//! its connection, finds its user; the user's partition is what publishing lists. Neither
//! holds the credential itself: only which session or key it was, so every action can
//! check that it is still live.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jarvis_crdt::{Crdt, Record, ReplicaId};
use jarvis_identity::{Credential, Identity, Role, Scope};
use jarvis_store::clock::Clock;
use jarvis_store::{Key, ListQuery, MergeOptions, Store, StoreError, now_secs};

/// Topics one connection may listen to at most.
pub const MAX_TOPICS: usize = 100;

/// A connection, as recorded at `$connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The gateway's connection id.
    pub id: String,
    /// Who connected, with the credential's scopes (the account's email is not kept).
    pub identity: Identity,
    /// The topics it listens to, by name.
    pub topics: BTreeSet<String>,
    /// When it opened (milliseconds since the Unix epoch).
    pub connected_ms: i64,
    /// The client's address.
    pub source_ip: String,
    /// The client's `User-Agent`.
    pub user_agent: String,
}

/// The connection records of one deployment.
#[derive(Debug, Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    replica: ReplicaId,
    clock: Arc<Clock>,
    lifetime: Duration,
}

fn connection_key(user: &str, id: &str) -> Result<Key, StoreError> {
    Key::new(format!("~ws#{user}"), id)
}

fn owner_key(id: &str) -> Result<Key, StoreError> {
    Key::new(format!("~wsc#{id}"), "owner")
}

impl Registry {
    /// Connection records in `store`, kept for `lifetime` (a connection's maximum).
    pub fn new(
        store: Arc<dyn Store>,
        replica: ReplicaId,
        clock: Arc<Clock>,
        lifetime: Duration,
    ) -> Self {
        Self {
            store,
            replica,
            clock,
            lifetime,
        }
    }

    fn options(&self) -> MergeOptions {
        let secs = i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        MergeOptions {
            // A minute past the gateway's own limit: the record outlives its connection.
            expires_at: Some(now_secs().saturating_add(secs).saturating_add(60)),
            ..MergeOptions::default()
        }
    }

    /// Records a new connection of `identity`.
    pub async fn add(
        &self,
        id: &str,
        identity: &Identity,
        source_ip: &str,
        user_agent: &str,
    ) -> Result<(), StoreError> {
        let (kind, credential_id, scopes) = match &identity.credential {
            Credential::Session { session_id } => ("session", session_id.as_str(), Vec::new()),
            Credential::ApiKey { key_id, scopes } => ("key", key_id.as_str(), scopes.clone()),
            // Delegated work never connects; were it to, it would be checked as a key it
            // cannot name, and refused.
            Credential::Delegated { api_key, scopes } => (
                "key",
                api_key.as_deref().unwrap_or_default(),
                scopes.clone(),
            ),
        };
        let fields = [
            ("role", identity.role.as_str()),
            ("credential", kind),
            ("credential_id", credential_id),
            ("source_ip", source_ip),
            ("user_agent", user_agent),
        ];
        let (replica, clock) = (self.replica, &self.clock);
        let options = self.options();
        self.store
            .update_with(
                &owner_key(id)?,
                |record: &mut Record| {
                    record.create(
                        replica,
                        clock.now(),
                        [("user".to_owned(), identity.user_id.clone())],
                    )
                },
                options,
            )
            .await?;
        self.store
            .update_with(
                &connection_key(&identity.user_id, id)?,
                |record: &mut Record| {
                    let stamp = clock.now();
                    let connected = ("connected_ms".to_owned(), stamp.wall_ms.to_string());
                    let fields = fields
                        .iter()
                        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                        .chain([connected]);
                    let mut delta = record.create(replica, stamp, fields);
                    delta.join(record.replace_set(
                        replica,
                        "scopes",
                        scopes.iter().map(|s| s.as_str().to_owned()),
                    ));
                    delta
                },
                options,
            )
            .await?;
        Ok(())
    }

    /// The user a connection belongs to.
    async fn owner(&self, id: &str) -> Result<Option<String>, StoreError> {
        let Ok(key) = owner_key(id) else {
            return Ok(None);
        };
        Ok(self
            .store
            .read::<Record>(&key)
            .await?
            .map(|doc| doc.state)
            .filter(Record::is_live)
            .and_then(|record| record.get("user").map(str::to_owned)))
    }

    /// The connection `id`, if it is recorded.
    pub async fn get(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        let Some(user) = self.owner(id).await? else {
            return Ok(None);
        };
        let doc = self
            .store
            .read::<Record>(&connection_key(&user, id)?)
            .await?;
        Ok(doc.and_then(|doc| connection_of(&user, id, &doc.state)))
    }

    /// Forgets the connection `id`; answers whether it was recorded.
    pub async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let Some(user) = self.owner(id).await? else {
            return Ok(false);
        };
        let clock = &self.clock;
        for key in [connection_key(&user, id)?, owner_key(id)?] {
            self.store
                .update(&key, |record: &mut Record| {
                    if record.is_live() {
                        record.delete(clock.stamp_after(record.latest_stamp()))
                    } else {
                        Record::new()
                    }
                })
                .await?;
        }
        Ok(true)
    }

    /// Adds `add` to the topics of `connection` and removes `remove`; answers the topics it
    /// then listens to, or `None` when more than [`MAX_TOPICS`] would be too many.
    pub async fn change_topics(
        &self,
        connection: &Connection,
        add: &[String],
        remove: &[String],
    ) -> Result<Option<BTreeSet<String>>, StoreError> {
        let key = connection_key(&connection.identity.user_id, &connection.id)?;
        let replica = self.replica;
        let (doc, fits) = self
            .store
            .transact(&key, MergeOptions::default(), |record: &mut Record| {
                if !record.is_live() {
                    return (Record::new(), true);
                }
                let mut wanted: BTreeSet<String> = topics_of(record);
                wanted.extend(add.iter().cloned());
                for topic in remove {
                    wanted.remove(topic);
                }
                if wanted.len() > MAX_TOPICS {
                    return (Record::new(), false);
                }
                (record.replace_set(replica, "topics", wanted), true)
            })
            .await?;
        Ok(fits.then(|| topics_of(&doc.state)))
    }

    /// Every recorded connection of `user`.
    pub async fn of_user(&self, user: &str) -> Result<Vec<Connection>, StoreError> {
        const PAGE: usize = 1_000;
        let partition = format!("~ws#{user}");
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .list(
                    &partition,
                    ListQuery {
                        after: after.as_deref(),
                        limit: PAGE,
                        now: now_secs(),
                        ..ListQuery::default()
                    },
                )
                .await?;
            let full = page.len() == PAGE;
            after = page.last().map(|(key, _)| key.sort().to_owned());
            for (key, stored) in page {
                let record =
                    jarvis_crdt::Codec::decode(&stored.bytes).map_err(StoreError::Corrupt)?;
                if let Some(connection) = connection_of(user, key.sort(), &record) {
                    found.push(connection);
                }
            }
            if !full {
                return Ok(found);
            }
        }
    }
}

fn topics_of(record: &Record) -> BTreeSet<String> {
    record
        .set_elements("topics")
        .unwrap_or_default()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn connection_of(user: &str, id: &str, record: &Record) -> Option<Connection> {
    if !record.is_live() {
        return None;
    }
    let credential_id = record.get("credential_id")?.to_owned();
    let credential = match record.get("credential")? {
        "session" => Credential::Session {
            session_id: credential_id,
        },
        "key" => Credential::ApiKey {
            key_id: credential_id,
            scopes: record
                .set_elements("scopes")
                .unwrap_or_default()
                .into_iter()
                .filter_map(Scope::parse)
                .collect(),
        },
        _ => return None,
    };
    Some(Connection {
        id: id.to_owned(),
        identity: Identity {
            user_id: user.to_owned(),
            email: String::new(),
            // An unknown role (a newer build's) gets the least privilege.
            role: record
                .get("role")
                .and_then(Role::parse)
                .unwrap_or(Role::Viewer),
            credential,
        },
        topics: topics_of(record),
        connected_ms: record.get("connected_ms")?.parse().ok()?,
        source_ip: record.get("source_ip").unwrap_or_default().to_owned(),
        user_agent: record.get("user_agent").unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use jarvis_crdt::Codec;

    async fn registry() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().expect("dir");
        let store = jarvis_store::libsql::LibsqlStore::open(&dir.path().join("ws.db"))
            .await
            .expect("store");
        let replica = ReplicaId::from_u64(7);
        let registry = Registry::new(
            Arc::new(store),
            replica,
            Arc::new(Clock::new(replica)),
            Duration::from_secs(7_200),
        );
        (dir, registry)
    }

    fn key_holder(user: &str) -> Identity {
        Identity {
            user_id: user.to_owned(),
            email: "kept@nowhere".to_owned(),
            role: Role::User,
            credential: Credential::ApiKey {
                key_id: "k1".to_owned(),
                scopes: vec![Scope::ArchiveRead, Scope::ChatWrite],
            },
        }
    }

    #[tokio::test]
    async fn a_connection_is_found_by_its_id_and_under_its_user_until_removed() {
        let (_dir, registry) = registry().await;
        registry
            .add("L0SM9cOFvHcCIhw=", &key_holder("u1"), "192.0.2.1", "test/1")
            .await
            .expect("add");
        let found = registry
            .get("L0SM9cOFvHcCIhw=")
            .await
            .expect("get")
            .expect("found");
        assert_eq!(found.identity.user_id, "u1");
        assert_eq!(found.identity.email, "", "the email is not kept");
        assert_eq!(found.identity.credential, key_holder("u1").credential);
        assert_eq!(
            (found.source_ip.as_str(), found.user_agent.as_str()),
            ("192.0.2.1", "test/1")
        );
        assert_eq!(registry.of_user("u1").await.expect("list").len(), 1);
        assert!(registry.of_user("u2").await.expect("list").is_empty());

        assert!(registry.remove("L0SM9cOFvHcCIhw=").await.expect("remove"));
        assert!(!registry.remove("L0SM9cOFvHcCIhw=").await.expect("again"));
        assert_eq!(registry.get("L0SM9cOFvHcCIhw=").await.expect("get"), None);
        assert!(registry.of_user("u1").await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn topics_are_added_and_removed_and_bounded_per_connection() {
        let (_dir, registry) = registry().await;
        registry
            .add("c1", &key_holder("u1"), "", "")
            .await
            .expect("add");
        let connection = registry.get("c1").await.expect("get").expect("found");
        let topics = registry
            .change_topics(&connection, &["archive".into(), "crdt:a".into()], &[])
            .await
            .expect("change")
            .expect("fits");
        assert_eq!(
            topics.into_iter().collect::<Vec<_>>(),
            ["archive", "crdt:a"]
        );
        let topics = registry
            .change_topics(&connection, &[], &["archive".into(), "trading".into()])
            .await
            .expect("change")
            .expect("fits");
        assert_eq!(topics.into_iter().collect::<Vec<_>>(), ["crdt:a"]);
        let many: Vec<String> = (0..MAX_TOPICS).map(|i| format!("crdt:n{i}")).collect();
        assert_eq!(
            registry
                .change_topics(&connection, &many, &[])
                .await
                .expect("change"),
            None
        );
        let kept = registry.get("c1").await.expect("get").expect("found");
        assert_eq!(kept.topics.len(), 1, "a refused change changes nothing");
    }

    #[tokio::test]
    async fn the_records_expire_with_the_connections_maximum_lifetime() {
        let (_dir, registry) = registry().await;
        registry
            .add("c1", &key_holder("u1"), "", "")
            .await
            .expect("add");
        let stored = registry
            .store
            .get(&connection_key("u1", "c1").expect("key"))
            .await
            .expect("get")
            .expect("stored");
        let expires = stored.expires_at.expect("expires");
        let now = now_secs();
        assert!(
            (now + 7_200..=now + 7_200 + 61).contains(&expires),
            "{expires} vs {now}"
        );
        assert!(!connection_key("u1", "c1").expect("key").is_replicated());
        assert!(!owner_key("c1").expect("key").is_replicated());
    }

    /// The connection record's stored form, pinned: a change to it must be deliberate.
    #[test]
    fn golden_connection_record() {
        let replica = ReplicaId::from_u64(7);
        let stamp = |ms| jarvis_crdt::Timestamp::new(ms, 0, replica);
        let mut record = Record::new();
        let fields = [
            ("role", "user"),
            ("credential", "key"),
            ("credential_id", "k1"),
            ("source_ip", "192.0.2.1"),
            ("user_agent", "test/1"),
            ("connected_ms", "1700000000000"),
        ];
        let mut delta = record.create(
            replica,
            stamp(1_700_000_000_000),
            fields
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        );
        delta.join(record.replace_set(replica, "scopes", ["archive:read".to_owned()]));
        delta.join(record.replace_set(replica, "topics", ["archive".to_owned()]));
        assert_eq!(delta, record);
        let hex = hex_of(&record.encode().expect("encodes"));
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/connection.hex");
        if std::env::var_os("JARVIS_BLESS").is_some() {
            std::fs::write(&path, &hex).expect("write golden");
        }
        let golden = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("missing {}; run with JARVIS_BLESS=1", path.display()));
        assert_eq!(hex, golden, "the connection record's encoding changed");
        let golden: Vec<u8> = (0..golden.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&golden[i..i + 2], 16).expect("hex"))
            .collect();
        let decoded = Record::decode(&golden).expect("decodes");
        let connection = connection_of("u1", "c1", &decoded).expect("a connection");
        assert_eq!(
            connection.topics.into_iter().collect::<Vec<_>>(),
            ["archive"]
        );
        assert_eq!(
            connection.identity.credential,
            Credential::ApiKey {
                key_id: "k1".into(),
                scopes: vec![Scope::ArchiveRead]
            }
        );
        assert_eq!(connection.connected_ms, 1_700_000_000_000);
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
