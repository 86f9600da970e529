//! End to end: the WebSocket API of the real `jarvis-local` binary, driven by real WebSocket
//! clients (tokio-tungstenite here, Python `websockets` in `ws_client.py`), its management
//! API driven over HTTP and by the AWS SDK's own client.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use jarvis_realtime::{Connections, Delivery};
use jarvis_tests::LocalNode;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const PASSWORD: &str = "a long enough password 1";

struct Node {
    node: LocalNode,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = LocalNode::start(&dir.path().join("data"), env);
        Self {
            node,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn ws_url(&self, token: Option<&str>) -> String {
        let base = self.node.base_url().replacen("http://", "ws://", 1);
        match token {
            Some(token) => format!("{base}/ws?token={token}"),
            None => format!("{base}/ws"),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Value) -> Value {
        let response = self
            .http
            .request(method, self.node.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap_or(Value::Null)
    }

    /// Registers `email` and signs it in; answers the access token.
    async fn sign_up(&self, email: &str) -> String {
        let account = json!({"email": email, "password": PASSWORD});
        let response = self
            .http
            .post(self.node.url("/auth/register"))
            .json(&account)
            .send()
            .await
            .expect("register");
        assert_eq!(response.status(), 201);
        let response = self
            .http
            .post(self.node.url("/auth/login"))
            .json(&account)
            .send()
            .await
            .expect("login");
        let tokens: Value = response.json().await.expect("tokens");
        tokens["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    async fn connect(&self, token: &str) -> Socket {
        let (socket, _) = connect_async(self.ws_url(Some(token)))
            .await
            .expect("connect");
        socket
    }
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .expect("send");
}

/// The next JSON message, within 10 s.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a frame");
        match frame {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The next message of type `wanted`.
async fn next_of(socket: &mut Socket, wanted: &str) -> Value {
    loop {
        let message = next(socket).await;
        if message["type"] == wanted {
            return message;
        }
        assert_ne!(message["type"], "error", "waiting for {wanted}: {message}");
    }
}

/// Whether any text message arrives within `wait`.
async fn silent_for(socket: &mut Socket, wait: Duration) -> bool {
    match tokio::time::timeout(wait, socket.next()).await {
        Err(_) => true,
        Ok(Some(Ok(Message::Text(text)))) => panic!("unexpected message {text}"),
        Ok(_) => true,
    }
}

/// The close frame's code, reading past anything before it.
async fn close_code(socket: &mut Socket) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

async fn connection_id(socket: &mut Socket) -> String {
    send(socket, json!({"action": "ping"})).await;
    let pong = next_of(socket, "pong").await;
    pong["connection_id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_handshake_without_a_valid_token_is_refused_with_401() {
    let node = Node::start(&[]);
    for url in [node.ws_url(None), node.ws_url(Some("not-a-token"))] {
        match connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "{url}");
            }
            other => panic!("{url}: expected a refused handshake, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_subscriber_hears_of_its_users_archive_changes_made_over_http_and_of_no_one_elses() {
    let node = Node::start(&[]);
    let ada = node.sign_up("ada@example.com").await;
    let bob = node.sign_up("bob@example.com").await;
    let mut ada_ws = node.connect(&ada).await;
    let mut bob_ws = node.connect(&bob).await;
    for socket in [&mut ada_ws, &mut bob_ws] {
        send(
            socket,
            json!({"action": "subscribe", "topics": ["archive", "crdt:list"]}),
        )
        .await;
        assert_eq!(next(socket).await["type"], "subscribed");
    }
    let entry = json!({"kind": "note", "title": "t", "content": "c"});
    let created = node
        .call(reqwest::Method::POST, "/archive", &ada, entry.clone())
        .await;
    let heard = next(&mut ada_ws).await;
    assert_eq!(heard["type"], "archive.changed");
    assert_eq!(heard["change"], "created");
    assert_eq!(heard["id"], created["id"]);
    let path = format!("/archive/{}", created["id"].as_str().expect("id"));
    node.call(reqwest::Method::PATCH, &path, &ada, json!({"title": "u"}))
        .await;
    assert_eq!(next(&mut ada_ws).await["change"], "updated");
    node.call(
        reqwest::Method::POST,
        "/crdt/sets/list",
        &ada,
        json!({"add": ["milk"]}),
    )
    .await;
    let heard = next(&mut ada_ws).await;
    assert_eq!(
        (heard["type"].as_str(), heard["topic"].as_str()),
        (Some("crdt.changed"), Some("crdt:list"))
    );
    assert!(
        silent_for(&mut bob_ws, Duration::from_millis(300)).await,
        "bob hears nothing of ada's"
    );

    node.call(reqwest::Method::POST, "/archive", &bob, entry)
        .await;
    assert_eq!(next(&mut bob_ws).await["type"], "archive.changed");
    assert!(
        silent_for(&mut ada_ws, Duration::from_millis(300)).await,
        "ada hears nothing of bob's"
    );

    send(
        &mut ada_ws,
        json!({"action": "unsubscribe", "topics": ["archive"]}),
    )
    .await;
    assert_eq!(next(&mut ada_ws).await["topics"], json!(["crdt:list"]));
    node.call(reqwest::Method::DELETE, &path, &ada, Value::Null)
        .await;
    assert!(
        silent_for(&mut ada_ws, Duration::from_millis(300)).await,
        "unsubscribed"
    );
}

/// The text of a reply's deltas, and the sequence numbers of all its events, up to its end.
async fn reply(
    socket: &mut Socket,
    stream: &str,
    limit: Option<usize>,
) -> (String, Vec<u64>, bool) {
    let (mut text, mut seqs) = (String::new(), Vec::new());
    loop {
        if limit.is_some_and(|n| seqs.len() >= n) {
            return (text, seqs, false);
        }
        let message = next(socket).await;
        if message["stream_id"] != stream || message["seq"].is_null() {
            continue;
        }
        seqs.push(message["seq"].as_u64().expect("seq"));
        match message["type"].as_str() {
            Some("chat.delta") => text.push_str(message["text"].as_str().expect("text")),
            Some("chat.done") => return (text, seqs, true),
            Some("chat.error" | "chat.cancelled") => panic!("the reply failed: {message}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn chat_send_streams_the_offline_providers_deltas_then_done_with_usage() {
    let node = Node::start(&[]);
    let ada = node.sign_up("ada@example.com").await;
    let conversation = node
        .call(
            reqwest::Method::POST,
            "/chat/conversations",
            &ada,
            json!({}),
        )
        .await;
    let mut socket = node.connect(&ada).await;
    send(
        &mut socket,
        json!({"action": "chat.send", "id": 1, "conversation_id": conversation["id"], "content": "hello over websocket"}),
    )
    .await;
    let started = next_of(&mut socket, "chat.started").await;
    assert_eq!(started["id"], 1);
    let stream = started["stream_id"].as_str().expect("stream").to_owned();
    let (text, seqs, ended) = reply(&mut socket, &stream, None).await;
    assert!(ended);
    assert_eq!(text.trim(), "You said: hello over websocket");
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_reply_resumed_after_its_socket_was_killed_arrives_whole_and_exactly_once() {
    let node = Node::start(&[]);
    let ada = node.sign_up("ada@example.com").await;
    let conversation = node
        .call(
            reqwest::Method::POST,
            "/chat/conversations",
            &ada,
            json!({}),
        )
        .await;
    let words: Vec<String> = (0..400).map(|i| format!("w{i}")).collect();
    let content = words.join(" ");
    let mut first = node.connect(&ada).await;
    send(
        &mut first,
        json!({"action": "chat.send", "conversation_id": conversation["id"], "content": content}),
    )
    .await;
    let stream = next_of(&mut first, "chat.started").await["stream_id"]
        .as_str()
        .expect("stream")
        .to_owned();
    let (before, seen, ended) = reply(&mut first, &stream, Some(5)).await;
    assert!(!ended, "the reply is longer than five events");
    // Killed: the TCP connection drops without a close handshake.
    drop(first);

    let mut second = node.connect(&ada).await;
    let last = *seen.last().expect("events");
    send(
        &mut second,
        json!({"action": "chat.resume", "stream_id": stream, "after_seq": last}),
    )
    .await;
    let (after, rest, ended) = reply(&mut second, &stream, None).await;
    assert!(ended, "the resumed stream runs to its end");
    let all: Vec<u64> = seen.iter().chain(&rest).copied().collect();
    assert_eq!(
        all,
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert_eq!(
        format!("{before}{after}").trim(),
        format!("You said: {content}")
    );

    let exported = node
        .http
        .get(node.node.url(&format!(
            "/chat/conversations/{}/export?format=json",
            conversation["id"].as_str().expect("id")
        )))
        .bearer_auth(&ada)
        .send()
        .await
        .expect("export");
    let exported: Value = exported.json().await.expect("JSON");
    assert!(
        exported.to_string().contains("w399"),
        "the whole reply is stored: {exported}"
    );
}

#[tokio::test]
async fn the_management_api_answers_as_api_gateways_and_410s_once_the_connection_is_gone() {
    let node = Node::start(&[]);
    let ada = node.sign_up("ada@example.com").await;
    let mut socket = node.connect(&ada).await;
    let id = connection_id(&mut socket).await;
    let at = |id: &str| node.node.url(&format!("/@connections/{id}"));

    let info: Value = node
        .http
        .get(at(&id))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(info["identity"]["sourceIp"], "127.0.0.1");
    for field in ["connectedAt", "lastActiveAt"] {
        let stamp = info[field].as_str().expect(field);
        assert!(
            stamp.ends_with('Z') && stamp.contains('T'),
            "{field}: {stamp}"
        );
    }
    let posted = node
        .http
        .post(at(&id))
        .body("hello from the management API")
        .send()
        .await
        .expect("POST");
    assert_eq!(posted.status(), 200);
    let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("delivered")
        .expect("open")
        .expect("frame");
    assert_eq!(frame, Message::text("hello from the management API"));
    let too_big = node
        .http
        .post(at(&id))
        .body(vec![b'x'; 128 * 1024 + 1])
        .send()
        .await
        .expect("POST");
    assert_eq!(too_big.status(), 413);

    let deleted = node.http.delete(at(&id)).send().await.expect("DELETE");
    assert_eq!(deleted.status(), 204);
    assert!(
        close_code(&mut socket).await.is_some(),
        "the client sees the close"
    );
    for _ in 0..50 {
        if node.http.get(at(&id)).send().await.expect("GET").status() == 410 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gone = node
        .http
        .post(at(&id))
        .body("late")
        .send()
        .await
        .expect("POST");
    assert_eq!(gone.status(), 410);
    assert_eq!(gone.headers()["x-amzn-errortype"], "GoneException");
    assert_eq!(
        node.http
            .delete(at(&id))
            .send()
            .await
            .expect("DELETE")
            .status(),
        410
    );

    // API Gateway's own client, pointed at the local gateway, reads the 410 as Gone.
    let target = jarvis_config::AwsTarget::local(node.node.base_url());
    let client = jarvis_realtime::apigateway::ApiGateway::new(&target).await;
    assert!(matches!(
        client.post(&id, "late").await,
        Err(Delivery::Gone)
    ));
    let mut live = node.connect(&ada).await;
    let live_id = connection_id(&mut live).await;
    client
        .post(&live_id, "{\"type\":\"hello\"}")
        .await
        .expect("delivered through the SDK");
    assert_eq!(next(&mut live).await["type"], "hello");
}

#[tokio::test]
async fn an_oversized_message_closes_the_socket_with_1009() {
    let node = Node::start(&[]);
    let ada = node.sign_up("ada@example.com").await;
    let mut socket = node.connect(&ada).await;
    let within = format!("{{\"action\":\"ping\",\"pad\":\"{}\"}}", "x".repeat(1_000));
    socket.send(Message::text(within)).await.expect("send");
    assert_eq!(
        next(&mut socket).await["type"],
        "error",
        "a large enough message is answered"
    );
    socket
        .send(Message::text("x".repeat(128 * 1024 + 1)))
        .await
        .expect("send");
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Size));
}

#[tokio::test]
async fn idle_connections_and_connections_past_their_lifetime_are_closed_with_1001() {
    let node = Node::start(&[
        ("JARVIS_WS_IDLE_SECS", "1"),
        ("JARVIS_WS_LIFETIME_SECS", "3"),
    ]);
    let ada = node.sign_up("ada@example.com").await;
    let mut idle = node.connect(&ada).await;
    let opened = Instant::now();
    assert_eq!(close_code(&mut idle).await, Some(CloseCode::Away));
    assert!(
        opened.elapsed() < Duration::from_millis(2_500),
        "closed once idle"
    );

    let mut busy = node.connect(&ada).await;
    let opened = Instant::now();
    let code = loop {
        if busy
            .send(Message::text(r#"{"action":"ping"}"#))
            .await
            .is_err()
        {
            break None;
        }
        match tokio::time::timeout(Duration::from_millis(400), busy.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.code),
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(Some(Err(_)) | None) => break None,
        }
    };
    assert_eq!(code, Some(CloseCode::Away));
    assert!(
        opened.elapsed() >= Duration::from_millis(2_500),
        "kept open while active"
    );
}

#[tokio::test]
async fn the_websocket_api_listens_on_its_own_address_when_given_one() {
    let port = jarvis_tests::free_port();
    let addr = format!("127.0.0.1:{port}");
    let node = Node::start(&[("JARVIS_WS_ADDR", addr.as_str())]);
    let ada = node.sign_up("ada@example.com").await;
    let (mut socket, _) = connect_async(format!("ws://{addr}/ws?token={ada}"))
        .await
        .expect("connect");
    assert!(!connection_id(&mut socket).await.is_empty());
    let main = node
        .http
        .get(node.node.url("/ws"))
        .send()
        .await
        .expect("GET");
    assert_eq!(main.status(), 404, "not on the HTTP address");
}

#[tokio::test]
async fn the_management_client_posts_to_motos_api_gateway_management_api() {
    let Ok(endpoint) = std::env::var("JARVIS_TEST_SECRETS_ENDPOINT") else {
        eprintln!(
            "skipped: JARVIS_TEST_SECRETS_ENDPOINT (a moto server) is not set; infra/test.sh sets it"
        );
        return;
    };
    let client =
        jarvis_realtime::apigateway::ApiGateway::new(&jarvis_config::AwsTarget::local(endpoint))
            .await;
    client
        .post("L0SM9cOFvHcCIhw=", "{\"type\":\"pong\"}")
        .await
        .expect("moto accepts a post");
    assert!(matches!(
        client
            .post("L0SM9cOFvHcCIhw=", &"x".repeat(128 * 1024 + 1))
            .await,
        Err(Delivery::TooLarge)
    ));
}

#[tokio::test]
async fn an_independent_python_websockets_client_agrees() {
    let python = match std::env::var("JARVIS_TEST_PYTHON") {
        Ok(python) => std::path::PathBuf::from(python),
        Err(_) => {
            let venv = jarvis_tests::workspace_root().join(".tools/venv/bin/python");
            if !venv.exists() {
                eprintln!("skipped: no .tools/venv; infra/test.sh creates it");
                return;
            }
            venv
        }
    };
    let node = Node::start(&[]);
    let script = jarvis_tests::workspace_root().join("tests/ws_client.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .arg(node.node.base_url())
        .output()
        .await
        .expect("python runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{report}\n{}", node.node.logs());
    assert_eq!(report.matches("ok: ").count(), 5, "{report}");
}
