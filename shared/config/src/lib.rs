//! Typed configuration, read once at startup from the environment.
//!
//! Every setting has one variable, a documented default and a parser; a missing or invalid
//! value is a [`ConfigError`] naming the variable, never a panic. The reader takes any
//! iterator of `(name, value)` pairs so tests pass a map instead of touching the process
//! environment.
//!
//! Owns every setting, its variable and its default, the data directory ([`datadir`]) and
//! how AWS clients are configured (`aws`, cargo feature `aws`); changes when a setting does.
//! Imports no other Jarvis crate.
#![deny(missing_docs)]

#[cfg(feature = "aws")]
pub mod aws;
pub mod datadir;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

/// Name of the embedded libSQL database file inside the data directory.
pub const DATABASE_FILE: &str = "jarvis.db";

/// A configuration variable that is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration variable {variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it, without echoing its value.
    pub reason: String,
}

impl ConfigError {
    fn new(variable: &'static str, reason: impl Into<String>) -> Self {
        Self {
            variable,
            reason: reason.into(),
        }
    }
}

/// Where the process runs: decides defaults such as the log format and the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// Inside an AWS Lambda sandbox (`AWS_LAMBDA_FUNCTION_NAME` is set).
    Lambda,
    /// Anywhere else: `jarvis-local`, tests, `cargo lambda watch`.
    Local,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (CloudWatch-friendly).
    Json,
    /// Human-readable lines.
    Text,
}

/// Which store backend keeps the documents.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// An embedded libSQL database file.
    Libsql {
        /// Path of the database file.
        path: PathBuf,
    },
    /// A remote libSQL database (`JARVIS_LIBSQL_URL`, e.g. `libsql://db-org.turso.io`).
    LibsqlRemote {
        /// `libsql://`, `https://` or `http://` URL.
        url: String,
        /// The database's auth token (`JARVIS_LIBSQL_AUTH_TOKEN`).
        token: SecretString,
    },
    /// A DynamoDB table.
    Dynamodb {
        /// Table name (`JARVIS_DYNAMODB_TABLE`).
        table: String,
        /// Where DynamoDB is; the endpoint override is `JARVIS_DYNAMODB_ENDPOINT`, with
        /// which the table is also created when missing.
        aws: AwsTarget,
    },
}

impl StoreConfig {
    /// The backend's name: also the cargo feature of `jarvis-store` (and of each function)
    /// that builds it in.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Libsql { .. } => "libsql",
            Self::LibsqlRemote { .. } => "libsql-remote",
            Self::Dynamodb { .. } => "dynamodb",
        }
    }
}

/// Where an AWS client connects, and with which credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsTarget {
    /// An endpoint override for a local engine (DynamoDB Local, moto). With one, the region
    /// defaults to `us-east-1` and, without AWS credentials in the environment, fixed local
    /// ones are used.
    pub endpoint: Option<String>,
    /// `AWS_REGION`, when set; otherwise the SDK's default chain.
    pub region: Option<String>,
    /// Whether AWS credentials are in the environment (`AWS_ACCESS_KEY_ID`).
    pub env_credentials: bool,
}

impl AwsTarget {
    /// A local engine at `endpoint`, with fixed local credentials.
    pub fn local(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: Some(endpoint.into()),
            ..Self::default()
        }
    }
}

impl fmt::Display for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Libsql { path } => write!(f, "libsql file {}", path.display()),
            Self::LibsqlRemote { url, .. } => write!(f, "remote libsql {url}"),
            Self::Dynamodb { table, aws } => match &aws.endpoint {
                None => write!(f, "dynamodb table {table}"),
                Some(endpoint) => write!(f, "dynamodb table {table} at {endpoint}"),
            },
        }
    }
}

/// The whole configuration of a Jarvis process. Secrets inside print as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the process runs.
    pub host: Host,
    /// What metrics name this process: the Lambda function's name
    /// (`AWS_LAMBDA_FUNCTION_NAME`), else `jarvis-local`.
    pub service: String,
    /// Directory for local state (the embedded database lives here).
    pub data_dir: PathBuf,
    /// The store backend and its location.
    pub store: StoreConfig,
    /// Log line format.
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info` or `jarvis_store=debug,info`.
    pub log_filter: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// This deployment's replica name (`JARVIS_REPLICA_ID`): the actor of every CRDT change
    /// made here, and the name peers know it by.
    pub replica_id: String,
    /// Whether no replica id was configured on a host with a data directory: the host then
    /// uses the one generated for its data directory ([`crate::datadir::replica_id`]), so
    /// two laptops never share the default.
    pub replica_id_from_data_dir: bool,
    /// Sync between deployments.
    pub sync: SyncConfig,
    /// Where secrets (signing keys, the master key) come from.
    pub secrets: SecretsConfig,
    /// Request security: token audience, rate limits, lockout, CORS.
    pub security: SecurityConfig,
}

/// Where the process reads its secrets from. See [`jarvis_secrets`] for the format.
#[derive(Debug, Clone)]
pub enum SecretsConfig {
    /// One JSON secret in AWS Secrets Manager (`JARVIS_SECRET_ID`), cached for `ttl`
    /// (`JARVIS_SECRETS_TTL` seconds).
    AwsSecretsManager {
        /// Name or ARN of the secret.
        secret_id: String,
        /// Where Secrets Manager is; the endpoint override (`JARVIS_SECRETS_ENDPOINT`) is
        /// for a local stand-in such as a moto server.
        aws: AwsTarget,
        /// How long a fetched secret is used before it is fetched again.
        ttl: Duration,
    },
    /// The JSON document itself, in `JARVIS_SECRETS`.
    Inline(SecretString),
    /// A JSON file (`JARVIS_SECRETS_FILE`, or `secrets.json` in the data directory), which
    /// `jarvis-local` creates with random values on first run.
    File(PathBuf),
    /// None configured (on Lambda without `JARVIS_SECRET_ID`): authentication answers 503.
    Missing,
}

/// Name of the local secrets file inside the data directory.
pub const SECRETS_FILE: &str = "secrets.json";

/// Default time a secret fetched from Secrets Manager is cached.
pub const DEFAULT_SECRETS_TTL: Duration = Duration::from_secs(300);

/// Request-security settings.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// `iss` of the access tokens this deployment issues and accepts (`JARVIS_TOKEN_ISSUER`).
    pub issuer: String,
    /// `aud` of the access tokens (`JARVIS_TOKEN_AUDIENCE`).
    pub audience: String,
    /// Requests per minute per principal, on every route (`JARVIS_RATE_LIMIT`).
    pub rate_limit_per_minute: u64,
    /// Requests per minute per client address on the `/auth` routes (`JARVIS_AUTH_RATE_LIMIT`).
    pub auth_rate_limit_per_minute: u64,
    /// Failed logins of one email before it is locked out (`JARVIS_LOCKOUT_THRESHOLD`).
    pub lockout_threshold: u64,
    /// How long a lockout lasts (`JARVIS_LOCKOUT_SECONDS`).
    pub lockout: Duration,
    /// Origins allowed by CORS (`JARVIS_CORS_ORIGINS`, comma-separated); none by default.
    pub cors_origins: Vec<String>,
    /// How many proxies in front of this process append to `X-Forwarded-For`
    /// (`JARVIS_TRUSTED_PROXY_HOPS`, 0 to 10, default 0: the header is ignored). The client
    /// address is the entry the outermost trusted proxy added; entries left of it are the
    /// client's own words and are never used.
    pub trusted_proxy_hops: usize,
}

/// How this deployment syncs with its peers.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The token peers present to read our change feed, and we present to theirs
    /// (`JARVIS_SYNC_TOKEN`, at least 16 characters). Without it, sync is off.
    pub token: Option<SecretString>,
    /// Base URLs of the deployments to pull from (`JARVIS_PEERS`, comma-separated).
    pub peers: Vec<String>,
    /// Seconds between pull rounds (`JARVIS_SYNC_INTERVAL`).
    pub interval: Duration,
    /// How long change-feed entries are kept (`JARVIS_FEED_RETENTION_HOURS`, default 168).
    /// A peer that has not pulled for longer catches up from full states.
    pub feed_retention: Duration,
}

/// Default seconds between pull rounds.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// Checks a peer base URL and drops a trailing slash.
pub fn parse_peer(url: &str) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(url.to_owned()),
        _ => Err(ConfigError::new(
            "JARVIS_PEERS",
            "each peer must be an http:// or https:// base URL",
        )),
    }
}

/// Default largest request body: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        // Variables whose names are not UTF-8 cannot be ours; a value of ours that is not
        // UTF-8 is reported by name.
        Self::from_env_with(Vec::new())
    }

    /// Reads the configuration from the process environment, with `overrides` (e.g. from
    /// command-line flags) taking precedence over variables of the same name.
    pub fn from_env_with(overrides: Vec<(String, String)>) -> Result<Self, ConfigError> {
        let mut vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let key = k.into_string().ok()?;
                Some((key, v.into_string().unwrap_or_else(|_| "\u{FFFD}".into())))
            })
            .collect();
        vars.extend(overrides);
        Self::from_vars(vars)
    }

    /// Reads the configuration from `(name, value)` pairs; a later pair overrides an earlier
    /// one of the same name.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let get = |name: &'static str| -> Result<Option<&str>, ConfigError> {
            match vars.get(name).map(String::as_str) {
                None => Ok(None),
                Some(v) if v.contains('\u{FFFD}') => {
                    Err(ConfigError::new(name, "is not valid UTF-8"))
                }
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => Ok(Some(v.trim())),
            }
        };

        let function = get("AWS_LAMBDA_FUNCTION_NAME")?;
        let host = if function.is_some() {
            Host::Lambda
        } else {
            Host::Local
        };
        let service = function.unwrap_or("jarvis-local").to_owned();

        let data_dir = match get("JARVIS_DATA_DIR")? {
            Some(dir) => PathBuf::from(dir),
            // The only writable place in a Lambda sandbox.
            None if host == Host::Lambda => PathBuf::from("/tmp/jarvis"),
            None => PathBuf::from(".jarvis"),
        };

        // An AWS client's target: an optional endpoint override read from `endpoint_var`.
        let aws_target = |endpoint_var: &'static str| -> Result<AwsTarget, ConfigError> {
            let endpoint = get(endpoint_var)?.map(str::to_owned);
            if let Some(url) = &endpoint
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(ConfigError::new(
                    endpoint_var,
                    "expected an http:// or https:// URL",
                ));
            }
            Ok(AwsTarget {
                endpoint,
                region: get("AWS_REGION")?.map(str::to_owned),
                env_credentials: get("AWS_ACCESS_KEY_ID")?.is_some(),
            })
        };

        let store = match get("JARVIS_STORE")?.unwrap_or("libsql") {
            "libsql" => match get("JARVIS_LIBSQL_URL")? {
                None => StoreConfig::Libsql {
                    path: data_dir.join(DATABASE_FILE),
                },
                Some(url) => {
                    let scheme_ok = ["libsql://", "https://", "http://"]
                        .iter()
                        .any(|scheme| url.len() > scheme.len() && url.starts_with(scheme));
                    if !scheme_ok || url.contains(char::is_whitespace) {
                        return Err(ConfigError::new(
                            "JARVIS_LIBSQL_URL",
                            "expected a libsql://, https:// or http:// URL",
                        ));
                    }
                    let token = get("JARVIS_LIBSQL_AUTH_TOKEN")?.ok_or_else(|| {
                        ConfigError::new(
                            "JARVIS_LIBSQL_AUTH_TOKEN",
                            "required with JARVIS_LIBSQL_URL",
                        )
                    })?;
                    StoreConfig::LibsqlRemote {
                        url: url.to_owned(),
                        token: SecretString::from(token.to_owned()),
                    }
                }
            },
            "dynamodb" => {
                let table = get("JARVIS_DYNAMODB_TABLE")?.ok_or_else(|| {
                    ConfigError::new(
                        "JARVIS_DYNAMODB_TABLE",
                        "required when JARVIS_STORE=dynamodb",
                    )
                })?;
                if !(3..=255).contains(&table.len())
                    || !table
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                {
                    return Err(ConfigError::new(
                        "JARVIS_DYNAMODB_TABLE",
                        "expected 3 to 255 characters of A-Z, a-z, 0-9, '_', '-', '.'",
                    ));
                }
                StoreConfig::Dynamodb {
                    table: table.to_owned(),
                    aws: aws_target("JARVIS_DYNAMODB_ENDPOINT")?,
                }
            }
            _ => {
                return Err(ConfigError::new(
                    "JARVIS_STORE",
                    "unknown backend; expected \"libsql\" or \"dynamodb\"",
                ));
            }
        };

        let log_format = match get("JARVIS_LOG_FORMAT")? {
            None if host == Host::Lambda => LogFormat::Json,
            None => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(_) => {
                return Err(ConfigError::new(
                    "JARVIS_LOG_FORMAT",
                    "expected \"json\" or \"text\"",
                ));
            }
        };

        let log_filter = match get("JARVIS_LOG")? {
            Some(filter) => filter.to_owned(),
            None => get("RUST_LOG")?.unwrap_or("info").to_owned(),
        };

        let max_body_bytes = match get("JARVIS_MAX_BODY_BYTES")? {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(ConfigError::new(
                        "JARVIS_MAX_BODY_BYTES",
                        "expected a positive number of bytes",
                    ));
                }
            },
        };

        let replica_id_from_data_dir = get("JARVIS_REPLICA_ID")?.is_none() && host != Host::Lambda;
        let replica_id = match get("JARVIS_REPLICA_ID")? {
            Some(id) => id.to_owned(),
            // One deployment per region on AWS; a laptop is "local".
            None if host == Host::Lambda => get("AWS_REGION")?.unwrap_or("aws").to_owned(),
            None => "local".to_owned(),
        };
        if !(1..=64).contains(&replica_id.len())
            || !replica_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(ConfigError::new(
                "JARVIS_REPLICA_ID",
                "expected 1 to 64 characters of letters, digits, '_', '-' or '.'",
            ));
        }

        let token = match get("JARVIS_SYNC_TOKEN")? {
            Some(token) if token.len() < 16 => {
                return Err(ConfigError::new(
                    "JARVIS_SYNC_TOKEN",
                    "must be at least 16 characters",
                ));
            }
            Some(token) => Some(SecretString::from(token.to_owned())),
            None => None,
        };
        let peers = match get("JARVIS_PEERS")? {
            Some(list) => list
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(parse_peer)
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let interval = match get("JARVIS_SYNC_INTERVAL")? {
            None => DEFAULT_SYNC_INTERVAL,
            Some(raw) => match raw.parse::<u64>() {
                Ok(secs) if (1..=86_400).contains(&secs) => Duration::from_secs(secs),
                _ => {
                    return Err(ConfigError::new(
                        "JARVIS_SYNC_INTERVAL",
                        "expected 1 to 86400 seconds",
                    ));
                }
            },
        };

        let number =
            |name: &'static str, default: u64, range: std::ops::RangeInclusive<u64>| match get(
                name,
            )? {
                None => Ok(default),
                Some(raw) => match raw.parse::<u64>() {
                    Ok(n) if range.contains(&n) => Ok(n),
                    _ => Err(ConfigError::new(
                        name,
                        format!(
                            "expected a whole number from {} to {}",
                            range.start(),
                            range.end()
                        ),
                    )),
                },
            };

        let secrets = if let Some(secret_id) = get("JARVIS_SECRET_ID")? {
            SecretsConfig::AwsSecretsManager {
                secret_id: secret_id.to_owned(),
                aws: aws_target("JARVIS_SECRETS_ENDPOINT")?,
                ttl: Duration::from_secs(number(
                    "JARVIS_SECRETS_TTL",
                    DEFAULT_SECRETS_TTL.as_secs(),
                    1..=86_400,
                )?),
            }
        } else if let Some(inline) = get("JARVIS_SECRETS")? {
            SecretsConfig::Inline(SecretString::from(inline.to_owned()))
        } else if let Some(path) = get("JARVIS_SECRETS_FILE")? {
            SecretsConfig::File(PathBuf::from(path))
        } else if host == Host::Lambda {
            SecretsConfig::Missing
        } else {
            SecretsConfig::File(data_dir.join(SECRETS_FILE))
        };

        let cors_origins = match get("JARVIS_CORS_ORIGINS")? {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|origin| {
                    let rest = origin
                        .strip_prefix("https://")
                        .or_else(|| origin.strip_prefix("http://"));
                    match rest {
                        Some(host) if !host.is_empty() && !host.contains('/') => {
                            Ok(origin.to_owned())
                        }
                        _ => Err(ConfigError::new(
                            "JARVIS_CORS_ORIGINS",
                            "each origin must be scheme://host[:port], e.g. https://app.example.com",
                        )),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let security = SecurityConfig {
            issuer: get("JARVIS_TOKEN_ISSUER")?.unwrap_or("jarvis").to_owned(),
            audience: get("JARVIS_TOKEN_AUDIENCE")?
                .unwrap_or("jarvis-api")
                .to_owned(),
            rate_limit_per_minute: number("JARVIS_RATE_LIMIT", 600, 1..=1_000_000)?,
            auth_rate_limit_per_minute: number("JARVIS_AUTH_RATE_LIMIT", 30, 1..=1_000_000)?,
            lockout_threshold: number("JARVIS_LOCKOUT_THRESHOLD", 5, 1..=1_000)?,
            lockout: Duration::from_secs(number("JARVIS_LOCKOUT_SECONDS", 900, 1..=86_400)?),
            cors_origins,
            // At most 10, so the value always fits in a usize.
            trusted_proxy_hops: usize::try_from(number("JARVIS_TRUSTED_PROXY_HOPS", 0, 0..=10)?)
                .unwrap_or(0),
        };

        Ok(Self {
            host,
            service,
            data_dir,
            store,
            log_format,
            log_filter,
            max_body_bytes,
            replica_id,
            replica_id_from_data_dir,
            sync: SyncConfig {
                token,
                peers,
                interval,
                feed_retention: Duration::from_secs(
                    number("JARVIS_FEED_RETENTION_HOURS", 168, 1..=8_760)? * 3_600,
                ),
            },
            secrets,
            security,
        })
    }

    /// Moves the data directory (and the embedded database inside it) elsewhere.
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        let previous = std::mem::replace(&mut self.data_dir, dir.into());
        if let StoreConfig::Libsql { path } = &mut self.store {
            *path = self.data_dir.join(DATABASE_FILE);
        }
        if let SecretsConfig::File(path) = &mut self.secrets
            && *path == previous.join(SECRETS_FILE)
        {
            *path = self.data_dir.join(SECRETS_FILE);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_suit_a_laptop() {
        let c = config(&[]).expect("defaults are valid");
        assert_eq!(c.host, Host::Local);
        assert_eq!(c.data_dir, PathBuf::from(".jarvis"));
        assert!(matches!(
            c.store,
            StoreConfig::Libsql { path } if path == std::path::Path::new(".jarvis/jarvis.db")
        ));
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.log_filter, "info");
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.replica_id, "local");
    }

    #[test]
    fn lambda_sandbox_logs_json_and_keeps_data_in_tmp() {
        let c = config(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "jarvis-system"),
            ("AWS_REGION", "eu-west-1"),
        ])
        .expect("valid");
        assert_eq!(c.host, Host::Lambda);
        assert_eq!(c.service, "jarvis-system");
        assert_eq!(c.replica_id, "eu-west-1");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/jarvis"));
    }

    #[test]
    fn invalid_values_name_their_variable() {
        let cases = [
            ("JARVIS_STORE", "mongodb"),
            ("JARVIS_LOG_FORMAT", "xml"),
            ("JARVIS_MAX_BODY_BYTES", "-1"),
            ("JARVIS_MAX_BODY_BYTES", "0"),
            ("JARVIS_REPLICA_ID", "has space"),
        ];
        for (name, value) in cases {
            let err = config(&[(name, value)]).expect_err("must be rejected");
            assert_eq!(err.variable, name);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn a_remote_libsql_url_needs_its_token_which_is_never_printed() {
        let err =
            config(&[("JARVIS_LIBSQL_URL", "libsql://db.example.com")]).expect_err("no token");
        assert_eq!(err.variable, "JARVIS_LIBSQL_AUTH_TOKEN");
        let err = config(&[
            ("JARVIS_LIBSQL_URL", "postgres://x"),
            ("JARVIS_LIBSQL_AUTH_TOKEN", "t"),
        ])
        .expect_err("scheme");
        assert_eq!(err.variable, "JARVIS_LIBSQL_URL");
        let c = config(&[
            ("JARVIS_LIBSQL_URL", "libsql://db.example.com"),
            ("JARVIS_LIBSQL_AUTH_TOKEN", "eyJ-very-secret-token"),
        ])
        .expect("valid");
        assert!(matches!(c.store, StoreConfig::LibsqlRemote { .. }));
        assert!(!format!("{c:?}").contains("very-secret"));
        assert!(!c.store.to_string().contains("very-secret"));
    }

    #[test]
    fn dynamodb_needs_a_valid_table_name() {
        let err = config(&[("JARVIS_STORE", "dynamodb")]).expect_err("no table");
        assert_eq!(err.variable, "JARVIS_DYNAMODB_TABLE");
        let err = config(&[
            ("JARVIS_STORE", "dynamodb"),
            ("JARVIS_DYNAMODB_TABLE", "a b"),
        ])
        .expect_err("bad name");
        assert_eq!(err.variable, "JARVIS_DYNAMODB_TABLE");
        let c = config(&[
            ("JARVIS_STORE", "dynamodb"),
            ("JARVIS_DYNAMODB_TABLE", "jarvis-documents"),
            ("JARVIS_DYNAMODB_ENDPOINT", "http://127.0.0.1:8000"),
        ])
        .expect("valid");
        assert!(matches!(
            c.store,
            StoreConfig::Dynamodb { table, aws }
                if table == "jarvis-documents" && aws == AwsTarget::local("http://127.0.0.1:8000")
        ));
    }

    #[test]
    fn the_secret_source_follows_what_is_configured() {
        let local = config(&[("JARVIS_DATA_DIR", "/data")]).expect("local");
        assert!(
            matches!(&local.secrets, SecretsConfig::File(p) if p == Path::new("/data/secrets.json"))
        );
        let moved = local.with_data_dir("/elsewhere");
        assert!(
            matches!(&moved.secrets, SecretsConfig::File(p) if p == Path::new("/elsewhere/secrets.json"))
        );
        let lambda = config(&[("AWS_LAMBDA_FUNCTION_NAME", "auth")]).expect("lambda");
        assert!(
            matches!(lambda.secrets, SecretsConfig::Missing),
            "never a file on Lambda"
        );
        let aws = config(&[
            ("JARVIS_SECRET_ID", "jarvis/secrets"),
            ("JARVIS_SECRETS_TTL", "60"),
        ])
        .expect("aws");
        assert!(matches!(
            aws.secrets,
            SecretsConfig::AwsSecretsManager { ref secret_id, ttl, .. }
                if secret_id == "jarvis/secrets" && ttl == Duration::from_secs(60)
        ));
        let document = r#"{"master_key":"inline-secret-value-0123456789abcdef"}"#;
        let inline = config(&[("JARVIS_SECRETS", document)]).expect("inline");
        assert!(matches!(inline.secrets, SecretsConfig::Inline(_)));
        assert!(
            !format!("{inline:?}").contains("inline-secret-value"),
            "inline secrets never print"
        );
    }

    #[test]
    fn security_settings_are_read_and_checked() {
        let c = config(&[
            (
                "JARVIS_CORS_ORIGINS",
                "https://app.example.com, http://localhost:5173",
            ),
            ("JARVIS_RATE_LIMIT", "100"),
            ("JARVIS_LOCKOUT_SECONDS", "60"),
        ])
        .expect("valid");
        assert_eq!(
            c.security.cors_origins,
            ["https://app.example.com", "http://localhost:5173"]
        );
        assert_eq!(c.security.rate_limit_per_minute, 100);
        assert_eq!(c.security.lockout, Duration::from_secs(60));
        for (name, value) in [
            ("JARVIS_CORS_ORIGINS", "app.example.com"),
            ("JARVIS_CORS_ORIGINS", "https://app.example.com/path"),
            ("JARVIS_RATE_LIMIT", "0"),
            ("JARVIS_AUTH_RATE_LIMIT", "many"),
            ("JARVIS_TRUSTED_PROXY_HOPS", "11"),
            ("JARVIS_SECRETS_ENDPOINT", "localhost:5000"),
        ] {
            let mut vars = vec![(name, value)];
            if name == "JARVIS_SECRETS_ENDPOINT" {
                vars.push(("JARVIS_SECRET_ID", "s"));
            }
            let err = config(&vars).expect_err(value);
            assert_eq!(err.variable, name, "{err}");
        }
    }

    #[test]
    fn sync_settings_are_read_and_checked() {
        let c = config(&[
            ("JARVIS_SYNC_TOKEN", "0123456789abcdef-secret"),
            (
                "JARVIS_PEERS",
                "http://127.0.0.1:9001/, https://eu.example.com",
            ),
            ("JARVIS_SYNC_INTERVAL", "5"),
        ])
        .expect("valid");
        assert_eq!(
            c.sync.peers,
            ["http://127.0.0.1:9001", "https://eu.example.com"]
        );
        assert_eq!(c.sync.interval, Duration::from_secs(5));
        assert!(
            !format!("{c:?}").contains("0123456789abcdef"),
            "token never printed"
        );
        for (name, value) in [
            ("JARVIS_SYNC_TOKEN", "short"),
            ("JARVIS_PEERS", "ftp://x"),
            ("JARVIS_SYNC_INTERVAL", "0"),
        ] {
            assert_eq!(
                config(&[(name, value)]).expect_err("invalid").variable,
                name
            );
        }
    }

    #[test]
    fn error_does_not_echo_the_value() {
        let err = config(&[("JARVIS_LOG_FORMAT", "s3cr3t-looking-value")]).expect_err("invalid");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn blank_values_fall_back_to_defaults() {
        let c = config(&[("JARVIS_DATA_DIR", "  "), ("JARVIS_LOG", "")]).expect("valid");
        assert_eq!(c.data_dir, PathBuf::from(".jarvis"));
        assert_eq!(c.log_filter, "info");
    }

    #[test]
    fn moving_the_data_dir_moves_the_database() {
        let c = config(&[]).expect("valid").with_data_dir("/var/lib/jarvis");
        assert!(matches!(
            c.store,
            StoreConfig::Libsql { path } if path == std::path::Path::new("/var/lib/jarvis/jarvis.db")
        ));
    }
}
