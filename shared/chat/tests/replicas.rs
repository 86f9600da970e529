//! Two replicas adding messages to one conversation while partitioned both keep every
//! message, and show them in the same order once they have synced; the stored form of a
//! message is pinned by a golden file.

use std::sync::Arc;

use jarvis_ai::service::Site;
use jarvis_chat::conversation::{
    self, ChatMessage, MessageMeta, NewConversation, Speaker, Status, UsedMemory,
};
use jarvis_crdt::ReplicaId;
use jarvis_store::Store;
use jarvis_store::clock::Clock;
use uuid::Uuid;

async fn replica(dir: &tempfile::TempDir, name: &str) -> Site {
    let store: Arc<dyn Store> = Arc::new(
        jarvis_store::libsql::LibsqlStore::open(&dir.path().join(format!("{name}.db")))
            .await
            .expect("store"),
    );
    let replica = ReplicaId::from_name(name);
    Site {
        store,
        replica,
        clock: Arc::new(Clock::new(replica)),
    }
}

/// Everything `from` changed, merged into `to`, as a sync round does.
async fn pull(from: &Site, to: &Site) {
    for change in from.store.changes(0, 100_000).await.expect("changes") {
        jarvis_replication::merge_encoded(to.store.as_ref(), &change.key, change.payload.bytes())
            .await
            .expect("merge");
    }
}

fn said(text: &str) -> ChatMessage {
    ChatMessage {
        id: jarvis_chat::ids::message_id(),
        speaker: Speaker::User,
        content: text.to_owned(),
        created_ms: 1,
        meta: MessageMeta::default(),
    }
}

async fn contents(site: &Site, user: &str, id: &Uuid) -> Vec<String> {
    conversation::history(site, user, id, None)
        .await
        .expect("history")
        .into_iter()
        .map(|m| m.content)
        .collect()
}

#[tokio::test]
async fn partitioned_replicas_both_keep_their_messages_and_agree_on_the_order_after_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (replica(&dir, "a").await, replica(&dir, "b").await);
    let user = "0123456789abcdef0123456789abcdef";
    let started = conversation::create(&a, user, NewConversation::default())
        .await
        .expect("create");
    pull(&a, &b).await;
    for i in 0..5 {
        let on_a = said(&format!("laptop {i}"));
        conversation::put_message(&a, user, &started.id, &on_a)
            .await
            .expect("a");
        let on_b = said(&format!("phone {i}"));
        conversation::put_message(&b, user, &started.id, &on_b)
            .await
            .expect("b");
    }
    let change = conversation::Change {
        title: Some(Some("From the phone".into())),
        ..Default::default()
    };
    conversation::update(&b, user, &started.id, &change)
        .await
        .expect("title");
    pull(&a, &b).await;
    pull(&b, &a).await;
    let (on_a, on_b) = (
        contents(&a, user, &started.id).await,
        contents(&b, user, &started.id).await,
    );
    assert_eq!(on_a.len(), 10, "{on_a:?}");
    assert_eq!(on_a, on_b, "the same order on both");
    let seen = conversation::get(&a, user, &started.id).await.expect("get");
    assert_eq!(seen.title.as_deref(), Some("From the phone"));
}

#[tokio::test]
async fn a_deleted_conversation_stays_deleted_everywhere_with_its_messages_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (replica(&dir, "a").await, replica(&dir, "b").await);
    let user = "0123456789abcdef0123456789abcdef";
    let started = conversation::create(&a, user, NewConversation::default())
        .await
        .expect("create");
    conversation::put_message(&a, user, &started.id, &said("private"))
        .await
        .expect("put");
    pull(&a, &b).await;
    conversation::delete(&b, user, &started.id)
        .await
        .expect("delete");
    pull(&b, &a).await;
    assert!(conversation::get(&a, user, &started.id).await.is_err());
    assert!(contents(&a, user, &started.id).await.is_empty());
}

/// The fields a message is stored as: what every replica and every later build reads.
#[test]
fn a_message_is_stored_in_its_golden_form() {
    let id = Uuid::parse_str("01936b2e-8f00-7000-8000-000000000001").expect("id");
    let message = ChatMessage {
        id,
        speaker: Speaker::Assistant,
        content: "Oslo is lovely in May.".into(),
        created_ms: 1_733_000_000_000,
        meta: MessageMeta {
            model: Some("local:smollm2-135m-instruct".into()),
            status: Some(Status::Complete),
            stop_reason: Some("end_turn".into()),
            stream_id: Some(Uuid::parse_str("5b1c1d3e-0000-4000-8000-000000000002").expect("id")),
            usage: Some((120, 7)),
            cost_micros: 0,
            memories: vec![UsedMemory {
                id: Uuid::parse_str("01936b2e-8f00-7000-8000-000000000003").expect("id"),
                text: "The user plans a trip to Oslo.".into(),
                score: 0.5,
            }],
            error: None,
            attachments: vec![jarvis_chat::attachment::Attachment {
                id: Uuid::parse_str("01936b2e-8f00-7000-8000-000000000004").expect("id"),
                media_type: "image/png".into(),
                bytes: 2_048,
            }],
            sources: vec![jarvis_chat::conversation::GivenSource {
                marker: 1,
                document: Uuid::parse_str("5b1c1d3e-0000-8000-8000-000000000005").expect("id"),
                name: "oslo-guide.pdf".into(),
                title: Some("Oslo".into()),
                page: Some(12),
                section: Some("Seasons".into()),
                text: "May brings long, light evenings.".into(),
            }],
        },
    };
    let fields = serde_json::to_string_pretty(&message.fields().expect("fields")).expect("json");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/message.json");
    if std::env::var_os("JARVIS_BLESS").is_some() {
        std::fs::write(&path, format!("{fields}\n")).expect("bless");
    }
    let golden = std::fs::read_to_string(&path).expect("golden file");
    assert_eq!(fields.trim_end(), golden.trim_end());
    let record = {
        let mut record = jarvis_crdt::Record::new();
        let stamp = Clock::new(ReplicaId::from_name("g")).now();
        record.create(
            ReplicaId::from_name("g"),
            stamp,
            message.fields().expect("fields"),
        );
        record
    };
    assert_eq!(
        ChatMessage::from_record(id, &record).expect("decodes"),
        Some(message)
    );
}
