//! The paper exchange: how an order trades against a day's bar.
//!
//! - A **market** order fills at the bar's open plus slippage (up for a buy, down for a
//!   sell, in basis points), kept within the bar's low and high and rounded to the tick
//!   against the trader.
//! - A **limit** buy fills when the bar's low reaches its limit, at the limit or the open
//!   if lower; a limit sell when the high reaches it, at the limit or the open if higher.
//! - A fee in basis points of the notional, rounded up to the cent.
//! - A fill is partial with the probability given, for 30 to 90 % of what remains (whole
//!   lots), drawn from a random source seeded by the order's id and the fill's number: the
//!   same order on the same bars always fills the same way.
//! - A buy never spends more cash than the account has, nor a sell more than it holds:
//!   what cannot be afforded waits (or ends, for `day` and `ioc`).
//! - After its first session an `ioc` order's rest is cancelled and a `day` order's rest
//!   expires; a `gtc` order waits.
//!
//! [`Broker`] is the trait a real broker would implement; [`PaperExchange`] is the only one.

use jiff::civil::Date;

use crate::bars::Bar;
use crate::instrument::Instrument;
use crate::money::{Decimal, Round, bps, to_cent, to_step};
use crate::order::{Order, OrderType, Side, TimeInForce};

/// The exchange's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Slippage of market orders, in basis points.
    pub slippage_bps: u32,
    /// The fee, in basis points of the notional.
    pub fee_bps: u32,
    /// How often a fill is partial, in percent.
    pub partial_fill_percent: u8,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            slippage_bps: 5,
            fee_bps: 1,
            partial_fill_percent: 10,
        }
    }
}

/// What the account can trade with when the order meets the bar.
#[derive(Debug, Clone, Copy)]
pub struct Funds {
    /// Cash free to spend.
    pub cash: Decimal,
    /// The quantity of the instrument held.
    pub position: Decimal,
}

/// What happened to an order in one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// The fill, if it traded: quantity, price, fee.
    pub fill: Option<(Decimal, Decimal, Decimal)>,
    /// How the rest of the order ends after this session, if it does: (status code,
    /// reason). `ioc` and `day` orders end after their first session.
    pub ends: Option<EndOfOrder>,
}

/// How an order's rest ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOfOrder {
    /// Cancelled (`ioc`).
    Canceled,
    /// Expired (`day`).
    Expired,
}

/// Executes orders.
pub trait Broker: Send + Sync {
    /// What `order` (of `instrument`) does in the session of `bar`, the first session it
    /// may trade in when `first`, given `funds`.
    fn execute(
        &self,
        order: &Order,
        instrument: &Instrument,
        bar: &Bar,
        first: bool,
        funds: Funds,
    ) -> Execution;
}

/// The simulated exchange.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaperExchange {
    /// Its settings.
    pub params: Params,
}

/// The seed of an order's `n`-th fill's random draws.
fn seed(order_id: &str, n: usize) -> u64 {
    // FNV-1a: fixed across builds and platforms.
    order_id
        .bytes()
        .chain(n.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

impl PaperExchange {
    /// The price `order` trades at in the session of `bar`, if it trades.
    pub fn price(&self, order: &Order, instrument: &Instrument, bar: &Bar) -> Option<Decimal> {
        let side = order.request.side;
        match order.request.order_type {
            OrderType::Market => {
                let slip = bps(bar.open, self.params.slippage_bps);
                let (raw, round) = match side {
                    Side::Buy => (bar.open + slip, Round::Up),
                    Side::Sell => (bar.open - slip, Round::Down),
                };
                let price = to_step(raw.clamp(bar.low, bar.high), instrument.tick_size, round);
                // Rounding against the trader may step past the bar: back within it.
                Some(
                    if price > bar.high {
                        to_step(bar.high, instrument.tick_size, Round::Down)
                    } else if price < bar.low {
                        to_step(bar.low, instrument.tick_size, Round::Up)
                    } else {
                        price
                    }
                    .max(instrument.tick_size),
                )
            }
            OrderType::Limit => {
                let limit = order.request.limit_price?;
                match side {
                    Side::Buy if bar.low <= limit => Some(
                        limit.min(
                            to_step(bar.open, instrument.tick_size, Round::Up)
                                .max(instrument.tick_size),
                        ),
                    ),
                    Side::Sell if bar.high >= limit => {
                        Some(limit.max(to_step(bar.open, instrument.tick_size, Round::Down)))
                    }
                    _ => None,
                }
            }
        }
    }

    /// The fee of trading `notional`.
    pub fn fee(&self, notional: Decimal) -> Decimal {
        let fee = bps(notional, self.params.fee_bps);
        let cents = to_cent(fee);
        if cents < fee {
            cents + Decimal::new(1, 2)
        } else {
            cents
        }
    }
}

impl Broker for PaperExchange {
    fn execute(
        &self,
        order: &Order,
        instrument: &Instrument,
        bar: &Bar,
        first: bool,
        funds: Funds,
    ) -> Execution {
        let ends = if first {
            match order.request.time_in_force {
                TimeInForce::Ioc => Some(EndOfOrder::Canceled),
                TimeInForce::Day => Some(EndOfOrder::Expired),
                TimeInForce::Gtc => None,
            }
        } else {
            None
        };
        let nothing = Execution { fill: None, ends };
        let Some(price) = self.price(order, instrument, bar) else {
            return nothing;
        };
        let lot = instrument.lot_size;
        let mut quantity = order.remaining();
        let n = order.fills.len() + 1;
        let mut rng = fastrand::Rng::with_seed(seed(&order.id, n));
        if rng.u64(0..100) < u64::from(self.params.partial_fill_percent) {
            let share = Decimal::from(rng.u64(30..=90)) / Decimal::ONE_HUNDRED;
            quantity = to_step(quantity * share, lot, Round::Down)
                .max(lot)
                .min(quantity);
        }
        quantity = match order.request.side {
            Side::Sell => quantity.min(to_step(funds.position, lot, Round::Down)),
            Side::Buy => {
                // The most whole lots the cash pays for, fee included.
                let per_lot = price * lot;
                let with_fee = per_lot * (Decimal::ONE + bps(Decimal::ONE, self.params.fee_bps));
                let affordable = (funds.cash.max(Decimal::ZERO) / with_fee).floor();
                let mut lots = (to_step(quantity, lot, Round::Down) / lot).min(affordable);
                // The fee rounds up to the cent: a lot less when that tips it over.
                while lots > Decimal::ZERO && per_lot * lots + self.fee(per_lot * lots) > funds.cash
                {
                    lots -= Decimal::ONE;
                }
                lots * lot
            }
        };
        if quantity <= Decimal::ZERO {
            return nothing;
        }
        let fee = self.fee(price * quantity);
        // What remains after a partial fill ends with the session for `ioc` and `day`.
        let rest_ends = (quantity < order.remaining()).then_some(()).and(ends);
        Execution {
            fill: Some((quantity, price, fee)),
            ends: rest_ends,
        }
    }
}

/// The session a just-placed order first trades in: the first bar after its placing date.
pub fn first_session(placed_on: Date, bar: &Bar) -> bool {
    bar.date > placed_on
}
