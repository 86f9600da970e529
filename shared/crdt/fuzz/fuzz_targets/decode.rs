//! Feeds arbitrary bytes to every CRDT binary decoder. A decoder may refuse the input but
//! must never panic, and whatever it accepts must be a valid state that re-encodes and
//! decodes to itself.
#![no_main]

use jarvis_crdt::{
    Codec, GCounter, GSet, LwwMap, LwwRegister, MvRegister, OrSet, PNCounter, Record, Validate,
};
use libfuzzer_sys::fuzz_target;

fn check<T: Codec + Validate + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    if let Ok(state) = T::decode(bytes) {
        assert!(state.validate().is_ok());
        let again = state.encode().expect("a decoded state re-encodes");
        assert_eq!(T::decode(&again).expect("re-encoded bytes decode"), state);
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the type so one corpus covers every decoder; the rest is given
    // behind a valid header, and also raw.
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let tag = selector % 8 + 1;
    let mut framed = vec![0x4A, 1, tag, 0];
    framed.extend_from_slice(body);
    for bytes in [&framed[..], data] {
        match tag {
            1 => check::<GCounter>(bytes),
            2 => check::<PNCounter>(bytes),
            3 => check::<GSet<String>>(bytes),
            4 => check::<LwwRegister<String>>(bytes),
            5 => check::<MvRegister<String>>(bytes),
            6 => check::<OrSet<String>>(bytes),
            7 => check::<LwwMap<String, String>>(bytes),
            _ => check::<Record>(bytes),
        }
    }
});
