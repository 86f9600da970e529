//! The knowledge function: a user's documents (uploaded files and archive entries), read
//! off the request path into chunks and vectors, hybrid search over them, and answers that
//! cite them.
//!
//! Handlers take the [`Knowledge`] service from an extension ([`routes`] adds it); the
//! domain lives in `jarvis-knowledge`, and [`knowledge_error`] is what its errors become
//! here.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use jarvis_app::AppState;
use jarvis_http::error::{ApiError, AuthRejections, ErrorEnvelope};
use jarvis_http::time::rfc3339_ms;
use jarvis_http::{Json, PageParams, Paged, Path, Query, validate};
use jarvis_identity::{Authorized, Scope, scope};
use jarvis_knowledge::Registry;
use jarvis_knowledge::documents::{Document, Origin, Status};
use jarvis_knowledge::index::{Filter, IndexError, LibsqlIndex, VectorIndex};
use jarvis_knowledge::service::{
    Answer, ArchiveSource, Caller, Hit, Knowledge, KnowledgeError, SearchMode, Sources,
};
use jarvis_knowledge::settings::Settings;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use jarvis_knowledge;

/// Longest query or question, in characters.
pub const MAX_QUERY_CHARS: usize = 2_000;
/// Longest file name, in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// Most results a search returns.
pub const MAX_K: usize = 50;
/// Results a search returns unless told.
pub const DEFAULT_K: usize = 10;
/// Archive entries one job queues when the whole archive is indexed.
pub const ARCHIVE_PAGE: usize = 100;

/// The function's routes with their OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add_document, list_documents))
        .routes(routes!(get_document, delete_document))
        .routes(routes!(search))
        .routes(routes!(ask))
        .routes(routes!(get_settings, put_settings))
}

/// The function's routes, serving `knowledge`.
pub fn routes(knowledge: Arc<Knowledge>) -> axum::Router<AppState> {
    let router: axum::Router<AppState> = api().into();
    router.layer(Extension(knowledge))
}

/// The knowledge base of a host: documents in the process's store, files in its blob
/// store, chunks in the index its settings name, models through `ai`. Fails when the file
/// processors do not validate.
pub fn service(
    state: &AppState,
    ai: Arc<jarvis_ai::service::Ai>,
) -> Result<Arc<Knowledge>, jarvis_knowledge::RegistryError> {
    let config = state.config.knowledge.clone();
    let index = index_of(&config);
    let knowledge = Arc::new(Knowledge::new(
        ai,
        state.site(),
        jarvis_blobs::open(&state.config.blobs),
        index,
        Registry::builtin()?,
        config.clone(),
    ));
    #[cfg(feature = "aws")]
    if let Some(url) = &config.queue_url {
        knowledge.attach_queue(Arc::new(jarvis_knowledge::aws::Sqs::new(
            url.clone(),
            config.sqs.clone(),
        )));
    }
    knowledge.attach_sources(Arc::new(ArchiveSources {
        state: state.clone(),
    }));
    Ok(knowledge)
}

/// What an archive entry is indexed as: its title as a heading, then its content.
fn archive_text(entry: &jarvis_fn_archive::Entry) -> Vec<u8> {
    format!("# {}\n\n{}", entry.title, entry.content).into_bytes()
}

/// What an archive entry's document is named.
fn archive_name(entry: &jarvis_fn_archive::Entry) -> String {
    if entry.title.is_empty() {
        format!("archive entry {}", entry.id)
    } else {
        entry.title.clone()
    }
}

/// Tells the knowledge base of every change to an archive entry, as a job on its queue:
/// what `jarvis-local` sets as the archive's [`Watcher`](jarvis_fn_archive::Watcher). (On
/// AWS the archive function sends the change itself, and [`worker`] reads it.)
pub struct ArchiveIndexing(pub Arc<dyn jarvis_knowledge::service::Queue>);

#[async_trait::async_trait]
impl jarvis_fn_archive::Watcher for ArchiveIndexing {
    async fn changed(&self, change: &jarvis_fn_archive::Changed) -> Result<(), String> {
        self.0
            .send(&job_of(change))
            .await
            .map_err(|err| err.to_string())
    }
}

/// The job that brings the document of a changed archive entry up to date.
pub fn job_of(change: &jarvis_fn_archive::Changed) -> jarvis_knowledge::documents::Job {
    jarvis_knowledge::documents::Job::archive_entry(
        &change.user,
        &change.role,
        &change.archive_entry,
    )
}

/// Archive entries read from this deployment's store, where they arrive by sync.
struct ArchiveSources {
    state: AppState,
}

#[async_trait::async_trait]
impl Sources for ArchiveSources {
    async fn archive_entry(
        &self,
        user: &str,
        id: &str,
    ) -> Result<Option<ArchiveSource>, KnowledgeError> {
        let principal = jarvis_store::principal::Principal::user(user);
        match jarvis_fn_archive::entry(&self.state, &principal, id).await {
            Ok(entry) => Ok(Some(ArchiveSource {
                name: archive_name(&entry),
                text: archive_text(&entry),
                tags: entry.tags,
            })),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(err) => Err(KnowledgeError::Source(format!("archive entry {id}: {err}"))),
        }
    }

    async fn archive_entries(
        &self,
        user: &str,
        cursor: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), KnowledgeError> {
        let principal = jarvis_store::principal::Principal::user(user);
        jarvis_fn_archive::entry_ids(&self.state, &principal, cursor, ARCHIVE_PAGE)
            .await
            .map_err(|err| KnowledgeError::Source(format!("the archive: {err}")))
    }
}

/// The index the settings name: S3 Vectors when an index ARN is set (and the build has the
/// `aws` feature), with keyword search when a keyword table is set too; else the per-user
/// libSQL files.
fn index_of(config: &jarvis_config::KnowledgeConfig) -> Arc<dyn VectorIndex> {
    #[cfg(feature = "aws")]
    if let Some(arn) = &config.vector_index_arn {
        let vectors = jarvis_knowledge::aws::S3Vectors::new(
            jarvis_knowledge::aws::Location::Arn(arn.clone()),
            config.s3vectors.clone(),
        );
        return Arc::new(match &config.keyword_table {
            Some(table) => vectors.with_keywords(jarvis_knowledge::aws::Keywords::new(
                table.clone(),
                config.dynamodb.clone(),
            )),
            None => vectors,
        });
    }
    Arc::new(LibsqlIndex::new(
        config.index_dir.clone(),
        config.exact_up_to,
    ))
}

/// The Lambda function's routes, with the AI service built as the AI function builds it.
pub async fn lambda_routes(state: &mut AppState) -> axum::Router<AppState> {
    let ai = jarvis_fn_ai::lambda_service(state).await;
    match service(state, ai) {
        Ok(knowledge) => routes(knowledge),
        Err(err) => {
            // Every route then answers 503 `not_configured`, and the log says why.
            tracing::error!(error = %err, "the file processors did not validate");
            api().into()
        }
    }
}

#[cfg(feature = "aws")]
pub mod worker;

/// The knowledge service of the host, from the request's extensions; 503 `not_configured`
/// in a host that did not set one up.
pub struct Service(pub Arc<Knowledge>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Service {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Arc<Knowledge>>()
            .cloned()
            .map(Service)
            .ok_or_else(|| ApiError::NotConfigured("this host has no knowledge base".into()))
    }
}

/// The HTTP answer to a failed knowledge operation.
pub fn knowledge_error(err: KnowledgeError) -> ApiError {
    match err {
        KnowledgeError::NotFound => ApiError::NotFound("no such document".into()),
        KnowledgeError::Index(IndexError::ModelChanged { built, asked }) => ApiError::Conflict(
            format!(
                "the index holds vectors of {built}, and the embedding model is now {asked}; \
                 delete and add the documents again"
            )
            .into(),
        ),
        KnowledgeError::Index(IndexError::Unsupported(what)) => {
            ApiError::NotConfigured(format!("{what} is not available on this deployment").into())
        }
        KnowledgeError::Index(err) => ApiError::Unavailable(Box::new(err)),
        KnowledgeError::Blobs(err) => ApiError::Unavailable(Box::new(err)),
        KnowledgeError::Call(err) => jarvis_fn_ai::service::call_error(err),
        KnowledgeError::Store(err) => err.into(),
        KnowledgeError::Queue(message) | KnowledgeError::Source(message) => {
            ApiError::Unavailable(message.into())
        }
    }
}

/// A document as clients see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DocumentView {
    /// Its id.
    pub id: String,
    /// Its file name, or the archive entry's title.
    pub name: String,
    /// Its media type, detected from its content.
    pub media_type: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// The SHA-256 of its content, hex.
    pub sha256: String,
    /// The archive entry it indexes, when it does.
    pub archive_entry: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// `pending`, `processing`, `ready` or `failed`.
    pub status: String,
    /// Why it failed (or was skipped).
    pub reason: Option<String>,
    /// The title its file names.
    pub title: Option<String>,
    /// Chunks searchable.
    pub chunks: u64,
    /// Pages, for paged formats.
    pub pages: Option<u32>,
    /// Progress while processing.
    pub progress: ProgressView,
    /// The embedding model of its vectors.
    pub model: Option<String>,
    /// When it was added.
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// How far reading a document got.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProgressView {
    /// Chunks embedded and indexed.
    pub done: u64,
    /// Chunks to embed (0 until the file is read).
    pub total: u64,
}

fn document_view(d: &Document) -> DocumentView {
    DocumentView {
        id: d.id.to_string(),
        name: d.name.clone(),
        media_type: d.media_type.clone(),
        bytes: d.bytes,
        sha256: d.sha256.clone(),
        archive_entry: d.origin.archive_entry().map(str::to_owned),
        tags: d.tags.clone(),
        status: d.status.as_str().to_owned(),
        reason: d.reason.clone(),
        title: d.title.clone(),
        chunks: if d.status == Status::Ready {
            d.chunks
        } else {
            0
        },
        pages: d.pages,
        progress: ProgressView {
            done: d.done,
            total: d.total,
        },
        model: d.model.clone(),
        created_at: rfc3339_ms(d.created_ms),
    }
}

jarvis_http::string_schema!(
    /// A file name: 1 to 255 characters.
    FileName,
    || validate::text_schema(
        "1 to 255 characters, no control characters other than tab and line breaks",
        MAX_NAME_CHARS
    )
);

jarvis_http::string_schema!(
    /// A search query or question: 1 to 2,000 characters.
    QueryText,
    || validate::text_schema(
        "1 to 2000 characters, no control characters other than tab and line breaks",
        MAX_QUERY_CHARS
    )
);

jarvis_http::string_schema!(
    /// The API path of one of the caller's archive entries: `/archive/{id}`.
    ArchiveUrl,
    || validate::string("`/archive/{id}`, the path of one of the caller's archive entries")
        .pattern(Some(
            "^/archive/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))
);

/// `POST /knowledge/documents` as a form: the file, and optionally its name and tags; no
/// other part.
pub struct UploadForm;

impl utoipa::PartialSchema for UploadForm {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, KnownFormat, ObjectBuilder, SchemaFormat, Type,
        };
        let file = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some("The file; its type is detected from its content."));
        let name = validate::text_schema(
            "Its name (default: the file part's file name, else `upload`): 1 to 255 characters, \
             no control characters other than tab and line breaks",
            MAX_NAME_CHARS,
        );
        let tags = ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(TAG_LIST_RULE))
            .pattern(Some(TAG_LIST_PATTERN));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("file", file)
            .property("name", name)
            .property("tags", tags)
            .required("file")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for UploadForm {}

/// What a form's `tags` part holds.
const TAG_LIST_RULE: &str =
    "up to 32 comma-separated tags of 1 to 64 letters, digits, '_', '-', ':' or '.'";
/// [`TAG_LIST_RULE`] as a pattern (spaces around tags allowed).
const TAG_LIST_PATTERN: &str =
    r"^\s*(?:[A-Za-z0-9_.:-]{1,64}\s*(?:,\s*[A-Za-z0-9_.:-]{1,64}\s*){0,31})?$";

/// `POST /knowledge/documents` as JSON: an archive entry to index.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddFromArchive {
    /// The entry's path, `/archive/{id}` (needs `archive:read` as well).
    #[schema(value_type = ArchiveUrl)]
    pub url: String,
    /// Its tags.
    #[serde(default)]
    #[schema(value_type = Vec<jarvis_fn_archive::Tag>, max_items = 32)]
    pub tags: Vec<String>,
}

/// What was uploaded.
struct Upload {
    name: String,
    bytes: Vec<u8>,
    tags: Vec<String>,
}

fn check_name(value: &str) -> Result<String, ApiError> {
    validate::text("name", value, MAX_NAME_CHARS)?;
    Ok(value.to_owned())
}

/// A [`TagList`]: nothing, or tags separated by commas, none of them empty.
fn split_tags(value: &str) -> Result<Vec<String>, ApiError> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    let tags: Vec<String> = value.split(',').map(|t| t.trim().to_owned()).collect();
    jarvis_fn_archive::check_tags(&tags).map_err(|_| ApiError::invalid_field("tags", TAG_LIST_RULE))
}

/// The parts of a `multipart/form-data` body.
async fn read_form(content_type: &str, body: Bytes) -> Result<Upload, ApiError> {
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::invalid_field("Content-Type", "a multipart body needs a boundary")
    })?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let malformed = |_| ApiError::BadRequest {
        field: None,
        message: "the multipart body is malformed".into(),
    };
    let (mut file, mut file_name, mut name, mut tags) = (None, None, None, Vec::new());
    while let Some(field) = form.next_field().await.map_err(malformed)? {
        match field.name() {
            Some("file") if file.is_none() => {
                file_name = field.file_name().map(str::to_owned);
                file = Some(field.bytes().await.map_err(malformed)?.to_vec());
            }
            Some("name") if name.is_none() => {
                let text = field.text().await.map_err(malformed)?;
                name = Some(check_name(&text)?);
            }
            Some("tags") if tags.is_empty() => {
                let text = field.text().await.map_err(malformed)?;
                tags = split_tags(&text)?;
            }
            Some(other) => {
                return Err(ApiError::invalid_field(
                    other.to_owned(),
                    "unknown or repeated part; a form has `file`, `name` and `tags`",
                ));
            }
            None => {
                return Err(ApiError::BadRequest {
                    field: None,
                    message: "every part of the form needs a name".into(),
                });
            }
        }
    }
    // An empty file is taken, and ends as `failed`: it holds no text.
    let bytes = file.ok_or_else(|| ApiError::invalid_field("file", "the form has no file part"))?;
    let name = match name {
        Some(name) => name,
        None => match file_name.filter(|n| validate::text("name", n, MAX_NAME_CHARS).is_ok()) {
            Some(n) => n,
            None => "upload".to_owned(),
        },
    };
    Ok(Upload { name, bytes, tags })
}

/// Adds a document: a file (a form with a `file` part), or an archive entry (`{"url":
/// "/archive/{id}"}`, which also needs `archive:read`). Its type is detected from its
/// content; it is read off the request path, and `GET /knowledge/documents/{id}` shows how
/// far. The same content added again changes nothing and answers the document as it is
/// (200). Nothing is ever fetched from the internet.
#[utoipa::path(
    post,
    path = "/knowledge/documents",
    tag = "knowledge",
    request_body(content(
        (UploadForm = "multipart/form-data"),
        (AddFromArchive = "application/json"),
    )),
    security(("access_token" = ["knowledge:write"]), ("api_key" = ["knowledge:write"])),
    responses(
        (status = 202, description = "Added and queued to be read", body = DocumentView),
        (status = 200, description = "The same content was already added", body = DocumentView),
        (status = 400, description = "Invalid form, field or JSON", body = ErrorEnvelope),
        (status = 404, description = "No such archive entry", body = ErrorEnvelope),
        (status = 413, description = "The file is larger than uploads may be", body = ErrorEnvelope),
        (status = 415, description = "Neither a form nor JSON", body = ErrorEnvelope),
        (status = 429, description = "The caller's token budget is spent", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all)]
async fn add_document(
    state: AppState,
    caller: Authorized<scope::KnowledgeWrite>,
    Service(knowledge): Service,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<impl IntoResponse, ApiError> {
    // Uploads have their own limit, larger than other requests'.
    let body: Bytes = axum::body::to_bytes(body, knowledge.config().max_upload_bytes)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let (name, bytes, origin, tags) = match essence.as_str() {
        "multipart/form-data" => {
            let upload = read_form(&content_type, body).await?;
            (upload.name, upload.bytes, Origin::Upload, upload.tags)
        }
        "application/json" => {
            let add: AddFromArchive =
                serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
                    field: None,
                    message: format!("invalid JSON body: {e}").into(),
                })?;
            let tags = jarvis_fn_archive::check_tags(&add.tags)?;
            let id = add
                .url
                .strip_prefix("/archive/")
                .ok_or_else(|| ApiError::invalid_field("url", "must be /archive/{id}"))?;
            if !caller.identity.allows(Scope::ArchiveRead) {
                return Err(ApiError::Forbidden(
                    "indexing an archive entry needs the archive:read scope too".into(),
                ));
            }
            let entry = jarvis_fn_archive::entry(&state, &caller.principal(), id).await?;
            let name = archive_name(&entry);
            (name, archive_text(&entry), Origin::Archive(entry.id), tags)
        }
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "send a multipart/form-data upload or a JSON body".into(),
            ));
        }
    };
    let caller = Caller {
        user: &caller.identity.user_id,
        role: caller.identity.role.as_str(),
    };
    let (document, created) = knowledge
        .add(caller, name, bytes, origin, tags)
        .await
        .map_err(knowledge_error)?;
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(
            header::LOCATION,
            format!("/knowledge/documents/{}", document.id),
        )],
        Json(document_view(&document)),
    ))
}

/// Lists the caller's documents with their status.
#[utoipa::path(
    get,
    path = "/knowledge/documents",
    tag = "knowledge",
    params(PageParams),
    security(("access_token" = ["knowledge:read"]), ("api_key" = ["knowledge:read"])),
    responses(
        (status = 200, description = "A page of documents", body = Paged<DocumentView>),
        (status = 400, description = "Invalid limit or cursor", body = ErrorEnvelope),
        (status = 422, description = "A cursor this API did not return", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn list_documents(
    caller: Authorized<scope::KnowledgeRead>,
    Service(knowledge): Service,
    Query(params): Query<PageParams>,
) -> Result<Json<Paged<DocumentView>>, ApiError> {
    let limit = params.limit()?;
    let page = knowledge
        .list(caller_of(&caller), params.cursor.as_deref(), limit)
        .await
        .map_err(|err| match err {
            KnowledgeError::Store(jarvis_store::StoreError::InvalidKey("cursor")) => {
                ApiError::unknown_cursor("cursor")
            }
            other => knowledge_error(other),
        })?;
    Ok(Json(Paged {
        items: page.items.iter().map(document_view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Reads a document and how far reading it got.
#[utoipa::path(
    get,
    path = "/knowledge/documents/{id}",
    tag = "knowledge",
    params(("id" = inline(validate::Uuid), Path, description = "Document id")),
    security(("access_token" = ["knowledge:read"]), ("api_key" = ["knowledge:read"])),
    responses(
        (status = 200, description = "The document", body = DocumentView),
        (status = 400, description = "Invalid id", body = ErrorEnvelope),
        (status = 404, description = "No such document", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_document(
    caller: Authorized<scope::KnowledgeRead>,
    Service(knowledge): Service,
    Path(id): Path<String>,
) -> Result<Json<DocumentView>, ApiError> {
    let id = validate::uuid("id", &id)?;
    let document = knowledge
        .get(caller_of(&caller), &id)
        .await
        .map_err(knowledge_error)?;
    Ok(Json(document_view(&document)))
}

/// Deletes a document with its file, chunks and vectors.
#[utoipa::path(
    delete,
    path = "/knowledge/documents/{id}",
    tag = "knowledge",
    params(("id" = inline(validate::Uuid), Path, description = "Document id")),
    security(("access_token" = ["knowledge:write"]), ("api_key" = ["knowledge:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id", body = ErrorEnvelope),
        (status = 404, description = "No such document", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn delete_document(
    caller: Authorized<scope::KnowledgeWrite>,
    Service(knowledge): Service,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = validate::uuid("id", &id)?;
    knowledge
        .delete(&caller.identity.user_id, &id)
        .await
        .map_err(knowledge_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which rankings a search uses.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModeParam {
    /// Vector and keyword rankings fused (the default).
    #[default]
    Hybrid,
    /// Vector similarity only.
    Vector,
    /// Keywords (BM25) only.
    Keyword,
}

impl From<ModeParam> for SearchMode {
    fn from(mode: ModeParam) -> Self {
        match mode {
            ModeParam::Hybrid => Self::Hybrid,
            ModeParam::Vector => Self::Vector,
            ModeParam::Keyword => Self::Keyword,
        }
    }
}

/// `GET /knowledge/search`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// What to look for.
    #[param(value_type = QueryText, inline)]
    pub q: String,
    /// How many chunks (1 to 50, default 10).
    #[param(minimum = 1, maximum = 50)]
    pub k: Option<usize>,
    /// `hybrid` (default), `vector` or `keyword`.
    #[param(inline)]
    pub mode: Option<ModeParam>,
    /// Only this document.
    #[param(value_type = Option<validate::Uuid>, inline)]
    pub document: Option<String>,
    /// Only documents with this tag.
    #[param(value_type = Option<jarvis_fn_archive::Tag>, inline)]
    pub tag: Option<String>,
    /// Only documents of this media type, e.g. `application/pdf`.
    #[param(value_type = Option<MediaType>, inline)]
    pub r#type: Option<String>,
}

jarvis_http::string_schema!(
    /// A media type, e.g. `application/pdf`.
    MediaType,
    || validate::bounded(
        validate::string("a media type, e.g. `text/markdown`")
            .pattern(Some("^[a-z0-9.+-]{1,64}/[a-z0-9.+-]{1,64}$")),
        3,
        129,
    )
);

fn check_media_type(value: &str) -> Result<String, ApiError> {
    let ok = value.split_once('/').is_some_and(|(a, b)| {
        let part = |s: &str| {
            (1..=64).contains(&s.len())
                && s.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'+' | b'-')
                })
        };
        part(a) && part(b)
    });
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ApiError::invalid_field(
            "type",
            "must be a media type in lower case, e.g. text/markdown",
        ))
    }
}

fn filter_of(
    document: Option<&str>,
    tag: Option<&str>,
    media_type: Option<&str>,
) -> Result<Filter, ApiError> {
    Ok(Filter {
        document: document
            .map(|d| validate::uuid("document", d))
            .transpose()?,
        tag: tag
            .map(|t| {
                jarvis_fn_archive::check_tags(&[t.to_owned()])
                    .map_err(|_| ApiError::invalid_field("tag", "must be a valid tag"))
                    .map(|mut tags| tags.remove(0))
            })
            .transpose()?,
        media_type: media_type.map(check_media_type).transpose()?,
    })
}

/// A chunk a search found.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HitView {
    /// Its document.
    pub document: String,
    /// The document's name.
    pub name: String,
    /// The document's title.
    pub title: Option<String>,
    /// The document's media type.
    pub media_type: String,
    /// Its position in the document, from 0.
    pub chunk: u32,
    /// Its page, for paged formats.
    pub page: Option<u32>,
    /// The headings it sits under.
    pub section: Option<String>,
    /// Its text.
    pub text: String,
    /// Its fused score (reciprocal rank fusion; higher is better).
    pub score: f64,
    /// Its cosine similarity to the query, when the vector search found it.
    pub similarity: Option<f64>,
    /// Its rank in the vector search.
    pub vector_rank: Option<usize>,
    /// Its rank in the keyword search.
    pub keyword_rank: Option<usize>,
}

fn hit_view(hit: &Hit) -> HitView {
    let c = &hit.chunk;
    HitView {
        document: c.document.to_string(),
        name: c.name.clone(),
        title: c.title.clone(),
        media_type: c.media_type.clone(),
        chunk: c.ordinal,
        page: c.page,
        section: c.section.clone(),
        text: c.text.clone(),
        score: hit.score,
        similarity: hit.similarity,
        vector_rank: hit.vector_rank,
        keyword_rank: hit.keyword_rank,
    }
}

/// Search results.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    /// The chunks, best first.
    pub items: Vec<HitView>,
}

fn caller_of<S>(caller: &Authorized<S>) -> Caller<'_> {
    Caller {
        user: &caller.identity.user_id,
        role: caller.identity.role.as_str(),
    }
}

/// Searches the caller's documents: vector similarity and keywords (BM25), fused by
/// reciprocal rank, optionally limited to a document, a tag or a media type. Embedding the
/// query spends the caller's token budget.
#[utoipa::path(
    get,
    path = "/knowledge/search",
    tag = "knowledge",
    params(SearchParams),
    security(("access_token" = ["knowledge:read"]), ("api_key" = ["knowledge:read"])),
    responses(
        (status = 200, description = "The best chunks", body = SearchResults),
        (status = 400, description = "Invalid parameter", body = ErrorEnvelope),
        (status = 409, description = "The index holds another embedding model's vectors", body = ErrorEnvelope),
        (status = 429, description = "The caller's token budget is spent", body = ErrorEnvelope),
        (status = 503, description = "The embedding model is unavailable", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn search(
    caller: Authorized<scope::KnowledgeRead>,
    Service(knowledge): Service,
    Query(params): Query<SearchParams>,
) -> Result<Json<SearchResults>, ApiError> {
    validate::text("q", &params.q, MAX_QUERY_CHARS)?;
    let k = params.k.unwrap_or(DEFAULT_K);
    if !(1..=MAX_K).contains(&k) {
        return Err(ApiError::invalid_field("k", "must be 1 to 50"));
    }
    let filter = filter_of(
        params.document.as_deref(),
        params.tag.as_deref(),
        params.r#type.as_deref(),
    )?;
    let mode = params.mode.unwrap_or_default().into();
    let hits = knowledge
        .search(caller_of(&caller), &params.q, k, &filter, mode)
        .await
        .map_err(knowledge_error)?;
    Ok(Json(SearchResults {
        items: hits.iter().map(hit_view).collect(),
    }))
}

/// `POST /knowledge/ask`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    /// The question.
    #[schema(value_type = QueryText)]
    pub question: String,
    /// Only this document.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = validate::Uuid, nullable = false)]
    pub document: Option<String>,
    /// Only documents with this tag.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = jarvis_fn_archive::Tag, nullable = false)]
    pub tag: Option<String>,
    /// Only documents of this media type.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = MediaType, nullable = false)]
    pub r#type: Option<String>,
}

/// A source an answer cites.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CitationView {
    /// The marker the answer refers to it by: `1` is `[1]`.
    pub marker: usize,
    /// Its document.
    pub document: String,
    /// The document's name.
    pub name: String,
    /// The document's title.
    pub title: Option<String>,
    /// The page, for paged formats.
    pub page: Option<u32>,
    /// The headings of its section.
    pub section: Option<String>,
    /// The quoted excerpt.
    pub excerpt: String,
}

/// An answer from the caller's documents.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AnswerView {
    /// The answer, with markers like `[1]` that the citations resolve.
    pub answer: String,
    /// Whether the documents answered the question; when not, the answer says so.
    pub answered: bool,
    /// The sources the answer cites.
    pub citations: Vec<CitationView>,
    /// `provider:model` that answered, when a model was asked.
    pub model: Option<String>,
}

fn answer_view(answer: Answer) -> AnswerView {
    AnswerView {
        answer: answer.text,
        answered: answer.answered,
        citations: answer
            .citations
            .into_iter()
            .map(|c| CitationView {
                marker: c.marker,
                document: c.chunk.document.to_string(),
                name: c.chunk.name,
                title: c.chunk.title,
                page: c.chunk.page,
                section: c.chunk.section,
                excerpt: c.excerpt,
            })
            .collect(),
        model: answer.model,
    }
}

/// Answers a question from the caller's documents, citing them (document, page or section,
/// the quoted excerpt). When no passage is relevant, no model is asked and the answer says
/// the documents do not answer it. Spends the caller's token budget.
#[utoipa::path(
    post,
    path = "/knowledge/ask",
    tag = "knowledge",
    request_body = AskRequest,
    security(("access_token" = ["knowledge:read"]), ("api_key" = ["knowledge:read"])),
    responses(
        (status = 200, description = "The answer and its citations", body = AnswerView),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        (status = 409, description = "The index holds another embedding model's vectors", body = ErrorEnvelope),
        (status = 429, description = "The caller's token budget is spent", body = ErrorEnvelope),
        (status = 503, description = "No model could answer", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn ask(
    caller: Authorized<scope::KnowledgeRead>,
    Service(knowledge): Service,
    Json(body): Json<AskRequest>,
) -> Result<Json<AnswerView>, ApiError> {
    validate::text("question", &body.question, MAX_QUERY_CHARS)?;
    let filter = filter_of(
        body.document.as_deref(),
        body.tag.as_deref(),
        body.r#type.as_deref(),
    )?;
    let answer = knowledge
        .ask(caller_of(&caller), &body.question, &filter)
        .await
        .map_err(knowledge_error)?;
    Ok(Json(answer_view(answer)))
}

/// A user's settings of the knowledge base.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsView {
    /// Whether every archive entry is indexed, and kept up to date as it changes: created
    /// entries are added, changed ones read again, deleted ones removed. Off until set;
    /// turning it on indexes the entries already there. (An entry indexed by its path is
    /// kept up to date either way.)
    pub index_archive: bool,
}

/// Reads the caller's settings.
#[utoipa::path(
    get,
    path = "/knowledge/settings",
    tag = "knowledge",
    security(("access_token" = ["knowledge:read"]), ("api_key" = ["knowledge:read"])),
    responses(
        (status = 200, description = "The settings", body = SettingsView),
        AuthRejections,
    )
)]
async fn get_settings(
    caller: Authorized<scope::KnowledgeRead>,
    Service(knowledge): Service,
) -> Result<Json<SettingsView>, ApiError> {
    let settings = knowledge
        .settings(&caller.identity.user_id)
        .await
        .map_err(knowledge_error)?;
    Ok(Json(SettingsView {
        index_archive: settings.index_archive,
    }))
}

/// Sets the caller's settings. Turning archive indexing on needs `archive:read` as well,
/// and queues every entry already in the archive to be read.
#[utoipa::path(
    put,
    path = "/knowledge/settings",
    tag = "knowledge",
    request_body = SettingsView,
    security(("access_token" = ["knowledge:write"]), ("api_key" = ["knowledge:write"])),
    responses(
        (status = 200, description = "The settings as set", body = SettingsView),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        (status = 503, description = "The ingestion queue is unavailable; nothing changed", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn put_settings(
    caller: Authorized<scope::KnowledgeWrite>,
    Service(knowledge): Service,
    Json(body): Json<SettingsView>,
) -> Result<Json<SettingsView>, ApiError> {
    if body.index_archive && !caller.identity.allows(Scope::ArchiveRead) {
        return Err(ApiError::Forbidden(
            "indexing the archive needs the archive:read scope too".into(),
        ));
    }
    let settings = Settings {
        index_archive: body.index_archive,
    };
    let set = knowledge
        .set_settings(caller_of(&caller), settings)
        .await
        .map_err(knowledge_error)?;
    Ok(Json(SettingsView {
        index_archive: set.index_archive,
    }))
}

#[cfg(test)]
mod tests;
