//! The ids of conversations, messages and streams, and the order they sort in.
//!
//! A conversation id sorts **newest first**: its first 48 bits are the creation time in
//! milliseconds subtracted from the largest 48-bit number, the rest random (a UUIDv8), so a
//! user's conversations list newest first by sort key alone. A message id is a UUIDv7
//! (time, then random): messages sort oldest first, and two replicas writing at once keep
//! both messages, in the same order everywhere. Stream ids are random (UUIDv4).

use uuid::Uuid;

const MAX_MS: u64 = (1 << 48) - 1;

/// Largest logical count an id orders by: 12 bits.
const MAX_LOGICAL: u32 = (1 << 12) - 1;

/// A new conversation id for a conversation created at `now` (its HLC stamp): the
/// inverted milliseconds, then the inverted logical count in the 12 bits after the version
/// nibble, so two conversations created in the same millisecond also list newest first.
pub fn conversation_id(now: &jarvis_crdt::Timestamp) -> Uuid {
    let inverted = MAX_MS - now.wall_ms.min(MAX_MS);
    let logical = MAX_LOGICAL - now.logical.min(MAX_LOGICAL);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&inverted.to_be_bytes()[2..]);
    // `new_v8` keeps the low nibble of byte 6 and all of byte 7.
    bytes[6] = u8::try_from(logical >> 8).unwrap_or(0x0F);
    bytes[7] = u8::try_from(logical & 0xFF).unwrap_or(0xFF);
    for byte in &mut bytes[8..] {
        *byte = fastrand::u8(..);
    }
    Uuid::new_v8(bytes)
}

/// When the conversation `id` was created (ms since the epoch), for ids made by
/// [`conversation_id`].
pub fn conversation_created_ms(id: &Uuid) -> u64 {
    let bytes = id.as_bytes();
    let mut high = [0u8; 8];
    high[2..].copy_from_slice(&bytes[..6]);
    MAX_MS - u64::from_be_bytes(high)
}

/// A new message id: later ids of this process sort after earlier ones.
pub fn message_id() -> Uuid {
    Uuid::now_v7()
}

/// A new stream id.
pub fn stream_id() -> Uuid {
    Uuid::new_v4()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_conversations_sort_first_and_keep_their_creation_time() {
        let at = |wall_ms, logical| {
            conversation_id(&jarvis_crdt::Timestamp::new(
                wall_ms,
                logical,
                jarvis_crdt::ReplicaId::from_name("test"),
            ))
            .hyphenated()
            .to_string()
        };
        let older = at(1_700_000_000_000, 0);
        assert!(at(1_700_000_000_001, 0) < older);
        // The same millisecond: the later stamp still sorts first, every time.
        for _ in 0..100 {
            assert!(at(1_700_000_000_000, 1) < older);
        }
        let older = Uuid::parse_str(&older).expect("uuid");
        assert_eq!(conversation_created_ms(&older), 1_700_000_000_000);
        assert_eq!(older.get_version_num(), 8);
    }

    #[test]
    fn message_ids_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..1000).map(|_| message_id().to_string()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
