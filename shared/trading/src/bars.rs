//! Daily OHLCV bars: read from CSV, adjusted for splits, kept in the store a year per
//! document, and served through the [`BarFeed`] trait (historical here; a live feed would be
//! another implementation).
//!
//! The CSV has a header `Ticker,Date,Open,High,Low,Close,Volume,Adj Close` (the bundled
//! data's, from `bokeh-sampledata`; gzip-compressed or not). Its prices are unadjusted, so a
//! stock split shows as a crash; the adjusted close (splits and dividends) tells where the
//! splits were: the ratio of adjusted to raw close jumps by the split's factor from one day
//! to the next. Prices are divided by the factors of the splits after their day (back
//! adjustment, as data vendors do) and kept to four places; dividends are left out.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jarvis_crdt::{Crdt, Record};
use jarvis_store::{Key, Site, StoreError};
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::TradingError;
use crate::instrument::{self, Instrument, Symbol};
use crate::money::Decimal;

/// One day of one instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    /// The trading day.
    pub date: Date,
    /// The first trade's price.
    pub open: Decimal,
    /// The highest.
    pub high: Decimal,
    /// The lowest.
    pub low: Decimal,
    /// The last.
    pub close: Decimal,
    /// Shares traded.
    pub volume: u64,
}

impl Bar {
    fn encode(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.open, self.high, self.low, self.close, self.volume
        )
    }

    fn decode(date: Date, text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let mut price = || parts.next()?.parse::<Decimal>().ok();
        let (open, high, low, close) = (price()?, price()?, price()?, price()?);
        let volume = parts.next()?.parse().ok()?;
        Some(Self {
            date,
            open,
            high,
            low,
            close,
            volume,
        })
    }
}

/// Places adjusted prices are kept to.
const PRICE_SCALE: u32 = 4;

/// The lowest price a bar may have, raw or split-adjusted.
pub const MIN_PRICE: Decimal = Decimal::from_parts(1, 0, 0, false, PRICE_SCALE);
/// The highest price a bar may have: prices and quantities stay far from a decimal's limits
/// in every product the exchange and backtests form.
pub const MAX_PRICE: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// The largest CSV read, decompressed: a small gzip body cannot inflate past it.
pub const MAX_CSV_BYTES: u64 = 64 * 1024 * 1024;

/// The columns of the CSV.
pub const HEADER: [&str; 8] = [
    "Ticker",
    "Date",
    "Open",
    "High",
    "Low",
    "Close",
    "Volume",
    "Adj Close",
];

/// One row of the CSV.
#[derive(Debug, Deserialize)]
struct Row {
    #[serde(rename = "Ticker")]
    ticker: String,
    #[serde(rename = "Date")]
    date: String,
    #[serde(rename = "Open")]
    open: Decimal,
    #[serde(rename = "High")]
    high: Decimal,
    #[serde(rename = "Low")]
    low: Decimal,
    #[serde(rename = "Close")]
    close: Decimal,
    #[serde(rename = "Volume")]
    volume: u64,
    #[serde(rename = "Adj Close")]
    adj_close: f64,
}

/// Reads bars from CSV bytes (gzip-compressed or not), adjusted for splits, by symbol and
/// date. A malformed row is an error naming its line.
pub fn parse_csv(bytes: &[u8]) -> Result<BTreeMap<Symbol, Vec<Bar>>, TradingError> {
    let mut text = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_CSV_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| TradingError::Import(format!("not gzip: {e}")))?;
        if text.len() as u64 > MAX_CSV_BYTES {
            return Err(TradingError::Import(format!(
                "more than {} MiB once decompressed",
                MAX_CSV_BYTES >> 20
            )));
        }
    } else {
        text.extend_from_slice(bytes);
    }
    let mut reader = csv::Reader::from_reader(text.as_slice());
    let header = reader
        .headers()
        .map_err(|e| TradingError::Import(format!("line 1: {e}")))?;
    if header.iter().collect::<Vec<_>>() != HEADER {
        return Err(TradingError::Import(format!(
            "line 1: the header is not {}",
            HEADER.join(",")
        )));
    }
    let mut raw: BTreeMap<Symbol, Vec<(Bar, f64)>> = BTreeMap::new();
    for (line, row) in reader.deserialize::<Row>().enumerate() {
        let at = line + 2;
        let row = row.map_err(|e| TradingError::Import(format!("line {at}: {e}")))?;
        let symbol = Symbol::parse(&row.ticker)
            .ok_or_else(|| TradingError::Import(format!("line {at}: not a symbol")))?;
        let date: Date = row
            .date
            .parse()
            .map_err(|_| TradingError::Import(format!("line {at}: not a date")))?;
        let sane = row.low >= MIN_PRICE
            && row.high <= MAX_PRICE
            && row.low <= row.open.min(row.close)
            && row.high >= row.open.max(row.close)
            && row.adj_close.is_finite()
            && row.adj_close > 0.0;
        if !sane {
            return Err(TradingError::Import(format!(
                "line {at}: prices out of order, or outside {MIN_PRICE} to {MAX_PRICE}"
            )));
        }
        let ratio = row.adj_close / crate::money::float(row.close);
        raw.entry(symbol).or_default().push((
            Bar {
                date,
                open: row.open,
                high: row.high,
                low: row.low,
                close: row.close,
                volume: row.volume,
            },
            ratio,
        ));
    }
    if raw.is_empty() {
        return Err(TradingError::Import("no bars".into()));
    }
    raw.into_iter()
        .map(|(symbol, mut rows)| {
            rows.sort_by_key(|(bar, _)| bar.date);
            rows.dedup_by_key(|(bar, _)| bar.date);
            let bars = adjust_for_splits(&rows);
            if bars.iter().any(|bar| bar.low < MIN_PRICE) {
                return Err(TradingError::Import(format!(
                    "{symbol}: prices below {MIN_PRICE} once adjusted for its splits"
                )));
            }
            Ok((symbol, bars))
        })
        .collect()
}

/// The split factor between two days' ratios of adjusted to raw close (1 when none).
fn split_factor(before: f64, after: f64) -> Decimal {
    let jump = after / before;
    if jump >= 1.4 {
        // 2:1, 3:2, 7:1…: to the nearest half.
        Decimal::from_f64_retain((jump * 2.0).round() / 2.0).unwrap_or(Decimal::ONE)
    } else if jump <= 1.0 / 1.4 {
        // A reverse split.
        Decimal::ONE / Decimal::from_f64_retain((2.0 / jump).round() / 2.0).unwrap_or(Decimal::ONE)
    } else {
        Decimal::ONE
    }
}

/// Back-adjusts raw bars for the splits their adjusted closes reveal.
fn adjust_for_splits(rows: &[(Bar, f64)]) -> Vec<Bar> {
    // The factor of every split after each day.
    let mut after = vec![Decimal::ONE; rows.len()];
    for i in (0..rows.len().saturating_sub(1)).rev() {
        after[i] = after[i + 1] * split_factor(rows[i].1, rows[i + 1].1);
    }
    rows.iter()
        .zip(after)
        .map(|((bar, _), factor)| {
            let price = |p: Decimal| (p / factor).round_dp(PRICE_SCALE).normalize();
            Bar {
                date: bar.date,
                open: price(bar.open),
                high: price(bar.high),
                low: price(bar.low),
                close: price(bar.close),
                volume: u64::try_from((Decimal::from(bar.volume) * factor).round())
                    .unwrap_or(u64::MAX),
            }
        })
        .collect()
}

/// The partition of a symbol's bars.
pub fn partition(symbol: &Symbol) -> String {
    format!("market#{symbol}")
}

fn year_key(symbol: &Symbol, year: i16) -> Result<Key, StoreError> {
    Key::new(partition(symbol), format!("bars#{year:04}"))
}

/// The document listing the years a symbol has bars in (a field per year), so a read of
/// any span touches only the years there are.
fn years_key(symbol: &Symbol) -> Result<Key, StoreError> {
    Key::new(partition(symbol), "years")
}

/// Stores `bars` of `symbol` (merged into what is there: a day written again is replaced)
/// and lists the symbol as an equity when it is not listed. One document per year.
pub async fn store(site: &Site, symbol: &Symbol, bars: &[Bar]) -> Result<usize, StoreError> {
    let mut by_year: BTreeMap<i16, Vec<&Bar>> = BTreeMap::new();
    for bar in bars {
        by_year.entry(bar.date.year()).or_default().push(bar);
    }
    let (replica, clock) = (site.replica, &site.clock);
    for (year, bars) in &by_year {
        let fields: Vec<(String, String)> = bars
            .iter()
            .map(|bar| (bar.date.to_string(), bar.encode()))
            .collect();
        site.store
            .update(&year_key(symbol, *year)?, |record: &mut Record| {
                let stamp = clock.stamp_after(record.latest_stamp());
                let mut delta = Record::new();
                if !record.is_live() {
                    delta.join(record.create(replica, stamp, []));
                }
                for (date, bar) in &fields {
                    if record.get(date) != Some(bar.as_str()) {
                        delta.join(record.set(date.clone(), stamp, bar.clone()));
                    }
                }
                delta
            })
            .await?;
    }
    site.store
        .update(&years_key(symbol)?, |record: &mut Record| {
            let stamp = clock.stamp_after(record.latest_stamp());
            let mut delta = Record::new();
            if !record.is_live() {
                delta.join(record.create(replica, stamp, []));
            }
            for year in by_year.keys() {
                let field = format!("{year:04}");
                if record.get(&field).is_none() {
                    delta.join(record.set(field, stamp, "bars".to_owned()));
                }
            }
            delta
        })
        .await?;
    let listed = instrument::all(site).await?;
    if !listed.iter().any(|i| &i.symbol == symbol) {
        instrument::put(site, &Instrument::equity(symbol.clone())).await?;
    }
    Ok(bars.len())
}

/// Where bars come from.
#[async_trait]
pub trait BarFeed: Send + Sync {
    /// `symbol`'s bars from `from` to `to` (both included), oldest first.
    async fn bars(&self, symbol: &Symbol, from: Date, to: Date) -> Result<Vec<Bar>, StoreError>;
}

/// How long a year of bars read from the store is kept in memory (history does not change,
/// but an import may add to it).
const CACHE_TTL: Duration = Duration::from_secs(600);

type Year = (Symbol, i16);

/// Values read from the store, by key, with when they were read.
type Cache<K, V> = Mutex<HashMap<K, (Instant, std::sync::Arc<V>)>>;

/// The bars kept in the store, a year per document, cached in memory.
pub struct StoredBars {
    site: Site,
    cache: Cache<Year, Vec<Bar>>,
    years: Cache<Symbol, std::collections::BTreeSet<i16>>,
}

impl StoredBars {
    /// The bars of `site`'s store.
    pub fn new(site: Site) -> Self {
        Self {
            site,
            cache: Mutex::new(HashMap::new()),
            years: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets what is cached (after an import).
    pub fn forget(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
        if let Ok(mut years) = self.years.lock() {
            years.clear();
        }
    }

    /// The years `symbol` has bars in.
    async fn years(
        &self,
        symbol: &Symbol,
    ) -> Result<std::sync::Arc<std::collections::BTreeSet<i16>>, StoreError> {
        let cached = self.years.lock().ok().and_then(|years| {
            years
                .get(symbol)
                .filter(|(at, _)| at.elapsed() < CACHE_TTL)
                .map(|(_, years)| std::sync::Arc::clone(years))
        });
        if let Some(years) = cached {
            return Ok(years);
        }
        let doc = self.site.store.read::<Record>(&years_key(symbol)?).await?;
        let years = std::sync::Arc::new(
            doc.map(|doc| {
                doc.state
                    .fields()
                    .iter()
                    .filter_map(|(year, _)| year.parse().ok())
                    .collect()
            })
            .unwrap_or_default(),
        );
        if let Ok(mut cache) = self.years.lock() {
            cache.insert(
                symbol.clone(),
                (Instant::now(), std::sync::Arc::clone(&years)),
            );
        }
        Ok(years)
    }

    async fn year(
        &self,
        symbol: &Symbol,
        year: i16,
    ) -> Result<std::sync::Arc<Vec<Bar>>, StoreError> {
        let cached = self.cache.lock().ok().and_then(|cache| {
            cache
                .get(&(symbol.clone(), year))
                .filter(|(at, _)| at.elapsed() < CACHE_TTL)
                .map(|(_, bars)| std::sync::Arc::clone(bars))
        });
        if let Some(bars) = cached {
            return Ok(bars);
        }
        let doc = self
            .site
            .store
            .read::<Record>(&year_key(symbol, year)?)
            .await?;
        let mut bars: Vec<Bar> = doc
            .map(|doc| {
                doc.state
                    .fields()
                    .iter()
                    .filter_map(|(date, text)| Bar::decode(date.parse().ok()?, text))
                    .collect()
            })
            .unwrap_or_default();
        bars.sort_by_key(|bar| bar.date);
        let bars = std::sync::Arc::new(bars);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(
                (symbol.clone(), year),
                (Instant::now(), std::sync::Arc::clone(&bars)),
            );
        }
        Ok(bars)
    }
}

#[async_trait]
impl BarFeed for StoredBars {
    async fn bars(&self, symbol: &Symbol, from: Date, to: Date) -> Result<Vec<Bar>, StoreError> {
        let mut out = Vec::new();
        if to < from {
            return Ok(out);
        }
        let years = self.years(symbol).await?;
        for &year in years.range(from.year()..=to.year()) {
            out.extend(
                self.year(symbol, year)
                    .await?
                    .iter()
                    .filter(|bar| bar.date >= from && bar.date <= to)
                    .copied(),
            );
        }
        Ok(out)
    }
}

/// The latest bar of `symbol` on or before `date`, looking back at most `days` calendar
/// days.
pub async fn latest(
    feed: &dyn BarFeed,
    symbol: &Symbol,
    date: Date,
    days: i64,
) -> Result<Option<Bar>, StoreError> {
    let from = date
        .checked_sub(jiff::Span::new().days(days))
        .unwrap_or(date);
    Ok(feed.bars(symbol, from, date).await?.pop())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "Ticker,Date,Open,High,Low,Close,Volume,Adj Close
AAPL,2000-06-19,96.0,108.75,95.62,108.31,4000000,3.498
AAPL,2000-06-20,98.5,103.94,98.37,101.25,4500000,3.27
AAPL,2000-06-21,50.5,56.94,50.31,55.62,9000000,3.593
MSFT,2000-06-19,75.0,76.0,74.0,75.5,100,50.0
";

    #[test]
    fn a_split_the_adjusted_close_reveals_is_taken_out_of_earlier_prices() {
        let bars = parse_csv(CSV.as_bytes()).expect("parses");
        let aapl = &bars[&Symbol::parse("AAPL").expect("symbol")];
        // 2:1 between the 20th and the 21st (the ratio of adjusted to raw close jumps from
        // 0.0323 to 0.0646): the 19th and 20th are halved; the 21st is not.
        assert_eq!(aapl[0].close, "54.155".parse::<Decimal>().expect("d"));
        assert_eq!(aapl[0].volume, 8_000_000);
        assert_eq!(aapl[1].close, "50.625".parse::<Decimal>().expect("d"));
        assert_eq!(aapl[2].close, "55.62".parse::<Decimal>().expect("d"));
        assert_eq!(bars.len(), 2);
    }

    #[test]
    fn gzip_is_read_within_its_bound_and_a_bad_row_is_named_by_its_line() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(CSV.as_bytes()).expect("write");
        let bytes = gz.finish().expect("gzip");
        assert_eq!(parse_csv(&bytes).expect("gz").len(), 2);
        let bad =
            "Ticker,Date,Open,High,Low,Close,Volume,Adj Close\nAAPL,2000-01-01,10,9,8,9.5,1,1\n";
        let err = parse_csv(bad.as_bytes()).expect_err("high below open");
        assert!(err.to_string().contains("line 2"), "{err}");
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b'0'; 1 << 20];
        for _ in 0..=(MAX_CSV_BYTES >> 20) {
            bomb.write_all(&zeros).expect("write");
        }
        let err = parse_csv(&bomb.finish().expect("gzip")).expect_err("too large");
        assert!(err.to_string().contains("decompressed"), "{err}");
        let not_csv = parse_csv(b"\x00\x01garbage").expect_err("not CSV");
        assert!(matches!(not_csv, TradingError::Import(_)));
    }

    #[test]
    fn a_bar_is_stored_as_text_and_read_back_exactly() {
        let bar = Bar {
            date: "2004-08-19".parse().expect("date"),
            open: "100.01".parse().expect("d"),
            high: "104.06".parse().expect("d"),
            low: "95.96".parse().expect("d"),
            close: "100.335".parse().expect("d"),
            volume: 44_871_300,
        };
        let text = bar.encode();
        assert_eq!(text, "100.01 104.06 95.96 100.335 44871300");
        assert_eq!(Bar::decode(bar.date, &text), Some(bar));
    }
}
