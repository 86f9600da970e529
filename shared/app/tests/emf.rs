//! On Lambda, metrics leave as CloudWatch Embedded Metric Format documents on stdout: one
//! JSON object per line, namespace `Jarvis`, the function as the `service` dimension, each
//! metric's labels as further dimensions. (Its own test binary: the recorder is global.)

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use jarvis_app::AppState;
use jarvis_config::Config;
use tower::ServiceExt;

#[tokio::test]
async fn a_request_is_flushed_as_an_emf_document_with_its_route_and_status() {
    let collector = jarvis_app::metrics::lambda_collector("jarvis-test").expect("recorder");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::from_vars([
        ("JARVIS_DATA_DIR", dir.path().to_string_lossy().as_ref()),
        ("JARVIS_REPLICA_ID", "emf"),
    ])
    .expect("config");
    let state = AppState::from_config(config).await.expect("state");
    let routes: Router<AppState> = Router::new().route("/ping/{name}", get(|| async { "pong" }));
    let app = jarvis_app::app(routes, state);
    for _ in 0..2 {
        let response = app
            .clone()
            .oneshot(
                Request::get("/ping/x")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(response.status(), 200);
    }

    let mut out = Vec::new();
    collector.flush(&mut out).expect("flush");
    let documents: Vec<serde_json::Value> = String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON document"))
        .collect();
    let requests = documents
        .iter()
        .find(|d| d.get("http_requests_total").is_some())
        .unwrap_or_else(|| panic!("no request count in {documents:#?}"));

    let directive = &requests["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "Jarvis");
    let dimensions: Vec<&str> = directive["Dimensions"][0]
        .as_array()
        .expect("dimension set")
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    for name in ["service", "method", "route", "status"] {
        assert!(
            dimensions.contains(&name),
            "{name} missing from {dimensions:?}"
        );
    }
    assert!(requests["_aws"]["Timestamp"].is_u64());
    assert_eq!(requests["service"], "jarvis-test");
    assert_eq!(
        requests["route"], "/ping/{name}",
        "the template, not the raw path"
    );
    assert_eq!(requests["status"], "200");
    assert_eq!(requests["http_requests_total"], 2);

    let latency = documents
        .iter()
        .find(|d| d.get("http_request_duration_seconds").is_some())
        .expect("a latency document");
    let samples = &latency["http_request_duration_seconds"];
    let count = samples
        .as_array()
        .map_or_else(|| usize::from(samples.is_number()), Vec::len);
    assert_eq!(count, 2, "{samples}");

    // A flush empties what was recorded: the next invocation starts from zero.
    let mut again = Vec::new();
    collector.flush(&mut again).expect("flush");
    assert!(
        !String::from_utf8_lossy(&again).contains("http_requests_total\":2"),
        "counts were not reset"
    );
}
