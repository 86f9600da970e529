//! The ids of conversations, messages and streams, and the order they sort in.
//!
//! A conversation id sorts **newest first**: its first 48 bits are the creation time in
//! milliseconds subtracted from the largest 48-bit number, the rest random (a UUIDv8), so a
//! user's conversations list newest first by sort key alone. A message id is a UUIDv7
//! (time, then random): messages sort oldest first, and two replicas writing at once keep
//! both messages, in the same order everywhere. Stream ids are random (UUIDv4).

use uuid::Uuid;

const MAX_MS: u64 = (1 << 48) - 1;

/// A new conversation id for a conversation created at `now_ms` (ms since the epoch).
pub fn conversation_id(now_ms: u64) -> Uuid {
    let inverted = MAX_MS - now_ms.min(MAX_MS);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&inverted.to_be_bytes()[2..]);
    for byte in &mut bytes[6..] {
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
        let older = conversation_id(1_700_000_000_000);
        let newer = conversation_id(1_700_000_000_001);
        assert!(newer.hyphenated().to_string() < older.hyphenated().to_string());
        assert_eq!(conversation_created_ms(&older), 1_700_000_000_000);
    }

    #[test]
    fn message_ids_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..1000).map(|_| message_id().to_string()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
