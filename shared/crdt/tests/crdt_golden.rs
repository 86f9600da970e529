//! Golden files pin both encodings of every CRDT type: a change to the stored bytes or to
//! the JSON form fails here, and old files must keep decoding to the same states.
//!
//! After an intended format change (with a new format version), regenerate with
//! `JARVIS_BLESS=1 cargo test -p jarvis-crdt --test crdt_golden`.

use std::path::PathBuf;

use jarvis_crdt::{
    BoundedCounter, Codec, Crdt, Entity, GCounter, GSet, LwwMap, LwwRegister, MvRegister, OrSet,
    PNCounter, Record, ReplicaId, Timestamp,
};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn eu() -> ReplicaId {
    ReplicaId::from_name("eu-west-1")
}

fn laptop() -> ReplicaId {
    ReplicaId::from_name("laptop")
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(32)
        .map(hex::encode)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The bytes of a golden `.hex` file.
fn unhex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .flat_map(|line| hex::decode(line).expect("hex"))
        .collect()
}

fn check<T: Codec + PartialEq + std::fmt::Debug>(name: &str, state: &T) {
    let bin_path = golden_dir().join(format!("{name}.hex"));
    let json_path = golden_dir().join(format!("{name}.json"));
    let bytes = state.encode().expect("encode");
    let json = serde_json::to_string_pretty(&state.to_json().expect("json")).expect("print") + "\n";
    if std::env::var_os("JARVIS_BLESS").is_some() {
        std::fs::write(&bin_path, hex(&bytes)).expect("write golden");
        std::fs::write(&json_path, &json).expect("write golden");
    }
    let golden_hex = std::fs::read_to_string(&bin_path)
        .unwrap_or_else(|_| panic!("missing {}; run with JARVIS_BLESS=1", bin_path.display()));
    let golden_json = std::fs::read_to_string(&json_path)
        .unwrap_or_else(|_| panic!("missing {}; run with JARVIS_BLESS=1", json_path.display()));
    assert_eq!(hex(&bytes), golden_hex, "binary encoding of {name} changed");
    assert_eq!(json, golden_json, "JSON form of {name} changed");

    let stored = unhex(&golden_hex);
    assert_eq!(&T::decode(&stored).expect("golden bytes decode"), state);
    let stored_json: serde_json::Value = serde_json::from_str(&golden_json).expect("json");
    assert_eq!(
        &T::from_json(stored_json).expect("golden JSON decodes"),
        state
    );
}

#[test]
fn g_counter_encodings_are_stable() {
    let mut counter = GCounter::new();
    counter.increment(eu(), 3);
    counter.increment(laptop(), 40);
    check("g_counter", &counter);
}

#[test]
fn pn_counter_encodings_are_stable() {
    let mut counter = PNCounter::new();
    counter.increment(eu(), 10);
    counter.decrement(laptop(), 4);
    check("pn_counter", &counter);
}

#[test]
fn bounded_counter_encodings_are_stable() {
    let mut counter = BoundedCounter::new();
    counter.grant(eu(), 1_000);
    counter
        .transfer(eu(), laptop(), 300)
        .expect("eu holds 1000");
    counter.spend(eu(), 250).expect("eu holds 700");
    counter.release(eu(), 50).expect("eu spent 250");
    check("bounded_counter", &counter);
}

#[test]
fn g_set_encodings_are_stable() {
    let set: GSet<String> = ["beta", "alpha"].into_iter().map(String::from).collect();
    check("g_set", &set);
}

#[test]
fn lww_register_encodings_are_stable() {
    let register = LwwRegister::with(
        Timestamp::new(1_763_700_000_000, 2, laptop()),
        "dark-mode".to_owned(),
    );
    check("lww_register", &register);
}

#[test]
fn mv_register_encodings_are_stable() {
    let mut a = MvRegister::new();
    let mut b = MvRegister::new();
    a.write(eu(), "blue".to_owned());
    b.write(laptop(), "green".to_owned());
    a.join(b);
    check("mv_register", &a);
}

#[test]
fn or_set_encodings_are_stable() {
    let mut a = OrSet::new();
    for id in ["note-1", "note-2", "note-3"] {
        a.add(eu(), id.to_owned());
    }
    a.remove(&"note-2".to_owned());
    let mut b = OrSet::new();
    b.add(laptop(), "note-4".to_owned());
    b.add(laptop(), "note-1".to_owned());
    a.join(b);
    check("or_set", &a);
}

#[test]
fn lww_map_encodings_are_stable() {
    let mut map = LwwMap::new();
    map.set(
        "title".to_owned(),
        Timestamp::new(1_763_700_000_000, 0, eu()),
        "Groceries".to_owned(),
    );
    map.set(
        "kind".to_owned(),
        Timestamp::new(1_763_700_000_001, 0, eu()),
        "note".to_owned(),
    );
    map.remove(
        "draft".to_owned(),
        Timestamp::new(1_763_700_000_002, 0, laptop()),
    );
    check("lww_map", &map);
}

/// The record of the golden files: created, retitled here while deleted elsewhere.
fn deleted_record() -> Record {
    let mut record = Record::new();
    record.create(
        eu(),
        Timestamp::new(1_763_700_000_000, 0, eu()),
        [
            ("kind".to_owned(), "note".to_owned()),
            ("title".to_owned(), "Groceries".to_owned()),
        ],
    );
    let mut elsewhere = record.clone();
    record.set(
        "title".to_owned(),
        Timestamp::new(1_763_700_000_500, 0, eu()),
        "Groceries for Sunday".to_owned(),
    );
    elsewhere.delete(Timestamp::new(1_763_700_000_400, 0, eu()));
    record.join(elsewhere);
    record
}

#[test]
fn record_encodings_are_stable() {
    let mut record = deleted_record();
    let mut elsewhere = Record::new();
    elsewhere.create(
        laptop(),
        Timestamp::new(1_763_700_000_600, 0, laptop()),
        [("kind".to_owned(), "link".to_owned())],
    );
    elsewhere.replace_set(laptop(), "tags", ["home".to_owned(), "food".to_owned()]);
    elsewhere.replace_set(laptop(), "tags", ["food".to_owned(), "week".to_owned()]);
    record.join(elsewhere);
    check("record", &record);
}

/// Records stored before named sets existed (type tag 8) keep decoding, to the same state
/// without sets, from their bytes and from their JSON.
#[test]
fn records_written_before_named_sets_still_decode() {
    let state = deleted_record();
    let hex = std::fs::read_to_string(golden_dir().join("record_v1.hex")).expect("golden");
    let bytes = unhex(&hex);
    assert_eq!(bytes[2], 8, "the old type tag");
    assert_eq!(Record::decode(&bytes).expect("old bytes decode"), state);
    let json = std::fs::read_to_string(golden_dir().join("record_v1.json")).expect("golden");
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(Record::from_json(json).expect("old JSON decodes"), state);
}

#[test]
fn entity_encodings_are_stable() {
    let mut account = Entity::new();
    account.set(
        "email",
        Timestamp::new(1_763_700_000_000, 0, eu()),
        "ada@example.com",
    );
    account.set("role", Timestamp::new(1_763_700_000_000, 1, eu()), "admin");
    account.toggle("disabled", true);
    account.raise("totp_step", 58_790_000);
    account.mark("recovery_used:9f86d081");
    let mut elsewhere = account.clone();
    elsewhere.toggle("disabled", false);
    elsewhere.set(
        "role",
        Timestamp::new(1_763_700_000_900, 0, laptop()),
        "user",
    );
    account.join(elsewhere);
    check("entity", &account);
}
