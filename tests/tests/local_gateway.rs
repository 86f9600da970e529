//! End to end: the real `jarvis-local` binary, driven over real HTTP.

use jarvis_tests::LocalNode;
use serde_json::{Value, json};

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
    let components = health["components"].as_array().expect("components array");
    let ai = components
        .iter()
        .find(|c| c["name"] == "ai")
        .expect("ai component");
    assert_eq!(ai["status"], "degraded", "no model files were given");
    assert!(ai.get("message").is_none(), "messages are for admins");
    for component in components.iter().filter(|c| c["name"] != "ai") {
        assert_eq!(component["status"], "ok", "{component}");
    }
    assert_eq!(health["status"], "degraded");
    assert!(health["score"].as_u64().is_some_and(|s| s > 80 && s < 100));
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

#[tokio::test]
async fn jarvis_local_answers_with_the_local_model_and_counts_the_tokens_against_the_user() {
    let Some(models) = jarvis_tests::local_models_dir() else {
        return;
    };
    let data_dir = tempfile::tempdir().expect("tempdir");
    let models = models.to_string_lossy().into_owned();
    let node = LocalNode::start(
        &data_dir.path().join("data"),
        &[("JARVIS_AI_LOCAL_DIR", models.as_str())],
    );
    let client = reqwest::Client::new();

    let health: Value = client
        .get(node.url("/health"))
        .send()
        .await
        .expect("GET /health")
        .json()
        .await
        .expect("health JSON");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["score"], 100);

    let credentials =
        json!({"email": "ada@example.com", "password": "correct horse battery staple"});
    let registered = client
        .post(node.url("/auth/register"))
        .json(&credentials)
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), 201);
    let login: Value = client
        .post(node.url("/auth/login"))
        .json(&credentials)
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login JSON");
    let token = login["access_token"].as_str().expect("access token");

    let models: Value = client
        .get(node.url("/ai/models"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /ai/models")
        .json()
        .await
        .expect("models JSON");
    assert_eq!(models["default"], "local:smollm2-135m-instruct", "{models}");

    let response = client
        .post(node.url("/ai/complete"))
        .bearer_auth(token)
        .json(&json!({
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 24,
            "temperature": 0.0,
        }))
        .send()
        .await
        .expect("POST /ai/complete");
    assert_eq!(response.status(), 200);
    let completion: Value = response.json().await.expect("completion JSON");
    assert_eq!(
        completion["model"], "local:smollm2-135m-instruct",
        "{completion}"
    );
    assert!(
        completion["text"]
            .as_str()
            .is_some_and(|t| t.contains("Paris")),
        "{completion}"
    );
    let input = completion["usage"]["input_tokens"].as_u64().expect("input");
    let output = completion["usage"]["output_tokens"]
        .as_u64()
        .expect("output");
    assert!(input > 5 && (1..=24).contains(&output), "{completion}");

    let usage: Value = client
        .get(node.url("/ai/usage"))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /ai/usage")
        .json()
        .await
        .expect("usage JSON");
    assert_eq!(
        usage["models"][0]["model"], "local:smollm2-135m-instruct",
        "{usage}"
    );
    assert_eq!(usage["models"][0]["input_tokens"], input);
    assert_eq!(usage["models"][0]["output_tokens"], output);
    let status = node.stop();
    assert!(status.success(), "exit status {status:?}");
}
