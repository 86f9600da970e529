//! The chat function: a user's conversations and their messages, replies that stream as
//! Server-Sent Events and resume after a disconnect, exports, and long-term memory.
//!
//! Handlers take the [`Chat`] service from an extension ([`routes`] adds it); the domain
//! lives in `jarvis-chat`, and [`ApiError`] is what its errors become here.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Extension;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use jarvis_app::AppState;
use jarvis_chat::conversation::{self, ChatMessage, Conversation, GivenSource, Speaker, Status};
use jarvis_chat::generation::StreamEvent;
use jarvis_chat::memory::{self, Memory};
use jarvis_chat::{Caller, Chat, ChatError, Remembered};
use jarvis_http::error::{ApiError, AuthRejections, ErrorEnvelope};
use jarvis_http::time::rfc3339_ms;
use jarvis_http::{Json, PageParams, Paged, Path, Query, validate};
use jarvis_identity::{Authorized, scope};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub use jarvis_chat;
use jarvis_fn_knowledge::jarvis_knowledge::{self, service::Knowledge};

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest system prompt or message, in characters.
pub const MAX_TEXT_CHARS: usize = 32_000;
/// Default page size.
pub const DEFAULT_PAGE: usize = 20;
/// Largest page size.
pub const MAX_PAGE: usize = 100;

/// The function's routes with their OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_conversation, list_conversations))
        .routes(routes!(
            get_conversation,
            patch_conversation,
            delete_conversation
        ))
        .routes(routes!(send_message))
        .routes(routes!(get_summary))
        .routes(routes!(get_attachment))
        .routes(routes!(export_conversation))
        .routes(routes!(follow_stream))
        .routes(routes!(cancel_stream))
        .routes(routes!(list_memories, add_memory, forget_memories))
        .routes(routes!(rewrite_memory, forget_memory))
        .routes(routes!(get_memory_settings, put_memory_settings))
}

/// The function's routes, serving `chat`.
pub fn routes(chat: Arc<Chat>) -> axum::Router<AppState> {
    let router: axum::Router<AppState> = api().into();
    router.layer(Extension(chat))
}

/// The service of a host: conversations over the process's store, replies through `ai`.
pub fn service(state: &AppState, ai: Arc<jarvis_ai::service::Ai>) -> Arc<Chat> {
    Arc::new(Chat::new(
        ai,
        jarvis_blobs::open(&state.config.blobs),
        state.site(),
        state.config.chat.clone(),
    ))
}

/// The Lambda function's routes, with the AI service built as the AI function builds it.
pub async fn lambda_routes(state: &mut AppState) -> axum::Router<AppState> {
    let ai = jarvis_fn_ai::lambda_service(state).await;
    let router = routes(service(state, Arc::clone(&ai)));
    // The knowledge base a message with `"knowledge": true` searches.
    match jarvis_fn_knowledge::service(state, ai) {
        Ok(knowledge) => router.layer(Extension(knowledge)),
        Err(err) => {
            tracing::error!(error = %err, "the file processors did not validate");
            router
        }
    }
}

/// The chat service of the host, from the request's extensions; 503 `not_configured` in a
/// host that did not set one up.
pub struct Service(pub Arc<Chat>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Service {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Arc<Chat>>()
            .cloned()
            .map(Service)
            .ok_or_else(|| ApiError::NotConfigured("this host has no chat service".into()))
    }
}

/// The HTTP answer to a failed conversation operation.
pub fn chat_error(err: ChatError) -> ApiError {
    match err {
        ChatError::NotFound(what) => ApiError::NotFound(format!("no such {what}").into()),
        ChatError::TooLong => ApiError::Unprocessable {
            field: Some("content".into()),
            message: "the message is longer than the model's context window allows".into(),
        },
        ChatError::Full(max) => ApiError::Unprocessable {
            field: None,
            message: format!("at most {max} memories are kept; forget some first").into(),
        },
        ChatError::NotAnImage => ApiError::Unprocessable {
            field: Some("attachments".into()),
            message: "each attachment must be a PNG, JPEG or WebP image".into(),
        },
        ChatError::Blobs(err) => ApiError::Unavailable(Box::new(err)),
        ChatError::Call(err) => jarvis_fn_ai::service::call_error(err),
        ChatError::Store(err) => err.into(),
        ChatError::Corrupt(message) => ApiError::Internal(message.into()),
    }
}

fn id_of(field: &'static str, value: &str) -> Result<Uuid, ApiError> {
    validate::uuid(field, value)
}

/// A cursor refused by the store is one this API did not hand out.
fn cursor_error(err: ChatError) -> ApiError {
    match err {
        ChatError::Store(jarvis_store::StoreError::InvalidKey("cursor")) => {
            ApiError::unknown_cursor("cursor")
        }
        other => chat_error(other),
    }
}

jarvis_http::string_schema!(
    /// A conversation's title: 1 to 200 characters.
    ConversationTitle,
    || validate::text_schema(
        "1 to 200 characters, no control characters other than tab and line breaks",
        MAX_TITLE_CHARS
    )
);

jarvis_http::string_schema!(
    /// A system prompt or message: 1 to 32,000 characters.
    ChatText,
    || validate::text_schema(
        "1 to 32000 characters, no control characters other than tab and line breaks",
        MAX_TEXT_CHARS
    )
);

jarvis_http::string_schema!(
    /// A memory: 1 to 1,000 characters.
    MemoryText,
    || validate::text_schema(
        "1 to 1000 characters, no control characters other than tab and line breaks",
        memory::MAX_MEMORY_CHARS
    )
);

/// A conversation as clients see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConversationView {
    /// Its id.
    pub id: String,
    /// Its title, once set or generated after the first exchange.
    pub title: Option<String>,
    /// Its system prompt.
    pub system: Option<String>,
    /// The model alias answering in it.
    pub model: String,
    /// Whether older turns are folded into a summary (`GET …/summary`).
    pub summarized: bool,
    /// When it was created.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When a setting last changed.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

fn conversation_view(c: &Conversation) -> ConversationView {
    ConversationView {
        id: c.id.to_string(),
        title: c.title.clone(),
        system: c.system.clone(),
        model: c.alias().to_owned(),
        summarized: c.summary.is_some(),
        created_at: rfc3339_ms(c.created_ms),
        updated_at: rfc3339_ms(c.updated_ms.max(c.created_ms)),
    }
}

/// A memory a reply was given.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsedMemoryView {
    /// The memory's id.
    pub id: String,
    /// Its text when it was used.
    pub text: String,
    /// Its similarity to the message, -1 to 1.
    pub score: f32,
}

/// A message as clients see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    /// Its id (time-ordered: messages sort by it).
    pub id: String,
    /// `user` or `assistant`.
    pub role: String,
    /// What it says.
    pub content: String,
    /// When it was written.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// For a reply: `complete`, `cancelled` or `failed`.
    pub status: Option<String>,
    /// For a reply: the `provider:model` that wrote it.
    pub model: Option<String>,
    /// For a reply: why it ended (`end_turn`, `max_tokens`…).
    pub stop_reason: Option<String>,
    /// For a reply: the stream it was generated on.
    pub stream_id: Option<String>,
    /// For a reply: tokens of the prompt and of the reply.
    pub usage: Option<ReplyUsage>,
    /// For a reply: what it cost, in millionths of a US dollar.
    pub cost_micros: u64,
    /// For a reply: the memories it was given.
    pub memories: Vec<UsedMemoryView>,
    /// For a failed reply: why.
    pub error: Option<String>,
    /// The images a user's message carries (`GET …/attachments/{id}` reads one).
    pub attachments: Vec<AttachmentView>,
    /// For a reply given passages of the user's knowledge base: those its text cites by
    /// marker (`[1]`).
    pub citations: Vec<ReplyCitation>,
}

/// A passage of the user's documents a reply cites.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplyCitation {
    /// The marker the reply refers to it by: `1` is `[1]`.
    pub marker: u32,
    /// Its document.
    pub document: String,
    /// The document's name.
    pub name: String,
    /// The document's title.
    pub title: Option<String>,
    /// Its page, for paged formats.
    pub page: Option<u32>,
    /// The headings of its section.
    pub section: Option<String>,
    /// The quoted passage.
    pub excerpt: String,
}

/// The sources a reply's text cites by marker.
fn citations(m: &ChatMessage) -> Vec<ReplyCitation> {
    let cited = jarvis_knowledge::service::markers(&m.content, m.meta.sources.len());
    cited
        .into_iter()
        .filter_map(|n| m.meta.sources.iter().find(|s| s.marker as usize == n))
        .map(|s| ReplyCitation {
            marker: s.marker,
            document: s.document.to_string(),
            name: s.name.clone(),
            title: s.title.clone(),
            page: s.page,
            section: s.section.clone(),
            excerpt: jarvis_knowledge::service::excerpt(&s.text),
        })
        .collect()
}

/// An image a message carries.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttachmentView {
    /// Its id.
    pub id: String,
    /// `image/png`, `image/jpeg` or `image/webp`.
    pub media_type: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Tokens a reply used.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplyUsage {
    /// Tokens of the prompt.
    pub input_tokens: u64,
    /// Tokens of the reply.
    pub output_tokens: u64,
}

fn message_view(m: &ChatMessage) -> MessageView {
    let status = m.meta.status.map(|s| {
        match s {
            Status::Complete => "complete",
            Status::Cancelled => "cancelled",
            Status::Failed => "failed",
        }
        .to_owned()
    });
    MessageView {
        id: m.id.to_string(),
        role: match m.speaker {
            Speaker::User => "user",
            Speaker::Assistant => "assistant",
        }
        .to_owned(),
        content: m.content.clone(),
        created_at: rfc3339_ms(m.created_ms),
        status,
        model: m.meta.model.clone(),
        stop_reason: m.meta.stop_reason.clone(),
        stream_id: m.meta.stream_id.map(|s| s.to_string()),
        usage: m
            .meta
            .usage
            .map(|(input_tokens, output_tokens)| ReplyUsage {
                input_tokens,
                output_tokens,
            }),
        cost_micros: m.meta.cost_micros,
        memories: m
            .meta
            .memories
            .iter()
            .map(|u| UsedMemoryView {
                id: u.id.to_string(),
                text: u.text.clone(),
                score: u.score,
            })
            .collect(),
        error: m.meta.error.clone(),
        attachments: m
            .meta
            .attachments
            .iter()
            .map(|a| AttachmentView {
                id: a.id.to_string(),
                media_type: a.media_type.clone(),
                bytes: a.bytes,
            })
            .collect(),
        citations: citations(m),
    }
}

/// The passages of the caller's knowledge base a reply to `content` is given, numbered.
async fn grounding(
    knowledge: &Knowledge,
    who: &Caller,
    content: &str,
) -> Result<Vec<GivenSource>, ApiError> {
    let caller = jarvis_knowledge::service::Caller {
        user: &who.user,
        role: &who.role,
    };
    let found = knowledge
        .context_for(caller, content)
        .await
        .map_err(jarvis_fn_knowledge::knowledge_error)?;
    Ok(found
        .into_iter()
        .enumerate()
        .map(|(i, f)| GivenSource {
            marker: u32::try_from(i + 1).unwrap_or(u32::MAX),
            document: f.document,
            name: f.name,
            title: f.title,
            page: f.page,
            section: f.section,
            text: f.text,
        })
        .collect())
}

fn check_title(value: &str) -> Result<String, ApiError> {
    validate::text("title", value, MAX_TITLE_CHARS)?;
    Ok(value.to_owned())
}

fn check_system(value: &str) -> Result<String, ApiError> {
    validate::text("system", value, MAX_TEXT_CHARS)?;
    Ok(value.to_owned())
}

fn check_model(value: &str) -> Result<String, ApiError> {
    validate::name("model", value)?;
    Ok(value.to_owned())
}

/// `POST /chat/conversations`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConversation {
    /// Its title (otherwise one is generated after the first exchange).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = ConversationTitle, nullable = false)]
    pub title: Option<String>,
    /// Its system prompt.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = ChatText, nullable = false)]
    pub system: Option<String>,
    /// The model alias answering in it (default `smart`).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = validate::ObjectName, nullable = false)]
    pub model: Option<String>,
}

/// Starts a conversation.
#[utoipa::path(
    post,
    path = "/chat/conversations",
    tag = "chat",
    request_body = NewConversation,
    security(("access_token" = ["chat:write"]), ("api_key" = ["chat:write"])),
    responses(
        (status = 201, description = "The conversation", body = ConversationView),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all)]
async fn create_conversation(
    caller: Authorized<scope::ChatWrite>,
    Service(chat): Service,
    Json(body): Json<NewConversation>,
) -> Result<impl IntoResponse, ApiError> {
    let new = conversation::NewConversation {
        title: body.title.as_deref().map(check_title).transpose()?,
        system: body.system.as_deref().map(check_system).transpose()?,
        model: body.model.as_deref().map(check_model).transpose()?,
    };
    let created = conversation::create(chat.site(), &caller.identity.user_id, new)
        .await
        .map_err(chat_error)?;
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/chat/conversations/{}", created.id),
        )],
        Json(conversation_view(&created)),
    ))
}

/// Paging and search of `GET /chat/conversations`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only conversations whose title contains this (any case).
    #[param(value_type = Option<ConversationTitle>, inline)]
    pub search: Option<String>,
    /// Page size (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<validate::Cursor>, inline)]
    pub cursor: Option<String>,
}

/// Lists the caller's conversations, newest first. A search examines at most 1,000
/// conversations per request: a page may come back short, even empty, with a `next_cursor`.
#[utoipa::path(
    get,
    path = "/chat/conversations",
    tag = "chat",
    params(ListParams),
    security(("access_token" = ["chat:read"]), ("api_key" = ["chat:read"])),
    responses(
        (status = 200, description = "A page of conversations", body = Paged<ConversationView>),
        (status = 400, description = "Invalid search, limit or cursor", body = ErrorEnvelope),
        (status = 422, description = "A cursor this API did not return", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn list_conversations(
    caller: Authorized<scope::ChatRead>,
    Service(chat): Service,
    Query(params): Query<ListParams>,
) -> Result<Json<Paged<ConversationView>>, ApiError> {
    let limit = validate::page_limit(params.limit, DEFAULT_PAGE, MAX_PAGE)?;
    if let Some(search) = &params.search {
        validate::text("search", search, MAX_TITLE_CHARS)?;
    }
    let page = conversation::list(
        chat.site(),
        &caller.identity.user_id,
        params.search.as_deref(),
        params.cursor.as_deref(),
        limit,
    )
    .await
    .map_err(cursor_error)?;
    Ok(Json(Paged {
        items: page.items.iter().map(conversation_view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A conversation with a page of its messages.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConversationDetail {
    /// The conversation.
    pub conversation: ConversationView,
    /// A page of its messages, oldest first.
    pub messages: Vec<MessageView>,
    /// Pass as `cursor` for the next page of messages; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Reads a conversation and a page of its messages, oldest first.
#[utoipa::path(
    get,
    path = "/chat/conversations/{id}",
    tag = "chat",
    params(("id" = inline(validate::Uuid), Path, description = "Conversation id"), PageParams),
    security(("access_token" = ["chat:read"]), ("api_key" = ["chat:read"])),
    responses(
        (status = 200, description = "The conversation and messages", body = ConversationDetail),
        (status = 400, description = "Invalid id, limit or cursor", body = ErrorEnvelope),
        (status = 404, description = "No such conversation", body = ErrorEnvelope),
        (status = 422, description = "A cursor this API did not return", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_conversation(
    caller: Authorized<scope::ChatRead>,
    Service(chat): Service,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<Json<ConversationDetail>, ApiError> {
    let id = id_of("id", &id)?;
    let limit = params.limit()?;
    let user = &caller.identity.user_id;
    let found = conversation::get(chat.site(), user, &id)
        .await
        .map_err(chat_error)?;
    let page = conversation::messages(chat.site(), user, &id, params.cursor.as_deref(), limit)
        .await
        .map_err(cursor_error)?;
    Ok(Json(ConversationDetail {
        conversation: conversation_view(&found),
        messages: page.items.iter().map(message_view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `PATCH /chat/conversations/{id}`: any of the settings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct ConversationPatch {
    /// New title.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = ConversationTitle, nullable = false)]
    pub title: Option<String>,
    /// New system prompt.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = ChatText, nullable = false)]
    pub system: Option<String>,
    /// New model alias.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = validate::ObjectName, nullable = false)]
    pub model: Option<String>,
}

/// Changes a conversation's title, system prompt or model; each merges on its own.
#[utoipa::path(
    patch,
    path = "/chat/conversations/{id}",
    tag = "chat",
    params(("id" = inline(validate::Uuid), Path, description = "Conversation id")),
    request_body = ConversationPatch,
    security(("access_token" = ["chat:write"]), ("api_key" = ["chat:write"])),
    responses(
        (status = 200, description = "The conversation after the change", body = ConversationView),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        (status = 404, description = "No such conversation", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn patch_conversation(
    caller: Authorized<scope::ChatWrite>,
    Service(chat): Service,
    Path(id): Path<String>,
    Json(body): Json<ConversationPatch>,
) -> Result<Json<ConversationView>, ApiError> {
    let id = id_of("id", &id)?;
    let change = conversation::Change {
        title: body
            .title
            .as_deref()
            .map(check_title)
            .transpose()?
            .map(Some),
        system: body
            .system
            .as_deref()
            .map(check_system)
            .transpose()?
            .map(Some),
        model: body
            .model
            .as_deref()
            .map(check_model)
            .transpose()?
            .map(Some),
    };
    if change.title.is_none() && change.system.is_none() && change.model.is_none() {
        return Err(ApiError::bad_request(
            "name at least one of title, system, model",
        ));
    }
    let changed = conversation::update(chat.site(), &caller.identity.user_id, &id, &change)
        .await
        .map_err(chat_error)?;
    Ok(Json(conversation_view(&changed)))
}

/// Deletes a conversation and its messages.
#[utoipa::path(
    delete,
    path = "/chat/conversations/{id}",
    tag = "chat",
    params(("id" = inline(validate::Uuid), Path, description = "Conversation id")),
    security(("access_token" = ["chat:write"]), ("api_key" = ["chat:write"])),
    responses(
        (status = 204, description = "Deleted, with every message"),
        (status = 400, description = "Invalid id", body = ErrorEnvelope),
        (status = 404, description = "No such conversation", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn delete_conversation(
    caller: Authorized<scope::ChatWrite>,
    Service(chat): Service,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id_of("id", &id)?;
    chat.delete(&caller.identity.user_id, &id)
        .await
        .map_err(chat_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /chat/conversations/{id}/messages`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// What the user says.
    #[schema(value_type = ChatText)]
    pub content: String,
    /// `true`: answer with the reply's events as Server-Sent Events while it is generated;
    /// `false` (default): answer once it is complete, as JSON.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = bool, nullable = false)]
    pub stream: Option<bool>,
    /// Up to 4 images (PNG, JPEG or WebP, recognised by their content), sent to the model
    /// with the message.
    #[serde(default)]
    #[schema(max_items = 4)]
    pub attachments: Vec<NewAttachment>,
    /// `true`: the reply is also given the passages of the caller's knowledge base most
    /// relevant to the message, and cites them (`citations` of the reply); searching spends
    /// the caller's budget too. Default `false`.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = bool, nullable = false)]
    pub knowledge: Option<bool>,
}

jarvis_http::string_schema!(
    /// An image, base64 (standard alphabet, padded).
    ImageData,
    || validate::string("The image's bytes, base64")
        .min_length(Some(4))
        .pattern(Some("^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"))
);

/// An image attached to a message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAttachment {
    /// Its bytes, base64; at most 5 MiB once decoded (and within the request body limit).
    #[schema(value_type = ImageData)]
    pub data: String,
}

/// Base64 as the schema states it: padded, standard alphabet, the unused bits of the last
/// character not checked (every string of the pattern decodes).
const LENIENT_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// The images of a message, decoded and checked: PNG, JPEG or WebP by their content.
fn images(attachments: &[NewAttachment]) -> Result<Vec<Vec<u8>>, ApiError> {
    use base64::Engine;
    validate::count(
        "attachments",
        attachments.len(),
        jarvis_chat::attachment::MAX_PER_MESSAGE,
    )?;
    attachments
        .iter()
        .enumerate()
        .map(|(i, attachment)| {
            let field = format!("attachments[{i}].data");
            let bytes = LENIENT_BASE64
                .decode(&attachment.data)
                .map_err(|_| ApiError::invalid_field(field.clone(), "must be base64"))?;
            if bytes.len() > jarvis_chat::attachment::MAX_BYTES {
                return Err(ApiError::invalid_field(field, "must be at most 5 MiB"));
            }
            // Valid base64 that is not an image breaks no rule a schema can state: a 422.
            if jarvis_chat::attachment::detect(&bytes).is_none() {
                return Err(ApiError::Unprocessable {
                    field: Some(field.into()),
                    message: "must be a PNG, JPEG or WebP image".into(),
                });
            }
            Ok(bytes)
        })
        .collect()
}

/// A message and its reply.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Exchange {
    /// The stream the reply was generated on (`GET /chat/streams/{id}` replays it).
    pub stream_id: String,
    /// The user's message.
    pub message: MessageView,
    /// The reply, as saved.
    pub reply: MessageView,
}

/// Says something in a conversation and gets the reply: as JSON once complete, or with
/// `stream: true` as Server-Sent Events while it is generated (`id:` is each event's
/// sequence number; `Content-Location` names the stream to resume from). The reply runs on
/// its own: it is saved whatever happens to this connection.
#[utoipa::path(
    post,
    path = "/chat/conversations/{id}/messages",
    tag = "chat",
    params(("id" = inline(validate::Uuid), Path, description = "Conversation id")),
    request_body = NewMessage,
    security(("access_token" = ["chat:write"]), ("api_key" = ["chat:write"])),
    responses(
        (status = 200, description = "The message and its reply (JSON), or the reply's events (`text/event-stream`: `start`, `delta`, `tool_call`, `usage`, then `done`, `error` or `cancelled`, each `data` a JSON object with its `type`)",
            content((Exchange = "application/json"), (StreamFrame = "text/event-stream"))),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        (status = 404, description = "No such conversation or model alias", body = ErrorEnvelope),
        (status = 422, description = "An attachment is not a PNG, JPEG or WebP image, the message does not fit the model's context window, or the model refused the request", body = ErrorEnvelope),
        (status = 429, description = "The caller's token budget is spent (`quota_exceeded`, with `resets_at`)", body = ErrorEnvelope),
        (status = 503, description = "No model of the alias could answer", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all)]
async fn send_message(
    caller: Authorized<scope::ChatWrite>,
    Service(chat): Service,
    knowledge: Option<Extension<Arc<Knowledge>>>,
    Path(id): Path<String>,
    Json(body): Json<NewMessage>,
) -> Result<Response, ApiError> {
    let id = id_of("id", &id)?;
    validate::text("content", &body.content, MAX_TEXT_CHARS)?;
    let who = Caller {
        user: caller.identity.user_id.clone(),
        role: caller.identity.role.as_str().to_owned(),
    };
    let images = images(&body.attachments)?;
    let sources = match (body.knowledge, knowledge) {
        (Some(true), Some(Extension(knowledge))) => {
            grounding(&knowledge, &who, &body.content).await?
        }
        (Some(true), None) => {
            return Err(ApiError::NotConfigured(
                "this host has no knowledge base".into(),
            ));
        }
        _ => Vec::new(),
    };
    let started = chat
        .send_with_sources(&who, &id, body.content, images, sources)
        .await
        .map_err(chat_error)?;
    let events = chat
        .follow(&who.user, started.stream_id, 0)
        .await
        .map_err(chat_error)?;
    let location = format!("/chat/streams/{}", started.stream_id);
    if body.stream == Some(true) {
        let mut response = sse(events).into_response();
        if let Ok(value) = location.parse() {
            response
                .headers_mut()
                .insert(header::CONTENT_LOCATION, value);
        }
        return Ok(response);
    }
    let mut events = std::pin::pin!(events);
    while let Some((_, event)) = events.next().await {
        if event.is_final() {
            break;
        }
    }
    let page = conversation::messages(
        chat.site(),
        &who.user,
        &id,
        Some(&jarvis_store::encode_cursor(&format!(
            "msg#{}",
            started.user_message.id.hyphenated()
        ))),
        MAX_PAGE,
    )
    .await
    .map_err(chat_error)?;
    let reply = page
        .items
        .iter()
        .find(|m| m.id == started.message_id)
        .ok_or_else(|| ApiError::Unavailable("the reply was not saved".into()))?;
    Ok(Json(Exchange {
        stream_id: started.stream_id.to_string(),
        message: message_view(&started.user_message),
        reply: message_view(reply),
    })
    .into_response())
}

/// Events as Server-Sent Events: `id:` the sequence number, `event:` the type, `data:` the
/// event's JSON; a comment every 15 s keeps idle connections open.
fn sse(
    events: impl Stream<Item = (u64, StreamEvent)> + Send + 'static,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let frames = events.map(|(seq, event)| {
        let frame = SseEvent::default().id(seq.to_string()).event(event.name());
        Ok(match serde_json::to_string(&event) {
            Ok(json) => frame.data(json),
            Err(_) => frame.data("{}"),
        })
    });
    Sse::new(frames).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
}

/// One Server-Sent Event of a reply, as a client's event-stream parser reads it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamFrame {
    /// The event's sequence number: send the last one received as `Last-Event-ID`.
    pub id: String,
    /// Its type: `start`, `delta`, `tool_call`, `usage`, `done`, `error` or `cancelled`.
    pub event: String,
    /// The event as a JSON object, with its `type`.
    pub data: String,
}

/// Where to resume a stream.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FollowParams {
    /// The last sequence number received (as `Last-Event-ID`, which takes precedence):
    /// events after it are sent. Default 0: from the start.
    #[param(minimum = 0)]
    pub after: Option<u64>,
}

/// The events of a reply as Server-Sent Events, from the start or after the sequence
/// number in `Last-Event-ID`: each event once, in order, then the live rest until the final
/// event. Events are kept for an hour (`JARVIS_CHAT_STREAM_RETENTION_SECS`).
#[utoipa::path(
    get,
    path = "/chat/streams/{id}",
    tag = "chat",
    params(
        ("id" = inline(validate::Uuid), Path, description = "Stream id"),
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, minimum = 0, description = "The last sequence number received"),
        FollowParams,
    ),
    security(("access_token" = ["chat:read"]), ("api_key" = ["chat:read"])),
    responses(
        (status = 200, description = "The events (`start`, `delta`, `tool_call`, `usage`, then `done`, `error` or `cancelled`)", content_type = "text/event-stream", body = StreamFrame),
        (status = 400, description = "Invalid id or Last-Event-ID", body = ErrorEnvelope),
        (status = 404, description = "No such stream (or its events expired)", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn follow_stream(
    caller: Authorized<scope::ChatRead>,
    Service(chat): Service,
    Path(id): Path<String>,
    Query(params): Query<FollowParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = id_of("id", &id)?;
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::invalid_field("Last-Event-ID", "must be a sequence number"))?,
        None => params.after.unwrap_or(0),
    };
    let events = chat
        .follow(&caller.identity.user_id, id, after)
        .await
        .map_err(chat_error)?;
    Ok(sse(events).into_response())
}

/// Whether a reply was still being generated.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CancelState {
    /// `cancelling` (the reply stops and what it generated is saved) or `ended` (it had
    /// already ended).
    pub status: String,
}

/// Stops a reply being generated; what it generated so far is saved, marked `cancelled`.
#[utoipa::path(
    post,
    path = "/chat/streams/{id}/cancel",
    tag = "chat",
    params(("id" = inline(validate::Uuid), Path, description = "Stream id")),
    security(("access_token" = ["chat:write"]), ("api_key" = ["chat:write"])),
    responses(
        (status = 202, description = "Cancelling, or already ended", body = CancelState),
        (status = 400, description = "Invalid id", body = ErrorEnvelope),
        (status = 404, description = "No such stream", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn cancel_stream(
    caller: Authorized<scope::ChatWrite>,
    Service(chat): Service,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CancelState>), ApiError> {
    let id = id_of("id", &id)?;
    let ended = chat
        .cancel(&caller.identity.user_id, &id)
        .await
        .map_err(chat_error)?;
    let status = if ended { "ended" } else { "cancelling" };
    Ok((
        StatusCode::ACCEPTED,
        Json(CancelState {
            status: status.to_owned(),
        }),
    ))
}

/// A conversation's running summary.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SummaryView {
    /// The summary; `null` while every turn still fits the model's window.
    pub summary: Option<String>,
    /// How many of the oldest messages it stands for.
    pub messages: u64,
    /// The last message it covers.
    pub through_message_id: Option<String>,
    /// When it was last written.
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

/// The running summary older turns were folded into to fit the model's context window.
#[utoipa::path(
    get,
    path = "/chat/conversations/{id}/summary",
    tag = "chat",
    params(("id" = inline(validate::Uuid), Path, description = "Conversation id")),
    security(("access_token" = ["chat:read"]), ("api_key" = ["chat:read"])),
    responses(
        (status = 200, description = "The summary", body = SummaryView),
        (status = 400, description = "Invalid id", body = ErrorEnvelope),
        (status = 404, description = "No such conversation", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_summary(
    caller: Authorized<scope::ChatRead>,
    Service(chat): Service,
    Path(id): Path<String>,
) -> Result<Json<SummaryView>, ApiError> {
    let id = id_of("id", &id)?;
    let found = conversation::get(chat.site(), &caller.identity.user_id, &id)
        .await
        .map_err(chat_error)?;
    let summary = found.summary.as_ref();
    Ok(Json(SummaryView {
        summary: summary.map(|s| s.text.clone()),
        messages: summary.map_or(0, |s| s.messages),
        through_message_id: summary.map(|s| s.through.to_string()),
        updated_at: summary.map(|s| rfc3339_ms(s.updated_ms)),
    }))
}

/// An image attached to a message of the conversation.
#[utoipa::path(
    get,
    path = "/chat/conversations/{id}/attachments/{attachment}",
    tag = "chat",
    params(
        ("id" = inline(validate::Uuid), Path, description = "Conversation id"),
        ("attachment" = inline(validate::Uuid), Path, description = "Attachment id"),
    ),
    security(("access_token" = ["chat:read"]), ("api_key" = ["chat:read"])),
    responses(
        (status = 200, description = "The image", content(
            (Vec<u8> = "image/png"), (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/webp"))),
        (status = 400, description = "Invalid id", body = ErrorEnvelope),
        (status = 404, description = "No such conversation or attachment", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_attachment(
    caller: Authorized<scope::ChatRead>,
    Service(chat): Service,
    Path((id, attachment)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = id_of("id", &id)?;
    let attachment = id_of("attachment", &attachment)?;
    let blob = chat
        .attachment(&caller.identity.user_id, &id, &attachment)
        .await
        .map_err(chat_error)?;
    Ok((
        [
            (header::CONTENT_TYPE, blob.media_type),
            (header::CACHE_CONTROL, "private, max-age=86400".to_owned()),
        ],
        blob.bytes,
    )
        .into_response())
}

/// The format of an export.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// A Markdown document.
    Markdown,
    /// The conversation and every message as JSON.
    Json,
}

/// `?format=` of an export.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `markdown` (default) or `json`.
    #[param(inline)]
    pub format: Option<ExportFormat>,
}

/// A whole conversation, exported.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportDocument {
    /// The conversation.
    pub conversation: ConversationView,
    /// The running summary, if any.
    pub summary: Option<String>,
    /// Every message, oldest first.
    pub messages: Vec<MessageView>,
}

/// Exports a conversation with every message, as Markdown or JSON.
#[utoipa::path(
    get,
    path = "/chat/conversations/{id}/export",
    tag = "chat",
    params(("id" = inline(validate::Uuid), Path, description = "Conversation id"), ExportParams),
    security(("access_token" = ["chat:read"]), ("api_key" = ["chat:read"])),
    responses(
        (status = 200, description = "The export", content((ExportDocument = "application/json"), (String = "text/markdown"))),
        (status = 400, description = "Invalid id or format", body = ErrorEnvelope),
        (status = 404, description = "No such conversation", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn export_conversation(
    caller: Authorized<scope::ChatRead>,
    Service(chat): Service,
    Path(id): Path<String>,
    Query(params): Query<ExportParams>,
) -> Result<Response, ApiError> {
    let id = id_of("id", &id)?;
    let user = &caller.identity.user_id;
    let found = conversation::get(chat.site(), user, &id)
        .await
        .map_err(chat_error)?;
    let messages = conversation::history(chat.site(), user, &id, None)
        .await
        .map_err(chat_error)?;
    let document = ExportDocument {
        conversation: conversation_view(&found),
        summary: found.summary.as_ref().map(|s| s.text.clone()),
        messages: messages.iter().map(message_view).collect(),
    };
    match params.format.unwrap_or(ExportFormat::Markdown) {
        ExportFormat::Json => Ok(Json(document).into_response()),
        ExportFormat::Markdown => Ok((
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            markdown(&document),
        )
            .into_response()),
    }
}

/// A conversation as Markdown: a heading, then each message under its speaker and time.
fn markdown(document: &ExportDocument) -> String {
    let c = &document.conversation;
    let mut out = format!(
        "# {}\n\n_Model `{}`, started {}._\n\n",
        c.title.as_deref().unwrap_or("Untitled conversation"),
        c.model,
        c.created_at
    );
    if let Some(system) = &c.system {
        out.push_str(&format!("**System:** {system}\n\n"));
    }
    if let Some(summary) = &document.summary {
        out.push_str(&format!("> **Summary of earlier turns:** {summary}\n\n"));
    }
    for m in &document.messages {
        let who = if m.role == "user" { "You" } else { "Jarvis" };
        out.push_str(&format!("## {who} · {}\n\n{}\n\n", m.created_at, m.content));
    }
    out
}

/// A memory as clients see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemoryView {
    /// Its id.
    pub id: String,
    /// The fact.
    pub text: String,
    /// The conversation it was learned in; `null` when written by the user.
    pub conversation_id: Option<String>,
    /// When it was made.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it last changed.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

fn memory_view(m: &Memory) -> MemoryView {
    MemoryView {
        id: m.id.to_string(),
        text: m.text.clone(),
        conversation_id: m.conversation.map(|c| c.to_string()),
        created_at: rfc3339_ms(m.created_ms),
        updated_at: rfc3339_ms(m.updated_ms.max(m.created_ms)),
    }
}

/// Lists what Jarvis remembers about the caller, oldest first.
#[utoipa::path(
    get,
    path = "/memory",
    tag = "memory",
    params(PageParams),
    security(("access_token" = ["chat:read"]), ("api_key" = ["chat:read"])),
    responses(
        (status = 200, description = "A page of memories", body = Paged<MemoryView>),
        (status = 400, description = "Invalid limit or cursor", body = ErrorEnvelope),
        (status = 422, description = "A cursor this API did not return", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn list_memories(
    caller: Authorized<scope::ChatRead>,
    Service(chat): Service,
    Query(params): Query<PageParams>,
) -> Result<Json<Paged<MemoryView>>, ApiError> {
    let limit = params.limit()?;
    let page = memory::list(
        chat.site(),
        &caller.identity.user_id,
        params.cursor.as_deref(),
        limit,
    )
    .await
    .map_err(cursor_error)?;
    Ok(Json(Paged {
        items: page.items.iter().map(memory_view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `POST /memory`, `PATCH /memory/{id}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryBody {
    /// The fact.
    #[schema(value_type = MemoryText)]
    pub text: String,
}

/// Tells Jarvis something to remember. A fact it already keeps (the same words, or nearly
/// the same meaning) is not kept twice: the answer is then 200 with the kept one.
#[utoipa::path(
    post,
    path = "/memory",
    tag = "memory",
    request_body = MemoryBody,
    security(("access_token" = ["chat:write"]), ("api_key" = ["chat:write"])),
    responses(
        (status = 201, description = "The new memory", body = MemoryView),
        (status = 200, description = "Already known: the memory that says it", body = MemoryView),
        (status = 400, description = "Invalid text", body = ErrorEnvelope),
        (status = 422, description = "The text is blank, or the caller keeps as many memories as allowed (500)", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn add_memory(
    caller: Authorized<scope::ChatWrite>,
    Service(chat): Service,
    Json(body): Json<MemoryBody>,
) -> Result<Response, ApiError> {
    validate::text("text", &body.text, memory::MAX_MEMORY_CHARS)?;
    let user = &caller.identity.user_id;
    let text = non_blank(&body.text)?;
    match chat.remember(user, text, None).await.map_err(chat_error)? {
        Remembered::New(made) => Ok((
            StatusCode::CREATED,
            [(header::LOCATION, format!("/memory/{}", made.id))],
            Json(memory_view(&made)),
        )
            .into_response()),
        Remembered::Known(same) => Ok(Json(memory_view(&same)).into_response()),
    }
}

/// `text` trimmed; a memory of nothing but spaces is refused (422: the schema cannot say).
fn non_blank(text: &str) -> Result<&str, ApiError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ApiError::Unprocessable {
            field: Some("text".into()),
            message: "must not be blank".into(),
        });
    }
    Ok(trimmed)
}

/// Rewrites a memory.
#[utoipa::path(
    patch,
    path = "/memory/{id}",
    tag = "memory",
    params(("id" = inline(validate::Uuid), Path, description = "Memory id")),
    request_body = MemoryBody,
    security(("access_token" = ["chat:write"]), ("api_key" = ["chat:write"])),
    responses(
        (status = 200, description = "The memory after the change", body = MemoryView),
        (status = 400, description = "Invalid id or text", body = ErrorEnvelope),
        (status = 404, description = "No such memory", body = ErrorEnvelope),
        (status = 422, description = "The text is blank", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn rewrite_memory(
    caller: Authorized<scope::ChatWrite>,
    Service(chat): Service,
    Path(id): Path<String>,
    Json(body): Json<MemoryBody>,
) -> Result<Json<MemoryView>, ApiError> {
    let id = id_of("id", &id)?;
    validate::text("text", &body.text, memory::MAX_MEMORY_CHARS)?;
    let user = &caller.identity.user_id;
    memory::get(chat.site(), user, &id)
        .await
        .map_err(chat_error)?;
    let text = non_blank(&body.text)?;
    let vector = chat.embed(text).await;
    let changed = memory::rewrite(chat.site(), user, &id, text, vector)
        .await
        .map_err(chat_error)?;
    Ok(Json(memory_view(&changed)))
}

/// Forgets one memory.
#[utoipa::path(
    delete,
    path = "/memory/{id}",
    tag = "memory",
    params(("id" = inline(validate::Uuid), Path, description = "Memory id")),
    security(("access_token" = ["chat:write"]), ("api_key" = ["chat:write"])),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 400, description = "Invalid id", body = ErrorEnvelope),
        (status = 404, description = "No such memory", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn forget_memory(
    caller: Authorized<scope::ChatWrite>,
    Service(chat): Service,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id_of("id", &id)?;
    memory::forget(chat.site(), &caller.identity.user_id, &id)
        .await
        .map_err(chat_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// How many memories were forgotten.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Forgotten {
    /// How many.
    pub forgotten: usize,
}

/// Forgets everything Jarvis remembers about the caller.
#[utoipa::path(
    delete,
    path = "/memory",
    tag = "memory",
    security(("access_token" = ["chat:write"]), ("api_key" = ["chat:write"])),
    responses(
        (status = 200, description = "Every memory forgotten", body = Forgotten),
        AuthRejections,
    )
)]
async fn forget_memories(
    caller: Authorized<scope::ChatWrite>,
    Service(chat): Service,
) -> Result<Json<Forgotten>, ApiError> {
    let forgotten = memory::forget_all(chat.site(), &caller.identity.user_id)
        .await
        .map_err(chat_error)?;
    Ok(Json(Forgotten { forgotten }))
}

/// Memory settings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemorySettings {
    /// Whether facts are learned from conversations automatically (default `true`). Off,
    /// memories are only those the user writes, and they are still used in replies.
    pub learn: bool,
}

/// Whether Jarvis learns memories from the caller's conversations.
#[utoipa::path(
    get,
    path = "/memory/settings",
    tag = "memory",
    security(("access_token" = ["chat:read"]), ("api_key" = ["chat:read"])),
    responses(
        (status = 200, description = "The settings", body = MemorySettings),
        AuthRejections,
    )
)]
async fn get_memory_settings(
    caller: Authorized<scope::ChatRead>,
    Service(chat): Service,
) -> Result<Json<MemorySettings>, ApiError> {
    let learn = memory::learning(chat.site(), &caller.identity.user_id)
        .await
        .map_err(chat_error)?;
    Ok(Json(MemorySettings { learn }))
}

/// Turns learning memories from conversations on or off.
#[utoipa::path(
    put,
    path = "/memory/settings",
    tag = "memory",
    request_body = MemorySettings,
    security(("access_token" = ["chat:write"]), ("api_key" = ["chat:write"])),
    responses(
        (status = 200, description = "The settings", body = MemorySettings),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn put_memory_settings(
    caller: Authorized<scope::ChatWrite>,
    Service(chat): Service,
    Json(body): Json<MemorySettings>,
) -> Result<Json<MemorySettings>, ApiError> {
    memory::set_learning(chat.site(), &caller.identity.user_id, body.learn)
        .await
        .map_err(chat_error)?;
    Ok(Json(body))
}

#[cfg(test)]
mod tests;
