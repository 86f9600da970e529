//! What each user's calls used and cost, per calendar month and model.
//!
//! Every call adds its input tokens, output tokens and cost to three grow-only counters of
//! the user's partition (`usage#<user>`, sorted `<YYYY-MM>#<provider>:<model>#<measure>`),
//! and its tokens to the day's and the month's totals (`total#<YYYY-MM-DD>`,
//! `total#<YYYY-MM>`), so concurrent calls on any instance or replica all count. Cost is in
//! millionths of a US dollar, from the deployment's [`Prices`]; a model without a price costs
//! nothing.

use std::collections::BTreeMap;

use jarvis_crdt::{GCounter, ReplicaId};
use jarvis_store::{Key, MergeOptions, Store, StoreError};
use serde::Serialize;

use crate::Usage;
use crate::quota::Period;

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
    let (label, end) = Period::Month.at(now);
    let (day, day_end) = Period::Day.at(now);
    let tokens = usage.input_tokens.saturating_add(usage.output_tokens);
    let counters = MEASURES
        .iter()
        .zip([usage.input_tokens, usage.output_tokens, cost_micros])
        .map(|(measure, amount)| (format!("{label}#{provider}:{model}#{measure}"), amount, end))
        .chain([
            (format!("total#{day}"), tokens, day_end),
            (format!("total#{label}"), tokens, end),
        ]);
    for (sort, amount, end) in counters {
        if amount == 0 {
            continue;
        }
        let options = MergeOptions {
            expires_at: Some(end.saturating_add(KEEP_SECS)),
            ..MergeOptions::default()
        };
        store
            .update_with(
                &Key::new(format!("usage#{user}"), sort)?,
                |counter: &mut GCounter| counter.increment(replica, amount),
                options,
            )
            .await?;
    }
    Ok(())
}

/// The tokens `user`'s settled calls used in the period containing `now`, every model.
pub async fn tokens(
    store: &dyn Store,
    user: &str,
    period: Period,
    now: i64,
) -> Result<u64, StoreError> {
    let (label, _) = period.at(now);
    let key = Key::new(format!("usage#{user}"), format!("total#{label}"))?;
    let counter = store.read::<GCounter>(&key).await?;
    Ok(counter.map_or(0, |doc| doc.state.value()))
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
    let (label, _) = Period::Month.at(now);
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
}
