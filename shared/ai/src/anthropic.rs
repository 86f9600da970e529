//! Anthropic's Messages API, streamed, with tool use.
//!
//! `POST {base}/v1/messages` with `x-api-key`, `anthropic-version: 2023-06-01` and
//! `"stream": true` answers named server-sent events: `message_start` (input tokens),
//! `content_block_start` (a `text` or `tool_use` block), `content_block_delta` (`text_delta`
//! or `input_json_delta`), `content_block_stop`, `message_delta` (the stop reason and output
//! tokens), `message_stop`, with `ping`s anywhere and an `error` event when the reply fails.
//! Tool results travel in a user message as `tool_result` blocks. `max_tokens` is required
//! by the API: without one in the request, [`DEFAULT_MAX_TOKENS`] is sent.

use std::collections::HashMap;

use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::{
    ChatRequest, Event, EventStream, Part, Provider, ProviderError, Role, StopReason, Usage, sse,
    wire,
};

/// The API version this adapter speaks.
pub const API_VERSION: &str = "2023-06-01";

/// Output tokens asked for when the request sets no limit.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Anthropic, or a server speaking its Messages API.
pub struct Anthropic {
    client: reqwest::Client,
    base_url: String,
    api_key: SecretString,
}

impl Anthropic {
    /// The API at `base_url` (`https://api.anthropic.com`).
    pub fn new(client: reqwest::Client, base_url: &str, api_key: SecretString) -> Self {
        Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
        }
    }
}

/// The request body of a streamed message.
pub fn messages_body(request: &ChatRequest) -> Value {
    let messages: Vec<Value> = request
        .messages
        .iter()
        .map(|message| {
            let role = match message.role {
                Role::Assistant => "assistant",
                // Tool results are the user's turn in this API.
                Role::User | Role::Tool => "user",
            };
            let content: Vec<Value> = message
                .parts
                .iter()
                .map(|part| match part {
                    Part::Text { text } => json!({ "type": "text", "text": text }),
                    Part::Image { media_type, data } => json!({
                        "type": "image",
                        "source": { "type": "base64", "media_type": media_type, "data": data }
                    }),
                    Part::ToolCall {
                        id,
                        name,
                        arguments,
                    } => json!({ "type": "tool_use", "id": id, "name": name, "input": arguments }),
                    Part::ToolResult {
                        call_id,
                        content,
                        is_error,
                    } => json!({
                        "type": "tool_result", "tool_use_id": call_id,
                        "content": content, "is_error": is_error
                    }),
                })
                .collect();
            json!({ "role": role, "content": content })
        })
        .collect();
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_output_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": messages,
        "stream": true,
    });
    if let Some(system) = &request.system {
        body["system"] = json!(system);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.parameters,
                })
            })
            .collect();
    }
    if let Some(temperature) = request.temperature {
        body["temperature"] = wire::decimal(temperature);
    }
    if !request.stop.is_empty() {
        body["stop_sequences"] = json!(request.stop);
    }
    body
}

/// Reads the Messages API's events.
#[derive(Default)]
struct Messages {
    usage: Usage,
    stop_reason: Option<StopReason>,
    /// Content block index → tool call index, for `tool_use` blocks.
    tool_blocks: HashMap<u64, u32>,
}

impl sse::Decoder for Messages {
    fn message(&mut self, event: &str, data: &str) -> Result<(Vec<Event>, bool), String> {
        let body: Value = serde_json::from_str(data).map_err(|_| format!("{event} is not JSON"))?;
        let kind = if event.is_empty() {
            body["type"].as_str().unwrap_or_default()
        } else {
            event
        };
        let events = match kind {
            "message_start" => {
                let usage = &body["message"]["usage"];
                self.usage.input_tokens = usage["input_tokens"].as_u64().unwrap_or(0);
                self.usage.output_tokens = usage["output_tokens"].as_u64().unwrap_or(0);
                Vec::new()
            }
            "content_block_start" => {
                let block = &body["content_block"];
                match block["type"].as_str() {
                    Some("tool_use") => {
                        let index = body["index"].as_u64().ok_or("a block has no index")?;
                        let call = u32::try_from(self.tool_blocks.len()).unwrap_or(u32::MAX);
                        self.tool_blocks.insert(index, call);
                        vec![Event::ToolCallDelta {
                            index: call,
                            id: block["id"].as_str().map(str::to_owned),
                            name: block["name"].as_str().map(str::to_owned),
                            arguments: String::new(),
                        }]
                    }
                    Some("text") => match block["text"].as_str().filter(|t| !t.is_empty()) {
                        Some(text) => vec![Event::TextDelta {
                            text: text.to_owned(),
                        }],
                        None => Vec::new(),
                    },
                    _ => Vec::new(),
                }
            }
            "content_block_delta" => {
                let delta = &body["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => vec![Event::TextDelta {
                        text: delta["text"].as_str().unwrap_or_default().to_owned(),
                    }],
                    Some("input_json_delta") => {
                        let index = body["index"].as_u64().ok_or("a delta has no index")?;
                        let call = *self
                            .tool_blocks
                            .get(&index)
                            .ok_or("arguments for a block that is not a tool call")?;
                        vec![Event::ToolCallDelta {
                            index: call,
                            id: None,
                            name: None,
                            arguments: delta["partial_json"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                        }]
                    }
                    // Thinking and signature deltas are not part of the reply.
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                if let Some(reason) = body["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(match reason {
                        "max_tokens" => StopReason::MaxTokens,
                        "stop_sequence" => StopReason::StopSequence,
                        "tool_use" => StopReason::ToolUse,
                        "refusal" => StopReason::Refused,
                        _ => StopReason::EndTurn,
                    });
                }
                if let Some(output) = body["usage"]["output_tokens"].as_u64() {
                    self.usage.output_tokens = output;
                }
                vec![Event::Usage(self.usage)]
            }
            "message_stop" => {
                let stop_reason = self
                    .stop_reason
                    .ok_or("message_stop before a stop reason")?;
                return Ok((vec![Event::Done { stop_reason }], true));
            }
            "error" => {
                let error = &body["error"];
                let failure = match error["type"].as_str() {
                    Some("overloaded_error") => ProviderError::Failed { status: 529 },
                    Some("rate_limit_error") => ProviderError::RateLimited {
                        retry_after_secs: None,
                    },
                    Some("api_error") => ProviderError::Failed { status: 500 },
                    _ => ProviderError::Protocol {
                        message: error["message"].as_str().unwrap_or("error").to_owned(),
                    },
                };
                return Ok((vec![Event::Error(failure)], true));
            }
            // `ping`, `content_block_stop`, and event types added later.
            _ => Vec::new(),
        };
        Ok((events, false))
    }
}

#[async_trait::async_trait]
impl Provider for Anthropic {
    fn name(&self) -> &str {
        "anthropic"
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", wire::key_header(&self.api_key)?);
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        let response = wire::send(
            self.client
                .post(format!("{}/v1/messages", self.base_url))
                .headers(headers)
                .json(&messages_body(&request)),
        )
        .await?;
        Ok(sse::decode(response, Messages::default()))
    }
}
