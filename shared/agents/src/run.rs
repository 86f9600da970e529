//! The run record: what was asked, for whom, and how far it is.

use jarvis_crdt::{Crdt, Entity};
use jarvis_identity::delegation::Delegation;
use jarvis_store::{Key, Page, Site, StoreError};

/// Longest goal, in characters.
pub const MAX_GOAL_CHARS: usize = 8_000;
/// Steps (model and tool calls) a run may take unless told.
pub const DEFAULT_MAX_STEPS: u32 = 20;
/// Most steps a run may be given.
pub const MAX_STEPS: u32 = 100;
/// Tokens a run may spend unless told.
pub const DEFAULT_TOKEN_BUDGET: u64 = 50_000;
/// Fewest tokens a run may be given.
pub const MIN_TOKEN_BUDGET: u64 = 100;
/// Most tokens a run may be given.
pub const MAX_TOKEN_BUDGET: u64 = 1_000_000;
/// How long a step waits for the user's approval unless told, in seconds.
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 3_600;
/// Shortest approval wait, in seconds.
pub const MIN_APPROVAL_TIMEOUT_SECS: u64 = 60;
/// Longest approval wait, in seconds.
pub const MAX_APPROVAL_TIMEOUT_SECS: u64 = 86_400;

/// What is asked of an agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunRequest {
    /// What to work toward.
    pub goal: String,
    /// The tools it may call; every tool the delegation allows when `None`.
    pub tools: Option<Vec<String>>,
    /// Tools whose calls wait for the user's approval.
    pub approval: Vec<String>,
    /// Steps it may take.
    pub max_steps: Option<u32>,
    /// Tokens it may spend.
    pub token_budget: Option<u64>,
    /// How long a call waits for approval, in seconds.
    pub approval_timeout_secs: Option<u64>,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker drives it.
    Running,
    /// Waiting for the user to approve or deny a call.
    Waiting,
    /// Done, with a result.
    Succeeded,
    /// Ended without a result; the error says why.
    Failed,
    /// Cancelled by the user.
    Cancelled,
}

impl RunStatus {
    /// Its name as clients see it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Running,
            Self::Waiting,
            Self::Succeeded,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// Whether the run is over: nothing changes it any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Its id.
    pub id: String,
    /// Its user.
    pub user: String,
    /// What it works toward.
    pub goal: String,
    /// The tools it may call.
    pub tools: Vec<String>,
    /// Tools whose calls wait for approval.
    pub approval: Vec<String>,
    /// Steps it may take.
    pub max_steps: u32,
    /// Tokens it may spend.
    pub token_budget: u64,
    /// How long a call waits for approval, in seconds.
    pub approval_timeout_secs: u64,
    /// The model alias it thinks with.
    pub model: String,
    /// What it may do, and for whom.
    pub delegation: Delegation,
    /// Where it is.
    pub status: RunStatus,
    /// Its answer, once it succeeded.
    pub result: Option<String>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// What started it, when not a request (`automation:<run id>`).
    pub origin: Option<String>,
    /// When it was made, ms since the epoch.
    pub created_at_ms: u64,
    /// When it last changed, ms since the epoch.
    pub updated_at_ms: u64,
    /// Worker invocations that drove it.
    pub invocations: u64,
    /// Times a model call failed and was tried again later.
    pub retries: u64,
    /// Whether the user asked to cancel it.
    pub cancel_requested: bool,
}

mod field {
    pub const GOAL: &str = "goal";
    pub const TOOLS: &str = "tools";
    pub const APPROVAL: &str = "approval";
    pub const MAX_STEPS: &str = "max_steps";
    pub const TOKEN_BUDGET: &str = "token_budget";
    pub const APPROVAL_TIMEOUT: &str = "approval_timeout_secs";
    pub const MODEL: &str = "model";
    pub const DELEGATION: &str = "delegation";
    pub const STATUS: &str = "status";
    pub const RESULT: &str = "result";
    pub const ERROR: &str = "error";
    pub const ORIGIN: &str = "origin";
    pub const CREATED_AT: &str = "created_at";
}

/// The partition of a user's runs.
pub fn partition(user: &str) -> String {
    format!("agent#{user}")
}

/// The prefix of run sort keys.
pub const SORT_PREFIX: &str = "run#";

/// The key of a run.
pub fn key(user: &str, id: &str) -> Result<Key, StoreError> {
    Key::new(partition(user), format!("{SORT_PREFIX}{id}"))
}

impl Run {
    /// The stored record's fields at creation (their golden form is
    /// `tests/golden/run.json`).
    pub fn stored_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            (field::GOAL, self.goal.clone()),
            (
                field::TOOLS,
                serde_json::to_string(&self.tools).unwrap_or_default(),
            ),
            (
                field::APPROVAL,
                serde_json::to_string(&self.approval).unwrap_or_default(),
            ),
            (field::MAX_STEPS, self.max_steps.to_string()),
            (field::TOKEN_BUDGET, self.token_budget.to_string()),
            (
                field::APPROVAL_TIMEOUT,
                self.approval_timeout_secs.to_string(),
            ),
            (field::MODEL, self.model.clone()),
            (
                field::DELEGATION,
                serde_json::to_string(&self.delegation).unwrap_or_default(),
            ),
            (field::STATUS, self.status.name().to_owned()),
            (field::CREATED_AT, self.created_at_ms.to_string()),
        ];
        if let Some(origin) = &self.origin {
            fields.push((field::ORIGIN, origin.clone()));
        }
        fields
    }

    /// The run a stored record holds, when this build reads it.
    pub fn from_entity(user: &str, id: &str, entity: &Entity) -> Option<Self> {
        let text = |name: &str| entity.field(name);
        let number = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());
        let list = |name: &str| -> Option<Vec<String>> { serde_json::from_str(text(name)?).ok() };
        let mut status = RunStatus::parse(text(field::STATUS)?)?;
        // A finished run stays finished whatever a stale copy says.
        if entity.has_mark("finished") && !status.is_terminal() {
            status = RunStatus::Failed;
        }
        Some(Self {
            id: id.to_owned(),
            user: user.to_owned(),
            goal: text(field::GOAL)?.to_owned(),
            tools: list(field::TOOLS)?,
            approval: list(field::APPROVAL)?,
            max_steps: u32::try_from(number(field::MAX_STEPS)?).ok()?,
            token_budget: number(field::TOKEN_BUDGET)?,
            approval_timeout_secs: number(field::APPROVAL_TIMEOUT)?,
            model: text(field::MODEL)?.to_owned(),
            delegation: serde_json::from_str(text(field::DELEGATION)?).ok()?,
            status,
            result: text(field::RESULT).map(str::to_owned),
            error: text(field::ERROR).map(str::to_owned),
            origin: text(field::ORIGIN).map(str::to_owned),
            created_at_ms: number(field::CREATED_AT)?,
            updated_at_ms: entity.latest_stamp().map_or(0, |s| s.wall_ms),
            invocations: entity.level("invocations"),
            retries: entity.level("retries"),
            cancel_requested: entity.has_mark("cancel"),
        })
    }
}

/// Stores `run` unless a run of its id exists (work repeated after a crash names the run it
/// starts as the first attempt did); answers the stored run either way, and whether it was
/// made now.
pub async fn create(site: &Site, run: &Run) -> Result<(Run, bool), StoreError> {
    let clock = &site.clock;
    let fields = run.stored_fields();
    let (doc, made) = site
        .store
        .transact(
            &key(&run.user, &run.id)?,
            jarvis_store::MergeOptions::default(),
            |entity: &mut Entity| {
                if !entity.is_empty() {
                    return (Entity::new(), false);
                }
                let stamp = clock.now();
                let mut delta = Entity::new();
                for (name, value) in &fields {
                    delta.join(entity.set(name, stamp, value.clone()));
                }
                (delta, true)
            },
        )
        .await?;
    let stored = Run::from_entity(&run.user, &run.id, &doc.state)
        .ok_or_else(|| StoreError::Corrupt(corrupt()))?;
    Ok((stored, made))
}

fn corrupt() -> jarvis_crdt::DecodeError {
    jarvis_crdt::DecodeError::Malformed("an agent run record this build cannot read".into())
}

/// `user`'s run `id`, when there is one.
pub async fn read(site: &Site, user: &str, id: &str) -> Result<Option<Run>, StoreError> {
    Ok(site
        .store
        .read::<Entity>(&key(user, id)?)
        .await?
        .and_then(|doc| Run::from_entity(user, id, &doc.state)))
}

/// A page of `user`'s runs, newest first.
pub async fn list(
    site: &Site,
    user: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Run>, StoreError> {
    site.store
        .list_by_id(
            &partition(user),
            SORT_PREFIX,
            cursor,
            limit,
            |id, state: &Entity| Run::from_entity(user, id, state),
        )
        .await
}

/// A change to a run's record.
#[derive(Debug, Default)]
pub struct Update<'a> {
    /// A new status (ignored once the run is finished).
    pub status: Option<RunStatus>,
    /// Its result.
    pub result: Option<&'a str>,
    /// Why it failed or was cancelled.
    pub error: Option<&'a str>,
    /// Counts a worker invocation.
    pub invoked: bool,
    /// Counts a retry of a failed model call.
    pub retried: bool,
    /// Records the user's request to cancel.
    pub cancel: bool,
}

/// Applies `update` to `user`'s run `id` and answers the run after it: one conditional
/// write, none when nothing changes. A finished run keeps its status.
pub async fn update(
    site: &Site,
    user: &str,
    id: &str,
    update: Update<'_>,
) -> Result<Run, StoreError> {
    let clock = &site.clock;
    let doc = site
        .store
        .update(&key(user, id)?, |entity: &mut Entity| {
            let mut delta = Entity::new();
            if entity.is_empty() {
                return delta;
            }
            let finished = entity.has_mark("finished");
            let stamp = clock.stamp_after(entity.latest_stamp());
            if let Some(status) = update.status.filter(|_| !finished) {
                if entity.field(field::STATUS) != Some(status.name()) {
                    delta.join(entity.set(field::STATUS, stamp, status.name()));
                }
                if status.is_terminal() {
                    delta.join(entity.mark("finished"));
                    if let Some(result) = update.result {
                        delta.join(entity.set(field::RESULT, stamp, result));
                    }
                    if let Some(error) = update.error {
                        delta.join(entity.set(field::ERROR, stamp, error));
                    }
                }
            }
            if update.invoked && !finished {
                let next = entity.level("invocations") + 1;
                delta.join(entity.raise("invocations", next));
            }
            if update.retried && !finished {
                let next = entity.level("retries") + 1;
                delta.join(entity.raise("retries", next));
            }
            if update.cancel && !finished && !entity.has_mark("cancel") {
                delta.join(entity.mark("cancel"));
            }
            delta
        })
        .await?;
    Run::from_entity(user, id, &doc.state).ok_or_else(|| StoreError::Corrupt(corrupt()))
}
