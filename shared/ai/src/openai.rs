//! OpenAI-compatible Chat Completions, streamed, with tools and embeddings, at any base URL:
//! OpenAI itself, and the servers that speak its protocol (Ollama, vLLM, llama.cpp's server,
//! LM Studio, OpenRouter, Groq).
//!
//! `POST {base}/chat/completions` with `"stream": true` and `"stream_options":
//! {"include_usage": true}` answers server-sent events, each `data:` a `chat.completion.chunk`
//! (`choices[0].delta` with `content` or `tool_calls` fragments, then a `finish_reason`), a
//! last chunk with `usage` and empty `choices`, and `data: [DONE]`. `POST {base}/embeddings`
//! answers `data[i].embedding`. The API key is sent as a bearer token and never appears in
//! an error.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::{
    Audio, ChatRequest, Event, EventStream, Part, Provider, ProviderError, Role, SpeechRequest,
    StopReason, Usage, sse, wire,
};

/// An OpenAI-compatible server.
pub struct OpenAi {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<SecretString>,
    embedding_model: Option<String>,
}

impl OpenAi {
    /// A server at `base_url` (e.g. `https://api.openai.com/v1`, `http://127.0.0.1:11434/v1`),
    /// with `api_key` when it needs one.
    pub fn new(client: reqwest::Client, base_url: &str, api_key: Option<SecretString>) -> Self {
        Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            embedding_model: None,
        }
    }

    /// The same server, with `model` for the calls that name their model in the request:
    /// embeddings (`text-embedding-3-small`), transcriptions (`whisper-1`), speech (`tts-1`).
    pub fn with_embedding_model(mut self, model: impl Into<String>) -> Self {
        self.embedding_model = Some(model.into());
        self
    }

    async fn post(&self, path: &str, body: &Value) -> Result<reqwest::Response, ProviderError> {
        self.send(
            self.client
                .post(format!("{}{path}", self.base_url))
                .json(body),
        )
        .await
    }

    async fn send(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        wire::send(request).await
    }

    fn model_for(&self, what: &str) -> Result<&str, ProviderError> {
        self.embedding_model
            .as_deref()
            .ok_or_else(|| ProviderError::Unsupported {
                what: format!("{what} without a model"),
            })
    }
}

/// The request body of a chat completion.
pub fn chat_body(request: &ChatRequest) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = &request.system {
        messages.push(json!({ "role": "system", "content": system }));
    }
    for message in &request.messages {
        match message.role {
            Role::User => {
                let content: Vec<Value> = message
                    .parts
                    .iter()
                    .filter_map(|part| match part {
                        Part::Text { text } => Some(json!({ "type": "text", "text": text })),
                        Part::Image { media_type, data } => Some(json!({
                            "type": "image_url",
                            "image_url": { "url": format!("data:{media_type};base64,{data}") }
                        })),
                        _ => None,
                    })
                    .collect();
                messages.push(json!({ "role": "user", "content": content }));
            }
            Role::Assistant => {
                let calls: Vec<Value> = message
                    .parts
                    .iter()
                    .filter_map(|part| match part {
                        Part::ToolCall {
                            id,
                            name,
                            arguments,
                        } => Some(json!({
                            "id": id,
                            "type": "function",
                            "function": { "name": name, "arguments": arguments.to_string() }
                        })),
                        _ => None,
                    })
                    .collect();
                let mut entry = json!({ "role": "assistant", "content": message.text() });
                if !calls.is_empty() {
                    entry["tool_calls"] = Value::Array(calls);
                }
                messages.push(entry);
            }
            Role::Tool => {
                for part in &message.parts {
                    if let Part::ToolResult {
                        call_id, content, ..
                    } = part
                    {
                        messages.push(
                            json!({ "role": "tool", "tool_call_id": call_id, "content": content }),
                        );
                    }
                }
            }
        }
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    }
                })
            })
            .collect();
    }
    if let Some(temperature) = request.temperature {
        body["temperature"] = wire::decimal(temperature);
    }
    if let Some(max) = request.max_output_tokens {
        body["max_tokens"] = json!(max);
    }
    if !request.stop.is_empty() {
        body["stop"] = json!(request.stop);
    }
    body
}

/// Reads `chat.completion.chunk`s; the reply is complete at `[DONE]` after a finish reason.
#[derive(Default)]
struct Chunks {
    finish: Option<StopReason>,
}

impl sse::Decoder for Chunks {
    fn message(&mut self, _: &str, data: &str) -> Result<(Vec<Event>, bool), String> {
        if data.trim() == "[DONE]" {
            return match self.finish {
                Some(stop_reason) => Ok((vec![Event::Done { stop_reason }], true)),
                None => Err("[DONE] before a finish reason".into()),
            };
        }
        let chunk: Value = serde_json::from_str(data).map_err(|_| "a chunk is not JSON")?;
        if let Some(error) = chunk.get("error") {
            return Err(format!(
                "the server sent an error: {}",
                error["message"].as_str().unwrap_or("unknown")
            ));
        }
        Ok((chunk_events(&chunk, &mut self.finish)?, false))
    }

    /// Servers that close without `[DONE]` after a finish reason have still finished.
    fn closed(&mut self) -> Event {
        match self.finish {
            Some(stop_reason) => Event::Done { stop_reason },
            None => Event::Error(ProviderError::Truncated),
        }
    }
}

/// The events of one `chat.completion.chunk`, noting its finish reason in `finish`.
fn chunk_events(chunk: &Value, finish: &mut Option<StopReason>) -> Result<Vec<Event>, String> {
    if !chunk.is_object() {
        return Err("a chunk is not a JSON object".into());
    }
    let mut events = Vec::new();
    if let Some(choice) = chunk["choices"].get(0) {
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            events.push(Event::TextDelta {
                text: text.to_owned(),
            });
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"]
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or("a tool call fragment has no index")?;
            events.push(Event::ToolCallDelta {
                index,
                id: call["id"].as_str().map(str::to_owned),
                name: call["function"]["name"].as_str().map(str::to_owned),
                arguments: call["function"]["arguments"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            *finish = Some(match reason {
                "length" => StopReason::MaxTokens,
                "tool_calls" | "function_call" => StopReason::ToolUse,
                "content_filter" => StopReason::Refused,
                // "stop": the end of the turn or a stop sequence, which the protocol does
                // not tell apart.
                _ => StopReason::EndTurn,
            });
        }
    }
    if let Some(usage) = chunk["usage"].as_object() {
        events.push(Event::Usage(Usage {
            input_tokens: usage
                .get("prompt_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            output_tokens: usage
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        }));
    }
    Ok(events)
}

#[async_trait::async_trait]
impl Provider for OpenAi {
    /// OpenAI's own models, by their published encodings (`o200k_base` for the GPT-4o,
    /// GPT-4.1, GPT-5 and o-series families, `cl100k_base` for GPT-4 and GPT-3.5); other
    /// models of OpenAI-compatible servers are not counted here.
    #[cfg(feature = "openai-tokenizer")]
    fn count_tokens(&self, model: &str, text: &str) -> Option<u64> {
        use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};
        let encoding = match get_tokenizer(model)? {
            Tokenizer::O200kBase | Tokenizer::O200kHarmony => tiktoken_rs::o200k_base_singleton(),
            Tokenizer::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
            _ => return None,
        };
        u64::try_from(encoding.encode_ordinary(text).len()).ok()
    }

    fn name(&self) -> &str {
        "openai"
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        let response = self.post("/chat/completions", &chat_body(&request)).await?;
        Ok(sse::decode(response, Chunks::default()))
    }

    /// Embeds `texts`, in order, with the embedding model this server was given.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let Some(model) = &self.embedding_model else {
            return Err(ProviderError::Unsupported {
                what: "embedding without an embedding model".into(),
            });
        };
        let response = self
            .post("/embeddings", &json!({ "model": model, "input": texts }))
            .await?;
        let body: Value = response.json().await.map_err(wire::unreachable)?;
        let protocol = |message: &str| ProviderError::Protocol {
            message: message.to_owned(),
        };
        let mut rows: Vec<(u64, Vec<f32>)> = body["data"]
            .as_array()
            .ok_or_else(|| protocol("no data in the embeddings answer"))?
            .iter()
            .map(|row| {
                let index = row["index"]
                    .as_u64()
                    .ok_or_else(|| protocol("a row has no index"))?;
                let vector = wire::vector(&row["embedding"])
                    .ok_or_else(|| protocol("an embedding is not an array of numbers"))?;
                Ok((index, vector))
            })
            .collect::<Result<_, ProviderError>>()?;
        rows.sort_by_key(|(index, _)| *index);
        if rows.len() != texts.len() || rows.iter().enumerate().any(|(i, (n, _))| *n != i as u64) {
            return Err(protocol("the embeddings do not match the texts one to one"));
        }
        Ok(rows.into_iter().map(|(_, vector)| vector).collect())
    }

    /// `POST {base}/audio/transcriptions`, multipart: `file`, `model`, `language`,
    /// `response_format=json`; answers `{"text"}`.
    async fn transcribe(
        &self,
        audio: &Audio,
        language: Option<&str>,
    ) -> Result<String, ProviderError> {
        let model = self.model_for("transcription")?.to_owned();
        let extension =
            audio
                .media_type
                .rsplit('/')
                .next()
                .map_or("wav", |subtype| match subtype {
                    "mpeg" => "mp3",
                    "x-wav" | "wave" => "wav",
                    other => other,
                });
        let file = reqwest::multipart::Part::bytes(audio.bytes.clone())
            .file_name(format!("audio.{extension}"))
            .mime_str(&audio.media_type)
            .map_err(|_| ProviderError::Unsupported {
                what: format!("audio of type {}", audio.media_type),
            })?;
        let mut form = reqwest::multipart::Form::new()
            .part("file", file)
            .text("model", model)
            .text("response_format", "json");
        if let Some(language) = language {
            form = form.text("language", language.to_owned());
        }
        let url = format!("{}/audio/transcriptions", self.base_url);
        let response = self.send(self.client.post(url).multipart(form)).await?;
        let body: Value = response.json().await.map_err(wire::unreachable)?;
        body["text"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ProviderError::Protocol {
                message: "no text in the transcription answer".into(),
            })
    }

    /// `POST {base}/audio/speech` `{"model","input","voice","response_format"}`; answers
    /// the sound itself.
    async fn speak(&self, request: &SpeechRequest) -> Result<Audio, ProviderError> {
        let model = self.model_for("speech")?;
        let response = self
            .post(
                "/audio/speech",
                &json!({
                    "model": model,
                    "input": request.text,
                    "voice": request.voice,
                    "response_format": request.format.name(),
                }),
            )
            .await?;
        let bytes = response.bytes().await.map_err(wire::unreachable)?;
        if bytes.is_empty() {
            return Err(ProviderError::Protocol {
                message: "the speech answer is empty".into(),
            });
        }
        Ok(Audio {
            media_type: request.format.media_type().to_owned(),
            bytes: bytes.to_vec(),
        })
    }
}
