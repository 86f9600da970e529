//! Conversations: what a user and Jarvis say to each other, the replies as resumable
//! generations, the context each reply is given, and what Jarvis remembers about a user.
//!
//! [`Chat`] is the service a host builds once: [`Chat::send`] stores the user's message,
//! fits the conversation into the model's window ([`context`], folding old turns into a
//! running summary), adds the user's most relevant memories ([`memory`]) to the system
//! prompt, and starts the reply as a [`generation`] whose events any reader can follow and
//! resume. The reply is saved as a message whatever happens to its readers. After an
//! exchange, a title is generated for a new conversation and candidate facts are extracted
//! for memory, off the reply's path and on the deployment's account, not the user's budget.
//!
//! Owns conversations, messages, streams and memories; changes when what a conversation
//! keeps or how a reply is built changes. Imports the AI service (`jarvis-ai`), the store
//! and the CRDTs; routes come from the functions above it.
#![deny(missing_docs)]

pub mod attachment;
pub mod context;
pub mod conversation;
pub mod generation;
pub mod ids;
pub mod memory;

use std::sync::Arc;

use base64::Engine;
use futures_util::Stream;
use jarvis_ai::service::{Ai, CallError, CancellationToken, Payer, Site, Streamed};
use jarvis_ai::{ChatRequest, Event, Message, Part, Role, StopReason};
use jarvis_blobs::{Blob, Blobs};
use jarvis_config::ChatConfig;
use jarvis_store::StoreError;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use conversation::{ChatMessage, Conversation, MessageMeta, Speaker, Status, Summary, UsedMemory};
use generation::{ContextInfo, Hub, Recorder, StreamEvent};

/// Why a conversation operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// No such conversation, message, stream or memory (of this user).
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The message cannot fit the model's context window, even alone.
    #[error("the message is longer than the model's context window allows")]
    TooLong,
    /// An attachment is not a PNG, JPEG or WebP image.
    #[error("attachments must be PNG, JPEG or WebP images")]
    NotAnImage,
    /// The blob store failed.
    #[error(transparent)]
    Blobs(jarvis_blobs::BlobError),
    /// The user keeps as many memories as allowed.
    #[error("at most {0} memories are kept; forget some first")]
    Full(usize),
    /// The model call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored data does not read back.
    #[error("stored conversation data does not decode: {0}")]
    Corrupt(String),
}

impl ChatError {
    fn corrupt(err: impl std::fmt::Display) -> Self {
        Self::Corrupt(err.to_string())
    }
}

/// Who is asking.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Their user id.
    pub user: String,
    /// Their role, whose budget applies.
    pub role: String,
}

/// A reply that started.
#[derive(Debug, Clone)]
pub struct Started {
    /// Its stream.
    pub stream_id: Uuid,
    /// The user's message, as stored.
    pub user_message: ChatMessage,
    /// The id the reply's message is saved under.
    pub message_id: Uuid,
}

/// The conversation service of a process.
pub struct Chat {
    ai: Arc<Ai>,
    blobs: Arc<dyn Blobs>,
    site: Site,
    settings: ChatConfig,
    hub: Arc<Hub>,
    tasks: TaskTracker,
}

const TITLE_PROMPT: &str = "You name conversations. Answer with a title of at most six words \
     for the conversation that starts with the user's message below, and nothing else.";

const SUMMARY_PROMPT: &str = "You keep a running summary of a conversation between a user and \
     an assistant. Rewrite the summary so it also covers the new turns: keep names, facts, \
     decisions and open questions; drop pleasantries. Answer with the summary only.";

const EXTRACT_PROMPT: &str = "You pick out lasting facts about the user from one exchange: \
     preferences, circumstances, plans, people and things they care about. Answer with a JSON \
     array of short third-person statements (\"The user lives in Oslo.\"), or [] when there \
     are none. Answer with the array only.";

impl Chat {
    /// The service over `site` (the process's store, without any request's deadline), with
    /// attachments in `blobs`.
    pub fn new(ai: Arc<Ai>, blobs: Arc<dyn Blobs>, site: Site, settings: ChatConfig) -> Self {
        Self {
            ai,
            blobs,
            site,
            settings,
            hub: Arc::default(),
            tasks: TaskTracker::new(),
        }
    }

    /// Where conversations are kept.
    pub fn site(&self) -> &Site {
        &self.site
    }

    /// The settings.
    pub fn settings(&self) -> &ChatConfig {
        &self.settings
    }

    /// The replies being generated in this process.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Waits until every reply and the work after it (titles, memories) started so far has
    /// finished.
    pub async fn settled(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }

    /// Stores `content` as the caller's next message in `conversation` and starts the reply.
    #[tracing::instrument(skip_all, fields(user = %caller.user, conversation = %conversation_id))]
    pub async fn send(
        self: &Arc<Self>,
        caller: &Caller,
        conversation_id: &Uuid,
        content: String,
        images: Vec<Vec<u8>>,
    ) -> Result<Started, ChatError> {
        // Boxed: the reply's future is large, and callers nest it in their own.
        Box::pin(self.send_with_sources(caller, conversation_id, content, images, Vec::new())).await
    }

    /// [`send`](Self::send), the reply also given `sources`: passages of the user's
    /// documents to answer from and cite by number; they are kept with the reply.
    pub async fn send_with_sources(
        self: &Arc<Self>,
        caller: &Caller,
        conversation_id: &Uuid,
        content: String,
        images: Vec<Vec<u8>>,
        sources: Vec<conversation::GivenSource>,
    ) -> Result<Started, ChatError> {
        let conversation = conversation::get(&self.site, &caller.user, conversation_id).await?;
        let mut attachments = Vec::with_capacity(images.len());
        let mut loaded = Vec::with_capacity(images.len());
        for bytes in images {
            let media_type = attachment::detect(&bytes).ok_or(ChatError::NotAnImage)?;
            attachments.push(attachment::Attachment {
                id: Uuid::now_v7(),
                media_type: media_type.to_owned(),
                bytes: bytes.len() as u64,
            });
            loaded.push(Blob {
                media_type: media_type.to_owned(),
                bytes,
            });
        }
        let alias = conversation.alias().to_owned();
        let registry = self.ai.registry().await?;
        let target = registry
            .first_ready(&alias)
            .ok_or_else(|| CallError::UnknownAlias(alias.clone()))?;
        let window = self
            .settings
            .context_tokens
            .unwrap_or_else(|| context::window(&target));

        let memories = self.recall(&caller.user, &content).await;
        let user_message = ChatMessage {
            id: ids::message_id(),
            speaker: Speaker::User,
            content,
            created_ms: self.site.clock.now().wall_ms,
            meta: MessageMeta {
                attachments: attachments.clone(),
                ..MessageMeta::default()
            },
        };
        let exact = |text: &str| registry.count_tokens(&alias, text);
        let counter = context::Counter::exact(&exact);
        let (conversation, history) = self
            .fit(
                caller,
                conversation,
                (&memories, &sources),
                &user_message,
                window,
                counter,
            )
            .await?;
        let system = system_prompt(&conversation, &memories, &sources);
        let prompt_tokens =
            counter.tokens(&system) + history.iter().map(|m| counter.message(m)).sum::<u64>();
        let mut messages = Vec::with_capacity(history.len());
        for message in &history {
            let own: Vec<Blob> = if message.id == user_message.id {
                loaded.clone()
            } else {
                self.images_of(&caller.user, conversation_id, message).await
            };
            messages.push(to_model_message(message, &own));
        }
        let request = ChatRequest {
            model: alias.clone(),
            system: (!system.is_empty()).then_some(system),
            messages,
            max_output_tokens: u32::try_from(self.settings.reply_tokens).ok(),
            ..ChatRequest::default()
        };
        // A token is at least one byte: the bytes bound the prompt's tokens.
        let prompt_bytes: u64 = request.system.as_ref().map_or(0, |s| s.len() as u64)
            + history
                .iter()
                .map(|m| m.content.len() as u64 + context::MESSAGE_OVERHEAD)
                .sum::<u64>();
        let cancel = CancellationToken::new();
        let streamed = self
            .ai
            .stream(
                &self.site,
                Payer::User {
                    id: &caller.user,
                    role: &caller.role,
                },
                &alias,
                request,
                prompt_bytes + self.settings.reply_tokens,
                cancel.clone(),
            )
            .await?;

        for (attachment, blob) in attachments.iter().zip(&loaded) {
            let key = attachment::key(&caller.user, conversation_id, &attachment.id)
                .map_err(ChatError::Blobs)?;
            self.blobs.put(&key, blob).await.map_err(ChatError::Blobs)?;
        }
        conversation::put_message(&self.site, &caller.user, conversation_id, &user_message).await?;
        let stream_id = ids::stream_id();
        let message_id = ids::message_id();
        let mut recorder = Recorder::open(
            self.site.clone(),
            Arc::clone(&self.hub),
            &caller.user,
            stream_id,
            self.settings.stream_retention,
            cancel,
        )
        .await?;
        let used: Vec<UsedMemory> = memories;
        let start = StreamEvent::Start {
            stream_id,
            conversation_id: *conversation_id,
            user_message_id: user_message.id,
            message_id,
            model: streamed.model.clone(),
            memories: used.clone(),
            context: ContextInfo {
                window_tokens: window,
                prompt_tokens,
                messages: history.len(),
                summarized: conversation.summary.as_ref().map_or(0, |s| s.messages),
            },
        };
        recorder.push(start).await?;
        let reply = Reply {
            caller: caller.clone(),
            conversation: *conversation_id,
            first_exchange: !conversation.titled && history.len() == 1,
            message_id,
            stream_id,
            used,
            sources,
            question: user_message.content.clone(),
        };
        let chat = Arc::clone(self);
        self.tasks
            .spawn(async move { chat.generate(reply, streamed, recorder).await });
        Ok(Started {
            stream_id,
            user_message,
            message_id,
        })
    }

    /// The images `message` carries, from the blob store; those that cannot be read are
    /// left out (and logged) rather than failing the reply.
    async fn images_of(&self, user: &str, conversation: &Uuid, message: &ChatMessage) -> Vec<Blob> {
        let mut images = Vec::new();
        for attachment in &message.meta.attachments {
            let found = match attachment::key(user, conversation, &attachment.id) {
                Ok(key) => self.blobs.get(&key).await,
                Err(err) => Err(err),
            };
            match found {
                Ok(Some(blob)) => images.push(blob),
                Ok(None) => tracing::warn!(attachment = %attachment.id, "an attachment is missing"),
                Err(err) => tracing::warn!(error = %err, "an attachment could not be read"),
            }
        }
        images
    }

    /// The attachment `id` of `user`'s `conversation`.
    pub async fn attachment(
        &self,
        user: &str,
        conversation: &Uuid,
        id: &Uuid,
    ) -> Result<Blob, ChatError> {
        conversation::get(&self.site, user, conversation).await?;
        let key = attachment::key(user, conversation, id)
            .map_err(|_| ChatError::NotFound("attachment"))?;
        self.blobs
            .get(&key)
            .await
            .map_err(ChatError::Blobs)?
            .ok_or(ChatError::NotFound("attachment"))
    }

    /// Deletes a conversation, its messages and their attachments.
    pub async fn delete(&self, user: &str, id: &Uuid) -> Result<(), ChatError> {
        let attachments = conversation::delete(&self.site, user, id).await?;
        for attachment in attachments {
            let deleted = match attachment::key(user, id, &attachment.id) {
                Ok(key) => self.blobs.delete(&key).await,
                Err(err) => Err(err),
            };
            if let Err(err) = deleted {
                tracing::warn!(error = %err, "an attachment of a deleted conversation stays behind");
            }
        }
        Ok(())
    }

    /// The memories of `user` most relevant to `text`, when memories and embeddings are
    /// available; none otherwise (a reply does not fail for want of memories).
    async fn recall(&self, user: &str, text: &str) -> Vec<UsedMemory> {
        let memories = match memory::all(&self.site, user).await {
            Ok(memories) if !memories.is_empty() => memories,
            Ok(_) => return Vec::new(),
            Err(err) => {
                tracing::warn!(error = %err, "memories could not be read");
                return Vec::new();
            }
        };
        let Some((model, query)) = self.embed(text).await else {
            return Vec::new();
        };
        memory::most_similar(&memories, &model, &query, self.settings.memory_top_k)
            .into_iter()
            .map(|(m, score)| UsedMemory {
                id: m.id,
                text: m.text.clone(),
                score,
            })
            .collect()
    }

    /// `text` embedded by the memory model, on the deployment's account.
    pub async fn embed(&self, text: &str) -> Option<(String, Vec<f32>)> {
        let alias = &self.settings.embed_model;
        match self
            .ai
            .embed(&self.site, Payer::Deployment, alias, vec![text.to_owned()])
            .await
        {
            Ok(mut embedded) => embedded.vectors.pop().map(|v| (embedded.model, v)),
            Err(err) => {
                tracing::warn!(error = %err, "a memory embedding failed");
                None
            }
        }
    }

    /// The messages to send with `new`, oldest first: the history after the running
    /// summary, with the oldest turns folded into a new summary when they do not fit.
    async fn fit(
        &self,
        caller: &Caller,
        mut conversation: Conversation,
        (memories, sources): (&[UsedMemory], &[conversation::GivenSource]),
        new: &ChatMessage,
        window: u64,
        counter: context::Counter<'_>,
    ) -> Result<(Conversation, Vec<ChatMessage>), ChatError> {
        let through = conversation.summary.as_ref().map(|s| s.through);
        let mut history =
            conversation::history(&self.site, &caller.user, &conversation.id, through.as_ref())
                .await?;
        history.push(new.clone());
        let budget = |conversation: &Conversation| {
            let system = counter.tokens(&system_prompt(conversation, memories, sources));
            window.saturating_sub(self.settings.reply_tokens + system)
        };
        let plan =
            context::plan(&history, budget(&conversation), counter).ok_or(ChatError::TooLong)?;
        if plan.fold == 0 {
            return Ok((conversation, history));
        }
        let folded: Vec<ChatMessage> = history.drain(..plan.fold).collect();
        match self.summarize(&conversation, &folded, window).await {
            Some(text) => {
                let summary = Summary {
                    text,
                    through: folded.last().map_or(new.id, |m| m.id),
                    messages: conversation.summary.as_ref().map_or(0, |s| s.messages)
                        + folded.len() as u64,
                    updated_ms: self.site.clock.now().wall_ms,
                };
                conversation::set_summary(&self.site, &caller.user, &conversation.id, &summary)
                    .await?;
                conversation.summary = Some(summary);
            }
            None => {
                tracing::warn!(
                    folded = folded.len(),
                    "the summary could not be written: older turns are left out of this reply"
                );
            }
        }
        // The summary itself takes room: keep folding whole turns until what is left fits.
        while context::plan(&history, budget(&conversation), counter).is_none_or(|p| p.fold > 0)
            && history.len() > 1
        {
            history.remove(0);
        }
        Ok((conversation, history))
    }

    /// A new running summary: the previous one and `turns`, summarized by the helper model
    /// on the deployment's account, at most a quarter of the window.
    async fn summarize(
        &self,
        conversation: &Conversation,
        turns: &[ChatMessage],
        window: u64,
    ) -> Option<String> {
        let limit = (window / 4).max(32);
        let mut text = String::new();
        if let Some(summary) = &conversation.summary {
            text.push_str("Summary so far:\n");
            text.push_str(&summary.text);
            text.push_str("\n\nNew turns:\n");
        }
        for turn in turns {
            let who = match turn.speaker {
                Speaker::User => "User",
                Speaker::Assistant => "Assistant",
            };
            text.push_str(&format!("{who}: {}\n", turn.content));
        }
        // The summarizer's own prompt must fit: keep the newest part of what it reads.
        let room = usize::try_from((window.saturating_sub(limit + 64)) * 3).unwrap_or(usize::MAX);
        let text = tail_chars(&text, room);
        let reply = self.helper(SUMMARY_PROMPT, text.to_owned(), limit).await?;
        let summary = clip(&reply, usize::try_from(limit * 3).unwrap_or(usize::MAX));
        (!summary.is_empty()).then_some(summary)
    }

    /// One reply of the helper model on the deployment's account.
    async fn helper(&self, system: &str, text: String, max_tokens: u64) -> Option<String> {
        let alias = &self.settings.helper_model;
        let request = ChatRequest {
            model: alias.clone(),
            system: Some(system.to_owned()),
            messages: vec![Message::user(text)],
            max_output_tokens: u32::try_from(max_tokens).ok(),
            ..ChatRequest::default()
        };
        match self
            .ai
            .complete(&self.site, Payer::Deployment, alias, request, 0)
            .await
        {
            Ok(done) => Some(done.reply.text),
            Err(err) => {
                tracing::warn!(error = %err, alias = %alias, "a helper call failed");
                None
            }
        }
    }

    /// Runs a reply to its end: its events to the recorder, then the message saved, then
    /// the final event; then the work after an exchange.
    async fn generate(
        self: Arc<Self>,
        reply: Reply,
        mut streamed: Streamed,
        mut recorder: Recorder,
    ) {
        let mut text = String::new();
        let mut usage = None;
        let ending = loop {
            let next = match recorder.flush_due() {
                Some(due) => tokio::select! {
                    event = streamed.next() => Some(event),
                    () = tokio::time::sleep_until(due) => None,
                },
                None => Some(streamed.next().await),
            };
            if recorder.cancel_requested().await {
                break Ending::Cancelled;
            }
            let Some(event) = next else {
                if let Err(err) = recorder.flush().await {
                    tracing::warn!(error = %err, "stream events could not be written");
                }
                continue;
            };
            let event = match event {
                None => break Ending::Cancelled,
                Some(Event::TextDelta { text: delta }) => {
                    text.push_str(&delta);
                    StreamEvent::Delta { text: delta }
                }
                Some(Event::ToolCallDelta {
                    index,
                    id,
                    name,
                    arguments,
                }) => StreamEvent::ToolCall {
                    index,
                    id,
                    name,
                    arguments,
                },
                Some(Event::Usage(latest)) => {
                    usage = Some((latest.input_tokens, latest.output_tokens));
                    StreamEvent::Usage {
                        input_tokens: latest.input_tokens,
                        output_tokens: latest.output_tokens,
                    }
                }
                Some(Event::Done { stop_reason }) => break Ending::Done(stop_reason),
                Some(Event::Error(err)) => break Ending::Failed(err.to_string()),
            };
            if let Err(err) = recorder.push(event).await {
                tracing::warn!(error = %err, "a stream event could not be written");
            }
        };
        let model = streamed.model.clone();
        let (status, stop_reason, error) = match &ending {
            Ending::Done(reason) => (Status::Complete, Some(reason.name()), None),
            Ending::Cancelled => (Status::Cancelled, None, None),
            Ending::Failed(message) => (Status::Failed, None, Some(message.clone())),
        };
        let cost_micros = match ending {
            Ending::Done(_) => streamed.cost().await,
            _ => 0,
        };
        let message = ChatMessage {
            id: reply.message_id,
            speaker: Speaker::Assistant,
            content: text,
            created_ms: self.site.clock.now().wall_ms,
            meta: MessageMeta {
                model: Some(model),
                status: Some(status),
                stop_reason: stop_reason.map(str::to_owned),
                stream_id: Some(reply.stream_id),
                usage,
                cost_micros,
                memories: reply.used.clone(),
                error: error.clone(),
                attachments: Vec::new(),
                sources: reply.sources.clone(),
            },
        };
        let saved = self.save(&reply, &message).await;
        let last = match (&saved, status, error) {
            (Err(err), _, _) => StreamEvent::Error {
                code: "unavailable".into(),
                message: format!("the reply could not be saved: {err}"),
            },
            (Ok(()), Status::Complete, _) => StreamEvent::Done {
                stop_reason: stop_reason.unwrap_or("end_turn").to_owned(),
                message_id: reply.message_id,
                usage: usage.map(|(input_tokens, output_tokens)| generation::TokenUsage {
                    input_tokens,
                    output_tokens,
                }),
            },
            (Ok(()), Status::Cancelled, _) => StreamEvent::Cancelled {
                message_id: reply.message_id,
            },
            (Ok(()), Status::Failed, error) => StreamEvent::Error {
                code: "unavailable".into(),
                message: error.unwrap_or_default(),
            },
        };
        if let Err(err) = recorder.push(last).await {
            tracing::error!(error = %err, "the final stream event could not be written");
        }
        drop(recorder);
        if saved.is_ok() && status == Status::Complete {
            self.after_exchange(&reply, &message.content).await;
        }
    }

    /// Saves the reply's message, retrying while the store is briefly unavailable: a reply
    /// that was generated is not lost to a passing fault.
    async fn save(&self, reply: &Reply, message: &ChatMessage) -> Result<(), ChatError> {
        let mut pause = std::time::Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match conversation::put_message(
                &self.site,
                &reply.caller.user,
                &reply.conversation,
                message,
            )
            .await
            {
                Ok(()) => return Ok(()),
                Err(err) if attempt >= 5 => {
                    tracing::error!(error = %err, "a reply could not be saved");
                    return Err(err);
                }
                Err(err) => {
                    tracing::warn!(error = %err, attempt, "saving a reply failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
    }

    /// After a complete exchange: a title for a new conversation, then memories.
    async fn after_exchange(&self, reply: &Reply, answer: &str) {
        let user = &reply.caller.user;
        if reply.first_exchange {
            let title = self.helper(TITLE_PROMPT, reply.question.clone(), 24).await;
            if let Some(title) = title.map(|t| clean_title(&t)).filter(|t| !t.is_empty())
                && let Err(err) =
                    conversation::set_generated_title(&self.site, user, &reply.conversation, &title)
                        .await
            {
                tracing::warn!(error = %err, "a generated title could not be saved");
            }
        }
        match memory::learning(&self.site, user).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::warn!(error = %err, "memory settings could not be read");
                return;
            }
        }
        let exchange = format!("User: {}\nAssistant: {answer}", reply.question);
        let Some(found) = self.helper(EXTRACT_PROMPT, exchange, 256).await else {
            return;
        };
        for candidate in memory::parse_candidates(&found) {
            if let Err(err) = self
                .remember(user, &candidate, Some(reply.conversation))
                .await
            {
                tracing::warn!(error = %err, "a memory could not be kept");
            }
        }
    }

    /// Keeps `text` as a memory of `user` unless an equivalent one is kept; answers the new
    /// memory, or the kept one that already says it.
    pub async fn remember(
        &self,
        user: &str,
        text: &str,
        conversation: Option<Uuid>,
    ) -> Result<Remembered, ChatError> {
        let kept = memory::all(&self.site, user).await?;
        let vector = self.embed(text).await;
        let (model, query) = match &vector {
            Some((model, query)) => (model.as_str(), Some(query.as_slice())),
            None => ("", None),
        };
        if let Some(same) = memory::known(&kept, text, model, query) {
            return Ok(Remembered::Known(same.clone()));
        }
        memory::add(&self.site, user, text, conversation, vector)
            .await
            .map(Remembered::New)
    }

    /// The events of `stream` after `after`, each once, ending with the final one.
    pub async fn follow(
        &self,
        user: &str,
        stream: Uuid,
        after: u64,
    ) -> Result<impl Stream<Item = (u64, StreamEvent)> + Send + 'static, ChatError> {
        generation::follow(self.site.clone(), &self.hub, user, stream, after).await
    }

    /// Asks the reply on `stream` to stop; answers whether it had already ended.
    pub async fn cancel(&self, user: &str, stream: &Uuid) -> Result<bool, ChatError> {
        generation::cancel(&self.site, &self.hub, user, stream).await
    }
}

/// What [`Chat::remember`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Remembered {
    /// Kept a new memory.
    New(memory::Memory),
    /// An equivalent memory was already kept.
    Known(memory::Memory),
}

/// A reply under way, and what the work after it needs.
struct Reply {
    caller: Caller,
    conversation: Uuid,
    first_exchange: bool,
    message_id: Uuid,
    stream_id: Uuid,
    used: Vec<UsedMemory>,
    sources: Vec<conversation::GivenSource>,
    question: String,
}

enum Ending {
    Done(StopReason),
    Cancelled,
    Failed(String),
}

/// The system prompt of a reply: the conversation's own, the memories, the sources from
/// the user's documents, the summary.
fn system_prompt(
    conversation: &Conversation,
    memories: &[UsedMemory],
    sources: &[conversation::GivenSource],
) -> String {
    let mut parts = Vec::new();
    if let Some(system) = &conversation.system {
        parts.push(system.clone());
    }
    if !sources.is_empty() {
        let listed: Vec<String> = sources
            .iter()
            .map(|s| {
                let label = s.title.clone().unwrap_or_else(|| s.name.clone());
                let section = s.section.clone().filter(|section| *section != label);
                let mut place = vec![label];
                place.extend(s.page.map(|p| format!("page {p}")));
                place.extend(section);
                format!("[{}] ({}): {}", s.marker, place.join(", "), s.text)
            })
            .collect();
        parts.push(format!(
            "Passages from the user's documents. Answer from them where they apply and cite \
             each one you use by its number in brackets, like [1]:\n\n{}",
            listed.join("\n\n")
        ));
    }
    if !memories.is_empty() {
        let facts: Vec<String> = memories.iter().map(|m| format!("- {}", m.text)).collect();
        parts.push(format!(
            "What you know about the user from earlier conversations:\n{}",
            facts.join("\n")
        ));
    }
    if let Some(summary) = &conversation.summary {
        parts.push(format!(
            "Summary of the earlier part of this conversation:\n{}",
            summary.text
        ));
    }
    parts.join("\n\n")
}

fn to_model_message(message: &ChatMessage, images: &[Blob]) -> Message {
    let mut parts: Vec<Part> = images
        .iter()
        .map(|image| Part::Image {
            media_type: image.media_type.clone(),
            data: base64::engine::general_purpose::STANDARD.encode(&image.bytes),
        })
        .collect();
    parts.push(Part::Text {
        text: message.content.clone(),
    });
    Message {
        role: match message.speaker {
            Speaker::User => Role::User,
            Speaker::Assistant => Role::Assistant,
        },
        parts,
    }
}

/// The last `max_bytes` bytes of `text` at most, cut at a character boundary.
fn tail_chars(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut start = text.len() - max_bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// `text` trimmed, at most `max_bytes` bytes, cut at a character boundary.
fn clip(text: &str, max_bytes: usize) -> String {
    let text = text.trim();
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim_end().to_owned()
}

/// A model's title cleaned: its first line, without quotes or a final period, no control
/// characters, at most 80 characters.
fn clean_title(raw: &str) -> String {
    let line = raw
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let title: String = line
        .trim()
        .trim_matches(|c| matches!(c, '"' | '\'' | '*' | '#'))
        .trim_end_matches('.')
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    title.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_title_is_one_clean_line() {
        assert_eq!(clean_title("\n\"Trip to Oslo.\"\nmore"), "Trip to Oslo");
        assert_eq!(clean_title(&"x".repeat(200)).len(), 80);
    }

    #[test]
    fn cutting_text_respects_character_boundaries() {
        assert_eq!(tail_chars("héllo", 4), "llo");
        assert_eq!(clip("  héllo  ", 2), "h");
    }
}
