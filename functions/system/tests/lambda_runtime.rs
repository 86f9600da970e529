//! The system function's bootstrap, started the way Lambda starts it (a Runtime API, the
//! sandbox's environment, an API Gateway HTTP API event): it serves `/health` on the embedded
//! store, flushes the cold-start metric with the first invocation, starts with every AWS
//! endpoint unreachable (init does no network I/O), and stops with a message naming a bad
//! variable. The release bootstraps are measured the same way by `infra/bench-coldstart.sh`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jarvis_coldstart::{Failure, Sandbox, http_event};

const BOOTSTRAP: &str = env!("CARGO_BIN_EXE_system");
const WAIT: Duration = Duration::from_secs(60);

fn var(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

fn embedded(dir: &Path) -> Vec<(String, String)> {
    vec![
        var("JARVIS_STORE", "libsql"),
        var("JARVIS_DATA_DIR", dir.join("data").display().to_string()),
        var(
            "JARVIS_SECRETS",
            serde_json::json!({ "master_key": "k".repeat(40) }).to_string(),
        ),
    ]
}

async fn start(dir: &Path, env: &[(String, String)]) -> (Sandbox, PathBuf) {
    let log = dir.join("bootstrap.log");
    let sandbox = Sandbox::start(Path::new(BOOTSTRAP), "jarvis-system", env, &log)
        .await
        .expect("sandbox");
    (sandbox, log)
}

fn body(response: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(response["body"].as_str().expect("a text body")).expect("JSON body")
}

#[tokio::test]
async fn the_bootstrap_serves_health_on_the_embedded_store_and_flushes_the_cold_start_metric() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut sandbox, log) = start(dir.path(), &embedded(dir.path())).await;
    sandbox.ready(WAIT).await.expect("init");
    let first = sandbox
        .invoke(http_event("GET", "/health", &[]), WAIT)
        .await
        .expect("first invocation");
    assert_eq!(first.response["statusCode"], 200, "{:?}", first.response);
    assert_eq!(body(&first.response)["status"], "ok");
    let second = sandbox
        .invoke(http_event("GET", "/nowhere", &[]), WAIT)
        .await
        .expect("second invocation");
    assert_eq!(second.response["statusCode"], 404);
    assert_eq!(body(&second.response)["error"]["code"], "not_found");
    sandbox.stop().await;

    let output = std::fs::read_to_string(&log).expect("log");
    let documents: Vec<serde_json::Value> = output
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|doc| doc.get("_aws").is_some())
        .collect();
    let cold: Vec<_> = documents
        .iter()
        .filter(|doc| doc.get("ColdStart").is_some())
        .collect();
    assert_eq!(
        cold.len(),
        1,
        "one cold start, with the first invocation: {output}"
    );
    assert_eq!(cold[0]["service"], "jarvis-system");
    assert!(
        documents
            .iter()
            .any(|doc| doc["route"] == "/health" && doc["status"] == "200"),
        "the request is counted by route and status: {output}"
    );
}

#[tokio::test]
async fn init_makes_no_network_call_so_the_bootstrap_starts_with_every_aws_endpoint_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let env = [
        var("JARVIS_STORE", "dynamodb"),
        var("JARVIS_DYNAMODB_TABLE", "jarvis-documents"),
        var("JARVIS_SECRET_ID", "jarvis/secrets"),
        var("AWS_ENDPOINT_URL", format!("http://{closed}")),
        var(
            "JARVIS_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
    ];
    let (mut sandbox, _log) = start(dir.path(), &env).await;
    sandbox
        .ready(WAIT)
        .await
        .expect("init needs no AWS endpoint");
    let health = sandbox
        .invoke(http_event("GET", "/health", &[]), WAIT)
        .await
        .expect("an answer, not a crash");
    assert_eq!(health.response["statusCode"], 503);
    assert_eq!(body(&health.response)["status"], "down");
    sandbox.stop().await;
}

#[tokio::test]
async fn a_bad_variable_stops_init_with_a_message_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = embedded(dir.path());
    env.push(var("JARVIS_STORE", "mongodb"));
    let (mut sandbox, log) = start(dir.path(), &env).await;
    let failure = sandbox.ready(WAIT).await.expect_err("init must fail");
    assert!(
        matches!(failure, Failure::Exited(_) | Failure::Init(_)),
        "{failure}"
    );
    let output = std::fs::read_to_string(&log).expect("log");
    let reported = format!("{failure} {output}");
    assert!(reported.contains("JARVIS_STORE"), "{reported}");
    assert!(
        !reported.contains("mongodb"),
        "the value is not echoed: {reported}"
    );
}
