use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use jarvis_agents::service::LocalDispatch;
use jarvis_ai::service::Ai;
use jarvis_fn_auth::testing::TestApp;
use serde_json::{Value, json};

use crate::Automating;

/// The function's routes (with the archive's, agents' and auth's) over automations whose
/// agent actions start runs of agents that echo.
struct Host {
    app: TestApp,
    automating: Arc<Automating>,
}

async fn host() -> Host {
    type Services = (Arc<Automating>, Arc<jarvis_agents::Agents>);
    let slot: Arc<OnceLock<Services>> = Arc::new(OnceLock::new());
    let services = Arc::clone(&slot);
    let router: axum::Router<jarvis_app::AppState> = super::api()
        .merge(jarvis_fn_archive::api())
        .merge(jarvis_fn_agents::api())
        .merge(jarvis_fn_auth::api())
        .into();
    let router = router.layer(tower::util::MapRequestLayer::new(
        move |mut request: Request<Body>| {
            if let Some((automating, agents)) = services.get() {
                request.extensions_mut().insert(Arc::clone(automating));
                request.extensions_mut().insert(Arc::clone(agents));
            }
            request
        },
    ));
    let app = TestApp::signed_in_with_env(
        router,
        &[(
            "JARVIS_AI_MODELS",
            "smart=scripted:echo;embed=scripted:hash",
        )],
    )
    .await;
    let ai = Arc::new(Ai::new(
        &app.state.config,
        Arc::clone(&app.state.secrets),
        Vec::new(),
    ));
    let agents = jarvis_fn_agents::service(&app.state, ai, None, None).expect("tools");
    agents.attach_dispatch(Arc::new(LocalDispatch(Arc::default())));
    let automating = super::service(&app.state, Some(Arc::clone(&agents)), None);
    assert!(slot.set((Arc::clone(&automating), agents)).is_ok());
    Host { app, automating }
}

impl Host {
    async fn fire(&self, at_ms: u64) -> jarvis_automations::Report {
        self.automating
            .automations
            .fire_due(self.automating.actions.as_ref(), at_ms)
            .await
            .expect("fired")
    }
}

fn now_ms() -> u64 {
    u64::try_from(jarvis_store::now_secs() * 1000).expect("now")
}

fn notify(schedule: &str) -> Value {
    json!({"name": "Stretch", "schedule": schedule, "action": {"type": "notify", "message": "Stand up"}})
}

#[tokio::test]
async fn an_automation_is_made_read_changed_listed_and_deleted() {
    let host = host().await;
    let (status, made) = host
        .app
        .call(
            Method::POST,
            "/automations",
            Some(notify("cron(30 9 ? * MON-FRI *)")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["time_zone"], "UTC");
    assert_eq!(made["enabled"], true);
    assert_eq!(made["fires_here"], true);
    assert!(
        made["next_run_at"]
            .as_str()
            .is_some_and(|t| t.contains("T09:30:00.000Z")),
        "{made}"
    );
    let id = made["id"].as_str().expect("id");
    let (status, read) = host
        .app
        .call(Method::GET, &format!("/automations/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        read["action"],
        json!({"type": "notify", "message": "Stand up"})
    );

    let (status, changed) = host
        .app
        .call(
            Method::PATCH,
            &format!("/automations/{id}"),
            Some(json!({"schedule": "cron(0 7 * * ? *)", "time_zone": "Europe/Oslo", "name": "Morning"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["name"], "Morning");
    // 07:00 in Oslo is 06:00 UTC in winter.
    assert!(
        changed["next_run_at"]
            .as_str()
            .is_some_and(|t| t.ends_with("T06:00:00.000Z")),
        "{changed}"
    );
    let (status, paused) = host
        .app
        .call(
            Method::PATCH,
            &format!("/automations/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(paused.get("next_run_at").is_none(), "{paused}");

    host.app
        .call(Method::POST, "/automations", Some(notify("rate(1 hour)")))
        .await;
    let (_, page) = host
        .app
        .call(Method::GET, "/automations?limit=1", None)
        .await;
    assert_eq!(page["items"].as_array().expect("items").len(), 1);
    assert_ne!(page["items"][0]["id"], made["id"], "newest first");
    assert!(page["next_cursor"].is_string());

    let (status, _) = host
        .app
        .call(Method::DELETE, &format!("/automations/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = host
        .app
        .call(Method::GET, &format!("/automations/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn due_automations_run_their_actions_once_and_list_their_runs() {
    let host = host().await;
    let mut ids = Vec::new();
    for action in [
        json!({"type": "notify", "message": "Stand up"}),
        json!({"type": "archive_note", "title": "Daily log", "content": "What happened?", "tags": ["log"]}),
        json!({"type": "agent", "goal": "Say hello", "tools": ["current_time"]}),
    ] {
        let (status, made) = host
            .app
            .call(
                Method::POST,
                "/automations",
                Some(json!({"name": "every hour", "schedule": "rate(1 hour)", "action": action})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        ids.push(made["id"].as_str().expect("id").to_owned());
    }
    let report = host.fire(now_ms() + 1_000).await;
    assert_eq!(report.fired, 3, "{report:?}");
    let again = host.fire(now_ms() + 2_000).await;
    assert_eq!(again.fired, 0, "each time once");

    let runs = |id: &str| format!("/automations/{id}/runs");
    let (_, notified) = host.app.call(Method::GET, &runs(&ids[0]), None).await;
    assert_eq!(notified["items"][0]["status"], "succeeded", "{notified}");
    assert_eq!(notified["items"][0]["detail"], "notified 0 connection(s)");
    let (_, noted) = host.app.call(Method::GET, &runs(&ids[1]), None).await;
    assert!(
        noted["items"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("archive entry "))
    );
    let (_, notes) = host.app.call(Method::GET, "/archive?tag=log", None).await;
    assert_eq!(notes["items"][0]["title"], "Daily log");
    let (_, started) = host.app.call(Method::GET, &runs(&ids[2]), None).await;
    let agent_run = started["items"][0]["agent_run"]
        .as_str()
        .expect("agent run");
    let (status, run) = host
        .app
        .call(Method::GET, &format!("/agents/runs/{agent_run}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["goal"], "Say hello");
    assert!(
        run["origin"]
            .as_str()
            .is_some_and(|o| o.starts_with(&format!("automation:{}@", ids[2]))),
        "{run}"
    );
}

#[tokio::test]
async fn an_automation_of_an_account_disabled_since_fails_with_the_reason() {
    let host = host().await;
    let other = host.app.sign_up("bob@example.com").await;
    let (status, made) = host
        .app
        .call_as(
            Some(&other.access_token),
            Method::POST,
            "/automations",
            Some(notify("rate(1 hour)")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = made["id"].as_str().expect("id");
    let (status, _) = host
        .app
        .call(
            Method::PATCH,
            &format!("/admin/users/{}", other.user_id),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let report = host.fire(now_ms() + 1_000).await;
    assert_eq!(report.fired, 1);
    let runs = jarvis_automations::runs::list(
        host.automating.automations.site(),
        &other.user_id,
        id,
        None,
        10,
    )
    .await
    .expect("runs");
    assert_eq!(
        runs.items[0].status,
        Some(jarvis_automations::fire::Status::Failed)
    );
    assert!(
        runs.items[0].detail.contains("no longer valid"),
        "{}",
        runs.items[0].detail
    );
    let (_, page) = host.app.call(Method::GET, "/automations", None).await;
    assert_eq!(
        page["items"],
        json!([]),
        "another user's automations are not listed"
    );
}

#[tokio::test]
async fn bad_automations_are_refused_naming_the_field() {
    let host = host().await;
    for (body, status, field) in [
        (
            notify("rate(1 minutes)"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "schedule",
        ),
        (
            notify("at(2001-01-01T00:00:00)"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "schedule",
        ),
        (
            notify("cron(0 9 * * * *)"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "schedule",
        ),
        (
            json!({"name": "x", "schedule": "rate(1 hour)", "time_zone": "Mars/Olympus", "action": {"type": "notify", "message": "m"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "time_zone",
        ),
        (
            json!({"name": "", "schedule": "rate(1 hour)", "action": {"type": "notify", "message": "m"}}),
            StatusCode::BAD_REQUEST,
            "name",
        ),
        (
            json!({"name": "x", "schedule": "rate(1 hour)", "action": {"type": "notify", "message": ""}}),
            StatusCode::BAD_REQUEST,
            "action.message",
        ),
        (
            json!({"name": "x", "schedule": "rate(1 hour)", "action": {"type": "agent", "goal": "g", "tools": ["teleport"]}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "action.tools[0]",
        ),
        (
            json!({"name": "x", "schedule": "rate(1 hour)", "action": {"type": "archive_note", "title": "t", "content": "c", "tags": ["no spaces"]}}),
            StatusCode::BAD_REQUEST,
            "action.tags[0]",
        ),
    ] {
        let (got, answer) = host
            .app
            .call(Method::POST, "/automations", Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    for body in [
        json!({"name": "x", "schedule": "rate(1 hour)", "action": {"type": "reboot"}}),
        json!({"name": "x", "schedule": "rate(1 hour)", "action": {"type": "notify", "message": "m", "extra": 1}}),
        json!({"name": "x", "schedule": "rate(1 hour)", "action": {"type": "notify", "message": "m"}, "enabled": null}),
    ] {
        let (status, answer) = host
            .app
            .call(Method::POST, "/automations", Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }
    let (_, made) = host
        .app
        .call(Method::POST, "/automations", Some(notify("rate(1 hour)")))
        .await;
    let id = made["id"].as_str().expect("id");
    let (status, _) = host
        .app
        .call(
            Method::PATCH,
            &format!("/automations/{id}"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a change of nothing");
}

#[tokio::test]
async fn an_action_needs_the_scope_it_acts_with() {
    let host = host().await;
    let (_, key) = host
        .app
        .call(
            Method::POST,
            "/auth/api-keys",
            Some(json!({"name": "scheduler", "scopes": ["automations:write", "automations:read"]})),
        )
        .await;
    let key = key["key"].as_str().expect("key").to_owned();
    let post = |body: Value| {
        Request::post("/automations")
            .header("x-api-key", &key)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request")
    };
    let (status, answer) = host
        .app
        .send(post(json!({"name": "n", "schedule": "rate(1 hour)", "action": {"type": "archive_note", "title": "t", "content": "c"}})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, _) = host
        .app
        .send(post(json!({"name": "n", "schedule": "rate(1 hour)", "action": {"type": "agent", "goal": "g"}})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = host.app.send(post(notify("rate(1 hour)"))).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a notification needs nothing more"
    );
}
