//! Secrets: where they come from, how long they are kept, and the keys derived from them.
//!
//! One JSON document holds every secret of a deployment:
//!
//! ```json
//! {
//!   "master_key": "at least 32 characters",
//!   "signing_keys": [{ "kid": "2026-11", "secret": "at least 32 characters" }],
//!   "sync_token": "optional, at least 16 characters",
//!   "providers": { "openai": { "api_key": "sk-…" }, "anthropic": { "api_key": "…" } }
//! }
//! ```
//!
//! - `master_key` (required) is the root of the keys derived with HKDF-SHA256: the AES-256-GCM
//!   key that encrypts TOTP secrets at rest, the MAC key of the audit chain, and the pepper of
//!   recovery codes. Replicas that sync share it, so each can read what the other wrote.
//! - `signing_keys` (optional) sign access tokens: the first one signs, every one verifies,
//!   so a new key is put first and the old one stays until the tokens it signed expire. A key
//!   derived from the master key (kid `master`) always verifies and signs when no other key
//!   is listed — a fresh deployment needs nothing but the master key.
//! - `providers` (optional) holds the API key of each AI provider by its name (1 to 32 of
//!   `a-z 0-9 - _`); Bedrock needs none (the function's role signs its calls).
//!
//! Sources ([`SecretSource`]): AWS Secrets Manager (cached for a TTL, fetched again early when
//! a token arrives with a key id the cache does not know, so rotation needs no redeploy), the
//! `JARVIS_SECRETS` variable, or a local file that [`ensure_local_file`] creates with random
//! values (mode 0600). Values are held in [`secrecy`] wrappers: they never reach a log, a
//! `Debug` print or an error body.
//!
//! Owns where secrets come from and what is derived from them; changes when a source or a key
//! use does. AWS Secrets Manager is behind the cargo feature `aws`. Imports configuration and
//! health only: never the store or HTTP (their errors map *from* this crate's).
#![deny(missing_docs)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lc_rs::{aead, hkdf, hmac, rand};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use jarvis_config::SecretsConfig;
/// Any error, as a cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
use jarvis_health::{Finding, HealthCheck};

#[cfg(feature = "aws")]
mod aws;
#[cfg(not(feature = "aws"))]
#[path = "aws_absent.rs"]
mod aws;

/// Key id of the signing key derived from the master key.
pub const MASTER_KID: &str = "master";
/// Shortest accepted master or signing key, in characters.
pub const MIN_KEY_CHARS: usize = 32;
/// Shortest time between two fetches forced by an unknown key id.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// Why secrets could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Nothing configured as a source.
    #[error("no secret source is configured: set JARVIS_SECRET_ID (AWS) or JARVIS_SECRETS")]
    NotConfigured,
    /// The source could not be read (network, permissions, missing file).
    #[error("secrets could not be read from {source_name}")]
    Unreachable {
        /// The source's name.
        source_name: &'static str,
        /// What went wrong.
        #[source]
        cause: BoxError,
    },
    /// The document is not of the expected shape; the message names the field, never a value.
    #[error("secret document is invalid: {0}")]
    Invalid(String),
}

/// A key that signs or verifies access tokens.
pub struct SigningKey {
    /// The key id written in the token header.
    pub kid: String,
    secret: SecretBox<Vec<u8>>,
}

impl SigningKey {
    /// The raw key bytes, for the token library only.
    pub fn bytes(&self) -> &[u8] {
        self.secret.expose_secret()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The secrets of a deployment, parsed, with the keys derived from the master key.
pub struct Secrets {
    signing: Vec<SigningKey>,
    data_key: SecretBox<[u8; 32]>,
    audit_key: SecretBox<[u8; 32]>,
    pepper: SecretBox<[u8; 32]>,
    replay_key: SecretBox<[u8; 32]>,
    sync_token: Option<SecretString>,
    providers: Vec<(String, SecretString)>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.signing.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("Secrets")
            .field("signing_kids", &kids)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    master_key: String,
    #[serde(default)]
    signing_keys: Vec<KeyEntry>,
    #[serde(default)]
    sync_token: Option<String>,
    #[serde(default)]
    providers: std::collections::BTreeMap<String, ProviderEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderEntry {
    api_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    kid: String,
    secret: String,
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(master: &[u8], purpose: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"jarvis secrets v1").extract(master);
    // 32 bytes from SHA-256 HKDF cannot fail: the limit is 255 × 32.
    if let Ok(okm) = prk.expand(&[purpose.as_bytes()], Len(out.len())) {
        let _ = okm.fill(&mut out);
    }
    out
}

impl Secrets {
    /// Parses the JSON document (see the module docs). Errors name fields, never values.
    pub fn parse(json: &str) -> Result<Self, SecretError> {
        let doc: Document = serde_json::from_str(json).map_err(|e| {
            // serde's messages quote unexpected *values*; keep only the category.
            let reason = match e.classify() {
                serde_json::error::Category::Data => "a field is missing or of the wrong type",
                _ => "not a JSON object",
            };
            SecretError::Invalid(reason.into())
        })?;
        if doc.master_key.chars().count() < MIN_KEY_CHARS {
            return Err(SecretError::Invalid(format!(
                "master_key must be at least {MIN_KEY_CHARS} characters"
            )));
        }
        let master = doc.master_key.as_bytes();
        let mut signing = Vec::with_capacity(doc.signing_keys.len() + 1);
        for entry in doc.signing_keys {
            let kid_ok = (1..=64).contains(&entry.kid.len())
                && entry
                    .kid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !kid_ok || entry.kid == MASTER_KID {
                return Err(SecretError::Invalid(
                    "signing_keys[].kid must be 1 to 64 of A-Z a-z 0-9 . _ - and not \"master\""
                        .into(),
                ));
            }
            if entry.secret.chars().count() < MIN_KEY_CHARS {
                return Err(SecretError::Invalid(format!(
                    "signing key {} is shorter than {MIN_KEY_CHARS} characters",
                    entry.kid
                )));
            }
            if signing.iter().any(|k: &SigningKey| k.kid == entry.kid) {
                return Err(SecretError::Invalid(format!(
                    "signing key id {} appears twice",
                    entry.kid
                )));
            }
            signing.push(SigningKey {
                kid: entry.kid,
                secret: SecretBox::new(Box::new(entry.secret.into_bytes())),
            });
        }
        signing.push(SigningKey {
            kid: MASTER_KID.to_owned(),
            secret: SecretBox::new(Box::new(derive(master, "access-token signing").to_vec())),
        });
        if doc.sync_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(SecretError::Invalid(
                "sync_token must be at least 16 characters".into(),
            ));
        }
        let mut providers = Vec::with_capacity(doc.providers.len());
        for (name, entry) in doc.providers {
            let name_ok = (1..=32).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c));
            if !name_ok {
                return Err(SecretError::Invalid(
                    "providers: a provider name is 1 to 32 of a-z 0-9 - _".into(),
                ));
            }
            if entry.api_key.trim().is_empty() {
                return Err(SecretError::Invalid(format!(
                    "providers.{name}.api_key is empty"
                )));
            }
            providers.push((name, SecretString::from(entry.api_key)));
        }
        Ok(Self {
            providers,
            signing,
            data_key: SecretBox::new(Box::new(derive(master, "data encryption"))),
            audit_key: SecretBox::new(Box::new(derive(master, "audit chain"))),
            pepper: SecretBox::new(Box::new(derive(master, "one-time code pepper"))),
            replay_key: SecretBox::new(Box::new(derive(master, "idempotent responses"))),
            sync_token: doc.sync_token.map(SecretString::from),
        })
    }

    /// The key that signs new access tokens.
    pub fn signing_key(&self) -> &SigningKey {
        // `parse` always appends the master-derived key, so the list is never empty.
        &self.signing[0]
    }

    /// The key with this id, if it may verify tokens.
    pub fn verification_key(&self, kid: &str) -> Option<&SigningKey> {
        self.signing.iter().find(|k| k.kid == kid)
    }

    /// The API key of the AI provider named `name`, when the document has one.
    pub fn provider_key(&self, name: &str) -> Option<&SecretString> {
        self.providers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, key)| key)
    }

    /// Ids of every key that verifies.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.signing.iter().map(|k| k.kid.as_str())
    }

    /// The peer sync token, when the document holds one.
    pub fn sync_token(&self) -> Option<&SecretString> {
        self.sync_token.as_ref()
    }

    /// Encrypts `plaintext` with AES-256-GCM under the data key, bound to `context` (e.g. the
    /// owning user's id, so a ciphertext cannot be moved to another account). Returns
    /// base64 of nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, SecretError> {
        seal_under(self.data_key.expose_secret(), context, plaintext)
    }

    /// Decrypts what [`seal`](Self::seal) produced for the same `context`; `None` when it was
    /// tampered with, moved to another context or sealed under another master key.
    pub fn open(&self, context: &str, sealed: &str) -> Option<Vec<u8>> {
        open_under(self.data_key.expose_secret(), context, sealed)
    }

    /// Encrypts a response kept for idempotent replay under a key derived from the master key
    /// *and* `request_key` (the caller's scope and the raw `Idempotency-Key`, which the store
    /// only keeps hashed): neither a copy of the table nor the master key alone opens it.
    pub fn seal_replay(&self, request_key: &[u8], plaintext: &[u8]) -> Result<String, SecretError> {
        seal_under(
            &self.replay_key_for(request_key),
            "idempotent response",
            plaintext,
        )
    }

    /// Opens what [`seal_replay`](Self::seal_replay) produced for the same `request_key`.
    pub fn open_replay(&self, request_key: &[u8], sealed: &str) -> Option<Vec<u8>> {
        open_under(
            &self.replay_key_for(request_key),
            "idempotent response",
            sealed,
        )
    }

    fn replay_key_for(&self, request_key: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, self.replay_key.expose_secret()),
            request_key,
        );
        let mut key = [0u8; 32];
        key.copy_from_slice(tag.as_ref());
        key
    }

    /// HMAC-SHA256 of `data` under the audit-chain key, hex-encoded.
    pub fn audit_mac(&self, data: &[u8]) -> String {
        mac_hex(self.audit_key.expose_secret(), data)
    }

    /// HMAC-SHA256 of `data` under the pepper of one-time codes, hex-encoded: low-entropy
    /// codes (recovery codes) stored this way cannot be brute-forced from a copy of the store.
    pub fn peppered(&self, data: &[u8]) -> String {
        mac_hex(self.pepper.expose_secret(), data)
    }
}

fn aead_key(key: &[u8]) -> Result<aead::LessSafeKey, SecretError> {
    aead::UnboundKey::new(&aead::AES_256_GCM, key)
        .map(aead::LessSafeKey::new)
        .map_err(|_| SecretError::Invalid("data key".into()))
}

/// AES-256-GCM under `key`, bound to `context`: base64 of nonce ‖ ciphertext ‖ tag.
fn seal_under(key: &[u8], context: &str, plaintext: &[u8]) -> Result<String, SecretError> {
    let key = aead_key(key)?;
    let mut nonce = [0u8; aead::NONCE_LEN];
    rand::fill(&mut nonce).map_err(|_| SecretError::Invalid("no randomness".into()))?;
    let mut in_out = plaintext.to_vec();
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(context.as_bytes()),
        &mut in_out,
    )
    .map_err(|_| SecretError::Invalid("encryption failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&in_out);
    Ok(STANDARD.encode(out))
}

fn open_under(key: &[u8], context: &str, sealed: &str) -> Option<Vec<u8>> {
    let key = aead_key(key).ok()?;
    let bytes = STANDARD.decode(sealed).ok()?;
    let (nonce, ciphertext) = bytes.split_at_checked(aead::NONCE_LEN)?;
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut in_out = ciphertext.to_vec();
    let plain = key
        .open_in_place(nonce, aead::Aad::from(context.as_bytes()), &mut in_out)
        .ok()?;
    Some(plain.to_vec())
}

fn mac_hex(key: &[u8], data: &[u8]) -> String {
    hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data))
}

/// Fills a buffer from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if rand::fill(&mut out).is_err() {
        // The system RNG does not fail on supported platforms; if it ever did, a fresh
        // UUIDv4 stream (also OS randomness) is the fallback rather than zeros.
        for chunk in out.chunks_mut(16) {
            let id = uuid::Uuid::new_v4();
            chunk.copy_from_slice(&id.as_bytes()[..chunk.len()]);
        }
    }
    out
}

/// `N` random bytes as URL-safe base64 without padding.
pub fn random_token<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}

/// Where secrets come from. Implementations cache; [`refresh`](Self::refresh) forces a fetch
/// (at most once per [`MIN_REFRESH_INTERVAL`]).
#[async_trait]
pub trait SecretSource: Send + Sync + fmt::Debug {
    /// The source's name for `/health`, e.g. `aws-secrets-manager`.
    fn name(&self) -> &'static str;

    /// The current secrets, from the cache while it is fresh.
    async fn current(&self) -> Result<Arc<Secrets>, SecretError>;

    /// Fetches again now (e.g. a token names a key id the cache does not know), unless a
    /// fetch happened within [`MIN_REFRESH_INTERVAL`].
    async fn refresh(&self) -> Result<Arc<Secrets>, SecretError>;
}

/// Reads the raw document from somewhere.
#[async_trait]
trait Fetch: Send + Sync + fmt::Debug {
    fn name(&self) -> &'static str;
    async fn fetch(&self) -> Result<SecretString, SecretError>;
}

/// A [`Fetch`] with a cache: fresh for `ttl`, kept (and logged) when a later fetch fails.
///
/// Requests read the cache under a shared lock; one fetch at a time refreshes it. After a
/// failed fetch the last good copy is served without another attempt for a retry interval,
/// so an outage of the source does not make every request wait on it.
#[derive(Debug)]
struct Cached<F> {
    fetch: F,
    ttl: Duration,
    state: RwLock<Option<Cache>>,
    fetching: Mutex<()>,
}

#[derive(Debug)]
struct Cache {
    secrets: Arc<Secrets>,
    fetched: Instant,
    failed: Option<Instant>,
}

impl<F: Fetch> Cached<F> {
    fn new(fetch: F, ttl: Duration) -> Self {
        Self {
            fetch,
            ttl,
            state: RwLock::new(None),
            fetching: Mutex::new(()),
        }
    }

    /// Shortest time between two fetches.
    fn retry_interval(&self) -> Duration {
        MIN_REFRESH_INTERVAL.min(self.ttl)
    }

    async fn cached(&self, max_age: Duration) -> Option<Arc<Secrets>> {
        let state = self.state.read().await;
        let cache = state.as_ref()?;
        let recent_failure = cache
            .failed
            .is_some_and(|at| at.elapsed() < self.retry_interval());
        (cache.fetched.elapsed() < max_age || recent_failure).then(|| Arc::clone(&cache.secrets))
    }

    async fn load(&self, max_age: Duration) -> Result<Arc<Secrets>, SecretError> {
        if let Some(secrets) = self.cached(max_age).await {
            return Ok(secrets);
        }
        let _one_fetch = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(secrets) = self.cached(max_age).await {
            return Ok(secrets);
        }
        let fetched = self
            .fetch
            .fetch()
            .await
            .and_then(|raw| Secrets::parse(raw.expose_secret()));
        let mut state = self.state.write().await;
        match (fetched, state.as_mut()) {
            (Ok(secrets), _) => {
                let secrets = Arc::new(secrets);
                *state = Some(Cache {
                    secrets: Arc::clone(&secrets),
                    fetched: Instant::now(),
                    failed: None,
                });
                Ok(secrets)
            }
            // Serving the last good secrets beats failing every request while the source
            // is briefly unreachable.
            (Err(err), Some(cache)) => {
                tracing::warn!(error = %err, source = self.fetch.name(), "secret refresh failed; keeping the cached secrets");
                cache.failed = Some(Instant::now());
                Ok(Arc::clone(&cache.secrets))
            }
            (Err(err), None) => Err(err),
        }
    }
}

#[async_trait]
impl<F: Fetch> SecretSource for Cached<F> {
    fn name(&self) -> &'static str {
        self.fetch.name()
    }

    async fn current(&self) -> Result<Arc<Secrets>, SecretError> {
        self.load(self.ttl).await
    }

    async fn refresh(&self) -> Result<Arc<Secrets>, SecretError> {
        self.load(self.retry_interval()).await
    }
}

/// AWS Secrets Manager: one JSON secret. The client is built on first use, so a cold start
/// makes no network call until a request needs a secret.
/// `JARVIS_SECRETS` or a local file.
#[derive(Debug)]
enum LocalDocument {
    Inline(SecretString),
    File(PathBuf),
}

#[async_trait]
impl Fetch for LocalDocument {
    fn name(&self) -> &'static str {
        match self {
            Self::Inline(_) => "environment",
            Self::File(_) => "file",
        }
    }

    async fn fetch(&self) -> Result<SecretString, SecretError> {
        match self {
            Self::Inline(value) => Ok(value.clone()),
            Self::File(path) => tokio::fs::read_to_string(path)
                .await
                .map(SecretString::from)
                .map_err(|e| SecretError::Unreachable {
                    source_name: "file",
                    cause: format!("{}: {e}", path.display()).into(),
                }),
        }
    }
}

/// No source configured.
#[derive(Debug)]
struct Unconfigured;

#[async_trait]
impl SecretSource for Unconfigured {
    fn name(&self) -> &'static str {
        "none"
    }

    async fn current(&self) -> Result<Arc<Secrets>, SecretError> {
        Err(SecretError::NotConfigured)
    }

    async fn refresh(&self) -> Result<Arc<Secrets>, SecretError> {
        Err(SecretError::NotConfigured)
    }
}

/// How long local documents are cached: a rotated file is picked up within this time.
const LOCAL_TTL: Duration = Duration::from_secs(60);

/// The source the configuration names. Makes no network call and reads no file yet.
pub fn source(config: &SecretsConfig) -> Arc<dyn SecretSource> {
    match config {
        SecretsConfig::AwsSecretsManager {
            secret_id,
            aws,
            ttl,
        } => Arc::new(Cached::new(
            aws::SecretsManager::new(secret_id.clone(), aws.clone()),
            *ttl,
        )),
        SecretsConfig::Inline(value) => {
            Arc::new(Cached::new(LocalDocument::Inline(value.clone()), LOCAL_TTL))
        }
        SecretsConfig::File(path) => {
            Arc::new(Cached::new(LocalDocument::File(path.clone()), LOCAL_TTL))
        }
        SecretsConfig::Missing => Arc::new(Unconfigured),
    }
}

/// Creates the local secrets file with a random master key (mode 0600) unless it exists;
/// returns whether it was created. Warns when an existing file is readable by others.
pub fn ensure_local_file(path: &Path) -> std::io::Result<bool> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        jarvis_config::datadir::create_private(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            let document = serde_json::json!({ "master_key": random_token::<48>() });
            file.write_all(document.to_string().as_bytes())?;
            file.sync_all()?;
            Ok(true)
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the secrets file is readable by other users; chmod 600 it");
                }
            }
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

/// The `secrets` component of `/health`: whether the secrets can be had, from where.
#[derive(Debug, Clone)]
pub struct SecretHealth(pub Arc<dyn SecretSource>);

#[async_trait]
impl HealthCheck for SecretHealth {
    fn name(&self) -> &'static str {
        "secrets"
    }

    async fn check(&self) -> Finding {
        let finding = match self.0.current().await {
            Ok(secrets) => Finding::ok().with_detail("signing_keys", secrets.signing.len()),
            Err(err) => {
                tracing::warn!(error = %err, "secret source check failed");
                Finding::down("secrets unavailable")
            }
        };
        finding.with_detail("source", self.0.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "0123456789abcdef0123456789abcdef-master";

    fn parse(json: serde_json::Value) -> Result<Secrets, SecretError> {
        Secrets::parse(&json.to_string())
    }

    #[test]
    fn the_first_listed_key_signs_and_every_key_verifies() {
        let secrets = parse(serde_json::json!({
            "master_key": MASTER,
            "signing_keys": [
                {"kid": "new", "secret": "n".repeat(32)},
                {"kid": "old", "secret": "o".repeat(32)}
            ]
        }))
        .expect("valid");
        assert_eq!(secrets.signing_key().kid, "new");
        assert!(secrets.verification_key("old").is_some());
        assert!(secrets.verification_key(MASTER_KID).is_some());
        assert!(secrets.verification_key("other").is_none());
    }

    #[test]
    fn without_signing_keys_the_master_derived_key_signs() {
        let secrets = parse(serde_json::json!({ "master_key": MASTER })).expect("valid");
        assert_eq!(secrets.signing_key().kid, MASTER_KID);
        assert_ne!(secrets.signing_key().bytes(), MASTER.as_bytes());
    }

    #[test]
    fn invalid_documents_are_refused_without_echoing_values() {
        let short = parse(serde_json::json!({ "master_key": "short-secret-value" }))
            .expect_err("too short");
        assert!(!short.to_string().contains("short-secret-value"), "{short}");
        let wrong_type = parse(serde_json::json!({ "master_key": 12345678901234567890u64 }))
            .expect_err("number");
        assert!(!wrong_type.to_string().contains("1234"), "{wrong_type}");
        assert!(parse(serde_json::json!({ "master_key": MASTER, "extra": 1 })).is_err());
    }

    #[test]
    fn provider_keys_are_read_by_name_and_never_printed() {
        let secrets = parse(serde_json::json!({
            "master_key": MASTER,
            "providers": {
                "openai": { "api_key": "sk-provider-secret-value" },
                "anthropic": { "api_key": "sk-ant-other-value" }
            }
        }))
        .expect("valid");
        assert_eq!(
            secrets
                .provider_key("openai")
                .map(|k| k.expose_secret().to_owned()),
            Some("sk-provider-secret-value".to_owned())
        );
        assert!(secrets.provider_key("gemini").is_none());
        assert!(!format!("{secrets:?}").contains("provider-secret"));
        for bad in [
            serde_json::json!({ "master_key": MASTER, "providers": { "Open AI": { "api_key": "k" } } }),
            serde_json::json!({ "master_key": MASTER, "providers": { "openai": { "api_key": " " } } }),
            serde_json::json!({ "master_key": MASTER, "providers": { "openai": { "key": "k" } } }),
        ] {
            assert!(parse(bad).is_err());
        }
    }

    #[test]
    fn sealed_data_opens_only_in_its_context_and_under_its_key() {
        let secrets = parse(serde_json::json!({ "master_key": MASTER })).expect("valid");
        let sealed = secrets.seal("user-a", b"JBSWY3DPEHPK3PXP").expect("seal");
        assert_eq!(
            secrets.open("user-a", &sealed).as_deref(),
            Some(&b"JBSWY3DPEHPK3PXP"[..])
        );
        assert!(
            secrets.open("user-b", &sealed).is_none(),
            "moved to another user"
        );
        let other = parse(serde_json::json!({ "master_key": "x".repeat(40) })).expect("valid");
        assert!(
            other.open("user-a", &sealed).is_none(),
            "another master key"
        );
        let mut tampered = STANDARD.decode(&sealed).expect("b64");
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(secrets.open("user-a", &STANDARD.encode(tampered)).is_none());
    }

    #[test]
    fn debug_output_shows_key_ids_only() {
        let secrets = parse(serde_json::json!({
            "master_key": MASTER,
            "signing_keys": [{"kid": "k1", "secret": "s".repeat(40)}],
            "sync_token": "sync-token-value-123"
        }))
        .expect("valid");
        let printed = format!("{secrets:?} {:?}", secrets.signing_key());
        assert!(printed.contains("k1"));
        for secret in [MASTER, &"s".repeat(40), "sync-token-value-123"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    /// Counts fetches; answers with `document` until `fail` is set.
    #[derive(Debug)]
    struct Flaky {
        fetches: std::sync::atomic::AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl Fetch for Flaky {
        fn name(&self) -> &'static str {
            "test"
        }
        async fn fetch(&self) -> Result<SecretString, SecretError> {
            use std::sync::atomic::Ordering;
            self.fetches.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(SecretError::Unreachable {
                    source_name: "test",
                    cause: "down".into(),
                });
            }
            Ok(SecretString::from(
                serde_json::json!({ "master_key": MASTER }).to_string(),
            ))
        }
    }

    #[tokio::test]
    async fn an_unreachable_source_serves_the_last_copy_without_retrying_every_request() {
        use std::sync::atomic::Ordering;
        let cached = Cached::new(
            Flaky {
                fetches: Default::default(),
                fail: Default::default(),
            },
            Duration::from_millis(200),
        );
        cached.current().await.expect("first fetch");
        cached.fetch.fail.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(250)).await;
        for _ in 0..5 {
            cached.current().await.expect("the last good copy");
        }
        assert_eq!(
            cached.fetch.fetches.load(Ordering::SeqCst),
            2,
            "one failed retry"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        cached.current().await.expect("still the last good copy");
        assert_eq!(
            cached.fetch.fetches.load(Ordering::SeqCst),
            3,
            "retried after the interval"
        );
    }

    /// The derivations are a persisted format: TOTP secrets sealed, audit chains and
    /// recovery codes hashed by one build must open and verify in every later one.
    #[test]
    fn derived_keys_are_stable_across_builds() {
        let secrets = parse(serde_json::json!({ "master_key": MASTER })).expect("valid");
        let signing = hex::encode(secrets.signing_key().bytes());
        assert_eq!(
            signing,
            "4497c9ba2eb5bbd109bc57a3181f63f8b4a0eb46d3623b9095acd8aa0c20b20a"
        );
        assert_eq!(
            secrets.audit_mac(b"jarvis"),
            "8af07c7968bfc5914907ea741a2cb1dc0d7970ac0ae69804f576649e1898f1c9"
        );
        assert_eq!(
            secrets.peppered(b"jarvis"),
            "a6b0b59174c80ab70a61ffcc1821891e5f67e5d079ed424e177bc596d8c6281b"
        );
        // Sealed by an earlier build.
        let sealed = "bxJVt2pd6prSHCvw7NzbPNzvMLnTjahxpjDfTmhhBlKqk3MfTkOIqewNeeY=";
        assert_eq!(
            secrets.open("user-a", sealed).as_deref(),
            Some(&b"JBSWY3DPEHPK3PXP"[..])
        );
    }

    #[test]
    fn the_local_file_is_created_once_with_owner_only_access() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("nested/secrets.json");
        assert!(ensure_local_file(&path).expect("create"));
        let first = std::fs::read_to_string(&path).expect("read");
        assert!(!ensure_local_file(&path).expect("exists"));
        assert_eq!(std::fs::read_to_string(&path).expect("read"), first);
        Secrets::parse(&first).expect("a valid document");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
