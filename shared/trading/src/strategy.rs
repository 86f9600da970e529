//! Strategies: what position to hold after each close, from the closes so far, and the
//! signals that changes of it make. Indicators are ratios of prices, so they are computed in
//! floating point; the orders they lead to are priced in decimals.

use serde::{Deserialize, Serialize};

use crate::order::Side;

/// A strategy and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum Strategy {
    /// Long while the fast simple moving average of closes is above the slow one.
    SmaCrossover {
        /// The fast average's closes (2 to 250).
        fast: usize,
        /// The slow average's closes (more than `fast`, at most 250).
        slow: usize,
    },
    /// Long from a close where Wilder's RSI falls below `oversold` until one where it rises
    /// above `overbought`.
    RsiReversion {
        /// The RSI's closes (2 to 100).
        period: usize,
        /// Below this, buy (0 to 100, less than `overbought`).
        oversold: f64,
        /// Above this, sell.
        overbought: f64,
    },
}

impl Strategy {
    /// The usual parameters: SMA 20/50.
    pub const SMA_20_50: Self = Self::SmaCrossover { fast: 20, slow: 50 };

    /// Its name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SmaCrossover { .. } => "sma_crossover",
            Self::RsiReversion { .. } => "rsi_reversion",
        }
    }

    /// Checks the parameters; the message names the one at fault.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        match *self {
            Self::SmaCrossover { fast, slow } => {
                if !(2..=250).contains(&fast) {
                    return Err(("fast", "must be 2 to 250".into()));
                }
                if slow <= fast || slow > 250 {
                    return Err(("slow", "must be more than fast and at most 250".into()));
                }
            }
            Self::RsiReversion {
                period,
                oversold,
                overbought,
            } => {
                if !(2..=100).contains(&period) {
                    return Err(("period", "must be 2 to 100".into()));
                }
                if !(oversold.is_finite() && oversold > 0.0 && oversold < 100.0) {
                    return Err(("oversold", "must be between 0 and 100".into()));
                }
                if !(overbought.is_finite() && overbought > oversold && overbought < 100.0) {
                    return Err((
                        "overbought",
                        "must be more than oversold and below 100".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Closes needed before the first decision.
    pub fn warmup(&self) -> usize {
        match *self {
            Self::SmaCrossover { slow, .. } => slow,
            Self::RsiReversion { period, .. } => period + 1,
        }
    }

    /// Whether to hold a position after each close.
    pub fn holds(&self, closes: &[f64]) -> Vec<bool> {
        match *self {
            Self::SmaCrossover { fast, slow } => {
                let fast = sma(closes, fast);
                let slow = sma(closes, slow);
                fast.iter()
                    .zip(&slow)
                    .map(|(f, s)| matches!((f, s), (Some(f), Some(s)) if f > s))
                    .collect()
            }
            Self::RsiReversion {
                period,
                oversold,
                overbought,
            } => {
                let mut holding = false;
                rsi(closes, period)
                    .into_iter()
                    .map(|rsi| {
                        match rsi {
                            Some(r) if r < oversold => holding = true,
                            Some(r) if r > overbought => holding = false,
                            _ => {}
                        }
                        holding
                    })
                    .collect()
            }
        }
    }

    /// The signal of the last close: a buy when the strategy now holds and did not, a sell
    /// when it no longer does.
    pub fn signal(&self, closes: &[f64]) -> Option<Side> {
        let holds = self.holds(closes);
        let now = *holds.last()?;
        let before = holds
            .len()
            .checked_sub(2)
            .map(|i| holds[i])
            .unwrap_or(false);
        match (before, now) {
            (false, true) => Some(Side::Buy),
            (true, false) => Some(Side::Sell),
            _ => None,
        }
    }
}

/// The simple moving average of `window` closes at each index (`None` before it has them).
pub fn sma(closes: &[f64], window: usize) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(closes.len());
    let mut sum = 0.0;
    for (i, close) in closes.iter().enumerate() {
        sum += close;
        if i >= window {
            sum -= closes[i - window];
        }
        out.push((i + 1 >= window).then(|| sum / window as f64));
    }
    out
}

/// Wilder's relative strength index over `period` changes at each index.
pub fn rsi(closes: &[f64], period: usize) -> Vec<Option<f64>> {
    let mut out = vec![None; closes.len()];
    if closes.len() <= period {
        return out;
    }
    let (mut gain, mut loss) = (0.0, 0.0);
    for i in 1..=period {
        let change = closes[i] - closes[i - 1];
        gain += change.max(0.0);
        loss += (-change).max(0.0);
    }
    let n = period as f64;
    let (mut avg_gain, mut avg_loss) = (gain / n, loss / n);
    let value = |g: f64, l: f64| {
        if l == 0.0 {
            100.0
        } else {
            100.0 - 100.0 / (1.0 + g / l)
        }
    };
    out[period] = Some(value(avg_gain, avg_loss));
    for i in period + 1..closes.len() {
        let change = closes[i] - closes[i - 1];
        avg_gain = (avg_gain * (n - 1.0) + change.max(0.0)) / n;
        avg_loss = (avg_loss * (n - 1.0) + (-change).max(0.0)) / n;
        out[i] = Some(value(avg_gain, avg_loss));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_averages_and_rsi_match_worked_values() {
        assert_eq!(
            sma(&[1.0, 2.0, 3.0, 4.0], 2),
            vec![None, Some(1.5), Some(2.5), Some(3.5)]
        );
        // Wilder's example (New Concepts in Technical Trading Systems): 14 closes up and
        // down, the first RSI near 70.5.
        let closes = [
            44.3389, 44.0902, 44.1497, 43.6124, 44.3278, 44.8264, 45.0955, 45.4245, 45.8433,
            46.0826, 45.8931, 46.0328, 45.6140, 46.2820, 46.2820,
        ];
        let first = rsi(&closes, 14)[14].expect("rsi");
        assert!((first - 70.53).abs() < 0.05, "{first}");
    }

    #[test]
    fn a_crossover_holds_while_the_fast_average_is_above_and_signals_at_the_changes() {
        let strategy = Strategy::SmaCrossover { fast: 2, slow: 3 };
        let closes = [10.0, 10.0, 10.0, 12.0, 14.0, 9.0, 8.0];
        let holds = strategy.holds(&closes);
        assert_eq!(holds, [false, false, false, true, true, false, false]);
        assert_eq!(strategy.signal(&closes[..4]), Some(Side::Buy));
        assert_eq!(strategy.signal(&closes[..5]), None);
        assert_eq!(strategy.signal(&closes[..6]), Some(Side::Sell));
    }

    #[test]
    fn parameters_are_checked_by_name() {
        assert_eq!(Strategy::SMA_20_50.check(), Ok(()));
        let wrong = Strategy::SmaCrossover { fast: 50, slow: 20 };
        assert_eq!(wrong.check().expect_err("slow").0, "slow");
        let rsi = Strategy::RsiReversion {
            period: 14,
            oversold: 70.0,
            overbought: 30.0,
        };
        assert_eq!(rsi.check().expect_err("overbought").0, "overbought");
    }
}
