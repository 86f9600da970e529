//! The CRDT function: named conflict-free objects a user can share between devices and
//! deployments — counters, grow-only sets, last-writer-wins registers holding any JSON, and
//! observed-remove sets.
//!
//! Each object is one document in its owner's partition (`crdt#<principal>`), sorted under
//! `<kind>#<name>`, so objects of different kinds may share a name and no principal can
//! reach another's objects. Every write is a merge on write: concurrent writers, here or on
//! another replica, never lose each other's changes.

use jarvis_app::AppState;
use jarvis_crdt::{Codec, Crdt, GCounter, GSet, LwwRegister, OrSet};
use jarvis_http::error::{ApiError, AuthRejections, ErrorEnvelope};
use jarvis_http::{Json, Path, validate};
use jarvis_identity::{Authorized, scope};
use jarvis_store::principal::Principal;
use jarvis_store::{Document, Key, MergeOptions};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Longest element of a set, in characters.
pub const MAX_ELEMENT_CHARS: usize = 1024;
/// Most elements one request may add or remove.
pub const MAX_ELEMENTS_PER_REQUEST: usize = 1000;
/// Largest register value, as JSON text.
pub const MAX_REGISTER_BYTES: usize = 64 * 1024;
/// Largest single increment: the largest integer every JSON client reads exactly (2^53 - 1).
pub const MAX_INCREMENT: u64 = (1 << 53) - 1;

/// The function's routes with their OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(increment_counter))
        .routes(routes!(get_counter))
        .routes(routes!(add_to_set, get_set))
        .routes(routes!(put_register, get_register))
        .routes(routes!(change_orset, get_orset))
}

/// The function's routes.
pub fn routes() -> axum::Router<AppState> {
    api().into()
}

fn key(principal: &Principal, kind: &str, name: &str) -> Result<Key, ApiError> {
    validate::name("name", name)?;
    Ok(Key::new(
        format!("crdt#{}", principal.id()),
        format!("{kind}#{name}"),
    )?)
}

/// The object at `key`, or a 404 naming what kind of object is missing.
async fn existing<C: Codec>(
    state: &AppState,
    key: &Key,
    noun: &str,
) -> Result<Document<C>, ApiError> {
    state
        .store
        .read::<C>(key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no such {noun}").into()))
}

jarvis_http::string_schema!(
    /// An element of a set: 1 to 1024 characters.
    Element,
    || validate::bounded(validate::string("1 to 1024 characters"), 1, MAX_ELEMENT_CHARS)
);

/// Checks a list of 1 to 1000 elements of 1 to 1024 characters.
fn check_elements(field: &'static str, elements: &[String]) -> Result<(), ApiError> {
    if elements.is_empty() {
        return Err(ApiError::invalid_field(
            field,
            "must name at least one element",
        ));
    }
    validate::count(field, elements.len(), MAX_ELEMENTS_PER_REQUEST)?;
    for (i, element) in elements.iter().enumerate() {
        if !(1..=MAX_ELEMENT_CHARS).contains(&element.chars().count()) {
            return Err(ApiError::invalid_field(
                format!("{field}[{i}]"),
                format!("elements are 1 to {MAX_ELEMENT_CHARS} characters"),
            ));
        }
    }
    Ok(())
}

/// `POST /crdt/counters/{name}/increment`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Increment {
    /// How much to add: 1 to 2^53 - 1.
    #[schema(minimum = 1, maximum = 9_007_199_254_740_991_u64)]
    #[serde(deserialize_with = "validate::whole_number")]
    pub by: u64,
}

/// A counter as clients see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CounterView {
    /// The counter's name.
    pub name: String,
    /// The sum of every increment, on every replica.
    pub value: u64,
}

/// Adds to a counter, creating it at zero first.
#[utoipa::path(
    post,
    path = "/crdt/counters/{name}/increment",
    tag = "crdt",
    params(("name" = inline(validate::ObjectName), Path, description = "Counter name")),
    request_body = Increment,
    security(("access_token" = ["crdt:write"]), ("api_key" = ["crdt:write"])),
    responses(
        (status = 200, description = "The counter after the increment", body = CounterView),
        (status = 400, description = "Invalid name or amount", body = ErrorEnvelope),
        (status = 422, description = "The counter would pass 2^64 - 1; nothing changed", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip(state, caller, body))]
async fn increment_counter(
    state: AppState,
    caller: Authorized<scope::CrdtWrite>,
    Path(name): Path<String>,
    Json(body): Json<Increment>,
) -> Result<Json<CounterView>, ApiError> {
    let key = key(&caller.principal(), "counter", &name)?;
    if !(1..=MAX_INCREMENT).contains(&body.by) {
        return Err(ApiError::invalid_field(
            "by",
            "must be 1 to 9007199254740991 (2^53 - 1)",
        ));
    }
    let replica = state.replica;
    let (doc, fits) = state
        .store
        .transact(&key, MergeOptions::default(), |counter: &mut GCounter| {
            // The value saturates, so a counter at the maximum has no room for anything.
            if counter.value().checked_add(body.by).is_none() {
                return (GCounter::new(), false);
            }
            (counter.increment(replica, body.by), true)
        })
        .await?;
    if !fits {
        return Err(ApiError::Unprocessable {
            field: Some("by".into()),
            message: "the counter would pass its maximum (2^64 - 1); nothing changed".into(),
        });
    }
    announce(&state, &caller.principal(), "counter", &name).await;
    Ok(Json(CounterView {
        name,
        value: doc.state.value(),
    }))
}

/// Reads a counter.
#[utoipa::path(
    get,
    path = "/crdt/counters/{name}",
    tag = "crdt",
    params(("name" = inline(validate::ObjectName), Path, description = "Counter name")),
    security(("access_token" = ["crdt:read"]), ("api_key" = ["crdt:read"])),
    responses(
        (status = 200, description = "The counter", body = CounterView),
        (status = 404, description = "No such counter", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_counter(
    state: AppState,
    caller: Authorized<scope::CrdtRead>,
    Path(name): Path<String>,
) -> Result<Json<CounterView>, ApiError> {
    let key = key(&caller.principal(), "counter", &name)?;
    let doc = existing::<GCounter>(&state, &key, "counter").await?;
    Ok(Json(CounterView {
        name,
        value: doc.state.value(),
    }))
}

/// `POST /crdt/sets/{name}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAdd {
    /// Elements to add (1 to 1000 strings of 1 to 1024 characters).
    #[schema(value_type = Vec<Element>, min_items = 1, max_items = 1000)]
    pub add: Vec<String>,
}

/// A set as clients see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SetView {
    /// The set's name.
    pub name: String,
    /// Its elements, in ascending order.
    pub elements: Vec<String>,
}

/// Adds elements to a grow-only set, creating it.
#[utoipa::path(
    post,
    path = "/crdt/sets/{name}",
    tag = "crdt",
    params(("name" = inline(validate::ObjectName), Path, description = "Set name")),
    request_body = SetAdd,
    security(("access_token" = ["crdt:write"]), ("api_key" = ["crdt:write"])),
    responses(
        (status = 200, description = "The set after the additions", body = SetView),
        (status = 400, description = "Invalid name or element", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip(state, caller, body))]
async fn add_to_set(
    state: AppState,
    caller: Authorized<scope::CrdtWrite>,
    Path(name): Path<String>,
    Json(body): Json<SetAdd>,
) -> Result<Json<SetView>, ApiError> {
    let key = key(&caller.principal(), "set", &name)?;
    check_elements("add", &body.add)?;
    let delta: GSet<String> = body.add.into_iter().collect();
    let set = state.store.merge(&key, delta).await?;
    announce(&state, &caller.principal(), "set", &name).await;
    Ok(Json(SetView {
        name,
        elements: set.iter().cloned().collect(),
    }))
}

/// Reads a grow-only set.
#[utoipa::path(
    get,
    path = "/crdt/sets/{name}",
    tag = "crdt",
    params(("name" = inline(validate::ObjectName), Path, description = "Set name")),
    security(("access_token" = ["crdt:read"]), ("api_key" = ["crdt:read"])),
    responses(
        (status = 200, description = "The set", body = SetView),
        (status = 404, description = "No such set", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_set(
    state: AppState,
    caller: Authorized<scope::CrdtRead>,
    Path(name): Path<String>,
) -> Result<Json<SetView>, ApiError> {
    let key = key(&caller.principal(), "set", &name)?;
    let doc = existing::<GSet<String>>(&state, &key, "set").await?;
    Ok(Json(SetView {
        name,
        elements: doc.state.iter().cloned().collect(),
    }))
}

/// `PUT /crdt/registers/{name}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterPut {
    /// Any JSON value (at most 64 KiB as JSON text).
    pub value: serde_json::Value,
}

/// A register as clients see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RegisterView {
    /// The register's name.
    pub name: String,
    /// The last value written, on any replica.
    pub value: serde_json::Value,
}

/// Writes a last-writer-wins register.
#[utoipa::path(
    put,
    path = "/crdt/registers/{name}",
    tag = "crdt",
    params(("name" = inline(validate::ObjectName), Path, description = "Register name")),
    request_body = RegisterPut,
    security(("access_token" = ["crdt:write"]), ("api_key" = ["crdt:write"])),
    responses(
        (status = 200, description = "The register after the write", body = RegisterView),
        (status = 400, description = "Invalid name or value", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip(state, caller, body))]
async fn put_register(
    state: AppState,
    caller: Authorized<scope::CrdtWrite>,
    Path(name): Path<String>,
    Json(body): Json<RegisterPut>,
) -> Result<Json<RegisterView>, ApiError> {
    let key = key(&caller.principal(), "register", &name)?;
    let text = body.value.to_string();
    if text.len() > MAX_REGISTER_BYTES {
        return Err(ApiError::invalid_field(
            "value",
            format!("must be at most {MAX_REGISTER_BYTES} bytes as JSON"),
        ));
    }
    let clock = &state.clock;
    let doc = state
        .store
        .update(&key, |register: &mut LwwRegister<String>| {
            let stamp = clock.stamp_after(register.stamp());
            register.set(stamp, text.clone())
        })
        .await?;
    announce(&state, &caller.principal(), "register", &name).await;
    Ok(Json(RegisterView {
        name,
        value: register_value(&doc.state)?,
    }))
}

fn register_value(register: &LwwRegister<String>) -> Result<serde_json::Value, ApiError> {
    match register.get() {
        Some(text) => serde_json::from_str(text).map_err(ApiError::internal),
        None => Ok(serde_json::Value::Null),
    }
}

/// Reads a last-writer-wins register.
#[utoipa::path(
    get,
    path = "/crdt/registers/{name}",
    tag = "crdt",
    params(("name" = inline(validate::ObjectName), Path, description = "Register name")),
    security(("access_token" = ["crdt:read"]), ("api_key" = ["crdt:read"])),
    responses(
        (status = 200, description = "The register", body = RegisterView),
        (status = 404, description = "No such register", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_register(
    state: AppState,
    caller: Authorized<scope::CrdtRead>,
    Path(name): Path<String>,
) -> Result<Json<RegisterView>, ApiError> {
    let key = key(&caller.principal(), "register", &name)?;
    let doc = existing::<LwwRegister<String>>(&state, &key, "register").await?;
    Ok(Json(RegisterView {
        name,
        value: register_value(&doc.state)?,
    }))
}

/// `POST /crdt/orsets/{name}`: removals apply before additions, so an element in both
/// lists ends up present.
/// At least one of the two lists is given, and a list given is not empty.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct OrSetChange {
    /// Elements to add (1 to 1000).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = Vec<Element>, min_items = 1, max_items = 1000, nullable = false)]
    pub add: Option<Vec<String>>,
    /// Elements to remove (1 to 1000; the additions of them seen here).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = Vec<Element>, min_items = 1, max_items = 1000, nullable = false)]
    pub remove: Option<Vec<String>>,
}

/// Adds and removes elements of an observed-remove set, creating it.
#[utoipa::path(
    post,
    path = "/crdt/orsets/{name}",
    tag = "crdt",
    params(("name" = inline(validate::ObjectName), Path, description = "Set name")),
    request_body = OrSetChange,
    security(("access_token" = ["crdt:write"]), ("api_key" = ["crdt:write"])),
    responses(
        (status = 200, description = "The set after the change", body = SetView),
        (status = 400, description = "Invalid name or element", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip(state, caller, body))]
async fn change_orset(
    state: AppState,
    caller: Authorized<scope::CrdtWrite>,
    Path(name): Path<String>,
    Json(body): Json<OrSetChange>,
) -> Result<Json<SetView>, ApiError> {
    let key = key(&caller.principal(), "orset", &name)?;
    if body.add.is_none() && body.remove.is_none() {
        return Err(ApiError::bad_request("give `add`, `remove` or both"));
    }
    if let Some(add) = &body.add {
        check_elements("add", add)?;
    }
    if let Some(remove) = &body.remove {
        check_elements("remove", remove)?;
    }
    let (add, remove) = (
        body.add.unwrap_or_default(),
        body.remove.unwrap_or_default(),
    );
    let replica = state.replica;
    let doc = state
        .store
        .update(&key, |set: &mut OrSet<String>| {
            let mut delta = OrSet::default();
            for element in &remove {
                delta.join(set.remove(element));
            }
            for element in &add {
                delta.join(set.add(replica, element.clone()));
            }
            delta
        })
        .await?;
    announce(&state, &caller.principal(), "orset", &name).await;
    Ok(Json(SetView {
        name,
        elements: sorted(&doc.state),
    }))
}

fn sorted(set: &OrSet<String>) -> Vec<String> {
    let mut elements: Vec<String> = set.iter().cloned().collect();
    elements.sort_unstable();
    elements
}

/// Reads an observed-remove set.
#[utoipa::path(
    get,
    path = "/crdt/orsets/{name}",
    tag = "crdt",
    params(("name" = inline(validate::ObjectName), Path, description = "Set name")),
    security(("access_token" = ["crdt:read"]), ("api_key" = ["crdt:read"])),
    responses(
        (status = 200, description = "The set", body = SetView),
        (status = 404, description = "No such set", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_orset(
    state: AppState,
    caller: Authorized<scope::CrdtRead>,
    Path(name): Path<String>,
) -> Result<Json<SetView>, ApiError> {
    let key = key(&caller.principal(), "orset", &name)?;
    let doc = existing::<OrSet<String>>(&state, &key, "set").await?;
    Ok(Json(SetView {
        name,
        elements: sorted(&doc.state),
    }))
}

/// Tells the owner's WebSocket connections listening to `crdt:<name>` of a change.
async fn announce(state: &AppState, principal: &Principal, kind: &str, name: &str) {
    let (topic, message) = jarvis_realtime::topic::crdt_changed(kind, name);
    state
        .realtime
        .publish(principal.id(), &topic, &message)
        .await;
}

#[cfg(test)]
mod tests;
