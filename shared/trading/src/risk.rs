//! The risk engine: one pure function, run before every order, that either lets it through
//! or refuses it with a stable code and a reason. The checks, in order:
//!
//! | code | refuses |
//! | --- | --- |
//! | `unknown_instrument` | a symbol that is not listed |
//! | `invalid_quantity` | a quantity that is not a whole number of lots within the instrument's bounds |
//! | `invalid_price` | a limit price that is not a whole number of ticks, or a limit on a market order |
//! | `max_order_notional` | an order worth more than the configured maximum |
//! | `insufficient_funds` | a buy worth more than the free cash (cash less what open buys hold) |
//! | `insufficient_position` | a sell of more than is held and not already being sold |
//! | `trading_halted` | anything while trading is halted (cancels are not orders) |
//! | `reducing_only` | an order that does not shrink a position while trading is reducing |
//! | `rate_limited` | more orders in the last minute than the configured rate |
//! | `symbol_cooldown` | a buy of a symbol locked after a losing trade, until the lock ends |
//! | `max_drawdown` | a buy while the account is locked for its drawdown from its peak |
//! | `stoploss_guard` | a buy while the account is locked after too many losing trades |
//! | `daily_notional` | an order worth more than this replica's rights to the day's notional |
//!
//! Sells that shrink a position pass the protections: a lock stops new risk, not its exit.

use jiff::civil::Date;

use crate::instrument::Instrument;
use crate::money::{Decimal, bps, cents};
use crate::order::{OrderRequest, OrderType, Side};
use crate::state::TradingState;

/// A refused order: a stable code and what it means here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code (see the module documentation).
    pub code: &'static str,
    /// Why, for the user.
    pub reason: String,
}

fn refuse(code: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        code,
        reason: reason.into(),
    }
}

/// The limits the engine enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most an order may be worth, in dollars.
    pub max_order_notional: Decimal,
    /// Orders a minute at most.
    pub orders_per_minute: u32,
    /// Slippage and fee, in basis points, a market buy is assumed to pay on top of the
    /// reference price when its worth is checked.
    pub buffer_bps: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_order_notional: Decimal::from(100_000),
            orders_per_minute: 60,
            buffer_bps: 50,
        }
    }
}

/// A lock on new risk, until a replay date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    /// Why: `symbol_cooldown`, `max_drawdown`, `stoploss_guard`.
    pub code: &'static str,
    /// The first date it no longer holds.
    pub until: Date,
}

/// What the engine sees of the world when an order arrives.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The instrument, when the symbol is listed.
    pub instrument: Option<&'a Instrument>,
    /// The price the order's worth is reckoned at: its limit, or the last close.
    pub reference_price: Decimal,
    /// Cash not held by open buys.
    pub free_cash: Decimal,
    /// Quantity held and not already being sold by open sells.
    pub free_position: Decimal,
    /// The kill switch.
    pub state: TradingState,
    /// Orders placed in the last minute.
    pub recent_orders: u32,
    /// The replay date.
    pub today: Date,
    /// A lock on the symbol, if any.
    pub symbol_lock: Option<Lock>,
    /// A lock on the account, if any.
    pub account_lock: Option<Lock>,
    /// This replica's rights left to the day's notional, in cents.
    pub notional_rights: u64,
}

/// Checks `order` against `context` and `limits`: its notional (the reference price times
/// the quantity) when it may go on, or the first refusal in the order of the module table.
pub fn check(order: &OrderRequest, context: &Context, limits: &Limits) -> Result<Decimal, Refusal> {
    let Some(instrument) = context.instrument else {
        return Err(refuse(
            "unknown_instrument",
            format!("{} is not a listed instrument", order.symbol),
        ));
    };
    if !instrument.quantity_ok(order.quantity) {
        return Err(refuse(
            "invalid_quantity",
            format!(
                "quantities of {} are whole multiples of {} from {} to {}",
                instrument.symbol,
                instrument.lot_size,
                instrument.min_quantity,
                instrument.max_quantity
            ),
        ));
    }
    match (order.order_type, order.limit_price) {
        (OrderType::Limit, Some(limit)) if instrument.price_ok(limit) => {}
        (OrderType::Limit, _) => {
            return Err(refuse(
                "invalid_price",
                format!(
                    "a limit price of {} is a positive multiple of {}",
                    instrument.symbol, instrument.tick_size
                ),
            ));
        }
        (OrderType::Market, Some(_)) => {
            return Err(refuse("invalid_price", "a market order has no limit price"));
        }
        (OrderType::Market, None) => {}
    }
    let notional = context.reference_price * order.quantity;
    if notional > limits.max_order_notional {
        return Err(refuse(
            "max_order_notional",
            format!(
                "the order is worth {notional}, above the most an order may be worth, {}",
                limits.max_order_notional
            ),
        ));
    }
    match order.side {
        Side::Buy => {
            let cost = notional + bps(notional, limits.buffer_bps);
            if cost > context.free_cash {
                return Err(refuse(
                    "insufficient_funds",
                    format!(
                        "the order may cost {cost}, more than the free cash, {}",
                        context.free_cash
                    ),
                ));
            }
        }
        Side::Sell => {
            if order.quantity > context.free_position {
                return Err(refuse(
                    "insufficient_position",
                    format!(
                        "{} of {} held and not already being sold; no short sales",
                        context.free_position, order.symbol
                    ),
                ));
            }
        }
    }
    let reduces = order.side == Side::Sell;
    match context.state {
        TradingState::Halted => {
            return Err(refuse(
                "trading_halted",
                "trading is halted: only cancels are taken",
            ));
        }
        TradingState::Reducing if !reduces => {
            return Err(refuse(
                "reducing_only",
                "trading is reducing: only orders that shrink a position are taken",
            ));
        }
        _ => {}
    }
    if context.recent_orders >= limits.orders_per_minute {
        return Err(refuse(
            "rate_limited",
            format!("at most {} orders a minute", limits.orders_per_minute),
        ));
    }
    if !reduces {
        for lock in [context.symbol_lock, context.account_lock]
            .into_iter()
            .flatten()
        {
            if context.today < lock.until {
                let what = match lock.code {
                    "symbol_cooldown" => {
                        format!("{} cools down after a losing trade", order.symbol)
                    }
                    "max_drawdown" => "the account fell too far from its peak".to_owned(),
                    _ => "the account lost on too many trades in a row".to_owned(),
                };
                return Err(refuse(
                    lock.code,
                    format!("{what}; no new risk until {}", lock.until),
                ));
            }
        }
    }
    if cents(notional) > context.notional_rights {
        return Err(refuse(
            "daily_notional",
            format!(
                "the order is worth more than is left of the day's notional on this deployment ({} cents)",
                context.notional_rights
            ),
        ));
    }
    Ok(notional)
}
