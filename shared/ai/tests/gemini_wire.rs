//! The Gemini adapter at the wire: a local server speaking `streamGenerateContent?alt=sse`
//! checks each request's shape and answers `GenerateContentResponse` chunks as documented,
//! the stream ending when the server closes it.

mod support;

use std::sync::Arc;

use futures_util::StreamExt;
use jarvis_ai::gemini::Gemini;
use jarvis_ai::{
    ChatRequest, Event, Message, Part, Provider, ProviderError, Role, StopReason, Tool, ToolCall,
    collect,
};
use secrecy::SecretString;
use serde_json::{Value, json};

const KEY: &str = "AIza-test-0123456789";
const PATH: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
const EMBED_PATH: &str = "/v1beta/models/gemini-embedding-001:batchEmbedContents";

fn chunk(parts: Value, finish: Option<&str>, usage: Option<(u64, u64)>) -> (&'static str, String) {
    let mut candidate = json!({ "content": { "parts": parts, "role": "model" }, "index": 0 });
    if let Some(reason) = finish {
        candidate["finishReason"] = json!(reason);
    }
    let mut body = json!({ "candidates": [candidate], "modelVersion": "gemini-2.5-flash" });
    if let Some((prompt, candidates)) = usage {
        body["usageMetadata"] = json!({
            "promptTokenCount": prompt, "candidatesTokenCount": candidates,
            "totalTokenCount": prompt + candidates
        });
    }
    ("", body.to_string())
}

async fn start(answers: Vec<axum::response::Response>) -> (Gemini, Arc<support::Server>) {
    let (base, server) = support::serve(&[PATH, EMBED_PATH], answers).await;
    let provider = Gemini::new(reqwest::Client::new(), &base, SecretString::from(KEY))
        .with_embedding_model("gemini-embedding-001");
    (provider, server)
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "gemini-2.5-flash".into(),
        system: Some("Be brief.".into()),
        messages: vec![
            Message {
                role: Role::User,
                parts: vec![
                    Part::Text {
                        text: "Weather in Paris?".into(),
                    },
                    Part::Image {
                        media_type: "image/png".into(),
                        data: "iVBORw0KGgo=".into(),
                    },
                ],
            },
            Message {
                role: Role::Assistant,
                parts: vec![Part::ToolCall {
                    id: "call_0".into(),
                    name: "geocode".into(),
                    arguments: json!({ "city": "Paris" }),
                }],
            },
            Message {
                role: Role::Tool,
                parts: vec![Part::ToolResult {
                    call_id: "call_0".into(),
                    content: "48.85,2.35".into(),
                    is_error: false,
                }],
            },
        ],
        tools: vec![Tool {
            name: "get_weather".into(),
            description: "The weather at a place".into(),
            parameters: json!({ "type": "object",
                "properties": { "location": { "type": "string" } } }),
        }],
        temperature: Some(0.3),
        max_output_tokens: Some(256),
        stop: vec!["END".into()],
    }
}

#[tokio::test]
async fn text_streams_until_the_server_closes_and_the_request_has_the_documented_shape() {
    let (provider, server) = start(vec![support::events(&[
        chunk(json!([{ "text": "It is " }]), None, None),
        chunk(json!([{ "text": "sunny." }]), Some("STOP"), Some((40, 5))),
    ])])
    .await;
    let events: Vec<Event> = provider
        .stream(request())
        .await
        .expect("stream")
        .collect()
        .await;
    assert_eq!(
        events,
        vec![
            Event::TextDelta {
                text: "It is ".into()
            },
            Event::TextDelta {
                text: "sunny.".into()
            },
            Event::Usage(jarvis_ai::Usage {
                input_tokens: 40,
                output_tokens: 5
            }),
            Event::Done {
                stop_reason: StopReason::EndTurn
            },
        ]
    );
    let asked = server.asked.lock().expect("lock");
    let (headers, body) = &asked[0];
    assert_eq!(headers["x-goog-api-key"], KEY);
    assert_eq!(
        body,
        &json!({
            "contents": [
                { "role": "user", "parts": [
                    { "text": "Weather in Paris?" },
                    { "inlineData": { "mimeType": "image/png", "data": "iVBORw0KGgo=" } }
                ]},
                { "role": "model", "parts": [
                    { "functionCall": { "name": "geocode", "args": { "city": "Paris" } } }
                ]},
                { "role": "user", "parts": [
                    { "functionResponse": { "name": "geocode",
                                            "response": { "content": "48.85,2.35" } } }
                ]}
            ],
            "systemInstruction": { "parts": [{ "text": "Be brief." }] },
            "tools": [{ "functionDeclarations": [{
                "name": "get_weather", "description": "The weather at a place",
                "parameters": request().tools[0].parameters
            }]}],
            "generationConfig": { "temperature": 0.3, "maxOutputTokens": 256,
                                  "stopSequences": ["END"] }
        })
    );
}

#[tokio::test]
async fn a_function_call_is_a_tool_call_with_its_arguments() {
    let (provider, _) = start(vec![support::events(&[chunk(
        json!([{ "functionCall": { "name": "get_weather", "args": { "location": "Paris" } } }]),
        Some("STOP"),
        Some((52, 9)),
    )])])
    .await;
    let reply = collect(provider.stream(request()).await.expect("stream"))
        .await
        .expect("reply");
    assert_eq!(
        reply.tool_calls,
        vec![ToolCall {
            id: "call_0".into(),
            name: "get_weather".into(),
            arguments: json!({ "location": "Paris" }),
        }]
    );
    assert_eq!(reply.stop_reason, StopReason::ToolUse);
}

#[tokio::test]
async fn a_stream_closed_before_a_finish_reason_is_truncated_and_errors_are_typed() {
    let (provider, _) = start(vec![
        support::events(&[chunk(json!([{ "text": "It is" }]), None, None)]),
        support::status(
            429,
            json!({ "error": { "code": 429, "message": "Resource has been exhausted",
                               "status": "RESOURCE_EXHAUSTED" } }),
        ),
        support::status(
            400,
            json!({ "error": { "code": 400, "message": "API key not valid",
                               "status": "INVALID_ARGUMENT" } }),
        ),
    ])
    .await;
    let reply = collect(provider.stream(request()).await.expect("stream")).await;
    assert_eq!(reply, Err(ProviderError::Truncated));
    assert_eq!(
        provider.stream(request()).await.err(),
        Some(ProviderError::RateLimited {
            retry_after_secs: None
        })
    );
    let refused = provider.stream(request()).await.err().expect("refused");
    assert_eq!(
        refused,
        ProviderError::Refused {
            status: 400,
            message: "API key not valid".into()
        }
    );
    assert!(!format!("{refused:?}").contains(KEY));
}

#[tokio::test]
async fn a_model_name_cannot_leave_its_path_segment() {
    let (provider, server) = start(Vec::new()).await;
    for model in ["../../v1/other", "gemini?x=1", ""] {
        let mut asked = request();
        asked.model = model.into();
        assert!(
            matches!(
                provider.stream(asked).await.err(),
                Some(ProviderError::Refused { status: 400, .. })
            ),
            "{model}"
        );
    }
    assert!(server.asked.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn embeddings_are_batched_in_one_call_and_come_back_in_order() {
    let (provider, server) = start(vec![support::status(
        200,
        json!({ "embeddings": [ { "values": [0.25, -0.5] }, { "values": [1.0, 0.0] } ] }),
    )])
    .await;
    let vectors = provider
        .embed(&["first".to_owned(), "second".to_owned()])
        .await
        .expect("vectors");
    assert_eq!(vectors, vec![vec![0.25, -0.5], vec![1.0, 0.0]]);
    let asked = server.asked.lock().expect("lock");
    assert_eq!(asked[0].0["x-goog-api-key"], KEY);
    assert_eq!(
        asked[0].1,
        json!({ "requests": [
            { "model": "models/gemini-embedding-001", "content": { "parts": [{ "text": "first" }] } },
            { "model": "models/gemini-embedding-001", "content": { "parts": [{ "text": "second" }] } }
        ]})
    );
}
