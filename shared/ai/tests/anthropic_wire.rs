//! The Anthropic adapter at the wire: a local server speaking the Messages API checks each
//! request's shape and answers with the named server-sent events the API documents
//! (`message_start`, `content_block_*`, `ping`, `message_delta`, `message_stop`, `error`).

mod support;

use futures_util::StreamExt;
use jarvis_ai::anthropic::{API_VERSION, Anthropic};
use jarvis_ai::{
    ChatRequest, Event, Message, Part, Provider, ProviderError, Role, StopReason, Tool, ToolCall,
    Usage, collect,
};
use secrecy::SecretString;
use serde_json::{Value, json};

const KEY: &str = "sk-ant-test-0123456789";

fn message(event: &'static str, data: Value) -> (&'static str, String) {
    (event, data.to_string())
}

fn start_events() -> Vec<(&'static str, String)> {
    vec![
        message(
            "message_start",
            json!({ "type": "message_start", "message": {
                "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant",
                "model": "claude-sonnet-4-5", "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": { "input_tokens": 472, "output_tokens": 2 }
            }}),
        ),
        message("ping", json!({ "type": "ping" })),
    ]
}

fn text_then_tool_use() -> Vec<(&'static str, String)> {
    let mut messages = start_events();
    messages.extend([
        message(
            "content_block_start",
            json!({ "type": "content_block_start", "index": 0,
                    "content_block": { "type": "text", "text": "" } }),
        ),
        message(
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0,
                    "delta": { "type": "text_delta", "text": "Okay, let me " } }),
        ),
        message(
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0,
                    "delta": { "type": "text_delta", "text": "check." } }),
        ),
        message(
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": 0 }),
        ),
        message(
            "content_block_start",
            json!({ "type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather", "input": {} } }),
        ),
        message(
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 1,
                    "delta": { "type": "input_json_delta", "partial_json": "" } }),
        ),
        message(
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 1,
                    "delta": { "type": "input_json_delta", "partial_json": "{\"location\":" } }),
        ),
        message(
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 1,
                    "delta": { "type": "input_json_delta", "partial_json": " \"San Fra" } }),
        ),
        message(
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 1,
                    "delta": { "type": "input_json_delta", "partial_json": "ncisco, CA\"}" } }),
        ),
        message(
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": 1 }),
        ),
        message(
            "message_delta",
            json!({ "type": "message_delta",
                    "delta": { "stop_reason": "tool_use", "stop_sequence": null },
                    "usage": { "output_tokens": 89 } }),
        ),
        message("message_stop", json!({ "type": "message_stop" })),
    ]);
    messages
}

async fn start(
    answers: Vec<axum::response::Response>,
) -> (Anthropic, std::sync::Arc<support::Server>) {
    let (base, server) = support::serve(&["/v1/messages"], answers).await;
    let provider = Anthropic::new(reqwest::Client::new(), &base, SecretString::from(KEY));
    (provider, server)
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "claude-sonnet-4-5".into(),
        system: Some("Be brief.".into()),
        messages: vec![
            Message {
                role: Role::User,
                parts: vec![
                    Part::Text {
                        text: "Weather where this was taken?".into(),
                    },
                    Part::Image {
                        media_type: "image/jpeg".into(),
                        data: "/9j/4AAQ".into(),
                    },
                ],
            },
            Message {
                role: Role::Assistant,
                parts: vec![Part::ToolCall {
                    id: "toolu_0".into(),
                    name: "locate".into(),
                    arguments: json!({ "image": 0 }),
                }],
            },
            Message {
                role: Role::Tool,
                parts: vec![Part::ToolResult {
                    call_id: "toolu_0".into(),
                    content: "San Francisco".into(),
                    is_error: false,
                }],
            },
        ],
        tools: vec![Tool {
            name: "get_weather".into(),
            description: "The weather in a city".into(),
            parameters: json!({ "type": "object",
                "properties": { "location": { "type": "string" } } }),
        }],
        temperature: Some(0.2),
        max_output_tokens: None,
        stop: vec!["END".into()],
    }
}

#[tokio::test]
async fn text_and_a_tool_call_stream_in_order_and_the_request_has_the_documented_shape() {
    let (provider, server) = start(vec![support::events(&text_then_tool_use())]).await;
    let events: Vec<Event> = provider
        .stream(request())
        .await
        .expect("stream")
        .collect()
        .await;
    assert_eq!(
        events[..3],
        [
            Event::TextDelta {
                text: "Okay, let me ".into()
            },
            Event::TextDelta {
                text: "check.".into()
            },
            Event::ToolCallDelta {
                index: 0,
                id: Some("toolu_01T1x1fJ34qAmk2tNTrN7Up6".into()),
                name: Some("get_weather".into()),
                arguments: String::new()
            },
        ]
    );
    assert_eq!(
        events[events.len() - 2..],
        [
            Event::Usage(Usage {
                input_tokens: 472,
                output_tokens: 89
            }),
            Event::Done {
                stop_reason: StopReason::ToolUse
            },
        ]
    );

    let asked = server.asked.lock().expect("lock");
    let (headers, body) = &asked[0];
    assert_eq!(headers["x-api-key"], KEY);
    assert_eq!(headers["anthropic-version"], API_VERSION);
    assert!(headers.get("authorization").is_none());
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["max_tokens"], 4096, "the API requires it");
    assert_eq!(body["stream"], true);
    assert_eq!(body["system"], "Be brief.");
    assert_eq!(body["stop_sequences"], json!(["END"]));
    assert_eq!(
        body["messages"],
        json!([
            { "role": "user", "content": [
                { "type": "text", "text": "Weather where this was taken?" },
                { "type": "image", "source": {
                    "type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ" } }
            ]},
            { "role": "assistant", "content": [
                { "type": "tool_use", "id": "toolu_0", "name": "locate", "input": { "image": 0 } }
            ]},
            { "role": "user", "content": [
                { "type": "tool_result", "tool_use_id": "toolu_0",
                  "content": "San Francisco", "is_error": false }
            ]}
        ])
    );
    assert_eq!(
        body["tools"],
        json!([{ "name": "get_weather", "description": "The weather in a city",
                 "input_schema": request().tools[0].parameters }])
    );
}

#[tokio::test]
async fn the_collected_reply_holds_the_text_and_the_whole_tool_call() {
    let (provider, _) = start(vec![support::events(&text_then_tool_use())]).await;
    let reply = collect(provider.stream(request()).await.expect("stream"))
        .await
        .expect("reply");
    assert_eq!(reply.text, "Okay, let me check.");
    assert_eq!(
        reply.tool_calls,
        vec![ToolCall {
            id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
            name: "get_weather".into(),
            arguments: json!({ "location": "San Francisco, CA" }),
        }]
    );
}

#[tokio::test]
async fn an_error_event_mid_stream_ends_the_reply_with_a_typed_error() {
    let mut messages = start_events();
    messages.push(message(
        "content_block_start",
        json!({ "type": "content_block_start", "index": 0,
                "content_block": { "type": "text", "text": "" } }),
    ));
    messages.push(message(
        "content_block_delta",
        json!({ "type": "content_block_delta", "index": 0,
                "delta": { "type": "text_delta", "text": "Hal" } }),
    ));
    messages.push(message(
        "error",
        json!({ "type": "error",
                "error": { "type": "overloaded_error", "message": "Overloaded" } }),
    ));
    let (provider, _) = start(vec![support::events(&messages)]).await;
    let events: Vec<Event> = provider
        .stream(request())
        .await
        .expect("stream")
        .collect()
        .await;
    assert_eq!(
        events,
        vec![
            Event::TextDelta { text: "Hal".into() },
            Event::Error(ProviderError::Failed { status: 529 }),
        ]
    );
}

#[tokio::test]
async fn a_429_names_its_retry_after_and_a_stream_without_message_stop_is_truncated() {
    let mut too_many = support::status(
        429,
        json!({ "type": "error", "error": { "type": "rate_limit_error", "message": "slow down" } }),
    );
    too_many
        .headers_mut()
        .insert("retry-after", "12".parse().expect("header"));
    let cut = support::events(&start_events());
    let (provider, _) = start(vec![too_many, cut]).await;
    assert_eq!(
        provider.stream(request()).await.err(),
        Some(ProviderError::RateLimited {
            retry_after_secs: Some(12)
        })
    );
    let reply = collect(provider.stream(request()).await.expect("stream")).await;
    assert_eq!(reply, Err(ProviderError::Truncated));
}
