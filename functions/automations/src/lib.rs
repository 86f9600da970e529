//! The automations function: scheduled actions a user keeps — run an agent with a prompt,
//! send a notification, add an archive note — reminders (one-time automations), their run
//! history, and what runs the actions when they are due ([`Actions`]).
//!
//! The domain is `jarvis-automations`; here are its routes, the [`Executor`] that performs
//! its actions through the functions that own them, and on AWS the firer EventBridge
//! Scheduler invokes every minute ([`due`]).

#[cfg(feature = "aws")]
pub mod due;

use std::sync::Arc;

use async_trait::async_trait;
use axum::Extension;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use jarvis_agents::{AgentError, Agents, RunRequest};
use jarvis_app::AppState;
use jarvis_automations::runs::{self, Run};
use jarvis_automations::{
    Action, Automation, AutomationError, Automations, Change, Executor, Fired, NewAutomation,
    Outcome,
};
use jarvis_http::error::{ApiError, AuthRejections, ErrorEnvelope};
use jarvis_http::time::rfc3339_ms;
use jarvis_http::{Hosted, Json, PageParams, Paged, Path, Query, validate};
use jarvis_identity::delegation::Delegation;
use jarvis_identity::{Authorized, Identity, scope};
use jarvis_realtime::Topic;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use jarvis_automations;

/// Most tags on an archive note.
pub const MAX_TAGS: usize = 32;

/// A host's automations and what runs their actions.
pub struct Automating {
    /// The automations.
    pub automations: Automations,
    /// What runs their actions.
    pub actions: Arc<Actions>,
}

impl jarvis_http::Capability for Automating {
    const WHAT: &'static str = "automations";
}

/// The function's routes with their OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_automation, list_automations))
        .routes(routes!(get_automation, patch_automation, delete_automation))
        .routes(routes!(list_runs))
}

/// The function's routes, serving `automating`.
pub fn routes(automating: Arc<Automating>) -> axum::Router<AppState> {
    let router: axum::Router<AppState> = api().into();
    router.layer(Extension(automating))
}

/// The automations of a host, whose actions start runs of `agents` (when it has them) and
/// tell new archive notes to `watching`.
pub fn service(
    state: &AppState,
    agents: Option<Arc<Agents>>,
    watching: Option<jarvis_fn_archive::Watching>,
) -> Arc<Automating> {
    let site = state.site();
    Arc::new(Automating {
        automations: Automations::new(site, state.config.automations.max_per_user),
        actions: Arc::new(Actions {
            state: state.clone(),
            agents,
            watching,
        }),
    })
}

/// The Lambda function's automations.
#[cfg(feature = "aws")]
pub async fn lambda_service(state: &mut AppState) -> Arc<Automating> {
    let agents = match jarvis_fn_agents::lambda_service(state).await {
        Ok(agents) => Some(agents),
        Err(err) => {
            tracing::error!(error = %err, "the agents' tools did not validate: agent actions fail");
            None
        }
    };
    let watching = jarvis_fn_archive::queue_watcher(state).map(jarvis_fn_archive::Watching);
    service(state, agents, watching)
}

/// The Lambda function's routes.
#[cfg(feature = "aws")]
pub async fn lambda_routes(state: &mut AppState) -> axum::Router<AppState> {
    routes(lambda_service(state).await)
}

/// Runs automations' actions as their users.
pub struct Actions {
    state: AppState,
    agents: Option<Arc<Agents>>,
    watching: Option<jarvis_fn_archive::Watching>,
}

/// An agent action as the agents function takes it.
fn agent_request(action: &Action) -> Option<RunRequest> {
    match action {
        Action::Agent {
            goal,
            tools,
            max_steps,
            token_budget,
        } => Some(RunRequest {
            goal: goal.clone(),
            tools: tools.clone(),
            approval: Vec::new(),
            max_steps: *max_steps,
            token_budget: *token_budget,
            approval_timeout_secs: None,
        }),
        _ => None,
    }
}

impl Actions {
    /// Checks that `action` can run for `identity`: the scope it acts with, and for an agent
    /// its tools and limits.
    fn check(&self, identity: &Identity, action: &Action) -> Result<(), ApiError> {
        if let Some(scope) = action.scope() {
            identity.require(scope)?;
        }
        if let Some(request) = agent_request(action) {
            let agents = self
                .agents
                .as_ref()
                .ok_or_else(|| ApiError::NotConfigured("this host has no agents".into()))?;
            agents
                .check(&Delegation::from_identity(identity), request)
                .map_err(|err| match err {
                    AgentError::Invalid { field, message } => {
                        ApiError::unprocessable_field(format!("action.{field}"), message)
                    }
                    other => jarvis_fn_agents::agent_error(other),
                })?;
        }
        Ok(())
    }
}

#[async_trait]
impl Executor for Actions {
    async fn execute(&self, fired: &Fired<'_>) -> Result<Outcome, String> {
        let automation = fired.automation;
        let identity = match automation.delegation.act(self.state.store.as_ref()).await {
            Ok(identity) => identity,
            Err(ApiError::Unauthorized(message)) => return Ok(Outcome::failed(message)),
            Err(err) => return Err(err.to_string()),
        };
        if let Some(scope) = automation.action.scope().filter(|s| !identity.allows(*s)) {
            return Ok(Outcome::failed(format!(
                "the automation's owner no longer has the {scope} permission"
            )));
        }
        let seed = fired.run_id.as_bytes();
        match &automation.action {
            Action::Notify { message } => {
                let note = serde_json::json!({
                    "type": "automation.notification",
                    "topic": Topic::Notifications.name(),
                    "automation": automation.id,
                    "name": automation.name,
                    "run": fired.run_id,
                    "scheduled_at": rfc3339_ms(fired.scheduled_at_ms),
                    "message": message,
                });
                let published = self
                    .state
                    .realtime
                    .publish(&automation.user, &Topic::Notifications, &note)
                    .await;
                Ok(Outcome::succeeded(format!(
                    "notified {} connection(s)",
                    published.delivered
                )))
            }
            Action::ArchiveNote {
                title,
                content,
                tags,
            } => {
                let id = jarvis_store::ids::oldest_first_derived(fired.scheduled_at_ms, seed);
                let entry = jarvis_fn_archive::NewEntry {
                    kind: "note".into(),
                    title: title.clone(),
                    content: content.clone(),
                    tags: tags.clone(),
                };
                match jarvis_fn_archive::add_entry(
                    &self.state,
                    &identity,
                    id,
                    entry,
                    self.watching.clone(),
                )
                .await
                {
                    Ok((entry, _)) => Ok(Outcome::succeeded(format!("archive entry {}", entry.id))),
                    Err(err @ (ApiError::Unavailable(_) | ApiError::Timeout)) => {
                        Err(err.to_string())
                    }
                    Err(err) => Ok(Outcome::failed(err.to_string())),
                }
            }
            Action::Agent { .. } => {
                let Some(agents) = &self.agents else {
                    return Ok(Outcome::failed("this deployment has no agents"));
                };
                let Some(request) = agent_request(&automation.action) else {
                    return Ok(Outcome::failed("not an agent action"));
                };
                let id = jarvis_store::ids::newest_first_derived(fired.scheduled_at_ms, seed);
                match agents
                    .start(
                        &automation.delegation,
                        request,
                        Some(id),
                        Some(format!("automation:{}", fired.run_id)),
                    )
                    .await
                {
                    Ok(run) => Ok(Outcome {
                        agent_run: Some(run.id.clone()),
                        ..Outcome::succeeded(format!("started agent run {}", run.id))
                    }),
                    Err(err @ (AgentError::Queue(_) | AgentError::Store(_))) => {
                        Err(err.to_string())
                    }
                    Err(err) => Ok(Outcome::failed(err.to_string())),
                }
            }
        }
    }
}

/// The HTTP answer to a failed automation operation.
pub fn automation_error(err: AutomationError) -> ApiError {
    match err {
        // A name breaks the schema; a schedule, time zone or action the domain refuses fits
        // it (the pattern of an expression cannot say which fields it may have).
        AutomationError::Invalid {
            field: "name",
            message,
        } => ApiError::invalid_field("name", message),
        AutomationError::Invalid { field, message } => {
            ApiError::unprocessable_field(field, message)
        }
        AutomationError::NeverFires(message) => ApiError::unprocessable_field("schedule", message),
        AutomationError::TooMany(max) => ApiError::Unprocessable {
            field: None,
            message: format!("at most {max} automations per user; delete one first").into(),
        },
        AutomationError::NotFound => ApiError::NotFound("no such automation".into()),
        AutomationError::Store(err) => err.into(),
    }
}

jarvis_http::string_schema!(
    /// An automation's name: 1 to 128 characters.
    AutomationName,
    || validate::text_schema(
        "1 to 128 characters, no control characters",
        jarvis_automations::automation::MAX_NAME_CHARS
    )
    .pattern(Some(r"^[^\u0000-\u001F\u007F-\u009F]*$"))
);

jarvis_http::string_schema!(
    /// An AWS schedule expression: `cron(minutes hours day-of-month month day-of-week
    /// year)`, `rate(5 minutes)` or `at(yyyy-mm-ddThh:mm:ss)`.
    ScheduleExpression,
    || validate::bounded(
        validate::string(
            "cron(…) with six fields, rate(value unit) or at(yyyy-mm-ddThh:mm:ss), as \
             EventBridge Scheduler reads them"
        )
        .pattern(Some(r"^\s*(cron|rate|at)\(.*\)\s*$")),
        1,
        jarvis_automations::automation::MAX_SCHEDULE_CHARS
    )
);

jarvis_http::string_schema!(
    /// An IANA time zone, such as `Europe/Paris` or `UTC`.
    TimeZoneName,
    || validate::bounded(
        validate::string("an IANA time zone name").pattern(Some(r"^[A-Za-z0-9_+\-/]+$")),
        1,
        jarvis_automations::automation::MAX_TIME_ZONE_CHARS
    )
);

jarvis_http::string_schema!(
    /// A notification: 1 to 2,000 characters.
    NotificationText,
    || validate::text_schema(
        "1 to 2000 characters, no control characters other than tab and line breaks",
        jarvis_automations::action::MAX_MESSAGE_CHARS
    )
);

/// What an automation does when it fires.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AutomationAction {
    /// Start an agent run (needs `agents:write`).
    Agent {
        /// What the agent is to work toward.
        #[schema(value_type = jarvis_fn_agents::Goal)]
        goal: String,
        /// The tools it may call (default: every tool the credential allows).
        #[serde(default, deserialize_with = "validate::not_null")]
        #[schema(value_type = Vec<jarvis_fn_agents::ToolName>, max_items = 32, nullable = false)]
        tools: Option<Vec<String>>,
        /// Its step limit: 1 to 100.
        #[serde(default, deserialize_with = "validate::whole_not_null")]
        #[schema(value_type = u64, minimum = 1, maximum = 100, nullable = false)]
        max_steps: Option<u64>,
        /// Its token budget: 100 to 1,000,000.
        #[serde(default, deserialize_with = "validate::whole_not_null")]
        #[schema(value_type = u64, minimum = 100, maximum = 1_000_000, nullable = false)]
        token_budget: Option<u64>,
    },
    /// Send the user a notification (to their WebSocket connections, topic
    /// `notifications`).
    Notify {
        /// What it says.
        #[schema(value_type = NotificationText)]
        message: String,
    },
    /// Add a note to the user's archive (needs `archive:write`).
    ArchiveNote {
        /// Its title.
        #[schema(value_type = jarvis_fn_archive::Title)]
        title: String,
        /// Its content.
        #[schema(value_type = jarvis_fn_archive::Content)]
        content: String,
        /// Its tags (up to 32).
        #[serde(default)]
        #[schema(value_type = Vec<jarvis_fn_archive::Tag>, max_items = 32)]
        tags: Vec<String>,
    },
}

/// The action of `body`, checked against the schema's rules (400 for any it breaks).
fn action_of(body: AutomationAction) -> Result<Action, ApiError> {
    use jarvis_automations::action::{
        MAX_CONTENT_CHARS, MAX_GOAL_CHARS, MAX_MESSAGE_CHARS, MAX_TITLE_CHARS,
    };
    Ok(match body {
        AutomationAction::Agent {
            goal,
            tools,
            max_steps,
            token_budget,
        } => {
            validate::text("action.goal", &goal, MAX_GOAL_CHARS)?;
            if let Some(tools) = &tools {
                validate::count("action.tools", tools.len(), jarvis_fn_agents::MAX_TOOLS)?;
            }
            if max_steps.is_some_and(|n| !(1..=100).contains(&n)) {
                return Err(ApiError::invalid_field(
                    "action.max_steps",
                    "must be 1 to 100",
                ));
            }
            if token_budget.is_some_and(|n| !(100..=1_000_000).contains(&n)) {
                return Err(ApiError::invalid_field(
                    "action.token_budget",
                    "must be 100 to 1000000",
                ));
            }
            Action::Agent {
                goal,
                tools,
                max_steps: max_steps.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                token_budget,
            }
        }
        AutomationAction::Notify { message } => {
            validate::text("action.message", &message, MAX_MESSAGE_CHARS)?;
            Action::Notify { message }
        }
        AutomationAction::ArchiveNote {
            title,
            content,
            tags,
        } => {
            validate::text("action.title", &title, MAX_TITLE_CHARS)?;
            if content.chars().count() > MAX_CONTENT_CHARS || content.contains('\0') {
                return Err(ApiError::invalid_field(
                    "action.content",
                    format!("must be at most {MAX_CONTENT_CHARS} characters, without NUL"),
                ));
            }
            Action::ArchiveNote {
                title,
                content,
                tags: jarvis_fn_archive::check_tags(&tags).map_err(|err| match err {
                    ApiError::BadRequest { field, message } => ApiError::BadRequest {
                        field: field.map(|f| format!("action.{f}").into()),
                        message,
                    },
                    other => other,
                })?,
            }
        }
    })
}

/// `POST /automations`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAutomationBody {
    /// What the user calls it.
    #[schema(value_type = AutomationName)]
    pub name: String,
    /// When it fires.
    #[schema(value_type = ScheduleExpression)]
    pub schedule: String,
    /// The time zone the schedule is read in (default `UTC`).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = TimeZoneName, nullable = false)]
    pub time_zone: Option<String>,
    /// What it does.
    pub action: AutomationAction,
    /// Whether it fires (default true).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
}

/// `PATCH /automations/{id}`: any of the fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct AutomationPatch {
    /// A new name.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = AutomationName, nullable = false)]
    pub name: Option<String>,
    /// A new schedule.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = ScheduleExpression, nullable = false)]
    pub schedule: Option<String>,
    /// A new time zone.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = TimeZoneName, nullable = false)]
    pub time_zone: Option<String>,
    /// A new action.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(nullable = false)]
    pub action: Option<AutomationAction>,
    /// Enables or disables it.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
}

/// An automation as clients see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AutomationView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it fires.
    pub schedule: String,
    /// The time zone the schedule is read in.
    pub time_zone: String,
    /// What it does (`type` `agent`, `notify` or `archive_note`, and its fields).
    #[schema(value_type = Object)]
    pub action: serde_json::Value,
    /// Whether it fires.
    pub enabled: bool,
    /// When it fires next, if ever.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub next_run_at: Option<String>,
    /// Whether this deployment fires it (the one that last made or changed it does).
    pub fires_here: bool,
    /// When it was made.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it last changed.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

fn view(state: &AppState, automation: &Automation) -> AutomationView {
    let now = jarvis_store::now_secs().saturating_mul(1000);
    let now = u64::try_from(now).unwrap_or(0);
    // A rate that starts now fires at its start.
    let after = if automation.start_ms >= now {
        automation.start_ms.saturating_sub(1)
    } else {
        now
    };
    AutomationView {
        id: automation.id.clone(),
        name: automation.name.clone(),
        schedule: automation.schedule.expression_text().to_owned(),
        time_zone: automation.schedule.time_zone().to_owned(),
        action: serde_json::from_str(&automation.action.encode()).unwrap_or_default(),
        enabled: automation.enabled,
        next_run_at: automation.next_after(after).map(rfc3339_ms),
        fires_here: automation.home == state.replica.to_string(),
        created_at: rfc3339_ms(automation.created_at_ms),
        updated_at: rfc3339_ms(automation.updated_at_ms),
    }
}

fn automation_id(id: &str) -> Result<String, ApiError> {
    Ok(validate::uuid("id", id)?.hyphenated().to_string())
}

/// Makes an automation; it fires on its schedule from now on (a rate first now). An
/// `at(…)` schedule makes a reminder.
#[utoipa::path(
    post,
    path = "/automations",
    tag = "automations",
    request_body = NewAutomationBody,
    security(("access_token" = ["automations:write"]), ("api_key" = ["automations:write"])),
    responses(
        (status = 201, description = "The automation", body = AutomationView),
        (status = 400, description = "Invalid field (a malformed schedule, an unknown time zone…)", body = ErrorEnvelope),
        (status = 403, description = "The action needs a permission the credential lacks", body = ErrorEnvelope),
        (status = 422, description = "The schedule never fires, or the user keeps as many automations as allowed", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.identity.user_id))]
async fn create_automation(
    state: AppState,
    caller: Authorized<scope::AutomationsWrite>,
    Hosted(automating): Hosted<Automating>,
    Json(body): Json<NewAutomationBody>,
) -> Result<impl IntoResponse, ApiError> {
    let action = action_of(body.action)?;
    automating.actions.check(&caller.identity, &action)?;
    let new = NewAutomation {
        name: body.name,
        schedule: body.schedule,
        time_zone: body.time_zone.unwrap_or_else(|| "UTC".into()),
        action,
        enabled: body.enabled.unwrap_or(true),
    };
    let delegation = Delegation::from_identity(&caller.identity);
    let made = automating
        .automations
        .create(&delegation, new, None)
        .await
        .map_err(automation_error)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/automations/{}", made.id))],
        Json(view(&state, &made)),
    ))
}

/// The caller's automations, newest first.
#[utoipa::path(
    get,
    path = "/automations",
    tag = "automations",
    params(PageParams),
    security(("access_token" = ["automations:read"]), ("api_key" = ["automations:read"])),
    responses(
        (status = 200, description = "A page of automations", body = Paged<AutomationView>),
        (status = 400, description = "Invalid limit or cursor", body = ErrorEnvelope),
        (status = 422, description = "A cursor this API did not return", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.identity.user_id))]
async fn list_automations(
    state: AppState,
    caller: Authorized<scope::AutomationsRead>,
    Hosted(automating): Hosted<Automating>,
    Query(params): Query<PageParams>,
) -> Result<Json<Paged<AutomationView>>, ApiError> {
    let limit = params.limit()?;
    let page = automating
        .automations
        .list(&caller.identity.user_id, params.cursor.as_deref(), limit)
        .await
        .map_err(automation_error)?;
    Ok(Json(Paged {
        items: page.items.iter().map(|a| view(&state, a)).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One automation, with when it fires next.
#[utoipa::path(
    get,
    path = "/automations/{id}",
    tag = "automations",
    params(("id" = inline(validate::Uuid), Path, description = "The automation's id")),
    security(("access_token" = ["automations:read"]), ("api_key" = ["automations:read"])),
    responses(
        (status = 200, description = "The automation", body = AutomationView),
        (status = 400, description = "Not an automation id", body = ErrorEnvelope),
        (status = 404, description = "No such automation", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.identity.user_id))]
async fn get_automation(
    state: AppState,
    caller: Authorized<scope::AutomationsRead>,
    Hosted(automating): Hosted<Automating>,
    Path(id): Path<String>,
) -> Result<Json<AutomationView>, ApiError> {
    let id = automation_id(&id)?;
    let automation = automating
        .automations
        .get(&caller.identity.user_id, &id)
        .await
        .map_err(automation_error)?;
    Ok(Json(view(&state, &automation)))
}

/// Changes an automation. It then acts with the caller's permissions and fires on this
/// deployment; a new schedule or time zone counts from now.
#[utoipa::path(
    patch,
    path = "/automations/{id}",
    tag = "automations",
    params(("id" = inline(validate::Uuid), Path, description = "The automation's id")),
    request_body = AutomationPatch,
    security(("access_token" = ["automations:write"]), ("api_key" = ["automations:write"])),
    responses(
        (status = 200, description = "The automation", body = AutomationView),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        (status = 403, description = "The action needs a permission the credential lacks", body = ErrorEnvelope),
        (status = 404, description = "No such automation", body = ErrorEnvelope),
        (status = 422, description = "The schedule never fires", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.identity.user_id))]
async fn patch_automation(
    state: AppState,
    caller: Authorized<scope::AutomationsWrite>,
    Hosted(automating): Hosted<Automating>,
    Path(id): Path<String>,
    Json(body): Json<AutomationPatch>,
) -> Result<Json<AutomationView>, ApiError> {
    let id = automation_id(&id)?;
    let empty = body.name.is_none()
        && body.schedule.is_none()
        && body.time_zone.is_none()
        && body.action.is_none()
        && body.enabled.is_none();
    if empty {
        return Err(ApiError::bad_request("name at least one field to change"));
    }
    let user = &caller.identity.user_id;
    let current = automating
        .automations
        .get(user, &id)
        .await
        .map_err(automation_error)?;
    let action = body.action.map(action_of).transpose()?;
    // The automation acts with the caller's permissions from now on: its action, new or
    // kept, must be one they may run.
    automating
        .actions
        .check(&caller.identity, action.as_ref().unwrap_or(&current.action))?;
    let change = Change {
        name: body.name,
        schedule: body.schedule,
        time_zone: body.time_zone,
        action,
        enabled: body.enabled,
    };
    let delegation = Delegation::from_identity(&caller.identity);
    let changed = automating
        .automations
        .update(&delegation, &id, change)
        .await
        .map_err(automation_error)?;
    Ok(Json(view(&state, &changed)))
}

/// Deletes an automation (its run history stays readable until it expires with it).
#[utoipa::path(
    delete,
    path = "/automations/{id}",
    tag = "automations",
    params(("id" = inline(validate::Uuid), Path, description = "The automation's id")),
    security(("access_token" = ["automations:write"]), ("api_key" = ["automations:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not an automation id", body = ErrorEnvelope),
        (status = 404, description = "No such automation", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.identity.user_id))]
async fn delete_automation(
    caller: Authorized<scope::AutomationsWrite>,
    Hosted(automating): Hosted<Automating>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = automation_id(&id)?;
    automating
        .automations
        .delete(&caller.identity.user_id, &id)
        .await
        .map_err(automation_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// One firing of an automation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AutomationRunView {
    /// Its id: the automation and the scheduled time (ms since the epoch).
    pub id: String,
    /// When it was due.
    #[schema(format = DateTime)]
    pub scheduled_at: String,
    /// When its action last began.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// What the action did, or why it failed.
    pub detail: String,
    /// The agent run it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_run: Option<String>,
    /// How many times its action began (more than once only after a crash or an outage).
    pub attempts: u64,
}

fn run_view(run: &Run) -> AutomationRunView {
    AutomationRunView {
        id: run.id.clone(),
        scheduled_at: rfc3339_ms(run.scheduled_at_ms),
        started_at: run.claimed_at_ms.map(rfc3339_ms),
        finished_at: run.finished_at_ms.map(rfc3339_ms),
        status: run
            .status
            .map_or("running", jarvis_automations::fire::Status::name)
            .to_owned(),
        detail: run.detail.clone(),
        agent_run: run.agent_run.clone(),
        attempts: run.attempts,
    }
}

/// An automation's runs, newest first, with their outcome.
#[utoipa::path(
    get,
    path = "/automations/{id}/runs",
    tag = "automations",
    params(
        ("id" = inline(validate::Uuid), Path, description = "The automation's id"),
        PageParams,
    ),
    security(("access_token" = ["automations:read"]), ("api_key" = ["automations:read"])),
    responses(
        (status = 200, description = "A page of runs", body = Paged<AutomationRunView>),
        (status = 400, description = "Not an automation id, or an invalid limit or cursor", body = ErrorEnvelope),
        (status = 404, description = "No such automation", body = ErrorEnvelope),
        (status = 422, description = "A cursor this API did not return", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %caller.identity.user_id))]
async fn list_runs(
    caller: Authorized<scope::AutomationsRead>,
    Hosted(automating): Hosted<Automating>,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<Json<Paged<AutomationRunView>>, ApiError> {
    let id = automation_id(&id)?;
    let limit = params.limit()?;
    let user = &caller.identity.user_id;
    automating
        .automations
        .get(user, &id)
        .await
        .map_err(automation_error)?;
    let page = runs::list(
        automating.automations.site(),
        user,
        &id,
        params.cursor.as_deref(),
        limit,
    )
    .await?;
    Ok(Json(Paged {
        items: page.items.iter().map(run_view).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[cfg(test)]
mod tests;
