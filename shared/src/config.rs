//! Typed configuration, read once at startup from the environment.
//!
//! Every setting has one variable, a documented default and a parser; a missing or invalid
//! value is a [`ConfigError`] naming the variable, never a panic. The reader takes any
//! iterator of `(name, value)` pairs so tests pass a map instead of touching the process
//! environment.

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
        /// Endpoint override for local engines (`JARVIS_DYNAMODB_ENDPOINT`). With an
        /// override the table is created when missing, the region defaults to `us-east-1`
        /// and, without AWS credentials in the environment, fixed local ones are used.
        endpoint: Option<String>,
        /// `AWS_REGION`, when set.
        region: Option<String>,
        /// Whether AWS credentials are in the environment (`AWS_ACCESS_KEY_ID`).
        env_credentials: bool,
    },
}

impl fmt::Display for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Libsql { path } => write!(f, "libsql file {}", path.display()),
            Self::LibsqlRemote { url, .. } => write!(f, "remote libsql {url}"),
            Self::Dynamodb {
                table,
                endpoint: None,
                ..
            } => write!(f, "dynamodb table {table}"),
            Self::Dynamodb {
                table,
                endpoint: Some(endpoint),
                ..
            } => write!(f, "dynamodb table {table} at {endpoint}"),
        }
    }
}

/// The whole configuration of a Jarvis process. Secrets inside print as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the process runs.
    pub host: Host,
    /// Directory for local state (the embedded database lives here).
    pub data_dir: PathBuf,
    /// The store backend and its location.
    pub store: StoreConfig,
    /// Log line format.
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info` or `jarvis_shared=debug,info`.
    pub log_filter: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// This deployment's replica name (`JARVIS_REPLICA_ID`): the actor of every CRDT change
    /// made here, and the name peers know it by.
    pub replica_id: String,
    /// Sync between deployments.
    pub sync: SyncConfig,
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

        let host = if get("AWS_LAMBDA_FUNCTION_NAME")?.is_some() {
            Host::Lambda
        } else {
            Host::Local
        };

        let data_dir = match get("JARVIS_DATA_DIR")? {
            Some(dir) => PathBuf::from(dir),
            // The only writable place in a Lambda sandbox.
            None if host == Host::Lambda => PathBuf::from("/tmp/jarvis"),
            None => PathBuf::from(".jarvis"),
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
                let endpoint = get("JARVIS_DYNAMODB_ENDPOINT")?.map(str::to_owned);
                if let Some(url) = &endpoint
                    && !(url.starts_with("http://") || url.starts_with("https://"))
                {
                    return Err(ConfigError::new(
                        "JARVIS_DYNAMODB_ENDPOINT",
                        "expected an http:// or https:// URL",
                    ));
                }
                StoreConfig::Dynamodb {
                    table: table.to_owned(),
                    endpoint,
                    region: get("AWS_REGION")?.map(str::to_owned),
                    env_credentials: get("AWS_ACCESS_KEY_ID")?.is_some(),
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

        Ok(Self {
            host,
            data_dir,
            store,
            log_format,
            log_filter,
            max_body_bytes,
            replica_id,
            sync: SyncConfig {
                token,
                peers,
                interval,
            },
        })
    }

    /// Moves the data directory (and the embedded database inside it) elsewhere.
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = dir.into();
        if let StoreConfig::Libsql { path } = &mut self.store {
            *path = self.data_dir.join(DATABASE_FILE);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            StoreConfig::Dynamodb { table, endpoint: Some(endpoint), region: None, env_credentials: false }
                if table == "jarvis-documents" && endpoint == "http://127.0.0.1:8000"
        ));
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
