//! The journal of a run: its steps, in order, each written once.
//!
//! A step is a model call, a tool call, or a wait for the user's approval of a tool call.
//! Its result is recorded when it completes, with a conditional write that refuses a step
//! some other worker already completed, so two workers never both record one step and a
//! resumed run replays what is recorded instead of doing it again. A tool call with side
//! effects that cannot be repeated safely is also recorded as *started* before it runs, so
//! a run resumed after a crash knows it may have taken effect.

use jarvis_ai::{ToolCall, Usage};
use jarvis_crdt::{Crdt, Entity};
use jarvis_store::{Key, MergeOptions, Site, StoreError};
use serde::{Deserialize, Serialize};

use crate::AgentError;

/// Steps of one run read at most (the step limit and approvals stay well below).
pub const MAX_STEPS_READ: usize = 1_000;

/// What a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// A model call.
    Model,
    /// A tool call.
    Tool,
    /// A wait for the user's approval of a tool call.
    Approval,
}

impl StepKind {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Tool => "tool",
            Self::Approval => "approval",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [Self::Model, Self::Tool, Self::Approval]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    /// Begun; not known to have ended (a tool with side effects, recorded before it ran).
    Started,
    /// Done, its result recorded.
    Completed,
    /// Ended with an error, recorded.
    Failed,
    /// Its worker stopped before it ended; it may have taken effect.
    Interrupted,
    /// Waiting for the user.
    Waiting,
    /// The user approved the call.
    Approved,
    /// The user denied the call.
    Denied,
    /// Nobody decided in time.
    TimedOut,
}

impl StepStatus {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Waiting => "waiting",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::TimedOut => "timed_out",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [
            Self::Started,
            Self::Completed,
            Self::Failed,
            Self::Interrupted,
            Self::Waiting,
            Self::Approved,
            Self::Denied,
            Self::TimedOut,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// Whether the step has ended: recorded for good.
    pub fn is_done(self) -> bool {
        !matches!(self, Self::Started | Self::Waiting)
    }
}

/// What a model step answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelReply {
    /// Its text.
    pub text: String,
    /// The tools it called, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Tokens it used.
    pub usage: Usage,
    /// `provider:model` that answered.
    pub model: String,
    /// Why it ended.
    pub stop_reason: String,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Its place in the run, from 1.
    pub seq: u32,
    /// What it is.
    pub kind: StepKind,
    /// Where it is.
    pub status: StepStatus,
    /// When it began, ms since the epoch.
    pub started_at_ms: u64,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// A model step's reply.
    pub reply: Option<ModelReply>,
    /// A tool or approval step's call.
    pub call: Option<ToolCall>,
    /// A tool step's result (or error), as the model is told it.
    pub result: Option<String>,
    /// When an approval step stops waiting, ms since the epoch.
    pub until_ms: Option<u64>,
    /// Why the user decided as they did, when they said.
    pub reason: Option<String>,
}

impl Step {
    /// A step of `kind` beginning now.
    pub fn new(seq: u32, kind: StepKind, status: StepStatus, now_ms: u64) -> Self {
        Self {
            seq,
            kind,
            status,
            started_at_ms: now_ms,
            finished_at_ms: status.is_done().then_some(now_ms),
            reply: None,
            call: None,
            result: None,
            until_ms: None,
            reason: None,
        }
    }

    /// The stored fields (their golden form is `tests/golden/steps.json`).
    pub fn stored_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("kind", self.kind.name().to_owned()),
            ("status", self.status.name().to_owned()),
            ("started_at", self.started_at_ms.to_string()),
        ];
        if let Some(at) = self.finished_at_ms {
            fields.push(("finished_at", at.to_string()));
        }
        if let Some(reply) = &self.reply {
            fields.push(("reply", serde_json::to_string(reply).unwrap_or_default()));
        }
        if let Some(call) = &self.call {
            fields.push(("call", serde_json::to_string(call).unwrap_or_default()));
        }
        if let Some(result) = &self.result {
            fields.push(("result", result.clone()));
        }
        if let Some(until) = self.until_ms {
            fields.push(("until", until.to_string()));
        }
        if let Some(reason) = &self.reason {
            fields.push(("reason", reason.clone()));
        }
        fields
    }

    fn from_entity(seq: u32, entity: &Entity) -> Option<Self> {
        let number = |name: &str| entity.field(name).and_then(|v| v.parse::<u64>().ok());
        Some(Self {
            seq,
            kind: StepKind::parse(entity.field("kind")?)?,
            status: StepStatus::parse(entity.field("status")?)?,
            started_at_ms: number("started_at")?,
            finished_at_ms: number("finished_at"),
            reply: match entity.field("reply") {
                Some(json) => Some(serde_json::from_str(json).ok()?),
                None => None,
            },
            call: match entity.field("call") {
                Some(json) => Some(serde_json::from_str(json).ok()?),
                None => None,
            },
            result: entity.field("result").map(str::to_owned),
            until_ms: number("until"),
            reason: entity.field("reason").map(str::to_owned),
        })
    }

    /// Whether it counts toward the run's step limit: model and tool calls do, waits do not.
    pub fn counts(&self) -> bool {
        self.kind != StepKind::Approval
    }

    /// Tokens it used.
    pub fn tokens(&self) -> u64 {
        self.reply.as_ref().map_or(0, |r| {
            r.usage.input_tokens.saturating_add(r.usage.output_tokens)
        })
    }
}

/// The partition of a run's steps.
pub fn partition(user: &str, run: &str) -> String {
    format!("agent#{user}#{run}")
}

/// The key of a step.
pub fn key(user: &str, run: &str, seq: u32) -> Result<Key, StoreError> {
    Key::new(partition(user, run), format!("step#{seq:04}"))
}

/// Every step of `user`'s run `run`, in order.
pub async fn steps(site: &Site, user: &str, run: &str) -> Result<Vec<Step>, StoreError> {
    let page = site
        .store
        .list_documents::<Entity>(&partition(user, run), Some("step#"), None, MAX_STEPS_READ)
        .await?;
    Ok(page
        .items
        .iter()
        .filter_map(|doc| {
            let seq = doc.key.sort().strip_prefix("step#")?.parse().ok()?;
            Step::from_entity(seq, &doc.state)
        })
        .collect())
}

/// Records `step` — one conditional write. [`AgentError::Taken`] when the step was already
/// recorded as done (another worker got there first), or when `expect` is given and the
/// stored step is not in that status.
pub async fn record(
    site: &Site,
    user: &str,
    run: &str,
    step: &Step,
    expect: Option<StepStatus>,
) -> Result<(), AgentError> {
    let clock = &site.clock;
    let fields = step.stored_fields();
    let done = step.status.is_done();
    let (_, taken) = site
        .store
        .transact(
            &key(user, run, step.seq)?,
            MergeOptions::default(),
            |entity: &mut Entity| {
                let current = entity.field("status").and_then(StepStatus::parse);
                let mismatch = match expect {
                    Some(expected) => current != Some(expected),
                    None => false,
                };
                if entity.level("done") >= 1 || mismatch {
                    return (Entity::new(), true);
                }
                let stamp = clock.stamp_after(entity.latest_stamp());
                let mut delta = Entity::new();
                for (name, value) in &fields {
                    delta.join(entity.set(name, stamp, value.clone()));
                }
                if done {
                    delta.join(entity.raise("done", 1));
                }
                (delta, false)
            },
        )
        .await?;
    if taken {
        return Err(AgentError::Taken);
    }
    Ok(())
}
