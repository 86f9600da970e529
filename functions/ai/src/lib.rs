//! The AI function: the deployment's model aliases and their state, completions and
//! embeddings through them within each user's token budget, what each user used and what it
//! cost, and the budgets admins set.
//!
//! Every call reserves its worst case (the prompt's bytes, an upper bound of its tokens,
//! plus the reply's limit) from the caller's day and month budgets before it starts, and
//! settles the actual usage when it ends; the call runs in its own task, so a request cut
//! off by its timeout still settles and records what it used. A reply that fails mid-way
//! keeps its reservation spent: the provider may bill for what it generated.

pub mod service;

use std::sync::Arc;

use axum::Extension;
use jarvis_ai::quota::{self, Budget, Period, Subject};
use jarvis_ai::{ChatRequest, Message, Role as MessageRole, usage};
use jarvis_app::AppState;
use jarvis_crdt::Entity;
use jarvis_http::error::{ApiError, AuthRejections, ErrorEnvelope};
use jarvis_http::{Json, Path, Query, validate};
use jarvis_identity::credential::user_key;
use jarvis_identity::{Authorized, Role, scope};
use jarvis_store::Store;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use jarvis_ai::Provider;
pub use jarvis_ai::service::{Ai, AiHealth, Payer};

/// Most messages in one completion.
pub const MAX_MESSAGES: usize = 100;
/// Longest message or system prompt, in characters.
pub const MAX_MESSAGE_CHARS: usize = 32_000;
/// The largest reply limit a request may set.
pub const MAX_OUTPUT_TOKENS: u64 = 4_096;
/// The reply limit when a request sets none.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 512;
/// Most stop sequences, and the longest, in characters.
pub const MAX_STOPS: usize = 4;
/// Longest stop sequence, in characters.
pub const MAX_STOP_CHARS: usize = 64;
/// Most texts one embedding request may send.
pub const MAX_EMBED_TEXTS: usize = 64;
/// Longest text to embed, in characters.
pub const MAX_EMBED_CHARS: usize = 8_000;
/// The largest budget an admin may set, in tokens.
pub const MAX_BUDGET: u64 = 1_000_000_000_000;
/// Tokens a message's framing (role markers) may take beyond its text.
const MESSAGE_OVERHEAD: u64 = 8;

/// The function's routes with their OpenAPI description. Handlers take the [`Ai`] service
/// from an extension: [`routes`] adds it.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_models))
        .routes(routes!(complete))
        .routes(routes!(embed))
        .routes(routes!(transcribe))
        .routes(routes!(speak))
        .routes(routes!(get_usage))
        .routes(routes!(put_user_quota, get_user_quota))
        .routes(routes!(put_role_quota, get_role_quota))
}

/// The function's routes, serving `ai`.
pub fn routes(ai: Arc<Ai>) -> axum::Router<AppState> {
    let router: axum::Router<AppState> = api().into();
    router.layer(Extension(ai))
}

/// The AI service of the host, from the request's extensions (see [`routes`]); 503
/// `not_configured` in a host that did not set one up.
pub struct Service(pub Arc<Ai>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Service {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Arc<Ai>>()
            .cloned()
            .map(Service)
            .ok_or_else(|| ApiError::NotConfigured("this host has no AI service".into()))
    }
}

/// The Lambda function's routes: the service built from the state (with Bedrock, through
/// the function's IAM role, where the build has it), its health component registered.
pub async fn lambda_routes(state: &mut AppState) -> axum::Router<AppState> {
    routes(lambda_service(state).await)
}

/// The AI service of a Lambda function: built from the state (with Bedrock, through the
/// function's IAM role, where the build has it), its health component registered.
pub async fn lambda_service(state: &mut AppState) -> Arc<Ai> {
    #[allow(unused_mut)]
    let mut hosted: Vec<(String, Arc<dyn jarvis_ai::Provider>)> = Vec::new();
    #[cfg(feature = "bedrock")]
    hosted.push(("bedrock".to_owned(), service::bedrock().await));
    let ai = Arc::new(Ai::new(&state.config, Arc::clone(&state.secrets), hosted));
    state.register_health(Arc::new(AiHealth(Arc::clone(&ai))));
    ai
}

fn now() -> i64 {
    jarvis_store::now_secs()
}

/// One message of a completion.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: ChatRole,
    /// Its text: 1 to 32,000 characters.
    #[schema(value_type = LongText)]
    pub content: String,
}

/// Who wrote a message of a completion.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// The user.
    User,
    /// The model, earlier in the conversation.
    Assistant,
}

/// `POST /ai/complete`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The model alias (`smart`, `fast`…; default `smart`).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = validate::ObjectName, nullable = false)]
    pub model: Option<String>,
    /// The system prompt: 1 to 32,000 characters.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = LongText, nullable = false)]
    pub system: Option<String>,
    /// The conversation, oldest first: 1 to 100 messages, the last from the user.
    #[schema(min_items = 1, max_items = 100)]
    pub messages: Vec<ChatMessage>,
    /// The most tokens the reply may have: 1 to 4096 (default 512).
    #[serde(default, deserialize_with = "validate::whole_not_null")]
    #[schema(value_type = u64, minimum = 1, maximum = 4096, nullable = false)]
    pub max_tokens: Option<u64>,
    /// Sampling temperature, 0 to 2 (0 or absent: the most likely tokens).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = f32, minimum = 0, maximum = 2, nullable = false)]
    pub temperature: Option<f32>,
    /// Up to 4 sequences of 1 to 64 characters that end the reply.
    #[serde(default)]
    #[schema(value_type = Vec<StopText>, max_items = 4)]
    pub stop: Vec<String>,
}

jarvis_http::string_schema!(
    /// A message or system prompt: 1 to 32,000 characters, no control characters other than
    /// tab and line breaks.
    LongText,
    || validate::text_schema(
        "1 to 32000 characters, no control characters other than tab and line breaks",
        MAX_MESSAGE_CHARS
    )
);

jarvis_http::string_schema!(
    /// A stop sequence: 1 to 64 characters.
    StopText,
    || validate::bounded(validate::string("1 to 64 characters"), 1, MAX_STOP_CHARS)
);

jarvis_http::string_schema!(
    /// A text to embed: 1 to 8,000 characters, no control characters other than tab and
    /// line breaks.
    EmbedText,
    || validate::text_schema(
        "1 to 8000 characters, no control characters other than tab and line breaks",
        MAX_EMBED_CHARS
    )
);

fn nullable_whole<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Whole(#[serde(deserialize_with = "validate::whole_number")] u64);
    Option::<Whole>::deserialize(deserializer).map(|w| w.map(|w| w.0))
}

/// Tokens a call used.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenUsage {
    /// Tokens of the prompt.
    pub input_tokens: u64,
    /// Tokens of the reply.
    pub output_tokens: u64,
}

/// A completion.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Completion {
    /// The reply.
    pub text: String,
    /// Why it ended: `end_turn`, `max_tokens`, `stop_sequence`, `tool_use` or `refused`.
    pub stop_reason: String,
    /// The alias asked for.
    pub alias: String,
    /// The provider and model that answered, `provider:model`.
    pub model: String,
    /// Tokens used.
    pub usage: TokenUsage,
    /// What it cost, in millionths of a US dollar (0 for unpriced models).
    pub cost_micros: u64,
}

impl CompleteRequest {
    /// Checks every field; answers the alias, the provider request and its worst case in
    /// tokens.
    fn check(self) -> Result<(String, ChatRequest, u64), ApiError> {
        let alias = self.model.unwrap_or_else(|| "smart".to_owned());
        validate::name("model", &alias)?;
        if let Some(system) = &self.system {
            validate::text("system", system, MAX_MESSAGE_CHARS)?;
        }
        if self.messages.is_empty() {
            return Err(ApiError::invalid_field("messages", "at least one message"));
        }
        validate::count("messages", self.messages.len(), MAX_MESSAGES)?;
        for (i, m) in self.messages.iter().enumerate() {
            validate::text(
                format!("messages[{i}].content"),
                &m.content,
                MAX_MESSAGE_CHARS,
            )?;
        }
        // Well-formed but unanswerable: a 422, as the schema cannot say which item is last.
        if !matches!(self.messages.last().map(|m| m.role), Some(ChatRole::User)) {
            return Err(ApiError::Unprocessable {
                field: Some("messages".into()),
                message: "the last message must be the user's".into(),
            });
        }
        let max_tokens = self.max_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS);
        if !(1..=MAX_OUTPUT_TOKENS).contains(&max_tokens) {
            return Err(ApiError::invalid_field("max_tokens", "must be 1 to 4096"));
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ApiError::invalid_field("temperature", "must be 0 to 2"));
        }
        validate::count("stop", self.stop.len(), MAX_STOPS)?;
        for (i, stop) in self.stop.iter().enumerate() {
            if !(1..=MAX_STOP_CHARS).contains(&stop.chars().count()) {
                return Err(ApiError::invalid_field(
                    format!("stop[{i}]"),
                    "must be 1 to 64 characters",
                ));
            }
        }
        // A token is at least one byte of text: the bytes bound the prompt's tokens.
        let prompt_bytes = self
            .system
            .as_ref()
            .map_or(0, |s| s.len() as u64 + MESSAGE_OVERHEAD)
            + self
                .messages
                .iter()
                .map(|m| m.content.len() as u64 + MESSAGE_OVERHEAD)
                .sum::<u64>();
        let request = ChatRequest {
            model: alias.clone(),
            system: self.system,
            messages: self
                .messages
                .into_iter()
                .map(|m| match m.role {
                    ChatRole::User => Message::user(m.content),
                    ChatRole::Assistant => Message::assistant(m.content),
                })
                .collect(),
            tools: Vec::new(),
            temperature: self.temperature,
            max_output_tokens: u32::try_from(max_tokens).ok(),
            stop: self.stop,
        };
        debug_assert!(
            request
                .messages
                .last()
                .is_some_and(|m| m.role == MessageRole::User)
        );
        Ok((alias, request, prompt_bytes + max_tokens))
    }
}

/// Answers a conversation with one reply, through a model alias's fallback chain, within the
/// caller's token budget.
#[utoipa::path(
    post,
    path = "/ai/complete",
    tag = "ai",
    request_body = CompleteRequest,
    security(("access_token" = ["ai"]), ("api_key" = ["ai"])),
    responses(
        (status = 200, description = "The reply, what it used and cost", body = Completion),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        (status = 404, description = "No such model alias", body = ErrorEnvelope),
        (status = 422, description = "The last message is not the user's, or every model of the alias refused the request", body = ErrorEnvelope),
        (status = 429, description = "The caller's token budget is spent (`quota_exceeded`, with `resets_at`)", body = ErrorEnvelope),
        (status = 503, description = "No model of the alias could answer", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all)]
async fn complete(
    state: AppState,
    caller: Authorized<scope::Ai>,
    Service(ai): Service,
    Json(body): Json<CompleteRequest>,
) -> Result<Json<Completion>, ApiError> {
    let (alias, request, worst) = body.check()?;
    let identity = caller.identity;
    let done = ai
        .complete(
            &state.site(),
            Payer::User {
                id: &identity.user_id,
                role: identity.role.as_str(),
            },
            &alias,
            request,
            worst,
        )
        .await
        .map_err(service::call_error)?;
    Ok(Json(Completion {
        text: done.reply.text,
        stop_reason: done.reply.stop_reason.name().to_owned(),
        alias,
        model: done.model,
        usage: TokenUsage {
            input_tokens: done.reply.usage.input_tokens,
            output_tokens: done.reply.usage.output_tokens,
        },
        cost_micros: done.cost_micros,
    }))
}

/// `POST /ai/embeddings`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    /// The model alias (default `embed`).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = validate::ObjectName, nullable = false)]
    pub model: Option<String>,
    /// 1 to 64 texts of 1 to 8,000 characters.
    #[schema(value_type = Vec<EmbedText>, min_items = 1, max_items = 64)]
    pub texts: Vec<String>,
}

/// Embeddings, one per text in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Embeddings {
    /// The alias asked for.
    pub alias: String,
    /// The provider and model that answered, `provider:model`.
    pub model: String,
    /// Each vector's length.
    pub dimensions: usize,
    /// The vectors.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens counted against the budget (estimated: a quarter of the bytes, rounded up).
    pub tokens: u64,
}

/// Embeds texts with a model alias, within the caller's token budget.
#[utoipa::path(
    post,
    path = "/ai/embeddings",
    tag = "ai",
    request_body = EmbedRequest,
    security(("access_token" = ["ai"]), ("api_key" = ["ai"])),
    responses(
        (status = 200, description = "One vector per text, in order", body = Embeddings),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        (status = 404, description = "No such model alias", body = ErrorEnvelope),
        (status = 422, description = "No model of the alias embeds", body = ErrorEnvelope),
        (status = 429, description = "The caller's token budget is spent (`quota_exceeded`, with `resets_at`)", body = ErrorEnvelope),
        (status = 503, description = "No model of the alias could answer", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all)]
async fn embed(
    state: AppState,
    caller: Authorized<scope::Ai>,
    Service(ai): Service,
    Json(body): Json<EmbedRequest>,
) -> Result<Json<Embeddings>, ApiError> {
    let alias = body.model.unwrap_or_else(|| "embed".to_owned());
    validate::name("model", &alias)?;
    if body.texts.is_empty() {
        return Err(ApiError::invalid_field("texts", "at least one text"));
    }
    validate::count("texts", body.texts.len(), MAX_EMBED_TEXTS)?;
    for (i, text) in body.texts.iter().enumerate() {
        validate::text(format!("texts[{i}]"), text, MAX_EMBED_CHARS)?;
    }
    let texts = body.texts;
    let identity = caller.identity;
    let done = ai
        .embed(
            &state.site(),
            Payer::User {
                id: &identity.user_id,
                role: identity.role.as_str(),
            },
            &alias,
            texts,
        )
        .await
        .map_err(service::call_error)?;
    Ok(Json(Embeddings {
        alias,
        model: done.model,
        dimensions: done.vectors.first().map_or(0, Vec::len),
        vectors: done.vectors,
        tokens: done.tokens,
    }))
}

/// The sound encodings `POST /ai/transcriptions` takes, recognised by their first bytes.
pub mod sound {
    /// The media type of the sound `bytes` start like, when it is one taken.
    pub fn detect(bytes: &[u8]) -> Option<&'static str> {
        let starts = |magic: &[u8]| bytes.starts_with(magic);
        if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WAVE" {
            Some("audio/wav")
        } else if starts(b"ID3")
            || (bytes.len() >= 2
                && bytes[0] == 0xFF
                && bytes[1] & 0xE0 == 0xE0
                && bytes[1] & 0x06 != 0)
        {
            Some("audio/mpeg")
        } else if starts(b"fLaC") {
            Some("audio/flac")
        } else if starts(b"OggS") {
            Some("audio/ogg")
        } else if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
            Some("audio/webm")
        } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
            Some("audio/mp4")
        } else {
            None
        }
    }

    /// The media types taken, as a `Content-Type` may name them.
    pub const TYPES: [&str; 6] = [
        "audio/wav",
        "audio/mpeg",
        "audio/flac",
        "audio/ogg",
        "audio/webm",
        "audio/mp4",
    ];

    /// A declared type in its usual spelling (`audio/x-wav` is `audio/wav`…).
    pub fn normal(declared: &str) -> String {
        let bare = declared
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match bare.as_str() {
            "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => "audio/wav".to_owned(),
            "audio/mp3" => "audio/mpeg".to_owned(),
            "audio/x-flac" => "audio/flac".to_owned(),
            "audio/m4a" | "audio/x-m4a" => "audio/mp4".to_owned(),
            _ => bare,
        }
    }
}

/// Longest sound a transcription takes: 25 MB, the largest file OpenAI's transcriptions
/// take (the request body limit applies first).
pub const MAX_AUDIO_BYTES: usize = 25 * 1024 * 1024;
/// Longest text to speak, in characters (OpenAI's limit).
pub const MAX_SPEECH_CHARS: usize = 4_096;

/// `?model=&language=` of a transcription.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TranscribeParams {
    /// The model alias (default `transcribe`).
    #[param(value_type = Option<validate::ObjectName>, inline)]
    pub model: Option<String>,
    /// The language spoken, ISO 639-1 (`en`, `nb`…), when known.
    #[param(pattern = "^[a-z]{2}$", min_length = 2, max_length = 2)]
    pub language: Option<String>,
}

/// A transcription.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Transcription {
    /// What was said.
    pub text: String,
    /// The alias asked for.
    pub alias: String,
    /// The provider and model that answered, `provider:model`.
    pub model: String,
}

/// Transcribes speech: the body is the sound itself (WAV, MP3, FLAC, Ogg, WebM or MP4
/// audio, recognised by its content, which must agree with `Content-Type`), within the
/// caller's token budget.
#[utoipa::path(
    post,
    path = "/ai/transcriptions",
    tag = "ai",
    params(TranscribeParams),
    request_body(description = "The sound", content(
        (Vec<u8> = "audio/wav"), (Vec<u8> = "audio/mpeg"), (Vec<u8> = "audio/flac"),
        (Vec<u8> = "audio/ogg"), (Vec<u8> = "audio/webm"), (Vec<u8> = "audio/mp4"))),
    security(("access_token" = ["ai"]), ("api_key" = ["ai"])),
    responses(
        (status = 200, description = "What was said", body = Transcription),
        (status = 400, description = "Invalid parameter", body = ErrorEnvelope),
        (status = 404, description = "No such model alias", body = ErrorEnvelope),
        (status = 422, description = "The body is not sound of its declared type, no model of the alias transcribes, or it refused the sound", body = ErrorEnvelope),
        (status = 429, description = "The caller's token budget is spent (`quota_exceeded`, with `resets_at`)", body = ErrorEnvelope),
        (status = 503, description = "No model of the alias could answer", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all)]
async fn transcribe(
    state: AppState,
    caller: Authorized<scope::Ai>,
    Service(ai): Service,
    Query(params): Query<TranscribeParams>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Transcription>, ApiError> {
    let declared = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(sound::normal)
        .unwrap_or_default();
    if !sound::TYPES.contains(&declared.as_str()) {
        return Err(ApiError::UnsupportedMediaType(
            "send the sound as audio/wav, audio/mpeg, audio/flac, audio/ogg, audio/webm or audio/mp4"
                .into(),
        ));
    }
    let alias = params.model.unwrap_or_else(|| "transcribe".to_owned());
    validate::name("model", &alias)?;
    if let Some(language) = &params.language
        && !(language.len() == 2 && language.bytes().all(|b| b.is_ascii_lowercase()))
    {
        return Err(ApiError::invalid_field(
            "language",
            "must be two lowercase letters (ISO 639-1)",
        ));
    }
    if body.len() > MAX_AUDIO_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    // Well-formed bytes of the declared type, as far as any schema can say: a 422.
    if sound::detect(&body) != Some(declared.as_str()) {
        return Err(ApiError::Unprocessable {
            field: Some("body".into()),
            message: format!("the body is not {declared} sound").into(),
        });
    }
    let identity = caller.identity;
    let audio = jarvis_ai::Audio {
        media_type: declared,
        bytes: body.to_vec(),
    };
    let (model, text) = ai
        .transcribe(
            &state.site(),
            Payer::User {
                id: &identity.user_id,
                role: identity.role.as_str(),
            },
            &alias,
            audio,
            params.language,
        )
        .await
        .map_err(service::call_error)?;
    Ok(Json(Transcription { text, alias, model }))
}

jarvis_http::string_schema!(
    /// Text to speak: 1 to 4,096 characters.
    SpeechText,
    || validate::text_schema(
        "1 to 4096 characters, no control characters other than tab and line breaks",
        MAX_SPEECH_CHARS
    )
);

jarvis_http::string_schema!(
    /// A voice's name at the provider: 1 to 64 letters, digits, `_` or `-`.
    Voice,
    || validate::bounded(
        validate::string("1 to 64 letters, digits, '_' or '-'").pattern(Some("^[A-Za-z0-9_-]{1,64}$")),
        1,
        64
    )
);

/// The encoding of spoken text.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpeechFormat {
    /// MP3 (`audio/mpeg`).
    Mp3,
    /// WAV (`audio/wav`).
    Wav,
    /// Opus in Ogg (`audio/ogg`).
    Opus,
    /// FLAC (`audio/flac`).
    Flac,
    /// AAC (`audio/aac`).
    Aac,
}

impl From<SpeechFormat> for jarvis_ai::AudioFormat {
    fn from(format: SpeechFormat) -> Self {
        match format {
            SpeechFormat::Mp3 => Self::Mp3,
            SpeechFormat::Wav => Self::Wav,
            SpeechFormat::Opus => Self::Opus,
            SpeechFormat::Flac => Self::Flac,
            SpeechFormat::Aac => Self::Aac,
        }
    }
}

/// `POST /ai/speech`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeechBody {
    /// What to say.
    #[schema(value_type = SpeechText)]
    pub input: String,
    /// The voice (default `alloy`).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = Voice, nullable = false)]
    pub voice: Option<String>,
    /// The encoding of the answer (default `mp3`).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(nullable = false)]
    pub format: Option<SpeechFormat>,
    /// The model alias (default `speech`).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = validate::ObjectName, nullable = false)]
    pub model: Option<String>,
}

/// Speaks text, within the caller's token budget: the answer is the sound, in the format
/// asked for.
#[utoipa::path(
    post,
    path = "/ai/speech",
    tag = "ai",
    request_body = SpeechBody,
    security(("access_token" = ["ai"]), ("api_key" = ["ai"])),
    responses(
        (status = 200, description = "The sound (`x-jarvis-model` names the provider and model)", content(
            (Vec<u8> = "audio/mpeg"), (Vec<u8> = "audio/wav"), (Vec<u8> = "audio/ogg"),
            (Vec<u8> = "audio/flac"), (Vec<u8> = "audio/aac"))),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        (status = 404, description = "No such model alias", body = ErrorEnvelope),
        (status = 422, description = "No model of the alias speaks, or it refused the text", body = ErrorEnvelope),
        (status = 429, description = "The caller's token budget is spent (`quota_exceeded`, with `resets_at`)", body = ErrorEnvelope),
        (status = 503, description = "No model of the alias could answer", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all)]
async fn speak(
    state: AppState,
    caller: Authorized<scope::Ai>,
    Service(ai): Service,
    Json(body): Json<SpeechBody>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    validate::text("input", &body.input, MAX_SPEECH_CHARS)?;
    let voice = body.voice.unwrap_or_else(|| "alloy".to_owned());
    let voice_ok = (1..=64).contains(&voice.len())
        && voice
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if !voice_ok {
        return Err(ApiError::invalid_field(
            "voice",
            "must be 1 to 64 letters, digits, '_' or '-'",
        ));
    }
    let alias = body.model.unwrap_or_else(|| "speech".to_owned());
    validate::name("model", &alias)?;
    let format: jarvis_ai::AudioFormat =
        body.format.map_or(jarvis_ai::AudioFormat::Mp3, Into::into);
    let identity = caller.identity;
    let request = jarvis_ai::SpeechRequest {
        text: body.input,
        voice,
        format,
    };
    let (model, audio) = ai
        .speak(
            &state.site(),
            Payer::User {
                id: &identity.user_id,
                role: identity.role.as_str(),
            },
            &alias,
            request,
        )
        .await
        .map_err(service::call_error)?;
    let mut response = (
        [(axum::http::header::CONTENT_TYPE, format.media_type())],
        audio.bytes,
    )
        .into_response();
    if let Ok(value) = axum::http::HeaderValue::from_str(&model) {
        response.headers_mut().insert("x-jarvis-model", value);
    }
    Ok(response)
}

/// The deployment's model aliases.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// What answers `smart` when nothing fails, `provider:model`.
    pub default: Option<String>,
    /// Every alias with its targets, in the order they are tried.
    pub aliases: Vec<AliasView>,
}

/// One alias.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AliasView {
    /// The alias.
    pub alias: String,
    /// Its targets in order.
    pub targets: Vec<TargetView>,
}

/// One target of an alias.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TargetView {
    /// The provider.
    pub provider: String,
    /// The model at the provider.
    pub model: String,
    /// `ready`, `degraded` (its circuit breaker is open or probing), `missing_key`,
    /// `not_installed` or `unknown_provider`.
    pub state: String,
}

/// Lists the model aliases, each target and whether it can be used now.
#[utoipa::path(
    get,
    path = "/ai/models",
    tag = "ai",
    security(("access_token" = ["ai"]), ("api_key" = ["ai"])),
    responses(
        (status = 200, description = "The aliases", body = ModelList),
        AuthRejections,
    )
)]
async fn list_models(
    _caller: Authorized<scope::Ai>,
    Service(ai): Service,
) -> Result<Json<ModelList>, ApiError> {
    let registry = ai.registry().await.map_err(service::call_error)?;
    let aliases = registry
        .models()
        .into_iter()
        .map(|a| AliasView {
            alias: a.alias,
            targets: a
                .targets
                .into_iter()
                .map(|t| TargetView {
                    provider: t.provider,
                    model: t.model,
                    state: serde_json::to_value(t.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                })
                .collect(),
        })
        .collect();
    Ok(Json(ModelList {
        default: registry.first_ready("smart"),
        aliases,
    }))
}

/// One period of a budget.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PeriodUsage {
    /// Tokens used in the period, across every replica heard from. Under a budget, what the
    /// budget counts (calls in progress included at their worst case); unlimited, the tokens
    /// of the calls that ended.
    pub used: u64,
    /// The budget; absent when unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// When the period ends, RFC 3339.
    pub resets_at: String,
}

/// The caller's usage.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    /// The current UTC day.
    pub day: PeriodUsage,
    /// The current UTC calendar month.
    pub month: PeriodUsage,
    /// This month per model.
    pub models: Vec<ModelUsageView>,
    /// This month's cost, in millionths of a US dollar.
    pub cost_micros: u64,
}

/// One model's usage this month.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelUsageView {
    /// `provider:model`.
    pub model: String,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in millionths of a US dollar.
    pub cost_micros: u64,
}

/// The caller's token usage and budget for today and this month, and this month's usage and
/// cost per model.
#[utoipa::path(
    get,
    path = "/ai/usage",
    tag = "ai",
    security(("access_token" = ["ai"]), ("api_key" = ["ai"])),
    responses(
        (status = 200, description = "Usage and budgets", body = UsageReport),
        AuthRejections,
    )
)]
async fn get_usage(
    state: AppState,
    caller: Authorized<scope::Ai>,
) -> Result<Json<UsageReport>, ApiError> {
    let identity = caller.identity;
    let store: &dyn Store = state.store.as_ref();
    let now = now();
    let budget = quota::effective_budget(store, &identity.user_id, identity.role.as_str()).await?;
    // One read per period: the budget's counter under a budget, the settled total without.
    let period = async |period: Period, limit: Option<u64>| -> Result<PeriodUsage, ApiError> {
        let (_, end) = period.at(now);
        let used = match limit {
            Some(_) => quota::used(store, &identity.user_id, period, now).await?.0,
            None => usage::tokens(store, &identity.user_id, period, now).await?,
        };
        Ok(PeriodUsage {
            used,
            limit,
            resets_at: jarvis_http::time::rfc3339(end),
        })
    };
    let day = period(Period::Day, budget.per_day).await?;
    let month = period(Period::Month, budget.per_month).await?;
    let models: Vec<ModelUsageView> = usage::month_report(store, &identity.user_id, now)
        .await?
        .into_iter()
        .map(|m| ModelUsageView {
            model: m.model,
            input_tokens: m.input_tokens,
            output_tokens: m.output_tokens,
            cost_micros: m.cost_micros,
        })
        .collect();
    Ok(Json(UsageReport {
        day,
        month,
        cost_micros: models.iter().map(|m| m.cost_micros).sum(),
        models,
    }))
}

/// A token budget. `null` (or absent) is unlimited.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaBody {
    /// Tokens per UTC day: 1 to 10^12, or null for no limit.
    #[serde(default, deserialize_with = "nullable_whole")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 1_000_000_000_000_u64, nullable)]
    pub tokens_per_day: Option<u64>,
    /// Tokens per UTC calendar month: 1 to 10^12, or null for no limit.
    #[serde(default, deserialize_with = "nullable_whole")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 1_000_000_000_000_u64, nullable)]
    pub tokens_per_month: Option<u64>,
}

impl QuotaBody {
    fn budget(&self) -> Result<Budget, ApiError> {
        for (field, value) in [
            ("tokens_per_day", self.tokens_per_day),
            ("tokens_per_month", self.tokens_per_month),
        ] {
            if value.is_some_and(|v| !(1..=MAX_BUDGET).contains(&v)) {
                return Err(ApiError::invalid_field(
                    field,
                    "must be 1 to 1000000000000, or null for no limit",
                ));
            }
        }
        Ok(Budget {
            per_day: self.tokens_per_day,
            per_month: self.tokens_per_month,
        })
    }

    fn of(budget: Budget) -> Self {
        Self {
            tokens_per_day: budget.per_day,
            tokens_per_month: budget.per_month,
        }
    }
}

async fn existing_user(store: &dyn Store, id: &str) -> Result<(), ApiError> {
    if !validate::is_hex(id, 32) {
        return Err(ApiError::invalid_field(
            "id",
            "must be an account id (32 hex digits)",
        ));
    }
    match store.read::<Entity>(&user_key(id)?).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound("no such user".into())),
    }
}

fn role_name(role: &str) -> Result<Role, ApiError> {
    Role::parse(role)
        .ok_or_else(|| ApiError::invalid_field("role", "must be admin, user or viewer"))
}

/// Sets one user's token budget; it takes the place of their role's. Raising it takes
/// effect at once; lowering it, from the next period (rights already granted are kept).
#[utoipa::path(
    put,
    path = "/admin/quotas/users/{id}",
    tag = "ai",
    params(("id" = inline(validate::HexId32), Path, description = "Account id")),
    request_body = QuotaBody,
    security(("access_token" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The user's budget", body = QuotaBody),
        (status = 400, description = "Invalid id or field", body = ErrorEnvelope),
        (status = 404, description = "No such user", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn put_user_quota(
    state: AppState,
    _caller: Authorized<scope::Admin>,
    Path(id): Path<String>,
    Json(body): Json<QuotaBody>,
) -> Result<Json<QuotaBody>, ApiError> {
    let budget = body.budget()?;
    existing_user(state.store.as_ref(), &id).await?;
    quota::set_budget(
        state.store.as_ref(),
        &state.clock,
        &Subject::User(id),
        budget,
    )
    .await?;
    Ok(Json(QuotaBody::of(budget)))
}

/// One user's own token budget (404 when they have none and follow their role's).
#[utoipa::path(
    get,
    path = "/admin/quotas/users/{id}",
    tag = "ai",
    params(("id" = inline(validate::HexId32), Path, description = "Account id")),
    security(("access_token" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The user's budget", body = QuotaBody),
        (status = 400, description = "Invalid id", body = ErrorEnvelope),
        (status = 404, description = "No such user, or no budget of their own", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_user_quota(
    state: AppState,
    _caller: Authorized<scope::Admin>,
    Path(id): Path<String>,
) -> Result<Json<QuotaBody>, ApiError> {
    existing_user(state.store.as_ref(), &id).await?;
    quota::budget_of(state.store.as_ref(), &Subject::User(id))
        .await?
        .map(|b| Json(QuotaBody::of(b)))
        .ok_or_else(|| ApiError::NotFound("this user follows their role's budget".into()))
}

/// Sets the token budget of every user of a role who has none of their own.
#[utoipa::path(
    put,
    path = "/admin/quotas/roles/{role}",
    tag = "ai",
    params(("role" = Role, Path, description = "Role")),
    request_body = QuotaBody,
    security(("access_token" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The role's budget", body = QuotaBody),
        (status = 400, description = "Invalid role or field", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn put_role_quota(
    state: AppState,
    _caller: Authorized<scope::Admin>,
    Path(role): Path<String>,
    Json(body): Json<QuotaBody>,
) -> Result<Json<QuotaBody>, ApiError> {
    let role = role_name(&role)?;
    let budget = body.budget()?;
    let subject = Subject::Role(role.as_str().to_owned());
    quota::set_budget(state.store.as_ref(), &state.clock, &subject, budget).await?;
    Ok(Json(QuotaBody::of(budget)))
}

/// A role's token budget (unlimited when none was set).
#[utoipa::path(
    get,
    path = "/admin/quotas/roles/{role}",
    tag = "ai",
    params(("role" = Role, Path, description = "Role")),
    security(("access_token" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The role's budget", body = QuotaBody),
        (status = 400, description = "Invalid role", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_role_quota(
    state: AppState,
    _caller: Authorized<scope::Admin>,
    Path(role): Path<String>,
) -> Result<Json<QuotaBody>, ApiError> {
    let role = role_name(&role)?;
    let subject = Subject::Role(role.as_str().to_owned());
    let budget = quota::budget_of(state.store.as_ref(), &subject)
        .await?
        .unwrap_or_default();
    Ok(Json(QuotaBody::of(budget)))
}

#[cfg(test)]
mod tests;
