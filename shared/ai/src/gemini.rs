//! Google's Gemini API: `generateContent` streamed as server-sent events, with function
//! calling.
//!
//! `POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse` with the key in
//! `x-goog-api-key` answers `data:` chunks of `GenerateContentResponse`: `candidates[0]`
//! with `content.parts` (`text`, or a whole `functionCall {name, args}`) and, on the last, a
//! `finishReason`; `usageMetadata` with the token counts. The stream ends when the server
//! closes it. A function's answer goes back as a `functionResponse` part naming the
//! function, which this adapter finds from the call it answers.

use std::collections::HashMap;

use secrecy::SecretString;
use serde_json::{Value, json};

use crate::{
    ChatRequest, Event, EventStream, Part, Provider, ProviderError, Role, StopReason, Usage, sse,
    wire,
};

/// Gemini, or a server speaking its API.
pub struct Gemini {
    client: reqwest::Client,
    base_url: String,
    api_key: SecretString,
    embedding_model: Option<String>,
}

impl Gemini {
    /// The API at `base_url` (`https://generativelanguage.googleapis.com`).
    pub fn new(client: reqwest::Client, base_url: &str, api_key: SecretString) -> Self {
        Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            embedding_model: None,
        }
    }

    /// The same API, embedding with `model` (e.g. `gemini-embedding-001`).
    pub fn with_embedding_model(mut self, model: impl Into<String>) -> Self {
        self.embedding_model = Some(model.into());
        self
    }

    /// `{base}/v1beta/models/{model}:{method}`, once `model` is known to stay one segment.
    fn url(&self, model: &str, method: &str) -> Result<String, ProviderError> {
        let model = model.trim_start_matches("models/");
        if model.is_empty()
            || !model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || model.contains("..")
        {
            return Err(ProviderError::Refused {
                status: 400,
                message: "a Gemini model name is letters, digits, '-', '_' and '.'".into(),
            });
        }
        Ok(format!("{}/v1beta/models/{model}:{method}", self.base_url))
    }
}

/// The request body of a `streamGenerateContent` call.
pub fn generate_body(request: &ChatRequest) -> Value {
    // A function's answer names the function; ours names the call.
    let names: HashMap<&str, &str> = request
        .messages
        .iter()
        .flat_map(|m| &m.parts)
        .filter_map(|part| match part {
            Part::ToolCall { id, name, .. } => Some((id.as_str(), name.as_str())),
            _ => None,
        })
        .collect();
    let contents: Vec<Value> = request
        .messages
        .iter()
        .map(|message| {
            let role = match message.role {
                Role::Assistant => "model",
                Role::User | Role::Tool => "user",
            };
            let parts: Vec<Value> = message
                .parts
                .iter()
                .map(|part| match part {
                    Part::Text { text } => json!({ "text": text }),
                    Part::Image { media_type, data } => {
                        json!({ "inlineData": { "mimeType": media_type, "data": data } })
                    }
                    Part::ToolCall {
                        name, arguments, ..
                    } => json!({ "functionCall": { "name": name, "args": arguments } }),
                    Part::ToolResult {
                        call_id,
                        content,
                        is_error,
                    } => json!({ "functionResponse": {
                        "name": names.get(call_id.as_str()).copied().unwrap_or(call_id.as_str()),
                        "response": if *is_error {
                            json!({ "error": content })
                        } else {
                            json!({ "content": content })
                        }
                    }}),
                })
                .collect();
            json!({ "role": role, "parts": parts })
        })
        .collect();
    let mut body = json!({ "contents": contents });
    if let Some(system) = &request.system {
        body["systemInstruction"] = json!({ "parts": [{ "text": system }] });
    }
    if !request.tools.is_empty() {
        let declarations: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                })
            })
            .collect();
        body["tools"] = json!([{ "functionDeclarations": declarations }]);
    }
    let mut config = serde_json::Map::new();
    if let Some(temperature) = request.temperature {
        config.insert("temperature".into(), wire::decimal(temperature));
    }
    if let Some(max) = request.max_output_tokens {
        config.insert("maxOutputTokens".into(), json!(max));
    }
    if !request.stop.is_empty() {
        config.insert("stopSequences".into(), json!(request.stop));
    }
    if !config.is_empty() {
        body["generationConfig"] = Value::Object(config);
    }
    body
}

/// Reads `GenerateContentResponse` chunks.
#[derive(Default)]
struct Chunks {
    finish: Option<StopReason>,
    calls: u32,
}

impl sse::Decoder for Chunks {
    fn message(&mut self, _: &str, data: &str) -> Result<(Vec<Event>, bool), String> {
        let chunk: Value = serde_json::from_str(data).map_err(|_| "a chunk is not JSON")?;
        if let Some(error) = chunk.get("error") {
            return Err(format!(
                "the server sent an error: {}",
                error["message"].as_str().unwrap_or("unknown")
            ));
        }
        let mut events = Vec::new();
        if let Some(candidate) = chunk["candidates"].get(0) {
            for part in candidate["content"]["parts"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(text) = part["text"].as_str().filter(|t| !t.is_empty()) {
                    // Thought summaries are not part of the reply.
                    if part["thought"].as_bool() != Some(true) {
                        events.push(Event::TextDelta {
                            text: text.to_owned(),
                        });
                    }
                }
                if let Some(call) = part.get("functionCall") {
                    let index = self.calls;
                    self.calls += 1;
                    let id = call["id"]
                        .as_str()
                        .map_or_else(|| format!("call_{index}"), str::to_owned);
                    events.push(Event::ToolCallDelta {
                        index,
                        id: Some(id),
                        name: call["name"].as_str().map(str::to_owned),
                        arguments: call.get("args").map_or_else(String::new, Value::to_string),
                    });
                }
            }
            if let Some(reason) = candidate["finishReason"].as_str() {
                self.finish = Some(match reason {
                    "MAX_TOKENS" => StopReason::MaxTokens,
                    "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" => {
                        StopReason::Refused
                    }
                    _ if self.calls > 0 => StopReason::ToolUse,
                    _ => StopReason::EndTurn,
                });
            }
        }
        if let Some(usage) = chunk.get("usageMetadata") {
            events.push(Event::Usage(Usage {
                input_tokens: usage["promptTokenCount"].as_u64().unwrap_or(0),
                output_tokens: usage["candidatesTokenCount"].as_u64().unwrap_or(0)
                    + usage["thoughtsTokenCount"].as_u64().unwrap_or(0),
            }));
        }
        Ok((events, false))
    }

    /// The server ends the stream by closing it; the reply is whole if it said why it ended.
    fn closed(&mut self) -> Event {
        match self.finish {
            Some(stop_reason) => Event::Done { stop_reason },
            None => Event::Error(ProviderError::Truncated),
        }
    }
}

#[async_trait::async_trait]
impl Provider for Gemini {
    fn name(&self) -> &str {
        "gemini"
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        let key = wire::key_header(&self.api_key)?;
        let url = self.url(&request.model, "streamGenerateContent")?;
        let response = wire::send(
            self.client
                .post(url)
                .query(&[("alt", "sse")])
                .header("x-goog-api-key", key)
                .json(&generate_body(&request)),
        )
        .await?;
        Ok(sse::decode(response, Chunks::default()))
    }

    /// Embeds `texts`, in order, with `batchEmbedContents` and the embedding model this API
    /// was given.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let Some(model) = &self.embedding_model else {
            return Err(ProviderError::Unsupported {
                what: "embedding without an embedding model".into(),
            });
        };
        let url = self.url(model, "batchEmbedContents")?;
        let name = format!("models/{}", model.trim_start_matches("models/"));
        let requests: Vec<Value> = texts
            .iter()
            .map(|text| json!({ "model": name, "content": { "parts": [{ "text": text }] } }))
            .collect();
        let response = wire::send(
            self.client
                .post(url)
                .header("x-goog-api-key", wire::key_header(&self.api_key)?)
                .json(&json!({ "requests": requests })),
        )
        .await?;
        let body: Value = response.json().await.map_err(wire::unreachable)?;
        let protocol = |message: &str| ProviderError::Protocol {
            message: message.to_owned(),
        };
        let vectors = body["embeddings"]
            .as_array()
            .ok_or_else(|| protocol("no embeddings in the answer"))?
            .iter()
            .map(|embedding| {
                wire::vector(&embedding["values"])
                    .ok_or_else(|| protocol("an embedding is not an array of numbers"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if vectors.len() != texts.len() {
            return Err(protocol("the embeddings do not match the texts one to one"));
        }
        Ok(vectors)
    }
}
