//! The Bedrock adapter at the wire: a local server answers `ConverseStream` the way Bedrock
//! does (`application/vnd.amazon.eventstream` frames: `messageStart`, `contentBlockStart`,
//! `contentBlockDelta`, `contentBlockStop`, `messageStop`, `metadata`; exceptions as
//! exception frames or error statuses with `x-amzn-errortype`), and checks the signed
//! request the SDK sends.
#![cfg(feature = "bedrock")]

mod support;

use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message as Frame};
use axum::body::Body;
use axum::response::Response;
use futures_util::StreamExt;
use jarvis_ai::bedrock::Bedrock;
use jarvis_ai::{
    ChatRequest, Event, Message, Part, Provider, ProviderError, Role, StopReason, Tool, ToolCall,
    Usage, collect,
};
use serde_json::{Value, json};

const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn frame(kind: &'static str, event: &'static str, payload: Value) -> Vec<u8> {
    let type_header = if kind == "event" {
        ":event-type"
    } else {
        ":exception-type"
    };
    let message = Frame::new(payload.to_string().into_bytes())
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String(kind.into()),
        ))
        .add_header(Header::new(type_header, HeaderValue::String(event.into())))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    let mut bytes = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut bytes).expect("frame");
    bytes
}

fn event_stream(frames: Vec<Vec<u8>>) -> Response {
    Response::builder()
        .header("content-type", "application/vnd.amazon.eventstream")
        .header("x-amzn-requestid", "7e1a3c0d-0000-4000-8000-000000000000")
        .body(Body::from(frames.concat()))
        .expect("response")
}

fn text_then_tool_use() -> Vec<Vec<u8>> {
    vec![
        frame("event", "messageStart", json!({ "role": "assistant" })),
        frame(
            "event",
            "contentBlockDelta",
            json!({ "contentBlockIndex": 0, "delta": { "text": "Let me " } }),
        ),
        frame(
            "event",
            "contentBlockDelta",
            json!({ "contentBlockIndex": 0, "delta": { "text": "look." } }),
        ),
        frame(
            "event",
            "contentBlockStop",
            json!({ "contentBlockIndex": 0 }),
        ),
        frame(
            "event",
            "contentBlockStart",
            json!({ "contentBlockIndex": 1, "start": { "toolUse": {
                "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather" } } }),
        ),
        frame(
            "event",
            "contentBlockDelta",
            json!({ "contentBlockIndex": 1, "delta": { "toolUse": { "input": "{\"location\": \"Se" } } }),
        ),
        frame(
            "event",
            "contentBlockDelta",
            json!({ "contentBlockIndex": 1, "delta": { "toolUse": { "input": "attle\"}" } } }),
        ),
        frame(
            "event",
            "contentBlockStop",
            json!({ "contentBlockIndex": 1 }),
        ),
        frame("event", "messageStop", json!({ "stopReason": "tool_use" })),
        frame(
            "event",
            "metadata",
            json!({ "usage": { "inputTokens": 377, "outputTokens": 65, "totalTokens": 442 },
                    "metrics": { "latencyMs": 1218 } }),
        ),
    ]
}

async fn client(
    answers: Vec<Response>,
) -> (
    aws_sdk_bedrockruntime::Client,
    std::sync::Arc<support::Server>,
) {
    let (base, server) = support::serve(
        &["/model/{model}/converse-stream", "/model/{model}/invoke"],
        answers,
    )
    .await;
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDLOCAL",
            "local-secret",
            None,
            None,
            "test",
        ))
        .endpoint_url(base)
        .build();
    (aws_sdk_bedrockruntime::Client::from_conf(config), server)
}

async fn start(answers: Vec<Response>) -> (Bedrock, std::sync::Arc<support::Server>) {
    let (client, server) = client(answers).await;
    let provider = Bedrock::new(client).with_embedding_model("amazon.titan-embed-text-v2:0");
    (provider, server)
}

fn request() -> ChatRequest {
    ChatRequest {
        model: MODEL.into(),
        system: Some("Be brief.".into()),
        messages: vec![Message {
            role: Role::User,
            parts: vec![
                Part::Text {
                    text: "Weather here?".into(),
                },
                Part::Image {
                    media_type: "image/png".into(),
                    data: "iVBORw0KGgo=".into(),
                },
            ],
        }],
        tools: vec![Tool {
            name: "get_weather".into(),
            description: "The weather at a place".into(),
            parameters: json!({ "type": "object",
                "properties": { "location": { "type": "string" } }, "required": ["location"] }),
        }],
        temperature: Some(0.5),
        max_output_tokens: Some(512),
        stop: vec!["END".into()],
    }
}

#[tokio::test]
async fn a_streamed_reply_with_a_tool_use_arrives_in_order_and_the_request_is_signed_and_shaped() {
    let (provider, server) = start(vec![event_stream(text_then_tool_use())]).await;
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
                text: "Let me ".into()
            },
            Event::TextDelta {
                text: "look.".into()
            },
            Event::ToolCallDelta {
                index: 0,
                id: Some("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q".into()),
                name: Some("get_weather".into()),
                arguments: String::new()
            },
        ]
    );
    assert_eq!(
        events[events.len() - 2..],
        [
            Event::Usage(Usage {
                input_tokens: 377,
                output_tokens: 65
            }),
            Event::Done {
                stop_reason: StopReason::ToolUse
            },
        ]
    );

    let asked = server.asked.lock().expect("lock");
    let (headers, body) = &asked[0];
    let authorization = headers["authorization"].to_str().expect("ascii");
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDLOCAL/"),
        "{authorization}"
    );
    assert!(authorization.contains("/us-east-1/bedrock/aws4_request"));
    assert_eq!(
        body["messages"],
        json!([{ "role": "user", "content": [
            { "text": "Weather here?" },
            { "image": { "format": "png", "source": { "bytes": "iVBORw0KGgo=" } } }
        ]}])
    );
    assert_eq!(body["system"], json!([{ "text": "Be brief." }]));
    assert_eq!(
        body["inferenceConfig"],
        json!({ "maxTokens": 512, "temperature": 0.5, "stopSequences": ["END"] })
    );
    assert_eq!(
        body["toolConfig"]["tools"][0]["toolSpec"],
        json!({ "name": "get_weather", "description": "The weather at a place",
                "inputSchema": { "json": request().tools[0].parameters } })
    );
}

#[tokio::test]
async fn the_collected_reply_holds_the_whole_tool_call() {
    let (provider, _) = start(vec![event_stream(text_then_tool_use())]).await;
    let reply = collect(provider.stream(request()).await.expect("stream"))
        .await
        .expect("reply");
    assert_eq!(reply.text, "Let me look.");
    assert_eq!(
        reply.tool_calls,
        vec![ToolCall {
            id: "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q".into(),
            name: "get_weather".into(),
            arguments: json!({ "location": "Seattle" }),
        }]
    );
}

#[tokio::test]
async fn an_exception_mid_stream_ends_the_reply_with_a_typed_error() {
    let mut frames = text_then_tool_use()[..3].to_vec();
    frames.push(frame(
        "exception",
        "throttlingException",
        json!({ "message": "Too many tokens, please wait before trying again." }),
    ));
    let (provider, _) = start(vec![event_stream(frames)]).await;
    let events: Vec<Event> = provider
        .stream(request())
        .await
        .expect("stream")
        .collect()
        .await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        events[2],
        Event::Error(ProviderError::RateLimited {
            retry_after_secs: None
        })
    );
}

#[tokio::test]
async fn error_statuses_are_typed_by_their_error_type() {
    let error = |status: u16, kind: &str, message: &str| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("x-amzn-errortype", kind)
            .body(Body::from(json!({ "message": message }).to_string()))
            .expect("response")
    };
    let (provider, _) = start(vec![
        error(400, "ValidationException", "The model returned an error."),
        error(
            403,
            "AccessDeniedException",
            "You don't have access to the model.",
        ),
    ])
    .await;
    let mut ask = request();
    ask.tools.clear();
    assert_eq!(
        provider.stream(ask.clone()).await.err(),
        Some(ProviderError::Refused {
            status: 400,
            message: "The model returned an error.".into()
        })
    );
    assert_eq!(
        provider.stream(ask).await.err(),
        Some(ProviderError::Refused {
            status: 403,
            message: "You don't have access to the model.".into()
        })
    );
}

#[tokio::test]
async fn an_embedding_is_one_signed_invoke_model_call_per_text() {
    let (provider, server) = start(vec![
        support::status(
            200,
            json!({ "embedding": [0.125, -0.25, 0.5], "inputTextTokenCount": 3 }),
        ),
        support::status(200, json!({ "inputTextTokenCount": 3 })),
    ])
    .await;
    let vectors = provider
        .embed(&["hello world".to_owned()])
        .await
        .expect("vectors");
    assert_eq!(vectors, vec![vec![0.125, -0.25, 0.5]]);
    {
        let asked = server.asked.lock().expect("lock");
        let (headers, body) = &asked[0];
        assert_eq!(body, &json!({ "inputText": "hello world" }));
        assert_eq!(headers["content-type"], "application/json");
        assert!(
            headers["authorization"]
                .to_str()
                .expect("ascii")
                .starts_with("AWS4-HMAC-SHA256 ")
        );
    }
    assert!(matches!(
        provider.embed(&["again".to_owned()]).await,
        Err(ProviderError::Protocol { .. })
    ));
}

#[tokio::test]
async fn an_embedding_alias_on_bedrock_embeds_with_the_model_it_names() {
    let (client, _server) = client(vec![support::status(
        200,
        json!({ "embedding": [0.5, 0.5], "inputTextTokenCount": 2 }),
    )])
    .await;
    // The hosted client has no embedding model of its own: the alias chooses it.
    let hosted: Vec<(String, std::sync::Arc<dyn jarvis_ai::Provider>)> =
        vec![("bedrock".into(), std::sync::Arc::new(Bedrock::new(client)))];
    let settings = jarvis_ai::registry::Settings {
        aliases: vec![(
            "embed".into(),
            vec![("bedrock".into(), "amazon.titan-embed-text-v2:0".into())],
        )],
        ..Default::default()
    };
    let registry = jarvis_ai::registry::Registry::new(
        &settings,
        |_| None,
        &reqwest::Client::new(),
        &hosted,
        &jarvis_ai::resilience::Policy::default(),
    );
    let embedding = registry
        .chain("embed")
        .expect("the alias")
        .embed(&["hello".to_owned()])
        .await
        .expect("vectors");
    assert_eq!(embedding.model, "amazon.titan-embed-text-v2:0");
    assert_eq!(embedding.vectors, vec![vec![0.5, 0.5]]);
}
