//! Conversations and their messages, as documents.
//!
//! A conversation is one [`Record`] in its owner's partition (`chat#<user>`, sort key
//! `conv#<id>`): title, system prompt, model alias and the running summary are fields, each
//! last-writer-wins. Its messages are one record each in a partition of their own
//! (`chat#<user>#<conversation>`, sort key `msg#<id>`), so a conversation never grows into
//! one large document, and two devices or replicas adding messages at once both keep
//! theirs. Deleting a conversation deletes every message it has (an observed remove that
//! also drops the content).

use jarvis_ai::service::Site;
use jarvis_crdt::{Crdt, Record};
use jarvis_store::{Document, Key, Page, StoreError, encode_cursor};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ChatError;
use crate::ids;

const CONVERSATION_PREFIX: &str = "conv#";
const MESSAGE_PREFIX: &str = "msg#";
/// Most documents one listing with a title search examines (a page may come back short,
/// with a cursor to go on from).
pub const SCAN_BUDGET: usize = 1_000;
/// Most messages of a conversation read to build a reply's context (those after the
/// running summary).
pub const MAX_HISTORY: usize = 2_000;

/// The partition of a user's conversations.
pub fn partition(user: &str) -> String {
    format!("chat#{user}")
}

/// The key of a conversation.
pub fn key(user: &str, id: &Uuid) -> Result<Key, StoreError> {
    Key::new(
        partition(user),
        format!("{CONVERSATION_PREFIX}{}", id.hyphenated()),
    )
}

/// The partition of a conversation's messages.
pub fn messages_partition(user: &str, conversation: &Uuid) -> String {
    format!("chat#{user}#{}", conversation.hyphenated())
}

fn message_key(user: &str, conversation: &Uuid, id: &Uuid) -> Result<Key, StoreError> {
    Key::new(
        messages_partition(user, conversation),
        format!("{MESSAGE_PREFIX}{}", id.hyphenated()),
    )
}

/// A conversation's running summary: what the turns up to `through` said, folded so the
/// rest fits the model's context window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The summary.
    pub text: String,
    /// The last message it covers.
    pub through: Uuid,
    /// How many messages it covers.
    pub messages: u64,
    /// When it was last written (ms since the epoch).
    pub updated_ms: u64,
}

/// A conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// Its id.
    pub id: Uuid,
    /// Its title, once set or generated.
    pub title: Option<String>,
    /// Its system prompt.
    pub system: Option<String>,
    /// The model alias that answers in it (`smart` when unset).
    pub model: Option<String>,
    /// When it was created (ms since the epoch).
    pub created_ms: u64,
    /// When a field last changed (ms since the epoch).
    pub updated_ms: u64,
    /// The running summary, once turns were folded.
    pub summary: Option<Summary>,
    /// Whether a title was generated or set (so none is generated again).
    pub titled: bool,
}

/// Fields of a conversation's record.
mod field {
    pub const TITLE: &str = "title";
    pub const SYSTEM: &str = "system";
    pub const MODEL: &str = "model";
    pub const CREATED: &str = "created_at";
    pub const SUMMARY: &str = "summary";
    pub const TITLED: &str = "titled";
}

impl Conversation {
    /// The conversation stored as `record`, when it is live.
    pub fn from_record(id: Uuid, record: &Record) -> Result<Option<Self>, ChatError> {
        if !record.is_live() {
            return Ok(None);
        }
        let text = |name: &str| {
            record
                .get(name)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let summary = match record.get(field::SUMMARY).filter(|v| !v.is_empty()) {
            Some(json) => Some(serde_json::from_str(json).map_err(ChatError::corrupt)?),
            None => None,
        };
        Ok(Some(Self {
            id,
            title: text(field::TITLE),
            system: text(field::SYSTEM),
            model: text(field::MODEL),
            created_ms: record
                .get(field::CREATED)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| ids::conversation_created_ms(&id)),
            updated_ms: record.latest_stamp().map_or(0, |s| s.wall_ms),
            summary,
            titled: record.get(field::TITLED).is_some_and(|v| v == "1"),
        }))
    }

    /// The model alias answering in the conversation.
    pub fn alias(&self) -> &str {
        self.model.as_deref().unwrap_or("smart")
    }
}

/// What a new conversation starts with.
#[derive(Debug, Clone, Default)]
pub struct NewConversation {
    /// Its title.
    pub title: Option<String>,
    /// Its system prompt.
    pub system: Option<String>,
    /// Its model alias.
    pub model: Option<String>,
}

/// A change to a conversation: `Some(None)` clears a field.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// New title.
    pub title: Option<Option<String>>,
    /// New system prompt.
    pub system: Option<Option<String>>,
    /// New model alias.
    pub model: Option<Option<String>>,
}

/// Creates a conversation.
pub async fn create(
    site: &Site,
    user: &str,
    new: NewConversation,
) -> Result<Conversation, ChatError> {
    let now = site.clock.now();
    let id = ids::conversation_id(&now);
    let key = key(user, &id)?;
    let mut fields = vec![(field::CREATED.to_owned(), now.wall_ms.to_string())];
    for (name, value) in [
        (field::TITLE, &new.title),
        (field::SYSTEM, &new.system),
        (field::MODEL, &new.model),
    ] {
        if let Some(value) = value {
            fields.push((name.to_owned(), value.clone()));
        }
    }
    if new.title.is_some() {
        fields.push((field::TITLED.to_owned(), "1".to_owned()));
    }
    let (replica, clock) = (site.replica, &site.clock);
    let doc = site
        .store
        .update(&key, |record: &mut Record| {
            record.create(replica, clock.now(), fields.clone())
        })
        .await?;
    Conversation::from_record(id, &doc.state)?.ok_or(ChatError::NotFound("conversation"))
}

/// The live conversation `id` of `user`.
pub async fn get(site: &Site, user: &str, id: &Uuid) -> Result<Conversation, ChatError> {
    let doc = site.store.read::<Record>(&key(user, id)?).await?;
    doc.and_then(|doc| Conversation::from_record(*id, &doc.state).transpose())
        .transpose()?
        .ok_or(ChatError::NotFound("conversation"))
}

/// A page of `user`'s conversations, newest first; with `search`, only those whose title
/// contains it (case-insensitively), examining at most [`SCAN_BUDGET`] conversations.
pub async fn list(
    site: &Site,
    user: &str,
    search: Option<&str>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Conversation>, ChatError> {
    let needle = search.map(str::to_lowercase);
    let partition = partition(user);
    let mut items = Vec::new();
    let mut cursor = cursor.map(str::to_owned);
    let mut examined = 0;
    loop {
        let page = site
            .store
            .list_documents::<Record>(
                &partition,
                Some(CONVERSATION_PREFIX),
                cursor.as_deref(),
                limit,
            )
            .await?;
        let count = page.items.len();
        for (i, doc) in page.items.into_iter().enumerate() {
            let Some(conversation) = conversation_of(&doc)? else {
                continue;
            };
            let wanted = needle.as_ref().is_none_or(|needle| {
                conversation
                    .title
                    .as_ref()
                    .is_some_and(|t| t.to_lowercase().contains(needle))
            });
            if wanted {
                items.push(conversation);
            }
            if items.len() == limit {
                let last_of_all = page.next_cursor.is_none() && i + 1 == count;
                let next_cursor = (!last_of_all).then(|| encode_cursor(doc.key.sort()));
                return Ok(Page { items, next_cursor });
            }
        }
        examined += count;
        match page.next_cursor {
            Some(next) if examined >= SCAN_BUDGET => {
                return Ok(Page {
                    items,
                    next_cursor: Some(next),
                });
            }
            Some(next) => cursor = Some(next),
            None => {
                return Ok(Page {
                    items,
                    next_cursor: None,
                });
            }
        }
    }
}

fn conversation_of(doc: &Document<Record>) -> Result<Option<Conversation>, ChatError> {
    let id = doc
        .key
        .sort()
        .strip_prefix(CONVERSATION_PREFIX)
        .and_then(|id| Uuid::try_parse(id).ok());
    match id {
        Some(id) => Conversation::from_record(id, &doc.state),
        None => Ok(None),
    }
}

/// Applies `change` to a live conversation; each field merges on its own.
pub async fn update(
    site: &Site,
    user: &str,
    id: &Uuid,
    change: &Change,
) -> Result<Conversation, ChatError> {
    get(site, user, id).await?;
    let clock = &site.clock;
    let doc = site
        .store
        .update(&key(user, id)?, |record: &mut Record| {
            let mut delta = Record::new();
            for (name, value) in [
                (field::TITLE, &change.title),
                (field::SYSTEM, &change.system),
                (field::MODEL, &change.model),
            ] {
                let Some(value) = value else { continue };
                let stamp = clock.stamp_after(record.stamp(name));
                delta.join(match value {
                    Some(value) => record.set(name.to_owned(), stamp, value.clone()),
                    None => record.unset(name.to_owned(), stamp),
                });
            }
            if change.title.is_some() {
                let stamp = clock.stamp_after(record.stamp(field::TITLED));
                delta.join(record.set(field::TITLED.to_owned(), stamp, "1".to_owned()));
            }
            delta
        })
        .await?;
    Conversation::from_record(*id, &doc.state)?.ok_or(ChatError::NotFound("conversation"))
}

/// Sets a generated title, unless a title was set or generated meanwhile.
pub async fn set_generated_title(
    site: &Site,
    user: &str,
    id: &Uuid,
    title: &str,
) -> Result<(), ChatError> {
    let clock = &site.clock;
    site.store
        .update(&key(user, id)?, |record: &mut Record| {
            if !record.is_live() || record.get(field::TITLED).is_some() {
                return Record::new();
            }
            let mut delta = record.set(
                field::TITLE.to_owned(),
                clock.stamp_after(record.stamp(field::TITLE)),
                title.to_owned(),
            );
            delta.join(record.set(
                field::TITLED.to_owned(),
                clock.stamp_after(record.stamp(field::TITLED)),
                "1".to_owned(),
            ));
            delta
        })
        .await?;
    Ok(())
}

/// Stores a new running summary, unless one covering more messages is already there.
pub async fn set_summary(
    site: &Site,
    user: &str,
    id: &Uuid,
    summary: &Summary,
) -> Result<(), ChatError> {
    let json = serde_json::to_string(summary).map_err(ChatError::corrupt)?;
    let clock = &site.clock;
    site.store
        .update(&key(user, id)?, |record: &mut Record| {
            let newer = record
                .get(field::SUMMARY)
                .and_then(|s| serde_json::from_str::<Summary>(s).ok())
                .is_some_and(|stored| stored.through >= summary.through);
            if !record.is_live() || newer {
                return Record::new();
            }
            let stamp = clock.stamp_after(record.stamp(field::SUMMARY));
            record.set(field::SUMMARY.to_owned(), stamp, json.clone())
        })
        .await?;
    Ok(())
}

/// Deletes a conversation and every message it has; answers the attachments its messages
/// referred to, for the caller to delete from the blob store.
pub async fn delete(
    site: &Site,
    user: &str,
    id: &Uuid,
) -> Result<Vec<crate::attachment::Attachment>, ChatError> {
    get(site, user, id).await?;
    let clock = &site.clock;
    let erase = |record: &mut Record| {
        if !record.is_live() {
            return Record::new();
        }
        let stamp = clock.stamp_after(record.latest_stamp());
        record.delete(stamp)
    };
    site.store.update(&key(user, id)?, erase).await?;
    let partition = messages_partition(user, id);
    let mut cursor = None;
    let mut attachments = Vec::new();
    loop {
        let page = site
            .store
            .list_documents::<Record>(&partition, Some(MESSAGE_PREFIX), cursor.as_deref(), 100)
            .await?;
        for doc in &page.items {
            if let Ok(Some(message)) = message_of(doc) {
                attachments.extend(message.meta.attachments);
            }
            if doc.state.is_live() {
                site.store.update(&doc.key, erase).await?;
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(attachments),
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    /// The user.
    User,
    /// The model.
    Assistant,
}

/// How an assistant message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The model finished its reply.
    Complete,
    /// The reply was cancelled; the text is what was generated until then.
    Cancelled,
    /// The reply failed; the text is what was generated until then.
    Failed,
}

/// A memory a reply was given, and how close it was to the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsedMemory {
    /// The memory's id.
    pub id: Uuid,
    /// Its text when it was used.
    pub text: String,
    /// Cosine similarity to the message, -1 to 1.
    pub score: f32,
}

/// A passage of the user's documents a reply was given to answer from, numbered as the
/// reply cites it (`[1]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GivenSource {
    /// Its number in the reply's sources.
    pub marker: u32,
    /// Its document.
    pub document: Uuid,
    /// The document's name.
    pub name: String,
    /// The document's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its page, for paged formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// The headings of its section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// The passage.
    pub text: String,
}

/// What is known of how a message came about: kept as one JSON field (its golden form is
/// in this crate's tests).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// `provider:model` that wrote an assistant message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How an assistant message ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Why it ended: `end_turn`, `max_tokens`…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// The stream the reply was generated on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<Uuid>,
    /// Tokens of the prompt and of the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<(u64, u64)>,
    /// What the reply cost, in millionths of a dollar.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cost_micros: u64,
    /// The memories the reply was given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memories: Vec<UsedMemory>,
    /// Why a failed reply failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The images a user's message carries (kept in the blob store).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<crate::attachment::Attachment>,
    /// The passages of the user's documents the reply was given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<GivenSource>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// Its id (time-ordered).
    pub id: Uuid,
    /// Who wrote it.
    pub speaker: Speaker,
    /// What it says.
    pub content: String,
    /// When it was written (ms since the epoch).
    pub created_ms: u64,
    /// How it came about.
    pub meta: MessageMeta,
}

/// Fields of a message's record.
mod message_field {
    pub const ROLE: &str = "role";
    pub const CONTENT: &str = "content";
    pub const CREATED: &str = "created_at";
    pub const META: &str = "meta";
}

impl ChatMessage {
    /// The record fields this message is stored as.
    pub fn fields(&self) -> Result<Vec<(String, String)>, ChatError> {
        let role = match self.speaker {
            Speaker::User => "user",
            Speaker::Assistant => "assistant",
        };
        Ok(vec![
            (message_field::ROLE.to_owned(), role.to_owned()),
            (message_field::CONTENT.to_owned(), self.content.clone()),
            (
                message_field::CREATED.to_owned(),
                self.created_ms.to_string(),
            ),
            (
                message_field::META.to_owned(),
                serde_json::to_string(&self.meta).map_err(ChatError::corrupt)?,
            ),
        ])
    }

    /// The message stored as `record`, when it is live.
    pub fn from_record(id: Uuid, record: &Record) -> Result<Option<Self>, ChatError> {
        if !record.is_live() {
            return Ok(None);
        }
        let speaker = match record.get(message_field::ROLE) {
            Some("user") => Speaker::User,
            Some("assistant") => Speaker::Assistant,
            _ => return Err(ChatError::corrupt("a message without a role")),
        };
        let meta = match record.get(message_field::META) {
            Some(json) => serde_json::from_str(json).map_err(ChatError::corrupt)?,
            None => MessageMeta::default(),
        };
        Ok(Some(Self {
            id,
            speaker,
            content: record
                .get(message_field::CONTENT)
                .unwrap_or_default()
                .to_owned(),
            created_ms: record
                .get(message_field::CREATED)
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
            meta,
        }))
    }
}

/// Stores a message of a conversation (the conversation is not checked: callers have).
pub async fn put_message(
    site: &Site,
    user: &str,
    conversation: &Uuid,
    message: &ChatMessage,
) -> Result<(), ChatError> {
    let fields = message.fields()?;
    let (replica, clock) = (site.replica, &site.clock);
    site.store
        .update(
            &message_key(user, conversation, &message.id)?,
            |record: &mut Record| record.create(replica, clock.now(), fields.clone()),
        )
        .await?;
    Ok(())
}

/// A page of a conversation's messages, oldest first.
pub async fn messages(
    site: &Site,
    user: &str,
    conversation: &Uuid,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<ChatMessage>, ChatError> {
    let page = site
        .store
        .list_documents::<Record>(
            &messages_partition(user, conversation),
            Some(MESSAGE_PREFIX),
            cursor,
            limit,
        )
        .await?;
    let mut items = Vec::with_capacity(page.items.len());
    for doc in &page.items {
        if let Some(message) = message_of(doc)? {
            items.push(message);
        }
    }
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

fn message_of(doc: &Document<Record>) -> Result<Option<ChatMessage>, ChatError> {
    let id = doc
        .key
        .sort()
        .strip_prefix(MESSAGE_PREFIX)
        .and_then(|id| Uuid::try_parse(id).ok());
    match id {
        Some(id) => ChatMessage::from_record(id, &doc.state),
        None => Ok(None),
    }
}

/// The messages after `after` (all with `None`), oldest first, at most [`MAX_HISTORY`] of
/// the newest.
pub async fn history(
    site: &Site,
    user: &str,
    conversation: &Uuid,
    after: Option<&Uuid>,
) -> Result<Vec<ChatMessage>, ChatError> {
    let mut cursor = after.map(|id| encode_cursor(&format!("{MESSAGE_PREFIX}{}", id.hyphenated())));
    let mut all = Vec::new();
    loop {
        let page = messages(site, user, conversation, cursor.as_deref(), 200).await?;
        all.extend(page.items);
        if all.len() > MAX_HISTORY {
            all.drain(..all.len() - MAX_HISTORY);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
}
