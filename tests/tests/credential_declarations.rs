//! Every route's credential kind and scope are declared once, in its OpenAPI `security`, and
//! the routes keep to it: each route is called with an API key of every single scope (from
//! an admin, whose role grants them all), and the answer must match the declaration — a key
//! whose scope a route does not list is refused with 403 (401 where only a peer token is
//! accepted); a key it lists gets past authorisation.

use axum::http::{Method, StatusCode};
use jarvis_fn_auth::testing::TestApp;
use jarvis_identity::Scope;
use jarvis_tests::all_routes;
use serde_json::{Value, json};

/// A concrete path for a templated one: each parameter gets a value of its documented form.
fn concrete(path: &str) -> String {
    path.replace(
        "/archive/{id}",
        "/archive/0193e5f0-7b1c-7cc1-8c5f-1a2b3c4d5e6f",
    )
    .replace(
        "/auth/sessions/{id}",
        "/auth/sessions/0123456789abcdef0123456789abcdef",
    )
    .replace("/auth/api-keys/{id}", "/auth/api-keys/0123456789abcdef")
    .replace(
        "/admin/users/{id}",
        "/admin/users/0123456789abcdef0123456789abcdef",
    )
    .replace("{name}", "walk")
}

/// What the route's `security` accepts from an API key: `None` when it takes no API key at
/// all, `Some(scopes)` (empty meaning any scope) otherwise.
fn api_key_scopes(operation: &Value) -> Option<Vec<String>> {
    operation["security"]
        .as_array()?
        .iter()
        .find_map(|requirement| requirement.get("api_key"))
        .map(|scopes| {
            scopes
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
}

#[tokio::test]
async fn every_route_answers_a_key_of_each_single_scope_as_its_declaration_says() {
    let app = TestApp::with_env(
        all_routes(),
        &[
            ("JARVIS_AUTH_RATE_LIMIT", "100000"),
            ("JARVIS_RATE_LIMIT", "100000"),
            ("JARVIS_SYNC_TOKEN", "peer-token-for-the-walk-0123"),
        ],
    )
    .await;
    let admin = app.sign_up("admin@example.com").await;
    let mut keys = Vec::new();
    for scope in Scope::ALL {
        let (status, created) = app
            .call_as(
                Some(&admin.access_token),
                Method::POST,
                "/auth/api-keys",
                Some(json!({"name": scope.as_str(), "scopes": [scope.as_str()]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        keys.push((scope, created["key"].as_str().expect("key").to_owned()));
    }
    let openapi = serde_json::to_value(jarvis_local::routes_and_openapi().1).expect("document");
    let paths = openapi["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let Some(security) = operation["security"].as_array() else {
                continue; // public: no credential needed, none refused
            };
            assert!(!security.is_empty(), "{method} {path}: empty security");
            let accepted = api_key_scopes(operation);
            for (scope, key) in &keys {
                let allowed = accepted
                    .as_ref()
                    .is_some_and(|s| s.is_empty() || s.iter().any(|s| s == scope.as_str()));
                let body =
                    matches!(method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
                let (status, answer) = app
                    .call_as(Some(key), method.clone(), &concrete(path), body)
                    .await;
                let what = format!("{method} {path} with a {scope} key: {status} {answer}");
                if allowed {
                    assert!(
                        status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                        "declared to accept it, refused: {what}"
                    );
                } else if accepted.is_none()
                    && !security.iter().any(|r| r.get("access_token").is_some())
                {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "peer-token route: {what}");
                } else {
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "declared to refuse it: {what}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 5 * 25, "walked {checked} route × key pairs");
}

#[tokio::test]
async fn an_archive_read_key_cannot_list_sessions_or_manage_keys() {
    let app = TestApp::new(all_routes()).await;
    let owner = app.sign_up("owner@example.com").await;
    let (_, created) = app
        .call_as(
            Some(&owner.access_token),
            Method::POST,
            "/auth/api-keys",
            Some(json!({"name": "backup", "scopes": ["archive:read"]})),
        )
        .await;
    let narrow = created["key"].as_str().expect("key").to_owned();
    let (_, other) = app
        .call_as(
            Some(&owner.access_token),
            Method::POST,
            "/auth/api-keys",
            Some(json!({"name": "other", "scopes": ["crdt:read"]})),
        )
        .await;
    let other_id = other["id"].as_str().expect("id");
    for (method, uri) in [
        (Method::GET, "/auth/sessions".to_owned()),
        (Method::GET, "/auth/api-keys".to_owned()),
        (Method::DELETE, format!("/auth/api-keys/{other_id}")),
    ] {
        let (status, body) = app.call_as(Some(&narrow), method.clone(), &uri, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}: {body}");
    }
    let (_, keys) = app
        .call_as(
            Some(&owner.access_token),
            Method::GET,
            "/auth/api-keys",
            None,
        )
        .await;
    let still_live = keys
        .as_array()
        .expect("keys")
        .iter()
        .any(|k| k["id"] == other_id && k["revoked"] == false);
    assert!(still_live, "the other key was not revoked");
}
