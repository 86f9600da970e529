//! The archive function: a principal's notes, links and documents, with tags.
//!
//! Each entry is one [`Record`] document in its owner's partition (`archive#<principal>`),
//! sorted under `entry#<id>` with a time-ordered id (UUIDv7), so a listing comes out oldest
//! first and pages by cursor. Fields merge independently, the last writer winning per field;
//! a delete is an observed remove that also drops every field's value: an edit made
//! concurrently elsewhere does not bring a deleted entry back, and its content neither stays
//! in the document nor syncs on.

use std::sync::Arc;

use axum::Extension;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use jarvis_app::AppState;
use jarvis_crdt::{Crdt, Record, ReplicaId};
use jarvis_http::error::{ApiError, AuthRejections, ErrorEnvelope};
use jarvis_http::time::rfc3339_ms;
use jarvis_http::{Json, Paged, Path, Query, validate};
use jarvis_identity::{Authorized, Identity, scope};
use jarvis_store::clock::Clock;
use jarvis_store::principal::Principal;
use jarvis_store::{Document, Key, encode_cursor};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 512;
/// Longest content, in characters (at most 256 KiB of UTF-8).
pub const MAX_CONTENT_CHARS: usize = 64 * 1024;
/// Most tags on one entry.
pub const MAX_TAGS: usize = 32;
/// Default and largest page size of a listing.
pub const DEFAULT_PAGE: usize = 20;
/// Largest page size of a listing.
pub const MAX_PAGE: usize = 100;
/// Most entries one filtered listing examines. A filter that matches little would otherwise
/// read the whole partition in one request; past the budget the page comes back short (even
/// empty) with a `next_cursor` to go on from.
pub const SCAN_BUDGET: usize = 1_000;

/// A change to an entry, as a [`Watcher`] hears of it. On AWS it is the body of a message
/// on the knowledge base's ingestion queue, which indexes entries from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Changed {
    /// The entry's id.
    pub archive_entry: String,
    /// Its owner.
    pub user: String,
    /// The owner's role when they changed it.
    pub role: String,
    /// What happened: `created`, `updated` or `deleted`.
    pub change: String,
}

/// What hears of every change to an entry made here, after it is stored: the knowledge
/// base, which keeps the entries it indexes up to date.
#[async_trait::async_trait]
pub trait Watcher: Send + Sync {
    /// Hears of `change`; an error is logged, and the change stands.
    async fn changed(&self, change: &Changed) -> Result<(), String>;
}

/// The [`Watcher`] of a host, as a request extension; a host without one tells nobody.
#[derive(Clone)]
pub struct Watching(pub Arc<dyn Watcher>);

impl std::fmt::Debug for Watching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watching").finish_non_exhaustive()
    }
}

/// The function's routes with their OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_entry, list_entries))
        .routes(routes!(get_entry, patch_entry, delete_entry))
}

/// The function's routes.
pub fn routes() -> axum::Router<AppState> {
    api().into()
}

/// The Lambda function's routes: changes are sent to the knowledge base's ingestion queue
/// when the configuration names one.
pub fn lambda_routes(state: &AppState) -> axum::Router<AppState> {
    match queue_watcher(state) {
        Some(watcher) => routes().layer(Extension(Watching(watcher))),
        None => routes(),
    }
}

/// What tells the knowledge base's ingestion queue of archive changes, when the
/// configuration names the queue (and the build can send to it).
pub fn queue_watcher(state: &AppState) -> Option<Arc<dyn Watcher>> {
    #[cfg(feature = "aws")]
    if let Some(url) = &state.config.knowledge.queue_url {
        let queue = jarvis_queue::Sender::new(url.clone(), state.config.knowledge.sqs.clone());
        return Some(Arc::new(QueueWatcher(queue)));
    }
    let _ = state;
    None
}

/// Changes as messages on a queue.
#[cfg(feature = "aws")]
struct QueueWatcher(jarvis_queue::Sender);

#[cfg(feature = "aws")]
#[async_trait::async_trait]
impl Watcher for QueueWatcher {
    async fn changed(&self, change: &Changed) -> Result<(), String> {
        let body = serde_json::to_string(change).map_err(|e| e.to_string())?;
        self.0.send(body).await.map_err(|e| e.to_string())
    }
}

fn partition(principal: &Principal) -> String {
    format!("archive#{}", principal.id())
}

const SORT_PREFIX: &str = "entry#";

fn entry_key(principal: &Principal, id: &str) -> Result<Key, ApiError> {
    let id = validate::uuid("id", id)?;
    Ok(Key::new(
        partition(principal),
        format!("{SORT_PREFIX}{}", id.hyphenated()),
    )?)
}

fn not_found() -> ApiError {
    ApiError::NotFound("no such archive entry".into())
}

/// The live entry `id` of `principal`: 400 for an id that is not a UUID, 404 when absent
/// or deleted.
pub async fn entry(state: &AppState, principal: &Principal, id: &str) -> Result<Entry, ApiError> {
    let key = entry_key(principal, id)?;
    let doc = live_entry(state, &key).await?;
    view(id, &doc.state)
}

/// A page of up to `limit` ids of `principal`'s live entries, oldest first, after
/// `cursor`; the cursor of the next page, when there is one.
pub async fn entry_ids(
    state: &AppState,
    principal: &Principal,
    cursor: Option<&str>,
    limit: usize,
) -> Result<(Vec<String>, Option<String>), ApiError> {
    let page = state
        .store
        .list_documents::<Record>(&partition(principal), Some(SORT_PREFIX), cursor, limit)
        .await?;
    let ids = page
        .items
        .iter()
        .filter(|doc| doc.state.is_live())
        .map(|doc| doc.key.sort().trim_start_matches(SORT_PREFIX).to_owned())
        .collect();
    Ok((ids, page.next_cursor))
}

/// The entry at `key`, unless it is absent or deleted.
async fn live_entry(state: &AppState, key: &Key) -> Result<Document<Record>, ApiError> {
    state
        .store
        .read::<Record>(key)
        .await?
        .filter(|doc| doc.state.is_live())
        .ok_or_else(not_found)
}

/// An archive entry as clients see it.
#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Entry {
    /// The entry's id.
    pub id: String,
    /// What it is: `note`, `link`, `document`… (lowercase letters, digits, `_`, `-`).
    pub kind: String,
    /// Its title.
    pub title: String,
    /// Its content.
    pub content: String,
    /// Its tags, lowercase, sorted.
    pub tags: Vec<String>,
    /// When it was created (RFC 3339, UTC, to the millisecond).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When a field last changed (RFC 3339, UTC, to the millisecond).
    #[schema(format = DateTime)]
    pub updated_at: String,
}

fn view(id: &str, record: &Record) -> Result<Entry, ApiError> {
    let field = |name: &str| record.get(name).unwrap_or_default().to_owned();
    let tags = match (record.set_elements(TAGS), record.get(TAGS)) {
        (Some(tags), _) => tags.into_iter().map(str::to_owned).collect(),
        // An entry whose tags were last written as one field, before tags were a set.
        (None, Some(json)) => serde_json::from_str(json).map_err(ApiError::internal)?,
        (None, None) => Vec::new(),
    };
    // Every change stamps a field: tag edits stamp the (emptied) `tags` field too.
    let updated_at = record.latest_stamp().map_or(0, |stamp| stamp.wall_ms);
    Ok(Entry {
        id: id.to_owned(),
        kind: field("kind"),
        title: field("title"),
        content: field("content"),
        tags,
        created_at: rfc3339_ms(field("created_at").parse().unwrap_or_default()),
        updated_at: rfc3339_ms(updated_at),
    })
}

const KIND_RULE: &str =
    "must be 1 to 64 characters of letters, digits, '_' or '-' (kept in lower case)";

jarvis_http::string_schema!(
    /// What an entry is: `note`, `link`, `document`…
    Kind,
    || validate::bounded(
        validate::string(KIND_RULE).pattern(Some("^[A-Za-z0-9_-]{1,64}$")),
        1,
        64,
    )
);

fn check_kind(kind: &str) -> Result<String, ApiError> {
    let ok = (1..=64).contains(&kind.len())
        && kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(kind.to_ascii_lowercase())
    } else {
        Err(ApiError::invalid_field("kind", KIND_RULE))
    }
}

jarvis_http::string_schema!(
    /// An entry's title.
    Title,
    || validate::text_schema(
        "1 to 512 characters, no control characters other than tab and line breaks",
        MAX_TITLE_CHARS,
    )
);

fn check_title(title: &str) -> Result<String, ApiError> {
    validate::text("title", title, MAX_TITLE_CHARS)?;
    Ok(title.to_owned())
}

jarvis_http::string_schema!(
    /// An entry's content.
    Content,
    || validate::string("Up to 65,536 characters, without NUL")
        .max_length(Some(MAX_CONTENT_CHARS))
        .pattern(Some(r"^[^\u0000]*$"))
);

fn check_content(content: &str) -> Result<String, ApiError> {
    if content.chars().count() > MAX_CONTENT_CHARS {
        return Err(ApiError::invalid_field(
            "content",
            format!("must be at most {MAX_CONTENT_CHARS} characters"),
        ));
    }
    if content.contains('\0') {
        return Err(ApiError::invalid_field("content", "must not contain NUL"));
    }
    Ok(content.to_owned())
}

const TAG_RULE: &str =
    "tags are 1 to 64 characters of letters, digits, '_', '-', ':' or '.' (kept in lower case)";

jarvis_http::string_schema!(
    /// A tag.
    Tag,
    || validate::bounded(
        validate::string(TAG_RULE).pattern(Some("^[A-Za-z0-9_.:-]{1,64}$")),
        1,
        64,
    )
);

/// A tag in lower case, when it is a valid one.
fn normal_tag(tag: &str) -> Option<String> {
    let ok = (1..=64).contains(&tag.len())
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.'));
    ok.then(|| tag.to_ascii_lowercase())
}

/// The named set of a record holding an entry's tags.
const TAGS: &str = "tags";

/// Tags checked, in lower case, deduplicated and sorted.
pub fn check_tags(tags: &[String]) -> Result<Vec<String>, ApiError> {
    validate::count("tags", tags.len(), MAX_TAGS)?;
    let mut checked = Vec::with_capacity(tags.len());
    for (i, tag) in tags.iter().enumerate() {
        let tag = normal_tag(tag)
            .ok_or_else(|| ApiError::invalid_field(format!("tags[{i}]"), TAG_RULE))?;
        checked.push(tag);
    }
    checked.sort_unstable();
    checked.dedup();
    Ok(checked)
}

/// Makes an entry's tags `tags`: an observed-remove set, so concurrent edits elsewhere keep
/// their additions. The `tags` field is cleared with a new stamp: an entry tagged before
/// tags were a set loses its old single field, and the stamp says when tags last changed.
fn replace_tags(record: &mut Record, replica: ReplicaId, clock: &Clock, tags: &[String]) -> Record {
    let mut delta = record.replace_set(replica, TAGS, tags.iter().cloned());
    let stamp = clock.stamp_after(record.stamp(TAGS));
    delta.join(record.unset(TAGS.to_owned(), stamp));
    delta
}

/// `POST /archive`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    /// What it is, e.g. `note`.
    #[schema(value_type = Kind)]
    pub kind: String,
    /// Its title.
    #[schema(value_type = Title)]
    pub title: String,
    /// Its content.
    #[schema(value_type = Content)]
    pub content: String,
    /// Its tags (up to 32; duplicates count once).
    #[serde(default)]
    #[schema(value_type = Vec<Tag>, max_items = 32)]
    pub tags: Vec<String>,
}

/// Archives an entry.
#[utoipa::path(
    post,
    path = "/archive",
    tag = "archive",
    request_body = NewEntry,
    security(("access_token" = ["archive:write"]), ("api_key" = ["archive:write"])),
    responses(
        (status = 201, description = "The entry, with its id", body = Entry),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all)]
async fn create_entry(
    state: AppState,
    caller: Authorized<scope::ArchiveWrite>,
    watching: Option<Extension<Watching>>,
    Json(body): Json<NewEntry>,
) -> Result<impl IntoResponse, ApiError> {
    let id = Uuid::now_v7();
    let (entry, _) = add_entry(&state, &caller.identity, id, body, watching.map(|w| w.0)).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/archive/{}", entry.id))],
        Json(entry),
    ))
}

/// Archives `body` for `owner` under `id`, unless an entry of that id exists or existed
/// (work repeated after a crash names the entry it makes as its first attempt did): the
/// entry, and whether it was made now. Every entry made is announced to the owner's
/// connections and to `watching`.
pub async fn add_entry(
    state: &AppState,
    owner: &Identity,
    id: Uuid,
    body: NewEntry,
    watching: Option<Watching>,
) -> Result<(Entry, bool), ApiError> {
    let fields = [
        ("kind", check_kind(&body.kind)?),
        ("title", check_title(&body.title)?),
        ("content", check_content(&body.content)?),
    ];
    let tags = check_tags(&body.tags)?;
    let id = id.hyphenated().to_string();
    let key = entry_key(&owner.principal(), &id)?;
    let (replica, clock) = (state.replica, &state.clock);
    let (doc, made) = state
        .store
        .transact(
            &key,
            jarvis_store::MergeOptions::default(),
            |record: &mut Record| {
                if record.latest_stamp().is_some() {
                    return (Record::new(), false);
                }
                let stamp = clock.now();
                let created = ("created_at".to_owned(), stamp.wall_ms.to_string());
                let fields = fields
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), value.clone()))
                    .chain([created]);
                let mut delta = record.create(replica, stamp, fields);
                delta.join(replace_tags(record, replica, clock, &tags));
                (delta, true)
            },
        )
        .await?;
    if !doc.state.is_live() {
        return Err(not_found());
    }
    let entry = view(&id, &doc.state)?;
    if made {
        announce(state, watching.map(Extension), owner, "created", &id).await;
    }
    Ok((entry, made))
}

/// Filters and paging of `GET /archive`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only entries with this tag.
    #[param(value_type = Option<Tag>, inline)]
    pub tag: Option<String>,
    /// Only entries of this kind.
    #[param(value_type = Option<Kind>, inline)]
    pub kind: Option<String>,
    /// Page size (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<validate::Cursor>, inline)]
    pub cursor: Option<String>,
}

/// Lists entries, oldest first, optionally by tag and kind. A filtered listing examines at
/// most 1,000 entries per request, so a page may hold fewer than `limit` entries, even none,
/// while `next_cursor` says there is more to look at.
#[utoipa::path(
    get,
    path = "/archive",
    tag = "archive",
    params(ListParams),
    security(("access_token" = ["archive:read"]), ("api_key" = ["archive:read"])),
    responses(
        (status = 200, description = "A page of entries", body = Paged<Entry>),
        (status = 400, description = "Invalid filter, limit or cursor", body = ErrorEnvelope),
        (status = 422, description = "A cursor this API did not return", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip(state, caller))]
async fn list_entries(
    state: AppState,
    caller: Authorized<scope::ArchiveRead>,
    Query(params): Query<ListParams>,
) -> Result<Json<Paged<Entry>>, ApiError> {
    let limit = validate::page_limit(params.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let kind = params.kind.as_deref().map(check_kind).transpose()?;
    let tag = params
        .tag
        .as_deref()
        .map(|tag| normal_tag(tag).ok_or_else(|| ApiError::invalid_field("tag", TAG_RULE)))
        .transpose()?;
    let partition = partition(&caller.principal());
    let mut items = Vec::new();
    let mut cursor = params.cursor;
    let mut examined = 0;
    // Filters apply after reading, so read pages until this one is full or the scan budget
    // is spent; the cursor then points just past the last entry examined.
    loop {
        let page = state
            .store
            .list_documents::<Record>(&partition, Some(SORT_PREFIX), cursor.as_deref(), limit)
            .await?;
        let count = page.items.len();
        for (i, doc) in page.items.into_iter().enumerate() {
            let id = doc.key.sort().trim_start_matches(SORT_PREFIX);
            if doc.state.is_live() {
                let entry = view(id, &doc.state)?;
                let kind_ok = kind.as_ref().is_none_or(|k| &entry.kind == k);
                let tag_ok = tag.as_ref().is_none_or(|t| entry.tags.contains(t));
                if kind_ok && tag_ok {
                    items.push(entry);
                }
            }
            if items.len() == limit {
                let last_of_all = page.next_cursor.is_none() && i + 1 == count;
                let next_cursor = (!last_of_all).then(|| encode_cursor(doc.key.sort()));
                return Ok(Json(Paged { items, next_cursor }));
            }
        }
        examined += count;
        match page.next_cursor {
            Some(next) if examined >= SCAN_BUDGET => {
                return Ok(Json(Paged {
                    items,
                    next_cursor: Some(next),
                }));
            }
            Some(next) => cursor = Some(next),
            None => {
                return Ok(Json(Paged {
                    items,
                    next_cursor: None,
                }));
            }
        }
    }
}

/// Reads one entry.
#[utoipa::path(
    get,
    path = "/archive/{id}",
    tag = "archive",
    params(("id" = inline(validate::Uuid), Path, description = "Entry id")),
    security(("access_token" = ["archive:read"]), ("api_key" = ["archive:read"])),
    responses(
        (status = 200, description = "The entry", body = Entry),
        (status = 404, description = "No such entry", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_entry(
    state: AppState,
    caller: Authorized<scope::ArchiveRead>,
    Path(id): Path<String>,
) -> Result<Json<Entry>, ApiError> {
    let key = entry_key(&caller.principal(), &id)?;
    let doc = live_entry(&state, &key).await?;
    Ok(Json(view(&id, &doc.state)?))
}

/// `PATCH /archive/{id}`: any of the fields; each merges on its own.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct EntryPatch {
    /// New kind.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = Kind, nullable = false)]
    pub kind: Option<String>,
    /// New title.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = Title, nullable = false)]
    pub title: Option<String>,
    /// New content.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = Content, nullable = false)]
    pub content: Option<String>,
    /// New tags (replacing the old ones; up to 32).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = Vec<Tag>, max_items = 32, nullable = false)]
    pub tags: Option<Vec<String>>,
}

/// Changes some fields of an entry; the last writer wins per field.
#[utoipa::path(
    patch,
    path = "/archive/{id}",
    tag = "archive",
    params(("id" = inline(validate::Uuid), Path, description = "Entry id")),
    request_body = EntryPatch,
    security(("access_token" = ["archive:write"]), ("api_key" = ["archive:write"])),
    responses(
        (status = 200, description = "The entry after the change", body = Entry),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        (status = 404, description = "No such entry", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip(state, caller, watching, body))]
async fn patch_entry(
    state: AppState,
    caller: Authorized<scope::ArchiveWrite>,
    watching: Option<Extension<Watching>>,
    Path(id): Path<String>,
    Json(body): Json<EntryPatch>,
) -> Result<Json<Entry>, ApiError> {
    let key = entry_key(&caller.principal(), &id)?;
    let mut changes = Vec::new();
    if let Some(kind) = &body.kind {
        changes.push(("kind", check_kind(kind)?));
    }
    if let Some(title) = &body.title {
        changes.push(("title", check_title(title)?));
    }
    if let Some(content) = &body.content {
        changes.push(("content", check_content(content)?));
    }
    let tags = body.tags.as_deref().map(check_tags).transpose()?;
    if changes.is_empty() && tags.is_none() {
        return Err(ApiError::bad_request(
            "name at least one of kind, title, content, tags",
        ));
    }
    // Refuse edits to an entry that does not exist (rather than creating fields on nothing).
    live_entry(&state, &key).await?;
    let (replica, clock) = (state.replica, &state.clock);
    let doc = state
        .store
        .update(&key, |record: &mut Record| {
            let mut delta = Record::new();
            for (name, value) in &changes {
                let stamp = clock.stamp_after(record.stamp(name));
                delta.join(record.set((*name).to_owned(), stamp, value.clone()));
            }
            if let Some(tags) = &tags {
                delta.join(replace_tags(record, replica, clock, tags));
            }
            delta
        })
        .await?;
    if !doc.state.is_live() {
        return Err(not_found());
    }
    let entry = view(&id, &doc.state)?;
    announce(&state, watching, &caller.identity, "updated", &id).await;
    Ok(Json(entry))
}

/// Deletes an entry (the versions of it seen here).
#[utoipa::path(
    delete,
    path = "/archive/{id}",
    tag = "archive",
    params(("id" = inline(validate::Uuid), Path, description = "Entry id")),
    security(("access_token" = ["archive:write"]), ("api_key" = ["archive:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such entry", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip(state, caller, watching))]
async fn delete_entry(
    state: AppState,
    caller: Authorized<scope::ArchiveWrite>,
    watching: Option<Extension<Watching>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key = entry_key(&caller.principal(), &id)?;
    live_entry(&state, &key).await?;
    let clock = &state.clock;
    state
        .store
        .update(&key, |record: &mut Record| {
            let stamp = clock.stamp_after(record.latest_stamp());
            record.delete(stamp)
        })
        .await?;
    announce(&state, watching, &caller.identity, "deleted", &id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Tells the owner's WebSocket connections listening to `archive`, and the host's
/// [`Watcher`], of a change.
async fn announce(
    state: &AppState,
    watching: Option<Extension<Watching>>,
    owner: &Identity,
    change: &str,
    id: &str,
) {
    let (topic, message) = jarvis_realtime::topic::archive_changed(change, id);
    state
        .realtime
        .publish(owner.principal().id(), &topic, &message)
        .await;
    if let Some(Extension(Watching(watcher))) = watching {
        let changed = Changed {
            archive_entry: id.to_owned(),
            user: owner.user_id.clone(),
            role: owner.role.as_str().to_owned(),
            change: change.to_owned(),
        };
        if let Err(err) = watcher.changed(&changed).await {
            tracing::warn!(entry = %id, error = %err, "the knowledge base was not told of an archive change");
        }
    }
}

#[cfg(test)]
mod tests;
