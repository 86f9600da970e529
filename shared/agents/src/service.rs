//! Starting, reading, cancelling and approving runs, and driving them step by step.
//!
//! A worker **invocation** ([`Agents::invoke`]) takes the run's lease, then replays the
//! journal and goes on from where it ends: it asks the model (a step), runs the tools the
//! model called (a step each), and so on until the model answers without calling a tool.
//! Before each step it checks the time left: with less than a margin before its deadline
//! (a quarter of its time, at most two minutes) it stops and queues the run again, so no
//! step is cut off by a Lambda's timeout. A tool call the run must have approved waits for
//! the user's decision with no worker held; a failing model call is tried again later, with
//! a growing pause, five times.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jarvis_ai::service::{Ai, CallError, Payer};
use jarvis_ai::{ChatRequest, Message, Part, Role};
use jarvis_config::AgentsConfig;
use jarvis_health::{Finding, HealthCheck, Status};
use jarvis_http::ApiError;
use jarvis_identity::delegation::Delegation;
use jarvis_identity::{Identity, Scope};
use jarvis_realtime::{Notifier, Topic};
use jarvis_store::{Page, Site};
use uuid::Uuid;

use crate::AgentError;
use crate::journal::{self, ModelReply, Step, StepKind, StepStatus};
use crate::queue::{self, Dispatch, Job, Lease};
use crate::run::{self, Run, RunRequest, RunStatus, Update};
use crate::tools::{Effect, ToolCall, Toolbox};

/// How long past its deadline a worker's lease lasts: a worker that died is replaced soon
/// after the time it was given.
pub const LEASE_GRACE: Duration = Duration::from_secs(2);
/// The longest margin an invocation keeps before its deadline.
pub const MAX_MARGIN: Duration = Duration::from_secs(120);
/// Failed model calls of a run tried again before it fails.
pub const MAX_RETRIES: u64 = 5;
/// Longest tool result told to the model, in characters.
pub const MAX_RESULT_CHARS: usize = 16 * 1024;

/// What one invocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invoked {
    /// The run is over (now, or before).
    Finished(RunStatus),
    /// The invocation reached its deadline and queued the run again.
    Yielded,
    /// The run waits (for approval, or before trying a model call again) until this time,
    /// ms since the epoch.
    Later(u64),
    /// Another worker drives it, or it is not queued here.
    Skipped,
}

/// What driving ended with, before the queue is told.
enum Driven {
    Finished(RunStatus),
    Yield,
    Later(u64),
}

/// The agents of a deployment.
pub struct Agents {
    site: Site,
    ai: Arc<Ai>,
    tools: Toolbox,
    notifier: Arc<Notifier>,
    config: AgentsConfig,
    dispatch: OnceLock<Arc<dyn Dispatch>>,
}

fn now_ms() -> u64 {
    jarvis_crdt::hlc::system_time_ms()
}

fn invalid(field: &str, message: impl Into<String>) -> AgentError {
    AgentError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// What is said when a run's delegation no longer holds.
const NO_LONGER_VALID: &str = "the account or API key that started the run is no longer valid";

impl Agents {
    /// Agents over `site`, thinking through `ai`, calling `tools`, telling the user's
    /// connections of their progress through `notifier`.
    pub fn new(
        site: Site,
        ai: Arc<Ai>,
        tools: Toolbox,
        notifier: Arc<Notifier>,
        config: AgentsConfig,
    ) -> Self {
        Self {
            site,
            ai,
            tools,
            notifier,
            config,
            dispatch: OnceLock::new(),
        }
    }

    /// How runs reach a worker from now on; `false` (nothing changes) when one is set.
    pub fn attach_dispatch(&self, dispatch: Arc<dyn Dispatch>) -> bool {
        self.dispatch.set(dispatch).is_ok()
    }

    /// Where runs are kept.
    pub fn site(&self) -> &Site {
        &self.site
    }

    /// The tools agents may call.
    pub fn tools(&self) -> &Toolbox {
        &self.tools
    }

    async fn dispatch(&self, job: &Job, delay: Duration) -> Result<(), AgentError> {
        match self.dispatch.get() {
            Some(dispatch) => dispatch.dispatch(job, delay).await,
            None => Err(AgentError::Queue(
                "no worker is configured on this host (JARVIS_AGENTS_QUEUE_URL)".into(),
            )),
        }
    }

    /// Checks `request` against the tools and `delegation`, and the run it makes.
    fn plan(
        &self,
        delegation: &Delegation,
        request: RunRequest,
        id: String,
        origin: Option<String>,
    ) -> Result<Run, AgentError> {
        let goal_chars = request.goal.chars().count();
        if goal_chars == 0 || goal_chars > run::MAX_GOAL_CHARS || request.goal.contains('\0') {
            return Err(invalid(
                "goal",
                format!(
                    "must be 1 to {} characters, without NUL",
                    run::MAX_GOAL_CHARS
                ),
            ));
        }
        let allowed = |name: &str| {
            self.tools
                .get(name)
                .is_some_and(|t| t.scope().is_none_or(|s| delegation.carries(s)))
        };
        let tools: Vec<String> = match request.tools {
            Some(names) => {
                let mut seen = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    let Some(tool) = self.tools.get(name) else {
                        return Err(invalid(
                            &format!("tools[{i}]"),
                            format!("no tool is named {name:?}; GET /agents/tools lists them"),
                        ));
                    };
                    if let Some(scope) = tool.scope().filter(|s| !delegation.carries(*s)) {
                        return Err(AgentError::Forbidden(format!(
                            "the tool {name} needs the {scope} permission, which this credential lacks"
                        )));
                    }
                    if !seen.contains(name) {
                        seen.push(name.clone());
                    }
                }
                seen
            }
            None => self
                .tools
                .names()
                .into_iter()
                .filter(|name| allowed(name))
                .map(str::to_owned)
                .collect(),
        };
        for (i, name) in request.approval.iter().enumerate() {
            let field = format!("approval[{i}]");
            if !tools.contains(name) {
                return Err(invalid(
                    &field,
                    format!("{name:?} is not among the run's tools"),
                ));
            }
            if self
                .tools
                .get(name)
                .is_some_and(|t| !t.effect().has_side_effects())
            {
                return Err(invalid(
                    &field,
                    format!("{name} only reads: there is nothing to approve"),
                ));
            }
        }
        let max_steps = request.max_steps.unwrap_or(run::DEFAULT_MAX_STEPS);
        if !(1..=run::MAX_STEPS).contains(&max_steps) {
            return Err(invalid(
                "max_steps",
                format!("must be 1 to {}", run::MAX_STEPS),
            ));
        }
        let token_budget = request.token_budget.unwrap_or(run::DEFAULT_TOKEN_BUDGET);
        if !(run::MIN_TOKEN_BUDGET..=run::MAX_TOKEN_BUDGET).contains(&token_budget) {
            return Err(invalid(
                "token_budget",
                format!(
                    "must be {} to {}",
                    run::MIN_TOKEN_BUDGET,
                    run::MAX_TOKEN_BUDGET
                ),
            ));
        }
        let timeout = request
            .approval_timeout_secs
            .unwrap_or(run::DEFAULT_APPROVAL_TIMEOUT_SECS);
        if !(run::MIN_APPROVAL_TIMEOUT_SECS..=run::MAX_APPROVAL_TIMEOUT_SECS).contains(&timeout) {
            return Err(invalid(
                "approval_timeout_secs",
                format!(
                    "must be {} to {}",
                    run::MIN_APPROVAL_TIMEOUT_SECS,
                    run::MAX_APPROVAL_TIMEOUT_SECS
                ),
            ));
        }
        let mut approval = request.approval;
        approval.dedup();
        let created = now_ms();
        Ok(Run {
            id,
            user: delegation.user_id.clone(),
            goal: request.goal,
            tools,
            approval,
            max_steps,
            token_budget,
            approval_timeout_secs: timeout,
            model: self.config.model.clone(),
            delegation: delegation.clone(),
            status: RunStatus::Queued,
            result: None,
            error: None,
            origin,
            created_at_ms: created,
            updated_at_ms: created,
            invocations: 0,
            retries: 0,
            cancel_requested: false,
        })
    }

    /// Checks that `request` could start a run for `delegation` (tools known and allowed,
    /// limits within bounds), as an automation that will start it is made.
    pub fn check(&self, delegation: &Delegation, request: RunRequest) -> Result<(), AgentError> {
        self.plan(delegation, request, String::new(), None)
            .map(|_| ())
    }

    /// Starts a run for `delegation`'s user and queues it. With `id` given (an automation's
    /// firing, repeated after a crash), a run of that id that exists is answered as it is.
    pub async fn start(
        &self,
        delegation: &Delegation,
        request: RunRequest,
        id: Option<Uuid>,
        origin: Option<String>,
    ) -> Result<Run, AgentError> {
        let id = id
            .unwrap_or_else(|| jarvis_store::ids::newest_first(&self.site.clock.now()))
            .hyphenated()
            .to_string();
        let planned = self.plan(delegation, request, id, origin)?;
        let (stored, made) = run::create(&self.site, &planned).await?;
        if !made {
            return Ok(stored);
        }
        let job = Job {
            user: stored.user.clone(),
            run: stored.id.clone(),
        };
        let now = now_ms();
        queue::put(&self.site, &job, now, now, None).await?;
        if let Err(err) = self.dispatch(&job, Duration::ZERO).await {
            // Nobody would drive it: it fails now rather than wait forever.
            tracing::error!(error = %err, run = %stored.id, "a run could not be queued");
            let reason = "the run could not be queued; try again later";
            self.finish(&stored, RunStatus::Failed, None, Some(reason))
                .await?;
            return Err(err);
        }
        metrics::counter!("agent_runs_started_total").increment(1);
        self.announce_status(&stored).await;
        Ok(stored)
    }

    /// `user`'s run `id` and its steps.
    pub async fn get(&self, user: &str, id: &str) -> Result<(Run, Vec<Step>), AgentError> {
        let run = run::read(&self.site, user, id)
            .await?
            .ok_or(AgentError::NotFound)?;
        let steps = journal::steps(&self.site, user, id).await?;
        Ok((run, steps))
    }

    /// A page of `user`'s runs, newest first.
    pub async fn list(
        &self,
        user: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Run>, AgentError> {
        Ok(run::list(&self.site, user, cursor, limit).await?)
    }

    /// Asks to cancel `user`'s run `id`: a worker finishes it as cancelled before its next
    /// step (at once, when none drives it). 409 for a run that is over.
    pub async fn cancel(&self, user: &str, id: &str) -> Result<Run, AgentError> {
        let current = run::read(&self.site, user, id)
            .await?
            .ok_or(AgentError::NotFound)?;
        if current.status.is_terminal() {
            return Err(AgentError::Conflict(format!(
                "the run is over ({})",
                current.status.name()
            )));
        }
        let run = run::update(
            &self.site,
            user,
            id,
            Update {
                cancel: true,
                ..Update::default()
            },
        )
        .await?;
        self.wake(&run).await?;
        Ok(run)
    }

    /// Queues `run` to be driven now (after a decision or a cancel).
    async fn wake(&self, run: &Run) -> Result<(), AgentError> {
        let job = Job {
            user: run.user.clone(),
            run: run.id.clone(),
        };
        let now = now_ms();
        queue::put(&self.site, &job, now, now, None).await?;
        self.dispatch(&job, Duration::ZERO).await
    }

    /// Approves (or denies) the call `user`'s run `id` waits on; the run goes on. 409 when
    /// it waits for nothing, or someone decided first.
    pub async fn decide(
        &self,
        user: &str,
        id: &str,
        approve: bool,
        reason: Option<String>,
    ) -> Result<Run, AgentError> {
        let (run, steps) = self.get(user, id).await?;
        let waiting = steps
            .iter()
            .rev()
            .find(|s| s.kind == StepKind::Approval && s.status == StepStatus::Waiting)
            .filter(|_| !run.status.is_terminal());
        let Some(waiting) = waiting else {
            return Err(AgentError::Conflict("the run waits for no approval".into()));
        };
        let mut decided = waiting.clone();
        decided.status = if approve {
            StepStatus::Approved
        } else {
            StepStatus::Denied
        };
        decided.finished_at_ms = Some(now_ms());
        decided.reason = reason;
        match journal::record(&self.site, user, id, &decided, Some(StepStatus::Waiting)).await {
            Err(AgentError::Taken) => {
                return Err(AgentError::Conflict(
                    "the call was decided already, or its wait timed out".into(),
                ));
            }
            other => other?,
        }
        self.announce_step(&run, &decided).await;
        let run = run::update(
            &self.site,
            user,
            id,
            Update {
                status: Some(RunStatus::Queued),
                ..Update::default()
            },
        )
        .await?;
        self.announce_status(&run).await;
        self.wake(&run).await?;
        Ok(run)
    }

    /// Drives `job`'s run as one worker invocation that must end by `deadline`, holding
    /// the run's lease as `holder`, and queues it again as its state requires (now, after
    /// a pause, when a wait times out) or takes it off the queue once it is over.
    pub async fn invoke(
        &self,
        job: &Job,
        deadline: Instant,
        holder: &str,
    ) -> Result<Invoked, AgentError> {
        let started = Instant::now();
        let now = now_ms();
        let left = deadline.saturating_duration_since(started);
        let until = now + u64::try_from((left + LEASE_GRACE).as_millis()).unwrap_or(u64::MAX);
        match queue::lease(&self.site, &job.run, holder, until, now).await? {
            Lease::Held => {}
            Lease::Absent | Lease::Busy => return Ok(Invoked::Skipped),
            Lease::NotYet(at) => {
                // Delivered early (a queue's delay is bounded): sent again for the rest.
                self.dispatch(job, Duration::from_millis(at.saturating_sub(now)))
                    .await?;
                return Ok(Invoked::Later(at));
            }
        }
        let margin = (left / 4).min(MAX_MARGIN);
        let driven = self.drive(job, deadline, margin).await;
        let now = now_ms();
        match driven {
            Ok(Driven::Finished(status)) => {
                queue::finish(&self.site, &job.run).await?;
                Ok(Invoked::Finished(status))
            }
            Ok(Driven::Yield) => {
                queue::put(&self.site, job, now, now, Some(holder)).await?;
                self.dispatch(job, Duration::ZERO).await?;
                metrics::counter!("agent_invocations_yielded_total").increment(1);
                Ok(Invoked::Yielded)
            }
            Ok(Driven::Later(at)) => {
                queue::put(&self.site, job, at, now, Some(holder)).await?;
                self.dispatch(job, Duration::from_millis(at.saturating_sub(now)))
                    .await?;
                Ok(Invoked::Later(at))
            }
            Err(AgentError::Taken) => Ok(Invoked::Skipped),
            Err(err) => {
                // Tried again after a pause, by whichever worker comes.
                let at = now + 5_000;
                queue::put(&self.site, job, at, now, Some(holder)).await?;
                self.dispatch(job, Duration::from_secs(5)).await?;
                tracing::warn!(error = %err, run = %job.run, "a run could not be driven; it is tried again");
                Ok(Invoked::Later(at))
            }
        }
    }

    async fn drive(
        &self,
        job: &Job,
        deadline: Instant,
        margin: Duration,
    ) -> Result<Driven, AgentError> {
        let Some(run) = run::read(&self.site, &job.user, &job.run).await? else {
            return Ok(Driven::Finished(RunStatus::Failed));
        };
        if run.status.is_terminal() {
            return Ok(Driven::Finished(run.status));
        }
        let identity = match run.delegation.act(self.site.store.as_ref()).await {
            Ok(identity) => identity,
            Err(ApiError::Unauthorized(_)) => {
                return self
                    .finish(&run, RunStatus::Failed, None, Some(NO_LONGER_VALID))
                    .await;
            }
            Err(err) => return Err(AgentError::Queue(err.to_string())),
        };
        let mut run = run::update(
            &self.site,
            &run.user,
            &run.id,
            Update {
                status: Some(RunStatus::Running),
                invoked: true,
                ..Update::default()
            },
        )
        .await?;
        self.announce_status(&run).await;
        let mut steps = journal::steps(&self.site, &run.user, &run.id).await?;
        loop {
            if let Some(current) = run::read(&self.site, &run.user, &run.id).await? {
                run = current;
            }
            if run.cancel_requested {
                return self
                    .finish(
                        &run,
                        RunStatus::Cancelled,
                        None,
                        Some("cancelled by the user"),
                    )
                    .await;
            }
            if run.status.is_terminal() {
                return Ok(Driven::Finished(run.status));
            }
            if Instant::now() + margin > deadline {
                return Ok(Driven::Yield);
            }
            let now = now_ms();
            let step = match next(&run, &steps, &self.tools, now) {
                Next::Finish(text) => {
                    return self
                        .finish(&run, RunStatus::Succeeded, Some(&text), None)
                        .await;
                }
                Next::Model => match self.model_step(&run, &identity, &steps).await? {
                    Ok(step) => step,
                    Err(ended) => return Ok(ended),
                },
                Next::Tool(call) => {
                    if let Some(ended) = self.over_limit(&run, &steps).await? {
                        return Ok(ended);
                    }
                    self.tool_step(&run, &identity, &steps, call).await?
                }
                Next::Refuse(call, why) => {
                    let mut step = Step::new(seq(&steps), StepKind::Tool, StepStatus::Failed, now);
                    step.call = Some(call);
                    step.result = Some(why);
                    journal::record(&self.site, &run.user, &run.id, &step, None).await?;
                    step
                }
                Next::Interrupted(mut started) => {
                    started.status = StepStatus::Interrupted;
                    started.finished_at_ms = Some(now);
                    started.result = Some(
                        "this call was interrupted before its result was recorded: it may or \
                         may not have taken effect; check before calling it again"
                            .into(),
                    );
                    journal::record(
                        &self.site,
                        &run.user,
                        &run.id,
                        &started,
                        Some(StepStatus::Started),
                    )
                    .await?;
                    let at = started.seq as usize - 1;
                    if let Some(slot) = steps.get_mut(at) {
                        *slot = started.clone();
                    }
                    self.announce_step(&run, &started).await;
                    continue;
                }
                Next::AskApproval(call) => {
                    let until = now + run.approval_timeout_secs * 1000;
                    let mut step =
                        Step::new(seq(&steps), StepKind::Approval, StepStatus::Waiting, now);
                    step.call = Some(call);
                    step.until_ms = Some(until);
                    journal::record(&self.site, &run.user, &run.id, &step, None).await?;
                    self.announce_step(&run, &step).await;
                    let waiting = run::update(
                        &self.site,
                        &run.user,
                        &run.id,
                        Update {
                            status: Some(RunStatus::Waiting),
                            ..Update::default()
                        },
                    )
                    .await?;
                    self.announce_status(&waiting).await;
                    return Ok(Driven::Later(until));
                }
                Next::Wait(waiting) => {
                    let until = waiting.until_ms.unwrap_or(now);
                    if now < until {
                        let waiting_run = run::update(
                            &self.site,
                            &run.user,
                            &run.id,
                            Update {
                                status: Some(RunStatus::Waiting),
                                ..Update::default()
                            },
                        )
                        .await?;
                        self.announce_status(&waiting_run).await;
                        return Ok(Driven::Later(until));
                    }
                    let mut timed_out = waiting.clone();
                    timed_out.status = StepStatus::TimedOut;
                    timed_out.finished_at_ms = Some(now);
                    match journal::record(
                        &self.site,
                        &run.user,
                        &run.id,
                        &timed_out,
                        Some(StepStatus::Waiting),
                    )
                    .await
                    {
                        // Decided just now: read what was decided.
                        Err(AgentError::Taken) => {
                            steps = journal::steps(&self.site, &run.user, &run.id).await?;
                            continue;
                        }
                        other => other?,
                    }
                    let at = timed_out.seq as usize - 1;
                    if let Some(slot) = steps.get_mut(at) {
                        *slot = timed_out.clone();
                    }
                    self.announce_step(&run, &timed_out).await;
                    continue;
                }
            };
            self.announce_step(&run, &step).await;
            steps.push(step);
        }
    }

    /// A run at its step limit fails; `None` when it may take another step.
    async fn over_limit(&self, run: &Run, steps: &[Step]) -> Result<Option<Driven>, AgentError> {
        let taken = steps.iter().filter(|s| s.counts()).count();
        if taken >= run.max_steps as usize {
            let reason = format!(
                "reached its limit of {} steps without finishing",
                run.max_steps
            );
            return self
                .finish(run, RunStatus::Failed, None, Some(&reason))
                .await
                .map(Some);
        }
        Ok(None)
    }

    /// Asks the model for the next turn: the step, or how the run ended (or must wait).
    async fn model_step(
        &self,
        run: &Run,
        identity: &Identity,
        steps: &[Step],
    ) -> Result<Result<Step, Driven>, AgentError> {
        if let Some(ended) = self.over_limit(run, steps).await? {
            return Ok(Err(ended));
        }
        let used: u64 = steps.iter().map(Step::tokens).sum();
        if used >= run.token_budget {
            let reason = format!("spent its budget of {} tokens", run.token_budget);
            return self
                .finish(run, RunStatus::Failed, None, Some(&reason))
                .await
                .map(Err);
        }
        let left = run.token_budget - used;
        let max_output = u64::from(self.config.reply_tokens).min(left);
        let request = ChatRequest {
            model: String::new(),
            system: Some(SYSTEM_PROMPT.to_owned()),
            messages: conversation(run, steps),
            tools: self.tools.offered(&run.tools),
            temperature: None,
            max_output_tokens: Some(u32::try_from(max_output).unwrap_or(u32::MAX)),
            stop: Vec::new(),
        };
        let bytes: usize = request
            .messages
            .iter()
            .map(|m| serde_json::to_string(m).map_or(0, |s| s.len()))
            .sum::<usize>()
            + SYSTEM_PROMPT.len();
        let worst = u64::try_from(bytes.div_ceil(3)).unwrap_or(u64::MAX) + max_output;
        let payer = Payer::User {
            id: &run.user,
            role: identity.role.as_str(),
        };
        let started = now_ms();
        match self
            .ai
            .complete(&self.site, payer, &run.model, request, worst)
            .await
        {
            Ok(completed) => {
                let mut step =
                    Step::new(seq(steps), StepKind::Model, StepStatus::Completed, started);
                step.finished_at_ms = Some(now_ms());
                step.reply = Some(ModelReply {
                    text: completed.reply.text,
                    tool_calls: completed.reply.tool_calls,
                    usage: completed.reply.usage,
                    model: completed.model,
                    stop_reason: completed.reply.stop_reason.name().to_owned(),
                });
                journal::record(&self.site, &run.user, &run.id, &step, None).await?;
                Ok(Ok(step))
            }
            Err(CallError::Provider(err)) if err.is_transient() => {
                let retried = run::update(
                    &self.site,
                    &run.user,
                    &run.id,
                    Update {
                        retried: true,
                        ..Update::default()
                    },
                )
                .await?;
                if retried.retries > MAX_RETRIES {
                    let reason = format!("the model kept failing: {err}");
                    return self
                        .finish(run, RunStatus::Failed, None, Some(&reason))
                        .await
                        .map(Err);
                }
                let pause = 1_000u64 << retried.retries.min(6);
                tracing::info!(run = %run.id, error = %err, pause_ms = pause, "a model call failed; tried again later");
                Ok(Err(Driven::Later(now_ms() + pause)))
            }
            Err(err @ (CallError::Store(_) | CallError::Secrets(_) | CallError::Task(_))) => {
                Err(AgentError::Queue(err.to_string()))
            }
            Err(err) => {
                let reason = err.to_string();
                self.finish(run, RunStatus::Failed, None, Some(&reason))
                    .await
                    .map(Err)
            }
        }
    }

    /// Calls a tool: the recorded step.
    async fn tool_step(
        &self,
        run: &Run,
        identity: &Identity,
        steps: &[Step],
        call: jarvis_ai::ToolCall,
    ) -> Result<Step, AgentError> {
        let started_ms = now_ms();
        let seq = seq(steps);
        let mut step = Step::new(seq, StepKind::Tool, StepStatus::Started, started_ms);
        step.call = Some(call.clone());
        let refuse = |message: String| Err::<serde_json::Value, _>(message);
        let tool = self
            .tools
            .get(&call.name)
            .filter(|_| run.tools.contains(&call.name));
        let outcome = match tool {
            None => refuse(format!(
                "there is no tool {:?} in this run; the tools are: {}",
                call.name,
                run.tools.join(", ")
            )),
            Some(tool) if tool.scope().is_some_and(|s| !identity.allows(s)) => refuse(format!(
                "the tool {} needs the {} permission, which the run no longer has",
                call.name,
                tool.scope().map_or("", Scope::as_str)
            )),
            Some(tool) => {
                let mut expect = None;
                if tool.effect() == Effect::AtMostOnce {
                    journal::record(&self.site, &run.user, &run.id, &step, None).await?;
                    expect = Some(StepStatus::Started);
                }
                let invocation = ToolCall {
                    identity,
                    run: &run.id,
                    step: seq,
                    arguments: &call.arguments,
                    now_ms: started_ms,
                    run_created_ms: run.created_at_ms,
                };
                let answer = tool.call(&invocation).await.map_err(|e| e.0);
                metrics::counter!("agent_tool_calls_total", "tool" => tool.name(), "outcome" => if answer.is_ok() { "ok" } else { "error" }).increment(1);
                step.status = if answer.is_ok() {
                    StepStatus::Completed
                } else {
                    StepStatus::Failed
                };
                step.finished_at_ms = Some(now_ms());
                step.result = Some(match &answer {
                    Ok(value) => clip(&value.to_string()),
                    Err(message) => clip(message),
                });
                journal::record(&self.site, &run.user, &run.id, &step, expect).await?;
                return Ok(step);
            }
        };
        step.status = StepStatus::Failed;
        step.finished_at_ms = Some(now_ms());
        step.result = outcome.err();
        journal::record(&self.site, &run.user, &run.id, &step, None).await?;
        Ok(step)
    }

    async fn finish(
        &self,
        run: &Run,
        status: RunStatus,
        result: Option<&str>,
        error: Option<&str>,
    ) -> Result<Driven, AgentError> {
        let finished = run::update(
            &self.site,
            &run.user,
            &run.id,
            Update {
                status: Some(status),
                result,
                error,
                ..Update::default()
            },
        )
        .await?;
        metrics::counter!("agent_runs_finished_total", "status" => finished.status.name())
            .increment(1);
        self.announce_status(&finished).await;
        Ok(Driven::Finished(finished.status))
    }

    async fn announce_status(&self, run: &Run) {
        let mut message = serde_json::json!({
            "type": "agent.status",
            "topic": "agents",
            "run": run.id,
            "status": run.status.name(),
        });
        if let Some(error) = &run.error {
            message["error"] = serde_json::Value::String(error.clone());
        }
        self.notifier
            .publish(&run.user, &Topic::Agents, &message)
            .await;
    }

    async fn announce_step(&self, run: &Run, step: &Step) {
        let mut message = serde_json::json!({
            "type": "agent.step",
            "topic": "agents",
            "run": run.id,
            "seq": step.seq,
            "kind": step.kind.name(),
            "status": step.status.name(),
        });
        if let Some(call) = &step.call {
            message["tool"] = serde_json::Value::String(call.name.clone());
        }
        self.notifier
            .publish(&run.user, &Topic::Agents, &message)
            .await;
    }

    /// Serves the queue in this process (`jarvis-local`): drives up to `concurrency` runs at
    /// once, each invocation given `invocation` before its deadline, until the process ends.
    pub async fn run_local_worker(
        self: Arc<Self>,
        wake: Arc<tokio::sync::Notify>,
        invocation: Duration,
        concurrency: usize,
    ) {
        let holder = format!("local-{}", Uuid::new_v4().simple());
        let driving: Arc<std::sync::Mutex<std::collections::HashSet<String>>> = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            let now = now_ms();
            match queue::entries(&self.site, now, 256).await {
                Ok(entries) => {
                    for entry in entries {
                        let busy = driving.lock().map_or(usize::MAX, |d| d.len());
                        if busy >= concurrency {
                            break;
                        }
                        if entry.leased || entry.not_before_ms > now {
                            continue;
                        }
                        let fresh = driving
                            .lock()
                            .is_ok_and(|mut d| d.insert(entry.job.run.clone()));
                        if !fresh {
                            continue;
                        }
                        let (agents, driving, holder) =
                            (Arc::clone(&self), Arc::clone(&driving), holder.clone());
                        tasks.spawn(async move {
                            let deadline = Instant::now() + invocation;
                            match agents.invoke(&entry.job, deadline, &holder).await {
                                Ok(invoked) => {
                                    tracing::debug!(run = %entry.job.run, ?invoked, "agent invocation ended");
                                }
                                Err(err) => {
                                    tracing::warn!(run = %entry.job.run, error = %err, "an agent invocation failed");
                                }
                            }
                            if let Ok(mut driving) = driving.lock() {
                                driving.remove(&entry.job.run);
                            }
                        });
                    }
                }
                Err(err) => tracing::warn!(error = %err, "the agent queue could not be read"),
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(LOCAL_POLL) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
    }
}

/// How often the local worker looks at the queue unprompted (a wait that times out, a run
/// queued by another process on the same data).
const LOCAL_POLL: Duration = Duration::from_millis(250);

/// The system prompt of every model step.
pub const SYSTEM_PROMPT: &str = "You are Jarvis, a personal assistant working for the user \
toward the goal they gave. Use the tools offered when they help, with arguments that fit \
their schemas; each result comes back to you. When the goal is reached, or cannot be, \
answer with the outcome in plain text and call no tool.";

/// The next step's number.
fn seq(steps: &[Step]) -> u32 {
    u32::try_from(steps.len() + 1).unwrap_or(u32::MAX)
}

fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_RESULT_CHARS {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(MAX_RESULT_CHARS).collect();
    clipped.push_str("…(cut)");
    clipped
}

/// The conversation the model is given: the goal, then each model turn and tool result.
fn conversation(run: &Run, steps: &[Step]) -> Vec<Message> {
    let mut messages = vec![Message::user(run.goal.clone())];
    for step in steps {
        match step.kind {
            StepKind::Model => {
                let Some(reply) = &step.reply else { continue };
                let mut parts = Vec::new();
                if !reply.text.is_empty() {
                    parts.push(Part::Text {
                        text: reply.text.clone(),
                    });
                }
                parts.extend(reply.tool_calls.iter().map(|call| Part::ToolCall {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                }));
                messages.push(Message {
                    role: Role::Assistant,
                    parts,
                });
            }
            StepKind::Tool if step.status.is_done() => {
                let Some(call) = &step.call else { continue };
                messages.push(Message {
                    role: Role::Tool,
                    parts: vec![Part::ToolResult {
                        call_id: call.id.clone(),
                        content: step.result.clone().unwrap_or_default(),
                        is_error: step.status != StepStatus::Completed,
                    }],
                });
            }
            _ => {}
        }
    }
    messages
}

/// What a run does next, read from its journal.
enum Next {
    /// Ask the model.
    Model,
    /// Call this tool.
    Tool(jarvis_ai::ToolCall),
    /// Record this call as refused, saying why.
    Refuse(jarvis_ai::ToolCall, String),
    /// Ask the user to approve this call.
    AskApproval(jarvis_ai::ToolCall),
    /// The user has not decided on this approval step.
    Wait(Step),
    /// This at-most-once call was started by a worker that stopped.
    Interrupted(Step),
    /// The model answered without calling a tool: done.
    Finish(String),
}

fn next(run: &Run, steps: &[Step], tools: &Toolbox, _now: u64) -> Next {
    let Some(last_model) = steps
        .iter()
        .rposition(|s| s.kind == StepKind::Model && s.status.is_done())
    else {
        return Next::Model;
    };
    let Some(reply) = &steps[last_model].reply else {
        return Next::Model;
    };
    let after = &steps[last_model + 1..];
    for call in &reply.tool_calls {
        let of_call = |kind: StepKind| {
            after
                .iter()
                .rev()
                .find(|s| s.kind == kind && s.call.as_ref().is_some_and(|c| c.id == call.id))
        };
        match of_call(StepKind::Tool) {
            Some(step) if step.status.is_done() => continue,
            Some(step) => return Next::Interrupted(step.clone()),
            None => {}
        }
        let needs_approval = run.approval.contains(&call.name)
            && tools
                .get(&call.name)
                .is_some_and(|t| t.effect().has_side_effects());
        if !needs_approval {
            return Next::Tool(call.clone());
        }
        return match of_call(StepKind::Approval) {
            None => Next::AskApproval(call.clone()),
            Some(step) => match step.status {
                StepStatus::Waiting => Next::Wait(step.clone()),
                StepStatus::Approved => Next::Tool(call.clone()),
                StepStatus::Denied => Next::Refuse(
                    call.clone(),
                    match &step.reason {
                        Some(reason) => format!("the user denied this call: {reason}"),
                        None => "the user denied this call".into(),
                    },
                ),
                _ => Next::Refuse(
                    call.clone(),
                    "nobody approved this call in time; it was not made".into(),
                ),
            },
        };
    }
    if reply.tool_calls.is_empty() {
        Next::Finish(reply.text.clone())
    } else {
        Next::Model
    }
}

/// The agents' queue on `/health`: depth, runs driven and waiting, and how long the oldest
/// ready run has waited (degraded past five minutes: no worker is keeping up).
pub struct AgentsHealth(pub Arc<Agents>);

/// How long a ready run may wait before `/health` calls the queue degraded.
pub const STALE_QUEUE_SECS: u64 = 300;

#[async_trait]
impl HealthCheck for AgentsHealth {
    fn name(&self) -> &'static str {
        "agents"
    }

    fn critical(&self) -> bool {
        false
    }

    async fn check(&self) -> Finding {
        match queue::depth(&self.0.site, now_ms()).await {
            Ok(depth) => {
                let mut finding = Finding::ok();
                if depth.oldest_ready_secs > STALE_QUEUE_SECS {
                    finding.status = Status::Degraded;
                    finding.message = Some(format!(
                        "the oldest queued run has waited {} s for a worker",
                        depth.oldest_ready_secs
                    ));
                }
                finding
                    .with_detail("queued", depth.ready)
                    .with_detail("running", depth.running)
                    .with_detail("awaiting_approval", depth.waiting)
                    .with_detail("oldest_queued_secs", depth.oldest_ready_secs)
                    .with_detail("more", depth.more)
            }
            Err(err) => Finding::down(format!("the agent queue could not be read: {err}")),
        }
    }
}

/// The local host's [`Dispatch`]: the run is in the queue already; the in-process worker is
/// woken (it looks at delayed entries by itself).
pub struct LocalDispatch(pub Arc<tokio::sync::Notify>);

#[async_trait]
impl Dispatch for LocalDispatch {
    async fn dispatch(&self, _job: &Job, _delay: Duration) -> Result<(), AgentError> {
        self.0.notify_one();
        Ok(())
    }
}
