use axum::http::{Method, StatusCode};
use jarvis_fn_auth::testing::TestApp;
use serde_json::{Value, json};

async fn app() -> TestApp {
    TestApp::signed_in(super::routes()).await
}

async fn create(app: &TestApp, kind: &str, title: &str, tags: &[&str]) -> Value {
    let (status, body) = app
        .call(
            Method::POST,
            "/archive",
            Some(json!({"kind": kind, "title": title, "content": "body text", "tags": tags})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

#[tokio::test]
async fn creating_an_entry_returns_it_with_an_id_and_it_reads_back() {
    let app = app().await;
    let created = create(&app, "Note", "Groceries", &["Home", "food", "home"]).await;
    let id = created["id"].as_str().expect("id");
    assert_eq!(created["kind"], "note", "kind is normalised");
    assert_eq!(
        created["tags"],
        json!(["food", "home"]),
        "tags normalised and deduplicated"
    );
    for field in ["created_at", "updated_at"] {
        let text = created[field].as_str().expect("RFC 3339 text");
        assert!(
            text.len() >= 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T',
            "{field}: {text}"
        );
    }
    let (status, read) = app.call(Method::GET, &format!("/archive/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, created);
}

#[tokio::test]
async fn invalid_fields_are_named_and_nothing_is_created() {
    let app = app().await;
    let cases = [
        (json!({"kind": "note", "title": "", "content": ""}), "title"),
        (
            json!({"kind": "no spaces", "title": "t", "content": ""}),
            "kind",
        ),
        (
            json!({"kind": "note", "title": "t", "content": "", "tags": ["ok", "not ok"]}),
            "tags[1]",
        ),
        (json!({"kind": "note", "title": 7, "content": ""}), "title"),
        (json!({"kind": "note", "content": ""}), ""),
    ];
    for (body, field) in cases {
        let (status, answer) = app.call(Method::POST, "/archive", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        if !field.is_empty() {
            assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
        }
    }
    let (_, page) = app.call(Method::GET, "/archive", None).await;
    assert_eq!(page["items"], json!([]));
}

#[tokio::test]
async fn listing_filters_by_tag_and_kind_and_pages_in_creation_order() {
    let app = app().await;
    let mut expected = Vec::new();
    for i in 0..7 {
        let tags: &[&str] = if i % 2 == 0 { &["even"] } else { &["odd"] };
        let kind = if i < 5 { "note" } else { "link" };
        let entry = create(&app, kind, &format!("entry {i}"), tags).await;
        if i % 2 == 0 && kind == "note" {
            expected.push(entry["id"].clone());
        }
    }
    let mut seen = Vec::new();
    let mut uri = "/archive?tag=even&kind=note&limit=2".to_owned();
    loop {
        let (status, page) = app.call(Method::GET, &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|e| e["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/archive?tag=even&kind=note&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, expected, "entries 0, 2 and 4 in creation order");
}

#[tokio::test]
async fn a_bad_limit_or_cursor_is_rejected() {
    let app = app().await;
    let (status, body) = app.call(Method::GET, "/archive?limit=0", None).await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("limit"))
    );
    // Hex of the right form that is not UTF-8: no position this listing ever returned.
    let (status, body) = app.call(Method::GET, "/archive?cursor=ff", None).await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("cursor"))
    );
    let (status, _) = app.call(Method::GET, "/archive?unknown=1", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn patching_changes_only_the_named_fields() {
    let app = app().await;
    let created = create(&app, "note", "Draft", &["a"]).await;
    let id = created["id"].as_str().expect("id");
    let (status, patched) = app
        .call(
            Method::PATCH,
            &format!("/archive/{id}"),
            Some(json!({"title": "Final"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["title"], "Final");
    assert_eq!(patched["content"], created["content"]);
    assert_eq!(patched["tags"], created["tags"]);
    // RFC 3339 in UTC with the same layout sorts as the times do.
    assert!(patched["updated_at"].as_str() >= created["updated_at"].as_str());
    let (status, _) = app
        .call(Method::PATCH, &format!("/archive/{id}"), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn deleting_removes_the_entry_everywhere_it_is_read() {
    let app = app().await;
    let created = create(&app, "note", "Gone soon", &[]).await;
    let id = created["id"].as_str().expect("id");
    let uri = format!("/archive/{id}");
    let (status, body) = app.call(Method::DELETE, &uri, None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(
        app.call(Method::GET, &uri, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::DELETE, &uri, None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = app
        .call(Method::PATCH, &uri, Some(json!({"title": "back?"})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, page) = app.call(Method::GET, "/archive", None).await;
    assert_eq!(page["items"], json!([]));
}

#[tokio::test]
async fn ids_that_are_not_ours_are_rejected_or_not_found() {
    let app = app().await;
    let (status, body) = app.call(Method::GET, "/archive/not-a-uuid", None).await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("id"))
    );
    let (status, _) = app
        .call(
            Method::GET,
            "/archive/0190b2f4-0000-7000-8000-000000000000",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_deleted_entry_keeps_no_content_in_its_document() {
    use jarvis_store::Key;
    use jarvis_store::principal::Principal;

    let app = TestApp::new(super::routes()).await;
    let owner = app.sign_up("owner@example.com").await;
    let token = Some(owner.access_token.as_str());
    let (status, created) = app
        .call_as(
            token,
            Method::POST,
            "/archive",
            Some(json!({"kind": "note", "title": "Diary", "content": "very private words", "tags": ["secret-tag"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().expect("id");
    let (status, _) = app
        .call_as(token, Method::DELETE, &format!("/archive/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let key = Key::new(
        format!("archive#{}", Principal::user(&owner.user_id).id()),
        format!("entry#{id}"),
    )
    .expect("key");
    let stored = app
        .state
        .store
        .get(&key)
        .await
        .expect("get")
        .expect("document");
    for gone in [&b"very private words"[..], b"Diary", b"secret-tag"] {
        assert!(
            !stored.bytes.windows(gone.len()).any(|w| w == gone),
            "{} is still in the document",
            String::from_utf8_lossy(gone)
        );
    }
    let (status, _) = app
        .call_as(token, Method::GET, &format!("/archive/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_filter_that_matches_little_examines_a_bounded_number_of_entries_per_request() {
    let app =
        TestApp::signed_in_with_env(super::routes(), &[("JARVIS_RATE_LIMIT", "100000")]).await;
    let total = super::SCAN_BUDGET + 50;
    for i in 0..total {
        let tags: &[&str] = if i == total - 1 { &["rare"] } else { &[] };
        create(&app, "note", &format!("n{i}"), tags).await;
    }
    let (status, first) = app
        .call(Method::GET, "/archive?tag=rare&limit=5", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        first["items"],
        json!([]),
        "the budget ran out before the match"
    );
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a cursor to go on from");
    let (_, second) = app
        .call(
            Method::GET,
            &format!("/archive?tag=rare&limit=5&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(
        second["items"].as_array().map(Vec::len),
        Some(1),
        "{second}"
    );
    assert_eq!(second["next_cursor"], Value::Null);
}

#[test]
fn tags_written_as_one_field_by_an_earlier_build_read_back_and_become_a_set_on_the_next_edit() {
    use jarvis_crdt::{Record, ReplicaId};
    use jarvis_store::clock::Clock;

    let replica = ReplicaId::from_name("eu-west-1");
    let clock = Clock::new(replica);
    let mut record = Record::new();
    record.create(
        replica,
        clock.now(),
        [
            ("kind".to_owned(), "note".to_owned()),
            ("title".to_owned(), "Old".to_owned()),
            ("content".to_owned(), String::new()),
            ("tags".to_owned(), r#"["home","old"]"#.to_owned()),
        ],
    );
    let entry = super::view("id", &record).expect("view");
    assert_eq!(entry.tags, ["home", "old"]);

    super::replace_tags(
        &mut record,
        replica,
        &clock,
        &["home".to_owned(), "new".to_owned()],
    );
    assert_eq!(record.get("tags"), None, "the single field is gone");
    assert_eq!(record.set_elements("tags"), Some(vec!["home", "new"]));
    assert_eq!(
        super::view("id", &record).expect("view").tags,
        ["home", "new"]
    );
}

#[tokio::test]
async fn a_tag_edit_alone_moves_updated_at() {
    let app = app().await;
    let created = create(&app, "note", "Tagged", &["a"]).await;
    let id = created["id"].as_str().expect("id");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (status, patched) = app
        .call(
            Method::PATCH,
            &format!("/archive/{id}"),
            Some(json!({"tags": ["b"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["tags"], json!(["b"]));
    assert!(
        patched["updated_at"].as_str() > created["updated_at"].as_str(),
        "{} then {}",
        created["updated_at"],
        patched["updated_at"]
    );
}
