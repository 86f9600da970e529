//! The agents function: durable agent runs a user starts, watches, cancels and approves.
//!
//! The domain is `jarvis-agents`; here are its routes, the tools that act on the user's
//! data through the functions that own it ([`tools`]), and on AWS the worker that drives
//! runs from SQS ([`worker`]). Handlers take the host's [`Agents`] from an extension
//! ([`routes`] adds it); [`agent_error`] is what its errors become.

pub mod tools;
#[cfg(feature = "aws")]
pub mod worker;

use std::sync::Arc;

use axum::Extension;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use jarvis_agents::journal::{Step, StepStatus};
use jarvis_agents::run::{self, Run};
use jarvis_agents::{AgentError, Agents, RunRequest, Toolbox};
use jarvis_app::AppState;
use jarvis_fn_ai::TokenUsage;
use jarvis_http::error::{ApiError, AuthRejections, ErrorEnvelope};
use jarvis_http::time::rfc3339_ms;
use jarvis_http::{Hosted, Json, PageParams, Paged, Path, Query, validate};
use jarvis_identity::delegation::Delegation;
use jarvis_identity::{Authorized, scope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use jarvis_agents;

/// Most tools a run may name.
pub const MAX_TOOLS: usize = 32;
/// Longest reason given with a denial, in characters.
pub const MAX_REASON_CHARS: usize = 1_000;

/// The function's routes with their OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_run, list_runs))
        .routes(routes!(get_run))
        .routes(routes!(cancel_run))
        .routes(routes!(approve_run))
        .routes(routes!(deny_run))
        .routes(routes!(list_tools))
}

/// The function's routes, serving `agents`.
pub fn routes(agents: Arc<Agents>) -> axum::Router<AppState> {
    let router: axum::Router<AppState> = api().into();
    router.layer(Extension(agents))
}

/// The agents of a host: thinking through `ai`, with the built-in tools and those acting
/// through the functions it hosts (`knowledge_search` when it has a knowledge base; new
/// archive entries told to `watching`).
pub fn service(
    state: &AppState,
    ai: Arc<jarvis_ai::service::Ai>,
    knowledge: Option<Arc<jarvis_fn_knowledge::jarvis_knowledge::service::Knowledge>>,
    watching: Option<jarvis_fn_archive::Watching>,
) -> Result<Arc<Agents>, jarvis_agents::tools::ToolboxError> {
    let site = state.site();
    let automations =
        jarvis_automations::Automations::new(site.clone(), state.config.automations.max_per_user);
    let toolbox = Toolbox::new(tools::all(state, automations, knowledge, watching))?;
    let agents = Arc::new(Agents::new(
        site,
        ai,
        toolbox,
        Arc::clone(&state.realtime),
        state.config.agents.clone(),
    ));
    #[cfg(feature = "aws")]
    if let Some(url) = &state.config.agents.queue_url {
        agents.attach_dispatch(Arc::new(worker::Sqs(jarvis_queue::Sender::new(
            url.clone(),
            state.config.agents.sqs.clone(),
        ))));
    }
    Ok(agents)
}

/// The agents of a Lambda function: the AI service built as the AI function builds it, the
/// knowledge base as the knowledge function's.
#[cfg(feature = "aws")]
pub async fn lambda_service(
    state: &mut AppState,
) -> Result<Arc<Agents>, jarvis_agents::tools::ToolboxError> {
    let ai = jarvis_fn_ai::lambda_service(state).await;
    let knowledge = jarvis_fn_knowledge::service(state, Arc::clone(&ai))
        .map_err(|err| tracing::error!(error = %err, "no knowledge base for the agents' tools"))
        .ok();
    let watching = jarvis_fn_archive::queue_watcher(state).map(jarvis_fn_archive::Watching);
    service(state, ai, knowledge, watching)
}

/// The Lambda function's routes.
#[cfg(feature = "aws")]
pub async fn lambda_routes(state: &mut AppState) -> axum::Router<AppState> {
    match lambda_service(state).await {
        Ok(agents) => routes(agents),
        Err(err) => {
            // Every route then answers 503 `not_configured`, and the log says why.
            tracing::error!(error = %err, "the agents' tools did not validate");
            api().into()
        }
    }
}

/// The HTTP answer to a failed agent operation.
pub fn agent_error(err: AgentError) -> ApiError {
    match err {
        // The schema's rules are checked before the domain's: what the domain refuses is
        // schema-valid (a tool that does not exist, an approval of a tool that only reads).
        AgentError::Invalid { field, message } => ApiError::unprocessable_field(field, message),
        AgentError::Forbidden(message) => ApiError::Forbidden(message.into()),
        AgentError::NotFound => ApiError::NotFound("no such agent run".into()),
        AgentError::Conflict(message) => ApiError::Conflict(message.into()),
        AgentError::Taken => ApiError::Conflict("another worker drives this run".into()),
        AgentError::Queue(message) => ApiError::Unavailable(message.into()),
        AgentError::Store(err) => err.into(),
    }
}

jarvis_http::string_schema!(
    /// What an agent is asked to do: 1 to 8,000 characters.
    Goal,
    || validate::text_schema(
        "1 to 8000 characters, no control characters other than tab and line breaks",
        run::MAX_GOAL_CHARS
    )
);

jarvis_http::string_schema!(
    /// A tool's name, as `GET /agents/tools` lists them.
    ToolName,
    || validate::bounded(
        validate::string("1 to 64 of a-z 0-9 _").pattern(Some("^[a-z0-9_]{1,64}$")),
        1,
        64
    )
);

jarvis_http::string_schema!(
    /// Why a call was denied: 1 to 1,000 characters.
    Reason,
    || validate::text_schema(
        "1 to 1000 characters, no control characters other than tab and line breaks",
        MAX_REASON_CHARS
    )
);

/// `POST /agents/runs`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRun {
    /// What the agent is to work toward.
    #[schema(value_type = Goal)]
    pub goal: String,
    /// The tools it may call (default: every tool this credential allows).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = Vec<ToolName>, max_items = 32, nullable = false)]
    pub tools: Option<Vec<String>>,
    /// Tools with side effects whose calls wait for the user's approval.
    #[serde(default)]
    #[schema(value_type = Vec<ToolName>, max_items = 32)]
    pub approval: Vec<String>,
    /// Steps (model and tool calls) it may take: 1 to 100 (default 20).
    #[serde(default, deserialize_with = "validate::whole_not_null")]
    #[schema(value_type = u64, minimum = 1, maximum = 100, nullable = false)]
    pub max_steps: Option<u64>,
    /// Tokens it may spend: 100 to 1,000,000 (default 50,000); they count against the
    /// caller's budget too.
    #[serde(default, deserialize_with = "validate::whole_not_null")]
    #[schema(value_type = u64, minimum = 100, maximum = 1_000_000, nullable = false)]
    pub token_budget: Option<u64>,
    /// How long a call waits for approval before it is not made: 60 to 86,400 seconds
    /// (default 3,600).
    #[serde(default, deserialize_with = "validate::whole_not_null")]
    #[schema(value_type = u64, minimum = 60, maximum = 86_400, nullable = false)]
    pub approval_timeout_secs: Option<u64>,
}

/// `value` when it is within `min..=max` (a 400 naming `field` otherwise).
fn within(
    field: &'static str,
    value: Option<u64>,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ApiError> {
    match value {
        Some(n) if !(min..=max).contains(&n) => Err(ApiError::invalid_field(
            field,
            format!("must be {min} to {max}"),
        )),
        other => Ok(other),
    }
}

/// The request of `body`, checked against the schema's rules (400 for any it breaks).
pub fn run_request(body: NewRun) -> Result<RunRequest, ApiError> {
    validate::text("goal", &body.goal, run::MAX_GOAL_CHARS)?;
    if let Some(tools) = &body.tools {
        validate::count("tools", tools.len(), MAX_TOOLS)?;
    }
    validate::count("approval", body.approval.len(), MAX_TOOLS)?;
    let max_steps = within("max_steps", body.max_steps, 1, u64::from(run::MAX_STEPS))?;
    Ok(RunRequest {
        goal: body.goal,
        tools: body.tools,
        approval: body.approval,
        max_steps: max_steps.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        token_budget: within(
            "token_budget",
            body.token_budget,
            run::MIN_TOKEN_BUDGET,
            run::MAX_TOKEN_BUDGET,
        )?,
        approval_timeout_secs: within(
            "approval_timeout_secs",
            body.approval_timeout_secs,
            run::MIN_APPROVAL_TIMEOUT_SECS,
            run::MAX_APPROVAL_TIMEOUT_SECS,
        )?,
    })
}

/// A run as clients see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentRunView {
    /// Its id.
    pub id: String,
    /// What it works toward.
    pub goal: String,
    /// `queued`, `running`, `waiting` (for an approval), `succeeded`, `failed` or
    /// `cancelled`.
    pub status: String,
    /// The tools it may call.
    pub tools: Vec<String>,
    /// Tools whose calls wait for approval.
    pub approval: Vec<String>,
    /// Steps it may take.
    pub max_steps: u32,
    /// Tokens it may spend.
    pub token_budget: u64,
    /// Seconds a call waits for approval.
    pub approval_timeout_secs: u64,
    /// The model alias it thinks with.
    pub model: String,
    /// Its answer, once it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Why it failed or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What started it, when not a request (`automation:<run>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Whether the user asked to cancel it.
    pub cancel_requested: bool,
    /// Worker invocations that drove it.
    pub invocations: u64,
    /// Model calls that failed and were tried again later.
    pub retries: u64,
    /// When it was started.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it last changed.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

fn run_view(run: &Run) -> AgentRunView {
    AgentRunView {
        id: run.id.clone(),
        goal: run.goal.clone(),
        status: run.status.name().to_owned(),
        tools: run.tools.clone(),
        approval: run.approval.clone(),
        max_steps: run.max_steps,
        token_budget: run.token_budget,
        approval_timeout_secs: run.approval_timeout_secs,
        model: run.model.clone(),
        result: run.result.clone(),
        error: run.error.clone(),
        origin: run.origin.clone(),
        cancel_requested: run.cancel_requested,
        invocations: run.invocations,
        retries: run.retries,
        created_at: rfc3339_ms(run.created_at_ms),
        updated_at: rfc3339_ms(run.updated_at_ms),
    }
}

/// A tool call.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ToolCallView {
    /// The call's id.
    pub id: String,
    /// The tool.
    pub name: String,
    /// Its arguments.
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
}

/// One step of a run.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentStepView {
    /// Its place in the run, from 1.
    pub seq: u32,
    /// `model`, `tool` or `approval`.
    pub kind: String,
    /// `completed`, `failed`, `interrupted` (a tool call that may or may not have taken
    /// effect), `started`, `waiting`, `approved`, `denied` or `timed_out`.
    pub status: String,
    /// When it began.
    #[schema(format = DateTime)]
    pub started_at: String,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// A model step's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A model step's tool calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallView>>,
    /// `provider:model` that answered a model step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Tokens a model step used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<TokenUsage>,
    /// A tool or approval step's call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<ToolCallView>,
    /// A tool step's result or error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// When an approval step stops waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub until: Option<String>,
    /// Why the user decided as they did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn call_view(call: &jarvis_ai::ToolCall) -> ToolCallView {
    ToolCallView {
        id: call.id.clone(),
        name: call.name.clone(),
        arguments: call.arguments.clone(),
    }
}

fn step_view(step: &Step) -> AgentStepView {
    AgentStepView {
        seq: step.seq,
        kind: step.kind.name().to_owned(),
        status: step.status.name().to_owned(),
        started_at: rfc3339_ms(step.started_at_ms),
        finished_at: step.finished_at_ms.map(rfc3339_ms),
        text: step.reply.as_ref().map(|r| r.text.clone()),
        tool_calls: step
            .reply
            .as_ref()
            .map(|r| r.tool_calls.iter().map(call_view).collect()),
        model: step.reply.as_ref().map(|r| r.model.clone()),
        usage: step.reply.as_ref().map(|r| TokenUsage {
            input_tokens: r.usage.input_tokens,
            output_tokens: r.usage.output_tokens,
        }),
        call: step.call.as_ref().map(call_view),
        result: step.result.clone(),
        until: step.until_ms.map(rfc3339_ms),
        reason: step.reason.clone(),
    }
}

/// A run with its steps and what it used.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentRunDetail {
    /// The run.
    #[serde(flatten)]
    pub run: AgentRunView,
    /// Its steps, in order.
    pub steps: Vec<AgentStepView>,
    /// Tokens its model steps used.
    pub usage: TokenUsage,
    /// Steps taken toward its limit (model and tool calls).
    pub steps_taken: u32,
    /// The call it waits on, while it waits for approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awaiting: Option<ToolCallView>,
}

fn detail(run: &Run, steps: &[Step]) -> AgentRunDetail {
    let mut usage = TokenUsage {
        input_tokens: 0,
        output_tokens: 0,
    };
    for reply in steps.iter().filter_map(|s| s.reply.as_ref()) {
        usage.input_tokens += reply.usage.input_tokens;
        usage.output_tokens += reply.usage.output_tokens;
    }
    let awaiting = steps
        .iter()
        .rev()
        .find(|s| s.status == StepStatus::Waiting)
        .filter(|_| !run.status.is_terminal())
        .and_then(|s| s.call.as_ref())
        .map(call_view);
    AgentRunDetail {
        run: run_view(run),
        steps: steps.iter().map(step_view).collect(),
        usage,
        steps_taken: u32::try_from(steps.iter().filter(|s| s.counts()).count()).unwrap_or(0),
        awaiting,
    }
}

fn run_id(id: &str) -> Result<String, ApiError> {
    Ok(validate::uuid("id", id)?.hyphenated().to_string())
}

/// Starts an agent run: 202 with the run, queued; its progress shows in `GET
/// /agents/runs/{id}` and on the `agents` WebSocket topic.
#[utoipa::path(
    post,
    path = "/agents/runs",
    tag = "agents",
    request_body = NewRun,
    security(("access_token" = ["agents:write"]), ("api_key" = ["agents:write"])),
    responses(
        (status = 202, description = "The run, queued", body = AgentRunView),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        (status = 403, description = "A tool named needs a permission the credential lacks", body = ErrorEnvelope),
        (status = 422, description = "No tool has a name given, or a tool to approve only reads", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.identity.user_id))]
async fn start_run(
    caller: Authorized<scope::AgentsWrite>,
    Hosted(agents): Hosted<Agents>,
    Json(body): Json<NewRun>,
) -> Result<impl IntoResponse, ApiError> {
    let request = run_request(body)?;
    let delegation = Delegation::from_identity(&caller.identity);
    let run = agents
        .start(&delegation, request, None, None)
        .await
        .map_err(agent_error)?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/agents/runs/{}", run.id))],
        Json(run_view(&run)),
    ))
}

/// The caller's runs, newest first.
#[utoipa::path(
    get,
    path = "/agents/runs",
    tag = "agents",
    params(PageParams),
    security(("access_token" = ["agents:read"]), ("api_key" = ["agents:read"])),
    responses(
        (status = 200, description = "A page of runs", body = Paged<AgentRunView>),
        (status = 400, description = "Invalid limit or cursor", body = ErrorEnvelope),
        (status = 422, description = "A cursor this API did not return", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.identity.user_id))]
async fn list_runs(
    caller: Authorized<scope::AgentsRead>,
    Hosted(agents): Hosted<Agents>,
    Query(params): Query<PageParams>,
) -> Result<Json<Paged<AgentRunView>>, ApiError> {
    let limit = params.limit()?;
    let page = agents
        .list(&caller.identity.user_id, params.cursor.as_deref(), limit)
        .await
        .map_err(agent_error)?;
    Ok(Json(Paged {
        items: page.items.iter().map(run_view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A run with its steps, usage, and the call it waits on.
#[utoipa::path(
    get,
    path = "/agents/runs/{id}",
    tag = "agents",
    params(("id" = inline(validate::Uuid), Path, description = "The run's id")),
    security(("access_token" = ["agents:read"]), ("api_key" = ["agents:read"])),
    responses(
        (status = 200, description = "The run", body = AgentRunDetail),
        (status = 400, description = "Not a run id", body = ErrorEnvelope),
        (status = 404, description = "No such run", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.identity.user_id))]
async fn get_run(
    caller: Authorized<scope::AgentsRead>,
    Hosted(agents): Hosted<Agents>,
    Path(id): Path<String>,
) -> Result<Json<AgentRunDetail>, ApiError> {
    let id = run_id(&id)?;
    let (run, steps) = agents
        .get(&caller.identity.user_id, &id)
        .await
        .map_err(agent_error)?;
    Ok(Json(detail(&run, &steps)))
}

/// Asks to cancel a run: it ends, cancelled, before its next step. 409 for a run that is
/// over.
#[utoipa::path(
    post,
    path = "/agents/runs/{id}/cancel",
    tag = "agents",
    params(("id" = inline(validate::Uuid), Path, description = "The run's id")),
    security(("access_token" = ["agents:write"]), ("api_key" = ["agents:write"])),
    responses(
        (status = 202, description = "Cancelling: the run, `cancel_requested`", body = AgentRunView),
        (status = 400, description = "Not a run id", body = ErrorEnvelope),
        (status = 404, description = "No such run", body = ErrorEnvelope),
        (status = 409, description = "The run is over", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.identity.user_id))]
async fn cancel_run(
    caller: Authorized<scope::AgentsWrite>,
    Hosted(agents): Hosted<Agents>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = run_id(&id)?;
    let run = agents
        .cancel(&caller.identity.user_id, &id)
        .await
        .map_err(agent_error)?;
    Ok((StatusCode::ACCEPTED, Json(run_view(&run))))
}

/// Approves the tool call the run waits on: the call is made and the run goes on.
#[utoipa::path(
    post,
    path = "/agents/runs/{id}/approve",
    tag = "agents",
    params(("id" = inline(validate::Uuid), Path, description = "The run's id")),
    security(("access_token" = ["agents:write"]), ("api_key" = ["agents:write"])),
    responses(
        (status = 200, description = "Approved: the run, queued again", body = AgentRunView),
        (status = 400, description = "Not a run id", body = ErrorEnvelope),
        (status = 404, description = "No such run", body = ErrorEnvelope),
        (status = 409, description = "The run waits for no approval, or it was decided already", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.identity.user_id))]
async fn approve_run(
    caller: Authorized<scope::AgentsWrite>,
    Hosted(agents): Hosted<Agents>,
    Path(id): Path<String>,
) -> Result<Json<AgentRunView>, ApiError> {
    let id = run_id(&id)?;
    let run = agents
        .decide(&caller.identity.user_id, &id, true, None)
        .await
        .map_err(agent_error)?;
    Ok(Json(run_view(&run)))
}

/// `POST /agents/runs/{id}/deny`
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Denial {
    /// Why, for the agent.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = Reason, nullable = false)]
    pub reason: Option<String>,
}

/// Denies the tool call the run waits on: it is not made, the agent is told (with the
/// reason given) and goes on.
#[utoipa::path(
    post,
    path = "/agents/runs/{id}/deny",
    tag = "agents",
    params(("id" = inline(validate::Uuid), Path, description = "The run's id")),
    request_body = Denial,
    security(("access_token" = ["agents:write"]), ("api_key" = ["agents:write"])),
    responses(
        (status = 200, description = "Denied: the run, queued again", body = AgentRunView),
        (status = 400, description = "Not a run id, or an invalid reason", body = ErrorEnvelope),
        (status = 404, description = "No such run", body = ErrorEnvelope),
        (status = 409, description = "The run waits for no approval, or it was decided already", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.identity.user_id))]
async fn deny_run(
    caller: Authorized<scope::AgentsWrite>,
    Hosted(agents): Hosted<Agents>,
    Path(id): Path<String>,
    Json(body): Json<Denial>,
) -> Result<Json<AgentRunView>, ApiError> {
    let id = run_id(&id)?;
    if let Some(reason) = &body.reason {
        validate::text("reason", reason, MAX_REASON_CHARS)?;
    }
    let run = agents
        .decide(&caller.identity.user_id, &id, false, body.reason)
        .await
        .map_err(agent_error)?;
    Ok(Json(run_view(&run)))
}

/// A tool an agent may call.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentToolView {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The JSON Schema of its arguments.
    #[schema(value_type = Object)]
    pub parameters: serde_json::Value,
    /// The scope it needs, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `read_only`, `idempotent` (safe to repeat) or `at_most_once` (made at most once: a
    /// call interrupted by a crash is reported, not repeated).
    pub effect: String,
    /// Whether the caller's credential allows it.
    pub allowed: bool,
}

/// Every tool an agent may call, with the JSON Schema of its input, the scope it needs,
/// what it does to the world, and whether the caller may use it.
#[utoipa::path(
    get,
    path = "/agents/tools",
    tag = "agents",
    security(("access_token" = ["agents:read"]), ("api_key" = ["agents:read"])),
    responses(
        (status = 200, description = "The tools", body = Vec<AgentToolView>),
        AuthRejections,
    )
)]
async fn list_tools(
    caller: Authorized<scope::AgentsRead>,
    Hosted(agents): Hosted<Agents>,
) -> Json<Vec<AgentToolView>> {
    let delegation = Delegation::from_identity(&caller.identity);
    Json(
        agents
            .tools()
            .describe()
            .into_iter()
            .map(|tool| AgentToolView {
                name: tool.name.to_owned(),
                description: tool.description.to_owned(),
                allowed: tool
                    .scope
                    .and_then(jarvis_identity::Scope::parse)
                    .is_none_or(|s| delegation.carries(s)),
                scope: tool.scope.map(str::to_owned),
                effect: serde_json::to_value(tool.effect)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                parameters: tool.parameters,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
