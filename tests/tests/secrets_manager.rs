//! The secret source against a real Secrets Manager API (moto server, started by the test
//! command): reading, caching, rotation picked up when a token names an unknown key, and
//! the whole sign-in path running on secrets from there.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::Credentials;
use axum::http::{Method, StatusCode};
use jarvis_config::Config;
use jarvis_config::{AwsTarget, SecretsConfig, SecurityConfig};
use jarvis_fn_auth::testing::TestApp;
use jarvis_identity::token;
use jarvis_secrets::{self as secrets, MIN_REFRESH_INTERVAL, Secrets};
use serde_json::json;

const ENDPOINT_VAR: &str = "JARVIS_TEST_SECRETS_ENDPOINT";

fn endpoint() -> String {
    std::env::var(ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!("{ENDPOINT_VAR} is not set: run ./infra/test.sh, which starts a moto server")
    })
}

async fn client() -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "test"))
        .load()
        .await;
    Client::new(&config)
}

/// A new secret holding `document`; returns its name.
async fn create_secret(document: &serde_json::Value) -> String {
    let name = format!("jarvis-test-{}", uuid::Uuid::new_v4());
    client()
        .await
        .create_secret()
        .name(&name)
        .secret_string(document.to_string())
        .send()
        .await
        .expect("create secret");
    name
}

async fn put(name: &str, document: &serde_json::Value) {
    client()
        .await
        .put_secret_value()
        .secret_id(name)
        .secret_string(document.to_string())
        .send()
        .await
        .expect("put secret value");
}

fn aws_source(name: &str, ttl: Duration) -> std::sync::Arc<dyn secrets::SecretSource> {
    secrets::source(&SecretsConfig::AwsSecretsManager {
        secret_id: name.to_owned(),
        aws: AwsTarget::local(endpoint()),
        ttl,
    })
}

const MASTER: &str = "a-master-key-of-at-least-32-characters";

fn security() -> SecurityConfig {
    Config::from_vars(Vec::<(String, String)>::new())
        .expect("defaults")
        .security
}

#[tokio::test]
async fn secrets_are_read_from_secrets_manager_and_cached_for_their_ttl() {
    let name = create_secret(&json!({"master_key": MASTER})).await;
    let source = aws_source(&name, Duration::from_secs(2));
    assert_eq!(source.name(), "aws-secrets-manager");
    let first = source.current().await.expect("fetched");
    assert_eq!(first.kids().collect::<Vec<_>>(), ["master"]);
    put(
        &name,
        &json!({"master_key": MASTER, "signing_keys": [{"kid": "k2", "secret": "k".repeat(40)}]}),
    )
    .await;
    let cached = source.current().await.expect("cached");
    assert_eq!(
        cached.kids().collect::<Vec<_>>(),
        ["master"],
        "still cached"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let fresh = source.current().await.expect("fetched again");
    assert_eq!(fresh.kids().collect::<Vec<_>>(), ["k2", "master"]);
}

#[tokio::test]
async fn a_token_signed_with_a_rotated_in_key_is_accepted_without_a_restart() {
    let name = create_secret(&json!({"master_key": MASTER})).await;
    let source = aws_source(&name, Duration::from_secs(3600));
    source.current().await.expect("warm cache");
    // The operator rotates: a new key signs from now on. Another instance that already has
    // it issues a token.
    let rotated = json!({
        "master_key": MASTER,
        "signing_keys": [{"kid": "2026-11", "secret": "n".repeat(40)}]
    });
    put(&name, &rotated).await;
    let elsewhere = Secrets::parse(&rotated.to_string()).expect("valid");
    let issued = token::issue_access(
        &elsewhere,
        &security(),
        "0123456789abcdef",
        "fedcba9876543210",
        now(),
    )
    .expect("issue");
    assert_eq!(
        source
            .current()
            .await
            .expect("cached")
            .verification_key("2026-11")
            .map(|k| k.kid.clone()),
        None,
        "this instance's cache predates the rotation"
    );
    tokio::time::sleep(MIN_REFRESH_INTERVAL + Duration::from_millis(200)).await;
    let claims = token::verify_access(&issued, source.as_ref(), &security())
        .await
        .expect("the unknown key id made the source fetch again");
    assert_eq!(claims.sub, "0123456789abcdef");
}

#[tokio::test]
async fn sign_in_runs_on_secrets_from_secrets_manager() {
    let name = create_secret(&json!({"master_key": MASTER})).await;
    let endpoint = endpoint();
    let app = TestApp::with_env(
        jarvis_tests::all_routes(),
        &[
            ("JARVIS_SECRET_ID", name.as_str()),
            ("JARVIS_SECRETS_ENDPOINT", endpoint.as_str()),
        ],
    )
    .await;
    let admin = app.sign_up("admin@example.com").await;
    let (status, health) = app
        .call_as(Some(&admin.access_token), Method::GET, "/health", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{health}");
    let component = health["components"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "secrets").cloned())
        .expect("secrets component");
    assert_eq!(component["details"]["source"], "aws-secrets-manager");
    assert_eq!(component["status"], "ok");
}

#[tokio::test]
async fn a_missing_secret_is_a_503_envelope_that_names_no_internals() {
    let endpoint = endpoint();
    let app = TestApp::with_env(
        jarvis_tests::all_routes(),
        &[
            ("JARVIS_SECRET_ID", "jarvis-test-no-such-secret"),
            ("JARVIS_SECRETS_ENDPOINT", endpoint.as_str()),
        ],
    )
    .await;
    let (status, body) = app
        .call(
            Method::POST,
            "/auth/register",
            Some(json!({"email": "ada@example.com", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(!body.to_string().contains("no-such-secret"));
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
