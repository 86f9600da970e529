use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use jarvis_crdt::{Codec, GCounter};
use jarvis_fn_auth::testing::TestApp;
use jarvis_store::Key;
use serde_json::json;

const TOKEN: &str = "test-peer-token-0123456789";

async fn app() -> TestApp {
    TestApp::with_env(super::routes(), &[("JARVIS_SYNC_TOKEN", TOKEN)]).await
}

fn get(uri: &str, token: Option<&str>) -> Request<Body> {
    let request = Request::builder().method(Method::GET).uri(uri);
    let request = match token {
        Some(token) => request.header("authorization", format!("Bearer {token}")),
        None => request,
    };
    request.body(Body::empty()).expect("request")
}

#[tokio::test]
async fn the_feed_requires_the_peer_token() {
    let app = app().await;
    for token in [None, Some("wrong-token-0123456789")] {
        let (status, body) = app.send(get("/sync/changes", token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "unauthorized");
        assert!(!body.to_string().contains(TOKEN));
    }
}

#[tokio::test]
async fn without_a_token_configured_sync_is_unavailable() {
    let app = TestApp::new(super::routes()).await;
    let (status, body) = app.send(get("/sync/changes", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "not_configured");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("JARVIS_SYNC_TOKEN")
    );
}

#[tokio::test]
async fn the_peer_token_can_come_from_the_secret_document() {
    let secrets = json!({
        "master_key": "a-master-key-of-at-least-32-characters",
        "sync_token": "secret-peer-token-0123456789"
    })
    .to_string();
    let app = TestApp::with_env(super::routes(), &[("JARVIS_SECRETS", secrets.as_str())]).await;
    let (status, _) = app
        .send(get("/sync/changes", Some("secret-peer-token-0123456789")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.send(get("/sync/changes", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_feed_pages_through_merged_changes_and_echoes_the_cursor_when_idle() {
    let app = app().await;
    let store = app.state.store.clone();
    for i in 0..3 {
        let key = Key::new("crdt#local", format!("counter#c{i}")).expect("key");
        store
            .update(&key, |c: &mut GCounter| c.increment(app.state.replica, 1))
            .await
            .expect("merge");
    }
    let (status, page) = app.send(get("/sync/changes?limit=2", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["replica_id"], "test");
    assert_eq!(page["changes"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["changes"][0]["kind"], "delta");
    let cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
    let (_, rest) = app
        .send(get(&format!("/sync/changes?since={cursor}"), Some(TOKEN)))
        .await;
    assert_eq!(rest["changes"].as_array().map(Vec::len), Some(1));
    assert_eq!(rest["changes"][0]["sort"], "counter#c2");
    let last = rest["next_cursor"].as_str().expect("cursor").to_owned();
    let (_, idle) = app
        .send(get(&format!("/sync/changes?since={last}"), Some(TOKEN)))
        .await;
    assert_eq!(idle["changes"], json!([]));
    assert_eq!(idle["next_cursor"], last.as_str());
}

#[tokio::test]
async fn a_payload_from_the_feed_decodes_as_the_document_type() {
    let app = app().await;
    let key = Key::new("crdt#local", "counter#c").expect("key");
    app.state
        .store
        .update(&key, |c: &mut GCounter| c.increment(app.state.replica, 4))
        .await
        .expect("merge");
    let (_, page) = app.send(get("/sync/changes", Some(TOKEN))).await;
    let payload = page["changes"][0]["payload"].as_str().expect("payload");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .expect("base64");
    assert_eq!(GCounter::decode(&bytes).expect("decodes").value(), 4);
}

#[tokio::test]
async fn bad_cursors_and_limits_are_rejected() {
    let app = app().await;
    for (uri, field) in [
        ("/sync/changes?since=abc", "since"),
        ("/sync/changes?limit=0", "limit"),
        ("/sync/changes?limit=100000", "limit"),
    ] {
        let (status, body) = app.send(get(uri, Some(TOKEN))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(body["error"]["field"], field, "{uri}");
    }
    // Of the cursor's form, but naming no document: not a cursor this API returned.
    let (status, body) = app
        .send(get("/sync/changes?since=s12-b72e93", Some(TOKEN)))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "since");
}

#[tokio::test]
async fn a_run_with_no_peers_reports_nothing_to_do() {
    let app = app().await;
    let request = Request::post("/sync/run")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let (status, body) = app.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"replica_id": "test", "results": []}));
}
