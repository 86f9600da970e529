//! Ids that make sort keys list newest first.
//!
//! A [`newest_first`] id is a UUIDv8 whose first 48 bits are the creation time in
//! milliseconds subtracted from the largest 48-bit number, then the inverted logical count
//! of the hybrid logical clock, the rest random: a partition of documents sorted under such
//! ids lists newest first by sort key alone, and two made in the same millisecond on one
//! replica still do.

use uuid::Uuid;

const MAX_MS: u64 = (1 << 48) - 1;

/// Largest logical count an id orders by: 12 bits.
const MAX_LOGICAL: u32 = (1 << 12) - 1;

/// A new id for something created at `now` (its HLC stamp) that lists before everything
/// created earlier.
pub fn newest_first(now: &jarvis_crdt::Timestamp) -> Uuid {
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

/// A [`newest_first`] id for something made at `wall_ms` whose random part is taken from
/// `seed`: the same seed gives the same id, so work retried after a crash names what it
/// makes as the first attempt did.
pub fn newest_first_derived(wall_ms: u64, seed: &[u8]) -> Uuid {
    let inverted = MAX_MS - wall_ms.min(MAX_MS);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, seed);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&inverted.to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&digest.as_ref()[..10]);
    Uuid::new_v8(bytes)
}

/// A UUIDv7 (oldest first) for something made at `wall_ms` whose random part is taken from
/// `seed`: deterministic, as [`newest_first_derived`].
pub fn oldest_first_derived(wall_ms: u64, seed: &[u8]) -> Uuid {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, seed);
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest.as_ref()[..10]);
    uuid::Builder::from_unix_timestamp_millis(wall_ms, &random).into_uuid()
}

/// When the id was made (ms since the epoch), for ids made by [`newest_first`].
pub fn newest_first_ms(id: &Uuid) -> u64 {
    let bytes = id.as_bytes();
    let mut high = [0u8; 8];
    high[2..].copy_from_slice(&bytes[..6]);
    MAX_MS - u64::from_be_bytes(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_ids_sort_first_and_keep_their_creation_time() {
        let at = |wall_ms, logical| {
            newest_first(&jarvis_crdt::Timestamp::new(
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
        assert_eq!(newest_first_ms(&older), 1_700_000_000_000);
        assert_eq!(older.get_version_num(), 8);
    }

    #[test]
    fn derived_ids_are_the_same_for_the_same_seed_and_keep_their_order() {
        let a = newest_first_derived(1_700_000_000_000, b"run 1");
        assert_eq!(a, newest_first_derived(1_700_000_000_000, b"run 1"));
        assert_ne!(a, newest_first_derived(1_700_000_000_000, b"run 2"));
        assert_eq!(newest_first_ms(&a), 1_700_000_000_000);
        assert!(newest_first_derived(1_700_000_000_001, b"run 1") < a);
        let b = oldest_first_derived(1_700_000_000_000, b"step 3");
        assert_eq!(b, oldest_first_derived(1_700_000_000_000, b"step 3"));
        assert_eq!(b.get_version_num(), 7);
        assert!(oldest_first_derived(1_700_000_000_001, b"step 3") > b);
    }
}
