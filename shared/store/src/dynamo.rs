//! The DynamoDB backend: one table, strongly consistent reads, writes conditional on the
//! version read, the change feed as a global secondary index.
//!
//! Item: `pk` (S, partition), `sk` (S, sort key), `state` (B, encoded CRDT), `version` (N),
//! `ttl` (N, epoch seconds; the table's TTL attribute), `feed` (S) and `fseq` (N), the keys of
//! the `feed` index. An uncontended merge costs one consistent read and one write (plus the
//! index's copy of the write); the feed adds no write of its own.
//!
//! Feed order: `fseq` is the write's wall-clock milliseconds shifted left 20 bits plus random
//! low bits, kept strictly increasing per process. Writers in several Lambda instances can
//! commit slightly out of stamp order, and the index is eventually consistent, so the feed's
//! cursor only moves up to entries older than a lag (5 s by default): anything committed
//! within the lag is served by a later poll, never skipped. Newer entries ride along at the
//! horizon's position (see `changes`), so a document rewritten more often than the lag —
//! the audit head, a busy counter — still reaches peers within one poll. The feed carries whole states (the index holds
//! the latest state of each document), which DynamoDB's 400 KB item limit keeps small.
//!
//! The SDK retries throttling and transient errors with jittered exponential backoff
//! (standard mode), within an operation timeout shorter than a function's own timeout.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConsumedCapacity, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, ReturnConsumedCapacity,
    ScalarAttributeType, TimeToLiveSpecification,
};

use jarvis_config::AwsTarget;
use jarvis_crdt::hlc::system_time_ms;

use super::{Change, Key, ListQuery, Payload, Store, StoreError, Stored, Write};

/// DynamoDB's item size limit.
pub const ITEM_LIMIT_BYTES: usize = 400 * 1024;

/// Largest encoded state that always fits: the limit less the largest keys and the other
/// attributes.
pub const MAX_DOCUMENT_BYTES: usize = ITEM_LIMIT_BYTES - 2 * super::MAX_KEY_BYTES - 256;

/// Name of the change-feed index.
pub const FEED_INDEX: &str = "feed";

/// Partition of this deployment's cursors in its peers' feeds.
const CURSOR_PARTITION: &str = "_sync#cursors";

/// The feed index's single partition value.
const FEED_SHARD: &str = "f";

/// Default age an entry must reach before the feed serves it.
pub const DEFAULT_FEED_LAG: Duration = Duration::from_secs(5);

/// How to reach the table.
#[derive(Clone, Debug)]
pub struct DynamoConfig {
    /// Table name.
    pub table: String,
    /// Where DynamoDB is (AWS, or a local engine such as DynamoDB Local).
    pub aws: AwsTarget,
    /// How old a change must be before the feed serves it.
    pub feed_lag: Duration,
}

impl DynamoConfig {
    /// A configuration for `table` with the SDK's defaults.
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            aws: AwsTarget::default(),
            feed_lag: DEFAULT_FEED_LAG,
        }
    }
}

/// Requests made and capacity consumed so far, as reported by DynamoDB.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Consumed {
    /// Read requests (GetItem, Query).
    pub read_requests: u64,
    /// Write requests (PutItem).
    pub write_requests: u64,
    /// Read capacity units on the table.
    pub table_reads: f64,
    /// Write capacity units on the table.
    pub table_writes: f64,
    /// Write capacity units on the feed index.
    pub index_writes: f64,
}

#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
}

/// A store on one DynamoDB table.
pub struct DynamoStore {
    client: Client,
    table: String,
    feed_lag: Duration,
    last_fseq: AtomicU64,
    consumed: Mutex<Consumed>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

fn sdk_error<E>(err: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err.code() {
        Some(
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded",
        ) => StoreError::Throttled,
        Some("ConditionalCheckFailedException") => StoreError::Conflict,
        Some("ValidationException")
            if err
                .message()
                .is_some_and(|m| m.contains("Item size has exceeded")) =>
        {
            StoreError::TooLarge {
                size: ITEM_LIMIT_BYTES + 1,
                limit: ITEM_LIMIT_BYTES,
            }
        }
        _ => StoreError::Unavailable(Box::new(err)),
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("item attribute {what} missing or malformed").into())
}

fn number<T: std::str::FromStr>(
    item: &HashMap<String, AttributeValue>,
    name: &str,
) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(text)) => text.parse().map(Some).map_err(|_| corrupt(name)),
        Some(_) => Err(corrupt(name)),
    }
}

fn string(item: &HashMap<String, AttributeValue>, name: &str) -> Result<String, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(text)) => Ok(text.clone()),
        _ => Err(corrupt(name)),
    }
}

fn state(item: &mut HashMap<String, AttributeValue>) -> Result<Vec<u8>, StoreError> {
    match item.remove("state") {
        Some(AttributeValue::B(blob)) => Ok(blob.into_inner()),
        _ => Err(corrupt("state")),
    }
}

fn stored_from(mut item: HashMap<String, AttributeValue>) -> Result<Stored, StoreError> {
    Ok(Stored {
        version: number(&item, "version")?.ok_or_else(|| corrupt("version"))?,
        expires_at: number(&item, "ttl")?,
        bytes: state(&mut item)?,
    })
}

/// DynamoDB's size of an item: attribute names plus values.
fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(text) => text.len(),
                    AttributeValue::N(text) => text.len().div_ceil(2) + 1,
                    AttributeValue::B(blob) => blob.as_ref().len(),
                    _ => 32,
                }
        })
        .sum()
}

impl DynamoStore {
    /// Builds the client. Makes no network call: the first request does.
    pub async fn connect(config: DynamoConfig) -> Self {
        let retry = RetryConfig::standard()
            .with_max_attempts(5)
            .with_initial_backoff(Duration::from_millis(25))
            .with_max_backoff(Duration::from_secs(1));
        let timeout = TimeoutConfig::builder()
            .operation_attempt_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(4))
            .build();
        let sdk = jarvis_config::aws::sdk_config(&config.aws, retry, timeout).await;
        Self {
            client: Client::new(&sdk),
            table: config.table,
            feed_lag: config.feed_lag,
            last_fseq: AtomicU64::new(0),
            consumed: Mutex::new(Consumed::default()),
        }
    }

    /// Capacity consumed by this store's requests so far.
    pub fn consumed(&self) -> Consumed {
        self.consumed.lock().map(|c| *c).unwrap_or_default()
    }

    fn record(&self, access: Access, capacity: Option<&ConsumedCapacity>) {
        let Ok(mut consumed) = self.consumed.lock() else {
            return;
        };
        // Engines report either the read/write split or only total units per operation.
        let table = capacity.map_or(0.0, |c| {
            c.table()
                .and_then(|t| {
                    match access {
                        Access::Read => t.read_capacity_units(),
                        Access::Write => t.write_capacity_units(),
                    }
                    .or(t.capacity_units())
                })
                .or(c.capacity_units())
                .unwrap_or(0.0)
        });
        match access {
            Access::Read => {
                consumed.read_requests += 1;
                consumed.table_reads += table;
            }
            Access::Write => {
                consumed.write_requests += 1;
                consumed.table_writes += table;
                consumed.index_writes += capacity
                    .and_then(ConsumedCapacity::global_secondary_indexes)
                    .map_or(0.0, |indexes| {
                        indexes
                            .values()
                            .filter_map(|c| c.write_capacity_units().or(c.capacity_units()))
                            .sum::<f64>()
                    });
            }
        }
    }

    /// A feed position after every one this process issued, near the current time.
    fn next_fseq(&self) -> u64 {
        let candidate = (system_time_ms().min(u64::MAX >> 21) << 20) | fastrand::u64(0..1 << 20);
        let previous = self
            .last_fseq
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(candidate.max(last + 1))
            })
            .unwrap_or_else(|last| last);
        candidate.max(previous + 1)
    }

    /// Feed entries after `after` (exclusive) up to `until` (inclusive, or the end), oldest
    /// first, at most `limit`.
    async fn feed_between(
        &self,
        after: u64,
        until: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        let request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(FEED_INDEX)
            .expression_attribute_values(":feed", s(FEED_SHARD))
            .expression_attribute_values(":from", n(after.saturating_add(1)));
        let request = match until {
            Some(to) => request
                .key_condition_expression("feed = :feed AND fseq BETWEEN :from AND :to")
                .expression_attribute_values(":to", n(to)),
            None => request.key_condition_expression("feed = :feed AND fseq >= :from"),
        };
        let output = request
            .scan_index_forward(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX).max(1))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(sdk_error)?;
        self.record(Access::Read, output.consumed_capacity());
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|mut item| {
                Ok(Change {
                    seq: number(&item, "fseq")?.ok_or_else(|| corrupt("fseq"))?,
                    key: Key::new(string(&item, "pk")?, string(&item, "sk")?)?,
                    payload: Payload::State(state(&mut item)?),
                })
            })
            .collect()
    }

    /// Creates the table, its feed index and TTL when missing (local engines and tests; on
    /// AWS the SAM template creates it).
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        if self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        let attribute = |name: &str, kind: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .map_err(|e| StoreError::Unavailable(Box::new(e)))
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| StoreError::Unavailable(Box::new(e)))
        };
        let feed = GlobalSecondaryIndex::builder()
            .index_name(FEED_INDEX)
            .key_schema(key("feed", KeyType::Hash)?)
            .key_schema(key("fseq", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::Include)
                    .non_key_attributes("state")
                    .build(),
            )
            .build()
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("sk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("feed", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("fseq", ScalarAttributeType::N)?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .global_secondary_indexes(feed)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(err) if err.code() == Some("ResourceInUseException") => {}
            Err(err) => return Err(sdk_error(err)),
        }
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name("ttl")
            .enabled(true)
            .build()
            .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        // Enabling TTL twice is an error some engines raise; the table works either way.
        let _ = self
            .client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await;
        Ok(())
    }
}

#[async_trait]
impl Store for DynamoStore {
    fn backend(&self) -> &'static str {
        "dynamodb"
    }

    fn max_document_bytes(&self) -> usize {
        MAX_DOCUMENT_BYTES
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // A consistent read of a key that never exists: proves the table answers, costs
        // half a read unit.
        let probe = Key::new("_health", "_probe")?;
        self.get(&probe).await.map(|_| ())
    }

    async fn get(&self, key: &Key) -> Result<Option<Stored>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(key.partition()))
            .key("sk", s(key.sort()))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .map_err(sdk_error)?;
        self.record(Access::Read, output.consumed_capacity());
        output.item.map(stored_from).transpose()
    }

    async fn put(&self, key: &Key, write: Write<'_>) -> Result<u64, StoreError> {
        if write.state.len() > MAX_DOCUMENT_BYTES {
            return Err(StoreError::TooLarge {
                size: write.state.len(),
                limit: MAX_DOCUMENT_BYTES,
            });
        }
        let version = write.expected_version + 1;
        let mut item = HashMap::from([
            ("pk".to_owned(), s(key.partition())),
            ("sk".to_owned(), s(key.sort())),
            (
                "state".to_owned(),
                AttributeValue::B(write.state.to_vec().into()),
            ),
            ("version".to_owned(), n(version)),
        ]);
        // The feed index is sparse: replica-local documents carry no feed keys.
        if key.is_replicated() {
            item.insert("feed".to_owned(), s(FEED_SHARD));
            item.insert("fseq".to_owned(), n(self.next_fseq()));
        }
        if let Some(at) = write.expires_at {
            item.insert("ttl".to_owned(), n(at));
        }
        let size = item_size(&item);
        if size > ITEM_LIMIT_BYTES {
            return Err(StoreError::TooLarge {
                size,
                limit: ITEM_LIMIT_BYTES,
            });
        }
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes);
        let request = if write.expected_version == 0 {
            request.condition_expression("attribute_not_exists(pk)")
        } else {
            request
                .condition_expression("version = :read")
                .expression_attribute_values(":read", n(write.expected_version))
        };
        let output = request.send().await.map_err(sdk_error)?;
        self.record(Access::Write, output.consumed_capacity());
        Ok(version)
    }

    async fn list(
        &self,
        partition: &str,
        query: ListQuery<'_>,
    ) -> Result<Vec<(Key, Stored)>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = query.after.map(|after| {
            HashMap::from([("pk".to_owned(), s(partition)), ("sk".to_owned(), s(after))])
        });
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":pk", s(partition))
                .expression_attribute_values(":now", n(query.now))
                .filter_expression("attribute_not_exists(#ttl) OR #ttl > :now")
                .limit(
                    i32::try_from(query.limit - out.len())
                        .unwrap_or(i32::MAX)
                        .max(1),
                )
                .set_exclusive_start_key(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Indexes);
            request = match query.prefix {
                Some(prefix) => request
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(prefix)),
                None => request.key_condition_expression("pk = :pk"),
            };
            let output = request.send().await.map_err(sdk_error)?;
            self.record(Access::Read, output.consumed_capacity());
            for item in output.items.unwrap_or_default() {
                let sort = string(&item, "sk")?;
                out.push((Key::new(partition, sort)?, stored_from(item)?));
            }
            match output.last_evaluated_key {
                Some(last) if out.len() < query.limit => start = Some(last),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let lag_ms = u64::try_from(self.feed_lag.as_millis()).unwrap_or(u64::MAX);
        let horizon = (system_time_ms().saturating_sub(lag_ms) << 20) | ((1 << 20) - 1);
        if horizon <= after {
            return Ok(Vec::new());
        }
        let mut changes = self.feed_between(after, Some(horizon), limit).await?;
        // A document written more often than the lag gets a new position each time and would
        // never age past the horizon. So a page with room also carries the entries newer than
        // the horizon, each at the horizon's position: the cursor stays behind them, and they
        // are served again until they age past it (joining a state twice changes nothing).
        // One place is left free so the page never looks full to the puller.
        let room = limit.saturating_sub(changes.len()).saturating_sub(1);
        if room > 0 {
            let recent = self.feed_between(horizon, None, room).await?;
            changes.extend(recent.into_iter().map(|change| Change {
                seq: horizon,
                ..change
            }));
        }
        Ok(changes)
    }

    async fn load_cursor(&self, peer: &str) -> Result<Option<String>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(CURSOR_PARTITION))
            .key("sk", s(peer))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        output.item.map(|item| string(&item, "cursor")).transpose()
    }

    async fn save_cursor(&self, peer: &str, cursor: &str) -> Result<(), StoreError> {
        // No `feed`/`fseq` attributes: the sparse feed index never sees this item.
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(CURSOR_PARTITION))
            .item("sk", s(peer))
            .item("cursor", s(cursor))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, StoreError> {
        // DynamoDB's TTL deletes expired items by itself, within days; this reclaims them
        // now. Each delete is conditional, so a document refreshed meanwhile survives.
        let mut purged = 0;
        let mut start = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .projection_expression("pk, sk")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":now", n(now))
                .filter_expression("#ttl <= :now")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            for item in output.items.unwrap_or_default() {
                let deleted = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", s(&string(&item, "pk")?))
                    .key("sk", s(&string(&item, "sk")?))
                    .expression_attribute_names("#ttl", "ttl")
                    .expression_attribute_values(":now", n(now))
                    .condition_expression("#ttl <= :now")
                    .send()
                    .await;
                match deleted {
                    Ok(_) => purged += 1,
                    Err(err) if err.code() == Some("ConditionalCheckFailedException") => {}
                    Err(err) => return Err(sdk_error(err)),
                }
            }
            match output.last_evaluated_key {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        Ok(purged)
    }
}
