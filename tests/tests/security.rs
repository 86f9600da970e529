//! Request security across functions, in process: ownership, roles, scopes and
//! idempotency on the archive and CRDT routes, over the same layers every host runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode};
use jarvis_fn_auth::testing::{SignedIn, TestApp};
use jarvis_store::StoreError;
use jarvis_tests::all_routes;
use jarvis_tests::hooked::{Hooked, Operation};
use serde_json::{Value, json};

async fn app() -> (TestApp, SignedIn) {
    let app = TestApp::new(all_routes()).await;
    let admin = app.sign_up("admin@example.com").await;
    (app, admin)
}

async fn as_user(
    app: &TestApp,
    token: &str,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    app.call_as(Some(token), method, uri, body).await
}

async fn api_key(app: &TestApp, owner: &SignedIn, scopes: &[&str]) -> String {
    let (status, created) = as_user(
        app,
        &owner.access_token,
        Method::POST,
        "/auth/api-keys",
        Some(json!({"name": "test", "scopes": scopes})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["key"].as_str().expect("key").to_owned()
}

#[tokio::test]
async fn user_a_cannot_read_change_or_delete_user_bs_archive_entries() {
    let (app, _) = app().await;
    let alice = app.sign_up("alice@example.com").await;
    let bob = app.sign_up("bob@example.com").await;
    let (status, entry) = as_user(
        &app,
        &bob.access_token,
        Method::POST,
        "/archive",
        Some(json!({"kind": "note", "title": "Bob's diary", "content": "private"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let uri = format!("/archive/{}", entry["id"].as_str().expect("id"));

    let a = &alice.access_token;
    assert_eq!(
        as_user(&app, a, Method::GET, &uri, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        as_user(
            &app,
            a,
            Method::PATCH,
            &uri,
            Some(json!({"title": "mine now"}))
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        as_user(&app, a, Method::DELETE, &uri, None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, listing) = as_user(&app, a, Method::GET, "/archive", None).await;
    assert_eq!(listing["items"], json!([]), "alice lists nothing of bob's");

    let (status, still) = as_user(&app, &bob.access_token, Method::GET, &uri, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(still["title"], "Bob's diary", "unchanged");
}

#[tokio::test]
async fn user_a_cannot_read_or_change_user_bs_crdt_objects() {
    let (app, _) = app().await;
    let alice = app.sign_up("alice@example.com").await;
    let bob = app.sign_up("bob@example.com").await;
    let b = &bob.access_token;
    as_user(
        &app,
        b,
        Method::POST,
        "/crdt/counters/steps/increment",
        Some(json!({"by": 5})),
    )
    .await;
    as_user(
        &app,
        b,
        Method::POST,
        "/crdt/orsets/tags",
        Some(json!({"add": ["secret"]})),
    )
    .await;

    let a = &alice.access_token;
    assert_eq!(
        as_user(&app, a, Method::GET, "/crdt/counters/steps", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        as_user(&app, a, Method::GET, "/crdt/orsets/tags", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Alice's writes to the same names land in her own objects.
    as_user(
        &app,
        a,
        Method::POST,
        "/crdt/counters/steps/increment",
        Some(json!({"by": 1})),
    )
    .await;
    as_user(
        &app,
        a,
        Method::POST,
        "/crdt/orsets/tags",
        Some(json!({"remove": ["secret"]})),
    )
    .await;
    let (_, bobs) = as_user(&app, b, Method::GET, "/crdt/counters/steps", None).await;
    assert_eq!(bobs["value"], 5);
    let (_, tags) = as_user(&app, b, Method::GET, "/crdt/orsets/tags", None).await;
    assert_eq!(tags["elements"], json!(["secret"]));
}

#[tokio::test]
async fn a_viewer_cannot_write() {
    let (app, admin) = app().await;
    let vera = app.sign_up("vera@example.com").await;
    let (status, _) = as_user(
        &app,
        &admin.access_token,
        Method::PATCH,
        &format!("/admin/users/{}", vera.user_id),
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v = &vera.access_token;
    let (status, body) = as_user(
        &app,
        v,
        Method::POST,
        "/archive",
        Some(json!({"kind": "note", "title": "t", "content": "c"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(
        as_user(
            &app,
            v,
            Method::POST,
            "/crdt/counters/c/increment",
            Some(json!({"by": 1}))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        as_user(&app, v, Method::GET, "/archive", None).await.0,
        StatusCode::OK,
        "reads"
    );
}

#[tokio::test]
async fn an_api_key_without_the_scope_is_refused() {
    let (app, _) = app().await;
    let bob = app.sign_up("bob@example.com").await;
    let reader = api_key(&app, &bob, &["archive:read"]).await;
    let (status, body) = as_user(
        &app,
        &reader,
        Method::POST,
        "/archive",
        Some(json!({"kind": "note", "title": "t", "content": "c"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("archive:write"))
    );
    assert_eq!(
        as_user(&app, &reader, Method::GET, "/archive", None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        as_user(&app, &reader, Method::GET, "/crdt/counters/c", None)
            .await
            .0,
        StatusCode::FORBIDDEN,
        "crdt:read not granted"
    );
    let (status, _) = as_user(
        &app,
        &reader,
        Method::POST,
        "/auth/api-keys",
        Some(json!({"name": "escalate", "scopes": ["archive:write"]})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a key cannot mint keys");
}

#[tokio::test]
async fn requests_without_credentials_are_refused() {
    let (app, _) = app().await;
    for (method, uri) in [
        (Method::GET, "/archive"),
        (Method::POST, "/crdt/counters/c/increment"),
        (Method::GET, "/admin/users"),
        (Method::GET, "/audit"),
    ] {
        let (status, body) = app.call_as(None, method.clone(), uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {body}");
    }
}

fn create_entry(key: &str, token: &str, title: &str) -> Request<Body> {
    Request::post("/archive")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .header("idempotency-key", key)
        .body(Body::from(
            json!({"kind": "note", "title": title, "content": "c"}).to_string(),
        ))
        .expect("request")
}

#[tokio::test]
async fn an_idempotent_replay_returns_the_identical_response_and_creates_one_entry() {
    let (app, _) = app().await;
    let bob = app.sign_up("bob@example.com").await;
    let t = &bob.access_token;
    let first = app.respond(create_entry("k-1", t, "once")).await;
    let second = app.respond(create_entry("k-1", t, "once")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(second.status(), StatusCode::CREATED);
    assert_eq!(first.headers()["location"], second.headers()["location"]);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = to_bytes(first.into_body(), 1 << 20).await.expect("body");
    let second = to_bytes(second.into_body(), 1 << 20).await.expect("body");
    assert_eq!(first, second, "byte for byte");
    let (_, listing) = as_user(&app, t, Method::GET, "/archive", None).await;
    assert_eq!(
        listing["items"].as_array().map(Vec::len),
        Some(1),
        "one entry"
    );

    let different = app.respond(create_entry("k-1", t, "another title")).await;
    assert_eq!(different.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Keys belong to their account: another account's same key is a new request.
    let alice = app.sign_up("alice@example.com").await;
    let theirs = app
        .respond(create_entry("k-1", &alice.access_token, "once"))
        .await;
    assert!(theirs.headers().get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn a_key_whose_first_request_is_still_running_is_a_conflict() {
    use jarvis_identity::idempotency::{Begin, begin, fingerprint};
    let (app, _) = app().await;
    let bob = app.sign_up("bob@example.com").await;
    // Another instance has claimed the key and not finished.
    let body = json!({"kind": "note", "title": "slow", "content": "c"}).to_string();
    let secrets = app.state.secrets.current().await.expect("secrets");
    let claimed = begin(
        app.state.store.as_ref(),
        &app.state.clock,
        &secrets,
        &format!("user:{}", bob.user_id),
        "k-slow",
        &fingerprint("POST", "/archive", body.as_bytes()),
    )
    .await
    .expect("claim");
    assert!(matches!(claimed, Begin::Claimed));
    let response = app
        .respond(create_entry("k-slow", &bob.access_token, "slow"))
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let (_, listing) = as_user(&app, &bob.access_token, Method::GET, "/archive", None).await;
    assert_eq!(listing["items"], json!([]), "nothing ran");
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let app = TestApp::with_env(all_routes(), &[("JARVIS_MAX_BODY_BYTES", "512")]).await;
    let bob = app.sign_up("bob@example.com").await;
    let big = "x".repeat(2048);
    for idempotent in [false, true] {
        let mut request = Request::post("/archive")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", bob.access_token));
        if idempotent {
            request = request.header("idempotency-key", "big");
        }
        let request = request
            .body(Body::from(
                json!({"kind": "note", "title": "t", "content": big}).to_string(),
            ))
            .expect("request");
        let (status, body) = app.send(request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert_eq!(body["error"]["code"], "payload_too_large");
    }
}

#[tokio::test]
async fn the_per_account_rate_limit_answers_429_with_retry_after() {
    let app = TestApp::with_env(all_routes(), &[("JARVIS_RATE_LIMIT", "3")]).await;
    let bob = app.sign_up("bob@example.com").await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let request = Request::get("/archive")
            .header("authorization", format!("Bearer {}", bob.access_token))
            .body(Body::empty())
            .expect("request");
        let response = app.respond(request).await;
        statuses.push(response.status());
        if let Some(value) = response.headers().get("retry-after") {
            retry_after = value.to_str().ok().and_then(|v| v.parse::<u64>().ok());
        }
    }
    // The window may roll over mid-test; at least one request beyond the limit is refused.
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert!(retry_after.is_some_and(|s| (1..=60).contains(&s)));
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = TestApp::with_env(
        all_routes(),
        &[("JARVIS_CORS_ORIGINS", "https://app.example.com")],
    )
    .await;
    let preflight = |origin: &'static str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/archive")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .body(Body::empty())
            .expect("request")
    };
    let allowed = app.respond(preflight("https://app.example.com")).await;
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let refused = app.respond(preflight("https://evil.example.com")).await;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn every_response_carries_security_headers_and_a_request_id() {
    let (app, _) = app().await;
    for request in [
        Request::get("/version").body(Body::empty()),
        Request::get("/archive").body(Body::empty()),
        Request::post("/auth/login").body(Body::from("{")),
    ] {
        let response = app.respond(request.expect("request")).await;
        let headers = response.headers();
        for name in [
            "x-request-id",
            "x-content-type-options",
            "x-frame-options",
            "strict-transport-security",
            "content-security-policy",
            "cache-control",
        ] {
            assert!(headers.contains_key(name), "{name} missing");
        }
    }
}

/// Copies every change of `from`'s feed into `to`, as a sync pull does.
async fn pull(from: &TestApp, to: &TestApp) {
    let changes = from.state.store.changes(0, 100_000).await.expect("feed");
    for change in changes {
        jarvis_replication::merge_encoded(
            to.state.store.as_ref(),
            &change.key,
            change.payload.bytes(),
        )
        .await
        .expect("merge");
    }
}

/// A deployment named `name`. Deployments that sync share one master key (README,
/// "Secrets"), so each can verify the other's audit chain and decrypt its 2FA secrets.
async fn replica(name: &str) -> TestApp {
    let secrets = json!({"master_key": "one-master-key-shared-by-peered-deployments"}).to_string();
    TestApp::with_env(
        all_routes(),
        &[
            ("JARVIS_REPLICA_ID", name),
            ("JARVIS_SECRETS", secrets.as_str()),
        ],
    )
    .await
}

#[tokio::test]
async fn the_same_email_registered_on_two_replicas_resolves_to_the_earliest_account_after_sync() {
    let (east, west) = (replica("east").await, replica("west").await);
    let first = east.sign_up("ada@example.com").await;
    let second = west.sign_up("ada@example.com").await;
    pull(&east, &west).await;
    pull(&west, &east).await;
    for app in [&east, &west] {
        let (status, pair) = app
            .call(
                Method::POST,
                "/auth/login",
                Some(json!({"email": "ada@example.com", "password": jarvis_fn_auth::testing::PASSWORD})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{pair}");
        let (_, me) = as_user(
            app,
            pair["access_token"].as_str().expect("token"),
            Method::GET,
            "/auth/me",
            None,
        )
        .await;
        assert_eq!(
            me["id"],
            json!(first.user_id),
            "the earlier registration owns the email everywhere"
        );
        let (_, users) = as_user(
            app,
            pair["access_token"].as_str().expect("token"),
            Method::GET,
            "/admin/users",
            None,
        )
        .await;
        let flagged: Vec<&Value> = users["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|u| u["email_conflict"] == true)
            .collect();
        assert_eq!(flagged.len(), 1, "{users}");
        assert_eq!(flagged[0]["id"], json!(second.user_id));
    }
}

#[tokio::test]
async fn a_user_registered_on_one_replica_signs_in_on_another_after_sync() {
    let (east, west) = (replica("east").await, replica("west").await);
    let ada = east.sign_up("ada@example.com").await;
    let login = json!({"email": "ada@example.com", "password": jarvis_fn_auth::testing::PASSWORD});
    assert_eq!(
        west.call(Method::POST, "/auth/login", Some(login.clone()))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    pull(&east, &west).await;
    let (status, pair) = west.call(Method::POST, "/auth/login", Some(login)).await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let (_, me) = as_user(
        &west,
        pair["access_token"].as_str().expect("token"),
        Method::GET,
        "/auth/me",
        None,
    )
    .await;
    assert_eq!(me["id"], json!(ada.user_id));
    // 2FA turned on at east holds at west: the sealed secret opens there, and a code spent
    // at west cannot be replayed at east once they sync.
    let (_, enrollment) = as_user(
        &east,
        &ada.access_token,
        Method::POST,
        "/auth/2fa/enroll",
        None,
    )
    .await;
    let secret =
        jarvis_fn_auth::totp::decode_base32(enrollment["secret"].as_str().expect("secret"))
            .expect("base32");
    let now = u64::try_from(jarvis_store::now_secs()).unwrap_or(0);
    let code = jarvis_fn_auth::totp::code_at(&secret, now);
    let (status, _) = as_user(
        &east,
        &ada.access_token,
        Method::POST,
        "/auth/2fa/confirm",
        Some(json!({"code": code})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    pull(&east, &west).await;
    let next = jarvis_fn_auth::totp::code_at(&secret, now + jarvis_fn_auth::totp::STEP_SECS);
    let with_code = json!({"email": "ada@example.com", "password": jarvis_fn_auth::testing::PASSWORD, "totp": next});
    assert_eq!(
        west.call(Method::POST, "/auth/login", Some(with_code.clone()))
            .await
            .0,
        StatusCode::OK
    );
    pull(&west, &east).await;
    assert_eq!(
        east.call(Method::POST, "/auth/login", Some(with_code))
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "the step spent at west is spent at east"
    );
    // The audit chains travel too, and verify on the other replica.
    let (_, verified) = as_user(
        &west,
        pair["access_token"].as_str().expect("token"),
        Method::GET,
        "/audit/verify",
        None,
    )
    .await;
    assert_eq!(verified["ok"], true, "{verified}");
}

#[tokio::test]
async fn a_disabled_account_stays_disabled_when_a_stale_replica_syncs_back() {
    let (east, west) = (replica("east").await, replica("west").await);
    let admin = east.sign_up("admin@example.com").await;
    let bob = east.sign_up("bob@example.com").await;
    pull(&east, &west).await;
    // East disables bob; west, not yet synced, changes bob's role meanwhile.
    let (status, _) = as_user(
        &east,
        &admin.access_token,
        Method::PATCH,
        &format!("/admin/users/{}", bob.user_id),
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let west_admin = {
        let (_, pair) = west
            .call(Method::POST, "/auth/login", Some(json!({"email": "admin@example.com", "password": jarvis_fn_auth::testing::PASSWORD})))
            .await;
        pair["access_token"].as_str().expect("token").to_owned()
    };
    as_user(
        &west,
        &west_admin,
        Method::PATCH,
        &format!("/admin/users/{}", bob.user_id),
        Some(json!({"role": "viewer"})),
    )
    .await;
    pull(&west, &east).await;
    pull(&east, &west).await;
    for app in [&east, &west] {
        let (status, _) = app
            .call(Method::POST, "/auth/login", Some(json!({"email": "bob@example.com", "password": jarvis_fn_auth::testing::PASSWORD})))
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "bob stays disabled on every replica"
        );
    }
}

#[tokio::test]
async fn sign_in_refresh_and_revocation_work_on_dynamodb() {
    let endpoint = std::env::var(jarvis_tests::backends::DYNAMODB_ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!("JARVIS_TEST_DYNAMODB_ENDPOINT is not set: run ./infra/test.sh, which starts DynamoDB Local")
    });
    let table = format!("jarvis-test-{}", uuid::Uuid::new_v4());
    let app = TestApp::with_env(
        all_routes(),
        &[
            ("JARVIS_STORE", "dynamodb"),
            ("JARVIS_DYNAMODB_ENDPOINT", endpoint.as_str()),
            ("JARVIS_DYNAMODB_TABLE", table.as_str()),
        ],
    )
    .await;
    let admin = app.sign_up("admin@example.com").await;
    let bob = app.sign_up("bob@example.com").await;
    let (status, entry) = as_user(
        &app,
        &bob.access_token,
        Method::POST,
        "/archive",
        Some(json!({"kind": "note", "title": "t", "content": "c"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    let (status, pair) = app
        .call(
            Method::POST,
            "/auth/refresh",
            Some(json!({"refresh_token": bob.refresh_token})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let (status, reuse) = app
        .call(
            Method::POST,
            "/auth/refresh",
            Some(json!({"refresh_token": bob.refresh_token})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(reuse["error"]["code"], "refresh_token_reused");
    let (_, verified) = as_user(
        &app,
        &admin.access_token,
        Method::GET,
        "/audit/verify",
        None,
    )
    .await;
    assert_eq!(verified["ok"], true, "{verified}");
}

#[tokio::test]
async fn a_response_that_cannot_be_kept_is_still_returned_and_a_retry_does_not_run_twice() {
    // Writes to idempotency records fail after the first (the claim) succeeded.
    let app = TestApp::with_store_layer(all_routes(), &[], |inner| {
        let writes = AtomicUsize::new(0);
        let hook = move |operation: Operation, partition: &str| {
            let idempotency_write =
                operation == Operation::PutItem && partition.starts_with("~idem#");
            if idempotency_write && writes.fetch_add(1, Ordering::SeqCst) >= 1 {
                return Err(StoreError::Unavailable("injected fault".into()));
            }
            Ok(())
        };
        Arc::new(Hooked { inner, hook })
    })
    .await;
    let bob = app.sign_up("bob@example.com").await;
    let first = app
        .respond(create_entry("k-fault", &bob.access_token, "once"))
        .await;
    assert_eq!(
        first.status(),
        StatusCode::CREATED,
        "the client gets its entry"
    );
    let retry = app
        .respond(create_entry("k-fault", &bob.access_token, "once"))
        .await;
    assert_eq!(
        retry.status(),
        StatusCode::CONFLICT,
        "the key stays claimed"
    );
    let (_, listing) = as_user(&app, &bob.access_token, Method::GET, "/archive", None).await;
    assert_eq!(
        listing["items"].as_array().map(Vec::len),
        Some(1),
        "one entry"
    );
}

fn login_request(key: &str, email: &str, password: &str) -> Request<Body> {
    Request::post("/auth/login")
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Body::from(
            json!({"email": email, "password": password}).to_string(),
        ))
        .expect("request")
}

#[tokio::test]
async fn a_transient_refusal_is_not_replayed_so_a_correct_retry_succeeds() {
    let app = TestApp::with_env(
        all_routes(),
        &[
            ("JARVIS_LOCKOUT_THRESHOLD", "2"),
            // Expiry is kept to the second: a lockout of 2 s lasts between 1 and 2 s.
            ("JARVIS_LOCKOUT_SECONDS", "2"),
        ],
    )
    .await;
    app.sign_up("carol@example.com").await;
    for attempt in 0..2 {
        let (status, _) = app
            .send(login_request(
                &format!("wrong-{attempt}"),
                "carol@example.com",
                "not the password",
            ))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let password = jarvis_fn_auth::testing::PASSWORD;
    let locked = app
        .respond(login_request("k-retry", "carol@example.com", password))
        .await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);

    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let retried = app
        .respond(login_request("k-retry", "carol@example.com", password))
        .await;
    assert_eq!(retried.status(), StatusCode::OK, "the lockout is over");
    assert!(
        retried.headers().get("idempotent-replayed").is_none(),
        "the 429 was not kept"
    );
}

#[test]
fn only_final_answers_are_kept_for_replay() {
    use jarvis_identity::idempotency::is_final;
    for kept in [200, 201, 204, 400, 401, 403, 404, 413, 422] {
        assert!(is_final(kept), "{kept}");
    }
    for released in [408, 409, 423, 425, 429, 500, 502, 503] {
        assert!(!is_final(released), "{released}");
    }
}

#[tokio::test]
async fn rotating_the_client_written_forwarded_for_entry_does_not_escape_the_sign_in_limit() {
    let app = TestApp::with_env(
        all_routes(),
        &[
            ("JARVIS_TRUSTED_PROXY_HOPS", "1"),
            ("JARVIS_AUTH_RATE_LIMIT", "3"),
        ],
    )
    .await;
    let mut statuses = Vec::new();
    for attempt in 0..5 {
        let request = Request::post("/auth/login")
            .header("content-type", "application/json")
            // The client writes whatever it likes on the left; the proxy appends what it saw.
            .header(
                "x-forwarded-for",
                format!("198.51.100.{attempt}, 203.0.113.9"),
            )
            .body(Body::from(
                json!({"email": "nobody@example.com", "password": "wrong password!"}).to_string(),
            ))
            .expect("request");
        statuses.push(app.send(request).await.0);
    }
    assert_eq!(
        statuses[3..],
        [StatusCode::TOO_MANY_REQUESTS, StatusCode::TOO_MANY_REQUESTS],
        "{statuses:?}"
    );
}

#[tokio::test]
async fn an_audit_event_whose_append_fails_is_kept_and_written_by_the_next_request() {
    // Appends to the audit chain fail until the switch is turned off.
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let switch = Arc::clone(&failing);
    let hook = move |operation: Operation, partition: &str| {
        if operation == Operation::PutItem
            && partition.starts_with("audit#")
            && switch.load(Ordering::SeqCst)
        {
            Err(StoreError::Unavailable("injected append failure".into()))
        } else {
            Ok(())
        }
    };
    let app =
        TestApp::with_store_layer(all_routes(), &[], |inner| Arc::new(Hooked { inner, hook }))
            .await;
    let admin = app.sign_up("admin@example.com").await;
    let t = &admin.access_token;

    failing.store(true, Ordering::SeqCst);
    let (status, key) = as_user(
        &app,
        t,
        Method::POST,
        "/auth/api-keys",
        Some(json!({"name": "during the outage", "scopes": ["archive:read"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "the change committed: {key}");
    failing.store(false, Ordering::SeqCst);

    let (status, _) = as_user(
        &app,
        t,
        Method::DELETE,
        &format!("/auth/api-keys/{}", key["id"].as_str().expect("id")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, created) = as_user(&app, t, Method::GET, "/audit?type=apikey.created", None).await;
    assert_eq!(
        created["items"].as_array().map(Vec::len),
        Some(1),
        "{created}"
    );
    let (_, revoked) = as_user(&app, t, Method::GET, "/audit?type=apikey.revoked", None).await;
    assert_eq!(
        revoked["items"].as_array().map(Vec::len),
        Some(1),
        "{revoked}"
    );
    // The kept event went in first, with the time it happened.
    assert!(created["items"][0]["seq"].as_u64() < revoked["items"][0]["seq"].as_u64());
    let (_, verified) = as_user(&app, t, Method::GET, "/audit/verify", None).await;
    assert_eq!(verified["ok"], true, "{verified}");
}
