//! The scripted provider: deterministic replies for tests and for running with no model.
//!
//! Each call takes the next reply of its script (any events, tool calls and errors
//! included); with the script spent, it echoes the last user message, word by word, as a
//! model would stream it. A [`Script`] read from a file (the `script` model, with
//! `JARVIS_AI_SCRIPT`) is played by *turn* instead: the reply to a conversation is the one
//! at the number of assistant messages it already holds, so the same conversation always
//! gets the same reply, whichever process answers it and however often — what a run that
//! resumes after a crash needs of a model it asks again. Its embeddings hash words into a fixed number of dimensions
//! (signed feature hashing, normalised), so texts sharing words are near each other and the
//! same text always gives the same vector: enough for tests of retrieval, not a language
//! model.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use crate::{ChatRequest, Event, EventStream, Provider, ProviderError, Role, StopReason, Usage};

/// Replies chosen by the conversation's turn, as a script file holds them:
/// `{"replies": [{"delay_ms": 300, "text": "…", "tool_calls": [{"name": "…", "arguments":
/// {…}}]}, …]}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The reply of each turn, the first answering a conversation with no assistant message.
    pub replies: Vec<ScriptedReply>,
}

/// One turn's reply.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedReply {
    /// How long the model "thinks" before its first event, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// Its text.
    #[serde(default)]
    pub text: String,
    /// The tools it calls, in order.
    #[serde(default)]
    pub tool_calls: Vec<ScriptedCall>,
}

/// A tool call of a scripted reply.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedCall {
    /// The tool's name.
    pub name: String,
    /// Its arguments, a JSON object.
    #[serde(default = "empty_object")]
    pub arguments: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl Script {
    /// Reads a script file; the error says what is wrong without echoing it.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("the script {} cannot be read: {e}", path.display()))?;
        let script: Self = serde_json::from_str(&text)
            .map_err(|e| format!("the script {} is not a script: {e}", path.display()))?;
        for (turn, reply) in script.replies.iter().enumerate() {
            if reply
                .tool_calls
                .iter()
                .any(|call| !call.arguments.is_object())
            {
                return Err(format!(
                    "the script {}: a tool call of reply {turn} has arguments that are not an object",
                    path.display()
                ));
            }
        }
        Ok(script)
    }

    /// The events of the reply at `turn`, when the script has one.
    fn reply(&self, turn: usize, request: &ChatRequest) -> Option<(Duration, Vec<Event>)> {
        let reply = self.replies.get(turn)?;
        let mut events = Vec::new();
        if !reply.text.is_empty() {
            events.push(Event::TextDelta {
                text: reply.text.clone(),
            });
        }
        for (index, call) in reply.tool_calls.iter().enumerate() {
            events.push(Event::ToolCallDelta {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                id: Some(format!("call_{turn}_{index}")),
                name: Some(call.name.clone()),
                arguments: call.arguments.to_string(),
            });
        }
        let prompt: String = request
            .system
            .iter()
            .cloned()
            .chain(request.messages.iter().map(|m| m.text()))
            .collect::<Vec<_>>()
            .join("\n");
        let written = reply.text.len()
            + reply
                .tool_calls
                .iter()
                .map(|c| c.name.len() + c.arguments.to_string().len())
                .sum::<usize>();
        events.push(Event::Usage(Usage {
            input_tokens: estimate_tokens(&prompt),
            output_tokens: u64::try_from(written.div_ceil(4)).unwrap_or(u64::MAX),
        }));
        events.push(Event::Done {
            stop_reason: if reply.tool_calls.is_empty() {
                StopReason::EndTurn
            } else {
                StopReason::ToolUse
            },
        });
        Some((Duration::from_millis(reply.delay_ms), events))
    }
}

/// Dimensions of the scripted embeddings unless chosen otherwise.
pub const DEFAULT_DIMENSIONS: usize = 64;

/// A provider that answers from a script, then by echo.
pub struct Scripted {
    script: Mutex<VecDeque<Vec<Event>>>,
    turns: Option<Script>,
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
            turns: None,
            dimensions: DEFAULT_DIMENSIONS,
        }
    }

    /// A provider that answers each conversation with `script`'s reply for its turn (the
    /// number of assistant messages it holds), and echoes past the script's end.
    pub fn by_turn(script: Script) -> Self {
        Self {
            turns: Some(script),
            ..Self::default()
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
        if let Some(script) = &self.turns {
            let turn = request
                .messages
                .iter()
                .filter(|m| m.role == Role::Assistant)
                .count();
            if let Some((delay, events)) = script.reply(turn, &request) {
                tokio::time::sleep(delay).await;
                return Ok(Box::pin(futures_util::stream::iter(events)));
            }
        }
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

    #[tokio::test]
    async fn a_script_answers_each_conversation_by_its_turn_whoever_asks() {
        let script: Script = serde_json::from_str(
            r#"{"replies": [
                {"text": "Noting it.", "tool_calls": [{"name": "archive_add", "arguments": {"title": "t"}}]},
                {"text": "Done."}
            ]}"#,
        )
        .expect("script");
        let first_process = Scripted::by_turn(script.clone());
        let mut conversation = ask("note this");
        let reply = collect(
            first_process
                .stream(conversation.clone())
                .await
                .expect("stream"),
        )
        .await
        .expect("reply");
        assert_eq!(reply.stop_reason, StopReason::ToolUse);
        assert_eq!(reply.tool_calls.len(), 1);
        assert_eq!(reply.tool_calls[0].id, "call_0_0");
        assert_eq!(reply.tool_calls[0].arguments["title"], "t");
        // Asked again, by another process: the same reply, not the next one.
        let again = collect(
            Scripted::by_turn(script.clone())
                .stream(conversation.clone())
                .await
                .expect("stream"),
        )
        .await
        .expect("reply");
        assert_eq!(again, reply);
        conversation.messages.push(Message::assistant("Noting it."));
        let second = collect(
            first_process
                .stream(conversation.clone())
                .await
                .expect("stream"),
        )
        .await
        .expect("reply");
        assert_eq!(second.text, "Done.");
        assert_eq!(second.stop_reason, StopReason::EndTurn);
        // Past its end the script echoes.
        conversation.messages.push(Message::assistant("Done."));
        let third = collect(first_process.stream(conversation).await.expect("stream"))
            .await
            .expect("reply");
        assert!(third.text.starts_with("You said:"), "{}", third.text);
    }

    #[test]
    fn a_script_with_arguments_that_are_not_an_object_is_refused() {
        let dir = std::env::temp_dir().join(format!("jarvis-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("bad.json");
        std::fs::write(
            &path,
            r#"{"replies": [{"tool_calls": [{"name": "x", "arguments": [1]}]}]}"#,
        )
        .expect("write");
        let err = Script::load(&path).expect_err("refused");
        assert!(err.contains("not an object"), "{err}");
        std::fs::write(&path, r#"{"replies": [{"txt": "typo"}]}"#).expect("write");
        assert!(Script::load(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
