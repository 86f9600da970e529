//! Encodings of CRDT states: a compact binary form for storage and sync, and JSON for the API.
//!
//! Binary layout: a 4-byte header — `0x4A` (`J`), the format version, the type tag, a flags
//! byte (0; reserved for compression and future options) — then the state in
//! [postcard](https://docs.rs/postcard) (varint integers, length-prefixed sequences). A
//! reader refuses versions and flags it does not know instead of guessing, so the format can
//! evolve: a new version gets a new number and old readers say so.
//!
//! Decoding never panics and never trusts its input: malformed bytes and states that break
//! an invariant (see [`super::Validate`]) are a [`DecodeError`].

use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    BoundedCounter, Entity, GCounter, GSet, InvalidState, LwwMap, LwwRegister, MvRegister, OrSet,
    PNCounter, Record,
};

/// First byte of every encoded state.
pub const MAGIC: u8 = 0x4A;
/// The binary format version this code writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the header.
pub const HEADER_LEN: usize = 4;

/// Which CRDT an encoding holds; part of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TypeTag {
    /// [`GCounter`]
    GCounter = 1,
    /// [`PNCounter`]
    PNCounter = 2,
    /// [`GSet`]
    GSet = 3,
    /// [`LwwRegister`]
    LwwRegister = 4,
    /// [`MvRegister`]
    MvRegister = 5,
    /// [`OrSet`]
    OrSet = 6,
    /// [`LwwMap`]
    LwwMap = 7,
    /// [`Record`] as written before named sets: read and upgraded, never written.
    RecordV1 = 8,
    /// [`Entity`]
    Entity = 9,
    /// [`Record`]
    Record = 10,
    /// [`BoundedCounter`]
    BoundedCounter = 11,
}

impl TypeTag {
    /// The tag with this byte value.
    pub fn from_byte(byte: u8) -> Option<Self> {
        [
            Self::GCounter,
            Self::PNCounter,
            Self::GSet,
            Self::LwwRegister,
            Self::MvRegister,
            Self::OrSet,
            Self::LwwMap,
            Self::RecordV1,
            Self::Entity,
            Self::Record,
            Self::BoundedCounter,
        ]
        .into_iter()
        .find(|tag| *tag as u8 == byte)
    }

    /// The type tag in the header of an encoding, when the header is ours.
    pub fn of(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [MAGIC, FORMAT_VERSION, tag, ..] => Self::from_byte(*tag),
            _ => None,
        }
    }
}

/// Why bytes or JSON could not be decoded into a state.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the header.
    #[error("truncated: {0} bytes, the header alone is 4")]
    Truncated(usize),
    /// The first byte is not [`MAGIC`].
    #[error("not a Jarvis CRDT encoding")]
    BadMagic,
    /// A format version this build does not read.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// The bytes hold another CRDT type.
    #[error("type tag {found}, expected {expected}")]
    WrongType {
        /// The tag asked for.
        expected: u8,
        /// The tag found.
        found: u8,
    },
    /// Flags this build does not understand.
    #[error("unsupported flags {0:#04x}")]
    UnsupportedFlags(u8),
    /// The body does not parse, or breaks an invariant.
    #[error("malformed state: {0}")]
    Malformed(String),
    /// Bytes left over after the state.
    #[error("{0} trailing bytes after the state")]
    TrailingBytes(usize),
    /// A state that breaks an invariant.
    #[error(transparent)]
    Invalid(#[from] InvalidState),
}

/// Why a state could not be encoded (an element type that does not serialise).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode state: {0}")]
pub struct EncodeError(String);

/// Binary and JSON encodings of a CRDT state.
pub trait Codec: Serialize + DeserializeOwned {
    /// The tag written in the header.
    const TAG: TypeTag;

    /// The binary encoding: header, then the state.
    fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![MAGIC, FORMAT_VERSION, Self::TAG as u8, 0];
        postcard::to_io(self, &mut out).map_err(|e| EncodeError(e.to_string()))?;
        Ok(out)
    }

    /// Decodes and validates a binary encoding.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_as(bytes, Self::TAG)
    }

    /// The JSON form.
    fn to_json(&self) -> Result<serde_json::Value, EncodeError> {
        serde_json::to_value(self).map_err(|e| EncodeError(e.to_string()))
    }

    /// Decodes and validates the JSON form.
    fn from_json(value: serde_json::Value) -> Result<Self, DecodeError> {
        serde_json::from_value(value).map_err(|e| DecodeError::Malformed(e.to_string()))
    }
}

/// Decodes the state of type `T` after a header carrying `tag`.
fn decode_as<T: DeserializeOwned>(bytes: &[u8], tag: TypeTag) -> Result<T, DecodeError> {
    let body = check_header(bytes, tag)?;
    let (state, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(state)
}

/// Checks the header and returns the body.
pub fn check_header(bytes: &[u8], expected: TypeTag) -> Result<&[u8], DecodeError> {
    let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::Truncated(bytes.len()));
    };
    let [magic, version, tag, flags] = *header;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    if tag != expected as u8 {
        return Err(DecodeError::WrongType {
            expected: expected as u8,
            found: tag,
        });
    }
    if flags != 0 {
        return Err(DecodeError::UnsupportedFlags(flags));
    }
    Ok(body)
}

impl Codec for GCounter {
    const TAG: TypeTag = TypeTag::GCounter;
}

impl Codec for PNCounter {
    const TAG: TypeTag = TypeTag::PNCounter;
}

impl Codec for BoundedCounter {
    const TAG: TypeTag = TypeTag::BoundedCounter;
}

impl<E: Ord + Clone + Serialize + DeserializeOwned> Codec for GSet<E> {
    const TAG: TypeTag = TypeTag::GSet;
}

impl<T: Serialize + DeserializeOwned> Codec for LwwRegister<T> {
    const TAG: TypeTag = TypeTag::LwwRegister;
}

impl<T: Clone + Serialize + DeserializeOwned> Codec for MvRegister<T> {
    const TAG: TypeTag = TypeTag::MvRegister;
}

impl<E: Hash + Eq + Clone + Serialize + DeserializeOwned> Codec for OrSet<E> {
    const TAG: TypeTag = TypeTag::OrSet;
}

impl<K, V> Codec for LwwMap<K, V>
where
    K: Ord + Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    const TAG: TypeTag = TypeTag::LwwMap;
}

impl Codec for Record {
    const TAG: TypeTag = TypeTag::Record;

    /// Reads both layouts: records written before named sets come back without sets.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match TypeTag::of(bytes) {
            Some(TypeTag::RecordV1) => {
                decode_as::<super::record::RecordV1>(bytes, TypeTag::RecordV1).map(Record::from)
            }
            _ => decode_as(bytes, Self::TAG),
        }
    }
}

impl Codec for Entity {
    const TAG: TypeTag = TypeTag::Entity;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReplicaId;

    #[test]
    fn round_trips_through_binary_and_json() {
        let mut counter = GCounter::new();
        counter.increment(ReplicaId::from_u64(7), 42);
        let bytes = counter.encode().expect("encode");
        assert_eq!(
            &bytes[..4],
            &[MAGIC, FORMAT_VERSION, TypeTag::GCounter as u8, 0]
        );
        assert_eq!(GCounter::decode(&bytes).expect("decode"), counter);
        let json = counter.to_json().expect("json");
        assert_eq!(GCounter::from_json(json).expect("from json"), counter);
    }

    #[test]
    fn headers_from_the_future_or_of_another_type_are_refused() {
        let bytes = GCounter::new().encode().expect("encode");
        let mut newer = bytes.clone();
        newer[1] = FORMAT_VERSION + 1;
        assert!(matches!(
            GCounter::decode(&newer),
            Err(DecodeError::UnsupportedVersion(_))
        ));
        assert!(matches!(
            PNCounter::decode(&bytes),
            Err(DecodeError::WrongType { .. })
        ));
        let mut flagged = bytes.clone();
        flagged[3] = 0x80;
        assert!(matches!(
            GCounter::decode(&flagged),
            Err(DecodeError::UnsupportedFlags(0x80))
        ));
        assert!(matches!(
            GCounter::decode(&bytes[..2]),
            Err(DecodeError::Truncated(2))
        ));
        let mut trailing = bytes;
        trailing.push(0);
        assert!(matches!(
            GCounter::decode(&trailing),
            Err(DecodeError::TrailingBytes(1))
        ));
    }
}
