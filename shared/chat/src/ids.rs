//! The ids of conversations, messages and streams, and the order they sort in.
//!
//! A conversation id sorts **newest first**: its first 48 bits are the creation time in
//! milliseconds subtracted from the largest 48-bit number, the rest random (a UUIDv8), so a
//! user's conversations list newest first by sort key alone. A message id is a UUIDv7
//! (time, then random): messages sort oldest first, and two replicas writing at once keep
//! both messages, in the same order everywhere. Stream ids are random (UUIDv4).

use uuid::Uuid;

/// A new conversation id for a conversation created at `now` (its HLC stamp): newest first
/// ([`jarvis_store::ids::newest_first`]).
pub fn conversation_id(now: &jarvis_crdt::Timestamp) -> Uuid {
    jarvis_store::ids::newest_first(now)
}

/// When the conversation `id` was created (ms since the epoch), for ids made by
/// [`conversation_id`].
pub fn conversation_created_ms(id: &Uuid) -> u64 {
    jarvis_store::ids::newest_first_ms(id)
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
    fn message_ids_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..1000).map(|_| message_id().to_string()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
