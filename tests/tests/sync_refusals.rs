//! Changes a replica must not or cannot take: a stamp far ahead of its clock, a change its
//! store refuses. Each is quarantined (listed for admins, counted in `/health`), and sync
//! goes on past it.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jarvis_crdt::hlc::system_time_ms;
use jarvis_crdt::{Codec, GCounter, LwwRegister, ReplicaId, Timestamp};
use jarvis_fn_auth::testing::TestApp;
use jarvis_store::{Key, StoreError};
use jarvis_tests::all_routes;
use jarvis_tests::hooked::{Hooked, Operation};
use serde_json::{Value, json};

const PEER_TOKEN: &str = "peer-token-for-refusals-0123";

/// A peer serving `changes` once (then nothing new).
async fn stub_peer(changes: Vec<Value>) -> String {
    let last = changes.last().map_or(0, |c| c["seq"].as_u64().unwrap_or(0));
    let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let router = axum::Router::new().route(
        "/sync/changes",
        axum::routing::get(move || {
            let changes = changes.clone();
            let served = Arc::clone(&served);
            async move {
                let first = !served.swap(true, std::sync::atomic::Ordering::SeqCst);
                axum::Json(json!({
                    "replica_id": "peer",
                    "changes": if first { changes } else { Vec::new() },
                    "next_cursor": last.to_string(),
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn change(seq: u64, partition: &str, sort: &str, state: &impl Codec) -> Value {
    json!({
        "seq": seq, "partition": partition, "sort": sort, "kind": "state",
        "payload": STANDARD.encode(state.encode().expect("encode")),
    })
}

#[tokio::test]
async fn far_future_and_poison_changes_are_quarantined_and_sync_goes_on() {
    let peer_replica = ReplicaId::from_name("peer");
    let two_hours_ahead = system_time_ms() + 2 * 3600 * 1000;
    let far = LwwRegister::with(
        Timestamp::new(two_hours_ahead, 0, peer_replica),
        "{\"role\":\"admin\"}".to_owned(),
    );
    let mut counter = GCounter::new();
    let counted = counter.increment(peer_replica, 4);
    let peer = stub_peer(vec![
        change(1, "crdt#u", "register#far", &far),
        change(2, "poison#p", "counter#big", &counted),
        change(3, "crdt#u", "counter#ok", &counted),
    ])
    .await;
    // This store cannot take the poison change, as DynamoDB cannot take an item over 400 KB.
    let hook = |operation: Operation, partition: &str| match (operation, partition) {
        (Operation::PutItem, "poison#p") => Err(StoreError::TooLarge {
            size: 500_000,
            limit: 400_000,
        }),
        _ => Ok(()),
    };
    let app = TestApp::with_store_layer(
        all_routes(),
        &[("JARVIS_PEERS", &peer), ("JARVIS_SYNC_TOKEN", PEER_TOKEN)],
        move |inner| Arc::new(Hooked { inner, hook }),
    )
    .await;
    let admin = app.sign_up("admin@example.com").await;

    let (status, report) = app
        .call_as(Some(PEER_TOKEN), Method::POST, "/sync/run", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let result = &report["results"][0];
    assert_eq!(result["ok"], true, "{report}");
    assert_eq!(result["merged"], 1, "{report}");
    assert_eq!(result["rejected"], 2, "{report}");
    assert_eq!(result["cursor"], "3", "the cursor moved past both");

    let store = app.state.store.as_ref();
    let far_key = Key::new("crdt#u", "register#far").expect("key");
    assert!(
        store.get(&far_key).await.expect("get").is_none(),
        "not merged"
    );
    assert!(
        app.state.clock.now().wall_ms < two_hours_ahead,
        "this replica's clock did not adopt the stamp"
    );
    let ok_key = Key::new("crdt#u", "counter#ok").expect("key");
    assert!(
        store.get(&ok_key).await.expect("get").is_some(),
        "the next change went in"
    );

    let (status, letters) = app
        .call_as(
            Some(&admin.access_token),
            Method::GET,
            "/sync/dead-letters",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{letters}");
    let items = letters["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{letters}");
    let far_letter = items.iter().find(|l| l["seq"] == 1).expect("far");
    assert_eq!(far_letter["peer"], peer.as_str());
    assert_eq!(far_letter["sort"], "register#far");
    assert!(
        far_letter["reason"]
            .as_str()
            .is_some_and(|r| r.contains("ahead"))
    );
    let poison = items.iter().find(|l| l["seq"] == 2).expect("poison");
    assert!(
        poison["reason"]
            .as_str()
            .is_some_and(|r| r.contains("exceeds"))
    );

    let (_, health) = app
        .call_as(Some(&admin.access_token), Method::GET, "/health", None)
        .await;
    let sync = health["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["name"] == "sync")
        .expect("sync component")
        .clone();
    assert_eq!(sync["status"], "degraded", "{health}");
    assert_eq!(sync["details"]["dead_letters"], 2, "{health}");

    // A later round does not re-quarantine anything.
    let (_, again) = app
        .call_as(Some(PEER_TOKEN), Method::POST, "/sync/run", None)
        .await;
    assert_eq!(again["results"][0]["rejected"], 0, "{again}");
}

#[tokio::test]
async fn a_user_key_cannot_list_dead_letters() {
    let app = TestApp::new(all_routes()).await;
    app.sign_up("admin@example.com").await;
    let user = app.sign_up("user@example.com").await;
    let (status, _) = app
        .call_as(
            Some(&user.access_token),
            Method::GET,
            "/sync/dead-letters",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
