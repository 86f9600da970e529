use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use jarvis_ai::service::Ai;
use jarvis_fn_auth::testing::TestApp;
use jarvis_knowledge::service::{Knowledge, LocalQueue, run_local_worker};
use serde_json::{Value, json};

/// Every alias answers offline and deterministically: replies echo the prompt, embeddings
/// hash words.
const OFFLINE: &[(&str, &str)] = &[(
    "JARVIS_AI_MODELS",
    "smart=scripted:echo;fast=scripted:echo;embed=scripted:hash",
)];

/// A test host: the function's routes with the knowledge base built from the app's own
/// configuration and its local worker running, as `jarvis-local` runs it.
struct Host {
    app: TestApp,
    knowledge: Arc<Knowledge>,
}

async fn host_with(env: &[(&str, &str)]) -> Host {
    host_of(env, true).await
}

/// A host whose uploads are queued in the store and read by its own worker when `worker`
/// is set, and only queued otherwise.
async fn host_of(env: &[(&str, &str)], worker: bool) -> Host {
    host_full(env, Vec::new(), worker).await
}

/// [`host_of`] with providers of the test's own.
async fn host_full(
    env: &[(&str, &str)],
    hosted: Vec<(String, Arc<dyn jarvis_ai::Provider>)>,
    worker: bool,
) -> Host {
    let slot: Arc<OnceLock<(Arc<Knowledge>, jarvis_fn_archive::Watching)>> =
        Arc::new(OnceLock::new());
    let services = Arc::clone(&slot);
    // The archive's routes too: archive entries are a source of documents.
    let router: axum::Router<jarvis_app::AppState> =
        super::api().merge(jarvis_fn_archive::api()).into();
    let router = router.layer(tower::util::MapRequestLayer::new(
        move |mut request: Request<Body>| {
            if let Some((knowledge, watching)) = services.get() {
                request.extensions_mut().insert(Arc::clone(knowledge));
                request.extensions_mut().insert(watching.clone());
            }
            request
        },
    ));
    let mut vars = OFFLINE.to_vec();
    vars.extend_from_slice(env);
    let app = TestApp::signed_in_with_env(router, &vars).await;
    let ai = Arc::new(Ai::new(
        &app.state.config,
        Arc::clone(&app.state.secrets),
        hosted,
    ));
    let knowledge = super::service(&app.state, ai).expect("the processors validate");
    let queue = Arc::new(LocalQueue::new(knowledge.site().clone()));
    knowledge.attach_queue(Arc::clone(&queue) as _);
    // Archive changes reach the knowledge base as `jarvis-local` sends them.
    let watching =
        jarvis_fn_archive::Watching(Arc::new(super::ArchiveIndexing(Arc::clone(&queue) as _)));
    if worker {
        tokio::spawn(run_local_worker(Arc::clone(&knowledge), queue));
    }
    assert!(slot.set((Arc::clone(&knowledge), watching)).is_ok());
    Host { app, knowledge }
}

async fn host() -> Host {
    host_with(&[]).await
}

const BOUNDARY: &str = "jarvis-test-boundary";

/// A `multipart/form-data` body of `parts`: `(name, file name, bytes)`.
fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file_name, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match file_name {
            Some(f) => {
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n")
            }
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

impl Host {
    async fn upload_as(
        &self,
        token: Option<&str>,
        file_name: &str,
        bytes: &[u8],
        tags: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut parts: Vec<(&str, Option<&str>, &[u8])> = vec![("file", Some(file_name), bytes)];
        if let Some(tags) = tags {
            parts.push(("tags", None, tags.as_bytes()));
        }
        let mut request = Request::post("/knowledge/documents").header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        );
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Body::from(form(&parts))).expect("request");
        self.app.send(request).await
    }

    async fn upload(
        &self,
        file_name: &str,
        bytes: &[u8],
        tags: Option<&str>,
    ) -> (StatusCode, Value) {
        self.upload_as(None, file_name, bytes, tags).await
    }

    /// A new archive note's id.
    async fn note(&self, title: &str, content: &str) -> String {
        let (status, created) = self
            .app
            .call(
                Method::POST,
                "/archive",
                Some(json!({"kind": "note", "title": title, "content": content})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["id"].as_str().expect("id").to_owned()
    }

    /// The document once it is ready or failed.
    async fn settled(&self, id: &str) -> Value {
        for _ in 0..400 {
            let (status, doc) = self
                .app
                .call(Method::GET, &format!("/knowledge/documents/{id}"), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{doc}");
            if doc["status"] == "ready" || doc["status"] == "failed" {
                return doc;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("document {id} did not settle");
    }

    async fn added(&self, file_name: &str, bytes: &[u8], tags: Option<&str>) -> Value {
        let (status, doc) = self.upload(file_name, bytes, tags).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
        let id = doc["id"].as_str().expect("id").to_owned();
        self.settled(&id).await
    }

    /// Waits until the worker has nothing left queued.
    async fn idle(&self) {
        for _ in 0..400 {
            let queued = jarvis_knowledge::documents::queued(self.knowledge.site(), 1)
                .await
                .expect("queued");
            if queued.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the ingestion queue did not empty");
    }

    /// The names of the caller's documents.
    async fn document_names(&self) -> Vec<String> {
        let (status, listing) = self
            .app
            .call(Method::GET, "/knowledge/documents?limit=100", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{listing}");
        let mut names: Vec<String> = listing["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|d| d["name"].as_str().expect("name").to_owned())
            .collect();
        names.sort();
        names
    }

    /// The names of the documents a keyword search finds.
    async fn found_in(&self, word: &str) -> Vec<String> {
        let hits = self
            .search(&format!("/knowledge/search?mode=keyword&q={word}"))
            .await;
        hits.iter()
            .map(|h| h["name"].as_str().expect("name").to_owned())
            .collect()
    }

    async fn set_index_archive(&self, on: bool) -> (StatusCode, Value) {
        self.app
            .call(
                Method::PUT,
                "/knowledge/settings",
                Some(json!({"index_archive": on})),
            )
            .await
    }

    async fn search(&self, query: &str) -> Vec<Value> {
        let (status, body) = self.app.call(Method::GET, query, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().expect("items").clone()
    }
}

const BOAT: &str = "Scrape the hull and repaint the antifouling every spring.";

fn encode(q: &str) -> String {
    q.replace(' ', "%20")
}

const FIELD_GUIDE: &str = "# Field guide\n\n## Owls\n\nThe barn owl hunts small rodents at night \
    over open fields, finding them by sound alone.\n\n## Herons\n\nThe grey heron wades in \
    shallow water and spears fish with its bill.\n";

#[tokio::test]
async fn an_uploaded_file_is_read_off_the_request_path_and_becomes_searchable() {
    let host = host().await;
    let (status, pending) = host
        .upload("guide.md", FIELD_GUIDE.as_bytes(), Some("birds, Nature"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    assert_eq!(pending["media_type"], "text/markdown");
    assert_eq!(pending["name"], "guide.md");
    assert_eq!(pending["tags"], json!(["birds", "nature"]));
    assert!(
        ["pending", "processing", "ready"].contains(&pending["status"].as_str().unwrap_or("")),
        "{pending}"
    );
    let id = pending["id"].as_str().expect("id");
    let ready = host.settled(id).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(ready["chunks"].as_u64().expect("chunks") >= 2, "{ready}");
    assert_eq!(ready["progress"]["done"], ready["progress"]["total"]);
    assert_eq!(ready["model"], "scripted:hash");

    let hits = host
        .search(&format!("/knowledge/search?q={}", encode("heron fish")))
        .await;
    assert!(!hits.is_empty());
    let top = &hits[0];
    assert_eq!(top["document"], id);
    assert!(
        top["text"].as_str().expect("text").contains("grey heron"),
        "{top}"
    );
    assert_eq!(top["section"], "Field guide › Herons");
    assert!(
        top["keyword_rank"].is_u64() && top["vector_rank"].is_u64(),
        "{top}"
    );

    let listed = host
        .app
        .call(Method::GET, "/knowledge/documents", None)
        .await;
    assert_eq!(listed.0, StatusCode::OK);
    assert_eq!(listed.1["items"][0]["id"], id);
}

#[tokio::test]
async fn the_same_content_added_again_is_the_same_document_and_changes_nothing() {
    let host = host().await;
    let first = host.added("a.md", FIELD_GUIDE.as_bytes(), None).await;
    let (status, again) = host
        .upload("copy-of-a.md", FIELD_GUIDE.as_bytes(), Some("other"))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["name"], "a.md", "the first upload's record stands");
    assert_eq!(again["status"], "ready");
    let (_, listed) = host
        .app
        .call(Method::GET, "/knowledge/documents", None)
        .await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_pdf_is_chunked_by_page_and_its_hits_cite_page_numbers() {
    let host = host().await;
    let pages: Vec<String> = (1..=12)
        .map(|n| format!("Page {n} of the manual.\nTopic number {n} is described here in detail."))
        .chain(["The warranty lasts for exactly seven years from purchase.".to_owned()])
        .collect();
    let pdf = jarvis_knowledge::testing::pdf("Owner's Manual", &pages);
    let ready = host.added("manual.pdf", &pdf, None).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["media_type"], "application/pdf");
    assert_eq!(ready["pages"], 13);
    assert_eq!(ready["title"], "Owner's Manual");
    let hits = host
        .search(&format!(
            "/knowledge/search?q={}&k=3",
            encode("warranty years")
        ))
        .await;
    assert_eq!(hits[0]["page"], 13, "{hits:?}");
    assert_eq!(hits[0]["title"], "Owner's Manual");
}

#[tokio::test]
async fn a_corrupt_or_unreadable_file_ends_as_failed_with_the_reason() {
    let host = host().await;
    let mut broken = b"%PDF-1.7\n".to_vec();
    broken.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef].repeat(64));
    let failed = host.added("broken.pdf", &broken, None).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["media_type"], "application/pdf");
    assert!(
        failed["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{failed}"
    );
    assert_eq!(failed["chunks"], 0);

    let empty = host.added("empty.txt", b"", None).await;
    assert_eq!(empty["status"], "failed");
    assert!(
        empty["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no text")),
        "{empty}"
    );

    let zip = b"PK\x03\x04 not really an archive";
    let failed = host.added("data.bin", zip, None).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("application/zip")),
        "{failed}"
    );

    let png = [
        0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 0, 0, 13, b'I', b'H',
    ];
    let skipped = host.added("photo.png", &png, None).await;
    assert_eq!(skipped["status"], "failed");
    assert!(
        skipped["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("skipped: ") && r.contains("vision")),
        "{skipped}"
    );
}

#[tokio::test]
async fn deleting_a_document_removes_its_chunks_from_every_search() {
    let host = host().await;
    let ready = host.added("guide.md", FIELD_GUIDE.as_bytes(), None).await;
    let id = ready["id"].as_str().expect("id");
    let (status, _) = host
        .app
        .call(Method::DELETE, &format!("/knowledge/documents/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = host
        .app
        .call(Method::GET, &format!("/knowledge/documents/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for mode in ["hybrid", "vector", "keyword"] {
        let hits = host
            .search(&format!("/knowledge/search?q=heron&mode={mode}"))
            .await;
        assert!(hits.is_empty(), "{mode}: {hits:?}");
    }
    let (status, _) = host
        .app
        .call(Method::DELETE, &format!("/knowledge/documents/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn search_filters_by_document_tag_and_type_and_never_shows_another_users_documents() {
    let host = host().await;
    let guide = host
        .added("guide.md", FIELD_GUIDE.as_bytes(), Some("birds"))
        .await;
    let notes = host
        .added(
            "notes.txt",
            b"Herons nest in colonies called heronries, high in tall trees.",
            Some("notes"),
        )
        .await;
    let docs = |hits: Vec<Value>| {
        let mut ids: Vec<String> = hits
            .iter()
            .map(|h| h["document"].as_str().unwrap_or("").to_owned())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let all = docs(host.search("/knowledge/search?q=heron").await);
    assert_eq!(all.len(), 2);
    let by_tag = docs(host.search("/knowledge/search?q=heron&tag=notes").await);
    assert_eq!(by_tag, vec![notes["id"].as_str().expect("id").to_owned()]);
    let by_type = docs(
        host.search("/knowledge/search?q=heron&type=text/markdown")
            .await,
    );
    assert_eq!(by_type, vec![guide["id"].as_str().expect("id").to_owned()]);
    let by_doc = docs(
        host.search(&format!(
            "/knowledge/search?q=heron&document={}",
            notes["id"].as_str().expect("id")
        ))
        .await,
    );
    assert_eq!(by_doc, vec![notes["id"].as_str().expect("id").to_owned()]);

    let other = host.app.sign_up("other@example.com").await;
    let (status, body) = host
        .app
        .call_as(
            Some(&other.access_token),
            Method::GET,
            "/knowledge/search?q=heron",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"], json!([]));
    let id = guide["id"].as_str().expect("id");
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = host
            .app
            .call_as(
                Some(&other.access_token),
                method,
                &format!("/knowledge/documents/{id}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn an_answer_cites_the_passages_it_uses_and_says_so_when_the_documents_do_not_answer() {
    let host = host().await;
    host.added("guide.md", FIELD_GUIDE.as_bytes(), None).await;
    let (status, answer) = host
        .app
        .call(
            Method::POST,
            "/knowledge/ask",
            Some(json!({"question": "How does the barn owl find rodents?"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["answered"], true);
    let citations = answer["citations"].as_array().expect("citations");
    assert!(!citations.is_empty(), "{answer}");
    let owl = citations
        .iter()
        .find(|c| {
            c["excerpt"]
                .as_str()
                .is_some_and(|e| e.contains("barn owl"))
        })
        .expect("the owl passage is cited");
    assert_eq!(owl["section"], "Field guide › Owls");
    let marker = format!("[{}]", owl["marker"]);
    assert!(
        answer["answer"]
            .as_str()
            .is_some_and(|a| a.contains(&marker))
    );

    let (status, none) = host
        .app
        .call(
            Method::POST,
            "/knowledge/ask",
            Some(json!({"question": "quantum chromodynamics lattice gauge"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{none}");
    assert_eq!(none["answered"], false, "{none}");
    assert_eq!(none["citations"], json!([]));
    assert_eq!(none["model"], Value::Null, "no model is asked");
    assert!(
        none["answer"]
            .as_str()
            .is_some_and(|a| a.contains("do not answer"))
    );
}

#[tokio::test]
async fn an_archive_entry_is_indexed_by_its_path_with_the_archive_read_scope() {
    let host = host().await;
    let entry = host.note("Boat maintenance", BOAT).await;
    let (status, doc) = host
        .app
        .call(
            Method::POST,
            "/knowledge/documents",
            Some(json!({"url": format!("/archive/{entry}"), "tags": ["boat"]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    assert_eq!(doc["archive_entry"], entry);
    let ready = host.settled(doc["id"].as_str().expect("id")).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let hits = host.search("/knowledge/search?q=antifouling").await;
    assert_eq!(hits[0]["document"], doc["id"]);

    let (status, _) = host
        .app
        .call(
            Method::POST,
            "/knowledge/documents",
            Some(json!({"url": format!("/archive/{}", uuid::Uuid::new_v4())})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_archive_indexing_on_every_entry_is_indexed_and_follows_its_changes() {
    let host = host().await;
    let (status, settings) = host
        .app
        .call(Method::GET, "/knowledge/settings", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settings, json!({"index_archive": false}));
    let earlier = host.note("Boat maintenance", BOAT).await;

    // Turning it on indexes what the archive already holds.
    let (status, set) = host.set_index_archive(true).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set, json!({"index_archive": true}));
    host.idle().await;
    assert_eq!(host.document_names().await, ["Boat maintenance"]);
    assert_eq!(host.found_in("antifouling").await, ["Boat maintenance"]);
    let (_, settings) = host
        .app
        .call(Method::GET, "/knowledge/settings", None)
        .await;
    assert_eq!(settings["index_archive"], true);

    // A new entry is indexed as it is created…
    let garden = host
        .note("Garden", "Prune the quince after flowering.")
        .await;
    host.idle().await;
    assert_eq!(host.found_in("quince").await, ["Garden"]);

    // …read again when it changes (and no longer found by what it said)…
    let (status, _) = host
        .app
        .call(
            Method::PATCH,
            &format!("/archive/{garden}"),
            Some(json!({"content": "Mulch the medlar in autumn.", "tags": ["yard"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    host.idle().await;
    assert_eq!(host.found_in("medlar").await, ["Garden"]);
    assert!(host.found_in("quince").await.is_empty());
    let by_tag = host
        .search("/knowledge/search?mode=keyword&q=medlar&tag=yard")
        .await;
    assert!(
        by_tag.is_empty(),
        "a document keeps the tags it was created with"
    );

    // …and gone when it is deleted.
    let (status, _) = host
        .app
        .call(Method::DELETE, &format!("/archive/{earlier}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    host.idle().await;
    assert_eq!(host.document_names().await, ["Garden"]);
    assert!(host.found_in("antifouling").await.is_empty());

    // Off again, a new entry is left alone.
    let (status, _) = host.set_index_archive(false).await;
    assert_eq!(status, StatusCode::OK);
    host.note("Bees", "Check the hive for swarm cells.").await;
    host.idle().await;
    assert_eq!(host.document_names().await, ["Garden"]);
}

#[tokio::test]
async fn with_archive_indexing_off_only_an_entry_indexed_by_its_path_follows_its_changes() {
    let host = host().await;
    let left = host.note("Bees", "Check the hive for swarm cells.").await;
    let indexed = host.note("Boat maintenance", BOAT).await;
    let (status, doc) = host
        .app
        .call(
            Method::POST,
            "/knowledge/documents",
            Some(json!({"url": format!("/archive/{indexed}"), "tags": ["boat"]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    host.settled(doc["id"].as_str().expect("id")).await;
    for (id, content) in [
        (&left, "Feed the colony fondant in winter."),
        (&indexed, "Replace the zinc anodes before launch."),
    ] {
        let (status, _) = host
            .app
            .call(
                Method::PATCH,
                &format!("/archive/{id}"),
                Some(json!({"content": content})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    host.idle().await;
    assert_eq!(host.document_names().await, ["Boat maintenance"]);
    assert_eq!(host.found_in("anodes").await, ["Boat maintenance"]);
    assert!(host.found_in("antifouling").await.is_empty());
    let tagged = host
        .search("/knowledge/search?mode=keyword&q=anodes&tag=boat")
        .await;
    assert_eq!(tagged.len(), 1, "the document keeps the tags it was given");
    let (_, ready) = host
        .app
        .call(
            Method::GET,
            &format!("/knowledge/documents/{}", doc["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(ready["status"], "ready", "{ready}");
}

#[tokio::test]
async fn bad_settings_are_refused_and_change_nothing() {
    let host = host().await;
    for body in [
        json!({}),
        json!({"index_archive": "yes"}),
        json!({"index_archive": null}),
        json!({"index_archive": true, "extra": 1}),
    ] {
        let (status, error) = host
            .app
            .call(Method::PUT, "/knowledge/settings", Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
    }
    let (_, settings) = host
        .app
        .call(Method::GET, "/knowledge/settings", None)
        .await;
    assert_eq!(settings["index_archive"], false);
    let (status, _) = host
        .app
        .call_as(
            Some("not-a-token"),
            Method::PUT,
            "/knowledge/settings",
            Some(json!({"index_archive": true})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_requests_are_refused_with_the_field_named_and_change_nothing() {
    let host = host().await;
    let send = |content_type: &'static str, body: Vec<u8>| {
        let request = Request::post("/knowledge/documents")
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("request");
        host.app.send(request)
    };
    let (status, body) = send("text/plain", b"hello".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, body) = send(
        "multipart/form-data; boundary=jarvis-test-boundary",
        form(&[("name", None, b"x")]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "file", "{body}");
    let (status, body) = send(
        "multipart/form-data; boundary=jarvis-test-boundary",
        form(&[("file", Some("a.txt"), b"text"), ("other", None, b"x")]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "other", "{body}");
    let (status, body) = send(
        "multipart/form-data; boundary=jarvis-test-boundary",
        form(&[
            ("file", Some("a.txt"), b"text"),
            ("tags", None, b"bad tag!"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = send(
        "multipart/form-data; boundary=jarvis-test-boundary",
        b"--jarvis-test-boundary\r\ngarbage".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send("multipart/form-data", b"x".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = send(
        "application/json",
        br#"{"url": "https://example.com/x"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "url");

    for query in [
        "/knowledge/search",
        "/knowledge/search?q=",
        "/knowledge/search?q=x&k=0",
        "/knowledge/search?q=x&k=51",
        "/knowledge/search?q=x&mode=fuzzy",
        "/knowledge/search?q=x&document=nope",
        "/knowledge/search?q=x&type=PDF",
        "/knowledge/search?q=x&tag=a%20b",
        "/knowledge/documents?limit=0",
    ] {
        let (status, body) = host.app.call(Method::GET, query, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
    }
    let (status, _) = host
        .app
        .call(
            Method::POST,
            "/knowledge/ask",
            Some(json!({"question": ""})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, listed) = host
        .app
        .call(Method::GET, "/knowledge/documents", None)
        .await;
    assert_eq!(listed["items"], json!([]), "nothing was added");
    assert!(host.knowledge.registry().media_types().count() >= 6);
}

#[tokio::test]
async fn an_unknown_credential_is_refused() {
    let host = host().await;
    let (status, _) = host
        .app
        .call_as(
            Some("not-a-token"),
            Method::GET,
            "/knowledge/documents",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_upload_over_the_configured_size_is_refused_whole() {
    let host = host_with(&[("JARVIS_KNOWLEDGE_MAX_UPLOAD_BYTES", "1000")]).await;
    let (status, body) = host.upload("big.txt", &[b'a'; 2_000], None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, small) = host.upload("small.txt", b"a small note", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{small}");
    let (_, listed) = host
        .app
        .call(Method::GET, "/knowledge/documents", None)
        .await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
}

#[cfg(feature = "aws")]
mod worker {
    use super::*;
    use aws_lambda_events::sqs::{SqsEvent, SqsMessage};

    fn message(id: &str, body: &str) -> SqsMessage {
        let mut message = SqsMessage::default();
        message.message_id = Some(id.to_owned());
        message.body = Some(body.to_owned());
        message
    }

    fn event(messages: Vec<SqsMessage>) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = messages;
        event
    }

    #[tokio::test]
    async fn the_worker_reads_each_messages_document_and_reports_only_what_to_retry() {
        let host = host_of(&[], false).await;
        let (status, pending) = host.upload("guide.md", FIELD_GUIDE.as_bytes(), None).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let queued = jarvis_knowledge::documents::queued(host.knowledge.site(), 10)
            .await
            .expect("queued");
        assert_eq!(queued.len(), 1, "the upload queued one job");
        let body = serde_json::to_string(&queued[0]).expect("job");
        let response = super::super::worker::handle(
            &host.knowledge,
            event(vec![
                message("m1", &body),
                message("m2", "not a job"),
                message(
                    "m3",
                    &json!({"user": queued[0].user, "role": "user", "document": uuid::Uuid::new_v4()})
                        .to_string(),
                ),
            ]),
        )
        .await;
        assert!(
            response.batch_item_failures.is_empty(),
            "{:?}",
            response.batch_item_failures
        );
        let ready = host.settled(pending["id"].as_str().expect("id")).await;
        assert_eq!(ready["status"], "ready");

        // A second delivery of the same message changes nothing.
        let again =
            super::super::worker::handle(&host.knowledge, event(vec![message("m1", &body)])).await;
        assert!(again.batch_item_failures.is_empty());
        let same = host.settled(pending["id"].as_str().expect("id")).await;
        assert_eq!(same["chunks"], ready["chunks"]);
    }

    #[tokio::test]
    async fn the_worker_indexes_an_archive_entry_from_the_change_the_archive_function_sends() {
        let host = host_of(&[], false).await;
        let (status, _) = host.set_index_archive(true).await;
        assert_eq!(status, StatusCode::OK);
        let entry = host.note("Boat maintenance", BOAT).await;
        let user = user_of(&host).await;
        let change = jarvis_fn_archive::Changed {
            archive_entry: entry.clone(),
            user,
            role: "user".into(),
            change: "created".into(),
        };
        let body = serde_json::to_string(&change).expect("change");
        let response =
            super::super::worker::handle(&host.knowledge, event(vec![message("m1", &body)])).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(host.found_in("antifouling").await, ["Boat maintenance"]);
    }

    #[tokio::test]
    async fn a_document_whose_embeddings_fail_is_delivered_again() {
        // The embedding alias points at a server nobody listens on.
        let host = host_of(
            &[
                ("JARVIS_AI_MODELS", "smart=scripted:echo;embed=nowhere:e5"),
                ("JARVIS_AI_SERVERS", "nowhere=http://127.0.0.1:9"),
            ],
            false,
        )
        .await;
        let (status, pending) = host.upload("guide.md", FIELD_GUIDE.as_bytes(), None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
        let queued = jarvis_knowledge::documents::queued(host.knowledge.site(), 10)
            .await
            .expect("queued");
        let body = serde_json::to_string(&queued[0]).expect("job");
        let response =
            super::super::worker::handle(&host.knowledge, event(vec![message("m1", &body)])).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["m1"]);
        let (_, doc) = host
            .app
            .call(
                Method::GET,
                &format!(
                    "/knowledge/documents/{}",
                    pending["id"].as_str().expect("id")
                ),
                None,
            )
            .await;
        assert_eq!(doc["status"], "processing", "{doc}");
        assert_eq!(doc["chunks"], 0);
    }
}

/// A provider that embeds as the scripted one does but takes 15 ms a batch (so progress
/// can be watched), transcribes every sound to [`TRANSCRIPT`] and describes every image as
/// [`CAPTION`].
struct Perceptive;

const TRANSCRIPT: &str = "The meeting moved to Thursday at noon in room four.";
const CAPTION: &str = "A red bicycle leaning against a brick wall.";

#[async_trait::async_trait]
impl jarvis_ai::Provider for Perceptive {
    fn name(&self) -> &str {
        "perceptive"
    }

    async fn stream(
        &self,
        request: jarvis_ai::ChatRequest,
    ) -> Result<jarvis_ai::EventStream, jarvis_ai::ProviderError> {
        let sees = request.messages.iter().any(|m| {
            m.parts
                .iter()
                .any(|p| matches!(p, jarvis_ai::Part::Image { .. }))
        });
        let text = if sees {
            CAPTION
        } else {
            "I cannot see anything."
        };
        let events = vec![
            jarvis_ai::Event::TextDelta { text: text.into() },
            jarvis_ai::Event::Usage(jarvis_ai::Usage {
                input_tokens: 100,
                output_tokens: 10,
            }),
            jarvis_ai::Event::Done {
                stop_reason: jarvis_ai::StopReason::EndTurn,
            },
        ];
        Ok(Box::pin(futures_util::stream::iter(events)))
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, jarvis_ai::ProviderError> {
        tokio::time::sleep(Duration::from_millis(15)).await;
        jarvis_ai::scripted::Scripted::new(Vec::new())
            .embed(texts)
            .await
    }

    async fn transcribe(
        &self,
        _audio: &jarvis_ai::Audio,
        _language: Option<&str>,
    ) -> Result<String, jarvis_ai::ProviderError> {
        Ok(TRANSCRIPT.into())
    }
}

async fn perceptive_host() -> Host {
    host_full(
        &[
            (
                "JARVIS_AI_MODELS",
                "smart=scripted:echo;embed=perceptive:e;transcribe=perceptive:w;vision=perceptive:v",
            ),
            ("JARVIS_KNOWLEDGE_VISION_MODEL", "vision"),
        ],
        vec![("perceptive".into(), Arc::new(Perceptive) as _)],
        true,
    )
    .await
}

#[tokio::test]
async fn a_two_hundred_page_pdf_is_read_with_visible_progress_and_its_chunks_cite_pages() {
    let host = perceptive_host().await;
    let pages: Vec<String> = (1..=200)
        .map(|n| {
            format!(
                "Chapter {n} of the handbook.\nThis page explains procedure code{n}x in plain words.\n\
                 Keep the page for reference; the next one continues the story."
            )
        })
        .collect();
    let pdf = jarvis_knowledge::testing::pdf("Handbook", &pages);
    let (status, doc) = host.upload("handbook.pdf", &pdf, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    let id = doc["id"].as_str().expect("id").to_owned();
    let mut seen_partway = false;
    let ready = loop {
        let (_, now) = host
            .app
            .call(Method::GET, &format!("/knowledge/documents/{id}"), None)
            .await;
        let (done, total) = (
            now["progress"]["done"].as_u64().unwrap_or(0),
            now["progress"]["total"].as_u64().unwrap_or(0),
        );
        if now["status"] == "processing" && total > 0 && done > 0 && done < total {
            seen_partway = true;
            assert_eq!(now["pages"], 200, "pages are known once the file is read");
        }
        if now["status"] == "ready" || now["status"] == "failed" {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(
        seen_partway,
        "progress was visible while the document was read"
    );
    assert_eq!(ready["pages"], 200);
    assert!(ready["chunks"].as_u64().expect("chunks") >= 200, "{ready}");
    for page in [1, 137, 200] {
        let hits = host
            .search(&format!("/knowledge/search?q=code{page}x&k=1&mode=keyword"))
            .await;
        assert_eq!(hits[0]["page"], page, "{hits:?}");
    }
}

#[tokio::test]
async fn sound_is_transcribed_and_an_image_captioned_through_the_provider_layer() {
    let host = perceptive_host().await;
    let mut wav = b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec();
    wav.extend_from_slice(&[0u8; 64]);
    let heard = host.added("meeting.wav", &wav, None).await;
    assert_eq!(heard["status"], "ready", "{heard}");
    assert_eq!(heard["media_type"], "audio/wav");
    let hits = host.search("/knowledge/search?q=Thursday%20meeting").await;
    assert!(
        hits[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("room four")),
        "{hits:?}"
    );

    let png = [
        0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 0, 0, 13, b'I', b'H',
    ];
    let seen = host.added("photo.png", &png, None).await;
    assert_eq!(seen["status"], "ready", "{seen}");
    let hits = host.search("/knowledge/search?q=bicycle").await;
    assert_eq!(hits[0]["document"], seen["id"]);
    assert_eq!(hits[0]["section"], "Image");
}

#[tokio::test]
async fn source_code_is_read_by_language_and_its_chunks_name_their_symbols() {
    let host = host().await;
    let rust = "use std::fs;\n\n/// Reads the settings file.\npub fn parse_config(path: &str) -> Vec<String> {\n    let text = fs::read_to_string(path).unwrap_or_default();\n    text.lines().map(str::to_owned).collect()\n}\n\npub struct Settings {\n    names: Vec<String>,\n}\n";
    let ready = host.added("settings.txt", rust.as_bytes(), None).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(
        ready["media_type"], "text/x-rust",
        "the content, not the name"
    );
    let hits = host
        .search("/knowledge/search?q=parse_config&mode=keyword")
        .await;
    assert_eq!(
        hits[0]["section"],
        "pub fn parse_config(path: &str) -> Vec<String>"
    );
}

/// The user `host`'s archive writes belong to (its signed-in caller).
async fn user_of(host: &Host) -> String {
    let changes = host.app.state.store.changes(0, 1_000).await.expect("feed");
    changes
        .iter()
        .find_map(|c| {
            c.key
                .partition()
                .strip_prefix("archive#")
                .map(str::to_owned)
        })
        .expect("an archive write")
}

/// Copies `from`'s record at `(partition, sort)` into `to`'s store under `to`'s user, as
/// sync would bring it (with nothing of `from`'s replica-local progress, files or index).
async fn sync_record(from: &Host, to: &Host, partition: &str, sort: &str) {
    let (a, b) = (user_of(from).await, user_of(to).await);
    let key = jarvis_store::Key::new(format!("{partition}#{a}"), sort).expect("key");
    let record = from
        .app
        .state
        .store
        .read::<jarvis_crdt::Record>(&key)
        .await
        .expect("read")
        .expect("there")
        .state;
    let key = jarvis_store::Key::new(format!("{partition}#{b}"), sort).expect("key");
    to.app.state.store.merge(&key, record).await.expect("merge");
}

#[tokio::test]
async fn a_document_that_came_by_sync_is_read_on_this_deployment_when_first_listed() {
    let (here, peer) = (host().await, host().await);
    for host in [&here, &peer] {
        host.note("Start", "A first note.").await;
    }
    let entry = peer.note("Boat maintenance", BOAT).await;
    let (_, from_archive) = peer
        .app
        .call(
            Method::POST,
            "/knowledge/documents",
            Some(json!({"url": format!("/archive/{entry}")})),
        )
        .await;
    let (status, uploaded) = peer.upload("owls.md", FIELD_GUIDE.as_bytes(), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{uploaded}");
    let (doc, file) = (
        from_archive["id"].as_str().expect("id").to_owned(),
        uploaded["id"].as_str().expect("id").to_owned(),
    );
    assert_eq!(peer.settled(&doc).await["status"], "ready");

    // The entry and both documents' records arrive here; their chunks and files do not.
    sync_record(&peer, &here, "archive", &format!("entry#{entry}")).await;
    sync_record(&peer, &here, "knowledge", &format!("doc#{doc}")).await;
    sync_record(&peer, &here, "knowledge", &format!("doc#{file}")).await;
    assert!(
        here.search("/knowledge/search?q=antifouling")
            .await
            .is_empty()
    );

    let (status, listed) = here
        .app
        .call(Method::GET, "/knowledge/documents", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["items"].as_array().expect("items").len(), 2);
    let ready = here.settled(&doc).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(ready["chunks"].as_u64().expect("chunks") >= 1);
    let hits = here.search("/knowledge/search?q=antifouling").await;
    assert_eq!(hits[0]["document"], doc.as_str());
    // An upload's file stays where it was uploaded: the record says why it is not here.
    let failed = here.settled(&file).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("another deployment")),
        "{failed}"
    );
    // Listing again reads nothing again: what this deployment has read stays as it is.
    let (_, again) = here
        .app
        .call(Method::GET, "/knowledge/documents", None)
        .await;
    assert_eq!(listed_status(&again, &doc), "ready");
    assert_eq!(listed_status(&again, &file), "failed");
}

fn listed_status(listing: &Value, id: &str) -> Value {
    listing["items"]
        .as_array()
        .and_then(|items| items.iter().find(|d| d["id"] == id))
        .map_or(Value::Null, |d| d["status"].clone())
}
