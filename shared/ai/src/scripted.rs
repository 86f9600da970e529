//! The scripted provider: deterministic replies for tests and for running with no model.
//!
//! Each call takes the next reply of its script (any events, tool calls and errors
//! included); with the script spent, it echoes the last user message, word by word, as a
//! model would stream it. Its embeddings hash words into a fixed number of dimensions
//! (signed feature hashing, normalised), so texts sharing words are near each other and the
//! same text always gives the same vector: enough for tests of retrieval, not a language
//! model.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::{ChatRequest, Event, EventStream, Provider, ProviderError, Role, StopReason, Usage};

/// Dimensions of the scripted embeddings unless chosen otherwise.
pub const DEFAULT_DIMENSIONS: usize = 64;

/// A provider that answers from a script, then by echo.
pub struct Scripted {
    script: Mutex<VecDeque<Vec<Event>>>,
    dimensions: usize,
}

impl Default for Scripted {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Scripted {
    /// A provider that plays `replies` in order, one per call, then echoes.
    pub fn new(replies: Vec<Vec<Event>>) -> Self {
        Self {
            script: Mutex::new(replies.into()),
            dimensions: DEFAULT_DIMENSIONS,
        }
    }

    /// The same, with embeddings of `dimensions` (at least 1).
    pub fn with_dimensions(mut self, dimensions: usize) -> Self {
        self.dimensions = dimensions.max(1);
        self
    }

    /// Adds a reply at the end of the script.
    pub fn push(&self, reply: Vec<Event>) {
        if let Ok(mut script) = self.script.lock() {
            script.push_back(reply);
        }
    }

    fn next_reply(&self) -> Option<Vec<Event>> {
        self.script.lock().ok()?.pop_front()
    }
}

/// Tokens in `text` by the documented estimate of one token per four bytes, rounded up (the
/// scripted provider has no tokenizer).
pub fn estimate_tokens(text: &str) -> u64 {
    u64::try_from(text.len().div_ceil(4)).unwrap_or(u64::MAX)
}

/// The echo reply to `request`, as events: the last user message's text back, a word per
/// event, cut at `max_output_tokens`.
fn echo(request: &ChatRequest) -> Vec<Event> {
    let said = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.text())
        .unwrap_or_default();
    let prompt: String = request
        .system
        .iter()
        .cloned()
        .chain(request.messages.iter().map(|m| m.text()))
        .collect::<Vec<_>>()
        .join("\n");
    let budget = request.max_output_tokens.map_or(u64::MAX, u64::from);
    let mut events = Vec::new();
    let mut written = String::new();
    let mut stop_reason = StopReason::EndTurn;
    for word in format!("You said: {said}").split_inclusive(' ') {
        if estimate_tokens(&written) + estimate_tokens(word) > budget {
            stop_reason = StopReason::MaxTokens;
            break;
        }
        if let Some(stop) = request
            .stop
            .iter()
            .find(|s| !s.is_empty() && word.contains(*s))
        {
            let before = word.split(stop.as_str()).next().unwrap_or_default();
            if !before.is_empty() {
                events.push(Event::TextDelta {
                    text: before.to_owned(),
                });
                written.push_str(before);
            }
            stop_reason = StopReason::StopSequence;
            break;
        }
        events.push(Event::TextDelta {
            text: word.to_owned(),
        });
        written.push_str(word);
    }
    events.push(Event::Usage(Usage {
        input_tokens: estimate_tokens(&prompt),
        output_tokens: estimate_tokens(&written),
    }));
    events.push(Event::Done { stop_reason });
    events
}

/// FNV-1a, 64 bits: a fixed hash, so vectors are the same in every build.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The scripted embedding of `text` in `dimensions`.
pub fn hashed_embedding(text: &str, dimensions: usize) -> Vec<f32> {
    let mut vector = vec![0f32; dimensions.max(1)];
    let len = u64::try_from(vector.len()).unwrap_or(1);
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let hash = fnv1a(word.to_lowercase().as_bytes());
        let slot = usize::try_from(hash % len).unwrap_or(0);
        vector[slot] += if hash >> 63 == 0 { 1.0 } else { -1.0 };
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut vector {
            *x /= norm;
        }
    }
    vector
}

#[async_trait::async_trait]
impl Provider for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        let events = self.next_reply().unwrap_or_else(|| echo(&request));
        Ok(Box::pin(futures_util::stream::iter(events)))
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        Ok(texts
            .iter()
            .map(|text| hashed_embedding(text, self.dimensions))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, collect};

    fn ask(text: &str) -> ChatRequest {
        ChatRequest {
            model: "echo".into(),
            messages: vec![Message::user(text)],
            ..ChatRequest::default()
        }
    }

    #[tokio::test]
    async fn the_script_plays_in_order_then_the_provider_echoes() {
        let provider = Scripted::new(vec![vec![
            Event::TextDelta {
                text: "scripted".into(),
            },
            Event::Done {
                stop_reason: StopReason::EndTurn,
            },
        ]]);
        let first = collect(provider.stream(ask("hi")).await.expect("stream"))
            .await
            .expect("reply");
        assert_eq!(first.text, "scripted");
        let second = collect(
            provider
                .stream(ask("what is the time"))
                .await
                .expect("stream"),
        )
        .await
        .expect("reply");
        assert_eq!(second.text, "You said: what is the time");
        assert_eq!(second.stop_reason, StopReason::EndTurn);
        assert_eq!(
            second.usage.input_tokens,
            estimate_tokens("what is the time")
        );
        assert_eq!(
            second.usage.output_tokens,
            estimate_tokens("You said: what is the time")
        );
    }

    #[tokio::test]
    async fn the_echo_stops_at_the_token_budget_and_at_a_stop_sequence() {
        let mut request = ask("one two three four five six seven eight");
        request.max_output_tokens = Some(4);
        let reply = collect(Scripted::default().stream(request).await.expect("stream"))
            .await
            .expect("reply");
        assert_eq!(reply.stop_reason, StopReason::MaxTokens);
        assert!(reply.usage.output_tokens <= 4, "{reply:?}");

        let mut request = ask("alpha beta STOP gamma");
        request.stop = vec!["STOP".into()];
        let reply = collect(Scripted::default().stream(request).await.expect("stream"))
            .await
            .expect("reply");
        assert_eq!(reply.text, "You said: alpha beta ");
        assert_eq!(reply.stop_reason, StopReason::StopSequence);
    }

    #[tokio::test]
    async fn embeddings_are_deterministic_unit_vectors_near_for_shared_words() {
        let provider = Scripted::default();
        let texts = [
            "the cat sat on the mat".to_owned(),
            "a cat on a mat".to_owned(),
            "quarterly revenue forecast".to_owned(),
        ];
        let vectors = provider.embed(&texts).await.expect("embed");
        assert_eq!(vectors.len(), 3);
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        for v in &vectors {
            assert_eq!(v.len(), DEFAULT_DIMENSIONS);
            assert!((cos(v, v) - 1.0).abs() < 1e-5);
        }
        assert!(cos(&vectors[0], &vectors[1]) > cos(&vectors[0], &vectors[2]));
        assert_eq!(
            provider.embed(&texts[..1]).await.expect("again")[0],
            vectors[0]
        );
        // Pinned: the same text gives the same vector in every build.
        let pinned = hashed_embedding("jarvis", 8);
        assert_eq!(pinned.iter().filter(|x| **x != 0.0).count(), 1);
    }
}
