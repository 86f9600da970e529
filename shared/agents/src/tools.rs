//! What an agent may call: each tool has a name, a description for the model, the JSON
//! Schema of its input (derived from the type its input is read into, so the two cannot
//! disagree), the scope it needs and what it does to the world ([`Effect`]).
//!
//! A tool runs as the user who started the run, within the scopes the run was given: the
//! [`ToolCall`] carries the identity the run's delegation acts as, checked again at each
//! call. Its idempotency key names the run and step, so a tool that makes something names
//! it after the call and makes it once however often the call is repeated.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use jarvis_identity::{Identity, Scope};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a tool does to the world, which says what a repeated call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Only reads: repeating it is harmless.
    ReadOnly,
    /// Changes things, but a repeated call with the same idempotency key changes nothing
    /// more (what it makes is named by the key). A run resumed after a crash calls it again.
    Idempotent,
    /// Changes things and cannot tell a repeat: recorded as started before it runs, and a
    /// run resumed after a crash reports it as interrupted — it may have taken effect —
    /// rather than call it again (AWS's at-most-once step semantics).
    AtMostOnce,
}

impl Effect {
    /// Whether the tool changes anything (and so may be made to wait for approval).
    pub fn has_side_effects(self) -> bool {
        self != Self::ReadOnly
    }
}

/// Why a tool call failed: told to the model as the call's result, so it can do otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

impl ToolError {
    /// A failure saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// One call of a tool.
#[derive(Debug)]
pub struct ToolCall<'a> {
    /// Who it acts for, within the run's scopes.
    pub identity: &'a Identity,
    /// The run.
    pub run: &'a str,
    /// The step of the call.
    pub step: u32,
    /// The arguments the model gave.
    pub arguments: &'a serde_json::Value,
    /// When the call is made, ms since the epoch.
    pub now_ms: u64,
    /// When the run was made, ms since the epoch: the same for every repeat of the call, for
    /// ids that order by time.
    pub run_created_ms: u64,
}

impl ToolCall<'_> {
    /// The key that names what this call makes: the same for every repeat of the call.
    pub fn idempotency_key(&self) -> String {
        format!("agent-run {} step {}", self.run, self.step)
    }

    /// The arguments read into `T`; an error naming the field at fault otherwise.
    pub fn arguments<T: DeserializeOwned>(&self) -> Result<T, ToolError> {
        serde_json::from_value(self.arguments.clone())
            .map_err(|e| ToolError::new(format!("the arguments do not fit the tool: {e}")))
    }
}

/// A tool an agent may call.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Its name, as the model calls it: 1 to 64 of `a-z 0-9 _`.
    fn name(&self) -> &'static str;
    /// What it does, for the model.
    fn description(&self) -> &'static str;
    /// The JSON Schema of its arguments (an object).
    fn parameters(&self) -> serde_json::Value;
    /// The scope the caller needs, if any.
    fn scope(&self) -> Option<Scope>;
    /// What it does to the world.
    fn effect(&self) -> Effect;
    /// Runs the call; the answer is told to the model.
    async fn call(&self, call: &ToolCall<'_>) -> Result<serde_json::Value, ToolError>;
}

/// The JSON Schema of `T`, as a tool's parameters: an object, without the meta fields
/// models do not want.
pub fn schema_of<T: JsonSchema>() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
        object.remove("title");
    }
    schema
}

/// A tool as `GET /agents/tools` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolInfo {
    /// Its name.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// The JSON Schema of its arguments.
    pub parameters: serde_json::Value,
    /// The scope it needs, if any.
    pub scope: Option<&'static str>,
    /// What it does to the world.
    pub effect: Effect,
}

/// Why a set of tools was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tool {name:?}: {reason}")]
pub struct ToolboxError {
    /// The tool.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

/// The tools of a host, validated when it starts: names unique and well formed, each
/// schema an object.
#[derive(Clone, Default)]
pub struct Toolbox {
    tools: Vec<Arc<dyn Tool>>,
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tools.iter().map(|t| t.name()))
            .finish()
    }
}

impl Toolbox {
    /// `tools`, validated.
    pub fn new(tools: Vec<Arc<dyn Tool>>) -> Result<Self, ToolboxError> {
        let mut names = BTreeSet::new();
        for tool in &tools {
            let name = tool.name();
            let refuse = |reason: &str| ToolboxError {
                name: name.to_owned(),
                reason: reason.to_owned(),
            };
            let well_formed = (1..=64).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !well_formed {
                return Err(refuse("names are 1 to 64 of a-z 0-9 _"));
            }
            if !names.insert(name) {
                return Err(refuse("two tools have this name"));
            }
            if tool.parameters().get("type").and_then(|t| t.as_str()) != Some("object") {
                return Err(refuse("its parameters are not a JSON Schema object"));
            }
            if tool.description().is_empty() {
                return Err(refuse("it has no description"));
            }
        }
        Ok(Self { tools })
    }

    /// The tool of that name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.iter().find(|t| t.name() == name)
    }

    /// Every tool's name, in the order given.
    pub fn names(&self) -> Vec<&'static str> {
        self.tools.iter().map(|t| t.name()).collect()
    }

    /// Every tool, described.
    pub fn describe(&self) -> Vec<ToolInfo> {
        self.tools
            .iter()
            .map(|tool| ToolInfo {
                name: tool.name(),
                description: tool.description(),
                parameters: tool.parameters(),
                scope: tool.scope().map(Scope::as_str),
                effect: tool.effect(),
            })
            .collect()
    }

    /// The tools named, as the model is offered them.
    pub fn offered(&self, names: &[String]) -> Vec<jarvis_ai::Tool> {
        names
            .iter()
            .filter_map(|name| self.get(name))
            .map(|tool| jarvis_ai::Tool {
                name: tool.name().to_owned(),
                description: tool.description().to_owned(),
                parameters: tool.parameters(),
            })
            .collect()
    }
}

/// `current_time`: the time now, in a time zone.
pub struct Clock;

/// The arguments of `current_time`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockArgs {
    /// An IANA time zone such as Europe/Paris (UTC when absent).
    #[serde(default)]
    pub time_zone: Option<String>,
}

#[async_trait]
impl Tool for Clock {
    fn name(&self) -> &'static str {
        "current_time"
    }
    fn description(&self) -> &'static str {
        "The current date and time, in UTC or in the IANA time zone given."
    }
    fn parameters(&self) -> serde_json::Value {
        schema_of::<ClockArgs>()
    }
    fn scope(&self) -> Option<Scope> {
        None
    }
    fn effect(&self) -> Effect {
        Effect::ReadOnly
    }
    async fn call(&self, call: &ToolCall<'_>) -> Result<serde_json::Value, ToolError> {
        let args: ClockArgs = call.arguments()?;
        let zone_name = args.time_zone.unwrap_or_else(|| "UTC".to_owned());
        let zone = jiff::tz::TimeZone::get(&zone_name)
            .map_err(|_| ToolError::new(format!("{zone_name:?} is not an IANA time zone")))?;
        let now = jiff::Timestamp::from_millisecond(i64::try_from(call.now_ms).unwrap_or(0))
            .map_err(|e| ToolError::new(e.to_string()))?;
        let civil = zone.to_datetime(now);
        let offset = zone.to_offset(now);
        Ok(serde_json::json!({
            "utc": now.to_string(),
            "local": civil.to_string(),
            "time_zone": zone_name,
            "utc_offset": offset.to_string(),
            "weekday": format!("{:?}", civil.weekday()),
        }))
    }
}

/// `calculator`: arithmetic.
pub struct Calculator;

/// Longest expression the calculator reads, in characters.
pub const MAX_EXPRESSION_CHARS: usize = 512;

/// The arguments of `calculator`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalculatorArgs {
    /// An arithmetic expression: numbers, + - * / ^, parentheses, and functions such as
    /// sqrt, ln, exp, sin, cos, tan, abs (at most 512 characters).
    pub expression: String,
}

/// The value of an arithmetic expression: numbers, `+ - * / ^`, parentheses and the usual
/// functions; no variables.
pub fn calculate(expression: &str) -> Result<f64, ToolError> {
    if expression.chars().count() > MAX_EXPRESSION_CHARS {
        return Err(ToolError::new(format!(
            "expressions are at most {MAX_EXPRESSION_CHARS} characters"
        )));
    }
    let value = exmex::eval_str::<f64>(expression)
        .map_err(|e| ToolError::new(format!("not an arithmetic expression: {e}")))?;
    if !value.is_finite() {
        return Err(ToolError::new("the result is not a finite number"));
    }
    Ok(value)
}

#[async_trait]
impl Tool for Calculator {
    fn name(&self) -> &'static str {
        "calculator"
    }
    fn description(&self) -> &'static str {
        "Evaluates an arithmetic expression exactly as written (numbers, + - * / ^, \
         parentheses, sqrt, ln, exp, sin, cos, tan, abs) and answers its value."
    }
    fn parameters(&self) -> serde_json::Value {
        schema_of::<CalculatorArgs>()
    }
    fn scope(&self) -> Option<Scope> {
        None
    }
    fn effect(&self) -> Effect {
        Effect::ReadOnly
    }
    async fn call(&self, call: &ToolCall<'_>) -> Result<serde_json::Value, ToolError> {
        let args: CalculatorArgs = call.arguments()?;
        let value = calculate(&args.expression)?;
        Ok(serde_json::json!({ "expression": args.expression, "value": value }))
    }
}

/// `reminder_create`: a one-time automation that notifies the user.
pub struct Reminders(pub jarvis_automations::Automations);

/// The arguments of `reminder_create`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReminderArgs {
    /// What to remind the user of (1 to 2,000 characters).
    pub message: String,
    /// When, as a local date and time `yyyy-mm-ddThh:mm:ss` in `time_zone`.
    pub at: String,
    /// The IANA time zone of `at` (UTC when absent).
    #[serde(default)]
    pub time_zone: Option<String>,
}

#[async_trait]
impl Tool for Reminders {
    fn name(&self) -> &'static str {
        "reminder_create"
    }
    fn description(&self) -> &'static str {
        "Reminds the user of something at a date and time: a one-time automation that sends \
         them a notification then."
    }
    fn parameters(&self) -> serde_json::Value {
        schema_of::<ReminderArgs>()
    }
    fn scope(&self) -> Option<Scope> {
        Some(Scope::AutomationsWrite)
    }
    fn effect(&self) -> Effect {
        Effect::Idempotent
    }
    async fn call(&self, call: &ToolCall<'_>) -> Result<serde_json::Value, ToolError> {
        let args: ReminderArgs = call.arguments()?;
        let delegation = jarvis_identity::delegation::Delegation::from_identity(call.identity);
        let name: String = args.message.chars().take(64).collect();
        let new = jarvis_automations::NewAutomation {
            name: format!("Reminder: {name}"),
            schedule: format!("at({})", args.at.trim()),
            time_zone: args.time_zone.unwrap_or_else(|| "UTC".to_owned()),
            action: jarvis_automations::Action::Notify {
                message: args.message,
            },
            enabled: true,
        };
        let id = jarvis_store::ids::newest_first_derived(
            call.run_created_ms,
            call.idempotency_key().as_bytes(),
        );
        let made = self
            .0
            .create(&delegation, new, Some(id))
            .await
            .map_err(|e| ToolError::new(e.to_string()))?;
        Ok(serde_json::json!({
            "automation": made.id,
            "schedule": made.schedule.expression_text(),
            "time_zone": made.schedule.time_zone(),
            "next_run_at_ms": made.next_after(made.start_ms.saturating_sub(1)),
        }))
    }
}
