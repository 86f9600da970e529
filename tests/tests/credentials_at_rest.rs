//! No credential is kept readable: after every request that hands out a token, key, TOTP
//! secret or recovery code — each sent with an `Idempotency-Key`, so its answer is kept for
//! replay — the whole store (the libSQL files, or every DynamoDB item) is searched for each
//! credential, raw and in base64 at every alignment. The replay still answers the client.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jarvis_fn_auth::testing::{PASSWORD, TestApp};
use jarvis_store::Store;
use jarvis_tests::all_routes;
use jarvis_tests::backends::{DYNAMODB_ENDPOINT_VAR, dynamodb_store};
use serde_json::{Value, json};

/// Where the store's bytes are.
enum Storage {
    Files(std::path::PathBuf),
    Dynamo { endpoint: String, table: String },
}

impl Storage {
    async fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Files(dir) => {
                let mut all = Vec::new();
                for entry in std::fs::read_dir(dir).expect("data dir") {
                    let path = entry.expect("entry").path();
                    if path.extension().is_some_and(|e| e == "json") {
                        continue; // the secret document itself
                    }
                    all.extend(std::fs::read(&path).unwrap_or_default());
                }
                all
            }
            Self::Dynamo { endpoint, table } => {
                let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .endpoint_url(endpoint)
                    .region(aws_config::Region::new("us-east-1"))
                    .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                        "local", "local", None, None, "test",
                    ))
                    .load()
                    .await;
                let client = aws_sdk_dynamodb::Client::new(&config);
                let items = client
                    .scan()
                    .table_name(table)
                    .send()
                    .await
                    .expect("scan")
                    .items
                    .unwrap_or_default();
                let mut all = Vec::new();
                for item in items {
                    for value in item.values() {
                        match value {
                            aws_sdk_dynamodb::types::AttributeValue::B(b) => {
                                all.extend_from_slice(b.as_ref())
                            }
                            aws_sdk_dynamodb::types::AttributeValue::S(s) => {
                                all.extend_from_slice(s.as_bytes())
                            }
                            _ => {}
                        }
                    }
                }
                all
            }
        }
    }
}

/// Every form in which `secret` could sit in stored bytes: itself, and base64 (standard and
/// URL-safe) of it at each of the three alignments it could have inside a longer text.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![secret.to_vec()];
    for skip in 0..3 {
        let Some(tail) = secret.get(skip..) else {
            continue;
        };
        for encoded in [STANDARD.encode(tail), URL_SAFE_NO_PAD.encode(tail)] {
            // The last characters depend on what follows: keep only the settled ones.
            let settled = encoded.trim_end_matches('=');
            let keep = settled.len().saturating_sub(4);
            if keep >= 16 {
                forms.push(settled.as_bytes()[..keep].to_vec());
            }
        }
    }
    forms
}

async fn assert_not_stored(storage: &Storage, what: &str, secret: &[u8]) {
    let stored = storage.bytes().await;
    for form in forms(secret) {
        assert!(
            !stored.windows(form.len()).any(|w| w == form.as_slice()),
            "{what} is kept readable in the store"
        );
    }
}

/// Sends `body` to `uri` with an idempotency key, twice: the second answer must be the
/// replay of the first. Returns the first answer.
async fn issue(app: &TestApp, token: Option<&str>, uri: &str, body: Value) -> Value {
    let key = uuid::Uuid::new_v4().to_string();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let mut request = Request::post(uri)
            .header("content-type", "application/json")
            .header("idempotency-key", key.as_str());
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = app
            .respond(request.body(Body::from(body.to_string())).expect("request"))
            .await;
        let status = response.status();
        let replayed = response.headers().contains_key("idempotent-replayed");
        let bytes = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        assert!(status.is_success(), "{uri}: {status} {bytes:?}");
        answers.push((replayed, bytes));
    }
    assert!(
        !answers[0].0 && answers[1].0,
        "{uri}: the retry is a replay"
    );
    assert_eq!(answers[0].1, answers[1].1, "{uri}: replayed byte for byte");
    serde_json::from_slice(&answers[0].1).expect("JSON")
}

async fn every_credential_issuing_answer_leaves_no_readable_credential(
    app: TestApp,
    storage: Storage,
) {
    let (status, _) = app
        .call(
            axum::http::Method::POST,
            "/auth/register",
            Some(json!({"email": "dana@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let pair = issue(
        &app,
        None,
        "/auth/login",
        json!({"email": "dana@example.com", "password": PASSWORD}),
    )
    .await;
    let access = pair["access_token"].as_str().expect("access").to_owned();
    for field in ["access_token", "refresh_token"] {
        let value = pair[field].as_str().expect(field);
        assert_not_stored(&storage, &format!("login {field}"), value.as_bytes()).await;
    }

    let rotated = issue(
        &app,
        None,
        "/auth/refresh",
        json!({"refresh_token": pair["refresh_token"]}),
    )
    .await;
    for field in ["access_token", "refresh_token"] {
        let value = rotated[field].as_str().expect(field);
        assert_not_stored(&storage, &format!("refresh {field}"), value.as_bytes()).await;
    }

    let created = issue(
        &app,
        Some(&access),
        "/auth/api-keys",
        json!({"name": "script", "scopes": ["archive:read"]}),
    )
    .await;
    let key = created["key"].as_str().expect("key");
    assert_not_stored(&storage, "API key", key.as_bytes()).await;
    // The secret part alone, too.
    let secret_part = key.splitn(4, '_').nth(3).expect("secret part");
    assert!(secret_part.len() >= 32, "{secret_part}");
    assert_not_stored(&storage, "API key secret", secret_part.as_bytes()).await;

    let enrollment = issue(&app, Some(&access), "/auth/2fa/enroll", json!({})).await;
    let base32 = enrollment["secret"].as_str().expect("secret");
    let secret = jarvis_fn_auth::totp::decode_base32(base32).expect("base32");
    assert_not_stored(&storage, "TOTP secret (base32)", base32.as_bytes()).await;
    assert_not_stored(&storage, "TOTP secret (raw)", &secret).await;
    let uri = enrollment["otpauth_uri"].as_str().expect("uri");
    assert_not_stored(&storage, "otpauth URI", uri.as_bytes()).await;

    let now = jarvis_store::now_secs().unsigned_abs();
    let code = jarvis_fn_auth::totp::code_at(&secret, now);
    let confirmed = issue(
        &app,
        Some(&access),
        "/auth/2fa/confirm",
        json!({"code": code}),
    )
    .await;
    let codes = confirmed["recovery_codes"].as_array().expect("codes");
    assert_eq!(codes.len(), 10);
    for code in codes {
        let code = code.as_str().expect("code");
        assert_not_stored(&storage, "recovery code", code.as_bytes()).await;
        assert_not_stored(&storage, "recovery code", code.replace('-', "").as_bytes()).await;
    }
}

#[tokio::test]
async fn no_credential_is_readable_in_the_libsql_files_after_idempotent_issuance() {
    let app = TestApp::new(all_routes()).await;
    let dir = app.state.config.data_dir.clone();
    every_credential_issuing_answer_leaves_no_readable_credential(app, Storage::Files(dir)).await;
}

#[tokio::test]
async fn no_credential_is_readable_in_dynamodb_items_after_idempotent_issuance() {
    let endpoint = std::env::var(DYNAMODB_ENDPOINT_VAR)
        .unwrap_or_else(|_| panic!("{DYNAMODB_ENDPOINT_VAR} is not set: run ./infra/test.sh"));
    let table = format!("jarvis-creds-{}", uuid::Uuid::new_v4());
    let store: Arc<dyn Store> = Arc::new(dynamodb_store(&endpoint, &table).await);
    let app = TestApp::with_store_layer(all_routes(), &[], move |_| store).await;
    every_credential_issuing_answer_leaves_no_readable_credential(
        app,
        Storage::Dynamo { endpoint, table },
    )
    .await;
}
