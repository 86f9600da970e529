//! Orders, and the lattice their stored state is: the status by rank with terminal states
//! absorbing (no merge can bring a filled or cancelled order back), the filled quantity by
//! maximum, the fills as a grow-only set of fill ids. Merge on write and sync keep an order
//! consistent whatever order its changes arrive in.

use jarvis_crdt::{Crdt, Entity, Timestamp};
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::instrument::Symbol;
use crate::money::Decimal;

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

impl Side {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Buy => "buy",
            Self::Sell => "sell",
        }
    }
}

/// At the market, or at a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderType {
    /// At the next bar's open (and slippage).
    Market,
    /// At the limit price or better.
    Limit,
}

/// How long an order stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeInForce {
    /// Until the end of the next session: what is not filled then expires.
    Day,
    /// Until cancelled.
    Gtc,
    /// Immediate or cancel: the next session's open only; the rest is cancelled.
    Ioc,
}

/// An order's status, as brokers name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Received, not yet checked.
    New,
    /// Passed the risk check; waiting for the exchange.
    Accepted,
    /// Some of it filled.
    PartiallyFilled,
    /// Cancelled (by the user, or the rest of an `ioc` order).
    Canceled,
    /// A `day` order the session ended on.
    Expired,
    /// All of it filled.
    Filled,
    /// Refused by validation or the risk engine.
    Rejected,
}

impl Status {
    /// Every status, by rank.
    pub const ALL: [Status; 7] = [
        Self::New,
        Self::Accepted,
        Self::PartiallyFilled,
        Self::Canceled,
        Self::Expired,
        Self::Filled,
        Self::Rejected,
    ];

    /// Its rank in the lattice: terminal states rank above every open one.
    pub fn rank(self) -> u64 {
        match self {
            Self::New => 1,
            Self::Accepted => 2,
            Self::PartiallyFilled => 3,
            Self::Canceled => 10,
            Self::Expired => 11,
            Self::Filled => 12,
            Self::Rejected => 13,
        }
    }

    /// The status of a rank (the highest at or below it).
    pub fn of_rank(rank: u64) -> Self {
        Self::ALL
            .into_iter()
            .rev()
            .find(|s| s.rank() <= rank)
            .unwrap_or(Self::New)
    }

    /// Whether nothing changes it any more.
    pub fn is_terminal(self) -> bool {
        self.rank() >= Self::Canceled.rank()
    }

    /// Its name: `new`, `accepted`, `partially_filled`, `filled`, `canceled`, `expired`,
    /// `rejected`.
    pub fn name(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Accepted => "accepted",
            Self::PartiallyFilled => "partially_filled",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
            Self::Filled => "filled",
            Self::Rejected => "rejected",
        }
    }
}

/// An order as asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// The client's id for it: a retry with the same id is the same order.
    pub client_order_id: String,
    /// The instrument.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: Side,
    /// Market or limit.
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// How much.
    pub quantity: Decimal,
    /// The limit, for a limit order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_price: Option<Decimal>,
    /// How long it stays open.
    pub time_in_force: TimeInForce,
}

impl OrderRequest {
    /// What identifies the request for idempotency: its stored form.
    pub fn fingerprint(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One fill of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fill {
    /// Its number within the order, from 1.
    pub n: u32,
    /// The session it happened in.
    pub date: Date,
    /// How much.
    pub quantity: Decimal,
    /// At what price.
    pub price: Decimal,
    /// The fee charged.
    pub fee: Decimal,
}

/// An order and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Its id.
    pub id: String,
    /// What was asked.
    pub request: OrderRequest,
    /// Where it is.
    pub status: Status,
    /// How much filled.
    pub filled: Decimal,
    /// Its fills, in order.
    pub fills: Vec<Fill>,
    /// The replay date it was placed on: it trades from the next session.
    pub placed_on: Date,
    /// When it was made, ms since the epoch.
    pub created_at_ms: u64,
    /// The signal it came from, if any.
    pub signal: Option<String>,
    /// Why it was rejected (a stable code) or ended early.
    pub reason_code: Option<String>,
    /// What the code means here.
    pub reason: Option<String>,
    /// Whether the user asked to cancel it.
    pub cancel_requested: bool,
}

/// Filled quantities as levels: in units of 10⁻⁸ (the wire's finest).
const QUANTITY_UNIT: i64 = 100_000_000;

fn level_of(quantity: Decimal) -> u64 {
    u64::try_from((quantity * Decimal::from(QUANTITY_UNIT)).trunc()).unwrap_or(u64::MAX)
}

fn quantity_of(level: u64) -> Decimal {
    (Decimal::from(level) / Decimal::from(QUANTITY_UNIT)).normalize()
}

impl Order {
    /// The quantity left to fill.
    pub fn remaining(&self) -> Decimal {
        (self.request.quantity - self.filled).max(Decimal::ZERO)
    }

    /// The average fill price, when anything filled.
    pub fn average_price(&self) -> Option<Decimal> {
        let quantity: Decimal = self.fills.iter().map(|f| f.quantity).sum();
        (quantity > Decimal::ZERO).then(|| {
            let cost: Decimal = self.fills.iter().map(|f| f.price * f.quantity).sum();
            (cost / quantity).round_dp(8).normalize()
        })
    }

    /// The stored state of a new order (its golden form is `tests/golden/order.json`).
    pub fn create(&self, stamp: Timestamp) -> Entity {
        let mut entity = Entity::new();
        let mut delta = entity.set("request", stamp, self.request.fingerprint());
        delta.join(entity.set("placed_on", stamp, self.placed_on.to_string()));
        delta.join(entity.set("created_at", stamp, self.created_at_ms.to_string()));
        if let Some(signal) = &self.signal {
            delta.join(entity.set("signal", stamp, signal.clone()));
        }
        if let (Some(code), Some(reason)) = (&self.reason_code, &self.reason) {
            delta.join(entity.set("reason_code", stamp, code.clone()));
            delta.join(entity.set("reason", stamp, reason.clone()));
        }
        delta.join(entity.raise("status", self.status.rank()));
        delta
    }

    /// The order a stored state holds.
    pub fn from_entity(id: &str, entity: &Entity) -> Option<Self> {
        let request: OrderRequest = serde_json::from_str(entity.field("request")?).ok()?;
        let mut fills: Vec<Fill> = entity
            .marks()
            .filter_map(|mark| mark.strip_prefix("fill:"))
            .filter_map(|n| serde_json::from_str(entity.field(&format!("fill:{n}"))?).ok())
            .collect();
        fills.sort_by_key(|f| f.n);
        let filled = quantity_of(entity.level("filled"));
        let mut status = Status::of_rank(entity.level("status"));
        if !status.is_terminal() && filled > Decimal::ZERO {
            status = status.max(Status::PartiallyFilled);
        }
        Some(Self {
            id: id.to_owned(),
            status,
            filled,
            fills,
            placed_on: entity.field("placed_on")?.parse().ok()?,
            created_at_ms: entity.field("created_at")?.parse().ok()?,
            signal: entity.field("signal").map(str::to_owned),
            reason_code: entity.field("reason_code").map(str::to_owned),
            reason: entity.field("reason").map(str::to_owned),
            cancel_requested: entity.has_mark("cancel"),
            request,
        })
    }
}

/// Records `fill` on an order's state: the fill (a mark and its details), the filled
/// quantity, and the status it makes (`filled` once nothing remains). Recording a fill twice
/// changes nothing.
pub fn record_fill(
    entity: &mut Entity,
    stamp: Timestamp,
    fill: &Fill,
    quantity: Decimal,
) -> Entity {
    let mark = format!("fill:{}", fill.n);
    if entity.has_mark(&mark) {
        return Entity::new();
    }
    let mut delta = entity.set(
        &mark,
        stamp,
        serde_json::to_string(fill).unwrap_or_default(),
    );
    delta.join(entity.mark(mark));
    let filled = quantity_of(entity.level("filled")) + fill.quantity;
    delta.join(entity.raise("filled", level_of(filled)));
    let status = if filled >= quantity {
        Status::Filled
    } else {
        Status::PartiallyFilled
    };
    delta.join(entity.raise("status", status.rank()));
    delta
}

/// Ends an order with `status` (cancelled, expired), saying why; nothing changes an order
/// that has ended.
pub fn end(
    entity: &mut Entity,
    stamp: Timestamp,
    status: Status,
    code: &str,
    reason: &str,
) -> Entity {
    if Status::of_rank(entity.level("status")).is_terminal() {
        return Entity::new();
    }
    let mut delta = entity.raise("status", status.rank());
    delta.join(entity.set("reason_code", stamp, code));
    delta.join(entity.set("reason", stamp, reason));
    delta
}

/// Raises an order to `status` (accepted): a rank it is past changes nothing.
pub fn advance(entity: &mut Entity, status: Status) -> Entity {
    entity.raise("status", status.rank())
}

/// Records the user's request to cancel (the worker that executes orders ends it).
pub fn request_cancel(entity: &mut Entity) -> Entity {
    if entity.has_mark("cancel") {
        return Entity::new();
    }
    entity.mark("cancel")
}
