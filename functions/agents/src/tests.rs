use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use jarvis_agents::Agents;
use jarvis_agents::queue::Job;
use jarvis_agents::service::LocalDispatch;
use jarvis_ai::service::Ai;
use jarvis_fn_auth::testing::TestApp;
use serde_json::{Value, json};

/// The function's routes (with the archive's, the CRDT function's and the auth function's,
/// whose data the tools reach and whose keys the tests mint) over agents thinking with
/// `script`.
struct Host {
    app: TestApp,
    agents: Arc<Agents>,
    _script: tempfile::TempDir,
}

async fn host(script: Value) -> Host {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("script.json");
    std::fs::write(&path, script.to_string()).expect("script");
    let slot: Arc<OnceLock<Arc<Agents>>> = Arc::new(OnceLock::new());
    let services = Arc::clone(&slot);
    let router: axum::Router<jarvis_app::AppState> = super::api()
        .merge(jarvis_fn_archive::api())
        .merge(jarvis_fn_crdt::api())
        .merge(jarvis_fn_auth::api())
        .into();
    let router = router.layer(tower::util::MapRequestLayer::new(
        move |mut request: Request<Body>| {
            if let Some(agents) = services.get() {
                request.extensions_mut().insert(Arc::clone(agents));
            }
            request
        },
    ));
    let script_path = path.to_string_lossy().into_owned();
    let app = TestApp::signed_in_with_env(
        router,
        &[
            (
                "JARVIS_AI_MODELS",
                "smart=scripted:script;embed=scripted:hash",
            ),
            ("JARVIS_AI_SCRIPT", script_path.as_str()),
        ],
    )
    .await;
    let ai = Arc::new(Ai::new(
        &app.state.config,
        Arc::clone(&app.state.secrets),
        Vec::new(),
    ));
    let agents = super::service(&app.state, ai, None, None).expect("tools");
    agents.attach_dispatch(Arc::new(LocalDispatch(Arc::default())));
    assert!(slot.set(Arc::clone(&agents)).is_ok());
    Host {
        app,
        agents,
        _script: dir,
    }
}

impl Host {
    /// Drives `run` (of the signed-in account unless `user` says) until it ends or waits.
    async fn drive(&self, user: &str, run: &Value) {
        let job = Job {
            user: user.to_owned(),
            run: run["id"].as_str().expect("id").to_owned(),
        };
        for _ in 0..5 {
            let invoked = self
                .agents
                .invoke(&job, Instant::now() + Duration::from_secs(30), "test")
                .await
                .expect("invoke");
            if !matches!(invoked, jarvis_agents::Invoked::Yielded) {
                return;
            }
        }
    }

    async fn owner(&self) -> String {
        let (_, me) = self.app.call(Method::GET, "/auth/me", None).await;
        me["id"].as_str().expect("id").to_owned()
    }
}

fn notes_then_answer() -> Value {
    json!({"replies": [
        {"text": "Noting.", "tool_calls": [
            {"name": "archive_add", "arguments": {"title": "Milk", "content": "Buy milk", "tags": ["shopping"]}},
            {"name": "crdt_change", "arguments": {"kind": "orset", "name": "list", "add": ["milk"]}}
        ]},
        {"text": "Counting.", "tool_calls": [
            {"name": "counter_increment", "arguments": {"name": "errands", "by": 2}},
            {"name": "archive_search", "arguments": {"text": "milk"}}
        ]},
        {"text": "Milk is on the list."}
    ]})
}

#[tokio::test]
async fn a_run_started_over_http_acts_through_the_other_functions_and_reads_back_with_its_steps() {
    let host = host(notes_then_answer()).await;
    let (status, run) = host
        .app
        .call(
            Method::POST,
            "/agents/runs",
            Some(json!({"goal": "Put milk on my list", "max_steps": 10})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    assert_eq!(run["status"], "queued");
    host.drive(&host.owner().await, &run).await;
    let id = run["id"].as_str().expect("id");
    let (status, detail) = host
        .app
        .call(Method::GET, &format!("/agents/runs/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["status"], "succeeded", "{detail}");
    assert_eq!(detail["result"], "Milk is on the list.");
    assert_eq!(detail["steps_taken"], 7);
    assert!(detail["usage"]["input_tokens"].as_u64().expect("usage") > 0);
    let results: Vec<&str> = detail["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["kind"] == "tool")
        .map(|s| s["status"].as_str().expect("status"))
        .collect();
    assert_eq!(results, ["completed"; 4], "{detail}");

    // What the tools did is there for the user, made through the functions' own rules.
    let (_, notes) = host
        .app
        .call(Method::GET, "/archive?tag=shopping", None)
        .await;
    assert_eq!(notes["items"][0]["title"], "Milk");
    let (_, list) = host.app.call(Method::GET, "/crdt/orsets/list", None).await;
    assert_eq!(list["elements"], json!(["milk"]));
    let (_, errands) = host
        .app
        .call(Method::GET, "/crdt/counters/errands", None)
        .await;
    assert_eq!(errands["value"], 2);
    let search = detail["steps"][5]["result"]
        .as_str()
        .expect("search result");
    assert!(search.contains("Buy milk"), "{search}");

    let (_, page) = host
        .app
        .call(Method::GET, "/agents/runs?limit=1", None)
        .await;
    assert_eq!(page["items"][0]["id"], run["id"]);
}

#[tokio::test]
async fn an_api_key_hands_a_run_only_its_scopes() {
    let host = host(notes_then_answer()).await;
    let (status, key) = host
        .app
        .call(
            Method::POST,
            "/auth/api-keys",
            Some(json!({"name": "runner", "scopes": ["agents:write", "agents:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let key = key["key"].as_str().expect("key").to_owned();
    let with_key = |body: Value| {
        Request::post("/agents/runs")
            .header("x-api-key", &key)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request")
    };
    let (status, refused) = host
        .app
        .send(with_key(
            json!({"goal": "Note it", "tools": ["archive_add"]}),
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("archive:write"))
    );
    let (status, run) = host.app.send(with_key(json!({"goal": "Note it"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    assert_eq!(run["tools"], json!(["current_time", "calculator"]));
    // Were the model to call a tool the run was not given, it is told so and no note is made.
    host.drive(&host.owner().await, &run).await;
    let (_, notes) = host.app.call(Method::GET, "/archive", None).await;
    assert_eq!(notes["items"], json!([]));
    let request = Request::get("/agents/tools")
        .header("x-api-key", &key)
        .body(Body::empty())
        .expect("request");
    let (_, tools) = host.app.send(request).await;
    let archive_add = tools
        .as_array()
        .expect("tools")
        .iter()
        .find(|t| t["name"] == "archive_add")
        .expect("listed");
    assert_eq!(archive_add["allowed"], false);
    assert_eq!(archive_add["effect"], "idempotent");
    assert_eq!(archive_add["parameters"]["type"], "object");
}

#[tokio::test]
async fn a_call_awaiting_approval_is_shown_and_goes_on_when_approved_or_denied() {
    let host = host(notes_then_answer()).await;
    let owner = host.owner().await;
    let ask = json!({"goal": "Note it", "tools": ["archive_add", "crdt_change", "counter_increment", "archive_search"], "approval": ["archive_add"]});
    let (_, approved) = host
        .app
        .call(Method::POST, "/agents/runs", Some(ask.clone()))
        .await;
    host.drive(&owner, &approved).await;
    let id = approved["id"].as_str().expect("id");
    let (_, waiting) = host
        .app
        .call(Method::GET, &format!("/agents/runs/{id}"), None)
        .await;
    assert_eq!(waiting["status"], "waiting");
    assert_eq!(waiting["awaiting"]["name"], "archive_add");
    let (status, _) = host
        .app
        .call(Method::POST, &format!("/agents/runs/{id}/approve"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, again) = host
        .app
        .call(Method::POST, &format!("/agents/runs/{id}/approve"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    host.drive(&owner, &approved).await;
    let (_, done) = host
        .app
        .call(Method::GET, &format!("/agents/runs/{id}"), None)
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");

    let (_, denied) = host.app.call(Method::POST, "/agents/runs", Some(ask)).await;
    host.drive(&owner, &denied).await;
    let id = denied["id"].as_str().expect("id");
    let (status, _) = host
        .app
        .call(
            Method::POST,
            &format!("/agents/runs/{id}/deny"),
            Some(json!({"reason": "not milk"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    host.drive(&owner, &denied).await;
    let (_, done) = host
        .app
        .call(Method::GET, &format!("/agents/runs/{id}"), None)
        .await;
    let refused = done["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["kind"] == "tool" && s["call"]["name"] == "archive_add")
        .expect("the denied call");
    assert_eq!(refused["status"], "failed");
    assert_eq!(refused["result"], "the user denied this call: not milk");
    // Only the approved run made a note.
    let (_, notes) = host
        .app
        .call(Method::GET, "/archive?tag=shopping", None)
        .await;
    assert_eq!(notes["items"].as_array().expect("notes").len(), 1);
}

#[tokio::test]
async fn bad_requests_name_their_field_and_other_users_runs_are_not_found() {
    let host = host(notes_then_answer()).await;
    for (body, status, field) in [
        (json!({"goal": ""}), StatusCode::BAD_REQUEST, "goal"),
        (json!({"goal": "x\u{1}"}), StatusCode::BAD_REQUEST, "goal"),
        (
            json!({"goal": "x", "max_steps": 0}),
            StatusCode::BAD_REQUEST,
            "max_steps",
        ),
        (
            json!({"goal": "x", "token_budget": 5}),
            StatusCode::BAD_REQUEST,
            "token_budget",
        ),
        (
            json!({"goal": "x", "tools": null}),
            StatusCode::BAD_REQUEST,
            "tools",
        ),
        (
            json!({"goal": "x", "tools": ["teleport"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "tools[0]",
        ),
        (
            json!({"goal": "x", "tools": ["calculator"], "approval": ["calculator"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "approval[0]",
        ),
    ] {
        let (got, answer) = host
            .app
            .call(Method::POST, "/agents/runs", Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    let (status, _) = host
        .app
        .call(
            Method::POST,
            "/agents/runs",
            Some(json!({"goal": "x", "extra": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, run) = host
        .app
        .call(Method::POST, "/agents/runs", Some(json!({"goal": "Mine"})))
        .await;
    let id = run["id"].as_str().expect("id");
    let other = host.app.sign_up("bob@example.com").await;
    for (method, uri) in [
        (Method::GET, format!("/agents/runs/{id}")),
        (Method::POST, format!("/agents/runs/{id}/cancel")),
        (Method::POST, format!("/agents/runs/{id}/approve")),
    ] {
        let (status, _) = host
            .app
            .call_as(Some(&other.access_token), method.clone(), &uri, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}");
    }
    let (status, _) = host
        .app
        .call(Method::GET, "/agents/runs/not-a-uuid", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, cancelling) = host
        .app
        .call(Method::POST, &format!("/agents/runs/{id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(cancelling["cancel_requested"], true);
    host.drive(&host.owner().await, &run).await;
    let (status, _) = host
        .app
        .call(Method::POST, &format!("/agents/runs/{id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "a finished run");
}

#[tokio::test]
async fn an_agents_trading_signal_is_sent_as_the_agent_and_once_however_often_its_call_is_repeated()
{
    let buy =
        json!({"symbol": "AAA", "side": "buy", "quantity": "5", "reason": "the agent likes it"});
    let host = host(json!({"replies": [
        {"text": "Buying.", "tool_calls": [{"name": "trading_signal", "arguments": buy}]},
        {"text": "Sent."}
    ]}))
    .await;
    // Prices around the day a paper account starts on (2005-01-03).
    let trading = jarvis_fn_trading::service(&host.app.state);
    trading
        .0
        .import(
            b"Ticker,Date,Open,High,Low,Close,Volume,Adj Close\n\
              AAA,2004-12-31,10.00,10.50,9.50,10.20,1000,10.20\n\
              AAA,2005-01-03,10.20,10.60,9.90,10.40,1000,10.40\n",
        )
        .await
        .expect("imported");
    let (_, run) = host
        .app
        .call(
            Method::POST,
            "/agents/runs",
            Some(json!({"goal": "Buy some AAA", "tools": ["trading_signal"]})),
        )
        .await;
    let owner = host.owner().await;
    host.drive(&owner, &run).await;
    let id = run["id"].as_str().expect("id");
    let (_, detail) = host
        .app
        .call(Method::GET, &format!("/agents/runs/{id}"), None)
        .await;
    assert_eq!(detail["status"], "succeeded", "{detail}");
    let sent = detail["steps"][1]["result"]
        .as_str()
        .expect("the tool's answer");
    assert!(sent.contains("\"accepted\""), "{sent}");

    // The same call made again (a worker that stopped before recording it): one order.
    let tool = crate::tools::TradingSignal(crate::tools::InProcess::new(
        jarvis_fn_trading::routes(Arc::clone(&trading)),
        &host.app.state,
    ));
    let identity = jarvis_identity::Identity {
        user_id: owner.clone(),
        email: "owner@example.com".into(),
        role: jarvis_identity::Role::Admin,
        credential: jarvis_identity::Credential::Delegated {
            scopes: vec![jarvis_identity::Scope::TradingWrite],
            api_key: None,
        },
    };
    let call = jarvis_agents::ToolCall {
        identity: &identity,
        run: "a-run",
        step: 1,
        arguments: &buy,
        now_ms: 1_765_000_000_000,
        run_created_ms: 1_765_000_000_000,
    };
    use jarvis_agents::Tool as _;
    let first = tool.call(&call).await.expect("sent");
    let again = tool.call(&call).await.expect("answered");
    assert_eq!(first, again);
    let orders = trading.0.orders(&owner, None, 10).await.expect("orders");
    assert_eq!(
        orders.items.len(),
        2,
        "the run's, and the repeated call's once"
    );

    // Both were the agent's, as the audit trail tells.
    let (_, audit) = host
        .app
        .call(Method::GET, "/audit?type=trading.signal.accepted", None)
        .await;
    let details: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert_eq!(details.len(), 2, "{audit}");
    assert!(
        details.iter().all(|d| d.contains("source=agent")),
        "{details:?}"
    );
}
