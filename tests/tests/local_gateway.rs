//! End to end: the real `jarvis-local` binary, driven over real HTTP.

use jarvis_tests::LocalNode;
use serde_json::Value;

#[tokio::test]
async fn jarvis_local_serves_health_and_404s_then_stops_cleanly_on_sigterm() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let node = LocalNode::start(&data_dir.path().join("data"), &[]);
    let client = reqwest::Client::new();

    let response = client
        .get(node.url("/health"))
        .send()
        .await
        .expect("GET /health");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .is_ok_and(|ct| ct.starts_with("application/json"))
    );
    let health: Value = response.json().await.expect("health JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["score"], 100);
    let components = health["components"].as_array().expect("components array");
    let store = components
        .iter()
        .find(|c| c["name"] == "store")
        .expect("store component");
    assert_eq!(store["status"], "ok");
    assert!(store.get("details").is_none(), "details are for admins");
    let secrets = components
        .iter()
        .find(|c| c["name"] == "secrets")
        .expect("secrets component");
    assert_eq!(
        secrets["status"], "ok",
        "the local secrets file was generated"
    );

    let response = client
        .get(node.url("/no/such/route"))
        .send()
        .await
        .expect("GET unknown");
    assert_eq!(response.status(), 404);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii id")
        .to_owned();
    let body: Value = response.json().await.expect("404 JSON");
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["request_id"], request_id.as_str());
    assert!(body["error"]["message"].is_string());

    assert!(
        data_dir.path().join("data/jarvis.db").exists(),
        "the data dir and database are created"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data_dir.path().join("data"))
            .expect("data dir")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the data dir is private to its owner");
    }
    let replica = std::fs::read_to_string(data_dir.path().join("data/replica-id"))
        .expect("a replica id was generated for the data dir");
    assert!(replica.starts_with("local-"), "{replica}");
    assert!(
        node.wait_for_log(&request_id),
        "log lines carry the request id"
    );
    let status = node.stop();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn jarvis_local_reports_a_bad_setting_by_name_and_exits_non_zero() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let output = std::process::Command::new(jarvis_tests::jarvis_local_binary())
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir.path())
        .env("JARVIS_LOG_FORMAT", "yaml")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("JARVIS_LOG_FORMAT"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
