use crate::testing::{PASSWORD, SignedIn, TestApp};
use crate::totp;
use axum::http::{Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jarvis_crdt::{Codec, Crdt, Entity};
use jarvis_identity::token::{ACCESS_TOKEN_TYP, AccessClaims};
use jarvis_store::{Key, Write, now_secs};
use serde_json::{Value, json};

async fn app() -> TestApp {
    TestApp::new(super::routes()).await
}

async fn login(
    app: &TestApp,
    email: &str,
    password: &str,
    code: Option<&str>,
) -> (StatusCode, Value) {
    let mut body = json!({"email": email, "password": password});
    if let Some(code) = code {
        body["totp"] = json!(code);
    }
    app.call_as(None, Method::POST, "/auth/login", Some(body))
        .await
}

fn now() -> u64 {
    u64::try_from(now_secs()).unwrap_or(0)
}

fn claims_for(user: &SignedIn, exp: u64) -> AccessClaims {
    AccessClaims {
        iss: "jarvis".into(),
        aud: "jarvis-api".into(),
        sub: user.user_id.clone(),
        sid: session_of(&user.refresh_token),
        iat: exp.saturating_sub(900),
        nbf: exp.saturating_sub(900),
        exp,
        jti: "test".into(),
    }
}

fn session_of(refresh_token: &str) -> String {
    refresh_token
        .split('_')
        .nth(2)
        .unwrap_or_default()
        .to_owned()
}

async fn sign(app: &TestApp, claims: &AccessClaims, key: Option<&[u8]>) -> String {
    let secrets = app.state.secrets.current().await.expect("secrets");
    let signing = secrets.signing_key();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some(ACCESS_TOKEN_TYP.into());
    header.kid = Some(signing.kid.clone());
    let key = key.unwrap_or(signing.bytes());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .expect("sign")
}

async fn me(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.call_as(Some(token), Method::GET, "/auth/me", None)
        .await
}

#[tokio::test]
async fn the_first_account_is_admin_and_later_ones_are_users() {
    let app = app().await;
    let (status, first) = app
        .call(
            Method::POST,
            "/auth/register",
            Some(json!({"email": " Ada@Example.com ", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["role"], "admin");
    assert_eq!(first["email"], "ada@example.com", "normalised");
    let (_, second) = app
        .call(
            Method::POST,
            "/auth/register",
            Some(json!({"email": "bob@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(second["role"], "user");
    let (status, dup) = app
        .call(
            Method::POST,
            "/auth/register",
            Some(json!({"email": "ADA@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{dup}");
}

#[tokio::test]
async fn registration_names_the_invalid_field_and_creates_nothing() {
    let app = app().await;
    for (body, field) in [
        (
            json!({"email": "not-an-email", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": "ada@example.com", "password": "short"}),
            "password",
        ),
    ] {
        let (status, error) = app.call(Method::POST, "/auth/register", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert_eq!(error["error"]["field"], field);
    }
    // Long enough for the schema, refused by the policy: a 422.
    for password in ["ada@example.com-123", "aaaaaaaaaaaaaaaa"] {
        let body = json!({"email": "ada@example.com", "password": password});
        let (status, error) = app.call(Method::POST, "/auth/register", Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["error"]["field"], "password");
    }
    let (status, created) = app
        .call(
            Method::POST,
            "/auth/register",
            Some(json!({"email": "ada@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        created["role"], "admin",
        "no earlier attempt created an account"
    );
}

#[tokio::test]
async fn unknown_email_and_wrong_password_fail_the_same_way() {
    let app = app().await;
    app.sign_up("ada@example.com").await;
    let (s1, unknown) = login(&app, "nobody@example.com", PASSWORD, None).await;
    let (s2, wrong) = login(&app, "ada@example.com", "wrong password here", None).await;
    assert_eq!(
        (s1, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(unknown["error"]["code"], "invalid_credentials");
    assert_eq!(unknown["error"]["message"], wrong["error"]["message"]);
    assert_eq!(unknown["error"]["code"], wrong["error"]["code"]);
}

#[tokio::test]
async fn login_returns_a_bearer_pair_that_reaches_me() {
    let app = app().await;
    app.sign_up("ada@example.com").await;
    let (status, pair) = login(&app, "ada@example.com", PASSWORD, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    let (status, account) = me(&app, pair["access_token"].as_str().expect("token")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(account["email"], "ada@example.com");
}

#[tokio::test]
async fn token_with_alg_none_is_rejected() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt","kid":"master"}"#);
    let claims = serde_json::to_vec(&claims_for(&ada, now() + 600)).expect("claims");
    let forged = format!("{header}.{}.", URL_SAFE_NO_PAD.encode(claims));
    let (status, body) = me(&app, &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn token_signed_with_another_key_is_rejected() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let forged = sign(
        &app,
        &claims_for(&ada, now() + 600),
        Some(b"another key, 32 bytes or more!!!"),
    )
    .await;
    assert_eq!(me(&app, &forged).await.0, StatusCode::UNAUTHORIZED);
    let genuine = sign(&app, &claims_for(&ada, now() + 600), None).await;
    assert_eq!(
        me(&app, &genuine).await.0,
        StatusCode::OK,
        "the same claims, properly signed"
    );
}

#[tokio::test]
async fn expired_token_is_rejected() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let expired = sign(&app, &claims_for(&ada, now() - 120), None).await;
    let (status, body) = me(&app, &expired).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn a_token_for_another_audience_or_type_is_rejected() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let mut claims = claims_for(&ada, now() + 600);
    claims.aud = "another-api".into();
    assert_eq!(
        me(&app, &sign(&app, &claims, None).await).await.0,
        StatusCode::UNAUTHORIZED
    );
    let secrets = app.state.secrets.current().await.expect("secrets");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(secrets.signing_key().kid.clone());
    let untyped = jsonwebtoken::encode(
        &header,
        &claims_for(&ada, now() + 600),
        &jsonwebtoken::EncodingKey::from_secret(secrets.signing_key().bytes()),
    )
    .expect("sign");
    assert_eq!(
        me(&app, &untyped).await.0,
        StatusCode::UNAUTHORIZED,
        "typ missing"
    );
}

#[tokio::test]
async fn refresh_rotates_and_the_old_token_dies() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let (status, pair) = app
        .call(
            Method::POST,
            "/auth/refresh",
            Some(json!({"refresh_token": ada.refresh_token})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert_ne!(pair["refresh_token"], json!(ada.refresh_token));
    assert_eq!(
        me(&app, pair["access_token"].as_str().expect("token"))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn refresh_token_reuse_revokes_the_family() {
    let app = app().await;
    let ada = app.sign_up("admin@example.com").await;
    let (_, second) = app
        .call(
            Method::POST,
            "/auth/refresh",
            Some(json!({"refresh_token": ada.refresh_token})),
        )
        .await;
    let (status, reuse) = app
        .call(
            Method::POST,
            "/auth/refresh",
            Some(json!({"refresh_token": ada.refresh_token})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(reuse["error"]["code"], "refresh_token_reused");
    // The whole session is gone: the newest refresh token and its access token too.
    let (status, _) = app
        .call(
            Method::POST,
            "/auth/refresh",
            Some(json!({"refresh_token": second["refresh_token"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        me(&app, second["access_token"].as_str().expect("token"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(&app, &ada.access_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    // And it is audited.
    let other = app.sign_up("other@example.com").await;
    assert!(!other.access_token.is_empty());
    let admin = login(&app, "admin@example.com", PASSWORD, None).await.1;
    let (_, events) = app
        .call_as(
            admin["access_token"].as_str(),
            Method::GET,
            "/audit?type=refresh.reused",
            None,
        )
        .await;
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(1),
        "{events}"
    );
    assert_eq!(events["items"][0]["subject"], json!(ada.user_id));
}

#[tokio::test]
async fn logout_ends_the_session_at_once() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let (status, _) = app
        .call_as(Some(&ada.access_token), Method::POST, "/auth/logout", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        me(&app, &ada.access_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = app
        .call(
            Method::POST,
            "/auth/refresh",
            Some(json!({"refresh_token": ada.refresh_token})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_are_listed_and_one_can_be_revoked_without_the_others() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let (_, phone) = login(&app, "ada@example.com", PASSWORD, None).await;
    let phone_token = phone["access_token"].as_str().expect("token");
    let (status, sessions) = app
        .call_as(Some(&ada.access_token), Method::GET, "/auth/sessions", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let sessions = sessions.as_array().expect("list").clone();
    assert_eq!(sessions.len(), 2);
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    let phone_session = session_of(phone["refresh_token"].as_str().expect("refresh"));
    let (status, _) = app
        .call_as(
            Some(&ada.access_token),
            Method::DELETE,
            &format!("/auth/sessions/{phone_session}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(me(&app, phone_token).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&app, &ada.access_token).await.0, StatusCode::OK);
    let (status, _) = app
        .call_as(
            Some(&ada.access_token),
            Method::DELETE,
            "/auth/sessions/0123456789abcdef0123456789abcdef",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Enrolls and confirms 2FA for `user`; returns the secret and the recovery codes.
async fn enable_totp(app: &TestApp, user: &SignedIn) -> (Vec<u8>, Vec<String>) {
    let (status, enrollment) = app
        .call_as(
            Some(&user.access_token),
            Method::POST,
            "/auth/2fa/enroll",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{enrollment}");
    assert!(
        enrollment["otpauth_uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("otpauth://totp/Jarvis:"))
    );
    let secret =
        totp::decode_base32(enrollment["secret"].as_str().expect("secret")).expect("base32");
    let code = totp::code_at(&secret, now());
    let (status, confirmed) = app
        .call_as(
            Some(&user.access_token),
            Method::POST,
            "/auth/2fa/confirm",
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    let codes = confirmed["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().unwrap_or_default().to_owned())
        .collect();
    (secret, codes)
}

#[tokio::test]
async fn login_with_2fa_needs_a_code_and_names_what_is_missing() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let (secret, _) = enable_totp(&app, &ada).await;
    let (status, body) = login(&app, "ada@example.com", PASSWORD, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "totp_required");
    let (status, body) = login(&app, "ada@example.com", PASSWORD, Some("000000")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "invalid_credentials");
    let next_step = totp::code_at(&secret, now() + totp::STEP_SECS);
    let (status, _) = login(&app, "ada@example.com", PASSWORD, Some(&next_step)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn totp_code_replay_is_rejected() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let (secret, _) = enable_totp(&app, &ada).await;
    let code = totp::code_at(&secret, now() + totp::STEP_SECS);
    let (first, _) = login(&app, "ada@example.com", PASSWORD, Some(&code)).await;
    let (replay, body) = login(&app, "ada@example.com", PASSWORD, Some(&code)).await;
    assert_eq!(first, StatusCode::OK);
    assert_eq!(replay, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "invalid_credentials");
    // The code used to confirm enrolment is spent too.
    let confirm_code = totp::code_at(&secret, now());
    assert_eq!(
        login(&app, "ada@example.com", PASSWORD, Some(&confirm_code))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_recovery_code_signs_in_once() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let (_, codes) = enable_totp(&app, &ada).await;
    assert_eq!(codes.len(), 10);
    let (status, _) = login(
        &app,
        "ada@example.com",
        PASSWORD,
        Some(&codes[3].to_uppercase()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "case and dashes do not matter");
    let (status, _) = login(&app, "ada@example.com", PASSWORD, Some(&codes[3])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "spent");
    let (status, _) = login(&app, "ada@example.com", PASSWORD, Some(&codes[4])).await;
    assert_eq!(status, StatusCode::OK, "the others still work");
}

#[tokio::test]
async fn totp_secrets_are_encrypted_at_rest() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let (secret, codes) = enable_totp(&app, &ada).await;
    let stored = app
        .state
        .store
        .get(&Key::new("users", ada.user_id.as_str()).expect("key"))
        .await
        .expect("get")
        .expect("account");
    let text = String::from_utf8_lossy(&stored.bytes);
    assert!(!text.contains(&totp::secret_base32(&secret)));
    assert!(
        !stored
            .bytes
            .windows(secret.len())
            .any(|w| w == secret.as_slice())
    );
    for code in codes {
        assert!(!text.contains(&code) && !text.contains(&code.replace('-', "")));
    }
}

#[tokio::test]
async fn disabling_2fa_needs_a_fresh_code() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let (secret, _) = enable_totp(&app, &ada).await;
    let spent = totp::code_at(&secret, now());
    let (status, body) = app
        .call_as(
            Some(&ada.access_token),
            Method::POST,
            "/auth/2fa/disable",
            Some(json!({"code": spent})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the confirming code is spent"
    );
    assert_eq!(body["error"]["code"], "invalid_code");
    let fresh = totp::code_at(&secret, now() + totp::STEP_SECS);
    let (status, _) = app
        .call_as(
            Some(&ada.access_token),
            Method::POST,
            "/auth/2fa/disable",
            Some(json!({"code": fresh})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        login(&app, "ada@example.com", PASSWORD, None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn lockout_after_repeated_failed_logins() {
    let app = TestApp::with_env(super::routes(), &[("JARVIS_LOCKOUT_THRESHOLD", "3")]).await;
    app.sign_up("ada@example.com").await;
    for _ in 0..3 {
        let (status, _) = login(&app, "ada@example.com", "wrong password here", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let response = app
        .respond(
            axum::http::Request::post("/auth/login")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    json!({"email": "ada@example.com", "password": PASSWORD}).to_string(),
                ))
                .expect("request"),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password"
    );
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=900).contains(&retry_after));
}

#[tokio::test]
async fn api_keys_are_shown_once_listed_without_secrets_and_work_in_either_header() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let (status, created) = app
        .call_as(
            Some(&ada.access_token),
            Method::POST,
            "/auth/api-keys",
            Some(json!({"name": "laptop", "scopes": ["archive:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().expect("key").to_owned();
    assert!(key.starts_with("jvk_"));
    let (_, listed) = app
        .call_as(Some(&ada.access_token), Method::GET, "/auth/api-keys", None)
        .await;
    assert_eq!(listed[0]["id"], created["id"]);
    assert!(
        !listed.to_string().contains(&key[key.len() - 43..]),
        "no secret in the list"
    );
    assert_eq!(me(&app, &key).await.0, StatusCode::OK, "as a bearer token");
    let request = axum::http::Request::get("/auth/me")
        .header("x-api-key", &key)
        .body(axum::body::Body::empty())
        .expect("request");
    assert_eq!(app.send(request).await.0, StatusCode::OK, "as X-Api-Key");
    let mut tampered = key.clone();
    tampered.pop();
    tampered.push(if key.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(me(&app, &tampered).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_key_cannot_carry_a_scope_the_role_lacks() {
    let app = app().await;
    app.sign_up("admin@example.com").await;
    let bob = app.sign_up("bob@example.com").await;
    let (status, body) = app
        .call_as(
            Some(&bob.access_token),
            Method::POST,
            "/auth/api-keys",
            Some(json!({"name": "x", "scopes": ["archive:read", "admin"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "scopes[1]");
    let (status, body) = app
        .call_as(
            Some(&bob.access_token),
            Method::POST,
            "/auth/api-keys",
            Some(json!({"name": "x", "scopes": ["archive:read"], "expires_at": "2001-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "expires_at");
}

#[tokio::test]
async fn a_revoked_key_and_a_disabled_user_are_refused_at_once() {
    let app = app().await;
    let admin = app.sign_up("admin@example.com").await;
    let bob = app.sign_up("bob@example.com").await;
    let new_key = |token: String| {
        let app = &app;
        async move {
            let (_, created) = app
                .call_as(
                    Some(&token),
                    Method::POST,
                    "/auth/api-keys",
                    Some(json!({"name": "k", "scopes": ["archive:read"]})),
                )
                .await;
            created
        }
    };
    let first = new_key(bob.access_token.clone()).await;
    let first_key = first["key"].as_str().expect("key");
    assert_eq!(me(&app, first_key).await.0, StatusCode::OK);
    let (status, _) = app
        .call_as(
            Some(&bob.access_token),
            Method::DELETE,
            &format!("/auth/api-keys/{}", first["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        me(&app, first_key).await.0,
        StatusCode::UNAUTHORIZED,
        "revoked key"
    );

    let second = new_key(bob.access_token.clone()).await;
    let second_key = second["key"].as_str().expect("key");
    let (status, patched) = app
        .call_as(
            Some(&admin.access_token),
            Method::PATCH,
            &format!("/admin/users/{}", bob.user_id),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["disabled"], true);
    assert_eq!(
        me(&app, &bob.access_token).await.0,
        StatusCode::UNAUTHORIZED,
        "token"
    );
    assert_eq!(
        me(&app, second_key).await.0,
        StatusCode::UNAUTHORIZED,
        "key"
    );
    let (status, _) = login(&app, "bob@example.com", PASSWORD, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call(
            Method::POST,
            "/auth/refresh",
            Some(json!({"refresh_token": bob.refresh_token})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn only_admins_administer_and_not_themselves() {
    let app = app().await;
    let admin = app.sign_up("admin@example.com").await;
    let bob = app.sign_up("bob@example.com").await;
    let (status, body) = app
        .call_as(Some(&bob.access_token), Method::GET, "/admin/users", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        app.call_as(Some(&bob.access_token), Method::GET, "/audit", None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (status, users) = app
        .call_as(Some(&admin.access_token), Method::GET, "/admin/users", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(users["items"].as_array().map(Vec::len), Some(2));
    let (status, body) = app
        .call_as(
            Some(&admin.access_token),
            Method::PATCH,
            &format!("/admin/users/{}", admin.user_id),
            Some(json!({"role": "user"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, promoted) = app
        .call_as(
            Some(&admin.access_token),
            Method::PATCH,
            &format!("/admin/users/{}", bob.user_id),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(promoted["role"], "viewer");
    let (_, me_now) = me(&app, &bob.access_token).await;
    assert_eq!(
        me_now["role"], "viewer",
        "the role applies to live tokens at once"
    );
    let (status, _) = app
        .call_as(
            Some(&admin.access_token),
            Method::PATCH,
            &format!("/admin/users/{}", bob.user_id),
            Some(json!({"role": "emperor"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn security_events_are_audited_and_filterable() {
    let app = app().await;
    let admin = app.sign_up("admin@example.com").await;
    let bob = app.sign_up("bob@example.com").await;
    login(&app, "bob@example.com", "wrong password here", None).await;
    let (_, all) = app
        .call_as(Some(&admin.access_token), Method::GET, "/audit", None)
        .await;
    let kinds: Vec<&str> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for kind in ["user.registered", "login.succeeded", "login.failed"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let (_, bobs) = app
        .call_as(
            Some(&admin.access_token),
            Method::GET,
            &format!("/audit?user={}&limit=1", bob.user_id),
            None,
        )
        .await;
    assert_eq!(bobs["items"].as_array().map(Vec::len), Some(1));
    assert!(bobs["next_cursor"].is_string());
    let (_, failed) = app
        .call_as(
            Some(&admin.access_token),
            Method::GET,
            "/audit?type=login.failed",
            None,
        )
        .await;
    assert_eq!(failed["items"].as_array().map(Vec::len), Some(1));
    assert!(
        !failed.to_string().contains("wrong password"),
        "no password in the trail"
    );
    let (_, verified) = app
        .call_as(
            Some(&admin.access_token),
            Method::GET,
            "/audit/verify",
            None,
        )
        .await;
    assert_eq!(verified["ok"], true);
    assert!(verified["checked"].as_u64().is_some_and(|n| n >= 5));
}

#[tokio::test]
async fn tampering_with_a_stored_audit_record_is_reported_by_audit_verify() {
    let app = app().await;
    let admin = app.sign_up("admin@example.com").await;
    app.sign_up("bob@example.com").await;
    let store = app.state.store.as_ref();
    let key = Key::new("audit#test", format!("e#{:020}", 2)).expect("key");
    let stored = store.get(&key).await.expect("get").expect("event 2");
    let mut event = Entity::decode(&stored.bytes).expect("decode");
    assert_eq!(event.field("type"), Some("login.succeeded"));
    let stamp = app.state.clock.stamp_after(event.stamp("actor"));
    event.join(Entity::new().set("actor", stamp, "someone-else"));
    let bytes = event.encode().expect("encode");
    store
        .put(
            &key,
            Write {
                expected_version: stored.version,
                state: &bytes,
                delta: &bytes,
                expires_at: None,
            },
        )
        .await
        .expect("tamper");
    let (status, verified) = app
        .call_as(
            Some(&admin.access_token),
            Method::GET,
            "/audit/verify",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verified["ok"], false);
    assert_eq!(verified["checked"], 1);
    assert_eq!(verified["broken"]["chain"], "test");
    assert_eq!(verified["broken"]["seq"], 2);
}

#[tokio::test]
async fn removing_the_newest_audit_events_is_reported() {
    let app = app().await;
    let admin = app.sign_up("admin@example.com").await;
    let store = app.state.store.as_ref();
    // Overwrite the newest event with a copy of an older one: the chain now ends early.
    let (_, all) = app
        .call_as(Some(&admin.access_token), Method::GET, "/audit", None)
        .await;
    let newest = all["items"].as_array().map_or(0, Vec::len) as u64;
    let key = Key::new("audit#test", format!("e#{newest:020}")).expect("key");
    let older = store
        .get(&Key::new("audit#test", format!("e#{:020}", 1)).expect("key"))
        .await
        .expect("get")
        .expect("first");
    let stored = store.get(&key).await.expect("get").expect("newest");
    store
        .put(
            &key,
            Write {
                expected_version: stored.version,
                state: &older.bytes,
                delta: &older.bytes,
                expires_at: None,
            },
        )
        .await
        .expect("overwrite");
    let (_, verified) = app
        .call_as(
            Some(&admin.access_token),
            Method::GET,
            "/audit/verify",
            None,
        )
        .await;
    assert_eq!(verified["ok"], false, "{verified}");
}

#[tokio::test]
async fn a_stale_copy_from_a_peer_cannot_bring_back_a_revoked_key() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let (_, created) = app
        .call_as(
            Some(&ada.access_token),
            Method::POST,
            "/auth/api-keys",
            Some(json!({"name": "k", "scopes": ["archive:read"]})),
        )
        .await;
    let key_id = created["id"].as_str().expect("id");
    let doc_key =
        Key::new(format!("user#{}", ada.user_id), format!("apikey#{key_id}")).expect("key");
    let before = app
        .state
        .store
        .get(&doc_key)
        .await
        .expect("get")
        .expect("key doc");
    app.call_as(
        Some(&ada.access_token),
        Method::DELETE,
        &format!("/auth/api-keys/{key_id}"),
        None,
    )
    .await;
    // A peer that never saw the revocation sends its (older) copy.
    jarvis_replication::merge_encoded(app.state.store.as_ref(), &doc_key, &before.bytes)
        .await
        .expect("merge");
    assert_eq!(
        me(&app, created["key"].as_str().expect("key")).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn every_error_body_is_the_json_envelope_and_leaks_no_internals() {
    let app = app().await;
    app.sign_up("admin@example.com").await;
    let ada = app.sign_up("ada@example.com").await;
    let cases = [
        (None, Method::GET, "/auth/me", None),
        (Some("garbage.token.value"), Method::GET, "/auth/me", None),
        (
            None,
            Method::POST,
            "/auth/login",
            Some(json!({"email": "x"})),
        ),
        (
            None,
            Method::POST,
            "/auth/login",
            Some(json!({"email": "a@b.co", "password": "p", "extra": 1})),
        ),
        (
            None,
            Method::POST,
            "/auth/refresh",
            Some(json!({"refresh_token": "jrt_nope"})),
        ),
        (
            Some(ada.access_token.as_str()),
            Method::GET,
            "/admin/users",
            None,
        ),
        (
            Some(ada.access_token.as_str()),
            Method::DELETE,
            "/auth/api-keys/zz",
            None,
        ),
        (
            Some(ada.access_token.as_str()),
            Method::POST,
            "/auth/2fa/confirm",
            Some(json!({"code": "123456"})),
        ),
        (None, Method::GET, "/auth/nope", None),
    ];
    for (token, method, uri, body) in cases {
        let (status, error) = app.call_as(token, method.clone(), uri, body).await;
        assert!(status.is_client_error(), "{method} {uri}: {status}");
        let envelope = &error["error"];
        assert!(envelope["code"].is_string(), "{method} {uri}: {error}");
        assert!(envelope["message"].is_string());
        assert!(
            envelope["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
        );
        let text = error.to_string().to_lowercase();
        for leak in [
            "panicked",
            "sqlite",
            "libsql",
            "argon2",
            "stack",
            "src/",
            ".rs:",
            "jsonwebtoken",
        ] {
            assert!(!text.contains(leak), "{method} {uri} leaks {leak}: {error}");
        }
    }
}

#[tokio::test]
async fn an_idempotent_register_is_replayed_and_creates_one_account() {
    let app = app().await;
    let send = |body: Value| {
        let request = axum::http::Request::post("/auth/register")
            .header("content-type", "application/json")
            .header("idempotency-key", "register-ada-1")
            .body(axum::body::Body::from(body.to_string()))
            .expect("request");
        app.respond(request)
    };
    let body = json!({"email": "ada@example.com", "password": PASSWORD});
    let first = send(body.clone()).await;
    let second = send(body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(
        second.status(),
        StatusCode::CREATED,
        "replayed, not a 409 duplicate"
    );
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let first = axum::body::to_bytes(first.into_body(), 1 << 20)
        .await
        .expect("body");
    let second = axum::body::to_bytes(second.into_body(), 1 << 20)
        .await
        .expect("body");
    assert_eq!(first, second);
    let different = send(json!({"email": "eve@example.com", "password": PASSWORD})).await;
    assert_eq!(different.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_forged_old_refresh_token_does_not_revoke_the_session() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    // Right account and session, an earlier generation, but not made from the session's seed.
    let parts: Vec<&str> = ada.refresh_token.split('_').collect();
    let forged = format!("jrt_{}_{}_0_{}", parts[1], parts[2], "ab".repeat(32));
    let (status, body) = app
        .call(
            Method::POST,
            "/auth/refresh",
            Some(json!({"refresh_token": forged})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "invalid_refresh_token");
    let (status, _) = app
        .call(
            Method::POST,
            "/auth/refresh",
            Some(json!({"refresh_token": ada.refresh_token})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the genuine token still works");
}

#[tokio::test]
async fn a_session_stays_the_same_size_however_often_it_refreshes() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let key = Key::new(
        format!("user#{}", ada.user_id),
        format!("session#{}", session_of(&ada.refresh_token)),
    )
    .expect("key");
    let size = || async {
        app.state
            .store
            .get(&key)
            .await
            .expect("get")
            .expect("session")
            .bytes
            .len()
    };
    let mut token = ada.refresh_token.clone();
    let mut sizes = Vec::new();
    for _ in 0..20 {
        let (status, pair) = app
            .call(
                Method::POST,
                "/auth/refresh",
                Some(json!({"refresh_token": token})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{pair}");
        token = pair["refresh_token"].as_str().expect("token").to_owned();
        sizes.push(size().await);
    }
    assert_eq!(sizes.first(), sizes.last(), "{sizes:?}");
}

#[tokio::test]
async fn a_client_that_sends_its_expired_token_everywhere_can_still_refresh() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let expired = sign(&app, &claims_for(&ada, now() - 120), None).await;
    let (status, pair) = app
        .call_as(
            Some(&expired),
            Method::POST,
            "/auth/refresh",
            Some(json!({"refresh_token": ada.refresh_token})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let (status, body) = me(&app, &expired).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["message"], "invalid or expired access token");
}

#[tokio::test]
async fn wrong_codes_on_2fa_disable_are_audited_and_lock_2fa_changes() {
    let app = TestApp::with_env(super::routes(), &[("JARVIS_LOCKOUT_THRESHOLD", "3")]).await;
    let ada = app.sign_up("ada@example.com").await;
    let (secret, _) = enable_totp(&app, &ada).await;
    let disable = |code: String| {
        let token = ada.access_token.clone();
        let app = &app;
        async move {
            app.call_as(
                Some(&token),
                Method::POST,
                "/auth/2fa/disable",
                Some(json!({ "code": code })),
            )
            .await
        }
    };
    for wrong in ["000000", "111111", "222222"] {
        let (status, body) = disable(wrong.to_owned()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["code"], "invalid_code");
    }
    // Locked now: even the right code is refused until the lockout ends.
    let fresh = totp::code_at(&secret, now() + totp::STEP_SECS);
    let (status, body) = disable(fresh).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "locked_out");
    let (_, me) = me(&app, &ada.access_token).await;
    assert_eq!(me["totp_enabled"], true, "2FA stayed on");

    let (_, events) = app
        .call_as(
            Some(&ada.access_token),
            Method::GET,
            "/audit?type=totp.failed",
            None,
        )
        .await;
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(3),
        "{events}"
    );
    let (_, locked) = app
        .call_as(
            Some(&ada.access_token),
            Method::GET,
            "/audit?type=totp.locked",
            None,
        )
        .await;
    assert_eq!(
        locked["items"].as_array().map(Vec::len),
        Some(1),
        "{locked}"
    );
}

#[tokio::test]
async fn a_session_past_its_own_expiry_is_refused_even_while_its_document_lives() {
    let app = app().await;
    let ada = app.sign_up("ada@example.com").await;
    let key = Key::new(
        format!("user#{}", ada.user_id),
        format!("session#{}", session_of(&ada.refresh_token)),
    )
    .expect("key");
    // As a copy merged in from a peer: the store keeps the document (no TTL ends it), but
    // the session's own expiry has passed.
    let clock = &app.state.clock;
    app.state
        .store
        .update(&key, |session: &mut Entity| {
            let stamp = clock.stamp_after(session.stamp("expires_at"));
            session.set("expires_at", stamp, (now_secs() - 1).to_string())
        })
        .await
        .expect("expire");
    assert!(
        app.state
            .store
            .read::<Entity>(&key)
            .await
            .expect("read")
            .is_some()
    );

    assert_eq!(
        me(&app, &ada.access_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = app
        .call_as(
            None,
            Method::POST,
            "/auth/refresh",
            Some(json!({"refresh_token": ada.refresh_token})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "invalid_refresh_token");
}
