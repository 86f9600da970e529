//! End to end: request security as separate `jarvis-local` processes see it — a rate limit
//! that two processes sharing one store enforce together, and logs that never carry a
//! secret.

use std::time::Duration;

use jarvis_tests::LocalNode;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

/// Waits, if needed, so the next few seconds stay inside one rate-limit window (windows are
/// whole minutes of wall-clock time).
async fn start_of_a_window() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let into_window = now % 60;
    if into_window > 45 {
        tokio::time::sleep(Duration::from_secs(61 - into_window)).await;
    }
}

async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = client.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_across_two_jarvis_local_processes_sharing_one_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    two_processes_share_one_budget(&[dir.path(), dir.path()], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_across_two_processes_sharing_one_dynamodb_table() {
    let endpoint = std::env::var(jarvis_tests::backends::DYNAMODB_ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!("JARVIS_TEST_DYNAMODB_ENDPOINT is not set: run ./infra/test.sh, which starts DynamoDB Local")
    });
    let table = format!("jarvis-test-{}", uuid::Uuid::new_v4());
    // Separate data directories: only the table is shared, as between Lambda instances.
    let (one, two) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    two_processes_share_one_budget(
        &[one.path(), two.path()],
        &[
            ("JARVIS_STORE", "dynamodb"),
            ("JARVIS_DYNAMODB_ENDPOINT", endpoint.as_str()),
            ("JARVIS_DYNAMODB_TABLE", table.as_str()),
        ],
    )
    .await;
}

async fn two_processes_share_one_budget(dirs: &[&std::path::Path; 2], store: &[(&str, &str)]) {
    let mut env = vec![
        ("JARVIS_AUTH_RATE_LIMIT", "6"),
        // Keep the account lockout out of the way: this is about the address's budget.
        ("JARVIS_LOCKOUT_THRESHOLD", "100"),
    ];
    env.extend_from_slice(store);
    let a = LocalNode::start(dirs[0], &env);
    let b = LocalNode::start(dirs[1], &env);
    let client = reqwest::Client::new();
    start_of_a_window().await;
    let attempt = json!({"email": "nobody@example.com", "password": "not the password"});
    let mut statuses = Vec::new();
    for i in 0..8 {
        let node = if i % 2 == 0 { &a } else { &b };
        let (status, body) = post(&client, node.url("/auth/login"), None, attempt.clone()).await;
        if status == 429 {
            assert_eq!(body["error"]["code"], "rate_limited");
        }
        statuses.push(status);
    }
    // Six attempts fit the budget, three on each process; the seventh and eighth do not,
    // although each process alone has seen only four.
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 401, 429, 429],
        "{statuses:?}"
    );
    let response = client
        .post(b.url("/auth/login"))
        .json(&attempt)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().contains_key("retry-after"));
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_appears_in_captured_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = LocalNode::start(dir.path(), &[("JARVIS_LOG", "debug")]);
    let client = reqwest::Client::new();
    let mut secrets: Vec<String> = vec![PASSWORD.to_owned()];

    let account = json!({"email": "ada@example.com", "password": PASSWORD});
    let (status, _) = post(&client, node.url("/auth/register"), None, account.clone()).await;
    assert_eq!(status, 201);
    let (_, pair) = post(&client, node.url("/auth/login"), None, account.clone()).await;
    let access = pair["access_token"].as_str().expect("access").to_owned();
    let refresh = pair["refresh_token"].as_str().expect("refresh").to_owned();
    let (_, rotated) = post(
        &client,
        node.url("/auth/refresh"),
        None,
        json!({"refresh_token": refresh}),
    )
    .await;
    let access = rotated["access_token"]
        .as_str()
        .map_or(access, str::to_owned);
    secrets.extend([access.clone(), refresh.clone()]);
    secrets.extend(rotated["refresh_token"].as_str().map(str::to_owned));
    // A reused refresh token: an error path that must not echo the token either.
    post(
        &client,
        node.url("/auth/refresh"),
        None,
        json!({"refresh_token": refresh}),
    )
    .await;
    let (_, pair) = post(&client, node.url("/auth/login"), None, account).await;
    let access = pair["access_token"].as_str().expect("access").to_owned();
    secrets.push(access.clone());

    let (_, key) = post(
        &client,
        node.url("/auth/api-keys"),
        Some(&access),
        json!({"name": "cli", "scopes": ["archive:read"]}),
    )
    .await;
    secrets.extend(key["key"].as_str().map(str::to_owned));
    let (_, enrollment) = post(
        &client,
        node.url("/auth/2fa/enroll"),
        Some(&access),
        json!({}),
    )
    .await;
    let totp_secret = enrollment["secret"].as_str().expect("secret").to_owned();
    secrets.push(totp_secret.clone());
    let raw = jarvis_fn_auth::totp::decode_base32(&totp_secret).expect("base32");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let code = jarvis_fn_auth::totp::code_at(&raw, now);
    let (_, confirmed) = post(
        &client,
        node.url("/auth/2fa/confirm"),
        Some(&access),
        json!({"code": code}),
    )
    .await;
    secrets.extend(
        confirmed["recovery_codes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_owned)),
    );
    // A wrong password and a bad token, for the failure paths.
    post(
        &client,
        node.url("/auth/login"),
        None,
        json!({"email": "ada@example.com", "password": "a wrong password guess"}),
    )
    .await;
    secrets.push("a wrong password guess".to_owned());
    client
        .get(node.url("/auth/me"))
        .bearer_auth(format!("{access}x"))
        .send()
        .await
        .expect("request");

    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("secrets.json")).expect("secrets file"),
    )
    .expect("json");
    secrets.push(file["master_key"].as_str().expect("master key").to_owned());

    // Debug logs of every request, plus the shutdown.
    assert!(node.wait_for_log("/auth/me"), "requests were logged");
    let logs = node.logs();
    node.stop();
    assert!(logs.contains("request finished"), "logs were captured");
    for secret in &secrets {
        assert!(secret.len() >= 6, "a real value: {secret:?}");
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
    }
}
