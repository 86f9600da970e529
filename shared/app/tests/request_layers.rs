//! The layers every request passes: its id is always the server's own, and a request that
//! outlives the configured timeout is answered with the error envelope.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::get;
use jarvis_app::AppState;
use jarvis_config::Config;
use tower::ServiceExt;

async fn serve(vars: &[(&str, &str)], request: Request<Body>) -> Response {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut all = vec![
        (
            "JARVIS_DATA_DIR".to_owned(),
            dir.path().to_string_lossy().into_owned(),
        ),
        ("JARVIS_REPLICA_ID".to_owned(), "layers".to_owned()),
    ];
    all.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let state = AppState::from_config(Config::from_vars(all).expect("config"))
        .await
        .expect("state");
    let routes: Router<AppState> = Router::new()
        .route("/quick", get(|| async { "done" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "too late"
            }),
        );
    jarvis_app::app(routes, state)
        .oneshot(request)
        .await
        .expect("response")
}

async fn envelope(response: Response) -> serde_json::Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    serde_json::from_slice(&bytes).expect("json envelope")
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_gets_a_503_timeout_envelope_with_its_request_id() {
    let response = serve(
        &[("JARVIS_REQUEST_TIMEOUT_SECONDS", "1")],
        Request::get("/slow").body(Body::empty()).expect("request"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let header = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let body = envelope(response).await;
    assert_eq!(body["error"]["code"], "timeout");
    assert_eq!(body["error"]["request_id"], header.as_str());
}

#[tokio::test]
async fn a_request_within_the_timeout_is_answered_normally() {
    let response = serve(
        &[("JARVIS_REQUEST_TIMEOUT_SECONDS", "1")],
        Request::get("/quick").body(Body::empty()).expect("request"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_request_id_sent_by_the_client_is_replaced_by_the_servers_own() {
    let response = serve(
        &[],
        Request::get("/nowhere")
            .header("x-request-id", "client-chosen-id")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let header = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_ne!(header, "client-chosen-id");
    assert!(uuid_like(&header), "{header}");
    assert_eq!(
        envelope(response).await["error"]["request_id"],
        header.as_str()
    );
}

fn uuid_like(id: &str) -> bool {
    id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}
