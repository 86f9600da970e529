//! Keyword search on AWS: posting lists in a DynamoDB table beside the S3 Vectors index,
//! ranked by BM25 in [`crate::keywords`].
//!
//! Chunks are written in the groups ingestion adds them in (one `add` call, split further
//! when its terms would not fit an item). A group has
//!
//! - one item `pk = d#<user>`, `sk = <document>#<first ordinal>` with the group's chunk
//!   count, its length in terms and its distinct terms (`terms`, space-separated): the
//!   corpus size BM25 needs is the sum over the user's groups, and the terms say which
//!   postings to delete with the document;
//! - one posting per distinct term, `pk = t#<user>#<term>`, same `sk`, holding each chunk of
//!   the group with the term as `ordinal:frequency:length` (`p`), and the document's media
//!   type (`m`) and tags (`g`) for filters.
//!
//! A search reads the user's group items (one query, small items) and one posting list per
//! query term; it never scans the table. A group item is written before its postings and
//! deleted after them, so a crash between leaves nothing unreachable: the retried job's
//! `begin` finds the group and removes what it lists.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use jarvis_config::AwsTarget;
use uuid::Uuid;

use crate::index::{Entry, Filter, IndexError, Source};
use crate::keywords::{Corpus, Counts, Occurrence, counts, query_terms, rank};

/// Items one `BatchWriteItem` call carries at most.
const WRITE_BATCH: usize = 25;
/// Bytes of terms one group item holds at most, well inside DynamoDB's 400 KB item.
const GROUP_TERM_BYTES: usize = 200_000;
/// Times a batch's unprocessed items are sent again before the write fails.
const WRITE_RETRIES: u32 = 8;

fn unavailable(err: impl std::error::Error) -> IndexError {
    IndexError::Unavailable(DisplayErrorContext(err).to_string())
}

fn corrupt(what: &str) -> IndexError {
    IndexError::Unavailable(format!("the keyword table holds a malformed {what}"))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The partition of a user's group items.
pub fn groups_key(user: &str) -> String {
    format!("d#{user}")
}

/// The partition of a term's postings (terms have no `#`, so the key reads one way).
pub fn postings_key(user: &str, term: &str) -> String {
    format!("t#{user}#{term}")
}

/// The sort key of a group: its document and first chunk, zero-padded so groups sort in
/// document order.
pub fn group_key(document: Uuid, first: u32) -> String {
    format!("{}#{first:010}", document.hyphenated())
}

/// A chunk a search can return: its document and ordinal.
pub type ChunkRef = (Uuid, u32);

/// One group of chunks to write.
struct Group {
    first: u32,
    length: u64,
    chunks: usize,
    terms: std::collections::BTreeMap<String, Vec<(u32, u32, u32)>>,
    term_bytes: usize,
}

impl Group {
    fn new(first: u32) -> Self {
        Self {
            first,
            length: 0,
            chunks: 0,
            terms: std::collections::BTreeMap::new(),
            term_bytes: 0,
        }
    }

    fn push(&mut self, ordinal: u32, counts: &Counts) {
        for (term, frequency) in &counts.frequencies {
            let postings = self.terms.entry(term.clone()).or_insert_with(|| {
                self.term_bytes += term.len() + 1;
                Vec::new()
            });
            postings.push((ordinal, *frequency, counts.length));
        }
        self.length += u64::from(counts.length);
        self.chunks += 1;
    }

    /// Whether adding `counts` would take the group past its item's size.
    fn would_overflow(&self, counts: &Counts) -> bool {
        let extra: usize = counts
            .frequencies
            .keys()
            .filter(|t| !self.terms.contains_key(*t))
            .map(|t| t.len() + 1)
            .sum();
        self.chunks > 0 && self.term_bytes + extra > GROUP_TERM_BYTES
    }
}

/// Splits entries into groups whose terms fit one item each.
fn groups(entries: &[Entry]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for entry in entries {
        let counted = counts(&entry.text, entry.section.as_deref());
        match out.last_mut() {
            Some(group) if !group.would_overflow(&counted) => group.push(entry.ordinal, &counted),
            _ => {
                let mut group = Group::new(entry.ordinal);
                group.push(entry.ordinal, &counted);
                out.push(group);
            }
        }
    }
    out
}

/// A posting's chunks as stored: `ordinal:frequency:length`, space-separated.
pub fn encode_postings(postings: &[(u32, u32, u32)]) -> String {
    postings
        .iter()
        .map(|(o, f, l)| format!("{o}:{f}:{l}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The chunks of a stored posting.
pub fn decode_postings(text: &str) -> Option<Vec<(u32, u32, u32)>> {
    text.split(' ')
        .map(|one| {
            let mut parts = one.split(':').map(str::parse::<u32>);
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(Ok(o)), Some(Ok(f)), Some(Ok(l)), None) => Some((o, f, l)),
                _ => None,
            }
        })
        .collect()
}

/// The posting lists of a user's chunks in one DynamoDB table.
pub struct Keywords {
    table: String,
    aws: AwsTarget,
    client: tokio::sync::OnceCell<aws_sdk_dynamodb::Client>,
}

impl std::fmt::Debug for Keywords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keywords")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl Keywords {
    /// The table `table`, where `aws` says DynamoDB is.
    pub fn new(table: String, aws: AwsTarget) -> Self {
        Self {
            table,
            aws,
            client: tokio::sync::OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_dynamodb::Client {
        self.client
            .get_or_init(|| async {
                let timeout = aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(20))
                    .build();
                let sdk = jarvis_config::aws::sdk_config(
                    &self.aws,
                    aws_sdk_dynamodb::config::retry::RetryConfig::standard(),
                    timeout,
                )
                .await;
                aws_sdk_dynamodb::Client::new(&sdk)
            })
            .await
    }

    /// Writes `requests`, 25 at a time, sending unprocessed items again with backoff.
    async fn write(&self, requests: Vec<WriteRequest>) -> Result<(), IndexError> {
        let client = self.client().await;
        for batch in requests.chunks(WRITE_BATCH) {
            let mut pending = batch.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt == WRITE_RETRIES {
                    return Err(IndexError::Unavailable(
                        "the keyword table kept refusing writes (throttled)".into(),
                    ));
                }
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
                }
                let answer = client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(unavailable)?;
                pending = answer
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table))
                    .unwrap_or_default();
                attempt += 1;
            }
        }
        Ok(())
    }

    /// Every item of partition `pk` whose sort key starts with `prefix`, with `fields`.
    async fn query(
        &self,
        pk: String,
        prefix: Option<String>,
        fields: &[&str],
    ) -> Result<Vec<HashMap<String, AttributeValue>>, IndexError> {
        let client = self.client().await;
        let mut items = Vec::new();
        let mut start = None;
        // Every name through a placeholder, so none collides with a reserved word.
        let projection: Vec<String> = (0..fields.len()).map(|i| format!("#f{i}")).collect();
        loop {
            let mut request = client
                .query()
                .table_name(&self.table)
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_values(":pk", s(pk.clone()))
                .projection_expression(projection.join(", "))
                .set_exclusive_start_key(start);
            for (placeholder, field) in projection.iter().zip(fields) {
                request = request.expression_attribute_names(placeholder, *field);
            }
            request = match &prefix {
                Some(prefix) => request
                    .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                    .expression_attribute_names("#sk", "sk")
                    .expression_attribute_values(":prefix", s(prefix.clone())),
                None => request.key_condition_expression("#pk = :pk"),
            };
            let page = request.send().await.map_err(unavailable)?;
            items.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Adds the words of `entries` of the document `source` describes. Within one
    /// [`remove`](Self::remove) of a document, each chunk is added once, as ingestion does.
    pub async fn add(
        &self,
        user: &str,
        source: &Source,
        entries: &[Entry],
    ) -> Result<(), IndexError> {
        for group in groups(entries) {
            let sk = group_key(source.document, group.first);
            let terms: Vec<&str> = group.terms.keys().map(String::as_str).collect();
            let summary = HashMap::from([
                ("pk".to_owned(), s(groups_key(user))),
                ("sk".to_owned(), s(sk.clone())),
                ("chunks".to_owned(), n(group.chunks)),
                ("length".to_owned(), n(group.length)),
                ("terms".to_owned(), s(terms.join(" "))),
            ]);
            self.write(vec![put(summary)?]).await?;
            let postings = group
                .terms
                .iter()
                .map(|(term, chunks)| {
                    let mut item = HashMap::from([
                        ("pk".to_owned(), s(postings_key(user, term))),
                        ("sk".to_owned(), s(sk.clone())),
                        ("p".to_owned(), s(encode_postings(chunks))),
                        ("m".to_owned(), s(source.media_type.clone())),
                    ]);
                    if !source.tags.is_empty() {
                        item.insert(
                            "g".to_owned(),
                            AttributeValue::L(source.tags.iter().map(|t| s(t.clone())).collect()),
                        );
                    }
                    put(item)
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.write(postings).await?;
        }
        Ok(())
    }

    /// Removes the words of every chunk of `document`: each group's postings, then the
    /// group.
    pub async fn remove(&self, user: &str, document: Uuid) -> Result<(), IndexError> {
        let prefix = format!("{}#", document.hyphenated());
        let groups = self
            .query(groups_key(user), Some(prefix), &["sk", "terms"])
            .await?;
        for group in groups {
            let Some(AttributeValue::S(sk)) = group.get("sk") else {
                return Err(corrupt("group key"));
            };
            let terms = match group.get("terms") {
                Some(AttributeValue::S(terms)) => terms.as_str(),
                _ => "",
            };
            let postings = terms
                .split(' ')
                .filter(|t| !t.is_empty())
                .map(|term| delete(postings_key(user, term), sk.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            self.write(postings).await?;
            self.write(vec![delete(groups_key(user), sk.clone())?])
                .await?;
        }
        Ok(())
    }

    /// The `k` chunks of `user` that best match the words of `query` by BM25, best first,
    /// with their scores; none when the query has no words.
    pub async fn search(
        &self,
        user: &str,
        query: &str,
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<(ChunkRef, f64)>, IndexError> {
        let terms = query_terms(query);
        if terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let mut corpus = Corpus::default();
        for group in self
            .query(groups_key(user), None, &["chunks", "length"])
            .await?
        {
            corpus.chunks += number(&group, "chunks")?;
            corpus.terms += number(&group, "length")?;
        }
        if corpus.chunks == 0 {
            return Ok(Vec::new());
        }
        let lists = futures_util::future::try_join_all(
            terms
                .iter()
                .map(|term| self.query(postings_key(user, term), None, &["sk", "p", "m", "g"])),
        )
        .await?;
        let hits = lists
            .iter()
            .map(|items| occurrences(items, filter))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rank(corpus, &hits, k))
    }
}

fn put(item: HashMap<String, AttributeValue>) -> Result<WriteRequest, IndexError> {
    let put = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .map_err(|e| IndexError::Invalid(e.to_string()))?;
    Ok(WriteRequest::builder().put_request(put).build())
}

fn delete(pk: String, sk: String) -> Result<WriteRequest, IndexError> {
    let delete = DeleteRequest::builder()
        .set_key(Some(HashMap::from([
            ("pk".to_owned(), s(pk)),
            ("sk".to_owned(), s(sk)),
        ])))
        .build()
        .map_err(|e| IndexError::Invalid(e.to_string()))?;
    Ok(WriteRequest::builder().delete_request(delete).build())
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Result<u64, IndexError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| corrupt(name)),
        _ => Err(corrupt(name)),
    }
}

/// The chunks of one term's posting items, each marked with whether `filter` holds for it.
fn occurrences(
    items: &[HashMap<String, AttributeValue>],
    filter: &Filter,
) -> Result<Vec<Occurrence<ChunkRef>>, IndexError> {
    let mut out = Vec::new();
    for item in items {
        let (Some(AttributeValue::S(sk)), Some(AttributeValue::S(p))) =
            (item.get("sk"), item.get("p"))
        else {
            return Err(corrupt("posting"));
        };
        let document = sk
            .split_once('#')
            .and_then(|(d, _)| Uuid::try_parse(d).ok())
            .ok_or_else(|| corrupt("posting key"))?;
        let media_type = match item.get("m") {
            Some(AttributeValue::S(m)) => m.as_str(),
            _ => "",
        };
        let tagged = |tag: &str| match item.get("g") {
            Some(AttributeValue::L(tags)) => tags
                .iter()
                .any(|t| matches!(t, AttributeValue::S(t) if t == tag)),
            _ => false,
        };
        let wanted = filter.document.is_none_or(|d| d == document)
            && filter.media_type.as_deref().is_none_or(|m| m == media_type)
            && filter.tag.as_deref().is_none_or(tagged);
        for (ordinal, frequency, length) in decode_postings(p).ok_or_else(|| corrupt("posting"))? {
            out.push(Occurrence {
                chunk: (document, ordinal),
                frequency,
                length,
                wanted,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_posting_reads_back_as_written() {
        let postings = [(0, 2, 31), (7, 1, 250)];
        let text = encode_postings(&postings);
        assert_eq!(text, "0:2:31 7:1:250");
        assert_eq!(decode_postings(&text).as_deref(), Some(&postings[..]));
        assert_eq!(decode_postings("0:2"), None);
        assert_eq!(decode_postings("0:2:x"), None);
        assert_eq!(decode_postings("0:1:2:3"), None);
    }

    #[test]
    fn keys_sort_groups_by_document_then_first_chunk() {
        let d = Uuid::nil();
        assert_eq!(group_key(d, 32), format!("{d}#0000000032"));
        assert!(group_key(d, 9) < group_key(d, 10));
        assert_eq!(postings_key("u1", "kettl"), "t#u1#kettl");
        assert_eq!(groups_key("u1"), "d#u1");
    }

    #[test]
    fn a_group_splits_before_its_terms_outgrow_an_item() {
        let word = |i: usize| format!("w{i:06}x{}", "y".repeat(40));
        let entries: Vec<Entry> = (0..20u32)
            .map(|i| Entry {
                ordinal: i,
                page: None,
                section: None,
                text: (0..500)
                    .map(|j| word(i as usize * 500 + j))
                    .collect::<Vec<_>>()
                    .join(" "),
                vector: vec![1.0],
            })
            .collect();
        let split = groups(&entries);
        assert!(split.len() > 1);
        assert!(split.iter().all(|g| g.term_bytes <= GROUP_TERM_BYTES));
        let chunks: usize = split.iter().map(|g| g.chunks).sum();
        assert_eq!(chunks, 20);
        assert_eq!(split[1].first, split[0].chunks as u32);
    }
}
