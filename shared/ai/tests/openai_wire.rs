//! The OpenAI-compatible adapter at the wire: a local server speaking the Chat Completions
//! and Embeddings protocol checks each request's shape and answers as the protocol documents
//! (server-sent `chat.completion.chunk`s, a usage chunk, `data: [DONE]`; error statuses with
//! `{"error":{"message"}}` bodies).

mod support;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures_util::StreamExt;
use jarvis_ai::openai::OpenAi;
use jarvis_ai::{
    ChatRequest, Event, Message, Part, Provider, ProviderError, Role, StopReason, Tool, ToolCall,
    collect,
};
use secrecy::SecretString;
use serde_json::{Value, json};
use support::{Server, status};

const KEY: &str = "sk-test-0123456789abcdef";

fn sse(chunks: &[Value], done: bool) -> Response {
    let mut messages: Vec<(&str, String)> = chunks.iter().map(|c| ("", c.to_string())).collect();
    if done {
        messages.push(("", "[DONE]".to_owned()));
    }
    support::events(&messages)
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_763_700_000,
        "model": "gpt-4o-mini",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
    })
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_763_700_000,
        "model": "gpt-4o-mini", "choices": [],
        "usage": { "prompt_tokens": prompt, "completion_tokens": completion,
                   "total_tokens": prompt + completion }
    })
}

async fn start(answers: Vec<Response>) -> (OpenAi, Arc<Server>) {
    let (base, server) = support::serve(&["/v1/chat/completions", "/v1/embeddings"], answers).await;
    let provider = OpenAi::new(
        reqwest::Client::new(),
        &format!("{base}/v1/"),
        Some(SecretString::from(KEY)),
    )
    .with_embedding_model("text-embedding-3-small");
    (provider, server)
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "gpt-4o-mini".into(),
        system: Some("Be brief.".into()),
        messages: vec![Message {
            role: Role::User,
            parts: vec![
                Part::Text {
                    text: "What is in this picture?".into(),
                },
                Part::Image {
                    media_type: "image/png".into(),
                    data: "iVBORw0KGgo=".into(),
                },
            ],
        }],
        tools: vec![Tool {
            name: "get_weather".into(),
            description: "The weather in a city".into(),
            parameters: json!({
                "type": "object",
                "properties": { "location": { "type": "string" } },
                "required": ["location"]
            }),
        }],
        temperature: Some(0.5),
        max_output_tokens: Some(200),
        stop: vec!["\n\n".into()],
    }
}

async fn events(provider: &OpenAi) -> Vec<Event> {
    provider
        .stream(request())
        .await
        .expect("stream")
        .collect()
        .await
}

#[tokio::test]
async fn a_streamed_text_reply_arrives_as_deltas_then_usage_then_done_and_the_request_has_the_documented_shape()
 {
    let (provider, server) = start(vec![sse(
        &[
            chunk(json!({ "role": "assistant", "content": "" }), None),
            chunk(json!({ "content": "A cat" }), None),
            chunk(json!({ "content": " on a mat." }), None),
            chunk(json!({}), Some("stop")),
            usage(31, 6),
        ],
        true,
    )])
    .await;
    assert_eq!(
        events(&provider).await,
        vec![
            Event::TextDelta {
                text: "A cat".into()
            },
            Event::TextDelta {
                text: " on a mat.".into()
            },
            Event::Usage(jarvis_ai::Usage {
                input_tokens: 31,
                output_tokens: 6
            }),
            Event::Done {
                stop_reason: StopReason::EndTurn
            },
        ]
    );

    let asked = server.asked.lock().expect("lock");
    let (headers, body) = &asked[0];
    assert_eq!(headers["authorization"], format!("Bearer {KEY}").as_str());
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["max_tokens"], 200);
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(body["stop"], json!(["\n\n"]));
    assert_eq!(
        body["messages"],
        json!([
            { "role": "system", "content": "Be brief." },
            { "role": "user", "content": [
                { "type": "text", "text": "What is in this picture?" },
                { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } }
            ]}
        ])
    );
    assert_eq!(
        body["tools"][0],
        json!({ "type": "function", "function": {
            "name": "get_weather", "description": "The weather in a city",
            "parameters": request().tools[0].parameters
        }})
    );
}

#[tokio::test]
async fn a_tool_call_with_arguments_split_across_chunks_is_collected_whole() {
    let (provider, _) = start(vec![sse(
        &[
            chunk(
                json!({ "role": "assistant", "content": null, "tool_calls": [{
                    "index": 0, "id": "call_abc", "type": "function",
                    "function": { "name": "get_weather", "arguments": "" }
                }]}),
                None,
            ),
            chunk(
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "{\"loc" } }] }),
                None,
            ),
            chunk(
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": "ation\": \"Paris\"}" } }] }),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
            usage(82, 17),
        ],
        true,
    )])
    .await;
    let reply = collect(provider.stream(request()).await.expect("stream"))
        .await
        .expect("reply");
    assert_eq!(
        reply.tool_calls,
        vec![ToolCall {
            id: "call_abc".into(),
            name: "get_weather".into(),
            arguments: json!({ "location": "Paris" }),
        }]
    );
    assert_eq!(reply.stop_reason, StopReason::ToolUse);
    assert_eq!(reply.usage.output_tokens, 17);
}

#[tokio::test]
async fn error_statuses_become_typed_errors_that_never_carry_the_key() {
    let mut too_many = status(429, json!({ "error": { "message": "Rate limit reached" } }));
    too_many
        .headers_mut()
        .insert("retry-after", "7".parse().expect("header"));
    let (provider, _) = start(vec![
        too_many,
        status(500, json!({ "error": { "message": "boom" } })),
        status(
            401,
            json!({ "error": { "message": "Incorrect API key provided" } }),
        ),
    ])
    .await;
    let errors: Vec<ProviderError> = [
        provider.stream(request()).await.err(),
        provider.stream(request()).await.err(),
        provider.stream(request()).await.err(),
    ]
    .into_iter()
    .map(|e| e.expect("an error"))
    .collect();
    assert_eq!(
        errors[0],
        ProviderError::RateLimited {
            retry_after_secs: Some(7)
        }
    );
    assert_eq!(errors[1], ProviderError::Failed { status: 500 });
    assert_eq!(
        errors[2],
        ProviderError::Refused {
            status: 401,
            message: "Incorrect API key provided".into()
        }
    );
    for err in &errors {
        assert!(!err.to_string().contains(KEY));
        assert!(!format!("{err:?}").contains(KEY));
    }
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_ends_with_an_error_event_after_the_text_sent() {
    let first = format!(
        "data: {}\n\ndata: {}\n\n",
        chunk(json!({ "role": "assistant", "content": "" }), None),
        chunk(json!({ "content": "Half a" }), None)
    );
    // The first chunks reach the client; then the connection breaks.
    let body = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from(first))]).chain(
        futures_util::stream::once(async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            Err(std::io::Error::other("connection reset"))
        }),
    );
    let dropped = Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(body))
        .expect("response");
    let (provider, _) = start(vec![dropped]).await;
    let events = events(&provider).await;
    assert_eq!(
        events[0],
        Event::TextDelta {
            text: "Half a".into()
        }
    );
    assert!(
        matches!(
            events.last(),
            Some(Event::Error(ProviderError::Unreachable { .. }))
        ),
        "{events:?}"
    );
    assert_eq!(events.len(), 2);
}

#[tokio::test]
async fn a_stream_closed_before_its_finish_is_truncated_not_complete() {
    let (provider, _) = start(vec![sse(
        &[chunk(json!({ "content": "Hel" }), None)],
        false,
    )])
    .await;
    let reply = collect(provider.stream(request()).await.expect("stream")).await;
    assert_eq!(reply, Err(ProviderError::Truncated));
}

#[tokio::test]
async fn embeddings_come_back_in_the_order_of_the_texts() {
    let (provider, server) = start(vec![status(
        200,
        json!({
            "object": "list", "model": "text-embedding-3-small",
            "data": [
                { "object": "embedding", "index": 1, "embedding": [0.0, 1.0] },
                { "object": "embedding", "index": 0, "embedding": [1.0, 0.0] }
            ],
            "usage": { "prompt_tokens": 4, "total_tokens": 4 }
        }),
    )])
    .await;
    let vectors = provider
        .embed(&["first".to_owned(), "second".to_owned()])
        .await
        .expect("vectors");
    assert_eq!(vectors, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    let asked = server.asked.lock().expect("lock");
    assert_eq!(
        asked[0].1,
        json!({ "model": "text-embedding-3-small", "input": ["first", "second"] })
    );
}

#[test]
fn openai_models_are_counted_with_their_own_encodings() {
    let server = OpenAi::new(reqwest::Client::new(), "http://127.0.0.1:9/v1", None);
    assert_eq!(server.count_tokens("gpt-4o", "hello world"), Some(2));
    assert_eq!(server.count_tokens("gpt-4", "hello world"), Some(2));
    let long = "antidisestablishmentarianism ".repeat(10);
    let counted = server.count_tokens("gpt-4o-mini", &long).expect("counted");
    assert!(counted > 10 && counted < long.len() as u64 / 3, "{counted}");
    assert_eq!(
        server.count_tokens("llama3.2", "hello"),
        None,
        "not an OpenAI model"
    );
}
