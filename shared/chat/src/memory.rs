//! Long-term memory: facts about a user that persist across conversations.
//!
//! Each memory is one [`Record`] in its owner's partition (`memory#<user>`, sort key
//! `mem#<id>`, a time-ordered id): its text, the conversation it came from, and its
//! embedding (little-endian `f32`s, base64) with the model that made it. The user's
//! settings are the record `settings` of the same partition. A user keeps at most
//! [`MAX_MEMORIES`]; the most similar to a message (cosine of the embeddings) are given to
//! the reply.

use base64::Engine;
use jarvis_ai::service::Site;
use jarvis_crdt::{Crdt, Record};
use jarvis_store::{Document, Key, Page, StoreError};
use uuid::Uuid;

use crate::ChatError;

/// Most memories a user keeps.
pub const MAX_MEMORIES: usize = 500;
/// Longest memory, in characters.
pub const MAX_MEMORY_CHARS: usize = 1_000;
/// Memories less similar than this to a message are not given to its reply.
pub const MIN_SCORE: f32 = 0.2;
/// A candidate this similar to a memory already kept is the same fact.
pub const DUPLICATE_SCORE: f32 = 0.9;

const PREFIX: &str = "mem#";
const SETTINGS: &str = "settings";

/// The partition of a user's memories.
pub fn partition(user: &str) -> String {
    format!("memory#{user}")
}

fn key(user: &str, id: &Uuid) -> Result<Key, StoreError> {
    Key::new(partition(user), format!("{PREFIX}{}", id.hyphenated()))
}

/// A memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    /// Its id.
    pub id: Uuid,
    /// The fact.
    pub text: String,
    /// The conversation it was learned in; `None` when the user wrote it.
    pub conversation: Option<Uuid>,
    /// When it was made (ms since the epoch).
    pub created_ms: u64,
    /// When it last changed (ms since the epoch).
    pub updated_ms: u64,
    /// Its embedding and the `provider:model` that made it.
    pub vector: Option<(String, Vec<f32>)>,
}

/// A memory's embedding as stored: little-endian `f32`s, base64.
pub fn encode_vector(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The embedding stored as `text`, when it is one.
pub fn decode_vector(text: &str) -> Option<Vec<f32>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

impl Memory {
    fn from_doc(doc: &Document<Record>) -> Option<Self> {
        let record = &doc.state;
        if !record.is_live() {
            return None;
        }
        let id = Uuid::try_parse(doc.key.sort().strip_prefix(PREFIX)?).ok()?;
        let vector = match (record.get("vector_model"), record.get("vector")) {
            (Some(model), Some(vector)) => decode_vector(vector).map(|v| (model.to_owned(), v)),
            _ => None,
        };
        Some(Self {
            id,
            text: record.get("text")?.to_owned(),
            conversation: record
                .get("conversation")
                .and_then(|c| Uuid::try_parse(c).ok()),
            created_ms: record
                .get("created_at")
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
            updated_ms: record.latest_stamp().map_or(0, |s| s.wall_ms),
            vector,
        })
    }
}

/// A page of `user`'s memories, oldest first.
pub async fn list(
    site: &Site,
    user: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Memory>, ChatError> {
    let page = site
        .store
        .list_documents::<Record>(&partition(user), Some(PREFIX), cursor, limit)
        .await?;
    Ok(Page {
        items: page.items.iter().filter_map(Memory::from_doc).collect(),
        next_cursor: page.next_cursor,
    })
}

/// Every memory of `user` (at most [`MAX_MEMORIES`] live ones, as documents of removed
/// ones are skipped).
pub async fn all(site: &Site, user: &str) -> Result<Vec<Memory>, ChatError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = list(site, user, cursor.as_deref(), 200).await?;
        out.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

/// The memory `id` of `user`.
pub async fn get(site: &Site, user: &str, id: &Uuid) -> Result<Memory, ChatError> {
    site.store
        .read::<Record>(&key(user, id)?)
        .await?
        .as_ref()
        .and_then(Memory::from_doc)
        .ok_or(ChatError::NotFound("memory"))
}

fn vector_fields(vector: Option<&(String, Vec<f32>)>) -> Vec<(String, Option<String>)> {
    vec![
        ("vector_model".to_owned(), vector.map(|(m, _)| m.clone())),
        ("vector".to_owned(), vector.map(|(_, v)| encode_vector(v))),
    ]
}

/// Keeps a new memory; [`ChatError::Full`] when `user` already keeps [`MAX_MEMORIES`].
pub async fn add(
    site: &Site,
    user: &str,
    text: &str,
    conversation: Option<Uuid>,
    vector: Option<(String, Vec<f32>)>,
) -> Result<Memory, ChatError> {
    if all(site, user).await?.len() >= MAX_MEMORIES {
        return Err(ChatError::Full(MAX_MEMORIES));
    }
    let id = Uuid::now_v7();
    let now = site.clock.now();
    let mut fields = vec![
        ("text".to_owned(), text.to_owned()),
        ("created_at".to_owned(), now.wall_ms.to_string()),
    ];
    if let Some(conversation) = conversation {
        fields.push(("conversation".to_owned(), conversation.to_string()));
    }
    fields.extend(
        vector_fields(vector.as_ref())
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, v))),
    );
    let (replica, clock) = (site.replica, &site.clock);
    let doc = site
        .store
        .update(&key(user, &id)?, |record: &mut Record| {
            record.create(replica, clock.now(), fields.clone())
        })
        .await?;
    Memory::from_doc(&doc).ok_or(ChatError::NotFound("memory"))
}

/// Rewrites a memory's text (and its embedding).
pub async fn rewrite(
    site: &Site,
    user: &str,
    id: &Uuid,
    text: &str,
    vector: Option<(String, Vec<f32>)>,
) -> Result<Memory, ChatError> {
    get(site, user, id).await?;
    let clock = &site.clock;
    let mut fields = vec![("text".to_owned(), Some(text.to_owned()))];
    fields.extend(vector_fields(vector.as_ref()));
    let doc = site
        .store
        .update(&key(user, id)?, |record: &mut Record| {
            let mut delta = Record::new();
            for (name, value) in &fields {
                let stamp = clock.stamp_after(record.stamp(name));
                delta.join(match value {
                    Some(value) => record.set(name.clone(), stamp, value.clone()),
                    None => record.unset(name.clone(), stamp),
                });
            }
            delta
        })
        .await?;
    Memory::from_doc(&doc).ok_or(ChatError::NotFound("memory"))
}

/// Forgets a memory: its text and embedding go with it.
pub async fn forget(site: &Site, user: &str, id: &Uuid) -> Result<(), ChatError> {
    get(site, user, id).await?;
    erase(site, &key(user, id)?).await
}

async fn erase(site: &Site, key: &Key) -> Result<(), ChatError> {
    let clock = &site.clock;
    site.store
        .update(key, |record: &mut Record| {
            if !record.is_live() {
                return Record::new();
            }
            let stamp = clock.stamp_after(record.latest_stamp());
            record.delete(stamp)
        })
        .await?;
    Ok(())
}

/// Forgets every memory of `user`; answers how many.
pub async fn forget_all(site: &Site, user: &str) -> Result<usize, ChatError> {
    let memories = all(site, user).await?;
    for memory in &memories {
        erase(site, &key(user, &memory.id)?).await?;
    }
    Ok(memories.len())
}

/// Whether memories are learned from `user`'s conversations (on unless turned off).
pub async fn learning(site: &Site, user: &str) -> Result<bool, ChatError> {
    let doc = site
        .store
        .read::<Record>(&Key::new(partition(user), SETTINGS)?)
        .await?;
    Ok(doc.is_none_or(|doc| doc.state.get("auto") != Some("off")))
}

/// Turns learning from conversations on or off for `user`.
pub async fn set_learning(site: &Site, user: &str, on: bool) -> Result<(), ChatError> {
    let value = if on { "on" } else { "off" };
    let clock = &site.clock;
    site.store
        .update(
            &Key::new(partition(user), SETTINGS)?,
            |record: &mut Record| {
                let stamp = clock.stamp_after(record.stamp("auto"));
                record.set("auto".to_owned(), stamp, value.to_owned())
            },
        )
        .await?;
    Ok(())
}

/// Cosine similarity; 0 when the lengths differ or a vector is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator == 0.0 {
        0.0
    } else {
        dot / denominator
    }
}

/// The `k` memories most similar to `query` (embedded by `model`), best first, each at
/// least [`MIN_SCORE`] similar. Memories embedded by another model are not comparable and
/// are left out.
pub fn most_similar<'a>(
    memories: &'a [Memory],
    model: &str,
    query: &[f32],
    k: usize,
) -> Vec<(&'a Memory, f32)> {
    let mut scored: Vec<(&Memory, f32)> = memories
        .iter()
        .filter_map(|m| {
            let (made_by, vector) = m.vector.as_ref()?;
            (made_by == model).then(|| (m, cosine(vector, query)))
        })
        .filter(|(_, score)| *score >= MIN_SCORE)
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(k);
    scored
}

/// Whether `candidate` (embedded as `vector` by `model`) says what a kept memory says:
/// the same words, or an embedding at least [`DUPLICATE_SCORE`] similar.
pub fn is_known(memories: &[Memory], candidate: &str, model: &str, vector: Option<&[f32]>) -> bool {
    known(memories, candidate, model, vector).is_some()
}

/// The kept memory that says what `candidate` says (see [`is_known`]), if any.
pub fn known<'a>(
    memories: &'a [Memory],
    candidate: &str,
    model: &str,
    vector: Option<&[f32]>,
) -> Option<&'a Memory> {
    let normal = |text: &str| {
        text.split_whitespace()
            .map(|w| {
                w.trim_matches(|c: char| !c.is_alphanumeric())
                    .to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
    };
    let words = normal(candidate);
    memories.iter().find(|m| {
        normal(&m.text) == words
            || match (vector, &m.vector) {
                (Some(query), Some((made_by, kept))) if made_by == model => {
                    cosine(query, kept) >= DUPLICATE_SCORE
                }
                _ => false,
            }
    })
}

/// The facts a model extracted, from its reply: a JSON array of strings, possibly with
/// words around it. At most 5, each trimmed, 1 to [`MAX_MEMORY_CHARS`] characters; anything
/// else (a reply that is not such an array) gives none.
pub fn parse_candidates(reply: &str) -> Vec<String> {
    let (Some(start), Some(end)) = (reply.find('['), reply.rfind(']')) else {
        return Vec::new();
    };
    if end < start {
        return Vec::new();
    }
    let Ok(items) = serde_json::from_str::<Vec<String>>(&reply[start..=end]) else {
        return Vec::new();
    };
    items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| {
            !item.is_empty()
                && item.chars().count() <= MAX_MEMORY_CHARS
                && !item.chars().any(char::is_control)
        })
        .take(5)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_their_stored_form() {
        let vector = vec![0.25_f32, -1.5, 3.0e-7];
        assert_eq!(decode_vector(&encode_vector(&vector)), Some(vector));
        assert_eq!(decode_vector("AAA="), None, "not whole floats");
    }

    #[test]
    fn candidates_are_the_strings_of_a_json_array_in_the_reply() {
        assert_eq!(
            parse_candidates("Facts: [\"Lives in Oslo\", \" Likes tea \", \"\"]"),
            vec!["Lives in Oslo".to_owned(), "Likes tea".to_owned()]
        );
        assert!(parse_candidates("You said: hello").is_empty());
        assert!(parse_candidates("[1, 2]").is_empty());
    }

    fn memory(text: &str, vector: Vec<f32>) -> Memory {
        Memory {
            id: Uuid::now_v7(),
            text: text.to_owned(),
            conversation: None,
            created_ms: 0,
            updated_ms: 0,
            vector: Some(("m".to_owned(), vector)),
        }
    }

    #[test]
    fn the_most_similar_memories_come_first_and_dissimilar_ones_not_at_all() {
        let memories = vec![
            memory("a", vec![1.0, 0.0]),
            memory("b", vec![0.6, 0.8]),
            memory("c", vec![-1.0, 0.0]),
        ];
        let found = most_similar(&memories, "m", &[1.0, 0.1], 5);
        let texts: Vec<&str> = found.iter().map(|(m, _)| m.text.as_str()).collect();
        assert_eq!(texts, ["a", "b"]);
        assert!(most_similar(&memories, "other", &[1.0, 0.0], 5).is_empty());
    }

    #[test]
    fn a_fact_in_other_case_and_punctuation_is_known() {
        let memories = vec![memory("Lives in Oslo.", vec![1.0, 0.0])];
        assert!(is_known(&memories, "lives in oslo", "m", None));
        assert!(is_known(
            &memories,
            "Resides in Oslo",
            "m",
            Some(&[0.99, 0.05])
        ));
        assert!(!is_known(
            &memories,
            "Works in Bergen",
            "m",
            Some(&[0.0, 1.0])
        ));
    }
}
