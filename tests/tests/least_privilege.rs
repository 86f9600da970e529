//! The IAM policies in `template.yaml` allow exactly what the code does: each function's
//! routes are exercised in process over a store that records every operation and
//! partition, and each recorded access must be one the function's policy grants (action,
//! and a `dynamodb:LeadingKeys` pattern matching the partition). A function that starts
//! touching a new partition fails here before it fails with AccessDenied on AWS.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use jarvis_fn_ai::Ai;
use jarvis_fn_auth::testing::{PASSWORD, TestApp};
use jarvis_fn_chat::jarvis_chat::Chat;
use jarvis_health::HealthCheck;
use jarvis_tests::hooked::{Hooked, Operation};
use jarvis_tests::workspace_root;
use serde_json::json;
use serde_norway::Value as Yaml;

type Log = Arc<Mutex<BTreeSet<(&'static str, String)>>>;

/// `action -> partition patterns` granted to a template function.
fn grants(resource: &str) -> BTreeMap<String, Vec<String>> {
    let template =
        std::fs::read_to_string(workspace_root().join("template.yaml")).expect("template");
    let doc: Yaml = serde_norway::from_str(&template).expect("parses");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for policy in doc["Resources"][resource]["Properties"]["Policies"]
        .as_sequence()
        .expect("policies")
    {
        for statement in policy["Statement"].as_sequence().expect("statements") {
            let actions: Vec<String> = match &statement["Action"] {
                Yaml::String(one) => vec![one.clone()],
                Yaml::Sequence(many) => many
                    .iter()
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            // Only the documents table is recorded; other tables (the keyword table) and
            // the feed index are outside what the store does.
            let target = format!("{:?}", statement["Resource"]);
            let documents = target.contains("DocumentsTable") && !target.contains("/index/");
            if actions.iter().any(|a| a.starts_with("dynamodb:")) && !documents {
                continue;
            }
            let keys: Vec<String> =
                match statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
                    .as_sequence()
                {
                    Some(keys) => keys
                        .iter()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect(),
                    // Unconfined: every partition.
                    None if documents => vec!["*".to_owned()],
                    None => Vec::new(),
                };
            for action in actions {
                out.entry(action).or_default().extend(keys.iter().cloned());
            }
        }
    }
    out
}

fn matches(pattern: &str, partition: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => partition.starts_with(prefix),
        None => pattern == partition,
    }
}

fn assert_granted(resource: &str, log: &Log) {
    let log = log.lock().expect("log").clone();
    let mut touched: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (action, partition) in &log {
        touched
            .entry(action)
            .or_default()
            .insert(partition.as_str());
    }
    eprintln!("{resource} touched {touched:?}");
    let grants = grants(resource);
    assert!(!log.is_empty(), "{resource}: nothing recorded");
    for (action, partition) in log {
        let patterns = grants.get(action).unwrap_or_else(|| {
            panic!("{resource} does {action} on {partition:?} without the permission")
        });
        assert!(
            patterns.iter().any(|p| matches(p, &partition)),
            "{resource} does {action} on partition {partition:?}, outside {patterns:?}"
        );
    }
}

/// An application of `routes` over a store that records every access in `log`.
async fn logged_app(
    routes: axum::Router<jarvis_app::AppState>,
    env: &[(&str, &str)],
    log: &Log,
) -> TestApp {
    let log = Arc::clone(log);
    TestApp::with_store_layer(routes, env, move |inner| {
        let hook = move |operation: Operation, partition: &str| {
            if let Ok(mut log) = log.lock() {
                log.insert((operation.action(), partition.to_owned()));
            }
            Ok(())
        };
        Arc::new(Hooked { inner, hook })
    })
    .await
}

/// Every route, with the value `slot` will hold (once the application that makes it is up)
/// in each request's extensions.
fn routes_with<T: Clone + Send + Sync + 'static>(
    slot: &Arc<OnceLock<T>>,
) -> axum::Router<jarvis_app::AppState> {
    let service = Arc::clone(slot);
    jarvis_tests::all_routes().layer(axum::middleware::map_request(
        move |mut request: Request<Body>| {
            let value = service.get().cloned();
            async move {
                if let Some(value) = value {
                    request.extensions_mut().insert(value);
                }
                request
            }
        },
    ))
}

/// Every route over a store that logs each access, with the AI service installed as hosts
/// install it. Its `smart` alias tries a server that refuses connections first (a breaker
/// that opens after one failure), then the scripted provider.
async fn app(log: &Log) -> TestApp {
    let slot: Arc<OnceLock<(Arc<Ai>, Arc<Chat>)>> = Arc::default();
    let service = Arc::clone(&slot);
    let routes = jarvis_tests::all_routes().layer(axum::middleware::map_request(
        move |mut request: Request<Body>| {
            let services = service.get().cloned();
            async move {
                if let Some((ai, chat)) = services {
                    request.extensions_mut().insert(ai);
                    request.extensions_mut().insert(chat);
                }
                request
            }
        },
    ));
    let env = [
        ("JARVIS_AI_SERVERS", "down=http://127.0.0.1:9/v1"),
        (
            "JARVIS_AI_MODELS",
            "smart=down:m,scripted:echo;embed=scripted:hash",
        ),
        ("JARVIS_AI_BREAKER_THRESHOLD", "1"),
    ];
    let app = logged_app(routes, &env, log).await;
    let ai = Arc::new(Ai::new(
        &app.state.config,
        Arc::clone(&app.state.secrets),
        Vec::new(),
    ));
    let chat = jarvis_fn_chat::service(&app.state, Arc::clone(&ai));
    assert!(slot.set((ai, Arc::clone(&chat))).is_ok());
    CHAT.with(|c| c.borrow_mut().replace(chat));
    app
}

thread_local! {
    /// The chat service of the app last built on this thread, to wait for its replies.
    static CHAT: std::cell::RefCell<Option<Arc<Chat>>> = const { std::cell::RefCell::new(None) };
}

async fn send(
    app: &TestApp,
    token: &str,
    method: Method,
    uri: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("idempotency-key", uuid::Uuid::new_v4().to_string());
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request");
    let (status, answer) = app.send(request).await;
    assert!(
        status.is_success() || status == StatusCode::NOT_FOUND,
        "{method} {uri}: {status} {answer}"
    );
    answer
}

#[tokio::test]
async fn the_system_crdt_archive_and_ai_functions_touch_only_what_their_policies_grant() {
    for (resource, calls) in [
        (
            "SystemFunction",
            vec![
                (Method::GET, "/health", None),
                (Method::GET, "/version", None),
            ],
        ),
        (
            "CrdtFunction",
            vec![
                (
                    Method::POST,
                    "/crdt/counters/c/increment",
                    Some(json!({"by": 1})),
                ),
                (Method::GET, "/crdt/counters/c", None),
                (Method::POST, "/crdt/sets/s", Some(json!({"add": ["a"]}))),
                (Method::GET, "/crdt/sets/s", None),
                (Method::PUT, "/crdt/registers/r", Some(json!({"value": 1}))),
                (Method::GET, "/crdt/registers/r", None),
                (Method::POST, "/crdt/orsets/o", Some(json!({"add": ["a"]}))),
                (Method::GET, "/crdt/orsets/o", None),
            ],
        ),
        (
            "ArchiveFunction",
            vec![
                (
                    Method::POST,
                    "/archive",
                    Some(json!({"kind": "note", "title": "t", "content": "c"})),
                ),
                (Method::GET, "/archive?tag=x", None),
                (
                    Method::GET,
                    "/archive/0190a0c2-7a3e-7000-8000-000000000000",
                    None,
                ),
            ],
        ),
        (
            // Budgets, both model calls under a budget (the first opens a breaker, which is
            // recorded for `/health`), usage.
            "AiFunction",
            vec![
                (
                    Method::PUT,
                    "/admin/quotas/roles/admin",
                    Some(json!({"tokens_per_day": 100000})),
                ),
                (Method::GET, "/admin/quotas/roles/admin", None),
                (
                    Method::POST,
                    "/ai/complete",
                    Some(json!({"messages": [{"role": "user", "content": "hi"}]})),
                ),
                (
                    Method::POST,
                    "/ai/embeddings",
                    Some(json!({"texts": ["hi"]})),
                ),
                (Method::GET, "/ai/usage", None),
            ],
        ),
    ] {
        let log: Log = Arc::default();
        let app = app(&log).await;
        let admin = app.sign_up("admin@example.com").await;
        log.lock().expect("log").clear();
        for (method, uri, body) in calls {
            send(&app, &admin.access_token, method, uri, body).await;
        }
        if resource == "SystemFunction" {
            // The Lambda build's `/health` also reads the recorded breakers.
            jarvis_ai::observed::ObservedBreakers(Arc::clone(&app.state.store))
                .check()
                .await;
        }
        if resource == "AiFunction" {
            assert!(
                log.lock()
                    .expect("log")
                    .iter()
                    .any(|(_, partition)| partition == jarvis_ai::observed::PARTITION),
                "the breaker that opened was recorded"
            );
        }
        assert_granted(resource, &log);
    }
}

#[tokio::test]
async fn the_jobs_function_touches_only_what_its_policy_grants() {
    let log: Log = Arc::default();
    let app = app(&log).await;
    app.sign_up("admin@example.com").await;
    log.lock().expect("log").clear();
    for job in jarvis_fn_jobs::SYSTEM_JOBS
        .iter()
        .filter(|j| j.function == jarvis_fn_jobs::JOBS_FUNCTION)
    {
        jarvis_fn_jobs::run(&app.state, job.name)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", job.name));
    }
    assert!(
        log.lock()
            .expect("log")
            .contains(&("dynamodb:Scan", "*".to_owned())),
        "the expiry purge was recorded"
    );
    assert_granted("JobsFunction", &log);
}

#[tokio::test]
async fn the_auth_function_touches_only_what_its_policy_grants() {
    let log: Log = Arc::default();
    let app = app(&log).await;
    let anonymous = |method: Method, uri: &str, body: serde_json::Value| {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        app.send(request)
    };
    let account = json!({"email": "admin@example.com", "password": PASSWORD});
    anonymous(Method::POST, "/auth/register", account.clone()).await;
    anonymous(
        Method::POST,
        "/auth/register",
        json!({"email": "bob@example.com", "password": PASSWORD}),
    )
    .await;
    anonymous(
        Method::POST,
        "/auth/login",
        json!({"email": "admin@example.com", "password": "wrong password!"}),
    )
    .await;
    let (_, pair) = anonymous(Method::POST, "/auth/login", account).await;
    let (_, pair) = anonymous(
        Method::POST,
        "/auth/refresh",
        json!({"refresh_token": pair["refresh_token"]}),
    )
    .await;
    let token = pair["access_token"].as_str().expect("token").to_owned();
    let (_, users) = app
        .call_as(Some(&token), Method::GET, "/admin/users", None)
        .await;
    let bob = users["items"][1]["id"].as_str().expect("bob").to_owned();
    send(&app, &token, Method::GET, "/auth/me", None).await;
    send(&app, &token, Method::GET, "/auth/sessions", None).await;
    let key = send(
        &app,
        &token,
        Method::POST,
        "/auth/api-keys",
        Some(json!({"name": "k", "scopes": ["archive:read"]})),
    )
    .await;
    send(&app, &token, Method::GET, "/auth/api-keys", None).await;
    send(
        &app,
        &token,
        Method::DELETE,
        &format!("/auth/api-keys/{}", key["id"].as_str().expect("id")),
        None,
    )
    .await;
    send(&app, &token, Method::POST, "/auth/2fa/enroll", None).await;
    send(
        &app,
        &token,
        Method::PATCH,
        &format!("/admin/users/{bob}"),
        Some(json!({"role": "viewer"})),
    )
    .await;
    send(&app, &token, Method::GET, "/audit?type=login.failed", None).await;
    send(&app, &token, Method::GET, "/audit/verify", None).await;
    send(&app, &token, Method::POST, "/auth/logout", None).await;
    assert_granted("AuthFunction", &log);
}

#[tokio::test(flavor = "current_thread")]
async fn the_chat_function_touches_only_what_its_policy_grants() {
    let log: Log = Arc::default();
    let app = app(&log).await;
    let chat = CHAT.with(|c| c.borrow().clone()).expect("chat service");
    let admin = app.sign_up("admin@example.com").await;
    let token = admin.access_token.as_str();
    log.lock().expect("log").clear();
    let created = send(
        &app,
        token,
        Method::POST,
        "/chat/conversations",
        Some(json!({"title": "t"})),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();
    send(
        &app,
        token,
        Method::GET,
        "/chat/conversations?search=t",
        None,
    )
    .await;
    send(
        &app,
        token,
        Method::POST,
        "/memory",
        Some(json!({"text": "Likes tea."})),
    )
    .await;
    let exchange = send(
        &app,
        token,
        Method::POST,
        &format!("/chat/conversations/{id}/messages"),
        Some(json!({"content": "hi, do I like tea?"})),
    )
    .await;
    chat.settled().await;
    let stream = exchange["stream_id"].as_str().expect("stream").to_owned();
    for (method, uri, body) in [
        (Method::GET, format!("/chat/conversations/{id}"), None),
        (
            Method::PATCH,
            format!("/chat/conversations/{id}"),
            Some(json!({"system": "s"})),
        ),
        (
            Method::GET,
            format!("/chat/conversations/{id}/summary"),
            None,
        ),
        (
            Method::GET,
            format!("/chat/conversations/{id}/export"),
            None,
        ),
        (Method::GET, format!("/chat/streams/{stream}"), None),
        (Method::POST, format!("/chat/streams/{stream}/cancel"), None),
        (Method::GET, "/memory".to_owned(), None),
        (
            Method::PUT,
            "/memory/settings".to_owned(),
            Some(json!({"learn": false})),
        ),
        (Method::GET, "/memory/settings".to_owned(), None),
        (Method::DELETE, "/memory".to_owned(), None),
        (Method::DELETE, format!("/chat/conversations/{id}"), None),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("authorization", format!("Bearer {token}"));
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("request");
        let response = app.respond(request).await;
        assert!(
            response.status().is_success(),
            "{uri}: {}",
            response.status()
        );
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
    }
    let touched = log.lock().expect("log").clone();
    for partition in ["chat#", "memory#", "~gen#", "usage#"] {
        assert!(
            touched.iter().any(|(_, p)| p.starts_with(partition)),
            "{partition} was not exercised"
        );
    }
    assert_granted("ChatFunction", &log);
    assert_granted("ChatStreamFunction", &log);
}

/// Sends to any connection but those in `gone`, which answer 410.
#[derive(Debug, Default)]
struct Delivered {
    gone: Mutex<BTreeSet<String>>,
}

#[async_trait::async_trait]
impl jarvis_realtime::Connections for Delivered {
    async fn post(&self, connection: &str, _data: &str) -> Result<(), jarvis_realtime::Delivery> {
        if self.gone.lock().expect("lock").contains(connection) {
            return Err(jarvis_realtime::Delivery::Gone);
        }
        Ok(())
    }

    async fn close(&self, _connection: &str) -> Result<(), jarvis_realtime::Delivery> {
        Ok(())
    }
}

/// A WebSocket event of `route` on `connection`, as API Gateway sends it.
fn ws_event(
    route: &str,
    connection: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest {
    let query = token.map_or(json!({}), |t| json!({ "token": t }));
    jarvis_fn_realtime::event_of(json!({
        "queryStringParameters": query,
        "requestContext": {
            "routeKey": route,
            "connectionId": connection,
            "connectedAt": 0,
            "requestTimeEpoch": 0,
            "domainName": "example.execute-api.eu-west-1.amazonaws.com",
            "stage": "live",
            "identity": { "sourceIp": "192.0.2.1" }
        },
        "body": body.map(|b| b.to_string()),
    }))
    .expect("event")
}

#[tokio::test]
async fn the_realtime_function_and_publishing_on_write_touch_only_what_their_policies_grant() {
    let log: Log = Arc::default();
    let app = app(&log).await;
    let chat = CHAT.with(|c| c.borrow().clone()).expect("chat service");
    let admin = app.sign_up("admin@example.com").await;
    let token = admin.access_token.as_str();
    let created = send(
        &app,
        token,
        Method::POST,
        "/chat/conversations",
        Some(json!({})),
    )
    .await;
    let conversation = created["id"].as_str().expect("id").to_owned();
    let delivered = Arc::new(Delivered::default());
    let connections = Arc::clone(&delivered) as Arc<dyn jarvis_realtime::Connections>;
    assert!(app.state.realtime.attach(Arc::clone(&connections)));
    let realtime = jarvis_fn_realtime::Realtime::new(app.state.clone(), Arc::clone(&chat));
    log.lock().expect("log").clear();

    let handle = |route: &str, connection: &str, body: Option<serde_json::Value>| {
        let token = (route == "$connect").then_some(token);
        realtime.handle(
            ws_event(route, connection, token, body),
            Arc::clone(&connections),
        )
    };
    for connection in ["c1", "c2", "gone"] {
        assert_eq!(handle("$connect", connection, None).await.status_code, 200);
    }
    let topics = json!({"action": "subscribe", "topics": ["archive", "crdt:s", format!("chat:{conversation}")]});
    for connection in ["c1", "c2", "gone"] {
        handle("subscribe", connection, Some(topics.clone())).await;
    }
    handle("ping", "c1", Some(json!({"action": "ping"}))).await;
    let message = json!({"action": "chat.send", "conversation_id": conversation, "content": "hi"});
    handle("chat.send", "c1", Some(message)).await;
    chat.settled().await;
    let page = jarvis_fn_chat::jarvis_chat::conversation::messages(
        chat.site(),
        &admin.user_id,
        &conversation.parse().expect("uuid"),
        None,
        10,
    )
    .await
    .expect("messages");
    assert_eq!(page.items.len(), 2, "the question and the reply");
    let stream = page
        .items
        .iter()
        .find_map(|m| m.meta.stream_id)
        .expect("stream");
    handle(
        "chat.resume",
        "c2",
        Some(json!({"action": "chat.resume", "stream_id": stream, "after_seq": 0})),
    )
    .await;
    handle(
        "chat.cancel",
        "c2",
        Some(json!({"action": "chat.cancel", "stream_id": stream})),
    )
    .await;
    handle(
        "unsubscribe",
        "c2",
        Some(json!({"action": "unsubscribe", "topics": ["crdt:s"]})),
    )
    .await;
    handle("$default", "c2", Some(json!({"action": "nope"}))).await;
    handle("$disconnect", "c2", None).await;
    let touched = log.lock().expect("log").clone();
    for partition in ["~ws#", "~wsc#", "chat#", "~gen#", "usage#"] {
        assert!(
            touched.iter().any(|(_, p)| p.starts_with(partition)),
            "{partition} was not exercised"
        );
    }
    assert_granted("RealtimeFunction", &log);

    // Publishing on write: listing the owner's connections, forgetting a gone one.
    for (resource, method, uri, body) in [
        (
            "ArchiveFunction",
            Method::POST,
            "/archive",
            json!({"kind": "note", "title": "t", "content": "c"}),
        ),
        (
            "CrdtFunction",
            Method::POST,
            "/crdt/sets/s",
            json!({"add": ["a"]}),
        ),
    ] {
        handle("$connect", "gone", None).await;
        handle("subscribe", "gone", Some(topics.clone())).await;
        delivered
            .gone
            .lock()
            .expect("lock")
            .insert("gone".to_owned());
        log.lock().expect("log").clear();
        send(&app, token, method, uri, Some(body)).await;
        let registry = app.state.realtime.registry();
        assert_eq!(
            registry.get("gone").await.expect("get"),
            None,
            "{resource}: a gone connection is forgotten"
        );
        let touched = log.lock().expect("log").clone();
        assert!(
            touched
                .iter()
                .any(|(action, p)| *action == "dynamodb:Query" && p.starts_with("~ws#")),
            "{resource}: {touched:?}"
        );
        assert_granted(resource, &log);
        delivered.gone.lock().expect("lock").clear();
    }
}

/// Jobs kept in memory, as SQS keeps them on AWS.
#[derive(Default)]
struct Held(Mutex<Vec<jarvis_knowledge::documents::Job>>);

#[async_trait::async_trait]
impl jarvis_knowledge::service::Queue for Held {
    async fn send(
        &self,
        job: &jarvis_knowledge::documents::Job,
    ) -> Result<(), jarvis_knowledge::service::KnowledgeError> {
        self.0.lock().expect("jobs").push(job.clone());
        Ok(())
    }
}

#[tokio::test]
async fn the_knowledge_function_and_its_worker_touch_only_what_their_policies_grant() {
    let log: Log = Arc::default();
    let slot: Arc<OnceLock<Arc<jarvis_knowledge::service::Knowledge>>> = Arc::default();
    let routes = routes_with(&slot);
    let env = [(
        "JARVIS_AI_MODELS",
        "smart=scripted:echo;embed=scripted:hash",
    )];
    let app = logged_app(routes, &env, &log).await;
    let ai = Arc::new(Ai::new(
        &app.state.config,
        Arc::clone(&app.state.secrets),
        Vec::new(),
    ));
    let knowledge = jarvis_fn_knowledge::service(&app.state, ai).expect("processors");
    let jobs = Arc::new(Held::default());
    knowledge.attach_queue(Arc::clone(&jobs) as _);
    assert!(slot.set(Arc::clone(&knowledge)).is_ok());
    let user = app.sign_up("reader@example.com").await;
    let token = user.access_token.as_str();
    let entry = send(
        &app,
        token,
        Method::POST,
        "/archive",
        Some(json!({"kind": "note", "title": "Boats", "content": "Paint the hull in spring."})),
    )
    .await;
    // Indexed when the whole archive is.
    send(
        &app,
        token,
        Method::POST,
        "/archive",
        Some(json!({"kind": "note", "title": "Bees", "content": "Feed the colony in winter."})),
    )
    .await;
    log.lock().expect("log").clear();

    let boundary = "least-privilege";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.md\"\r\n\r\n# Owls\n\nOwls hunt at night.\r\n--{boundary}--\r\n"
    );
    let request = Request::post("/knowledge/documents")
        .header("authorization", format!("Bearer {token}"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(form))
        .expect("request");
    let (status, uploaded) = app.send(request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{uploaded}");
    let from_archive = send(
        &app,
        token,
        Method::POST,
        "/knowledge/documents",
        Some(json!({"url": format!("/archive/{}", entry["id"].as_str().expect("id"))})),
    )
    .await;
    let api = log.lock().expect("log").clone();
    log.lock().expect("log").clear();

    // The worker reads both documents.
    let queued = jobs.0.lock().expect("jobs").clone();
    assert_eq!(queued.len(), 2);
    for job in &queued {
        knowledge.ingest(job).await.expect("read");
    }
    assert_granted("KnowledgeWorkerFunction", &log);
    log.lock().expect("log").clear();

    let id = uploaded["id"].as_str().expect("id");
    for (method, uri, body) in [
        (Method::GET, "/knowledge/documents".to_owned(), None),
        (Method::GET, format!("/knowledge/documents/{id}"), None),
        (Method::GET, "/knowledge/search?q=owls".to_owned(), None),
        (
            Method::POST,
            "/knowledge/ask".to_owned(),
            Some(json!({"question": "When do owls hunt?"})),
        ),
        (
            Method::DELETE,
            format!(
                "/knowledge/documents/{}",
                from_archive["id"].as_str().expect("id")
            ),
            None,
        ),
        (
            Method::PUT,
            "/knowledge/settings".to_owned(),
            Some(json!({"index_archive": true})),
        ),
        (Method::GET, "/knowledge/settings".to_owned(), None),
    ] {
        send(&app, token, method, &uri, body).await;
    }
    log.lock().expect("log").extend(api);
    let touched = log.lock().expect("log").clone();
    for partition in ["knowledge#", "~knowledge#", "archive#"] {
        assert!(
            touched.iter().any(|(_, p)| p.starts_with(partition)),
            "{partition} was not exercised"
        );
    }
    assert_granted("KnowledgeFunction", &log);

    // The worker indexes the whole archive (a page job, then a job per entry), and follows
    // an entry's deletion, as the archive function's messages ask.
    let id = entry["id"].as_str().expect("id");
    send(&app, token, Method::DELETE, &format!("/archive/{id}"), None).await;
    log.lock().expect("log").clear();
    let role = queued[0].role.clone();
    let mut pending: Vec<_> = jobs.0.lock().expect("jobs").drain(..).collect();
    pending.push(jarvis_knowledge::documents::Job::archive_entry(
        &user.user_id,
        &role,
        id,
    ));
    while let Some(job) = pending.pop() {
        knowledge.ingest(&job).await.expect("archive work");
        pending.extend(jobs.0.lock().expect("jobs").drain(..));
    }
    let touched = log.lock().expect("log").clone();
    assert!(
        touched.iter().any(|(_, p)| p.starts_with("archive#")),
        "the archive was not read"
    );
    assert_granted("KnowledgeWorkerFunction", &log);
}

/// Runs queued by the agents, kept for the test to drive.
#[derive(Default)]
struct Queued(Mutex<Vec<jarvis_agents::queue::Job>>);

#[async_trait::async_trait]
impl jarvis_agents::queue::Dispatch for Queued {
    async fn dispatch(
        &self,
        job: &jarvis_agents::queue::Job,
        _delay: std::time::Duration,
    ) -> Result<(), jarvis_agents::AgentError> {
        self.0.lock().expect("jobs").push(job.clone());
        Ok(())
    }
}

#[tokio::test]
async fn the_agents_and_automations_functions_touch_only_what_their_policies_grant() {
    // The model calls every tool in its first turn, then answers.
    let script = std::env::temp_dir().join(format!("jarvis-script-{}.json", uuid::Uuid::new_v4()));
    let calls = json!([
        {"name": "archive_add", "arguments": {"title": "t", "content": "c"}},
        {"name": "archive_search", "arguments": {"text": "c"}},
        {"name": "crdt_change", "arguments": {"kind": "set", "name": "s", "add": ["a"]}},
        {"name": "crdt_read", "arguments": {"kind": "set", "name": "s"}},
        {"name": "counter_increment", "arguments": {"name": "c"}},
        {"name": "reminder_create", "arguments": {"message": "m", "at": "2099-01-01T09:00:00"}},
        {"name": "knowledge_search", "arguments": {"query": "owls"}},
        {"name": "current_time", "arguments": {}},
        {"name": "calculator", "arguments": {"expression": "1+1"}},
        {"name": "trading_signal", "arguments": {"symbol": "AAA", "side": "buy", "quantity": "1", "reason": "r"}},
    ]);
    std::fs::write(
        &script,
        json!({"replies": [{"text": "Working.", "tool_calls": calls}, {"text": "Done."}]})
            .to_string(),
    )
    .expect("script");
    let log: Log = Arc::default();
    type Services = (
        Arc<jarvis_agents::Agents>,
        Arc<jarvis_fn_automations::Automating>,
    );
    let slot: Arc<OnceLock<Services>> = Arc::default();
    let service = Arc::clone(&slot);
    let routes = jarvis_tests::all_routes().layer(axum::middleware::map_request(
        move |mut request: Request<Body>| {
            let services = service.get().cloned();
            async move {
                if let Some((agents, automating)) = services {
                    request.extensions_mut().insert(agents);
                    request.extensions_mut().insert(automating);
                }
                request
            }
        },
    ));
    let script_path = script.to_string_lossy().into_owned();
    let env = [
        (
            "JARVIS_AI_MODELS",
            "smart=scripted:script;embed=scripted:hash",
        ),
        ("JARVIS_AI_SCRIPT", script_path.as_str()),
    ];
    let app = logged_app(routes, &env, &log).await;
    let ai = Arc::new(Ai::new(
        &app.state.config,
        Arc::clone(&app.state.secrets),
        Vec::new(),
    ));
    let knowledge = jarvis_fn_knowledge::service(&app.state, Arc::clone(&ai)).expect("processors");
    let agents = jarvis_fn_agents::service(&app.state, ai, Some(knowledge), None).expect("tools");
    let queued = Arc::new(Queued::default());
    agents.attach_dispatch(Arc::clone(&queued) as _);
    let automating = jarvis_fn_automations::service(&app.state, Some(Arc::clone(&agents)), None);
    assert!(
        slot.set((Arc::clone(&agents), Arc::clone(&automating)))
            .is_ok()
    );
    let user = app.sign_up("agent@example.com").await;
    let token = user.access_token.as_str();
    // Prices for the trading tool (the account's replay clock starts on 2005-01-03).
    jarvis_fn_trading::service(&app.state)
        .0
        .import(
            b"Ticker,Date,Open,High,Low,Close,Volume,Adj Close\n\
              AAA,2004-12-31,10.00,10.50,9.50,10.20,1000,10.20\n\
              AAA,2005-01-03,10.20,10.60,9.90,10.40,1000,10.40\n",
        )
        .await
        .expect("imported");
    log.lock().expect("log").clear();

    // The HTTP function: runs started, listed, read, cancelled, approved and denied.
    let run = send(
        &app,
        token,
        Method::POST,
        "/agents/runs",
        Some(json!({"goal": "Use every tool"})),
    )
    .await;
    let waiting = send(
        &app,
        token,
        Method::POST,
        "/agents/runs",
        Some(json!({"goal": "Ask first", "tools": ["archive_add"], "approval": ["archive_add"]})),
    )
    .await;
    let cancelled = send(
        &app,
        token,
        Method::POST,
        "/agents/runs",
        Some(json!({"goal": "Never mind"})),
    )
    .await;
    let id = |v: &serde_json::Value| v["id"].as_str().expect("id").to_owned();
    let api = log.lock().expect("log").clone();
    log.lock().expect("log").clear();

    // The worker drives them (the one waiting for approval stops there).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let jobs: Vec<_> = queued.0.lock().expect("jobs").drain(..).collect();
    for job in &jobs {
        if job.run != id(&cancelled) {
            agents
                .invoke(job, deadline, "worker")
                .await
                .expect("driven");
        }
    }
    let (driven, steps) = agents.get(&user.user_id, &id(&run)).await.expect("run");
    assert_eq!(driven.status.name(), "succeeded", "{steps:?}");
    assert!(
        steps.iter().all(|s| s.status.name() == "completed"),
        "every tool answered: {steps:?}"
    );
    assert_granted("AgentsWorkerFunction", &log);
    log.lock().expect("log").clear();

    for (method, uri, body) in [
        (Method::GET, "/agents/runs".to_owned(), None),
        (Method::GET, format!("/agents/runs/{}", id(&run)), None),
        (Method::GET, "/agents/tools".to_owned(), None),
        (
            Method::POST,
            format!("/agents/runs/{}/cancel", id(&cancelled)),
            None,
        ),
        (
            Method::POST,
            format!("/agents/runs/{}/approve", id(&waiting)),
            None,
        ),
    ] {
        send(&app, token, method, &uri, body).await;
    }
    log.lock().expect("log").extend(api);
    assert_granted("AgentsFunction", &log);
    log.lock().expect("log").clear();

    // The automations function: made, listed, read, changed, their runs, removed.
    let mut made = Vec::new();
    for action in [
        json!({"type": "notify", "message": "Stretch"}),
        json!({"type": "archive_note", "title": "Weekly", "content": "Review"}),
        json!({"type": "agent", "goal": "Summarise", "tools": ["archive_search"]}),
    ] {
        made.push(
            send(
                &app,
                token,
                Method::POST,
                "/automations",
                Some(json!({"name": "n", "schedule": "rate(1 hour)", "action": action})),
            )
            .await,
        );
    }
    let first = id(&made[0]);
    for (method, uri, body) in [
        (Method::GET, "/automations".to_owned(), None),
        (Method::GET, format!("/automations/{first}"), None),
        (
            Method::PATCH,
            format!("/automations/{first}"),
            Some(json!({"name": "renamed"})),
        ),
        (Method::GET, format!("/automations/{first}/runs"), None),
    ] {
        send(&app, token, method, &uri, body).await;
    }
    let removable = send(
        &app,
        token,
        Method::POST,
        "/automations",
        Some(json!({"name": "gone", "schedule": "rate(1 hour)", "action": {"type": "notify", "message": "x"}})),
    )
    .await;
    send(
        &app,
        token,
        Method::DELETE,
        &format!("/automations/{}", id(&removable)),
        None,
    )
    .await;
    assert_granted("AutomationsFunction", &log);
    log.lock().expect("log").clear();

    // The firer: every action runs (an agent run started and queued, a note, a
    // notification), the deleted automation's entry is dropped.
    let now = u64::try_from(jarvis_store::now_secs() * 1000 + 1_000).expect("now");
    let report = automating
        .automations
        .fire_due(automating.actions.as_ref(), now)
        .await
        .expect("fired");
    assert_eq!(report.fired, 3, "{report:?}");
    assert_granted("AutomationsDueFunction", &log);
    let _ = std::fs::remove_file(&script);
}

#[tokio::test]
async fn the_trading_function_touches_only_what_its_policy_grants() {
    let log: Log = Arc::default();
    let slot: Arc<OnceLock<Arc<jarvis_fn_trading::Hosting>>> = Arc::default();
    let routes = routes_with(&slot);
    let env = [("JARVIS_TRADING_START_DATE", "2005-01-03")];
    let app = logged_app(routes, &env, &log).await;
    assert!(slot.set(jarvis_fn_trading::service(&app.state)).is_ok());
    // The first account is the admin: imports, the kill switch and transfers are its.
    let admin = app.sign_up("trader@example.com").await;
    let token = admin.access_token.as_str();
    log.lock().expect("log").clear();

    let csv = "Ticker,Date,Open,High,Low,Close,Volume,Adj Close\n\
        AAA,2004-12-30,10.00,10.50,9.50,10.20,1000,10.20\n\
        AAA,2004-12-31,10.20,10.60,9.90,10.40,1000,10.40\n\
        AAA,2005-01-03,10.40,10.90,10.10,10.70,1000,10.70\n\
        AAA,2005-01-04,10.70,11.00,10.40,10.90,1000,10.90\n\
        AAA,2005-01-05,10.90,11.20,10.60,11.00,1000,11.00\n";
    let import = Request::post("/trading/bars")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "text/csv")
        .body(Body::from(csv))
        .expect("request");
    assert_eq!(app.send(import).await.0, StatusCode::OK);
    let signal = send(
        &app,
        token,
        Method::POST,
        "/trading/signals",
        Some(json!({"symbol": "AAA", "side": "buy", "quantity": "10", "reason": "r"})),
    )
    .await;
    let resting = send(
        &app,
        token,
        Method::POST,
        "/trading/orders",
        Some(
            json!({"client_order_id": "rest", "symbol": "AAA", "side": "buy",
            "type": "limit", "quantity": "1", "limit_price": "5", "time_in_force": "gtc"}),
        ),
    )
    .await;
    let backtest = send(
        &app,
        token,
        Method::POST,
        "/trading/backtests",
        Some(
            json!({"strategy": {"name": "sma_crossover", "fast": 2, "slow": 3},
            "symbols": ["AAA"], "from": "2004-12-30", "to": "2005-01-05"}),
        ),
    )
    .await;
    let order = signal["order"]["id"].as_str().expect("order");
    let resting = resting["id"].as_str().expect("order");
    let backtest = backtest["id"].as_str().expect("backtest");
    for (method, uri, body) in [
        (Method::GET, "/trading/instruments".to_owned(), None),
        (
            Method::GET,
            "/trading/bars/AAA?from=2004-12-01&to=2005-01-31".to_owned(),
            None,
        ),
        (
            Method::PUT,
            "/trading/clock".to_owned(),
            Some(json!({"date": "2005-01-04"})),
        ),
        (Method::GET, "/trading/account".to_owned(), None),
        (Method::GET, "/trading/orders".to_owned(), None),
        (Method::GET, format!("/trading/orders/{order}"), None),
        (
            Method::POST,
            format!("/trading/orders/{resting}/cancel"),
            None,
        ),
        (Method::GET, "/trading/ledger".to_owned(), None),
        (
            Method::POST,
            "/trading/strategies/run".to_owned(),
            Some(json!({"strategy": {"name": "rsi_reversion", "period": 2,
                "oversold": 30, "overbought": 70}, "symbols": ["AAA"]})),
        ),
        (Method::GET, "/trading/state".to_owned(), None),
        (
            Method::PUT,
            "/trading/state".to_owned(),
            Some(json!({"state": "halted"})),
        ),
        (Method::GET, "/trading/limits".to_owned(), None),
        (
            Method::POST,
            "/trading/limits/transfer".to_owned(),
            Some(
                json!({"user": admin.user_id, "date": "2005-01-04", "replica": "elsewhere",
                "cents": 100}),
            ),
        ),
        (Method::GET, format!("/trading/backtests/{backtest}"), None),
    ] {
        send(&app, token, method, &uri, body).await;
    }
    let chart = Request::get(format!("/trading/backtests/{backtest}/chart"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(app.respond(chart).await.status(), StatusCode::OK);
    assert_granted("TradingFunction", &log);
}
