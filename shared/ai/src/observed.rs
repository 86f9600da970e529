//! Breaker states as the processes that call models last saw them, for a `/health` served by
//! another process.
//!
//! On AWS each function is its own process: breakers live in the AI function's instances,
//! and `/health` is the system function's. Each time a breaker of an AI instance changes
//! state, the instance writes the change to the store (replica-local partition
//! `~ai#breakers`, one last-writer-wins register per alias and target, expiring); the
//! [`ObservedBreakers`] health component reads them. An open breaker's record expires after
//! a few cool-downs, so an instance that stopped (and can no longer close it) does not keep
//! `/health` degraded.
//!
//! Owns the stored form of an observation; changes when what `/health` reports does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jarvis_crdt::LwwRegister;
use jarvis_health::{Finding, HealthCheck, Status};
use jarvis_store::clock::Clock;
use jarvis_store::{Key, MergeOptions, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::registry::Registry;
use crate::resilience::BreakerState;

/// The partition of the observations.
pub const PARTITION: &str = "~ai#breakers";

/// A closed breaker's record is kept this long; the absence of one means closed anyway.
const KEEP_CLOSED_SECS: i64 = 24 * 3600;

/// The most observations one health check reads.
const MAX_READ: usize = 1_000;

/// One breaker's state and when it was entered. Stored (postcard, in a last-writer-wins
/// register) as `since` then the state's index (closed 0, open 1, half-open 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Observation {
    /// When the state was entered, unix seconds.
    pub since: i64,
    /// The state.
    pub state: BreakerState,
}

/// An observation and whose breaker it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// `alias#provider:model`.
    pub target: String,
    /// What was seen.
    #[serde(flatten)]
    pub observation: Observation,
}

fn key(alias: &str, provider: &str, model: &str) -> Result<Key, StoreError> {
    Key::new(PARTITION, format!("{alias}#{provider}:{model}"))
}

/// Records that the breaker of `provider:model` in `alias` entered `state` at `now`. An open
/// (or probing) state expires after four cool-downs, at least ten minutes.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    store: &dyn Store,
    clock: &Clock,
    alias: &str,
    provider: &str,
    model: &str,
    state: BreakerState,
    cooldown: Duration,
    now: i64,
) -> Result<(), StoreError> {
    let keep = match state {
        BreakerState::Closed => KEEP_CLOSED_SECS,
        BreakerState::Open | BreakerState::HalfOpen => {
            i64::try_from(cooldown.as_secs().saturating_mul(4))
                .unwrap_or(i64::MAX)
                .max(600)
        }
    };
    let observation = Observation { since: now, state };
    store
        .update_with(
            &key(alias, provider, model)?,
            |register: &mut LwwRegister<Observation>| {
                register.set(clock.stamp_after(register.stamp()), observation)
            },
            MergeOptions {
                expires_at: Some(now.saturating_add(keep)),
                ..MergeOptions::default()
            },
        )
        .await?;
    Ok(())
}

/// Every observation that has not expired, by target.
pub async fn read(store: &dyn Store) -> Result<Vec<Observed>, StoreError> {
    let page = store
        .list_documents::<LwwRegister<Observation>>(PARTITION, None, None, MAX_READ)
        .await?;
    Ok(page
        .items
        .into_iter()
        .filter_map(|doc| {
            doc.state.get().map(|observation| Observed {
                target: doc.key.sort().to_owned(),
                observation: *observation,
            })
        })
        .collect())
}

/// What a process last published of its registry's breakers, so it writes changes only.
#[derive(Debug, Default)]
pub struct Publisher {
    seen: Mutex<HashMap<(String, String, String), BreakerState>>,
}

impl Publisher {
    /// Writes the breakers of `registry` whose state differs from what this publisher last
    /// wrote (a breaker not written before counts as closed). Failures are logged: the
    /// observation is advisory, and the next change is written again.
    pub async fn publish(
        &self,
        store: &dyn Store,
        clock: &Clock,
        registry: &Registry,
        cooldown: Duration,
        now: i64,
    ) {
        let changed: Vec<_> = {
            let Ok(mut seen) = self.seen.lock() else {
                return;
            };
            registry
                .breakers()
                .into_iter()
                .filter(|(alias, provider, model, state)| {
                    let key = (alias.clone(), provider.clone(), model.clone());
                    let before = seen.insert(key, *state).unwrap_or(BreakerState::Closed);
                    before != *state
                })
                .collect()
        };
        for (alias, provider, model, state) in changed {
            if let Err(err) = record(
                store, clock, &alias, &provider, &model, state, cooldown, now,
            )
            .await
            {
                tracing::warn!(error = %err, %provider, %model, "a breaker change could not be recorded");
                if let Ok(mut seen) = self.seen.lock() {
                    seen.remove(&(alias, provider, model));
                }
            }
        }
    }
}

/// The `ai` component of a `/health` served away from the model calls: `degraded` while a
/// recorded breaker is open or probing, with each one's target and since when in the details.
/// Never critical.
pub struct ObservedBreakers(pub std::sync::Arc<dyn Store>);

#[async_trait::async_trait]
impl HealthCheck for ObservedBreakers {
    fn name(&self) -> &'static str {
        "ai"
    }

    fn critical(&self) -> bool {
        false
    }

    async fn check(&self) -> Finding {
        let observed = match read(self.0.as_ref()).await {
            Ok(observed) => observed,
            Err(err) => return Finding::down(format!("breaker states unreadable: {err}")),
        };
        let open: Vec<&Observed> = observed
            .iter()
            .filter(|o| o.observation.state != BreakerState::Closed)
            .collect();
        let mut finding = Finding::ok();
        if !open.is_empty() {
            finding.status = Status::Degraded;
            finding.message = Some(format!(
                "circuit open: {}",
                open.iter()
                    .map(|o| o.target.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        finding.with_detail(
            "breakers",
            serde_json::to_value(&observed).unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jarvis_crdt::{Codec, ReplicaId, Timestamp};

    #[test]
    fn an_observation_keeps_its_stored_form() {
        let register = LwwRegister::with(
            Timestamp::new(1_795_348_800_000, 0, ReplicaId::from_u64(3)),
            Observation {
                since: 1_795_348_800,
                state: BreakerState::Open,
            },
        );
        let bytes = register.encode().expect("encode");
        assert_eq!(hex::encode(&bytes), GOLDEN, "the stored form changed");
        assert_eq!(
            LwwRegister::<Observation>::decode(&bytes).expect("decode"),
            register
        );
    }

    /// Magic and format version, the register's tag, then postcard: the stamp present
    /// (wall ms, logical, replica as varints), `since` (zigzag varint), the state's index.
    const GOLDEN: &str = "4a0104000180c48299a034000380e596b00d01";
}
