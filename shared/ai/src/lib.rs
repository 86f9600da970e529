//! The provider layer: one streaming interface to language and embedding models.
//!
//! A [`ChatRequest`] (model, system prompt, messages of text, image and tool parts, tools as
//! JSON Schema, sampling limits) is answered by a stream of [`Event`]s: text deltas, tool-call
//! deltas, usage, and one final `Done` or `Error`. A non-streaming call is the collected
//! stream ([`collect`]). Providers that have embeddings answer [`Provider::embed`].
//!
//! [`quota`] keeps each user's token budgets in the store, escrowed per replica.
//!
//! Owns the request and event model, each provider's translation of it and the budgets calls
//! spend; changes when a provider's protocol, the model or the budget rules change. Imports
//! `jarvis-crdt` and `jarvis-store`; credentials and routes come from the crates above it in
//! the crate map.
#![deny(missing_docs)]

pub mod anthropic;
#[cfg(feature = "bedrock")]
pub mod bedrock;
pub mod gemini;
#[cfg(feature = "local")]
pub mod local;
pub mod observed;
pub mod openai;
pub mod quota;
pub mod registry;
pub mod resilience;
pub mod scripted;
pub mod service;
mod sse;
pub mod usage;
mod wire;

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The person using Jarvis.
    User,
    /// The model.
    Assistant,
    /// The result of a tool the model called.
    Tool,
}

/// One part of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image, inline.
    Image {
        /// `image/png`, `image/jpeg`, `image/webp` or `image/gif`.
        media_type: String,
        /// The image bytes, base64.
        data: String,
    },
    /// A call the model made (in an assistant message).
    ToolCall {
        /// The call's id, which its result names.
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments, a JSON object.
        arguments: serde_json::Value,
    },
    /// What a tool answered (in a tool message).
    ToolResult {
        /// The id of the call this answers.
        call_id: String,
        /// The answer, as text.
        content: String,
        /// Whether the tool failed.
        #[serde(default)]
        is_error: bool,
    },
}

/// A message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What it says.
    pub parts: Vec<Part>,
}

impl Message {
    /// A user message of text.
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            parts: vec![Part::Text { text: text.into() }],
        }
    }

    /// An assistant message of text.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            parts: vec![Part::Text { text: text.into() }],
        }
    }

    /// The message's text parts, joined.
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|part| match part {
                Part::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Its name: what the model calls it by.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// Its arguments, as a JSON Schema object.
    pub parameters: serde_json::Value,
}

/// What is asked of a model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The provider's model name.
    pub model: String,
    /// The system prompt.
    pub system: Option<String>,
    /// The conversation so far, oldest first.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<Tool>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// The most tokens the reply may have.
    pub max_output_tokens: Option<u32>,
    /// Sequences that end the reply.
    pub stop: Vec<String>,
}

/// Tokens a call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt.
    pub input_tokens: u64,
    /// Tokens of the reply.
    pub output_tokens: u64,
}

/// Why a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished.
    EndTurn,
    /// The reply reached `max_output_tokens`.
    MaxTokens,
    /// A stop sequence was produced.
    StopSequence,
    /// The model called tools and waits for their results.
    ToolUse,
    /// The provider refused to answer (a content filter).
    Refused,
}

impl StopReason {
    /// Its name, as clients see it: `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`,
    /// `refused`.
    pub fn name(self) -> &'static str {
        match self {
            Self::EndTurn => "end_turn",
            Self::MaxTokens => "max_tokens",
            Self::StopSequence => "stop_sequence",
            Self::ToolUse => "tool_use",
            Self::Refused => "refused",
        }
    }
}

/// What went wrong with a provider. Messages never carry credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProviderError {
    /// The provider could not be reached, or the connection broke.
    #[error("provider unreachable: {message}")]
    Unreachable {
        /// What happened.
        message: String,
    },
    /// The provider asked us to slow down.
    #[error("provider rate limited")]
    RateLimited {
        /// Seconds it asked us to wait, when it said.
        retry_after_secs: Option<u64>,
    },
    /// The provider failed on its side (5xx).
    #[error("provider failed with status {status}")]
    Failed {
        /// Its HTTP status.
        status: u16,
    },
    /// The provider refused the request as malformed or unauthorised (4xx).
    #[error("provider refused the request ({status}): {message}")]
    Refused {
        /// Its HTTP status.
        status: u16,
        /// Its explanation.
        message: String,
    },
    /// An answer did not follow the provider's protocol.
    #[error("provider answered outside its protocol: {message}")]
    Protocol {
        /// What was wrong.
        message: String,
    },
    /// The stream ended without its final event.
    #[error("the reply was cut off")]
    Truncated,
    /// The provider does not do this (e.g. embeddings).
    #[error("{what} is not supported by this provider")]
    Unsupported {
        /// What was asked.
        what: String,
    },
}

impl ProviderError {
    /// Whether trying again later may succeed: the provider was unreachable, rate limited,
    /// failed on its side or cut the reply off.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. }
                | Self::RateLimited { .. }
                | Self::Failed { .. }
                | Self::Truncated
        )
    }
}

/// One event of a streamed reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// More text.
    TextDelta {
        /// The new text.
        text: String,
    },
    /// A fragment of a tool call. The first fragment of call `index` names its id and tool;
    /// later ones add to its arguments.
    ToolCallDelta {
        /// Which call of this reply (0, 1, …).
        index: u32,
        /// The call's id, on its first fragment.
        id: Option<String>,
        /// The tool's name, on its first fragment.
        name: Option<String>,
        /// The next piece of the arguments' JSON text.
        arguments: String,
    },
    /// Tokens used so far (later usage events replace earlier ones).
    Usage(Usage),
    /// The reply is complete.
    Done {
        /// Why it ended.
        stop_reason: StopReason,
    },
    /// The reply failed; nothing follows.
    Error(ProviderError),
}

/// Sound, with its media type (`audio/wav`, `audio/mpeg`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audio {
    /// Its media type.
    pub media_type: String,
    /// The encoded sound.
    pub bytes: Vec<u8>,
}

/// The encodings speech can be asked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioFormat {
    /// MP3.
    Mp3,
    /// WAV (PCM).
    Wav,
    /// Opus in Ogg.
    Opus,
    /// FLAC.
    Flac,
    /// AAC.
    Aac,
}

impl AudioFormat {
    /// Its name, as OpenAI's `response_format` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mp3 => "mp3",
            Self::Wav => "wav",
            Self::Opus => "opus",
            Self::Flac => "flac",
            Self::Aac => "aac",
        }
    }

    /// Its media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Mp3 => "audio/mpeg",
            Self::Wav => "audio/wav",
            Self::Opus => "audio/ogg",
            Self::Flac => "audio/flac",
            Self::Aac => "audio/aac",
        }
    }
}

/// What to say, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeechRequest {
    /// The text to speak.
    pub text: String,
    /// The voice, by the provider's name for it.
    pub voice: String,
    /// The encoding to answer in.
    pub format: AudioFormat,
}

/// A streamed reply.
pub type EventStream = Pin<Box<dyn Stream<Item = Event> + Send>>;

/// A language model provider.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// The provider's name (`openai`, `anthropic`, `scripted`…).
    fn name(&self) -> &str;

    /// Starts a reply. An error here means nothing was generated; an error during the
    /// reply arrives as its last event.
    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError>;

    /// Embeds each text into a vector, when the provider has embeddings.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let _ = texts;
        Err(ProviderError::Unsupported {
            what: "embedding".into(),
        })
    }

    /// The text spoken in `audio`, when the provider transcribes; `language` (ISO 639-1)
    /// helps it.
    async fn transcribe(
        &self,
        audio: &Audio,
        language: Option<&str>,
    ) -> Result<String, ProviderError> {
        let _ = (audio, language);
        Err(ProviderError::Unsupported {
            what: "transcription".into(),
        })
    }

    /// `request` spoken, when the provider speaks.
    async fn speak(&self, request: &SpeechRequest) -> Result<Audio, ProviderError> {
        let _ = request;
        Err(ProviderError::Unsupported {
            what: "speech".into(),
        })
    }

    /// The tokens `text` takes for `model`, when this provider counts them exactly and
    /// in-process (with the model's own tokenizer); `None` leaves callers to estimate.
    fn count_tokens(&self, model: &str, text: &str) -> Option<u64> {
        let _ = (model, text);
        None
    }

    /// The provider to use for `model` in a chain, when it differs from this one (a provider
    /// whose embeddings need the model chosen up front); `None` uses this one.
    fn for_model(&self, model: &str) -> Option<Arc<dyn Provider>> {
        let _ = model;
        None
    }
}

/// A tool call, assembled from its deltas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, a JSON object.
    pub arguments: serde_json::Value,
}

/// A whole reply: the collected stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The text.
    pub text: String,
    /// The tools it called, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Tokens used.
    pub usage: Usage,
    /// Why it ended.
    pub stop_reason: StopReason,
}

/// Collects a streamed reply. A stream that fails, ends without `Done`, or carries a tool
/// call whose arguments are not a JSON object is an error, never a silently short reply.
pub async fn collect(mut stream: EventStream) -> Result<Reply, ProviderError> {
    let mut text = String::new();
    let mut calls: Vec<(Option<String>, Option<String>, String)> = Vec::new();
    let mut usage = Usage::default();
    while let Some(event) = stream.next().await {
        match event {
            Event::TextDelta { text: delta } => text.push_str(&delta),
            Event::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                let index = usize::try_from(index).unwrap_or(usize::MAX);
                if index > calls.len() {
                    return Err(ProviderError::Protocol {
                        message: format!("tool call {index} before call {}", calls.len()),
                    });
                }
                if index == calls.len() {
                    calls.push((None, None, String::new()));
                }
                let call = &mut calls[index];
                call.0 = call.0.take().or(id);
                call.1 = call.1.take().or(name);
                call.2.push_str(&arguments);
            }
            Event::Usage(latest) => usage = latest,
            Event::Error(err) => return Err(err),
            Event::Done { stop_reason } => {
                let tool_calls = calls
                    .into_iter()
                    .enumerate()
                    .map(|(index, (id, name, arguments))| assemble(index, id, name, &arguments))
                    .collect::<Result<_, _>>()?;
                return Ok(Reply {
                    text,
                    tool_calls,
                    usage,
                    stop_reason,
                });
            }
        }
    }
    Err(ProviderError::Truncated)
}

fn assemble(
    index: usize,
    id: Option<String>,
    name: Option<String>,
    arguments: &str,
) -> Result<ToolCall, ProviderError> {
    let protocol = |message: String| ProviderError::Protocol { message };
    let arguments = if arguments.trim().is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_str(arguments)
            .map_err(|_| protocol(format!("tool call {index}: arguments are not JSON")))?
    };
    if !arguments.is_object() {
        return Err(protocol(format!(
            "tool call {index}: arguments are not a JSON object"
        )));
    }
    Ok(ToolCall {
        id: id.ok_or_else(|| protocol(format!("tool call {index} has no id")))?,
        name: name.ok_or_else(|| protocol(format!("tool call {index} has no name")))?,
        arguments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(events: Vec<Event>) -> EventStream {
        Box::pin(futures_util::stream::iter(events))
    }

    #[tokio::test]
    async fn a_tool_call_split_across_deltas_is_assembled_with_its_arguments() {
        let reply = collect(stream(vec![
            Event::TextDelta {
                text: "Let me ".into(),
            },
            Event::TextDelta {
                text: "check.".into(),
            },
            Event::ToolCallDelta {
                index: 0,
                id: Some("call_1".into()),
                name: Some("weather".into()),
                arguments: "{\"ci".into(),
            },
            Event::ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: "ty\":\"Oslo\"}".into(),
            },
            Event::ToolCallDelta {
                index: 1,
                id: Some("call_2".into()),
                name: Some("clock".into()),
                arguments: String::new(),
            },
            Event::Usage(Usage {
                input_tokens: 12,
                output_tokens: 9,
            }),
            Event::Done {
                stop_reason: StopReason::ToolUse,
            },
        ]))
        .await
        .expect("reply");
        assert_eq!(reply.text, "Let me check.");
        assert_eq!(
            reply.tool_calls,
            vec![
                ToolCall {
                    id: "call_1".into(),
                    name: "weather".into(),
                    arguments: serde_json::json!({ "city": "Oslo" }),
                },
                ToolCall {
                    id: "call_2".into(),
                    name: "clock".into(),
                    arguments: serde_json::json!({}),
                },
            ]
        );
        assert_eq!(reply.usage.output_tokens, 9);
        assert_eq!(reply.stop_reason, StopReason::ToolUse);
    }

    #[tokio::test]
    async fn a_stream_that_fails_or_stops_early_is_an_error_not_a_short_reply() {
        let failed = collect(stream(vec![
            Event::TextDelta {
                text: "partial".into(),
            },
            Event::Error(ProviderError::Unreachable {
                message: "connection reset".into(),
            }),
        ]))
        .await;
        assert!(matches!(failed, Err(ProviderError::Unreachable { .. })));
        let cut = collect(stream(vec![Event::TextDelta {
            text: "partial".into(),
        }]))
        .await;
        assert_eq!(cut, Err(ProviderError::Truncated));
    }

    #[tokio::test]
    async fn tool_arguments_that_are_not_a_json_object_are_a_protocol_error() {
        for arguments in ["{\"city\":", "[1,2]"] {
            let reply = collect(stream(vec![
                Event::ToolCallDelta {
                    index: 0,
                    id: Some("c".into()),
                    name: Some("t".into()),
                    arguments: arguments.into(),
                },
                Event::Done {
                    stop_reason: StopReason::ToolUse,
                },
            ]))
            .await;
            assert!(
                matches!(reply, Err(ProviderError::Protocol { .. })),
                "{arguments}"
            );
        }
    }

    #[test]
    fn events_have_a_stable_json_form() {
        let event = Event::ToolCallDelta {
            index: 0,
            id: Some("call_1".into()),
            name: Some("weather".into()),
            arguments: "{}".into(),
        };
        assert_eq!(
            serde_json::to_value(&event).expect("json"),
            serde_json::json!({
                "type": "tool_call_delta", "index": 0, "id": "call_1",
                "name": "weather", "arguments": "{}"
            })
        );
        assert_eq!(
            serde_json::to_value(Event::Usage(Usage {
                input_tokens: 1,
                output_tokens: 2
            }))
            .expect("json"),
            serde_json::json!({ "type": "usage", "input_tokens": 1, "output_tokens": 2 })
        );
    }
}
