//! Replies as generations: numbered events that outlive the connection that asked for them.
//!
//! A reply is generated in its own task. Each of its events (start, text deltas, tool calls,
//! usage, then one of done, error or cancelled) gets the next sequence number, from 1, and
//! is kept twice:
//!
//! - in this process's [`Hub`] while the reply runs, where readers of this process follow it
//!   without touching the store;
//! - in the store, replica-local and expiring (`~gen#<stream>`: a `meta` record naming the
//!   owner, and the events in pages of [`PAGE_EVENTS`], one record per page with a field per
//!   sequence number), written at most every [`FLUSH_INTERVAL`] and at once for the final
//!   event, so a reader in another process (another Lambda instance) or one that comes back
//!   after the reply ended reads them there.
//!
//! A reader asks for the events after a sequence number and gets each exactly once, in
//! order, until the final one: that is how a client resumes (`Last-Event-ID`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::Stream;
use jarvis_ai::service::Site;
use jarvis_crdt::Record;
use jarvis_store::{Key, MergeOptions, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::ChatError;
use crate::conversation::UsedMemory;

/// Events per stored page.
pub const PAGE_EVENTS: u64 = 64;
/// How long events may wait in memory before they are written to the store.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// How often a reader following a reply through the store looks for more.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often a generator checks the store for a cancel asked elsewhere.
const CANCEL_CHECK: Duration = Duration::from_secs(1);
/// How often a reader following a reply here checks that its generator still runs.
const STALL_CHECK: Duration = Duration::from_secs(5);
/// How long a reader waits for the next event of a reply no process here is generating.
const STALL: Duration = Duration::from_secs(15 * 60);

/// The tokens one reply used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Tokens of the prompt.
    pub input_tokens: u64,
    /// Tokens of the reply.
    pub output_tokens: u64,
}

/// One event of a reply. Its JSON form is what clients receive and what is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// The reply started.
    Start {
        /// The stream.
        stream_id: Uuid,
        /// The conversation.
        conversation_id: Uuid,
        /// The user's message the reply answers.
        user_message_id: Uuid,
        /// The reply's message.
        message_id: Uuid,
        /// `provider:model` answering.
        model: String,
        /// The memories the reply was given.
        memories: Vec<UsedMemory>,
        /// How the conversation was fitted to the model.
        context: ContextInfo,
    },
    /// More text.
    Delta {
        /// The new text.
        text: String,
    },
    /// A fragment of a tool call.
    ToolCall {
        /// Which call of the reply.
        index: u32,
        /// Its id, on its first fragment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The tool, on its first fragment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The next piece of its arguments.
        arguments: String,
    },
    /// Tokens used so far.
    Usage {
        /// Tokens of the prompt.
        input_tokens: u64,
        /// Tokens of the reply.
        output_tokens: u64,
    },
    /// The reply is complete and saved.
    Done {
        /// Why it ended.
        stop_reason: String,
        /// The saved message.
        message_id: Uuid,
        /// The tokens the reply used, when the provider reported them (also sent earlier as
        /// a `usage` event).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<TokenUsage>,
    },
    /// The reply failed; what was generated is saved.
    Error {
        /// The error code, as in the HTTP envelope.
        code: String,
        /// What happened.
        message: String,
    },
    /// The reply was cancelled; what was generated is saved.
    Cancelled {
        /// The saved message.
        message_id: Uuid,
    },
}

/// How a conversation was fitted to the model's context window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContextInfo {
    /// The model's window, in tokens.
    pub window_tokens: u64,
    /// The prompt's estimated tokens.
    pub prompt_tokens: u64,
    /// Messages the prompt carries word for word.
    pub messages: usize,
    /// Messages the running summary stands for.
    pub summarized: u64,
}

impl StreamEvent {
    /// Whether nothing follows.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::Done { .. } | Self::Error { .. } | Self::Cancelled { .. }
        )
    }

    /// The event's type, as its SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "start",
            Self::Delta { .. } => "delta",
            Self::ToolCall { .. } => "tool_call",
            Self::Usage { .. } => "usage",
            Self::Done { .. } => "done",
            Self::Error { .. } => "error",
            Self::Cancelled { .. } => "cancelled",
        }
    }
}

/// The partition of a stream's documents.
pub fn partition(stream: &Uuid) -> String {
    format!("~gen#{}", stream.hyphenated())
}

fn meta_key(stream: &Uuid) -> Result<Key, StoreError> {
    Key::new(partition(stream), "meta")
}

fn page_key(stream: &Uuid, page: u64) -> Result<Key, StoreError> {
    Key::new(partition(stream), format!("page#{page:010}"))
}

fn page_of(seq: u64) -> u64 {
    (seq - 1) / PAGE_EVENTS
}

fn seq_field(seq: u64) -> String {
    format!("{seq:010}")
}

/// A reply being generated in this process.
pub struct Live {
    user: String,
    events: Mutex<Vec<StreamEvent>>,
    count: watch::Sender<usize>,
    cancel: CancellationToken,
    gone: std::sync::atomic::AtomicBool,
}

impl Live {
    /// Cancels the reply.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    fn events_from(&self, index: usize) -> Vec<StreamEvent> {
        self.events
            .lock()
            .map(|events| events.get(index..).map(<[_]>::to_vec).unwrap_or_default())
            .unwrap_or_default()
    }
}

/// The replies this process is generating.
#[derive(Default)]
pub struct Hub {
    live: Mutex<HashMap<Uuid, Arc<Live>>>,
}

impl Hub {
    fn get(&self, stream: &Uuid) -> Option<Arc<Live>> {
        self.live.lock().ok()?.get(stream).cloned()
    }

    fn insert(&self, stream: Uuid, live: Arc<Live>) {
        if let Ok(mut map) = self.live.lock() {
            map.insert(stream, live);
        }
    }

    fn remove(&self, stream: &Uuid) {
        if let Ok(mut map) = self.live.lock() {
            map.remove(stream);
        }
    }

    /// How many replies are being generated here.
    pub fn running(&self) -> usize {
        self.live.lock().map_or(0, |map| map.len())
    }
}

/// Who a stream belongs to and where it stands, from its `meta` record.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    /// The owner.
    pub user: String,
    /// The sequence number of its final event, once that was written.
    pub last: Option<u64>,
}

/// The stream `stream` of `user`: not found for anyone else.
pub async fn info(site: &Site, user: &str, stream: &Uuid) -> Result<StreamInfo, ChatError> {
    let doc = site.store.read::<Record>(&meta_key(stream)?).await?;
    let record = doc
        .map(|doc| doc.state)
        .filter(|r| r.get("user") == Some(user))
        .ok_or(ChatError::NotFound("stream"))?;
    Ok(StreamInfo {
        user: user.to_owned(),
        last: record.get("ended").and_then(|seq| seq.parse().ok()),
    })
}

/// Writes the events of one reply: to the hub at once, to the store in pages.
pub struct Recorder {
    site: Site,
    hub: Arc<Hub>,
    stream: Uuid,
    live: Arc<Live>,
    expires_at: i64,
    next_seq: u64,
    pending: Vec<(u64, String)>,
    last_flush: Instant,
    last_cancel_check: Instant,
}

impl Recorder {
    /// Opens the stream `stream` of `user`: its `meta` record is written before this
    /// returns, so any reader can find it; its events expire after `retention`. `cancel` is
    /// the reply's: a cancel asked here or through the store fires it.
    pub async fn open(
        site: Site,
        hub: Arc<Hub>,
        user: &str,
        stream: Uuid,
        retention: Duration,
        cancel: CancellationToken,
    ) -> Result<Self, ChatError> {
        let expires_at = jarvis_store::now_secs()
            .saturating_add(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
        let (replica, clock) = (site.replica, &site.clock);
        let owner = user.to_owned();
        site.store
            .update_with(
                &meta_key(&stream)?,
                |record: &mut Record| {
                    record.create(replica, clock.now(), [("user".to_owned(), owner.clone())])
                },
                MergeOptions {
                    expires_at: Some(expires_at),
                    retry: None,
                },
            )
            .await?;
        let live = Arc::new(Live {
            user: user.to_owned(),
            events: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
            cancel,
            gone: std::sync::atomic::AtomicBool::new(false),
        });
        hub.insert(stream, Arc::clone(&live));
        Ok(Self {
            site,
            hub,
            stream,
            live,
            expires_at,
            next_seq: 1,
            pending: Vec::new(),
            last_flush: Instant::now(),
            last_cancel_check: Instant::now(),
        })
    }

    /// When pending events are due in the store, if any are waiting.
    pub fn flush_due(&self) -> Option<tokio::time::Instant> {
        (!self.pending.is_empty())
            .then(|| tokio::time::Instant::from_std(self.last_flush + FLUSH_INTERVAL))
    }

    /// Adds the next event. The final event is written to the store before this returns.
    pub async fn push(&mut self, event: StreamEvent) -> Result<(), ChatError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let json = serde_json::to_string(&event).map_err(ChatError::corrupt)?;
        let is_final = event.is_final();
        let page_full = seq.is_multiple_of(PAGE_EVENTS);
        if let Ok(mut events) = self.live.events.lock() {
            events.push(event);
        }
        self.pending.push((seq, json));
        if is_final || page_full || self.last_flush.elapsed() >= FLUSH_INTERVAL {
            self.flush().await?;
        }
        if is_final {
            set_meta(&self.site, &self.stream, "ended", &seq.to_string()).await?;
        }
        // Readers here learn of an event once it is recorded; of the final one, once it is in
        // the store.
        self.live
            .count
            .send_replace(usize::try_from(seq).unwrap_or(usize::MAX));
        Ok(())
    }

    /// Writes the pending events, a page at a time.
    pub async fn flush(&mut self) -> Result<(), ChatError> {
        self.last_flush = Instant::now();
        let pending = std::mem::take(&mut self.pending);
        let mut start = 0;
        while start < pending.len() {
            let page = page_of(pending[start].0);
            let end = pending[start..]
                .iter()
                .position(|(seq, _)| page_of(*seq) != page)
                .map_or(pending.len(), |n| start + n);
            let batch = &pending[start..end];
            let clock = &self.site.clock;
            self.site
                .store
                .update_with(
                    &page_key(&self.stream, page)?,
                    |record: &mut Record| {
                        let mut delta = Record::new();
                        for (seq, json) in batch {
                            let name = seq_field(*seq);
                            let stamp = clock.stamp_after(record.stamp(&name));
                            jarvis_crdt::Crdt::join(
                                &mut delta,
                                record.set(name, stamp, json.clone()),
                            );
                        }
                        delta
                    },
                    MergeOptions {
                        expires_at: Some(self.expires_at),
                        retry: None,
                    },
                )
                .await?;
            start = end;
        }
        Ok(())
    }

    /// Whether a cancel was asked, here or (checked at most every second) in the store.
    pub async fn cancel_requested(&mut self) -> bool {
        if self.live.cancel.is_cancelled() {
            return true;
        }
        if self.last_cancel_check.elapsed() < CANCEL_CHECK {
            return false;
        }
        self.last_cancel_check = Instant::now();
        let asked = match meta_key(&self.stream) {
            Ok(key) => matches!(
                self.site.store.read::<Record>(&key).await,
                Ok(Some(doc)) if doc.state.get("cancel") == Some("1")
            ),
            Err(_) => false,
        };
        if asked {
            self.live.cancel.cancel();
        }
        asked
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.live
            .gone
            .store(true, std::sync::atomic::Ordering::Release);
        self.hub.remove(&self.stream);
    }
}

async fn set_meta(site: &Site, stream: &Uuid, field: &str, value: &str) -> Result<(), ChatError> {
    let clock = &site.clock;
    site.store
        .update(&meta_key(stream)?, |record: &mut Record| {
            if record.get(field).is_some() {
                return Record::new();
            }
            let stamp = clock.stamp_after(record.stamp(field));
            record.set(field.to_owned(), stamp, value.to_owned())
        })
        .await?;
    Ok(())
}

/// Asks the reply on `stream` to stop: at once when this process generates it, else through
/// the store, where its generator looks within a second. Answers whether it had already
/// ended.
pub async fn cancel(site: &Site, hub: &Hub, user: &str, stream: &Uuid) -> Result<bool, ChatError> {
    let info = info(site, user, stream).await?;
    if info.last.is_some() {
        return Ok(true);
    }
    match hub.get(stream) {
        Some(live) if live.user == user => live.cancel(),
        _ => set_meta(site, stream, "cancel", "1").await?,
    }
    Ok(false)
}

/// The events of `stream` after sequence number `after`, each once and in order, ending
/// with the final one.
pub async fn follow(
    site: Site,
    hub: &Hub,
    user: &str,
    stream: Uuid,
    after: u64,
) -> Result<impl Stream<Item = (u64, StreamEvent)> + Send + 'static, ChatError> {
    let known = info(&site, user, &stream).await?;
    let source = match hub.get(&stream) {
        Some(live) => {
            let seen = live.count.subscribe();
            Source::Live(live, seen)
        }
        None => Source::Stored,
    };
    let state = Follower {
        site,
        user: user.to_owned(),
        stream,
        next: after.saturating_add(1),
        source,
        buffered: std::collections::VecDeque::new(),
        // A reader already past the final event has nothing to wait for.
        done: known.last.is_some_and(|last| after >= last),
    };
    Ok(futures_util::stream::unfold(state, Follower::next))
}

enum Source {
    Live(Arc<Live>, watch::Receiver<usize>),
    Stored,
}

struct Follower {
    site: Site,
    user: String,
    stream: Uuid,
    next: u64,
    source: Source,
    buffered: std::collections::VecDeque<StreamEvent>,
    done: bool,
}

impl Follower {
    async fn next(mut self) -> Option<((u64, StreamEvent), Self)> {
        if self.done {
            return None;
        }
        let stalled_at = Instant::now() + STALL;
        loop {
            if let Some(event) = self.buffered.pop_front() {
                let seq = self.next;
                self.next += 1;
                self.done = event.is_final();
                return Some(((seq, event), self));
            }
            if Instant::now() > stalled_at {
                return None;
            }
            match &mut self.source {
                Source::Live(live, seen) => {
                    let index = usize::try_from(self.next - 1).unwrap_or(usize::MAX);
                    let published = *seen.borrow_and_update();
                    if published > index {
                        let events = live.events_from(index);
                        self.buffered
                            .extend(events.into_iter().take(published - index));
                        continue;
                    }
                    let changed = tokio::time::timeout(STALL_CHECK, seen.changed()).await;
                    let gone = live.gone.load(std::sync::atomic::Ordering::Acquire);
                    if matches!(changed, Ok(Err(_))) || (changed.is_err() && gone) {
                        // The generator stopped without a final event here: what it wrote
                        // is in the store.
                        self.source = Source::Stored;
                    }
                }
                Source::Stored => match read_page(&self.site, &self.stream, self.next).await {
                    Ok(events) if !events.is_empty() => self.buffered.extend(events),
                    Ok(_) => {
                        let user = self.user.clone();
                        let ended = info(&self.site, &user, &self.stream)
                            .await
                            .ok()
                            .and_then(|i| i.last);
                        if ended.is_some_and(|last| self.next > last) {
                            return None;
                        }
                        tokio::time::sleep(POLL_INTERVAL).await;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "reading stream events failed");
                        tokio::time::sleep(POLL_INTERVAL).await;
                    }
                },
            }
        }
    }
}

/// The stored events from `from` to the end of its page, up to the first one missing.
async fn read_page(site: &Site, stream: &Uuid, from: u64) -> Result<Vec<StreamEvent>, ChatError> {
    let page = page_of(from);
    let Some(doc) = site.store.read::<Record>(&page_key(stream, page)?).await? else {
        return Ok(Vec::new());
    };
    let mut events = Vec::new();
    for seq in from..(page + 1) * PAGE_EVENTS + 1 {
        let Some(json) = doc.state.get(&seq_field(seq)) else {
            break;
        };
        events.push(serde_json::from_str(json).map_err(ChatError::corrupt)?);
    }
    Ok(events)
}
