//! Typed configuration, read once at startup from the environment.
//!
//! Every setting has one variable, a documented default and a typed field in the struct of
//! its concern (`vars`, read with `serde` derive through `figment`); a missing or invalid
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
mod vars;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use vars::{
    AgentsVars, AiVars, AutomationsVars, Backend, BlobVars, ChatVars, HostVars, HttpVars,
    KnowledgeVars, RealtimeVars, SecretsVars, SecurityVars, StoreVars, SyncVars, TradingVars, Vars,
};

/// Name of the embedded libSQL database file inside the data directory.
pub const DATABASE_FILE: &str = "jarvis.db";

/// A configuration variable that is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration variable {variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: String,
    /// What is wrong with it, without echoing its value.
    pub reason: String,
}

impl ConfigError {
    fn new(variable: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            variable: variable.into(),
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

/// How log lines are written (`JARVIS_LOG_FORMAT`: `json` or `text`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
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
    /// How long a request may take before it is answered 503 `timeout`
    /// (`JARVIS_REQUEST_TIMEOUT_SECONDS`, 1 to 900). On Lambda, set it below the function's
    /// timeout so the client gets an answer rather than a dropped invocation.
    pub request_timeout: Duration,
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
    /// AI providers and model aliases.
    pub ai: AiConfig,
    /// Conversations: context windows, the helper model, memory, stream retention.
    pub chat: ChatConfig,
    /// Where blobs (attachments) are kept.
    pub blobs: BlobConfig,
    /// The WebSocket API: connection lifetimes and where to post to connections.
    pub realtime: RealtimeConfig,
    /// The knowledge base: its models, chunking, index and upload size.
    pub knowledge: KnowledgeConfig,
    /// Agent runs: the model, the queue, how long a worker drives a run.
    pub agents: AgentsConfig,
    /// Automations: how many a user may keep.
    pub automations: AutomationsConfig,
    /// Paper trading: accounts, limits, the paper exchange, the bundled bars.
    pub trading: TradingConfig,
}

/// Paper trading's settings (amounts in whole dollars; the trading crate reads them as
/// decimals).
#[derive(Debug, Clone, PartialEq)]
pub struct TradingConfig {
    /// Dollars a new paper account starts with (`JARVIS_TRADING_START_CASH`, default
    /// 100,000).
    pub start_cash: u64,
    /// The replay date a new paper account starts on, `yyyy-mm-dd`
    /// (`JARVIS_TRADING_START_DATE`, default 2005-01-03).
    pub start_date: String,
    /// The most an order may be worth, in dollars (`JARVIS_TRADING_MAX_ORDER_NOTIONAL`,
    /// default 50,000).
    pub max_order_notional: u64,
    /// The notional a user may trade a replay day, in dollars (`JARVIS_TRADING_DAILY_NOTIONAL`,
    /// default 200,000), escrowed between deployments.
    pub daily_notional: u64,
    /// This deployment's share of every daily limit, 0 to 1 (`JARVIS_TRADING_SHARE_PERCENT`,
    /// default 100).
    pub share: f64,
    /// Orders a user may place a minute (`JARVIS_TRADING_ORDERS_PER_MINUTE`, default 60).
    pub orders_per_minute: u32,
    /// Slippage of market orders, in basis points (`JARVIS_TRADING_SLIPPAGE_BPS`, default 5).
    pub slippage_bps: u32,
    /// The exchange's fee, in basis points (`JARVIS_TRADING_FEE_BPS`, default 1).
    pub fee_bps: u32,
    /// How often a fill is partial, in percent (`JARVIS_TRADING_PARTIAL_FILL_PERCENT`,
    /// default 10).
    pub partial_fill_percent: u8,
    /// The CSV of bars `jarvis-local` loads at start when its symbols have none
    /// (`JARVIS_TRADING_BARS_FILE`, default `.tools/market/stocks.csv.gz`, where
    /// `infra/fetch-market-data.sh` puts it).
    pub bars_file: PathBuf,
}

/// Agent runs' settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentsConfig {
    /// The alias agents think with (`JARVIS_AGENTS_MODEL`, default `smart`).
    pub model: String,
    /// Tokens one model step may answer with (`JARVIS_AGENTS_REPLY_TOKENS`, default 1024).
    pub reply_tokens: u32,
    /// The SQS queue of runs to drive (`JARVIS_AGENTS_QUEUE_URL`); without it, runs are
    /// queued in the store and driven by the host's own worker (`jarvis-local`).
    pub queue_url: Option<String>,
    /// Where SQS is (`JARVIS_SQS_ENDPOINT` for a local stand-in).
    pub sqs: AwsTarget,
    /// How long one invocation of the local worker drives a run before it queues it again
    /// (`JARVIS_AGENTS_INVOCATION_SECONDS`, default 60): what a Lambda's timeout is on AWS.
    pub invocation: Duration,
    /// Runs the local worker drives at once (`JARVIS_AGENTS_CONCURRENCY`, default 4).
    pub concurrency: usize,
}

/// Automations' settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutomationsConfig {
    /// Automations (reminders included) one user may keep
    /// (`JARVIS_AUTOMATIONS_MAX_PER_USER`, default 100).
    pub max_per_user: usize,
}

/// The knowledge base's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeConfig {
    /// The alias embedding chunks and queries (`JARVIS_KNOWLEDGE_EMBED_MODEL`, default
    /// `embed`).
    pub embed_model: String,
    /// The alias answering questions (`JARVIS_KNOWLEDGE_ANSWER_MODEL`, default `smart`).
    pub answer_model: String,
    /// The alias transcribing sound files (`JARVIS_KNOWLEDGE_TRANSCRIBE_MODEL`, default
    /// `transcribe`).
    pub transcribe_model: String,
    /// The alias captioning images (`JARVIS_KNOWLEDGE_VISION_MODEL`); without one, images
    /// are skipped with the reason recorded.
    pub vision_model: Option<String>,
    /// Tokens a chunk holds at most (`JARVIS_KNOWLEDGE_CHUNK_TOKENS`, default 256).
    pub chunk_tokens: usize,
    /// Tokens of the previous chunk a chunk starts with (`JARVIS_KNOWLEDGE_CHUNK_OVERLAP`,
    /// default 32).
    pub chunk_overlap: usize,
    /// The least cosine similarity that makes a chunk a source for an answer without a
    /// keyword match (`JARVIS_KNOWLEDGE_MIN_SIMILARITY_PERCENT`, default 30, i.e. 0.30).
    pub min_similarity: f64,
    /// Chunks per user searched exactly; beyond, the approximate (DiskANN) index is built
    /// and used (`JARVIS_KNOWLEDGE_EXACT_UP_TO`, default 5000).
    pub exact_up_to: u64,
    /// Largest upload in bytes (`JARVIS_KNOWLEDGE_MAX_UPLOAD_BYTES`, default 4 MiB, below
    /// Lambda's 6 MB invocation payload).
    pub max_upload_bytes: usize,
    /// Where each user's index file is kept: `knowledge/` in the data directory.
    pub index_dir: PathBuf,
    /// The SQS queue ingestion jobs go to (`JARVIS_KNOWLEDGE_QUEUE_URL`); without it a
    /// host reads documents itself (`jarvis-local`) or cannot take uploads.
    pub queue_url: Option<String>,
    /// The S3 Vectors index of the chunks' vectors (`JARVIS_KNOWLEDGE_VECTOR_INDEX_ARN`);
    /// without it, the per-user libSQL files in `index_dir`.
    pub vector_index_arn: Option<String>,
    /// Where SQS is (`JARVIS_SQS_ENDPOINT` for a local stand-in).
    pub sqs: AwsTarget,
    /// Where S3 Vectors is (`JARVIS_S3VECTORS_ENDPOINT` for a local stand-in).
    pub s3vectors: AwsTarget,
    /// The DynamoDB table of the chunks' words, for keyword search beside S3 Vectors
    /// (`JARVIS_KNOWLEDGE_KEYWORD_TABLE`); without it, keyword search is not available on
    /// AWS.
    pub keyword_table: Option<String>,
    /// Where DynamoDB is (`JARVIS_DYNAMODB_ENDPOINT` for a local stand-in).
    pub dynamodb: AwsTarget,
}

/// Where the knowledge base's AWS services are.
struct KnowledgeTargets {
    sqs: AwsTarget,
    s3vectors: AwsTarget,
    dynamodb: AwsTarget,
}

/// The WebSocket API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealtimeConfig {
    /// The API Gateway management endpoint that posts to connections, for functions other
    /// than the WebSocket API's own (`JARVIS_WS_ENDPOINT`, e.g.
    /// `https://abc123.execute-api.eu-west-1.amazonaws.com/live`); without it, and outside
    /// `jarvis-local`, changes are not published.
    pub endpoint: Option<String>,
    /// The region and credentials of management API clients (the endpoint is the API's
    /// own, from `endpoint` or the event).
    pub aws: AwsTarget,
    /// A connection with no message from its client for this long is closed
    /// (`JARVIS_WS_IDLE_SECS`, default 600, API Gateway's idle timeout).
    pub idle_timeout: Duration,
    /// A connection is closed this long after it opened (`JARVIS_WS_LIFETIME_SECS`, default
    /// 7200, API Gateway's maximum); its record expires then too.
    pub max_lifetime: Duration,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            aws: AwsTarget::default(),
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(7_200),
        }
    }
}

/// Where blobs (conversation attachments) are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobConfig {
    /// Files under a directory (`blobs` in the data directory).
    Directory(PathBuf),
    /// An S3 bucket (`JARVIS_BLOB_BUCKET`; `JARVIS_S3_ENDPOINT` for a local stand-in).
    S3 {
        /// The bucket.
        bucket: String,
        /// Where S3 is.
        aws: AwsTarget,
    },
}

/// Conversation settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatConfig {
    /// The context window every model is fitted to (`JARVIS_CHAT_CONTEXT_TOKENS`); `None`
    /// uses each model family's own window.
    pub context_tokens: Option<u64>,
    /// Tokens a reply may take (`JARVIS_CHAT_REPLY_TOKENS`, default 1024); kept free of
    /// the window.
    pub reply_tokens: u64,
    /// The alias of the work done for a conversation rather than in it: titles, summaries,
    /// memory extraction (`JARVIS_CHAT_HELPER_MODEL`, default `fast`).
    pub helper_model: String,
    /// The alias embedding memories (`JARVIS_CHAT_EMBED_MODEL`, default `embed`).
    pub embed_model: String,
    /// How many memories at most a reply is given (`JARVIS_CHAT_MEMORY_TOP_K`, default 5).
    pub memory_top_k: usize,
    /// How long a reply's stream events are kept for resuming
    /// (`JARVIS_CHAT_STREAM_RETENTION_SECS`, default 3600).
    pub stream_retention: Duration,
}

/// One model alias (`smart`, `fast`, `embed`…): the providers and models it may use, tried
/// in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelAlias {
    /// The alias.
    pub name: String,
    /// `(provider, model)` pairs, in the order they are tried.
    pub targets: Vec<(String, String)>,
}

/// The AI provider layer's settings. Provider keys are in the secret document.
#[derive(Debug, Clone, PartialEq)]
pub struct AiConfig {
    /// Aliases (`JARVIS_AI_MODELS`, e.g.
    /// `smart=anthropic:claude-sonnet-4-5,openai:gpt-4o;fast=openai:gpt-4o-mini`); without
    /// it, `smart` and `fast` use the local chat model and `embed` the local embedder, each
    /// falling back to the offline scripted provider (where the local models are not
    /// installed, or in builds without them).
    pub aliases: Vec<ModelAlias>,
    /// Where the local models' files are (`JARVIS_AI_LOCAL_DIR`; by default `.tools/models`
    /// of the working directory, where `infra/fetch-models.sh` puts them).
    pub local_dir: PathBuf,
    /// Prices in dollars per million tokens (`JARVIS_AI_PRICES`,
    /// `provider:model=input/output,…`): `((provider, model), (input, output))`.
    pub prices: Vec<((String, String), (f64, f64))>,
    /// This deployment's share of every token budget, 0 to 1
    /// (`JARVIS_AI_QUOTA_SHARE_PERCENT`, default 100). Deployments that sync give each a
    /// share so that together they never pass a budget, even while partitioned.
    pub quota_share: f64,
    /// Consecutive failures of a model that open its circuit breaker
    /// (`JARVIS_AI_BREAKER_THRESHOLD`, default 5).
    pub breaker_threshold: u32,
    /// How long an open breaker skips its model before one probe call
    /// (`JARVIS_AI_BREAKER_COOLDOWN_SECS`, default 30).
    pub breaker_cooldown: Duration,
    /// OpenAI's base URL (`JARVIS_AI_OPENAI_URL`).
    pub openai_url: String,
    /// Anthropic's base URL (`JARVIS_AI_ANTHROPIC_URL`).
    pub anthropic_url: String,
    /// Gemini's base URL (`JARVIS_AI_GEMINI_URL`).
    pub gemini_url: String,
    /// Further OpenAI-compatible servers by name (`JARVIS_AI_SERVERS`, e.g.
    /// `ollama=http://127.0.0.1:11434/v1`); a key, when one is needed, is the secret
    /// document's `providers.<name>.api_key`.
    pub servers: Vec<(String, String)>,
    /// The script the scripted provider's `script` model plays (`JARVIS_AI_SCRIPT`, a JSON
    /// file; see `jarvis_ai::scripted`): replies, tool calls included, chosen by the turn
    /// of the conversation, for tests and demonstrations without a model.
    pub script: Option<PathBuf>,
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

/// Default largest request body: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Default time a request may take: below the 30 s an API Gateway HTTP API waits.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(25);

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(Vec::new())
    }

    /// Reads the configuration from the process environment, with `overrides` (e.g. from
    /// command-line flags) taking precedence over variables of the same name.
    pub fn from_env_with(overrides: Vec<(String, String)>) -> Result<Self, ConfigError> {
        // Variables whose names are not UTF-8 cannot be ours; a value of ours that is not
        // UTF-8 is reported by name.
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
        let vars = Vars::new(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )?;
        let host_vars: HostVars = vars.read()?;
        let host = match host_vars.aws_lambda_function_name {
            Some(_) => Host::Lambda,
            None => Host::Local,
        };
        let service = host_vars
            .aws_lambda_function_name
            .clone()
            .unwrap_or_else(|| "jarvis-local".to_owned());
        let data_dir = host_vars.data_dir.clone().unwrap_or_else(|| match host {
            // The only writable place in a Lambda sandbox.
            Host::Lambda => PathBuf::from("/tmp/jarvis"),
            Host::Local => PathBuf::from(".jarvis"),
        });
        let aws_target = |endpoint: Option<vars::Endpoint>| AwsTarget {
            endpoint: endpoint.map(|e| e.0),
            region: host_vars.aws_region.clone(),
            env_credentials: host_vars.aws_access_key_id.is_some(),
        };

        let store = Self::store(vars.read()?, &data_dir, aws_target)?;
        let secrets = Self::secrets(vars.read()?, host, &data_dir, aws_target);
        let security = Self::security(vars.read()?);
        let sync = Self::sync(vars.read()?);
        let ai = Self::ai(vars.read()?);
        let chat = Self::chat(vars.read()?);
        let blob_vars: BlobVars = vars.read()?;
        let blobs = match blob_vars.blob_bucket {
            Some(bucket) => BlobConfig::S3 {
                bucket: bucket.0,
                aws: aws_target(blob_vars.s3_endpoint),
            },
            None => BlobConfig::Directory(data_dir.join("blobs")),
        };
        let ws: RealtimeVars = vars.read()?;
        let defaults = RealtimeConfig::default();
        let realtime = RealtimeConfig {
            endpoint: ws.ws_endpoint.map(|e| e.0),
            aws: aws_target(None),
            idle_timeout: ws
                .ws_idle_secs
                .map_or(defaults.idle_timeout, |n| Duration::from_secs(n.0)),
            max_lifetime: ws
                .ws_lifetime_secs
                .map_or(defaults.max_lifetime, |n| Duration::from_secs(n.0)),
        };

        let mut knowledge_vars: KnowledgeVars = vars.read()?;
        let targets = KnowledgeTargets {
            sqs: aws_target(knowledge_vars.sqs_endpoint.take()),
            s3vectors: aws_target(knowledge_vars.s3vectors_endpoint.take()),
            dynamodb: aws_target(knowledge_vars.dynamodb_endpoint.take()),
        };
        let knowledge = Self::knowledge(knowledge_vars, &data_dir, targets);
        let agent_vars: AgentsVars = vars.read()?;
        let agents = AgentsConfig {
            model: agent_vars
                .agents_model
                .map_or_else(|| "smart".to_owned(), |m| m.0),
            reply_tokens: agent_vars
                .agents_reply_tokens
                .map_or(1024, |n| u32::try_from(n.0).unwrap_or(1024)),
            queue_url: agent_vars.agents_queue_url.map(|u| u.0),
            sqs: aws_target(agent_vars.sqs_endpoint),
            invocation: Duration::from_secs(
                agent_vars.agents_invocation_seconds.map_or(60, |n| n.0),
            ),
            concurrency: agent_vars
                .agents_concurrency
                .map_or(4, |n| usize::try_from(n.0).unwrap_or(4)),
        };
        let trading_vars: TradingVars = vars.read()?;
        let trading = TradingConfig {
            start_cash: trading_vars.trading_start_cash.map_or(100_000, |n| n.0),
            start_date: trading_vars
                .trading_start_date
                .map_or_else(|| "2005-01-03".to_owned(), |d| d.0),
            max_order_notional: trading_vars
                .trading_max_order_notional
                .map_or(50_000, |n| n.0),
            daily_notional: trading_vars.trading_daily_notional.map_or(200_000, |n| n.0),
            share: trading_vars
                .trading_share_percent
                .map_or(1.0, |p| p.0 as f64 / 100.0),
            orders_per_minute: trading_vars
                .trading_orders_per_minute
                .map_or(60, |n| u32::try_from(n.0).unwrap_or(60)),
            slippage_bps: trading_vars
                .trading_slippage_bps
                .map_or(5, |n| u32::try_from(n.0).unwrap_or(5)),
            fee_bps: trading_vars
                .trading_fee_bps
                .map_or(1, |n| u32::try_from(n.0).unwrap_or(1)),
            partial_fill_percent: trading_vars
                .trading_partial_fill_percent
                .map_or(10, |n| u8::try_from(n.0).unwrap_or(10)),
            bars_file: trading_vars
                .trading_bars_file
                .unwrap_or_else(|| PathBuf::from(".tools/market/stocks.csv.gz")),
        };
        let automation_vars: AutomationsVars = vars.read()?;
        let automations = AutomationsConfig {
            max_per_user: automation_vars
                .automations_max_per_user
                .map_or(100, |n| usize::try_from(n.0).unwrap_or(100)),
        };

        let replica_id_from_data_dir = host_vars.replica_id.is_none() && host != Host::Lambda;
        let replica_id = match host_vars.replica_id {
            Some(id) => id.0,
            // One deployment per region on AWS; a laptop is "local".
            None if host == Host::Lambda => host_vars
                .aws_region
                .clone()
                .unwrap_or_else(|| "aws".to_owned()),
            None => "local".to_owned(),
        };
        let log_format = host_vars.log_format.unwrap_or(match host {
            Host::Lambda => LogFormat::Json,
            Host::Local => LogFormat::Text,
        });
        let log_filter = host_vars
            .log
            .or(host_vars.rust_log)
            .unwrap_or_else(|| "info".to_owned());
        let http: HttpVars = vars.read()?;
        let max_body_bytes = http
            .max_body_bytes
            // Bounded by `usize::MAX` when read.
            .map_or(DEFAULT_MAX_BODY_BYTES, |n| {
                usize::try_from(n.0).unwrap_or(usize::MAX)
            });
        let request_timeout = http
            .request_timeout_seconds
            .map_or(DEFAULT_REQUEST_TIMEOUT, |s| Duration::from_secs(s.0));

        Ok(Self {
            host,
            service,
            data_dir,
            store,
            log_format,
            log_filter,
            max_body_bytes,
            request_timeout,
            replica_id,
            replica_id_from_data_dir,
            sync,
            secrets,
            security,
            ai,
            chat,
            blobs,
            realtime,
            knowledge,
            agents,
            automations,
            trading,
        })
    }

    fn knowledge(
        vars: KnowledgeVars,
        data_dir: &Path,
        targets: KnowledgeTargets,
    ) -> KnowledgeConfig {
        KnowledgeConfig {
            embed_model: vars
                .knowledge_embed_model
                .map_or_else(|| "embed".to_owned(), |m| m.0),
            answer_model: vars
                .knowledge_answer_model
                .map_or_else(|| "smart".to_owned(), |m| m.0),
            transcribe_model: vars
                .knowledge_transcribe_model
                .map_or_else(|| "transcribe".to_owned(), |m| m.0),
            vision_model: vars.knowledge_vision_model.map(|m| m.0),
            chunk_tokens: vars
                .knowledge_chunk_tokens
                .map_or(256, |n| usize::try_from(n.0).unwrap_or(256)),
            chunk_overlap: vars
                .knowledge_chunk_overlap
                .map_or(32, |n| usize::try_from(n.0).unwrap_or(32)),
            min_similarity: vars
                .knowledge_min_similarity_percent
                .map_or(0.30, |n| n.0 as f64 / 100.0),
            exact_up_to: vars.knowledge_exact_up_to.map_or(5_000, |n| n.0),
            max_upload_bytes: vars
                .knowledge_max_upload_bytes
                .map_or(4 * 1024 * 1024, |n| {
                    usize::try_from(n.0).unwrap_or(usize::MAX)
                }),
            index_dir: data_dir.join("knowledge"),
            queue_url: vars.knowledge_queue_url.map(|u| u.0),
            vector_index_arn: vars.knowledge_vector_index_arn.map(|a| a.0),
            keyword_table: vars.knowledge_keyword_table.map(|t| t.0),
            sqs: targets.sqs,
            s3vectors: targets.s3vectors,
            dynamodb: targets.dynamodb,
        }
    }

    fn chat(vars: ChatVars) -> ChatConfig {
        ChatConfig {
            context_tokens: vars.chat_context_tokens.map(|n| n.0),
            reply_tokens: vars.chat_reply_tokens.map_or(1024, |n| n.0),
            helper_model: vars
                .chat_helper_model
                .map_or_else(|| "fast".to_owned(), |m| m.0),
            embed_model: vars
                .chat_embed_model
                .map_or_else(|| "embed".to_owned(), |m| m.0),
            memory_top_k: vars
                .chat_memory_top_k
                .map_or(5, |n| usize::try_from(n.0).unwrap_or(5)),
            stream_retention: Duration::from_secs(
                vars.chat_stream_retention_secs.map_or(3_600, |n| n.0),
            ),
        }
    }

    fn ai(vars: AiVars) -> AiConfig {
        let aliases = if vars.ai_models.0.is_empty() {
            // With nothing configured, every alias answers offline: the local models where
            // they are installed, the scripted provider otherwise.
            let offline = |model: &str, scripted: &str| {
                vec![
                    ("local".to_owned(), model.to_owned()),
                    ("scripted".to_owned(), scripted.to_owned()),
                ]
            };
            vec![
                ModelAlias {
                    name: "smart".into(),
                    targets: offline("smollm2-135m-instruct", "echo"),
                },
                ModelAlias {
                    name: "fast".into(),
                    targets: offline("smollm2-135m-instruct", "echo"),
                },
                ModelAlias {
                    name: "embed".into(),
                    targets: offline("all-minilm-l6-v2", "hash"),
                },
            ]
        } else {
            vars.ai_models
                .0
                .into_iter()
                .map(|(name, targets)| ModelAlias { name, targets })
                .collect()
        };
        AiConfig {
            aliases,
            openai_url: vars
                .ai_openai_url
                .map_or_else(|| "https://api.openai.com/v1".to_owned(), |u| u.0),
            anthropic_url: vars
                .ai_anthropic_url
                .map_or_else(|| "https://api.anthropic.com".to_owned(), |u| u.0),
            gemini_url: vars.ai_gemini_url.map_or_else(
                || "https://generativelanguage.googleapis.com".to_owned(),
                |u| u.0,
            ),
            servers: vars
                .ai_servers
                .0
                .into_iter()
                .map(|server| (server.0, server.1))
                .collect(),
            local_dir: vars
                .ai_local_dir
                .unwrap_or_else(|| PathBuf::from(".tools/models")),
            prices: vars
                .ai_prices
                .0
                .into_iter()
                .map(|p| ((p.0, p.1), (p.2, p.3)))
                .collect(),
            quota_share: vars
                .ai_quota_share_percent
                .map_or(1.0, |p| p.0 as f64 / 100.0),
            breaker_threshold: vars.ai_breaker_threshold.map_or(5, |t| t.0 as u32),
            breaker_cooldown: Duration::from_secs(
                vars.ai_breaker_cooldown_secs.map_or(30, |s| s.0),
            ),
            script: vars.ai_script,
        }
    }

    fn store(
        vars: StoreVars,
        data_dir: &Path,
        aws_target: impl Fn(Option<vars::Endpoint>) -> AwsTarget,
    ) -> Result<StoreConfig, ConfigError> {
        Ok(match (vars.store, vars.libsql_url) {
            (Backend::Libsql, None) => StoreConfig::Libsql {
                path: data_dir.join(DATABASE_FILE),
            },
            (Backend::Libsql, Some(url)) => StoreConfig::LibsqlRemote {
                url: url.0,
                token: vars.libsql_auth_token.ok_or_else(|| {
                    ConfigError::new(
                        "JARVIS_LIBSQL_AUTH_TOKEN",
                        "required with JARVIS_LIBSQL_URL",
                    )
                })?,
            },
            (Backend::Dynamodb, _) => StoreConfig::Dynamodb {
                table: vars
                    .dynamodb_table
                    .ok_or_else(|| {
                        ConfigError::new(
                            "JARVIS_DYNAMODB_TABLE",
                            "required when JARVIS_STORE=dynamodb",
                        )
                    })?
                    .0,
                aws: aws_target(vars.dynamodb_endpoint),
            },
        })
    }

    fn secrets(
        vars: SecretsVars,
        host: Host,
        data_dir: &Path,
        aws_target: impl Fn(Option<vars::Endpoint>) -> AwsTarget,
    ) -> SecretsConfig {
        if let Some(secret_id) = vars.secret_id {
            SecretsConfig::AwsSecretsManager {
                secret_id,
                aws: aws_target(vars.secrets_endpoint),
                ttl: vars
                    .secrets_ttl
                    .map_or(DEFAULT_SECRETS_TTL, |s| Duration::from_secs(s.0)),
            }
        } else if let Some(inline) = vars.secrets {
            SecretsConfig::Inline(inline)
        } else if let Some(path) = vars.secrets_file {
            SecretsConfig::File(path)
        } else if host == Host::Lambda {
            SecretsConfig::Missing
        } else {
            SecretsConfig::File(data_dir.join(SECRETS_FILE))
        }
    }

    fn security(vars: SecurityVars) -> SecurityConfig {
        SecurityConfig {
            issuer: vars.token_issuer.unwrap_or_else(|| "jarvis".to_owned()),
            audience: vars
                .token_audience
                .unwrap_or_else(|| "jarvis-api".to_owned()),
            rate_limit_per_minute: vars.rate_limit.map_or(600, |n| n.0),
            auth_rate_limit_per_minute: vars.auth_rate_limit.map_or(30, |n| n.0),
            lockout_threshold: vars.lockout_threshold.map_or(5, |n| n.0),
            lockout: Duration::from_secs(vars.lockout_seconds.map_or(900, |n| n.0)),
            cors_origins: vars.cors_origins.0.into_iter().map(|o| o.0).collect(),
            // At most 10 when read, so it always fits.
            trusted_proxy_hops: vars
                .trusted_proxy_hops
                .map_or(0, |n| usize::try_from(n.0).unwrap_or(0)),
        }
    }

    fn sync(vars: SyncVars) -> SyncConfig {
        SyncConfig {
            token: vars.sync_token.map(|t| t.0),
            peers: vars.peers.0.into_iter().map(|p| p.0).collect(),
            interval: vars
                .sync_interval
                .map_or(DEFAULT_SYNC_INTERVAL, |s| Duration::from_secs(s.0)),
            feed_retention: Duration::from_secs(
                vars.feed_retention_hours.map_or(168, |h| h.0) * 3_600,
            ),
        }
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
        if let BlobConfig::Directory(path) = &mut self.blobs
            && *path == previous.join("blobs")
        {
            *path = self.data_dir.join("blobs");
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
        assert_eq!(c.request_timeout, DEFAULT_REQUEST_TIMEOUT);
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
            ("JARVIS_REQUEST_TIMEOUT_SECONDS", "0"),
            ("JARVIS_REQUEST_TIMEOUT_SECONDS", "901"),
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
    fn errors_say_what_the_variable_expects() {
        let reason = |name: &str, value: &str| config(&[(name, value)]).expect_err(value).reason;
        assert_eq!(
            reason("JARVIS_RATE_LIMIT", "many"),
            "expected a whole number from 1 to 1000000"
        );
        assert_eq!(
            reason("JARVIS_LOG_FORMAT", "xml"),
            "expected one of: json, text"
        );
        assert_eq!(
            reason("JARVIS_STORE", "mongodb"),
            "expected one of: libsql, dynamodb"
        );
        assert_eq!(reason("JARVIS_DATA_DIR", "\u{FFFD}"), "is not valid UTF-8");
        assert_eq!(
            reason("JARVIS_MAX_BODY_BYTES", "0"),
            "expected a whole number of at least 1"
        );
    }

    #[test]
    fn model_aliases_and_servers_are_read_and_checked() {
        let c = config(&[
            (
                "JARVIS_AI_MODELS",
                "smart=anthropic:claude-sonnet-4-5, bedrock:anthropic.claude-3-haiku-20240307-v1:0; \
                 fast=ollama:llama3.2",
            ),
            ("JARVIS_AI_SERVERS", "ollama=http://127.0.0.1:11434/v1/"),
        ])
        .expect("valid");
        assert_eq!(
            c.ai.aliases,
            [
                ModelAlias {
                    name: "smart".into(),
                    targets: vec![
                        ("anthropic".into(), "claude-sonnet-4-5".into()),
                        (
                            "bedrock".into(),
                            "anthropic.claude-3-haiku-20240307-v1:0".into()
                        ),
                    ],
                },
                ModelAlias {
                    name: "fast".into(),
                    targets: vec![("ollama".into(), "llama3.2".into())],
                },
            ]
        );
        assert_eq!(
            c.ai.servers,
            [("ollama".to_owned(), "http://127.0.0.1:11434/v1".to_owned())]
        );
        let offline = config(&[]).expect("defaults");
        let defaults: Vec<(&str, Vec<&str>)> = offline
            .ai
            .aliases
            .iter()
            .map(|a| {
                (
                    a.name.as_str(),
                    a.targets.iter().map(|(p, _)| p.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            defaults,
            [
                ("smart", vec!["local", "scripted"]),
                ("fast", vec!["local", "scripted"]),
                ("embed", vec!["local", "scripted"]),
            ],
            "offline by default: the local models, else the scripted provider"
        );
        assert_eq!(offline.ai.quota_share, 1.0);
        assert_eq!(offline.ai.local_dir, PathBuf::from(".tools/models"));
        for (name, value) in [
            ("JARVIS_AI_MODELS", "smart"),
            ("JARVIS_AI_MODELS", "smart=openai"),
            ("JARVIS_AI_MODELS", "Smart=openai:gpt-4o"),
            (
                "JARVIS_AI_MODELS",
                "smart=openai:gpt-4o;smart=openai:gpt-4o-mini",
            ),
            ("JARVIS_AI_SERVERS", "ollama=127.0.0.1:11434"),
            ("JARVIS_AI_OPENAI_URL", "api.openai.com"),
            ("JARVIS_AI_PRICES", "openai:gpt-4o=2.5"),
            ("JARVIS_AI_PRICES", "openai:gpt-4o=free/10"),
            ("JARVIS_AI_PRICES", "openai:gpt-4o=-1/10"),
            ("JARVIS_AI_QUOTA_SHARE_PERCENT", "101"),
            ("JARVIS_AI_BREAKER_THRESHOLD", "0"),
            ("JARVIS_AI_BREAKER_COOLDOWN_SECS", "soon"),
        ] {
            assert_eq!(config(&[(name, value)]).expect_err(value).variable, name);
        }
    }

    #[test]
    fn prices_the_quota_share_and_the_breaker_settings_are_read() {
        let c = config(&[
            (
                "JARVIS_AI_PRICES",
                "openai:gpt-4o=2.5/10, anthropic:claude-sonnet-4-5=3/15",
            ),
            ("JARVIS_AI_QUOTA_SHARE_PERCENT", "40"),
            ("JARVIS_AI_BREAKER_THRESHOLD", "3"),
            ("JARVIS_AI_BREAKER_COOLDOWN_SECS", "120"),
        ])
        .expect("valid");
        assert_eq!(c.ai.breaker_threshold, 3);
        assert_eq!(c.ai.breaker_cooldown, Duration::from_secs(120));
        assert_eq!(
            c.ai.prices,
            [
                (("openai".into(), "gpt-4o".into()), (2.5, 10.0)),
                (
                    ("anthropic".into(), "claude-sonnet-4-5".into()),
                    (3.0, 15.0)
                ),
            ]
        );
        assert!((c.ai.quota_share - 0.4).abs() < 1e-9);
    }

    #[test]
    fn variables_of_other_programs_are_ignored() {
        let c = config(&[("JARVIS_ADDR", "not read here"), ("AWS_PROFILE", "x")]).expect("valid");
        assert_eq!(c.host, Host::Local);
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

    #[test]
    fn chat_settings_are_read_defaulted_and_bounded() {
        let defaults = config(&[]).expect("defaults").chat;
        assert_eq!(defaults.context_tokens, None);
        assert_eq!(defaults.reply_tokens, 1024);
        assert_eq!(defaults.helper_model, "fast");
        assert_eq!(defaults.memory_top_k, 5);
        assert_eq!(defaults.stream_retention, Duration::from_secs(3_600));
        let set = config(&[
            ("JARVIS_CHAT_CONTEXT_TOKENS", "512"),
            ("JARVIS_CHAT_HELPER_MODEL", "helper"),
            ("JARVIS_CHAT_MEMORY_TOP_K", "3"),
        ])
        .expect("valid")
        .chat;
        assert_eq!(set.context_tokens, Some(512));
        assert_eq!(set.helper_model, "helper");
        assert_eq!(set.memory_top_k, 3);
        for (name, value) in [
            ("JARVIS_CHAT_CONTEXT_TOKENS", "100"),
            ("JARVIS_CHAT_HELPER_MODEL", "Fast Model"),
            ("JARVIS_CHAT_MEMORY_TOP_K", "0"),
        ] {
            let err = config(&[(name, value)]).expect_err(value);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn websocket_lifetimes_and_endpoint_are_read_defaulted_and_bounded() {
        let defaults = config(&[]).expect("defaults").realtime;
        assert_eq!(defaults.endpoint, None);
        assert_eq!(defaults.idle_timeout, Duration::from_secs(600));
        assert_eq!(defaults.max_lifetime, Duration::from_secs(7_200));
        let set = config(&[
            ("JARVIS_WS_IDLE_SECS", "2"),
            ("JARVIS_WS_LIFETIME_SECS", "5"),
            (
                "JARVIS_WS_ENDPOINT",
                "https://abc123.execute-api.eu-west-1.amazonaws.com/live",
            ),
        ])
        .expect("valid")
        .realtime;
        assert_eq!(set.idle_timeout, Duration::from_secs(2));
        assert_eq!(set.max_lifetime, Duration::from_secs(5));
        assert_eq!(
            set.endpoint.as_deref(),
            Some("https://abc123.execute-api.eu-west-1.amazonaws.com/live")
        );
        for (name, value) in [
            ("JARVIS_WS_IDLE_SECS", "0"),
            ("JARVIS_WS_LIFETIME_SECS", "7201"),
            ("JARVIS_WS_ENDPOINT", "not a url"),
        ] {
            let err = config(&[(name, value)]).expect_err(value);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn knowledge_settings_are_read_defaulted_and_bounded() {
        let defaults = config(&[("JARVIS_DATA_DIR", "/var/jarvis")])
            .expect("defaults")
            .knowledge;
        assert_eq!(defaults.embed_model, "embed");
        assert_eq!(defaults.answer_model, "smart");
        assert_eq!(defaults.transcribe_model, "transcribe");
        assert_eq!(defaults.vision_model, None);
        assert_eq!((defaults.chunk_tokens, defaults.chunk_overlap), (256, 32));
        assert!((defaults.min_similarity - 0.30).abs() < 1e-9);
        assert_eq!(defaults.exact_up_to, 5_000);
        assert_eq!(defaults.max_upload_bytes, 4 * 1024 * 1024);
        assert_eq!(defaults.index_dir, PathBuf::from("/var/jarvis/knowledge"));
        assert_eq!(defaults.keyword_table, None);
        let set = config(&[
            ("JARVIS_KNOWLEDGE_KEYWORD_TABLE", "jarvis-keywords"),
            ("JARVIS_DYNAMODB_ENDPOINT", "http://127.0.0.1:8000"),
            ("JARVIS_KNOWLEDGE_EMBED_MODEL", "vectors"),
            ("JARVIS_KNOWLEDGE_VISION_MODEL", "eyes"),
            ("JARVIS_KNOWLEDGE_CHUNK_TOKENS", "512"),
            ("JARVIS_KNOWLEDGE_MIN_SIMILARITY_PERCENT", "45"),
            ("JARVIS_KNOWLEDGE_EXACT_UP_TO", "100"),
            ("JARVIS_KNOWLEDGE_MAX_UPLOAD_BYTES", "1000"),
        ])
        .expect("valid")
        .knowledge;
        assert_eq!(set.embed_model, "vectors");
        assert_eq!(set.vision_model.as_deref(), Some("eyes"));
        assert_eq!(set.chunk_tokens, 512);
        assert!((set.min_similarity - 0.45).abs() < 1e-9);
        assert_eq!(set.exact_up_to, 100);
        assert_eq!(set.max_upload_bytes, 1000);
        assert_eq!(set.keyword_table.as_deref(), Some("jarvis-keywords"));
        assert_eq!(
            set.dynamodb.endpoint.as_deref(),
            Some("http://127.0.0.1:8000")
        );
        for (name, value) in [
            ("JARVIS_KNOWLEDGE_KEYWORD_TABLE", "a b"),
            ("JARVIS_KNOWLEDGE_CHUNK_TOKENS", "8"),
            ("JARVIS_KNOWLEDGE_MIN_SIMILARITY_PERCENT", "101"),
            ("JARVIS_KNOWLEDGE_MAX_UPLOAD_BYTES", "0"),
            ("JARVIS_KNOWLEDGE_ANSWER_MODEL", "not an alias!"),
        ] {
            let err = config(&[(name, value)]).expect_err(value);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn trading_settings_are_read_defaulted_and_bounded() {
        let defaults = config(&[]).expect("defaults").trading;
        assert_eq!(defaults.start_cash, 100_000);
        assert_eq!(defaults.start_date, "2005-01-03");
        assert_eq!(
            (defaults.max_order_notional, defaults.daily_notional),
            (50_000, 200_000)
        );
        assert!((defaults.share - 1.0).abs() < f64::EPSILON);
        assert_eq!(
            (
                defaults.slippage_bps,
                defaults.fee_bps,
                defaults.partial_fill_percent
            ),
            (5, 1, 10)
        );
        let set = config(&[
            ("JARVIS_TRADING_START_DATE", "2008-02-29"),
            ("JARVIS_TRADING_SHARE_PERCENT", "50"),
            ("JARVIS_TRADING_PARTIAL_FILL_PERCENT", "0"),
        ])
        .expect("valid")
        .trading;
        assert_eq!(set.start_date, "2008-02-29");
        assert!((set.share - 0.5).abs() < f64::EPSILON);
        assert_eq!(set.partial_fill_percent, 0);
        for (name, value) in [
            ("JARVIS_TRADING_START_DATE", "2007-02-29"),
            ("JARVIS_TRADING_START_DATE", "2005-13-01"),
            ("JARVIS_TRADING_START_DATE", "2005-1-3"),
            ("JARVIS_TRADING_START_CASH", "0"),
            ("JARVIS_TRADING_SHARE_PERCENT", "101"),
            ("JARVIS_TRADING_FEE_BPS", "1001"),
        ] {
            let err = config(&[(name, value)]).expect_err(value);
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
