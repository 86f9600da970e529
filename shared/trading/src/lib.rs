//! Paper trading: a signal becomes an order only through validation and the risk engine, is
//! executed by a simulated exchange against historical bars on a replay clock, and is
//! settled into a double-entry ledger; every step is audited and safe to retry.
//!
//! - [`money`]: decimal amounts (never floating point), ticks, lots, basis points.
//! - [`instrument`]: symbols and what an order on each must respect.
//! - [`bars`]: daily OHLCV bars, read from CSV (split-adjusted) into the store, and the
//!   [`bars::BarFeed`] that serves them.
//! - [`strategy`]: an SMA crossover and an RSI mean reversion, as signals from closes.
//! - [`risk`]: the risk engine, one pure function run before every order.
//! - [`order`]: orders and their lattice (status by rank, terminal states absorbing, filled
//!   quantity by maximum, fills as a grow-only set).
//! - [`exchange`]: the paper exchange behind the [`exchange::Broker`] trait.
//! - [`ledger`]: double-entry transactions and the book (cash, positions, P&L) they make.
//! - [`state`]: the kill switch, where the most restrictive state wins across replicas.
//! - [`escrow`]: the daily notional limit, escrowed per replica in a bounded counter.
//! - [`backtest`]: strategies over history beside buy-and-hold, with an SVG chart.
//! - [`service`]: the pipeline over the store.
//!
//! Owns these documents and the trading rules; changes when a rule or a stored form does.
//! Imports the store, the CRDTs and realtime (fills announced on the `trading` topic).
#![deny(missing_docs)]

pub mod backtest;
pub mod bars;
pub mod escrow;
pub mod exchange;
pub mod instrument;
pub mod ledger;
pub mod money;
pub mod order;
pub mod risk;
pub mod service;
pub mod state;
pub mod strategy;

pub use instrument::{Instrument, Symbol};
pub use money::Decimal;
pub use order::{Order, OrderRequest, OrderType, Side, Status, TimeInForce};
pub use risk::Refusal;
pub use service::Trading;

use jarvis_store::StoreError;

/// Why a trading request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TradingError {
    /// A field is malformed or names what does not exist (a 400 naming it).
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A schema-valid request a rule refuses (a 422).
    #[error("{field}: {message}")]
    Unprocessable {
        /// The field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (cancelling a finished order).
    #[error("{0}")]
    Conflict(String),
    /// The market data could not be read.
    #[error("market data: {0}")]
    Import(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TradingError {
    /// A 400 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests;
