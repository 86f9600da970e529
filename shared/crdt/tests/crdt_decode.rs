//! Decoding untrusted input never panics: arbitrary bytes (with and without a valid header)
//! and arbitrary JSON either decode into a valid state or fail with an error.

use jarvis_crdt::codec::{FORMAT_VERSION, MAGIC, TypeTag};
use jarvis_crdt::{
    BoundedCounter, Codec, Entity, GCounter, GSet, LwwMap, LwwRegister, MvRegister, OrSet,
    PNCounter, Record, Validate,
};
use proptest::prelude::*;

fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<u64>().prop_map(|n| serde_json::json!(n)),
        "[0-9a-f]{0,16}".prop_map(serde_json::Value::String),
        ".{0,8}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("vv".to_owned()),
                    Just("cloud".to_owned()),
                    Just("entries".to_owned()),
                    Just("element".to_owned()),
                    Just("dots".to_owned()),
                    Just("replica".to_owned()),
                    Just("counter".to_owned()),
                    Just("context".to_owned()),
                    Just("values".to_owned()),
                    Just("dot".to_owned()),
                    Just("value".to_owned()),
                    Just("stamp".to_owned()),
                    Just("p".to_owned()),
                    Just("n".to_owned()),
                    "[0-9a-f]{16}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn header(tag: TypeTag) -> Vec<u8> {
    vec![MAGIC, FORMAT_VERSION, tag as u8, 0]
}

/// Decodes `bytes` and `json` as `T`; whatever decodes must be valid.
fn never_panics<T: Codec + Validate>(bytes: &[u8], json: &serde_json::Value) {
    if let Ok(state) = T::decode(bytes) {
        assert!(state.validate().is_ok());
    }
    let mut with_header = header(T::TAG);
    with_header.extend_from_slice(bytes);
    if let Ok(state) = T::decode(&with_header) {
        assert!(state.validate().is_ok());
        // Whatever decodes re-encodes to bytes that decode to the same state.
        let again = state.encode().expect("re-encode");
        assert!(T::decode(&again).is_ok());
    }
    if let Ok(state) = T::from_json(json.clone()) {
        assert!(state.validate().is_ok());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn decoding_arbitrary_input_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        json in arbitrary_json(),
    ) {
        never_panics::<GCounter>(&bytes, &json);
        never_panics::<PNCounter>(&bytes, &json);
        never_panics::<BoundedCounter>(&bytes, &json);
        never_panics::<GSet<String>>(&bytes, &json);
        never_panics::<LwwRegister<String>>(&bytes, &json);
        never_panics::<MvRegister<String>>(&bytes, &json);
        never_panics::<OrSet<String>>(&bytes, &json);
        never_panics::<LwwMap<String, String>>(&bytes, &json);
        never_panics::<Record>(&bytes, &json);
        never_panics::<Entity>(&bytes, &json);
    }

    /// Flipping bytes of a real encoding yields a valid state or an error, never a panic.
    #[test]
    fn corrupting_a_real_encoding_never_panics(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut set = OrSet::new();
        let a = jarvis_crdt::ReplicaId::from_name("a");
        let b = jarvis_crdt::ReplicaId::from_name("b");
        for i in 0..20 {
            set.add(if i % 3 == 0 { a } else { b }, format!("element-{i:03}"));
        }
        set.remove(&"element-004".to_owned());
        let mut bytes = set.encode().expect("encode");
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok(decoded) = OrSet::<String>::decode(&bytes) {
            prop_assert!(decoded.validate().is_ok());
        }
    }
}

#[test]
fn a_huge_declared_length_is_an_error_not_an_allocation() {
    // Header, then a varint length of about 2^63 for the first sequence.
    let mut bytes = header(TypeTag::OrSet);
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert!(OrSet::<String>::decode(&bytes).is_err());
    let mut bytes = header(TypeTag::GCounter);
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(GCounter::decode(&bytes).is_err());
}
