use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use futures_util::StreamExt;
use jarvis_ai::scripted::Scripted;
use jarvis_ai::{ChatRequest, Event, EventStream, Provider, ProviderError, StopReason, Usage};
use jarvis_chat::Chat;
use jarvis_fn_auth::testing::TestApp;
use serde_json::{Value, json};

use jarvis_ai::service::Ai;

/// A test host: the function's routes with the AI and chat services built from the app's
/// own configuration, as every host builds them.
struct Host {
    app: TestApp,
    chat: Arc<Chat>,
    knowledge: Arc<jarvis_fn_knowledge::jarvis_knowledge::service::Knowledge>,
}

/// The services a test host's requests are given.
type Services = (
    Arc<Ai>,
    Arc<Chat>,
    Arc<jarvis_fn_knowledge::jarvis_knowledge::service::Knowledge>,
);

async fn host(env: &[(&str, &str)], hosted: Vec<(String, Arc<dyn Provider>)>) -> Host {
    let slot: Arc<OnceLock<Services>> = Arc::new(OnceLock::new());
    let services = Arc::clone(&slot);
    let router: axum::Router<jarvis_app::AppState> = super::api().into();
    let router = router.layer(tower::util::MapRequestLayer::new(
        move |mut request: Request<Body>| {
            if let Some((ai, chat, knowledge)) = services.get() {
                request.extensions_mut().insert(Arc::clone(ai));
                request.extensions_mut().insert(Arc::clone(chat));
                request.extensions_mut().insert(Arc::clone(knowledge));
            }
            request
        },
    ));
    let app = TestApp::signed_in_with_env(router, env).await;
    let ai = Arc::new(Ai::new(
        &app.state.config,
        Arc::clone(&app.state.secrets),
        hosted,
    ));
    let chat = super::service(&app.state, Arc::clone(&ai));
    let knowledge =
        jarvis_fn_knowledge::service(&app.state, Arc::clone(&ai)).expect("the processors validate");
    assert!(
        slot.set((ai, Arc::clone(&chat), Arc::clone(&knowledge)))
            .is_ok()
    );
    Host {
        app,
        chat,
        knowledge,
    }
}

/// Replies of `words` words, one delta each, `pause` apart.
struct Paced {
    words: usize,
    pause: Duration,
}

#[async_trait::async_trait]
impl Provider for Paced {
    fn name(&self) -> &str {
        "paced"
    }

    async fn stream(&self, _request: ChatRequest) -> Result<EventStream, ProviderError> {
        let (words, pause) = (self.words, self.pause);
        let deltas = futures_util::stream::iter(0..words).then(move |i| async move {
            tokio::time::sleep(pause).await;
            Event::TextDelta {
                text: format!("w{i} "),
            }
        });
        let end = futures_util::stream::iter([
            Event::Usage(Usage {
                input_tokens: 10,
                output_tokens: words as u64,
            }),
            Event::Done {
                stop_reason: StopReason::EndTurn,
            },
        ]);
        Ok(Box::pin(deltas.chain(end)))
    }
}

/// Answers every request with a short reply and records each prompt's estimated tokens.
#[derive(Default)]
struct Recorder {
    prompts: Mutex<Vec<u64>>,
}

#[async_trait::async_trait]
impl Provider for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        let tokens = request
            .system
            .as_deref()
            .map_or(0, jarvis_chat::context::estimate)
            + request
                .messages
                .iter()
                .map(|m| jarvis_chat::context::estimate(&m.text()) + 4)
                .sum::<u64>();
        if let Ok(mut prompts) = self.prompts.lock() {
            prompts.push(tokens);
        }
        Ok(Box::pin(futures_util::stream::iter([
            Event::TextDelta {
                text: "Noted, and here is a reply of a few words to go with it.".into(),
            },
            Event::Done {
                stop_reason: StopReason::EndTurn,
            },
        ])))
    }
}

fn reply(text: &str) -> Vec<Event> {
    vec![
        Event::TextDelta { text: text.into() },
        Event::Done {
            stop_reason: StopReason::EndTurn,
        },
    ]
}

async fn new_conversation(app: &TestApp, body: Value) -> String {
    let (status, created) = app
        .call(Method::POST, "/chat/conversations", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_str().expect("id").to_owned()
}

async fn say(app: &TestApp, conversation: &str, content: &str) -> Value {
    let (status, exchange) = app
        .call(
            Method::POST,
            &format!("/chat/conversations/{conversation}/messages"),
            Some(json!({ "content": content })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{exchange}");
    exchange
}

/// Reads Server-Sent Events from `body`: `(id, event, data)`, stopping after `limit`.
async fn read_events(body: Body, limit: usize) -> Vec<(u64, String, Value)> {
    let mut stream = body.into_data_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while events.len() < limit {
        let Some(chunk) = stream.next().await else {
            break;
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let (mut id, mut name, mut data) = (None, String::new(), String::new());
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if let Some(id) = id {
                events.push((id, name, serde_json::from_str(&data).expect("JSON data")));
            }
            if events.len() == limit {
                break;
            }
        }
    }
    events
}

fn text_of(events: &[(u64, String, Value)]) -> String {
    events
        .iter()
        .filter(|(_, name, _)| name == "delta")
        .map(|(_, _, data)| data["text"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn conversations_list_newest_first_are_found_by_title_changed_and_deleted_with_their_messages()
 {
    let Host { app, .. } = host(&[], Vec::new()).await;
    let first = new_conversation(&app, json!({"title": "Trip to Oslo"})).await;
    let second = new_conversation(&app, json!({"title": "Groceries", "system": "Be brief."})).await;
    let (status, page) = app.call(Method::GET, "/chat/conversations", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()], "newest first");
    let (_, found) = app
        .call(Method::GET, "/chat/conversations?search=oslo", None)
        .await;
    assert_eq!(found["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(found["items"][0]["id"], json!(first));

    let (status, changed) = app
        .call(
            Method::PATCH,
            &format!("/chat/conversations/{first}"),
            Some(json!({"title": "Oslo in May", "model": "fast"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["title"], "Oslo in May");
    assert_eq!(changed["model"], "fast");

    say(&app, &first, "hello").await;
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/chat/conversations/{first}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .call(Method::GET, &format!("/chat/conversations/{first}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_user_can_neither_read_nor_change_nor_follow_a_conversation() {
    let Host { app, .. } = host(&[], Vec::new()).await;
    let id = new_conversation(&app, json!({})).await;
    let exchange = say(&app, &id, "secret plans").await;
    let stream = exchange["stream_id"].as_str().expect("stream");
    let other = app.sign_up("mallory@example.com").await;
    let token = Some(other.access_token.as_str());
    for (method, uri, body) in [
        (Method::GET, format!("/chat/conversations/{id}"), None),
        (
            Method::PATCH,
            format!("/chat/conversations/{id}"),
            Some(json!({"title": "mine"})),
        ),
        (
            Method::POST,
            format!("/chat/conversations/{id}/messages"),
            Some(json!({"content": "hi"})),
        ),
        (
            Method::GET,
            format!("/chat/conversations/{id}/export"),
            None,
        ),
        (Method::GET, format!("/chat/streams/{stream}"), None),
        (Method::POST, format!("/chat/streams/{stream}/cancel"), None),
        (Method::DELETE, format!("/chat/conversations/{id}"), None),
    ] {
        let (status, body) = app.call_as(token, method.clone(), &uri, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {body}");
    }
    let (_, mine) = app
        .call(Method::GET, &format!("/chat/conversations/{id}"), None)
        .await;
    assert_eq!(mine["messages"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_reply_is_saved_with_its_model_and_usage_and_the_first_exchange_names_the_conversation() {
    let Host { app, chat, .. } = host(&[], Vec::new()).await;
    let id = new_conversation(&app, json!({})).await;
    let exchange = say(&app, &id, "hello there").await;
    assert_eq!(exchange["message"]["role"], "user");
    assert_eq!(exchange["reply"]["role"], "assistant");
    assert_eq!(exchange["reply"]["content"], "You said: hello there");
    assert_eq!(exchange["reply"]["status"], "complete");
    assert_eq!(exchange["reply"]["model"], "scripted:echo");
    assert!(exchange["reply"]["usage"]["output_tokens"].as_u64() > Some(0));
    chat.settled().await;
    let (_, detail) = app
        .call(Method::GET, &format!("/chat/conversations/{id}"), None)
        .await;
    assert_eq!(
        detail["conversation"]["title"], "You said: hello there",
        "the helper model (here the echo) named it"
    );
    let contents: Vec<&str> = detail["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["content"].as_str().expect("content"))
        .collect();
    assert_eq!(contents, ["hello there", "You said: hello there"]);
    let (_, usage) = app.call(Method::GET, "/chat/conversations", None).await;
    assert_eq!(usage["items"][0]["title"], "You said: hello there");
}

#[tokio::test]
async fn a_stream_read_in_two_connections_with_last_event_id_reassembles_the_whole_reply() {
    let paced: Arc<dyn Provider> = Arc::new(Paced {
        words: 500,
        pause: Duration::from_micros(500),
    });
    let Host { app, chat, .. } = host(
        &[(
            "JARVIS_AI_MODELS",
            "smart=paced:m;fast=scripted:echo;embed=scripted:hash",
        )],
        vec![("paced".to_owned(), paced)],
    )
    .await;
    let id = new_conversation(&app, json!({})).await;
    let request = Request::post(format!("/chat/conversations/{id}/messages"))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"content": "count", "stream": true}).to_string(),
        ))
        .expect("request");
    let response = app.respond(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/event-stream")
    );
    let location = response.headers()["content-location"]
        .to_str()
        .expect("location")
        .to_owned();
    let first = read_events(response.into_body(), 100).await;
    assert_eq!(first.len(), 100);
    assert_eq!(first[0].1, "start");
    let last_seen = first.last().expect("event").0;

    let resumed = Request::get(&location)
        .header("last-event-id", last_seen.to_string())
        .body(Body::empty())
        .expect("request");
    let response = app.respond(resumed).await;
    assert_eq!(response.status(), StatusCode::OK);
    let rest = read_events(response.into_body(), usize::MAX).await;
    assert_eq!(
        rest.first().map(|e| e.0),
        Some(last_seen + 1),
        "no gap, no repeat"
    );
    assert_eq!(rest.last().map(|e| e.1.as_str()), Some("done"));
    let all: Vec<_> = first.into_iter().chain(rest).collect();
    let seqs: Vec<u64> = all.iter().map(|e| e.0).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let expected: String = (0..500).map(|i| format!("w{i} ")).collect();
    assert_eq!(text_of(&all), expected);

    chat.settled().await;
    let (_, detail) = app
        .call(Method::GET, &format!("/chat/conversations/{id}"), None)
        .await;
    assert_eq!(
        detail["messages"][1]["content"],
        json!(expected),
        "the stored reply"
    );

    // After the reply ended, the stream is read from the store, from any point.
    let again = Request::get(&location)
        .header("last-event-id", "250")
        .body(Body::empty())
        .expect("request");
    let tail = read_events(app.respond(again).await.into_body(), usize::MAX).await;
    assert_eq!(tail.first().map(|e| e.0), Some(251));
    assert_eq!(tail.last().map(|e| e.1.as_str()), Some("done"));

    // A reader past the final event gets nothing, at once.
    let past = Request::get(&location)
        .header("last-event-id", "18446744073709551615")
        .body(Body::empty())
        .expect("request");
    let nothing = tokio::time::timeout(
        Duration::from_secs(5),
        read_events(app.respond(past).await.into_body(), usize::MAX),
    )
    .await
    .expect("the stream ends");
    assert!(nothing.is_empty());
}

#[tokio::test]
async fn a_cancelled_reply_keeps_what_was_generated_marked_cancelled() {
    let paced: Arc<dyn Provider> = Arc::new(Paced {
        words: 2_000,
        pause: Duration::from_millis(2),
    });
    let Host { app, chat, .. } = host(
        &[(
            "JARVIS_AI_MODELS",
            "smart=paced:m;fast=scripted:echo;embed=scripted:hash",
        )],
        vec![("paced".to_owned(), paced)],
    )
    .await;
    let id = new_conversation(&app, json!({})).await;
    let request = Request::post(format!("/chat/conversations/{id}/messages"))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"content": "go on", "stream": true}).to_string(),
        ))
        .expect("request");
    let response = app.respond(request).await;
    let location = response.headers()["content-location"]
        .to_str()
        .expect("location")
        .to_owned();
    let mut body = response.into_body();
    let started = read_events(std::mem::take(&mut body), 20).await;
    assert_eq!(started.len(), 20);
    let (status, state) = app
        .call(Method::POST, &format!("{location}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{state}");
    assert_eq!(state["status"], "cancelling");
    let events = read_events(
        app.respond(
            Request::get(&location)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .into_body(),
        usize::MAX,
    )
    .await;
    assert_eq!(events.last().map(|e| e.1.as_str()), Some("cancelled"));
    chat.settled().await;
    let (_, detail) = app
        .call(Method::GET, &format!("/chat/conversations/{id}"), None)
        .await;
    let saved = &detail["messages"][1];
    assert_eq!(saved["status"], "cancelled");
    let content = saved["content"].as_str().expect("content");
    assert!(
        !content.is_empty() && content.len() < 2_000 * 5,
        "{content}"
    );
    assert_eq!(content, text_of(&events));
    let (_, state) = app
        .call(Method::POST, &format!("{location}/cancel"), None)
        .await;
    assert_eq!(state["status"], "ended");
}

#[tokio::test]
async fn thirty_turns_stay_within_a_small_window_through_a_running_summary() {
    let recorder = Arc::new(Recorder::default());
    let window = 700;
    let Host { app, chat, .. } = host(
        &[
            (
                "JARVIS_AI_MODELS",
                "smart=recorder:m;fast=scripted:echo;embed=scripted:hash",
            ),
            ("JARVIS_CHAT_CONTEXT_TOKENS", "700"),
            ("JARVIS_CHAT_REPLY_TOKENS", "64"),
        ],
        vec![(
            "recorder".to_owned(),
            Arc::clone(&recorder) as Arc<dyn Provider>,
        )],
    )
    .await;
    let id = new_conversation(&app, json!({"title": "Long talk", "system": "Be helpful."})).await;
    for turn in 0..30 {
        let content = format!(
            "Turn {turn}: here is something worth remembering about the plan, \
             with enough words to fill the window after a few turns."
        );
        say(&app, &id, &content).await;
        chat.settled().await;
    }
    let prompts = recorder.prompts.lock().expect("prompts").clone();
    assert_eq!(prompts.len(), 30);
    for (turn, tokens) in prompts.iter().enumerate() {
        assert!(*tokens <= window - 64, "turn {turn}: {tokens} tokens");
    }
    let (status, summary) = app
        .call(
            Method::GET,
            &format!("/chat/conversations/{id}/summary"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert!(
        summary["summary"].as_str().is_some_and(|s| !s.is_empty()),
        "{summary}"
    );
    assert!(summary["messages"].as_u64() > Some(10), "{summary}");
    let (_, export) = app
        .call(
            Method::GET,
            &format!("/chat/conversations/{id}/export?format=json"),
            None,
        )
        .await;
    assert_eq!(
        export["messages"].as_array().map(Vec::len),
        Some(60),
        "folding keeps every message"
    );
}

#[tokio::test]
async fn a_fact_learned_in_one_conversation_is_used_in_the_next_until_memory_is_cleared() {
    let helper = Arc::new(Scripted::default());
    helper.push(reply("Favourite colour"));
    helper.push(reply("[\"The user's favourite colour is teal.\"]"));
    let Host { app, chat, .. } = host(
        &[(
            "JARVIS_AI_MODELS",
            "smart=scripted:echo;fast=helper:m;embed=scripted:hash",
        )],
        vec![(
            "helper".to_owned(),
            Arc::clone(&helper) as Arc<dyn Provider>,
        )],
    )
    .await;
    let first = new_conversation(&app, json!({})).await;
    say(&app, &first, "My favourite colour is teal.").await;
    chat.settled().await;
    let (_, memories) = app.call(Method::GET, "/memory", None).await;
    let kept = &memories["items"][0];
    assert_eq!(kept["text"], "The user's favourite colour is teal.");
    assert_eq!(kept["conversation_id"], json!(first));

    let second = new_conversation(&app, json!({})).await;
    let exchange = say(&app, &second, "What is my favourite colour?").await;
    let used = exchange["reply"]["memories"].as_array().expect("memories");
    assert_eq!(used[0]["id"], kept["id"], "{exchange}");
    chat.settled().await;

    let (status, forgotten) = app.call(Method::DELETE, "/memory", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(forgotten["forgotten"], 1);
    let third = new_conversation(&app, json!({})).await;
    let exchange = say(&app, &third, "What is my favourite colour?").await;
    assert_eq!(exchange["reply"]["memories"], json!([]), "{exchange}");
}

#[tokio::test]
async fn with_learning_off_nothing_is_remembered_but_written_memories_are_kept_once() {
    let helper = Arc::new(Scripted::default());
    helper.push(reply("Title"));
    helper.push(reply("[\"The user lives in Oslo.\"]"));
    let Host { app, chat, .. } = host(
        &[(
            "JARVIS_AI_MODELS",
            "smart=scripted:echo;fast=helper:m;embed=scripted:hash",
        )],
        vec![(
            "helper".to_owned(),
            Arc::clone(&helper) as Arc<dyn Provider>,
        )],
    )
    .await;
    let (status, settings) = app
        .call(
            Method::PUT,
            "/memory/settings",
            Some(json!({"learn": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    let id = new_conversation(&app, json!({})).await;
    say(&app, &id, "I live in Oslo.").await;
    chat.settled().await;
    let (_, memories) = app.call(Method::GET, "/memory", None).await;
    assert_eq!(memories["items"], json!([]));

    let (status, made) = app
        .call(
            Method::POST,
            "/memory",
            Some(json!({"text": "Prefers tea to coffee."})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (status, again) = app
        .call(
            Method::POST,
            "/memory",
            Some(json!({"text": "prefers tea to coffee"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "already known");
    assert_eq!(again["id"], made["id"]);
    let (status, _) = app
        .call(Method::POST, "/memory", Some(json!({"text": "   "})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a blank memory");
    let uri = format!("/memory/{}", made["id"].as_str().expect("id"));
    let (status, changed) = app
        .call(
            Method::PATCH,
            &uri,
            Some(json!({"text": "Prefers green tea."})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(changed["text"], "Prefers green tea.");
    let (status, _) = app.call(Method::DELETE, &uri, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.call(Method::DELETE, &uri, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_export_is_markdown_by_default_and_json_on_request() {
    let Host { app, .. } = host(&[], Vec::new()).await;
    let id = new_conversation(&app, json!({"title": "Recipes"})).await;
    say(&app, &id, "pancakes").await;
    let response = app
        .respond(
            Request::get(format!("/chat/conversations/{id}/export"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/markdown")
    );
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let text = String::from_utf8(body.to_vec()).expect("utf-8");
    assert!(text.starts_with("# Recipes\n"), "{text}");
    assert!(text.contains("pancakes") && text.contains("You said: pancakes"));
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/chat/conversations/{id}/export?format=pdf"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let Host { app, .. } = host(&[], Vec::new()).await;
    let id = new_conversation(&app, json!({})).await;
    for (uri, body) in [
        ("/chat/conversations".to_owned(), json!({"title": ""})),
        (
            "/chat/conversations".to_owned(),
            json!({"model": "no spaces"}),
        ),
        ("/chat/conversations".to_owned(), json!({"title": null})),
        (
            format!("/chat/conversations/{id}/messages"),
            json!({"content": ""}),
        ),
        (
            format!("/chat/conversations/{id}/messages"),
            json!({"content": "a\u{0}b"}),
        ),
        (
            format!("/chat/conversations/{id}/messages"),
            json!({"content": "x", "extra": 1}),
        ),
    ] {
        let (status, body) = app.call(Method::POST, &uri, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
    }
    let (status, _) = app
        .call(
            Method::POST,
            "/chat/conversations/not-a-uuid/messages",
            Some(json!({"content": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, page) = app.call(Method::GET, "/chat/conversations", None).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let (_, detail) = app
        .call(Method::GET, &format!("/chat/conversations/{id}"), None)
        .await;
    assert_eq!(detail["messages"], json!([]));
    let stream = uuid::Uuid::new_v4();
    let request = Request::get(format!("/chat/streams/{stream}"))
        .header("last-event-id", "soon")
        .body(Body::empty())
        .expect("request");
    assert_eq!(app.respond(request).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_unknown_model_alias_is_a_404_and_stores_no_message() {
    let Host { app, .. } = host(&[], Vec::new()).await;
    let id = new_conversation(&app, json!({"model": "nonesuch"})).await;
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/chat/conversations/{id}/messages"),
            Some(json!({"content": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, detail) = app
        .call(Method::GET, &format!("/chat/conversations/{id}"), None)
        .await;
    assert_eq!(detail["messages"], json!([]));
}

#[tokio::test]
async fn a_retried_streamed_message_is_sent_to_its_stream_not_answered_twice() {
    let Host { app, chat, .. } = host(&[], Vec::new()).await;
    let id = new_conversation(&app, json!({})).await;
    let send = || {
        Request::post(format!("/chat/conversations/{id}/messages"))
            .header("content-type", "application/json")
            .header("idempotency-key", "3f1c2d9e-chat-retry")
            .body(Body::from(
                json!({"content": "once", "stream": true}).to_string(),
            ))
            .expect("request")
    };
    let first = app.respond(send()).await;
    let location = first.headers()["content-location"]
        .to_str()
        .expect("location")
        .to_owned();
    let events = read_events(first.into_body(), usize::MAX).await;
    assert_eq!(events.last().map(|e| e.1.as_str()), Some("done"));
    let retry = app.respond(send()).await;
    assert_eq!(retry.status(), StatusCode::SEE_OTHER);
    assert_eq!(retry.headers()["location"], location.as_str());
    chat.settled().await;
    let (_, detail) = app
        .call(Method::GET, &format!("/chat/conversations/{id}"), None)
        .await;
    assert_eq!(detail["messages"].as_array().map(Vec::len), Some(2));
}

/// A PNG image of `width` × `height` pixels of one colour, encoded as the format says:
/// signature, `IHDR`, one zlib-compressed `IDAT`, `IEND`, each chunk with its CRC.
fn png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    use std::io::Write;
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    chunk(&mut out, b"IHDR", &header);
    // Each row: filter type 0 (none), then its pixels.
    let row: Vec<u8> = std::iter::once(0)
        .chain((0..width).flat_map(|_| rgb))
        .collect();
    let rows = row.repeat(height as usize);
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(&rows).expect("compress");
    chunk(&mut out, b"IDAT", &zlib.finish().expect("compress"));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A local server speaking OpenAI's chat completions (streamed) that keeps every request.
async fn vision_server() -> (String, Arc<Mutex<Vec<Value>>>) {
    use axum::routing::post;
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let keep = Arc::clone(&seen);
    let router = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |axum::Json(body): axum::Json<Value>| {
            let keep = Arc::clone(&keep);
            async move {
                keep.lock().expect("seen").push(body);
                let chunk = |delta: Value, finish: Value| {
                    json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                           "model": "gpt-4o", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                };
                let frames = [
                    chunk(json!({"role": "assistant", "content": "A red "}), Value::Null),
                    chunk(json!({"content": "square."}), json!("stop")),
                    json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                           "choices": [], "usage": {"prompt_tokens": 900, "completion_tokens": 3, "total_tokens": 903}}),
                ];
                let mut text: String = frames.iter().map(|f| format!("data: {f}\n\n")).collect();
                text.push_str("data: [DONE]\n\n");
                ([("content-type", "text/event-stream")], text)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, seen)
}

#[tokio::test]
async fn an_image_goes_to_a_vision_model_by_reference_and_leaves_with_its_conversation() {
    use base64::Engine;
    let (url, seen) = vision_server().await;
    let servers = format!("vision={url}");
    let Host { app, chat, .. } = host(
        &[
            ("JARVIS_AI_SERVERS", servers.as_str()),
            (
                "JARVIS_AI_MODELS",
                "smart=vision:gpt-4o;fast=scripted:echo;embed=scripted:hash",
            ),
        ],
        Vec::new(),
    )
    .await;
    let image = png(8, 8, [255, 0, 0]);
    let data = base64::engine::general_purpose::STANDARD.encode(&image);
    let id = new_conversation(&app, json!({})).await;
    let (status, exchange) = app
        .call(
            Method::POST,
            &format!("/chat/conversations/{id}/messages"),
            Some(json!({"content": "What is this?", "attachments": [{"data": data}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{exchange}");
    assert_eq!(exchange["reply"]["content"], "A red square.");
    let attached = &exchange["message"]["attachments"][0];
    assert_eq!(attached["media_type"], "image/png");
    assert_eq!(attached["bytes"], json!(image.len()));
    let request = seen.lock().expect("seen")[0].clone();
    let parts = request["messages"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| m["content"].clone())
        .expect("the user's message");
    assert_eq!(
        parts[0]["image_url"]["url"],
        json!(format!("data:image/png;base64,{data}")),
        "{request}"
    );
    assert_eq!(parts[1]["text"], "What is this?");

    // Kept by reference, read back as it was.
    let uri = format!(
        "/chat/conversations/{id}/attachments/{}",
        attached["id"].as_str().expect("id")
    );
    let response = app
        .respond(Request::get(&uri).body(Body::empty()).expect("request"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    assert_eq!(body.as_ref(), image.as_slice());
    assert_eq!(
        files_under(&app.state.config.data_dir.join("blobs")),
        2,
        "the image and its type are files of the blob store, not in a document"
    );

    // A later turn sends the image again with its message.
    let (_, _) = app
        .call(
            Method::POST,
            &format!("/chat/conversations/{id}/messages"),
            Some(json!({"content": "And its colour?"})),
        )
        .await;
    let later = seen.lock().expect("seen")[1].clone();
    assert!(
        later.to_string().contains(&data),
        "the history keeps its image"
    );

    chat.settled().await;
    let (status, _) = app
        .call(Method::DELETE, &format!("/chat/conversations/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        files_under(&app.state.config.data_dir.join("blobs")),
        0,
        "the image went with its conversation"
    );
}

fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() { files_under(&path) } else { 1 }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn an_attachment_that_is_not_an_image_is_refused_by_its_content() {
    use base64::Engine;
    let Host { app, .. } = host(&[], Vec::new()).await;
    let id = new_conversation(&app, json!({})).await;
    let uri = format!("/chat/conversations/{id}/messages");
    let svg = base64::engine::general_purpose::STANDARD
        .encode(b"<svg xmlns='http://www.w3.org/2000/svg'/>");
    let svg_again = svg.clone();
    for attachments in [
        json!([{"data": svg}]),
        json!([{"data": "not base64!"}]),
        Value::Array(vec![
            json!({"data": base64::engine::general_purpose::STANDARD.encode(png(1, 1, [0, 0, 0]))});
            5
        ]),
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                &uri,
                Some(json!({"content": "look", "attachments": attachments})),
            )
            .await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{status} {body}"
        );
    }
    let (status, _) = app
        .call(
            Method::POST,
            &uri,
            Some(json!({"content": "look", "attachments": [{"data": svg_again}]})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "well-formed, not an image"
    );
    let (_, detail) = app
        .call(Method::GET, &format!("/chat/conversations/{id}"), None)
        .await;
    assert_eq!(detail["messages"], json!([]), "nothing was stored");
}

/// Answers citing the first source it was given, and keeps the system prompts it saw.
#[derive(Default)]
struct Citer {
    systems: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Provider for Citer {
    fn name(&self) -> &str {
        "citer"
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        if let Ok(mut systems) = self.systems.lock() {
            systems.push(request.system.clone().unwrap_or_default());
        }
        Ok(Box::pin(futures_util::stream::iter(reply(
            "Barn owls find their prey by sound [1].",
        ))))
    }
}

#[tokio::test]
async fn a_message_with_knowledge_is_answered_from_the_users_documents_and_cites_them() {
    use jarvis_fn_knowledge::jarvis_knowledge::documents::{self, Origin};
    use jarvis_fn_knowledge::jarvis_knowledge::service::{Caller, LocalQueue};
    let citer = Arc::new(Citer::default());
    let host = host(
        &[(
            "JARVIS_AI_MODELS",
            "smart=citer:m;fast=scripted:echo;embed=scripted:hash",
        )],
        vec![("citer".to_owned(), Arc::clone(&citer) as Arc<dyn Provider>)],
    )
    .await;
    let reader = host.app.sign_up("reader@example.com").await;
    let token = Some(reader.access_token.as_str());
    let (status, created) = host
        .app
        .call_as(token, Method::POST, "/chat/conversations", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let conversation = created["id"].as_str().expect("id").to_owned();
    // The reader's document, read into the index as the worker reads it.
    let queue = Arc::new(LocalQueue::new(host.knowledge.site().clone()));
    host.knowledge.attach_queue(Arc::clone(&queue) as _);
    let me = reader.user_id.clone();
    host.knowledge
        .add(
            Caller {
                user: &me,
                role: "user",
            },
            "guide.md".into(),
            b"# Owls\n\nThe barn owl hunts small rodents at night, finding them by sound alone.\n\n# Herons\n\nThe grey heron wades in shallow water.\n".to_vec(),
            Origin::Upload,
            Vec::new(),
        )
        .await
        .expect("added");
    for job in documents::queued(host.knowledge.site(), 10)
        .await
        .expect("queued")
    {
        host.knowledge.ingest(&job).await.expect("read");
    }

    let (status, exchange) = host
        .app
        .call_as(
            token,
            Method::POST,
            &format!("/chat/conversations/{conversation}/messages"),
            Some(json!({"content": "How does the barn owl find its prey?", "knowledge": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{exchange}");
    let citations = exchange["reply"]["citations"]
        .as_array()
        .expect("citations");
    assert_eq!(citations.len(), 1, "{exchange}");
    assert_eq!(citations[0]["marker"], 1);
    assert_eq!(citations[0]["name"], "guide.md");
    assert!(
        citations[0]["excerpt"]
            .as_str()
            .is_some_and(|e| e.contains("barn owl"))
    );
    let systems = citer.systems.lock().expect("systems").clone();
    assert!(
        systems
            .last()
            .is_some_and(|s| s.contains("[1] (Owls): The barn owl")),
        "{systems:?}"
    );

    // Saved with the reply: reading the conversation shows the same citation.
    let (_, detail) = host
        .app
        .call_as(
            token,
            Method::GET,
            &format!("/chat/conversations/{conversation}"),
            None,
        )
        .await;
    let saved = detail["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "assistant"))
        .expect("the reply");
    assert_eq!(saved["citations"][0]["name"], "guide.md");

    // Without the option, nothing is searched and nothing cited.
    let (_, plain) = host
        .app
        .call_as(
            token,
            Method::POST,
            &format!("/chat/conversations/{conversation}/messages"),
            Some(json!({"content": "How does the barn owl find its prey?"})),
        )
        .await;
    assert_eq!(plain["reply"]["citations"], json!([]));
    assert!(
        citer
            .systems
            .lock()
            .expect("systems")
            .last()
            .is_some_and(|s| !s.contains("Passages from the user's documents"))
    );
}
