//! What each user's calls used and cost, per calendar month and model.
//!
//! Every call adds its input tokens, output tokens and cost to three grow-only counters of
//! the user's partition (`usage#<user>`, sorted `<YYYY-MM>#<provider>:<model>#<measure>`),
//! so concurrent calls on any instance or replica all count. Cost is in millionths of a US
//! dollar, from the deployment's [`Prices`]; a model without a price costs nothing.

use std::collections::BTreeMap;

use jarvis_crdt::{GCounter, ReplicaId};
use jarvis_store::{Key, MergeOptions, Store, StoreError};
use serde::Serialize;
use time::OffsetDateTime;

use crate::Usage;

/// Usage documents are kept this long after their month, for reports.
const KEEP_SECS: i64 = 400 * 24 * 3600;

/// The most documents one report reads (three per model).
const MAX_REPORT_DOCUMENTS: usize = 3_000;

/// A model's price, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Per million input tokens.
    pub input_per_million: f64,
    /// Per million output tokens.
    pub output_per_million: f64,
}

/// The deployment's price table: `(provider, model)` → price.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices(pub Vec<((String, String), Price)>);

impl Prices {
    /// What `usage` of `model` at `provider` costs, in millionths of a dollar, rounded up.
    pub fn cost_micros(&self, provider: &str, model: &str, usage: Usage) -> u64 {
        let Some((_, price)) = self
            .0
            .iter()
            .find(|((p, m), _)| p == provider && m == model)
        else {
            return 0;
        };
        // dollars per million tokens = millionths of a dollar per token.
        let micros = usage.input_tokens as f64 * price.input_per_million
            + usage.output_tokens as f64 * price.output_per_million;
        micros.ceil().clamp(0.0, u64::MAX as f64) as u64
    }
}

/// The month label (`YYYY-MM`) of `now` (unix seconds), and when that month ends.
fn month(now: i64) -> (String, i64) {
    let date = OffsetDateTime::from_unix_timestamp(now)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .date();
    let (year, m) = (date.year(), date.month());
    let (next_year, next) = match m {
        time::Month::December => (year + 1, time::Month::January),
        other => (year, other.next()),
    };
    let end = time::Date::from_calendar_date(next_year, next, 1)
        .map_or(i64::MAX, |d| d.midnight().assume_utc().unix_timestamp());
    (format!("{year:04}-{:02}", u8::from(m)), end)
}

const MEASURES: [&str; 3] = ["input", "output", "cost"];

/// Adds one call's usage and cost to `user`'s month.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    store: &dyn Store,
    replica: ReplicaId,
    user: &str,
    provider: &str,
    model: &str,
    usage: Usage,
    cost_micros: u64,
    now: i64,
) -> Result<(), StoreError> {
    let (label, end) = month(now);
    let options = MergeOptions {
        expires_at: Some(end.saturating_add(KEEP_SECS)),
        ..MergeOptions::default()
    };
    for (measure, amount) in
        MEASURES
            .iter()
            .zip([usage.input_tokens, usage.output_tokens, cost_micros])
    {
        if amount == 0 {
            continue;
        }
        let key = Key::new(
            format!("usage#{user}"),
            format!("{label}#{provider}:{model}#{measure}"),
        )?;
        store
            .update_with(
                &key,
                |counter: &mut GCounter| counter.increment(replica, amount),
                options,
            )
            .await?;
    }
    Ok(())
}

/// One model's usage in a month.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelUsage {
    /// `provider:model`.
    pub model: String,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in millionths of a US dollar.
    pub cost_micros: u64,
}

/// `user`'s usage per model in the month containing `now`, by model name.
pub async fn month_report(
    store: &dyn Store,
    user: &str,
    now: i64,
) -> Result<Vec<ModelUsage>, StoreError> {
    let (label, _) = month(now);
    let prefix = format!("{label}#");
    let page = store
        .list_documents::<GCounter>(
            &format!("usage#{user}"),
            Some(&prefix),
            None,
            MAX_REPORT_DOCUMENTS,
        )
        .await?;
    let mut models: BTreeMap<String, ModelUsage> = BTreeMap::new();
    for doc in page.items {
        let rest = &doc.key.sort()[prefix.len()..];
        let Some((model, measure)) = rest.rsplit_once('#') else {
            continue;
        };
        let entry = models
            .entry(model.to_owned())
            .or_insert_with(|| ModelUsage {
                model: model.to_owned(),
                ..ModelUsage::default()
            });
        let value = doc.state.value();
        match measure {
            "input" => entry.input_tokens = value,
            "output" => entry.output_tokens = value,
            "cost" => entry.cost_micros = value,
            _ => {}
        }
    }
    Ok(models.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_the_price_per_million_tokens_rounded_up_to_a_millionth() {
        let prices = Prices(vec![(
            ("openai".into(), "gpt-4o".into()),
            Price {
                input_per_million: 2.5,
                output_per_million: 10.0,
            },
        )]);
        let usage = Usage {
            input_tokens: 1_000,
            output_tokens: 201,
        };
        // 1,000 × 2.5 + 201 × 10 = 4,510 millionths of a dollar.
        assert_eq!(prices.cost_micros("openai", "gpt-4o", usage), 4_510);
        assert_eq!(
            prices.cost_micros(
                "openai",
                "gpt-4o",
                Usage {
                    input_tokens: 1,
                    output_tokens: 0
                }
            ),
            3,
            "2.5 rounds up"
        );
        assert_eq!(prices.cost_micros("local", "smollm2", usage), 0);
    }

    #[test]
    fn months_are_utc_calendar_months() {
        // 2026-11-22T12:00:00Z; December starts at 1_796_083_200.
        assert_eq!(month(1_795_348_800), ("2026-11".into(), 1_796_083_200));
    }
}
