//! The double-entry ledger: every change of an account is a transaction of postings that
//! balance, asset by asset, and the book — cash, positions, P&L — is what its transactions
//! add up to.
//!
//! | transaction | postings |
//! | --- | --- |
//! | a deposit of `a` | `cash` USD +a, `capital` USD −a |
//! | a buy of `q` at `p`, fee `f` | `cash` USD −(qp + f), `exchange` USD +qp, `fees` USD +f; `positions` SYM +q, `exchange` SYM −q |
//! | a sell of `q` at `p`, fee `f` | `cash` USD +(qp − f), `exchange` USD −qp, `fees` USD +f; `positions` SYM −q, `exchange` SYM +q |
//!
//! A transaction's key orders it (`<date>#<order's creation>#<order>#<fill>`: a session
//! trades its orders in the order they were placed), and the book remembers the key of the
//! last one it took in: applying a transaction again, or an older one, changes nothing, so
//! settling a fill twice settles it once.

use std::collections::BTreeMap;

use jarvis_crdt::Record;
use jarvis_store::{Key, Page, Site, StoreError};
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::money::Decimal;
use crate::order::{Fill, Order, Side};

/// The currency of every account.
pub const CASH: &str = "USD";

/// One line of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posting {
    /// The account: `cash`, `positions`, `fees`, `exchange` or `capital`.
    pub account: String,
    /// The asset: `USD` or a symbol.
    pub asset: String,
    /// The amount, signed.
    pub amount: Decimal,
}

fn posting(account: &str, asset: &str, amount: Decimal) -> Posting {
    Posting {
        account: account.to_owned(),
        asset: asset.to_owned(),
        amount,
    }
}

/// A balanced set of postings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    /// What orders it: `<date>#<order's creation, ms>#<order>#<fill>`, `<date>#deposit`.
    pub key: String,
    /// The session it belongs to.
    pub date: Date,
    /// `deposit` or `trade`.
    pub kind: String,
    /// The order it settles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// The fill it settles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill: Option<u32>,
    /// Its postings.
    pub postings: Vec<Posting>,
}

impl Transaction {
    /// A deposit of `amount` in cash on `date`.
    pub fn deposit(date: Date, amount: Decimal) -> Self {
        Self {
            key: format!("{date}#deposit"),
            date,
            kind: "deposit".into(),
            order: None,
            fill: None,
            postings: vec![
                posting("cash", CASH, amount),
                posting("capital", CASH, -amount),
            ],
        }
    }

    /// The settlement of `order`'s `fill`.
    pub fn trade(order: &Order, fill: &Fill) -> Self {
        let symbol = order.request.symbol.as_str();
        let notional = fill.quantity * fill.price;
        let sign = match order.request.side {
            Side::Buy => Decimal::ONE,
            Side::Sell => Decimal::NEGATIVE_ONE,
        };
        Self {
            key: format!(
                "{}#{:013}#{}#{:04}",
                fill.date, order.created_at_ms, order.id, fill.n
            ),
            date: fill.date,
            kind: "trade".into(),
            order: Some(order.id.clone()),
            fill: Some(fill.n),
            postings: vec![
                posting("cash", CASH, -sign * notional - fill.fee),
                posting("exchange", CASH, sign * notional),
                posting("fees", CASH, fill.fee),
                posting("positions", symbol, sign * fill.quantity),
                posting("exchange", symbol, -sign * fill.quantity),
            ],
        }
    }

    /// The fill it settles, as settled (for a trade).
    pub fn settled_fill(&self) -> Option<crate::order::Fill> {
        let asset = self
            .postings
            .iter()
            .find(|p| p.account == "positions" && p.asset != CASH)?
            .asset
            .clone();
        let quantity = self.amount("positions", &asset).abs();
        let notional = self.amount("exchange", CASH).abs();
        (quantity > Decimal::ZERO).then(|| crate::order::Fill {
            n: self.fill.unwrap_or(0),
            date: self.date,
            quantity,
            price: (notional / quantity).normalize(),
            fee: self.amount("fees", CASH),
        })
    }

    /// Whether its postings sum to zero for every asset.
    pub fn is_balanced(&self) -> bool {
        let mut sums: BTreeMap<&str, Decimal> = BTreeMap::new();
        for posting in &self.postings {
            *sums.entry(posting.asset.as_str()).or_default() += posting.amount;
        }
        sums.values().all(Decimal::is_zero)
    }

    /// What it posts to `account` in `asset`.
    pub fn amount(&self, account: &str, asset: &str) -> Decimal {
        self.postings
            .iter()
            .filter(|p| p.account == account && p.asset == asset)
            .map(|p| p.amount)
            .sum()
    }
}

/// A holding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// Quantity held.
    pub quantity: Decimal,
    /// What the held quantity cost, fees included (its average cost times the quantity).
    pub cost: Decimal,
    /// Profit or loss realized by selling it, fees included.
    pub realized: Decimal,
}

impl Position {
    /// The average cost of what is held.
    pub fn average_cost(&self) -> Option<Decimal> {
        (self.quantity > Decimal::ZERO).then(|| (self.cost / self.quantity).round_dp(8).normalize())
    }
}

/// What the transactions taken in so far add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Book {
    /// Cash.
    pub cash: Decimal,
    /// Holdings by symbol (one held at zero keeps its realized P&L).
    pub positions: BTreeMap<String, Position>,
    /// Fees paid.
    pub fees: Decimal,
    /// Cash deposited.
    pub capital: Decimal,
    /// The key of the last transaction taken in.
    pub through: String,
}

impl Book {
    /// Takes in `tx`, unless it is not after the last one taken in; answers the P&L a sell
    /// realized (`Some` for a sell, `None` otherwise or when nothing changed).
    pub fn apply(&mut self, tx: &Transaction) -> Option<Decimal> {
        if tx.key <= self.through {
            return None;
        }
        self.through.clone_from(&tx.key);
        self.cash += tx.amount("cash", CASH);
        self.fees += tx.amount("fees", CASH);
        self.capital -= tx.amount("capital", CASH);
        let mut realized = None;
        for traded in tx
            .postings
            .iter()
            .filter(|p| p.account == "positions" && p.asset != CASH)
        {
            let cash_side = tx.amount("cash", CASH);
            let position = self.positions.entry(traded.asset.clone()).or_default();
            if traded.amount > Decimal::ZERO {
                // A buy: its cost (price and fee) joins the holding's.
                position.quantity += traded.amount;
                position.cost -= cash_side;
            } else {
                let sold = -traded.amount;
                let cost = if position.quantity > Decimal::ZERO {
                    position.cost * sold / position.quantity
                } else {
                    Decimal::ZERO
                };
                let gain = cash_side - cost;
                position.quantity -= sold;
                position.cost -= cost;
                if position.quantity.is_zero() {
                    position.cost = Decimal::ZERO;
                }
                position.realized += gain;
                realized = Some(gain);
            }
        }
        realized
    }

    /// The quantity of `symbol` held.
    pub fn held(&self, symbol: &str) -> Decimal {
        self.positions
            .get(symbol)
            .map_or(Decimal::ZERO, |p| p.quantity)
    }

    /// Realized P&L of every holding.
    pub fn realized(&self) -> Decimal {
        self.positions.values().map(|p| p.realized).sum()
    }
}

/// The partition of a user's ledger.
pub fn partition(user: &str) -> String {
    format!("ledger#{user}")
}

fn key(user: &str, tx: &Transaction) -> Result<Key, StoreError> {
    Key::new(partition(user), format!("tx#{}", tx.key))
}

/// Writes `tx` to `user`'s ledger, once: a transaction of that key written before is kept,
/// and answered (what was settled is what the ledger holds).
pub async fn write(site: &Site, user: &str, tx: &Transaction) -> Result<Transaction, StoreError> {
    let json = serde_json::to_string(tx).unwrap_or_default();
    let (replica, clock) = (site.replica, &site.clock);
    let doc = site
        .store
        .update(&key(user, tx)?, |record: &mut Record| {
            if record.latest_stamp().is_some() {
                return Record::new();
            }
            record.create(replica, clock.now(), [("tx".to_owned(), json.clone())])
        })
        .await?;
    Ok(doc
        .state
        .get("tx")
        .and_then(|stored| serde_json::from_str(stored).ok())
        .unwrap_or_else(|| tx.clone()))
}

/// A page of `user`'s ledger, oldest first.
pub async fn list(
    site: &Site,
    user: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Transaction>, StoreError> {
    site.store
        .list_by_id(
            &partition(user),
            "tx#",
            cursor,
            limit,
            |_, state: &Record| serde_json::from_str(state.get("tx")?).ok(),
        )
        .await
}
