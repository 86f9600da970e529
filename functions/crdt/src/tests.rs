use axum::http::{Method, StatusCode};
use jarvis_fn_auth::testing::TestApp;
use serde_json::json;

async fn app() -> TestApp {
    TestApp::signed_in(super::routes()).await
}

#[tokio::test]
async fn increments_add_up_and_read_back() {
    let app = app().await;
    for by in [2, 3] {
        let (status, _) = app
            .call(
                Method::POST,
                "/crdt/counters/visits/increment",
                Some(json!({"by": by})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body) = app.call(Method::GET, "/crdt/counters/visits", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"name": "visits", "value": 5}));
}

#[tokio::test]
async fn an_increment_below_one_is_rejected_naming_the_field_and_changes_nothing() {
    let app = app().await;
    for bad in [
        json!({"by": 0}),
        json!({"by": -1}),
        json!({"by": "2"}),
        json!({}),
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                "/crdt/counters/c/increment",
                Some(bad.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"]["code"], "bad_request");
        if bad != json!({}) {
            assert_eq!(body["error"]["field"], "by", "{bad}: {body}");
        }
    }
    let (status, _) = app.call(Method::GET, "/crdt/counters/c", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was created");
}

#[tokio::test]
async fn invalid_names_are_rejected_naming_the_field() {
    let app = app().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/crdt/sets/bad%20name",
            Some(json!({"add": ["x"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "name");
}

#[tokio::test]
async fn unknown_objects_are_404_in_the_envelope() {
    let app = app().await;
    for uri in [
        "/crdt/counters/none",
        "/crdt/sets/none",
        "/crdt/registers/none",
        "/crdt/orsets/none",
    ] {
        let (status, body) = app.call(Method::GET, uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn sets_grow_and_list_their_elements_in_order() {
    let app = app().await;
    app.call(
        Method::POST,
        "/crdt/sets/tags",
        Some(json!({"add": ["rust", "lambda"]})),
    )
    .await;
    let (status, body) = app
        .call(
            Method::POST,
            "/crdt/sets/tags",
            Some(json!({"add": ["crdt", "rust"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["elements"], json!(["crdt", "lambda", "rust"]));
}

#[tokio::test]
async fn an_oversized_element_is_rejected_with_its_position() {
    let app = app().await;
    let big = "x".repeat(super::MAX_ELEMENT_CHARS + 1);
    let (status, body) = app
        .call(
            Method::POST,
            "/crdt/orsets/s",
            Some(json!({"add": ["ok", big]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "add[1]");
    let (status, _) = app.call(Method::GET, "/crdt/orsets/s", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was written");
}

#[tokio::test]
async fn registers_hold_any_json_and_the_last_write_wins() {
    let app = app().await;
    let first = json!({"theme": "dark", "font": 14});
    let (status, body) = app
        .call(
            Method::PUT,
            "/crdt/registers/prefs",
            Some(json!({"value": first})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"], first);
    app.call(
        Method::PUT,
        "/crdt/registers/prefs",
        Some(json!({"value": [1, null, "x"]})),
    )
    .await;
    let (_, body) = app.call(Method::GET, "/crdt/registers/prefs", None).await;
    assert_eq!(body, json!({"name": "prefs", "value": [1, null, "x"]}));
}

#[tokio::test]
async fn orsets_add_and_remove_and_a_readd_in_one_request_wins() {
    let app = app().await;
    app.call(
        Method::POST,
        "/crdt/orsets/todo",
        Some(json!({"add": ["a", "b", "c"]})),
    )
    .await;
    let (status, body) = app
        .call(
            Method::POST,
            "/crdt/orsets/todo",
            Some(json!({"remove": ["a", "b"], "add": ["b", "d"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["elements"], json!(["b", "c", "d"]));
}

#[tokio::test]
async fn an_empty_change_an_empty_list_and_a_null_list_are_rejected() {
    let app = app().await;
    let (status, _) = app
        .call(Method::POST, "/crdt/orsets/todo", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for (body, field) in [
        (json!({"add": []}), "add"),
        (json!({"add": ["a"], "remove": []}), "remove"),
        (json!({"remove": null}), "remove"),
    ] {
        let (status, answer) = app
            .call(Method::POST, "/crdt/orsets/todo", Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer["error"]["field"], field, "{body}");
    }
    let (status, _) = app.call(Method::GET, "/crdt/orsets/todo", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was written");
}

#[tokio::test]
async fn a_whole_number_written_with_a_fraction_part_is_an_increment_and_an_array_body_is_not() {
    let app = app().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/crdt/counters/c/increment",
            Some(json!({"by": 2.0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["value"], 2);
    let (status, _) = app
        .call(
            Method::PUT,
            "/crdt/registers/r",
            Some(json!([{"theme": "dark"}])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_fields_and_non_json_bodies_are_rejected() {
    let app = app().await;
    let (status, _) = app
        .call(
            Method::POST,
            "/crdt/counters/c/increment",
            Some(json!({"by": 1, "extra": true})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let request = axum::http::Request::post("/crdt/counters/c/increment")
        .header("content-type", "text/plain")
        .body(axum::body::Body::from("by=1"))
        .expect("request");
    let (status, body) = app.send(request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body["error"]["code"], "unsupported_media_type");
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_envelope_and_changes_nothing() {
    let app =
        TestApp::signed_in_with_env(super::routes(), &[("JARVIS_MAX_BODY_BYTES", "1024")]).await;
    let big = "x".repeat(1000);
    let (status, body) = app
        .call(
            Method::POST,
            "/crdt/sets/s",
            Some(json!({"add": [big, "y".repeat(500)]})),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "payload_too_large");
    let (status, _) = app.call(Method::GET, "/crdt/sets/s", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_increment_beyond_the_json_safe_range_is_a_400_naming_the_field() {
    let app = app().await;
    let (status, body) = app
        .call(
            Method::POST,
            "/crdt/counters/c/increment",
            Some(json!({"by": 18_446_744_073_709_551_615_u64})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "by");
    let (status, _) = app.call(Method::GET, "/crdt/counters/c", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was created");
}

#[tokio::test]
async fn an_increment_that_would_overflow_is_a_422_and_changes_nothing() {
    use jarvis_crdt::{GCounter, ReplicaId};
    use jarvis_store::Key;
    use jarvis_store::principal::Principal;

    let app = TestApp::new(super::routes()).await;
    let owner = app.sign_up("owner@example.com").await;
    let key = Key::new(
        format!("crdt#{}", Principal::user(&owner.user_id).id()),
        "counter#big",
    )
    .expect("key");
    // Another replica brought the counter close to the top.
    let mut elsewhere = GCounter::new();
    let delta = elsewhere.increment(ReplicaId::from_u64(77), u64::MAX - 5);
    app.state.store.merge(&key, delta).await.expect("seed");
    let token = Some(owner.access_token.as_str());

    for _ in 0..3 {
        let (status, body) = app
            .call_as(
                token,
                Method::POST,
                "/crdt/counters/big/increment",
                Some(json!({"by": 9})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "by");
    }
    let (status, body) = app
        .call_as(token, Method::GET, "/crdt/counters/big", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"], json!(u64::MAX - 5), "nothing was added");

    let (status, body) = app
        .call_as(
            token,
            Method::POST,
            "/crdt/counters/big/increment",
            Some(json!({"by": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "exactly to the maximum still fits");
    assert_eq!(body["value"], json!(u64::MAX));
}
