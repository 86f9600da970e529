//! The handler driven with API Gateway's own sample WebSocket events (the fixtures of
//! `aws_lambda_events`, in `tests/fixtures`), answering through a recording [`Connections`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::http::Method;
use jarvis_chat::conversation::{self, NewConversation};
use jarvis_fn_auth::testing::TestApp;
use jarvis_realtime::{Connections, Delivery};
use serde_json::{Value, json};

use super::*;

const CONNECT: &str = include_str!("../tests/fixtures/example-apigw-websocket-request.json");
const CONNECT_WITHOUT_METHOD: &str =
    include_str!("../tests/fixtures/example-apigw-websocket-request-without-method.json");
const DISCONNECT: &str =
    include_str!("../tests/fixtures/example-apigw-websocket-request-disconnect-route.json");

/// What was sent to which connection; connections in `gone` answer 410.
#[derive(Debug, Default)]
struct Recorder {
    sent: Mutex<Vec<(String, Value)>>,
    closed: Mutex<Vec<String>>,
    gone: Mutex<HashSet<String>>,
}

impl Recorder {
    fn to(&self, connection: &str) -> Vec<Value> {
        self.sent
            .lock()
            .expect("lock")
            .iter()
            .filter(|(id, _)| id == connection)
            .map(|(_, message)| message.clone())
            .collect()
    }

    fn last_to(&self, connection: &str) -> Value {
        self.to(connection).pop().expect("a message was sent")
    }
}

#[async_trait]
impl Connections for Recorder {
    async fn post(&self, connection: &str, data: &str) -> Result<(), Delivery> {
        if self.gone.lock().expect("lock").contains(connection) {
            return Err(Delivery::Gone);
        }
        let message = serde_json::from_str(data).expect("messages are JSON");
        self.sent
            .lock()
            .expect("lock")
            .push((connection.to_owned(), message));
        Ok(())
    }

    async fn close(&self, connection: &str) -> Result<(), Delivery> {
        self.closed
            .lock()
            .expect("lock")
            .push(connection.to_owned());
        Ok(())
    }
}

struct Host {
    app: TestApp,
    realtime: Realtime,
    recorder: Arc<Recorder>,
}

impl Host {
    async fn new() -> Self {
        Self::with_env(&[]).await
    }

    async fn with_env(env: &[(&str, &str)]) -> Self {
        let app = TestApp::with_env(jarvis_fn_auth::api().into(), env).await;
        let ai = Arc::new(jarvis_ai::service::Ai::new(
            &app.state.config,
            Arc::clone(&app.state.secrets),
            Vec::new(),
        ));
        let chat = jarvis_fn_chat::service(&app.state, ai);
        let realtime = Realtime::new(app.state.clone(), chat);
        Self {
            app,
            realtime,
            recorder: Arc::default(),
        }
    }

    async fn handle(&self, event: Value) -> ApiGatewayProxyResponse {
        let event = event_of(event).expect("an API Gateway WebSocket event");
        let connections = Arc::clone(&self.recorder) as Arc<dyn Connections>;
        self.realtime.handle(event, connections).await
    }

    /// The sample `$connect` event, for `connection`, with `token`.
    async fn connect(&self, connection: &str, token: Option<&str>) -> ApiGatewayProxyResponse {
        let mut event: Value = serde_json::from_str(CONNECT).expect("fixture");
        event["requestContext"]["connectionId"] = json!(connection);
        if let Some(token) = token {
            event["queryStringParameters"]["token"] = json!(token);
            event["multiValueQueryStringParameters"]["token"] = json!([token]);
        }
        self.handle(event).await
    }

    /// A message on `connection`, routed as API Gateway routes it.
    async fn message(&self, connection: &str, body: Value) {
        let mut event: Value = serde_json::from_str(CONNECT).expect("fixture");
        let text = body.to_string();
        event["requestContext"]["routeKey"] = json!(select_route(&text));
        event["requestContext"]["eventType"] = json!("MESSAGE");
        event["requestContext"]["connectionId"] = json!(connection);
        event["body"] = json!(text);
        let answer = self.handle(event).await;
        assert_eq!(answer.status_code, 200);
    }

    async fn api_key(&self, token: &str, scopes: &[&str]) -> String {
        let (status, created) = self
            .app
            .call_as(
                Some(token),
                Method::POST,
                "/auth/api-keys",
                Some(json!({"name": "ws", "scopes": scopes})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created["key"].as_str().expect("key").to_owned()
    }
}

fn status_of(answer: &ApiGatewayProxyResponse) -> u16 {
    u16::try_from(answer.status_code).expect("a status")
}

fn error_code(answer: &ApiGatewayProxyResponse) -> String {
    let Some(Body::Text(text)) = &answer.body else {
        panic!("a refusal has an envelope: {answer:?}");
    };
    let body: Value = serde_json::from_str(text).expect("JSON");
    body["error"]["code"].as_str().expect("code").to_owned()
}

#[tokio::test]
async fn the_sample_connect_event_without_a_token_is_refused_with_401_and_records_nothing() {
    let host = Host::new().await;
    let event: Value = serde_json::from_str(CONNECT_WITHOUT_METHOD).expect("fixture");
    let answer = host.handle(event).await;
    assert_eq!(status_of(&answer), 401);
    assert_eq!(error_code(&answer), "unauthorized");
    let registry = host.app.state.realtime.registry();
    assert_eq!(registry.get("asdfasdf=").await.expect("get"), None);
    let answer = host.connect("TWegAcC4EowCHnA=", None).await;
    assert_eq!(status_of(&answer), 401);
}

#[tokio::test]
async fn the_sample_connect_event_with_a_token_records_the_connection_under_its_user() {
    let host = Host::new().await;
    let ada = host.app.sign_up("ada@example.com").await;
    let answer = host
        .connect("TWegAcC4EowCHnA=", Some(&ada.access_token))
        .await;
    assert_eq!(status_of(&answer), 200, "{answer:?}");
    let recorded = host
        .app
        .state
        .realtime
        .registry()
        .get("TWegAcC4EowCHnA=")
        .await
        .expect("get")
        .expect("recorded");
    assert_eq!(recorded.identity.user_id, ada.user_id);
    assert_eq!(recorded.source_ip, "192.168.196.186");
    assert_eq!(recorded.user_agent, "PostmanRuntime/2.4.5");
    assert!(recorded.topics.is_empty());
}

#[tokio::test]
async fn a_wrong_token_is_a_401_and_a_key_without_websocket_scopes_a_403() {
    let host = Host::new().await;
    let ada = host.app.sign_up("ada@example.com").await;
    let answer = host.connect("c1", Some("jvk_not-a-real-key")).await;
    assert_eq!(status_of(&answer), 401);
    let forged = format!("{}x", ada.access_token);
    assert_eq!(status_of(&host.connect("c1", Some(&forged)).await), 401);
    let ai_only = host.api_key(&ada.access_token, &["ai"]).await;
    let answer = host.connect("c2", Some(&ai_only)).await;
    assert_eq!(status_of(&answer), 403);
    assert_eq!(error_code(&answer), "forbidden");
    let registry = host.app.state.realtime.registry();
    assert!(
        registry
            .of_user(&ada.user_id)
            .await
            .expect("list")
            .is_empty()
    );
    let reader = host.api_key(&ada.access_token, &["archive:read"]).await;
    assert_eq!(status_of(&host.connect("c3", Some(&reader)).await), 200);
}

#[tokio::test]
async fn the_sample_disconnect_event_forgets_the_connection() {
    let host = Host::new().await;
    let ada = host.app.sign_up("ada@example.com").await;
    assert_eq!(
        status_of(&host.connect("AAAA1234=", Some(&ada.access_token)).await),
        200
    );
    let event: Value = serde_json::from_str(DISCONNECT).expect("fixture");
    assert_eq!(status_of(&host.handle(event.clone()).await), 200);
    let registry = host.app.state.realtime.registry();
    assert_eq!(registry.get("AAAA1234=").await.expect("get"), None);
    assert_eq!(
        status_of(&host.handle(event).await),
        200,
        "a second one is harmless"
    );
}

#[tokio::test]
async fn an_unknown_action_reaches_the_default_route_and_is_answered_with_the_known_ones() {
    let host = Host::new().await;
    let ada = host.app.sign_up("ada@example.com").await;
    host.connect("c1", Some(&ada.access_token)).await;
    host.message("c1", json!({"action": "dance", "id": 7}))
        .await;
    let answer = host.recorder.last_to("c1");
    assert_eq!(answer["type"], "error");
    assert_eq!(answer["id"], 7, "the correlation id comes back");
    assert_eq!(answer["error"]["code"], "bad_request");
    assert_eq!(answer["error"]["field"], "action");
    let message = answer["error"]["message"].as_str().expect("message");
    for action in ACTIONS {
        assert!(message.contains(action), "{message}");
    }
    let mut event: Value = serde_json::from_str(CONNECT).expect("fixture");
    event["requestContext"]["routeKey"] = json!("$default");
    event["requestContext"]["connectionId"] = json!("c1");
    event["body"] = json!("not json");
    host.handle(event).await;
    assert_eq!(host.recorder.last_to("c1")["error"]["code"], "bad_request");
}

#[tokio::test]
async fn ping_is_answered_with_pong_and_a_message_of_an_unknown_connection_with_401() {
    let host = Host::new().await;
    let ada = host.app.sign_up("ada@example.com").await;
    host.connect("c1", Some(&ada.access_token)).await;
    host.message("c1", json!({"action": "ping", "id": "p1"}))
        .await;
    let pong = host.recorder.last_to("c1");
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_str()),
        (Some("pong"), Some("p1"))
    );
    host.message("c1", json!({"action": "ping", "extra": 1}))
        .await;
    assert_eq!(host.recorder.last_to("c1")["error"]["code"], "bad_request");
    host.message("ghost", json!({"action": "ping"})).await;
    assert_eq!(
        host.recorder.last_to("ghost")["error"]["code"],
        "unauthorized"
    );
}

#[tokio::test]
async fn subscribing_needs_each_topics_read_scope_and_a_refusal_changes_nothing() {
    let host = Host::new().await;
    let ada = host.app.sign_up("ada@example.com").await;
    let reader = host.api_key(&ada.access_token, &["archive:read"]).await;
    host.connect("c1", Some(&reader)).await;
    host.message("c1", json!({"action": "subscribe", "topics": ["archive"]}))
        .await;
    assert_eq!(
        host.recorder.last_to("c1"),
        json!({"type": "subscribed", "topics": ["archive"]})
    );
    host.message(
        "c1",
        json!({"action": "subscribe", "topics": ["crdt:list"]}),
    )
    .await;
    assert_eq!(host.recorder.last_to("c1")["error"]["code"], "forbidden");
    host.message(
        "c1",
        json!({"action": "subscribe", "topics": ["archive", "nope"]}),
    )
    .await;
    let refused = host.recorder.last_to("c1");
    assert_eq!(refused["error"]["field"], "topics");
    host.message("c1", json!({"action": "subscribe", "topics": []}))
        .await;
    assert_eq!(host.recorder.last_to("c1")["error"]["field"], "topics");
    host.message(
        "c1",
        json!({"action": "unsubscribe", "topics": ["archive"]}),
    )
    .await;
    assert_eq!(
        host.recorder.last_to("c1"),
        json!({"type": "unsubscribed", "topics": []})
    );
}

#[tokio::test]
async fn a_revoked_key_stops_working_on_an_open_connection_and_the_connection_is_closed() {
    let host = Host::new().await;
    let ada = host.app.sign_up("ada@example.com").await;
    let (status, created) = host
        .app
        .call_as(
            Some(&ada.access_token),
            Method::POST,
            "/auth/api-keys",
            Some(json!({"name": "ws", "scopes": ["archive:read"]})),
        )
        .await;
    assert_eq!(status, 201);
    let key = created["key"].as_str().expect("key");
    host.connect("c1", Some(key)).await;
    let uri = format!("/auth/api-keys/{}", created["id"].as_str().expect("id"));
    let (status, _) = host
        .app
        .call_as(Some(&ada.access_token), Method::DELETE, &uri, None)
        .await;
    assert_eq!(status, 204);
    host.message("c1", json!({"action": "ping"})).await;
    assert_eq!(host.recorder.last_to("c1")["error"]["code"], "unauthorized");
    assert_eq!(*host.recorder.closed.lock().expect("lock"), ["c1"]);
}

#[tokio::test]
async fn chat_send_streams_numbered_chat_events_ending_with_done_and_saves_the_reply() {
    let host = Host::new().await;
    let ada = host.app.sign_up("ada@example.com").await;
    host.connect("c1", Some(&ada.access_token)).await;
    host.connect("c2", Some(&ada.access_token)).await;
    let site = host.realtime.chat().site().clone();
    let conversation = conversation::create(&site, &ada.user_id, NewConversation::default())
        .await
        .expect("conversation");
    let topic = format!("chat:{}", conversation.id);
    host.message("c2", json!({"action": "subscribe", "topics": [topic]}))
        .await;
    host.message(
        "c1",
        json!({"action": "chat.send", "id": "s1", "conversation_id": conversation.id, "content": "one two three"}),
    )
    .await;
    let sent = host.recorder.to("c1");
    assert_eq!(sent[0]["type"], "chat.started");
    assert_eq!(sent[0]["id"], "s1");
    let stream = sent[0]["stream_id"].as_str().expect("stream").to_owned();
    let events = &sent[1..];
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "numbered from 1, in order"
    );
    assert!(events.iter().all(|e| e["stream_id"] == stream.as_str()));
    assert_eq!(events[0]["type"], "chat.start");
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "chat.delta")
        .map(|e| e["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        text.trim(),
        "You said: one two three",
        "the offline provider echoes"
    );
    let done = events.last().expect("events");
    assert_eq!(done["type"], "chat.done");
    assert!(done["usage"]["output_tokens"].as_u64().is_some(), "{done}");
    let heard = host.recorder.last_to("c2");
    assert_eq!(
        (heard["type"].as_str(), heard["stream_id"].as_str()),
        (Some("chat.started"), Some(stream.as_str()))
    );

    host.realtime.chat().settled().await;
    let page = conversation::messages(&site, &ada.user_id, &conversation.id, None, 10)
        .await
        .expect("messages");
    assert_eq!(page.items.len(), 2, "the question and the reply are stored");
}

#[tokio::test]
async fn resuming_sends_what_followed_the_given_seq_once_and_a_gone_connection_stops_the_relay() {
    let host = Host::new().await;
    let ada = host.app.sign_up("ada@example.com").await;
    host.connect("c1", Some(&ada.access_token)).await;
    host.connect("c2", Some(&ada.access_token)).await;
    let site = host.realtime.chat().site().clone();
    let conversation = conversation::create(&site, &ada.user_id, NewConversation::default())
        .await
        .expect("conversation");
    host.recorder
        .gone
        .lock()
        .expect("lock")
        .insert("c1".to_owned());
    host.message(
        "c1",
        json!({"action": "chat.send", "conversation_id": conversation.id, "content": "alpha beta gamma delta"}),
    )
    .await;
    assert!(host.recorder.to("c1").is_empty());
    let registry = host.app.state.realtime.registry();
    assert_eq!(
        registry.get("c1").await.expect("get"),
        None,
        "a gone connection is forgotten"
    );
    host.realtime.chat().settled().await;
    let page = conversation::messages(&site, &ada.user_id, &conversation.id, None, 10)
        .await
        .expect("messages");
    assert_eq!(
        page.items.len(),
        2,
        "the reply is saved whatever happened to the socket"
    );
    let stream = page
        .items
        .iter()
        .find_map(|m| m.meta.stream_id)
        .expect("the reply's stream");

    host.message(
        "c2",
        json!({"action": "chat.resume", "stream_id": stream, "after_seq": 2}),
    )
    .await;
    let resumed = host.recorder.to("c2");
    let seqs: Vec<u64> = resumed
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs.first(), Some(&3));
    assert_eq!(seqs, (3..3 + seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(resumed.last().expect("events")["type"], "chat.done");
    host.message(
        "c2",
        json!({"action": "chat.resume", "stream_id": uuid::Uuid::now_v7(), "after_seq": 0}),
    )
    .await;
    assert_eq!(host.recorder.last_to("c2")["error"]["code"], "not_found");
}

#[tokio::test]
async fn chat_actions_need_their_scopes_and_name_the_field_at_fault() {
    let host = Host::new().await;
    let ada = host.app.sign_up("ada@example.com").await;
    let reader = host.api_key(&ada.access_token, &["chat:read"]).await;
    host.connect("c1", Some(&reader)).await;
    let body =
        json!({"action": "chat.send", "conversation_id": uuid::Uuid::now_v7(), "content": "hi"});
    host.message("c1", body).await;
    assert_eq!(host.recorder.last_to("c1")["error"]["code"], "forbidden");
    host.connect("c2", Some(&ada.access_token)).await;
    host.message(
        "c2",
        json!({"action": "chat.send", "conversation_id": "x", "content": "hi"}),
    )
    .await;
    assert_eq!(
        host.recorder.last_to("c2")["error"]["field"],
        "conversation_id"
    );
    host.message(
        "c2",
        json!({"action": "chat.send", "conversation_id": uuid::Uuid::now_v7()}),
    )
    .await;
    assert_eq!(host.recorder.last_to("c2")["error"]["code"], "bad_request");
    host.message(
        "c2",
        json!({"action": "chat.send", "conversation_id": uuid::Uuid::now_v7(), "content": "hi"}),
    )
    .await;
    assert_eq!(host.recorder.last_to("c2")["error"]["code"], "not_found");
    host.message("c2", json!({"action": "chat.cancel", "stream_id": "nope"}))
        .await;
    assert_eq!(host.recorder.last_to("c2")["error"]["field"], "stream_id");
}

#[tokio::test]
async fn connects_spend_the_addresss_request_budget_and_messages_the_accounts() {
    let host = Host::with_env(&[("JARVIS_RATE_LIMIT", "3")]).await;
    let ada = host.app.sign_up("ada@example.com").await;
    let mut refused = None;
    for i in 0..6 {
        let answer = host
            .connect(&format!("c{i}"), Some(&ada.access_token))
            .await;
        if status_of(&answer) != 200 {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("a connect past the address's budget is refused");
    assert_eq!(status_of(&refused), 429);
    assert_eq!(error_code(&refused), "rate_limited");

    let mut codes = Vec::new();
    for _ in 0..6 {
        host.message("c0", json!({"action": "ping"})).await;
        let answer = host.recorder.last_to("c0");
        codes.push(answer["error"]["code"].as_str().unwrap_or("ok").to_owned());
    }
    assert_eq!(codes[0], "ok");
    assert!(
        codes.iter().any(|c| c == "rate_limited"),
        "messages past the account's budget are refused: {codes:?}"
    );
}

#[test]
fn routes_are_selected_by_action_as_api_gateway_selects_them() {
    assert_eq!(select_route(r#"{"action":"ping"}"#), "ping");
    assert_eq!(
        select_route(r#"{"action":"chat.send","content":"x"}"#),
        "chat.send"
    );
    for other in [
        r#"{"action":"$connect"}"#,
        r#"{"action":7}"#,
        r#"{}"#,
        "[]",
        "text",
        "",
    ] {
        assert_eq!(select_route(other), "$default", "{other}");
    }
    for route in ROUTES {
        assert!(
            route.key.starts_with('$') || ACTIONS.contains(&route.key),
            "{} is an action",
            route.key
        );
    }
}

#[test]
fn the_asynchronous_routes_event_with_its_body_as_json_reads_as_the_proxy_event() {
    let mut event: Value = serde_json::from_str(CONNECT).expect("fixture");
    event["requestContext"]["routeKey"] = json!("chat.send");
    event["body"] = json!({"action": "chat.send", "content": "it's \"quoted\""});
    let read = event_of(event).expect("event");
    let body: Value = serde_json::from_str(read.body.as_deref().expect("body")).expect("JSON");
    assert_eq!(body["content"], "it's \"quoted\"");
    let mut plain: Value = serde_json::from_str(CONNECT).expect("fixture");
    plain["body"] = json!("{\"action\":\"ping\"}");
    assert_eq!(
        event_of(plain).expect("event").body.as_deref(),
        Some("{\"action\":\"ping\"}")
    );
}
