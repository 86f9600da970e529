//! `jarvis-local` serves what it measured as Prometheus text on `GET /metrics`, to loopback
//! callers only (a caller behind a trusted proxy on the machine is not one): requests by route and status, latency histograms, store operations, sign-in
//! failures and rate-limit refusals.

use jarvis_tests::LocalNode;
use serde_json::json;

/// The value of the sample `name{labels}` in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_store_operations_sign_in_failures_and_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = LocalNode::start(
        dir.path(),
        &[
            ("JARVIS_AUTH_RATE_LIMIT", "1"),
            ("JARVIS_TRUSTED_PROXY_HOPS", "1"),
        ],
    );
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let health = client
            .get(node.url("/health"))
            .send()
            .await
            .expect("health");
        assert_eq!(health.status(), 200);
    }
    let attempt = json!({"email": "nobody@example.com", "password": "not the password"});
    let statuses: Vec<u16> = futures_util::future::join_all((0..2).map(|_| async {
        client
            .post(node.url("/auth/login"))
            .json(&attempt)
            .send()
            .await
            .expect("login")
            .status()
            .as_u16()
    }))
    .await;
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [401, 429], "{statuses:?}");

    let response = client
        .get(node.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.expect("text");

    assert_eq!(
        sample(
            &text,
            r#"http_requests_total{method="GET",route="/health",status="200"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"http_requests_total{method="POST",route="/auth/login",status="429"}"#
        ),
        Some(1.0)
    );
    assert!(text.contains("# TYPE http_request_duration_seconds histogram"));
    assert_eq!(
        sample(
            &text,
            r#"http_request_duration_seconds_count{method="GET",route="/health"}"#
        ),
        Some(2.0)
    );
    assert!(
        sample(
            &text,
            r#"store_operations_total{backend="libsql",op="get"}"#
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            r#"store_operations_total{backend="libsql",op="put"}"#
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"auth_sign_in_failures_total{reason="invalid_credentials"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"rate_limit_refusals_total{budget="sign_in"}"#),
        Some(1.0)
    );
    node.stop();
}
