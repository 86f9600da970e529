//! Symbols, and the instruments they name: what an order on each must respect.

use std::fmt;

use jarvis_crdt::Record;
use jarvis_store::{Key, Site, StoreError};
use serde::{Deserialize, Serialize};

use crate::money::{Decimal, is_multiple};

/// A ticker symbol: 1 to 10 of `A-Z 0-9 .`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Symbol(String);

/// What a symbol looks like, for error messages and schemas.
pub const SYMBOL_RULE: &str = "1 to 10 of A-Z, 0-9 and '.', starting with a letter";
/// [`SYMBOL_RULE`] as a pattern.
pub const SYMBOL_PATTERN: &str = "^[A-Z][A-Z0-9.]{0,9}$";

impl Symbol {
    /// Parses a symbol; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let mut chars = text.chars();
        let ok = (1..=10).contains(&text.len())
            && chars.next().is_some_and(|c| c.is_ascii_uppercase())
            && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '.');
        ok.then(|| Self(text.to_owned()))
    }

    /// The symbol's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Symbol {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text).ok_or_else(|| format!("a symbol is {SYMBOL_RULE}"))
    }
}

impl From<Symbol> for String {
    fn from(symbol: Symbol) -> Self {
        symbol.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tradable instrument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instrument {
    /// Its symbol.
    pub symbol: Symbol,
    /// Prices are whole multiples of this.
    pub tick_size: Decimal,
    /// Quantities are whole multiples of this.
    pub lot_size: Decimal,
    /// The least quantity of an order.
    pub min_quantity: Decimal,
    /// The most quantity of an order.
    pub max_quantity: Decimal,
    /// The currency of its prices.
    pub currency: String,
}

impl Instrument {
    /// A US equity as the bundled data has them: cents, whole shares, 1 to 1,000,000.
    pub fn equity(symbol: Symbol) -> Self {
        Self {
            symbol,
            tick_size: Decimal::new(1, 2),
            lot_size: Decimal::ONE,
            min_quantity: Decimal::ONE,
            max_quantity: Decimal::from(1_000_000),
            currency: "USD".into(),
        }
    }

    /// Whether `quantity` is a whole number of lots within the bounds.
    pub fn quantity_ok(&self, quantity: Decimal) -> bool {
        is_multiple(quantity, self.lot_size)
            && quantity >= self.min_quantity
            && quantity <= self.max_quantity
    }

    /// Whether `price` is a whole number of ticks above zero.
    pub fn price_ok(&self, price: Decimal) -> bool {
        price > Decimal::ZERO && is_multiple(price, self.tick_size)
    }
}

/// The partition of every instrument.
pub const PARTITION: &str = "market#instruments";

fn key(symbol: &Symbol) -> Result<Key, StoreError> {
    Key::new(PARTITION, symbol.as_str())
}

/// Lists (creating or replacing) `instrument`.
pub async fn put(site: &Site, instrument: &Instrument) -> Result<(), StoreError> {
    let json = serde_json::to_string(instrument).unwrap_or_default();
    let (replica, clock) = (site.replica, &site.clock);
    site.store
        .update(&key(&instrument.symbol)?, |record: &mut Record| {
            if record.is_live() && record.get("instrument") == Some(json.as_str()) {
                return Record::new();
            }
            record.create(
                replica,
                clock.stamp_after(record.latest_stamp()),
                [("instrument".to_owned(), json.clone())],
            )
        })
        .await?;
    Ok(())
}

/// Every listed instrument, by symbol.
pub async fn all(site: &Site) -> Result<Vec<Instrument>, StoreError> {
    let page = site
        .store
        .list_documents::<Record>(PARTITION, None, None, 1_000)
        .await?;
    Ok(page
        .items
        .iter()
        .filter(|doc| doc.state.is_live())
        .filter_map(|doc| serde_json::from_str(doc.state.get("instrument")?).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_upper_case_tickers() {
        assert!(Symbol::parse("AAPL").is_some());
        assert!(Symbol::parse("BRK.B").is_some());
        for bad in ["", "aapl", "1ABC", "TOOLONGSYMBOL", "A B"] {
            assert!(Symbol::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn an_equity_takes_whole_shares_at_whole_cents() {
        let aapl = Instrument::equity(Symbol::parse("AAPL").expect("symbol"));
        assert!(aapl.quantity_ok(Decimal::from(10)));
        assert!(!aapl.quantity_ok(Decimal::new(105, 1)));
        assert!(!aapl.quantity_ok(Decimal::ZERO));
        assert!(aapl.price_ok(Decimal::new(10_125, 2)));
        assert!(!aapl.price_ok(Decimal::new(101_255, 3)));
        assert!(!aapl.price_ok(Decimal::ZERO));
    }
}
