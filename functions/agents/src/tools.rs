//! The tools that act on the user's data through the functions that own it.
//!
//! Each calls the owning function's own routes in process, as the run's user (the identity
//! its delegation acts as): every rule, scope check and change announcement of the HTTP API
//! applies to an agent as it does to the user, with no second implementation to drift. The
//! one exception is `archive_add`, which names the entry it makes after the call's
//! idempotency key, so a call repeated after a crash makes one entry.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, header};
use jarvis_agents::tools::schema_of;
use jarvis_agents::{Effect, Tool, ToolCall, ToolError};
use jarvis_app::AppState;
use jarvis_identity::{Identity, Scope};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Largest answer read back from a route.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A function's routes, called in process.
#[derive(Clone)]
pub struct InProcess(axum::Router);

impl InProcess {
    /// `routes` over `state`.
    pub fn new(routes: axum::Router<AppState>, state: &AppState) -> Self {
        Self(routes.with_state(state.clone()))
    }

    /// Calls `method uri` with `body` as `identity`: the answer's JSON, or the error
    /// envelope's message.
    pub async fn call(
        &self,
        identity: &Identity,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Result<Value, ToolError> {
        let mut request = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(value) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(value.to_string())
            }
            None => Body::empty(),
        };
        let mut request = request
            .body(body)
            .map_err(|e| ToolError::new(format!("the request could not be made: {e}")))?;
        request.extensions_mut().insert(identity.clone());
        let response = self
            .0
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| ToolError::new(e.to_string()))?;
        let status = response.status();
        let bytes = to_bytes(response.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|_| ToolError::new("the answer was too large"))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(if value.is_null() {
                json!({ "ok": true })
            } else {
                value
            });
        }
        let message = value["error"]["message"]
            .as_str()
            .map_or_else(|| format!("refused with status {status}"), str::to_owned);
        Err(ToolError::new(match value["error"]["field"].as_str() {
            Some(field) => format!("{field}: {message}"),
            None => message,
        }))
    }
}

/// A query string of `pairs`, the absent ones left out.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let present: Vec<(&str, &str)> = pairs
        .iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (*name, v)))
        .collect();
    serde_urlencoded::to_string(present).unwrap_or_default()
}

/// A path segment the routes can read: names of objects are letters, digits and `.-_:`;
/// anything else is refused here, before it could reach another path.
fn segment(name: &str) -> Result<&str, ToolError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if ok {
        Ok(name)
    } else {
        Err(ToolError::new(
            "names are 1 to 128 letters, digits, '.', '-', '_' or ':'",
        ))
    }
}

/// `archive_search`: the user's archive entries by tag, kind and words.
pub struct ArchiveSearch(pub InProcess);

/// Entries `archive_search` looks through at most.
const SEARCH_BUDGET: usize = 500;

/// The arguments of `archive_search`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSearchArgs {
    /// Words every entry found holds in its title or content (case does not matter).
    #[serde(default)]
    pub text: Option<String>,
    /// Only entries with this tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// Only entries of this kind (note, link, document…).
    #[serde(default)]
    pub kind: Option<String>,
    /// How many entries to answer at most: 1 to 20 (10 when absent).
    #[serde(default)]
    #[schemars(range(min = 1, max = 20))]
    pub limit: Option<u8>,
}

#[async_trait]
impl Tool for ArchiveSearch {
    fn name(&self) -> &'static str {
        "archive_search"
    }
    fn description(&self) -> &'static str {
        "Finds the user's archive entries (notes, links, documents) by tag, kind and words in \
         their title or content; answers each entry's id, kind, title, tags, creation time \
         and the start of its content."
    }
    fn parameters(&self) -> Value {
        schema_of::<ArchiveSearchArgs>()
    }
    fn scope(&self) -> Option<Scope> {
        Some(Scope::ArchiveRead)
    }
    fn effect(&self) -> Effect {
        Effect::ReadOnly
    }
    async fn call(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let args: ArchiveSearchArgs = call.arguments()?;
        let limit = usize::from(args.limit.unwrap_or(10).clamp(1, 20));
        let words: Vec<String> = args
            .text
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        let mut found = Vec::new();
        let mut cursor: Option<String> = None;
        let mut examined = 0;
        loop {
            let uri = format!(
                "/archive?{}",
                query(&[
                    ("tag", args.tag.clone()),
                    ("kind", args.kind.clone()),
                    ("limit", Some("100".into())),
                    ("cursor", cursor.clone()),
                ])
            );
            let page = self.0.call(call.identity, Method::GET, &uri, None).await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            examined += items.len();
            for item in items {
                let haystack = format!(
                    "{} {}",
                    item["title"].as_str().unwrap_or_default(),
                    item["content"].as_str().unwrap_or_default()
                )
                .to_lowercase();
                if words.iter().all(|w| haystack.contains(w.as_str())) {
                    let excerpt: String = item["content"]
                        .as_str()
                        .unwrap_or_default()
                        .chars()
                        .take(300)
                        .collect();
                    found.push(json!({
                        "id": item["id"],
                        "kind": item["kind"],
                        "title": item["title"],
                        "tags": item["tags"],
                        "created_at": item["created_at"],
                        "excerpt": excerpt,
                    }));
                }
            }
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if found.len() >= limit || cursor.is_none() || examined >= SEARCH_BUDGET {
                break;
            }
        }
        let more = found.len() > limit || cursor.is_some();
        found.truncate(limit);
        Ok(json!({ "items": found, "examined": examined, "more": more }))
    }
}

/// `archive_add`: a new archive entry, made once per call.
pub struct ArchiveAdd {
    /// Where entries are kept.
    pub state: AppState,
    /// Who hears of new entries (the knowledge base), when the host has one.
    pub watching: Option<jarvis_fn_archive::Watching>,
}

/// The arguments of `archive_add`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveAddArgs {
    /// Its title (1 to 512 characters).
    pub title: String,
    /// Its content (up to 65,536 characters).
    pub content: String,
    /// Its tags (up to 32, each 1 to 64 letters, digits, '_', '-', ':' or '.').
    #[serde(default)]
    pub tags: Vec<String>,
    /// What it is: note (when absent), link, document…
    #[serde(default)]
    pub kind: Option<String>,
}

#[async_trait]
impl Tool for ArchiveAdd {
    fn name(&self) -> &'static str {
        "archive_add"
    }
    fn description(&self) -> &'static str {
        "Adds an entry (a note unless another kind is given) to the user's archive and \
         answers its id."
    }
    fn parameters(&self) -> Value {
        schema_of::<ArchiveAddArgs>()
    }
    fn scope(&self) -> Option<Scope> {
        Some(Scope::ArchiveWrite)
    }
    fn effect(&self) -> Effect {
        Effect::Idempotent
    }
    async fn call(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let args: ArchiveAddArgs = call.arguments()?;
        let id = jarvis_store::ids::oldest_first_derived(
            call.run_created_ms,
            call.idempotency_key().as_bytes(),
        );
        let entry = jarvis_fn_archive::NewEntry {
            kind: args.kind.unwrap_or_else(|| "note".into()),
            title: args.title,
            content: args.content,
            tags: args.tags,
        };
        let (made, _) = jarvis_fn_archive::add_entry(
            &self.state,
            call.identity,
            id,
            entry,
            self.watching.clone(),
        )
        .await
        .map_err(|err| ToolError::new(err.to_string()))?;
        Ok(json!({ "id": made.id, "title": made.title, "tags": made.tags }))
    }
}

/// The kinds of CRDT objects.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// A grow-only counter.
    Counter,
    /// A grow-only set.
    Set,
    /// A last-writer-wins register holding any JSON.
    Register,
    /// An observed-remove set.
    Orset,
}

impl ObjectKind {
    fn path(self) -> &'static str {
        match self {
            Self::Counter => "counters",
            Self::Set => "sets",
            Self::Register => "registers",
            Self::Orset => "orsets",
        }
    }
}

/// `crdt_read`: one of the user's CRDT objects.
pub struct CrdtRead(pub InProcess);

/// The arguments of `crdt_read`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrdtReadArgs {
    /// The object's kind.
    pub kind: ObjectKind,
    /// Its name.
    pub name: String,
}

#[async_trait]
impl Tool for CrdtRead {
    fn name(&self) -> &'static str {
        "crdt_read"
    }
    fn description(&self) -> &'static str {
        "Reads one of the user's shared objects: a counter's value, a set's elements, a \
         register's value or an observed-remove set's elements."
    }
    fn parameters(&self) -> Value {
        schema_of::<CrdtReadArgs>()
    }
    fn scope(&self) -> Option<Scope> {
        Some(Scope::CrdtRead)
    }
    fn effect(&self) -> Effect {
        Effect::ReadOnly
    }
    async fn call(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let args: CrdtReadArgs = call.arguments()?;
        let uri = format!("/crdt/{}/{}", args.kind.path(), segment(&args.name)?);
        self.0.call(call.identity, Method::GET, &uri, None).await
    }
}

/// The kinds of objects `crdt_change` changes (adding to a set or setting a register the
/// same way twice changes nothing more: safe to repeat).
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// A grow-only set: `add`.
    Set,
    /// A last-writer-wins register: `value`.
    Register,
    /// An observed-remove set: `add` and `remove`.
    Orset,
}

/// `crdt_change`: adds to a set, sets a register, or adds to and removes from an OR-set.
pub struct CrdtChange(pub InProcess);

/// The arguments of `crdt_change`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrdtChangeArgs {
    /// The object's kind.
    pub kind: ChangeKind,
    /// Its name.
    pub name: String,
    /// Elements to add (a set or an OR-set).
    #[serde(default)]
    pub add: Vec<String>,
    /// Elements to remove (an OR-set).
    #[serde(default)]
    pub remove: Vec<String>,
    /// The register's new value (any JSON).
    #[serde(default)]
    pub value: Option<Value>,
}

#[async_trait]
impl Tool for CrdtChange {
    fn name(&self) -> &'static str {
        "crdt_change"
    }
    fn description(&self) -> &'static str {
        "Changes one of the user's shared objects: adds elements to a set, adds and removes \
         elements of an observed-remove set, or sets a register to a JSON value."
    }
    fn parameters(&self) -> Value {
        schema_of::<CrdtChangeArgs>()
    }
    fn scope(&self) -> Option<Scope> {
        Some(Scope::CrdtWrite)
    }
    fn effect(&self) -> Effect {
        Effect::Idempotent
    }
    async fn call(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let args: CrdtChangeArgs = call.arguments()?;
        let name = segment(&args.name)?;
        let (method, uri, body) = match args.kind {
            ChangeKind::Set => (
                Method::POST,
                format!("/crdt/sets/{name}"),
                json!({ "add": args.add }),
            ),
            ChangeKind::Orset => {
                let mut body = serde_json::Map::new();
                if !args.add.is_empty() {
                    body.insert("add".into(), json!(args.add));
                }
                if !args.remove.is_empty() {
                    body.insert("remove".into(), json!(args.remove));
                }
                (
                    Method::POST,
                    format!("/crdt/orsets/{name}"),
                    Value::Object(body),
                )
            }
            ChangeKind::Register => {
                let value = args
                    .value
                    .ok_or_else(|| ToolError::new("value: a register needs a value"))?;
                (
                    Method::PUT,
                    format!("/crdt/registers/{name}"),
                    json!({ "value": value }),
                )
            }
        };
        self.0.call(call.identity, method, &uri, Some(body)).await
    }
}

/// `counter_increment`: adds to a counter — not safe to repeat, so made at most once.
pub struct CounterIncrement(pub InProcess);

/// The arguments of `counter_increment`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CounterArgs {
    /// The counter's name.
    pub name: String,
    /// How much to add (1 when absent).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub by: Option<u64>,
}

#[async_trait]
impl Tool for CounterIncrement {
    fn name(&self) -> &'static str {
        "counter_increment"
    }
    fn description(&self) -> &'static str {
        "Adds to one of the user's counters and answers its new value."
    }
    fn parameters(&self) -> Value {
        schema_of::<CounterArgs>()
    }
    fn scope(&self) -> Option<Scope> {
        Some(Scope::CrdtWrite)
    }
    fn effect(&self) -> Effect {
        Effect::AtMostOnce
    }
    async fn call(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let args: CounterArgs = call.arguments()?;
        let uri = format!("/crdt/counters/{}/increment", segment(&args.name)?);
        let body = json!({ "by": args.by.unwrap_or(1) });
        self.0
            .call(call.identity, Method::POST, &uri, Some(body))
            .await
    }
}

/// `knowledge_search`: passages of the user's knowledge base.
pub struct KnowledgeSearch(pub InProcess);

/// The arguments of `knowledge_search`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeSearchArgs {
    /// What to look for, in words.
    pub query: String,
    /// How many passages to answer: 1 to 20 (5 when absent).
    #[serde(default)]
    #[schemars(range(min = 1, max = 20))]
    pub k: Option<u8>,
}

#[async_trait]
impl Tool for KnowledgeSearch {
    fn name(&self) -> &'static str {
        "knowledge_search"
    }
    fn description(&self) -> &'static str {
        "Searches the user's knowledge base (their documents) by meaning and by words; \
         answers the best passages with their document, title, page or section."
    }
    fn parameters(&self) -> Value {
        schema_of::<KnowledgeSearchArgs>()
    }
    fn scope(&self) -> Option<Scope> {
        Some(Scope::KnowledgeRead)
    }
    fn effect(&self) -> Effect {
        Effect::ReadOnly
    }
    async fn call(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let args: KnowledgeSearchArgs = call.arguments()?;
        let k = args.k.unwrap_or(5).clamp(1, 20);
        let uri = format!(
            "/knowledge/search?{}",
            query(&[("q", Some(args.query)), ("k", Some(k.to_string()))])
        );
        self.0.call(call.identity, Method::GET, &uri, None).await
    }
}

/// `trading_signal`: a signal to the user's paper trading account, sent once per call.
pub struct TradingSignal(pub InProcess);

/// Buy or sell.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignalSide {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

/// The arguments of `trading_signal`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TradingSignalArgs {
    /// The ticker symbol, e.g. AAPL.
    pub symbol: String,
    /// Buy or sell.
    pub side: SignalSide,
    /// Why, in a sentence (1 to 500 characters).
    pub reason: String,
    /// How many shares, as a decimal string; when absent, sized from the strength.
    #[serde(default)]
    pub quantity: Option<String>,
    /// How strongly, 0 to 1 (1 when absent): a buy's share of the most an order may be
    /// worth, a sell's share of what is held.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1))]
    pub strength: Option<f64>,
    /// A limit price, as a decimal string: the order is then a limit order.
    #[serde(default)]
    pub limit_price: Option<String>,
}

#[async_trait]
impl Tool for TradingSignal {
    fn name(&self) -> &'static str {
        "trading_signal"
    }
    fn description(&self) -> &'static str {
        "Sends a buy or sell signal to the user's paper trading account: validated,          checked by the risk engine and placed as an order that trades at the next session.          Answers the signal's id and the order (accepted, or rejected with the reason)."
    }
    fn parameters(&self) -> Value {
        schema_of::<TradingSignalArgs>()
    }
    fn scope(&self) -> Option<Scope> {
        Some(Scope::TradingWrite)
    }
    fn effect(&self) -> Effect {
        Effect::Idempotent
    }
    async fn call(&self, call: &ToolCall<'_>) -> Result<Value, ToolError> {
        let args: TradingSignalArgs = call.arguments()?;
        // The order's client id comes from the call: a repeat answers the same order.
        let client_order_id = format!(
            "agent-{}",
            jarvis_store::ids::oldest_first_derived(
                call.run_created_ms,
                call.idempotency_key().as_bytes()
            )
            .hyphenated()
        );
        let mut body = json!({
            "symbol": args.symbol,
            "side": match args.side {
                SignalSide::Buy => "buy",
                SignalSide::Sell => "sell",
            },
            "reason": args.reason,
            "client_order_id": client_order_id,
        });
        for (name, value) in [
            ("quantity", args.quantity.map(Value::from)),
            ("strength", args.strength.map(Value::from)),
            ("limit_price", args.limit_price.map(Value::from)),
        ] {
            if let Some(value) = value {
                body[name] = value;
            }
        }
        let sent = self
            .0
            .call(call.identity, Method::POST, "/trading/signals", Some(body))
            .await?;
        let order = &sent["order"];
        Ok(json!({
            "signal": sent["signal"],
            "order": order["id"],
            "status": order["status"],
            "quantity": order["quantity"],
            "reason": order["reason"],
        }))
    }
}

/// Every tool of a host: the built-in ones, and those acting through the functions it
/// hosts (`knowledge_search` when it has a knowledge base, `trading_signal`).
pub fn all(
    state: &AppState,
    automations: jarvis_automations::Automations,
    knowledge: Option<Arc<jarvis_fn_knowledge::jarvis_knowledge::service::Knowledge>>,
    watching: Option<jarvis_fn_archive::Watching>,
) -> Vec<Arc<dyn Tool>> {
    let archive = InProcess::new(jarvis_fn_archive::routes(), state);
    let crdt = InProcess::new(jarvis_fn_crdt::routes(), state);
    let mut tools: Vec<Arc<dyn Tool>> = vec![
        Arc::new(jarvis_agents::tools::Clock),
        Arc::new(jarvis_agents::tools::Calculator),
        Arc::new(ArchiveSearch(archive)),
        Arc::new(ArchiveAdd {
            state: state.clone(),
            watching,
        }),
        Arc::new(CrdtRead(crdt.clone())),
        Arc::new(CrdtChange(crdt.clone())),
        Arc::new(CounterIncrement(crdt)),
        Arc::new(jarvis_agents::tools::Reminders(automations)),
        Arc::new(TradingSignal(InProcess::new(
            jarvis_fn_trading::routes(jarvis_fn_trading::service(state)),
            state,
        ))),
    ];
    if let Some(knowledge) = knowledge {
        tools.push(Arc::new(KnowledgeSearch(InProcess::new(
            jarvis_fn_knowledge::routes(knowledge),
            state,
        ))));
    }
    tools
}
