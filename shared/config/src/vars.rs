//! The environment variables, one typed struct per concern, read by `serde` derive through
//! `figment`.
//!
//! A variable `JARVIS_RATE_LIMIT` is the field `rate_limit` of the struct of its concern;
//! the few variables Jarvis reads from outside its namespace (`AWS_REGION`, `RUST_LOG`…)
//! keep their whole name, lowercased. Each value type below checks its own rule and says
//! what it expects without repeating the value, and figment reports which field failed, so
//! every error names its variable. Rules between variables (a remote libSQL URL needs its
//! token) are checked where the structs are assembled, in the crate root.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use figment::Figment;
use figment::error::Kind;
use figment::providers::Serialized;
use secrecy::SecretString;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::{ConfigError, LogFormat};

/// The prefix of every variable of Jarvis's own.
const PREFIX: &str = "JARVIS_";

/// Variables read from outside the `JARVIS_` namespace.
const FOREIGN: [&str; 4] = [
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "RUST_LOG",
];

/// The variables of one process, keyed by field name, ready to be read into each struct.
pub(crate) struct Vars(Figment);

impl Vars {
    /// Keeps the variables Jarvis reads. A blank value counts as unset; a value that is not
    /// UTF-8 (marked with U+FFFD by the caller) is refused by name.
    pub(crate) fn new(vars: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut fields = BTreeMap::new();
        for (name, value) in vars {
            let field = if let Some(rest) = name.strip_prefix(PREFIX) {
                rest.to_ascii_lowercase()
            } else if FOREIGN.contains(&name.as_str()) {
                name.to_ascii_lowercase()
            } else {
                continue;
            };
            if value.contains('\u{FFFD}') {
                return Err(ConfigError::new(name, "is not valid UTF-8"));
            }
            let value = value.trim();
            if !value.is_empty() {
                fields.insert(field, value.to_owned());
            }
        }
        Ok(Self(Figment::from(Serialized::defaults(fields))))
    }

    /// Reads the struct of one concern.
    pub(crate) fn read<'de, T: Deserialize<'de>>(&self) -> Result<T, ConfigError> {
        self.0.extract().map_err(|err| {
            let field = err.path.first().cloned().unwrap_or_default();
            let variable = if FOREIGN.iter().any(|name| name.eq_ignore_ascii_case(&field)) {
                field.to_ascii_uppercase()
            } else {
                format!("{PREFIX}{}", field.to_ascii_uppercase())
            };
            // Figment's own messages quote the value; these name only what was expected.
            let reason = match err.kind {
                Kind::Message(message) => message,
                Kind::UnknownVariant(_, expected) => {
                    format!("expected one of: {}", expected.join(", "))
                }
                Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
                    format!("expected {expected}")
                }
                _ => "is not valid".to_owned(),
            };
            ConfigError::new(variable, reason)
        })
    }
}

/// Where the process runs and how it logs.
#[derive(Deserialize)]
pub(crate) struct HostVars {
    /// `AWS_LAMBDA_FUNCTION_NAME`: set inside a Lambda sandbox.
    pub aws_lambda_function_name: Option<String>,
    /// `AWS_REGION`.
    pub aws_region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`: only whether it is set matters here.
    pub aws_access_key_id: Option<IgnoredAny>,
    /// `JARVIS_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `JARVIS_REPLICA_ID`.
    pub replica_id: Option<ReplicaId>,
    /// `JARVIS_LOG_FORMAT`.
    pub log_format: Option<LogFormat>,
    /// `JARVIS_LOG`, else `RUST_LOG`.
    pub log: Option<String>,
    /// `RUST_LOG`.
    pub rust_log: Option<String>,
}

/// What one HTTP request may use.
#[derive(Deserialize)]
pub(crate) struct HttpVars {
    /// `JARVIS_MAX_BODY_BYTES`.
    pub max_body_bytes: Option<Whole<1, { usize::MAX as u64 }>>,
    /// `JARVIS_REQUEST_TIMEOUT_SECONDS`.
    pub request_timeout_seconds: Option<Whole<1, 900>>,
}

/// Which store keeps the documents.
#[derive(Deserialize)]
pub(crate) struct StoreVars {
    /// `JARVIS_STORE`.
    #[serde(default)]
    pub store: Backend,
    /// `JARVIS_LIBSQL_URL`.
    pub libsql_url: Option<LibsqlUrl>,
    /// `JARVIS_LIBSQL_AUTH_TOKEN`.
    pub libsql_auth_token: Option<SecretString>,
    /// `JARVIS_DYNAMODB_TABLE`.
    pub dynamodb_table: Option<TableName>,
    /// `JARVIS_DYNAMODB_ENDPOINT`.
    pub dynamodb_endpoint: Option<Endpoint>,
}

/// `JARVIS_STORE`: the backends one can name.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Backend {
    /// libSQL: the embedded file, or a remote database with `JARVIS_LIBSQL_URL`.
    #[default]
    Libsql,
    /// DynamoDB.
    Dynamodb,
}

/// Where the secrets come from.
#[derive(Deserialize)]
pub(crate) struct SecretsVars {
    /// `JARVIS_SECRET_ID`.
    pub secret_id: Option<String>,
    /// `JARVIS_SECRETS_ENDPOINT`.
    pub secrets_endpoint: Option<Endpoint>,
    /// `JARVIS_SECRETS_TTL`, seconds.
    pub secrets_ttl: Option<Whole<1, 86_400>>,
    /// `JARVIS_SECRETS`.
    pub secrets: Option<SecretString>,
    /// `JARVIS_SECRETS_FILE`.
    pub secrets_file: Option<PathBuf>,
}

/// Request security.
#[derive(Deserialize)]
pub(crate) struct SecurityVars {
    /// `JARVIS_TOKEN_ISSUER`.
    pub token_issuer: Option<String>,
    /// `JARVIS_TOKEN_AUDIENCE`.
    pub token_audience: Option<String>,
    /// `JARVIS_RATE_LIMIT`, requests per minute.
    pub rate_limit: Option<Whole<1, 1_000_000>>,
    /// `JARVIS_AUTH_RATE_LIMIT`, requests per minute.
    pub auth_rate_limit: Option<Whole<1, 1_000_000>>,
    /// `JARVIS_LOCKOUT_THRESHOLD`, failed logins.
    pub lockout_threshold: Option<Whole<1, 1_000>>,
    /// `JARVIS_LOCKOUT_SECONDS`.
    pub lockout_seconds: Option<Whole<1, 86_400>>,
    /// `JARVIS_CORS_ORIGINS`.
    #[serde(default)]
    pub cors_origins: List<Origin>,
    /// `JARVIS_TRUSTED_PROXY_HOPS`.
    pub trusted_proxy_hops: Option<Whole<0, 10>>,
}

/// Sync with peer deployments.
#[derive(Deserialize)]
pub(crate) struct SyncVars {
    /// `JARVIS_SYNC_TOKEN`.
    pub sync_token: Option<SyncToken>,
    /// `JARVIS_PEERS`.
    #[serde(default)]
    pub peers: List<Peer>,
    /// `JARVIS_SYNC_INTERVAL`, seconds.
    pub sync_interval: Option<Whole<1, 86_400>>,
    /// `JARVIS_FEED_RETENTION_HOURS`.
    pub feed_retention_hours: Option<Whole<1, 8_760>>,
}

/// The AI provider layer.
#[derive(Deserialize)]
pub(crate) struct AiVars {
    /// `JARVIS_AI_MODELS`: `alias=provider:model,provider:model;alias=…`.
    #[serde(default)]
    pub ai_models: Aliases,
    /// `JARVIS_AI_OPENAI_URL`.
    pub ai_openai_url: Option<Endpoint>,
    /// `JARVIS_AI_ANTHROPIC_URL`.
    pub ai_anthropic_url: Option<Endpoint>,
    /// `JARVIS_AI_GEMINI_URL`.
    pub ai_gemini_url: Option<Endpoint>,
    /// `JARVIS_AI_SERVERS`: `name=url,…`, further OpenAI-compatible servers.
    #[serde(default)]
    pub ai_servers: List<Server>,
    /// `JARVIS_AI_LOCAL_DIR`: where the local models' files are.
    pub ai_local_dir: Option<PathBuf>,
    /// `JARVIS_AI_PRICES`: `provider:model=input/output,…`, dollars per million tokens.
    #[serde(default)]
    pub ai_prices: List<PriceEntry>,
    /// `JARVIS_AI_QUOTA_SHARE_PERCENT`: this deployment's share of every token budget.
    pub ai_quota_share_percent: Option<Whole<0, 100>>,
    /// `JARVIS_AI_BREAKER_THRESHOLD`: consecutive failures that open a model's breaker.
    pub ai_breaker_threshold: Option<Whole<1, 1000>>,
    /// `JARVIS_AI_BREAKER_COOLDOWN_SECS`: how long an open breaker skips its model.
    pub ai_breaker_cooldown_secs: Option<Whole<1, 86_400>>,
    /// `JARVIS_AI_SCRIPT`: the script file of the scripted provider's `script` model.
    pub ai_script: Option<PathBuf>,
}

/// `provider:model=input/output` of the price table, in dollars per million tokens.
pub(crate) struct PriceEntry(pub String, pub String, pub f64, pub f64);

impl Rule for PriceEntry {
    fn check(value: String) -> Result<Self, &'static str> {
        const SHAPE: &str = "each price is provider:model=input/output, dollars per million \
             tokens (e.g. openai:gpt-4o=2.5/10)";
        let (target, prices) = value.split_once('=').ok_or(SHAPE)?;
        let (provider, model) = target.trim().split_once(':').ok_or(SHAPE)?;
        let (input, output) = prices.trim().split_once('/').ok_or(SHAPE)?;
        let dollars = |p: &str| {
            p.trim()
                .parse::<f64>()
                .ok()
                .filter(|d| d.is_finite() && (0.0..=1_000_000.0).contains(d))
        };
        let model = model.trim();
        match (dollars(input), dollars(output)) {
            (Some(i), Some(o))
                if is_name(provider.trim())
                    && !model.is_empty()
                    && !model.contains(char::is_whitespace) =>
            {
                Ok(Self(provider.trim().to_owned(), model.to_owned(), i, o))
            }
            _ => Err(SHAPE),
        }
    }
}

/// `JARVIS_AI_MODELS`, parsed: each alias and its targets in order.
#[derive(Default)]
pub(crate) struct Aliases(pub Vec<(String, Vec<(String, String)>)>);

/// A name of an alias or a provider: 1 to 32 of `a-z 0-9 - _`.
fn is_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c))
}

impl<'de> Deserialize<'de> for Aliases {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const SHAPE: &str = "expected alias=provider:model[,provider:model…][;alias=…], \
             names of a-z 0-9 - _";
        let text = String::deserialize(deserializer)?;
        let mut aliases: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (alias, targets) = entry
                .split_once('=')
                .ok_or_else(|| serde::de::Error::custom(SHAPE))?;
            let alias = alias.trim();
            let targets = targets
                .split(',')
                .map(|target| {
                    let (provider, model) = target.trim().split_once(':')?;
                    let model = model.trim();
                    (is_name(provider.trim())
                        && !model.is_empty()
                        && !model.contains(char::is_whitespace))
                    .then(|| (provider.trim().to_owned(), model.to_owned()))
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| serde::de::Error::custom(SHAPE))?;
            if !is_name(alias) || aliases.iter().any(|(a, _)| a == alias) {
                return Err(serde::de::Error::custom(
                    "expected each alias once, named with a-z 0-9 - _",
                ));
            }
            aliases.push((alias.to_owned(), targets));
        }
        Ok(Self(aliases))
    }
}

/// `name=url` of an OpenAI-compatible server.
pub(crate) struct Server(pub String, pub String);

impl Rule for Server {
    fn check(value: String) -> Result<Self, &'static str> {
        const SHAPE: &str = "each server is name=http(s)://base-url, names of a-z 0-9 - _";
        let (name, url) = value.split_once('=').ok_or(SHAPE)?;
        let (name, url) = (name.trim(), url.trim().trim_end_matches('/'));
        if is_name(name) && has_scheme(url, &["https://", "http://"]) {
            Ok(Self(name.to_owned(), url.to_owned()))
        } else {
            Err(SHAPE)
        }
    }
}

/// A value checked by a rule of its own: `Self::check` says what it expects on failure.
trait Rule: Sized {
    fn check(value: String) -> Result<Self, &'static str>;
}

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $rule:expr) => {
        $(#[$doc])*
        #[derive(Deserialize)]
        #[serde(try_from = "String")]
        pub(crate) struct $name(pub String);

        impl TryFrom<String> for $name {
            type Error = &'static str;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                let rule: fn(String) -> Result<String, &'static str> = $rule;
                rule(value).map(Self)
            }
        }

        impl Rule for $name {
            fn check(value: String) -> Result<Self, &'static str> {
                Self::try_from(value)
            }
        }
    };
}

/// `true` when `url` has one of `schemes`, something after it, and no whitespace.
fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    schemes
        .iter()
        .any(|scheme| url.len() > scheme.len() && url.starts_with(scheme))
        && !url.contains(char::is_whitespace)
}

checked_string!(
    /// A replica name: 1 to 64 letters, digits, `_`, `-` or `.`.
    ReplicaId,
    |id| {
        let ok = (1..=64).contains(&id.len())
            && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if ok { Ok(id) } else { Err("expected 1 to 64 characters of letters, digits, '_', '-' or '.'") }
    }
);

checked_string!(
    /// A remote libSQL database URL.
    LibsqlUrl,
    |url| {
        if has_scheme(&url, &["libsql://", "https://", "http://"]) {
            Ok(url)
        } else {
            Err("expected a libsql://, https:// or http:// URL")
        }
    }
);

checked_string!(
    /// A DynamoDB table name.
    TableName,
    |table| {
        let ok = (3..=255).contains(&table.len())
            && table.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if ok { Ok(table) } else { Err("expected 3 to 255 characters of A-Z, a-z, 0-9, '_', '-', '.'") }
    }
);

checked_string!(
    /// An endpoint override for an AWS client.
    Endpoint,
    |url| {
        if has_scheme(&url, &["https://", "http://"]) {
            Ok(url)
        } else {
            Err("expected an http:// or https:// URL")
        }
    }
);

checked_string!(
    /// An origin allowed by CORS: `scheme://host[:port]`.
    Origin,
    |origin| {
        let host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        match host {
            Some(host) if !host.is_empty() && !host.contains('/') => Ok(origin),
            _ => Err("each origin must be scheme://host[:port], e.g. https://app.example.com"),
        }
    }
);

checked_string!(
    /// A peer deployment's base URL, without a trailing slash.
    Peer,
    |url| {
        let url = url.trim_end_matches('/');
        if has_scheme(url, &["https://", "http://"]) {
            Ok(url.to_owned())
        } else {
            Err("each peer must be an http:// or https:// base URL")
        }
    }
);

/// The token of sync between deployments: at least 16 characters, never printed.
#[derive(Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct SyncToken(pub SecretString);

impl TryFrom<String> for SyncToken {
    type Error = &'static str;
    fn try_from(token: String) -> Result<Self, Self::Error> {
        if token.len() < 16 {
            Err("must be at least 16 characters")
        } else {
            Ok(Self(SecretString::from(token)))
        }
    }
}

/// A comma-separated list; blank entries are skipped, each entry obeys its own rule.
pub(crate) struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Rule> Deserialize<'de> for List<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| T::check(entry.to_owned()).map_err(serde::de::Error::custom))
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

/// A whole number from `MIN` to `MAX`, written in decimal.
pub(crate) struct Whole<const MIN: u64, const MAX: u64>(pub u64);

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Whole<MIN, MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Expecting<const MIN: u64, const MAX: u64>(PhantomData<()>);
        impl<const MIN: u64, const MAX: u64> fmt::Display for Expecting<MIN, MAX> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                if MAX == usize::MAX as u64 {
                    write!(f, "expected a whole number of at least {MIN}")
                } else {
                    write!(f, "expected a whole number from {MIN} to {MAX}")
                }
            }
        }
        match String::deserialize(deserializer)?.parse::<u64>() {
            Ok(n) if (MIN..=MAX).contains(&n) => Ok(Self(n)),
            _ => Err(serde::de::Error::custom(Expecting::<MIN, MAX>(PhantomData))),
        }
    }
}

checked_string!(
    /// A model alias's name: 1 to 32 of `a-z 0-9 - _`.
    AliasName,
    |name| if is_name(&name) { Ok(name) } else { Err("expected an alias name: 1 to 32 of a-z 0-9 - _") }
);

/// Conversations.
#[derive(Deserialize)]
pub(crate) struct ChatVars {
    /// `JARVIS_CHAT_CONTEXT_TOKENS`: one context window for every model.
    pub chat_context_tokens: Option<Whole<256, 10_000_000>>,
    /// `JARVIS_CHAT_REPLY_TOKENS`: tokens a reply may take.
    pub chat_reply_tokens: Option<Whole<16, 32_768>>,
    /// `JARVIS_CHAT_HELPER_MODEL`: the alias of titles, summaries and memory extraction.
    pub chat_helper_model: Option<AliasName>,
    /// `JARVIS_CHAT_EMBED_MODEL`: the alias embedding memories.
    pub chat_embed_model: Option<AliasName>,
    /// `JARVIS_CHAT_MEMORY_TOP_K`: memories given to a reply at most.
    pub chat_memory_top_k: Option<Whole<1, 20>>,
    /// `JARVIS_CHAT_STREAM_RETENTION_SECS`: how long stream events are kept.
    pub chat_stream_retention_secs: Option<Whole<60, 86_400>>,
}

/// Agent runs.
#[derive(Deserialize)]
pub(crate) struct AgentsVars {
    /// `JARVIS_AGENTS_MODEL`: the alias agents think with.
    pub agents_model: Option<AliasName>,
    /// `JARVIS_AGENTS_REPLY_TOKENS`: tokens one model step may answer with.
    pub agents_reply_tokens: Option<Whole<16, 32_768>>,
    /// `JARVIS_AGENTS_QUEUE_URL`: the SQS queue of runs to drive.
    pub agents_queue_url: Option<Endpoint>,
    /// `JARVIS_AGENTS_INVOCATION_SECONDS`: how long one local worker invocation drives a run.
    pub agents_invocation_seconds: Option<Whole<1, 900>>,
    /// `JARVIS_AGENTS_CONCURRENCY`: runs the local worker drives at once.
    pub agents_concurrency: Option<Whole<1, 64>>,
    /// `JARVIS_SQS_ENDPOINT`: a local SQS stand-in.
    pub sqs_endpoint: Option<Endpoint>,
}

/// Paper trading.
#[derive(Deserialize)]
pub(crate) struct TradingVars {
    /// `JARVIS_TRADING_START_CASH`: dollars a new paper account starts with.
    pub trading_start_cash: Option<Whole<1, 1_000_000_000>>,
    /// `JARVIS_TRADING_START_DATE`: the replay date a new paper account starts on.
    pub trading_start_date: Option<DateText>,
    /// `JARVIS_TRADING_MAX_ORDER_NOTIONAL`: the most an order may be worth, in dollars.
    pub trading_max_order_notional: Option<Whole<1, 1_000_000_000>>,
    /// `JARVIS_TRADING_DAILY_NOTIONAL`: the notional a user may trade a day, in dollars.
    pub trading_daily_notional: Option<Whole<1, 1_000_000_000>>,
    /// `JARVIS_TRADING_SHARE_PERCENT`: this deployment's share of every daily limit.
    pub trading_share_percent: Option<Whole<0, 100>>,
    /// `JARVIS_TRADING_ORDERS_PER_MINUTE`: orders a user may place a minute.
    pub trading_orders_per_minute: Option<Whole<1, 100_000>>,
    /// `JARVIS_TRADING_SLIPPAGE_BPS`: the paper exchange's slippage of market orders.
    pub trading_slippage_bps: Option<Whole<0, 1_000>>,
    /// `JARVIS_TRADING_FEE_BPS`: the paper exchange's fee.
    pub trading_fee_bps: Option<Whole<0, 1_000>>,
    /// `JARVIS_TRADING_PARTIAL_FILL_PERCENT`: how often a fill is partial.
    pub trading_partial_fill_percent: Option<Whole<0, 100>>,
    /// `JARVIS_TRADING_BARS_FILE`: the CSV of bars `jarvis-local` loads at start.
    pub trading_bars_file: Option<PathBuf>,
}

checked_string!(
    /// A calendar date, `yyyy-mm-dd`, that exists.
    DateText,
    |date| {
        if is_calendar_date(&date) { Ok(date) } else { Err("expected a calendar date, yyyy-mm-dd") }
    }
);

/// Whether `text` is `yyyy-mm-dd` naming a day of the Gregorian calendar.
fn is_calendar_date(text: &str) -> bool {
    let shaped = text.len() == 10
        && text.chars().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shaped {
        return false;
    }
    let number = |range: std::ops::Range<usize>| text[range].parse::<u32>().unwrap_or(0);
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    };
    year >= 1 && (1..=days).contains(&day)
}

/// Automations.
#[derive(Deserialize)]
pub(crate) struct AutomationsVars {
    /// `JARVIS_AUTOMATIONS_MAX_PER_USER`: automations one user may keep.
    pub automations_max_per_user: Option<Whole<1, 10_000>>,
}

/// The knowledge base.
#[derive(Deserialize)]
pub(crate) struct KnowledgeVars {
    /// `JARVIS_KNOWLEDGE_EMBED_MODEL`: the alias embedding chunks and queries.
    pub knowledge_embed_model: Option<AliasName>,
    /// `JARVIS_KNOWLEDGE_ANSWER_MODEL`: the alias answering questions.
    pub knowledge_answer_model: Option<AliasName>,
    /// `JARVIS_KNOWLEDGE_TRANSCRIBE_MODEL`: the alias transcribing sound files.
    pub knowledge_transcribe_model: Option<AliasName>,
    /// `JARVIS_KNOWLEDGE_VISION_MODEL`: the alias captioning images.
    pub knowledge_vision_model: Option<AliasName>,
    /// `JARVIS_KNOWLEDGE_CHUNK_TOKENS`: tokens a chunk holds at most.
    pub knowledge_chunk_tokens: Option<Whole<32, 4_096>>,
    /// `JARVIS_KNOWLEDGE_CHUNK_OVERLAP`: tokens a chunk repeats of the one before.
    pub knowledge_chunk_overlap: Option<Whole<0, 1_024>>,
    /// `JARVIS_KNOWLEDGE_MIN_SIMILARITY_PERCENT`: the least similarity of a source.
    pub knowledge_min_similarity_percent: Option<Whole<0, 100>>,
    /// `JARVIS_KNOWLEDGE_EXACT_UP_TO`: chunks per user searched exactly.
    pub knowledge_exact_up_to: Option<Whole<0, 100_000_000>>,
    /// `JARVIS_KNOWLEDGE_MAX_UPLOAD_BYTES`: the largest upload.
    pub knowledge_max_upload_bytes: Option<Whole<1, { usize::MAX as u64 }>>,
    /// `JARVIS_KNOWLEDGE_QUEUE_URL`: the SQS queue of ingestion jobs.
    pub knowledge_queue_url: Option<Endpoint>,
    /// `JARVIS_KNOWLEDGE_VECTOR_INDEX_ARN`: the S3 Vectors index of the chunks.
    pub knowledge_vector_index_arn: Option<VectorIndexArn>,
    /// `JARVIS_KNOWLEDGE_KEYWORD_TABLE`: the DynamoDB table of the chunks' words.
    pub knowledge_keyword_table: Option<TableName>,
    /// `JARVIS_DYNAMODB_ENDPOINT`: a local DynamoDB, for the keyword table.
    pub dynamodb_endpoint: Option<Endpoint>,
    /// `JARVIS_SQS_ENDPOINT`: a local SQS stand-in.
    pub sqs_endpoint: Option<Endpoint>,
    /// `JARVIS_S3VECTORS_ENDPOINT`: a local S3 Vectors stand-in.
    pub s3vectors_endpoint: Option<Endpoint>,
}

checked_string!(
    /// An S3 Vectors index ARN: `arn:<partition>:s3vectors:<region>:<account>:bucket/<b>/index/<i>`.
    VectorIndexArn,
    |arn| {
        let ok = arn.starts_with("arn:")
            && arn.contains(":s3vectors:")
            && arn.contains(":bucket/")
            && arn.contains("/index/")
            && !arn.contains(char::is_whitespace);
        if ok { Ok(arn) } else { Err("expected an S3 Vectors index ARN (arn:…:s3vectors:…:bucket/…/index/…)") }
    }
);

/// The WebSocket API.
#[derive(Deserialize)]
pub(crate) struct RealtimeVars {
    /// `JARVIS_WS_ENDPOINT`: the API Gateway management endpoint of the WebSocket API.
    pub ws_endpoint: Option<Endpoint>,
    /// `JARVIS_WS_IDLE_SECS`: idle timeout of a connection.
    pub ws_idle_secs: Option<Whole<1, 7_200>>,
    /// `JARVIS_WS_LIFETIME_SECS`: maximum lifetime of a connection.
    pub ws_lifetime_secs: Option<Whole<1, 7_200>>,
}

/// Where blobs (attachments) are kept.
#[derive(Deserialize)]
pub(crate) struct BlobVars {
    /// `JARVIS_BLOB_BUCKET`: an S3 bucket.
    pub blob_bucket: Option<BucketName>,
    /// `JARVIS_S3_ENDPOINT`: a local S3 stand-in.
    pub s3_endpoint: Option<Endpoint>,
}

checked_string!(
    /// An S3 bucket name: 3 to 63 of `a-z 0-9 . -`.
    BucketName,
    |name| {
        let ok = (3..=63).contains(&name.len())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
        if ok { Ok(name) } else { Err("expected an S3 bucket name: 3 to 63 of a-z 0-9 . -") }
    }
);
