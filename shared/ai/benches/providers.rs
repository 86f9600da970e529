//! What the provider layer costs, without a model: `cargo bench -p jarvis-ai --bench providers`.
//!
//! - `collect`: folding a reply of 1,000 text deltas into one reply (the event model alone);
//! - `openai/1000 tokens`: a whole streamed call to a local server that answers 1,000
//!   `chat.completion.chunk`s at once: request, HTTP on loopback, SSE parsing, decoding,
//!   collecting; divided by 1,000 it is the layer's cost per streamed token;
//! - `openai/1 token`: the same call with a one-token reply: the cost per call.

use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::post;
use criterion::{Criterion, Throughput, criterion_group};
use jarvis_ai::openai::OpenAi;
use jarvis_ai::{ChatRequest, Event, Message, Provider, StopReason, collect};
use serde_json::json;

const TOKENS: usize = 1_000;

fn sse_reply(tokens: usize) -> String {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_763_700_000,
            "model": "bench", "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
        })
    };
    let mut text = String::new();
    for i in 0..tokens {
        let token = format!(" word{i}");
        text.push_str(&format!(
            "data: {}\n\n",
            chunk(json!({ "content": token }), None)
        ));
    }
    text.push_str(&format!("data: {}\n\n", chunk(json!({}), Some("stop"))));
    text.push_str("data: [DONE]\n\n");
    text
}

fn deltas() -> Vec<Event> {
    let mut events: Vec<Event> = (0..TOKENS)
        .map(|i| Event::TextDelta {
            text: format!(" word{i}"),
        })
        .collect();
    events.push(Event::Done {
        stop_reason: StopReason::EndTurn,
    });
    events
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let base = runtime.block_on(async {
        let long = sse_reply(TOKENS);
        let short = sse_reply(1);
        let answer = |body: String| {
            move || {
                let body = body.clone();
                async move {
                    Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(Body::from(body))
                        .expect("response")
                }
            }
        };
        let app = Router::new()
            .route("/long/chat/completions", post(answer(long)))
            .route("/short/chat/completions", post(answer(short)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    });
    let client = reqwest::Client::new();
    let long = OpenAi::new(client.clone(), &format!("{base}/long"), None);
    let short = OpenAi::new(client, &format!("{base}/short"), None);
    let request = ChatRequest {
        model: "bench".into(),
        messages: vec![Message::user("hello")],
        ..ChatRequest::default()
    };

    let mut group = c.benchmark_group("provider layer");
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(TOKENS as u64));
    group.bench_function("collect/1000 deltas", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let stream = Box::pin(futures_util::stream::iter(deltas()));
                black_box(collect(stream).await.expect("reply"))
            })
        })
    });
    group.bench_function("openai/1000 tokens", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let stream = long.stream(request.clone()).await.expect("stream");
                black_box(collect(stream).await.expect("reply"))
            })
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("openai/1 token", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let stream = short.stream(request.clone()).await.expect("stream");
                black_box(collect(stream).await.expect("reply"))
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
