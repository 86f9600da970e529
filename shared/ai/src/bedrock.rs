//! Amazon Bedrock's Converse API, streamed (`ConverseStream`), through
//! `aws-sdk-bedrockruntime`: on Lambda the function's IAM role signs each call, so no key is
//! kept anywhere. Cargo feature `bedrock`.
//!
//! The stream's events are `messageStart`, `contentBlockStart` (a tool use's id and name),
//! `contentBlockDelta` (text, or a fragment of a tool use's JSON input), `contentBlockStop`,
//! `messageStop` (the stop reason) and `metadata` (token usage), in that order; the reply is
//! complete after both `messageStop` and `metadata`, or when the stream ends after
//! `messageStop`. Embeddings come from an Amazon Titan text embeddings model through
//! `InvokeModel`.

use std::collections::HashMap;

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError as CallError;
use aws_sdk_bedrockruntime::operation::invoke_model::InvokeModelError as InvokeError;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError as StreamFailure;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ContentBlockStart, ConversationRole, ConverseStreamOutput,
    ImageBlock, ImageFormat, ImageSource, InferenceConfiguration, Message, StopReason as Stop,
    SystemContentBlock, Tool as BedrockTool, ToolConfiguration, ToolInputSchema, ToolResultBlock,
    ToolResultContentBlock, ToolResultStatus, ToolSpecification, ToolUseBlock,
};
use aws_smithy_types::{Document, Number};
use futures_util::StreamExt;
use serde_json::Value;

use crate::{
    ChatRequest, Event, EventStream, Part, Provider, ProviderError, Role, StopReason, Usage,
};

/// Bedrock in one region (the client's).
pub struct Bedrock {
    client: Client,
    embedding_model: Option<String>,
}

impl Bedrock {
    /// Calls Bedrock through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            embedding_model: None,
        }
    }

    /// The same, embedding with an Amazon Titan text embeddings model (e.g.
    /// `amazon.titan-embed-text-v2:0`) through `InvokeModel`.
    pub fn with_embedding_model(mut self, model: impl Into<String>) -> Self {
        self.embedding_model = Some(model.into());
        self
    }
}

/// JSON as the SDK's document type.
pub fn document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or(0.0))
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(document).collect()),
        Value::Object(map) => {
            Document::Object(map.iter().map(|(k, v)| (k.clone(), document(v))).collect())
        }
    }
}

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::Refused {
        status: 400,
        message: message.into(),
    }
}

fn image_format(media_type: &str) -> Result<ImageFormat, ProviderError> {
    match media_type {
        "image/png" => Ok(ImageFormat::Png),
        "image/jpeg" => Ok(ImageFormat::Jpeg),
        "image/gif" => Ok(ImageFormat::Gif),
        "image/webp" => Ok(ImageFormat::Webp),
        _ => Err(invalid("Bedrock takes PNG, JPEG, GIF or WebP images")),
    }
}

fn content(part: &Part) -> Result<ContentBlock, ProviderError> {
    use base64::Engine as _;
    let built = |err: aws_smithy_types::error::operation::BuildError| invalid(err.to_string());
    Ok(match part {
        Part::Text { text } => ContentBlock::Text(text.clone()),
        Part::Image { media_type, data } => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|_| invalid("an image is not base64"))?;
            ContentBlock::Image(
                ImageBlock::builder()
                    .format(image_format(media_type)?)
                    .source(ImageSource::Bytes(Blob::new(bytes)))
                    .build()
                    .map_err(built)?,
            )
        }
        Part::ToolCall {
            id,
            name,
            arguments,
        } => ContentBlock::ToolUse(
            ToolUseBlock::builder()
                .tool_use_id(id)
                .name(name)
                .input(document(arguments))
                .build()
                .map_err(built)?,
        ),
        Part::ToolResult {
            call_id,
            content,
            is_error,
        } => ContentBlock::ToolResult(
            ToolResultBlock::builder()
                .tool_use_id(call_id)
                .content(ToolResultContentBlock::Text(content.clone()))
                .status(if *is_error {
                    ToolResultStatus::Error
                } else {
                    ToolResultStatus::Success
                })
                .build()
                .map_err(built)?,
        ),
    })
}

/// What a Bedrock error stands for, from its modelled type.
enum Failure {
    Throttled,
    Unavailable,
    Internal,
    Timeout,
    Denied,
    NotFound,
    Invalid,
}

fn call_failure(err: &CallError) -> Failure {
    match err {
        CallError::ThrottlingException(_) => Failure::Throttled,
        CallError::ServiceUnavailableException(_) | CallError::ModelNotReadyException(_) => {
            Failure::Unavailable
        }
        CallError::InternalServerException(_)
        | CallError::ModelStreamErrorException(_)
        | CallError::ModelErrorException(_) => Failure::Internal,
        CallError::ModelTimeoutException(_) => Failure::Timeout,
        CallError::AccessDeniedException(_) => Failure::Denied,
        CallError::ResourceNotFoundException(_) => Failure::NotFound,
        _ => Failure::Invalid,
    }
}

fn invoke_failure(err: &InvokeError) -> Failure {
    match err {
        InvokeError::ThrottlingException(_) => Failure::Throttled,
        InvokeError::ServiceUnavailableException(_) | InvokeError::ModelNotReadyException(_) => {
            Failure::Unavailable
        }
        InvokeError::InternalServerException(_) | InvokeError::ModelErrorException(_) => {
            Failure::Internal
        }
        InvokeError::ModelTimeoutException(_) => Failure::Timeout,
        InvokeError::AccessDeniedException(_) => Failure::Denied,
        InvokeError::ResourceNotFoundException(_) => Failure::NotFound,
        _ => Failure::Invalid,
    }
}

fn stream_failure(err: &StreamFailure) -> Failure {
    match err {
        StreamFailure::ThrottlingException(_) => Failure::Throttled,
        StreamFailure::ServiceUnavailableException(_) => Failure::Unavailable,
        StreamFailure::InternalServerException(_) | StreamFailure::ModelStreamErrorException(_) => {
            Failure::Internal
        }
        _ => Failure::Invalid,
    }
}

fn error_of<E: ProvideErrorMetadata, R>(
    err: &SdkError<E, R>,
    failure: fn(&E) -> Failure,
) -> ProviderError {
    match err {
        SdkError::ServiceError(service) => {
            let message = service.err().message().unwrap_or("refused").to_owned();
            match failure(service.err()) {
                Failure::Throttled => ProviderError::RateLimited {
                    retry_after_secs: None,
                },
                Failure::Unavailable => ProviderError::Failed { status: 503 },
                Failure::Internal => ProviderError::Failed { status: 500 },
                Failure::Timeout => ProviderError::Failed { status: 408 },
                Failure::Denied => ProviderError::Refused {
                    status: 403,
                    message,
                },
                Failure::NotFound => ProviderError::Refused {
                    status: 404,
                    message,
                },
                Failure::Invalid => ProviderError::Refused {
                    status: 400,
                    message,
                },
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ProviderError::Unreachable {
                message: "Bedrock could not be reached".into(),
            }
        }
        _ => ProviderError::Protocol {
            message: "Bedrock answered outside its protocol".into(),
        },
    }
}

/// What the stream has said so far.
#[derive(Default)]
struct Reading {
    stop: Option<StopReason>,
    usage: bool,
    /// Content block index → tool call index.
    tools: HashMap<i32, u32>,
}

impl Reading {
    fn events(&mut self, output: ConverseStreamOutput) -> (Vec<Event>, bool) {
        let events = match output {
            ConverseStreamOutput::ContentBlockStart(start) => match start.start() {
                Some(ContentBlockStart::ToolUse(tool)) => {
                    let index = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                    self.tools.insert(start.content_block_index(), index);
                    vec![Event::ToolCallDelta {
                        index,
                        id: Some(tool.tool_use_id().to_owned()),
                        name: Some(tool.name().to_owned()),
                        arguments: String::new(),
                    }]
                }
                _ => Vec::new(),
            },
            ConverseStreamOutput::ContentBlockDelta(delta) => match delta.delta() {
                Some(ContentBlockDelta::Text(text)) => {
                    vec![Event::TextDelta { text: text.clone() }]
                }
                Some(ContentBlockDelta::ToolUse(tool)) => {
                    match self.tools.get(&delta.content_block_index()) {
                        Some(index) => vec![Event::ToolCallDelta {
                            index: *index,
                            id: None,
                            name: None,
                            arguments: tool.input().to_owned(),
                        }],
                        None => vec![Event::Error(ProviderError::Protocol {
                            message: "tool input for a block that is not a tool use".into(),
                        })],
                    }
                }
                _ => Vec::new(),
            },
            ConverseStreamOutput::MessageStop(stop) => {
                self.stop = Some(match stop.stop_reason() {
                    Stop::MaxTokens | Stop::ModelContextWindowExceeded => StopReason::MaxTokens,
                    Stop::StopSequence => StopReason::StopSequence,
                    Stop::ToolUse => StopReason::ToolUse,
                    Stop::ContentFiltered | Stop::GuardrailIntervened => StopReason::Refused,
                    _ => StopReason::EndTurn,
                });
                Vec::new()
            }
            ConverseStreamOutput::Metadata(metadata) => {
                self.usage = true;
                metadata.usage().map_or_else(Vec::new, |usage| {
                    vec![Event::Usage(Usage {
                        input_tokens: u64::try_from(usage.input_tokens()).unwrap_or(0),
                        output_tokens: u64::try_from(usage.output_tokens()).unwrap_or(0),
                    })]
                })
            }
            _ => Vec::new(),
        };
        let failed = events.iter().any(|e| matches!(e, Event::Error(_)));
        (events, failed)
    }

    fn done(&self) -> Option<Event> {
        self.stop.map(|stop_reason| Event::Done { stop_reason })
    }
}

#[async_trait::async_trait]
impl Provider for Bedrock {
    fn name(&self) -> &str {
        "bedrock"
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        let messages = request
            .messages
            .iter()
            .map(|message| {
                let role = match message.role {
                    Role::Assistant => ConversationRole::Assistant,
                    Role::User | Role::Tool => ConversationRole::User,
                };
                let content = message
                    .parts
                    .iter()
                    .map(content)
                    .collect::<Result<Vec<_>, _>>()?;
                Message::builder()
                    .role(role)
                    .set_content(Some(content))
                    .build()
                    .map_err(|err| invalid(err.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut inference = InferenceConfiguration::builder()
            .set_temperature(request.temperature)
            .set_max_tokens(
                request
                    .max_output_tokens
                    .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            );
        if !request.stop.is_empty() {
            inference = inference.set_stop_sequences(Some(request.stop.clone()));
        }
        let mut call = self
            .client
            .converse_stream()
            .model_id(&request.model)
            .set_messages(Some(messages))
            .inference_config(inference.build());
        if let Some(system) = &request.system {
            call = call.system(SystemContentBlock::Text(system.clone()));
        }
        if !request.tools.is_empty() {
            let tools = request
                .tools
                .iter()
                .map(|tool| {
                    ToolSpecification::builder()
                        .name(&tool.name)
                        .description(&tool.description)
                        .input_schema(ToolInputSchema::Json(document(&tool.parameters)))
                        .build()
                        .map(BedrockTool::ToolSpec)
                        .map_err(|err| invalid(err.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            call = call.tool_config(
                ToolConfiguration::builder()
                    .set_tools(Some(tools))
                    .build()
                    .map_err(|err| invalid(err.to_string()))?,
            );
        }
        let output = call
            .send()
            .await
            .map_err(|err| error_of(&err, call_failure))?;
        let events = futures_util::stream::unfold(
            (output.stream, Reading::default(), false),
            |(mut receiver, mut reading, ended)| async move {
                if ended {
                    return None;
                }
                loop {
                    match receiver.recv().await {
                        Ok(Some(output)) => {
                            let (mut events, failed) = reading.events(output);
                            let finished = reading.stop.is_some() && reading.usage;
                            if finished && !failed {
                                events.extend(reading.done());
                            }
                            if events.is_empty() {
                                continue;
                            }
                            let end = failed || finished;
                            return Some((events, (receiver, reading, end)));
                        }
                        Ok(None) => {
                            let last = reading
                                .done()
                                .unwrap_or(Event::Error(ProviderError::Truncated));
                            return Some((vec![last], (receiver, reading, true)));
                        }
                        Err(err) => {
                            let error = Event::Error(error_of(&err, stream_failure));
                            return Some((vec![error], (receiver, reading, true)));
                        }
                    }
                }
            },
        )
        .flat_map(futures_util::stream::iter);
        Ok(Box::pin(events))
    }

    /// The same client, embedding with `model` (a chain's target may be a Titan embeddings
    /// model; chat ignores it).
    fn for_model(&self, model: &str) -> Option<std::sync::Arc<dyn Provider>> {
        Some(std::sync::Arc::new(Self {
            client: self.client.clone(),
            embedding_model: Some(model.to_owned()),
        }))
    }

    /// Embeds `texts`, in order: Titan takes one text per `InvokeModel` call
    /// (`{"inputText"}` → `{"embedding": [...]}`), so the calls run concurrently.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let Some(model) = &self.embedding_model else {
            return Err(ProviderError::Unsupported {
                what: "embedding without an embedding model".into(),
            });
        };
        let calls = texts.iter().map(|text| async move {
            let body = serde_json::json!({ "inputText": text }).to_string();
            let output = self
                .client
                .invoke_model()
                .model_id(model)
                .content_type("application/json")
                .accept("application/json")
                .body(Blob::new(body.into_bytes()))
                .send()
                .await
                .map_err(|err| error_of(&err, invoke_failure))?;
            let answer: Value = serde_json::from_slice(output.body().as_ref()).map_err(|_| {
                ProviderError::Protocol {
                    message: "the embedding answer is not JSON".into(),
                }
            })?;
            crate::wire::vector(&answer["embedding"]).ok_or_else(|| ProviderError::Protocol {
                message: "the answer holds no embedding".into(),
            })
        });
        futures_util::future::try_join_all(calls).await
    }
}
