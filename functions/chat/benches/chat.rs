//! What the chat function adds to a reply, with a provider that answers at once (so every
//! figure is Jarvis itself): the time from sending a streamed message to its first text
//! delta, and the bytes a reply's stream leaves in the store per 1,000 streamed tokens.
//!
//! `cargo bench -p jarvis-fn-chat --bench chat`

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request};
use futures_util::StreamExt;
use jarvis_ai::service::Ai;
use jarvis_ai::{ChatRequest, Event, EventStream, Provider, ProviderError, StopReason, Usage};
use jarvis_chat::Chat;
use jarvis_fn_auth::testing::TestApp;
use serde_json::json;

/// Replies of `tokens` one-word deltas, all at once.
struct AtOnce {
    tokens: usize,
}

#[async_trait::async_trait]
impl Provider for AtOnce {
    fn name(&self) -> &str {
        "instant"
    }

    async fn stream(&self, _request: ChatRequest) -> Result<EventStream, ProviderError> {
        let deltas = (0..self.tokens).map(|i| Event::TextDelta {
            text: format!(" word{}", i % 100),
        });
        let end = [
            Event::Usage(Usage {
                input_tokens: 20,
                output_tokens: self.tokens as u64,
            }),
            Event::Done {
                stop_reason: StopReason::EndTurn,
            },
        ];
        Ok(Box::pin(futures_util::stream::iter(deltas.chain(end))))
    }
}

async fn host(tokens: usize) -> (TestApp, Arc<Chat>) {
    let slot: Arc<OnceLock<(Arc<Ai>, Arc<Chat>)>> = Arc::new(OnceLock::new());
    let services = Arc::clone(&slot);
    let router: axum::Router<jarvis_app::AppState> = jarvis_fn_chat::api().into();
    let router = router.layer(tower::util::MapRequestLayer::new(
        move |mut request: Request<Body>| {
            if let Some((ai, chat)) = services.get() {
                request.extensions_mut().insert(Arc::clone(ai));
                request.extensions_mut().insert(Arc::clone(chat));
            }
            request
        },
    ));
    let env = [
        (
            "JARVIS_AI_MODELS",
            "smart=instant:m;fast=scripted:echo;embed=scripted:hash",
        ),
        ("JARVIS_RATE_LIMIT", "1000000"),
    ];
    let app = TestApp::signed_in_with_env(router, &env).await;
    let provider: Arc<dyn Provider> = Arc::new(AtOnce { tokens });
    let ai = Arc::new(Ai::new(
        &app.state.config,
        Arc::clone(&app.state.secrets),
        vec![("instant".to_owned(), provider)],
    ));
    let chat = jarvis_fn_chat::service(&app.state, Arc::clone(&ai));
    assert!(slot.set((ai, Arc::clone(&chat))).is_ok());
    (app, chat)
}

async fn conversation(app: &TestApp) -> String {
    let (_, created) = app
        .call(
            Method::POST,
            "/chat/conversations",
            Some(json!({"title": "bench"})),
        )
        .await;
    created["id"].as_str().expect("id").to_owned()
}

/// Time from sending a streamed message to the first `delta` frame, and the stream id.
async fn first_delta(app: &TestApp, id: &str) -> (Duration, String) {
    let request = Request::post(format!("/chat/conversations/{id}/messages"))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"content": "hello", "stream": true}).to_string(),
        ))
        .expect("request");
    let started = Instant::now();
    let response = app.respond(request).await;
    let stream = response.headers()["content-location"]
        .to_str()
        .expect("location")
        .trim_start_matches("/chat/streams/")
        .to_owned();
    let mut body = response.into_body().into_data_stream();
    let mut seen = String::new();
    let mut first = None;
    while let Some(chunk) = body.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        if first.is_none() && seen.contains("event: delta") {
            first = Some(started.elapsed());
        }
    }
    (first.expect("a delta"), stream)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (app, chat) = host(20).await;
        let id = conversation(&app).await;
        for _ in 0..20 {
            first_delta(&app, &id).await;
            chat.settled().await;
        }
        let mut times = Vec::new();
        for _ in 0..200 {
            // A fresh conversation each time, so the context is the same small one.
            let id = conversation(&app).await;
            let (took, _) = first_delta(&app, &id).await;
            times.push(took);
            chat.settled().await;
        }
        times.sort();
        println!(
            "time to first token added by Jarvis (200 streamed replies, embedded libSQL): \
             p50 {:.2} ms, p99 {:.2} ms",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3
        );

        let (app, chat) = host(1_000).await;
        let id = conversation(&app).await;
        let (_, stream) = first_delta(&app, &id).await;
        chat.settled().await;
        let partition = format!("~gen#{stream}");
        let rows = app
            .state
            .store
            .list(
                &partition,
                jarvis_store::ListQuery {
                    prefix: None,
                    after: None,
                    limit: 10_000,
                    now: jarvis_store::now_secs(),
                },
            )
            .await
            .expect("stream documents");
        let bytes: usize = rows.iter().map(|(_, stored)| stored.bytes.len()).sum();
        println!(
            "stored bytes per 1,000 streamed tokens: {bytes} B in {} documents \
             (the events, kept for an hour; the saved message is separate)",
            rows.len()
        );
    });
}
