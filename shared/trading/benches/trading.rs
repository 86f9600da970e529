//! Trading's figures: `cargo bench -p jarvis-trading --bench trading`.
//!
//! - **risk check**: the pure check every order passes, timed one call at a time over
//!   200,000 calls (an order that passes every check: the longest path); p50 and p99.
//! - **backtest**: an SMA(20/50) crossover on AAPL, MSFT, IBM and GOOG over 2000-03-01 to
//!   2013-03-01 (the bundled prices, `infra/fetch-market-data.sh`; without them, a random
//!   walk of the same shape), bars in memory; the median of 20 runs.
//! - **pipeline**: orders per second from signal to settlement on an embedded libSQL store:
//!   each signal validated, recorded, sized, risk-checked and placed as an order, then one
//!   session traded on the paper exchange, every fill settled into the ledger, every step
//!   appended to the audit trail's hash chain.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jarvis_config::StoreConfig;
use jarvis_crdt::ReplicaId;
use jarvis_realtime::{Notifier, Registry};
use jarvis_store::Site;
use jarvis_store::clock::Clock;
use jarvis_trading::Trading;
use jarvis_trading::backtest::{self, Request};
use jarvis_trading::bars::{self, Bar};
use jarvis_trading::exchange::Params;
use jarvis_trading::instrument::{Instrument, Symbol};
use jarvis_trading::money::Decimal;
use jarvis_trading::order::{OrderRequest, OrderType, Side, TimeInForce};
use jarvis_trading::risk::{self, Context, Limits};
use jarvis_trading::service::{ChainAudit, Settings, SignalRequest};
use jarvis_trading::state::TradingState;
use jarvis_trading::strategy::Strategy;
use jiff::civil::Date;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn date(text: &str) -> Date {
    text.parse().expect("date")
}

fn risk_check() {
    let instrument = Instrument::equity(Symbol::parse("AAPL").expect("symbol"));
    let order = OrderRequest {
        client_order_id: "bench".into(),
        symbol: instrument.symbol.clone(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        quantity: Decimal::from(100),
        limit_price: Some("101.25".parse().expect("price")),
        time_in_force: TimeInForce::Day,
    };
    let context = Context {
        instrument: Some(&instrument),
        reference_price: "101.25".parse().expect("price"),
        free_cash: Decimal::from(100_000),
        free_position: Decimal::ZERO,
        state: TradingState::Active,
        recent_orders: 3,
        today: date("2005-01-03"),
        symbol_lock: None,
        account_lock: None,
        notional_rights: 20_000_000,
    };
    let limits = Limits {
        max_order_notional: Decimal::from(50_000),
        ..Limits::default()
    };
    for _ in 0..10_000 {
        std::hint::black_box(risk::check(&order, &context, &limits)).expect("passes");
    }
    let mut times = Vec::with_capacity(200_000);
    for _ in 0..200_000 {
        let started = Instant::now();
        let decision = risk::check(std::hint::black_box(&order), &context, &limits);
        times.push(started.elapsed());
        std::hint::black_box(decision).expect("passes");
    }
    times.sort_unstable();
    println!(
        "risk check: p50 {:.2} µs, p99 {:.2} µs, max {:.1} µs (200,000 checks)",
        percentile(&times, 0.50).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
        times[times.len() - 1].as_secs_f64() * 1e6,
    );
}

/// The bundled prices, when fetched.
fn bundled() -> Option<Vec<u8>> {
    let dir = std::env::var_os("JARVIS_MARKET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/market"));
    std::fs::read(dir.join("stocks.csv.gz")).ok()
}

/// A random walk of `symbols` over the weekdays from `from` to `to`.
fn walk(symbols: &[&str], from: Date, to: Date) -> BTreeMap<Symbol, Vec<Bar>> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut out = BTreeMap::new();
    for name in symbols {
        let mut bars = Vec::new();
        let mut close = 100.0_f64;
        let mut day = from;
        while day <= to {
            if day.weekday().to_monday_zero_offset() < 5 {
                let open = close * (1.0 + (rng.f64() - 0.5) * 0.02);
                close = open * (1.0 + (rng.f64() - 0.5) * 0.04);
                let price = |p: f64| Decimal::from_f64_retain(p).expect("price").round_dp(2);
                bars.push(Bar {
                    date: day,
                    open: price(open),
                    high: price(open.max(close) * 1.01),
                    low: price(open.min(close) * 0.99),
                    close: price(close),
                    volume: 1_000_000,
                });
            }
            day = day.tomorrow().expect("day");
        }
        out.insert(Symbol::parse(name).expect("symbol"), bars);
    }
    out
}

fn backtest_13_years() {
    let names = ["AAPL", "MSFT", "IBM", "GOOG"];
    let (source, all) = match bundled() {
        Some(bytes) => (
            "the bundled prices",
            bars::parse_csv(&bytes).expect("parses"),
        ),
        None => (
            "a random walk (run ./infra/fetch-market-data.sh for the bundled prices)",
            walk(&names, date("1999-06-01"), date("2013-03-01")),
        ),
    };
    let symbols: Vec<Symbol> = names
        .iter()
        .map(|n| Symbol::parse(n).expect("symbol"))
        .collect();
    let bars: BTreeMap<Symbol, Vec<Bar>> = symbols
        .iter()
        .map(|s| (s.clone(), all.get(s).cloned().unwrap_or_default()))
        .collect();
    let sessions: usize = bars.values().map(Vec::len).sum();
    let request = Request {
        strategy: Strategy::SmaCrossover { fast: 20, slow: 50 },
        symbols,
        from: date("2000-03-01"),
        to: date("2013-03-01"),
        cash: Decimal::from(100_000),
        seed: 1,
        params: Params::default(),
    };
    let first = backtest::run(&request, &bars).expect("runs");
    let mut times = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let outcome = backtest::run(&request, &bars).expect("runs");
        times.push(started.elapsed());
        assert_eq!(outcome, first, "deterministic");
    }
    times.sort_unstable();
    println!(
        "backtest, SMA(20/50) on 4 symbols over 13 years ({sessions} bars, {source}): median {:.1} ms, max {:.1} ms; {} trades, total return {:.1} % (buy and hold {:.1} %)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        first.trades.len(),
        first.strategy.total_return * 100.0,
        first.buy_and_hold.total_return * 100.0,
    );
}

async fn pipeline(orders: usize) {
    let dir = tempfile::tempdir().expect("dir");
    let store = jarvis_store::open(&StoreConfig::Libsql {
        path: dir.path().join("jarvis.db"),
    })
    .await
    .expect("store");
    let replica = ReplicaId::from_name("bench");
    let clock = Arc::new(Clock::new(replica));
    let notifier = Arc::new(Notifier::new(Registry::new(
        Arc::clone(&store),
        replica,
        Arc::clone(&clock),
        Duration::from_secs(60),
    )));
    let settings = Settings {
        start_cash: Decimal::from(10_000_000),
        start_date: date("2005-01-03"),
        limits: Limits {
            max_order_notional: Decimal::from(50_000),
            orders_per_minute: u32::MAX,
            buffer_bps: 50,
        },
        daily_notional: Decimal::from(100_000_000),
        share: 1.0,
        params: Params::default(),
    };
    // Every step audited in the hash chain, as deployed.
    let secrets_file = dir.path().join("secrets.json");
    jarvis_secrets::ensure_local_file(&secrets_file).expect("secrets");
    let site = Site {
        store,
        replica,
        clock,
    };
    let audit = ChainAudit {
        site: site.clone(),
        secrets: jarvis_secrets::source(&jarvis_config::SecretsConfig::File(secrets_file)),
        chain: "bench".into(),
    };
    let trading = Trading::new(site, notifier, Arc::new(audit), settings);
    let symbols = ["AAA", "BBB", "CCC", "DDD"];
    let mut csv = String::from("Ticker,Date,Open,High,Low,Close,Volume,Adj Close\n");
    for (i, name) in symbols.iter().enumerate() {
        for (day, price) in [
            ("2004-12-30", 100),
            ("2004-12-31", 101),
            ("2005-01-03", 102),
            ("2005-01-04", 103),
        ] {
            let p = price + i * 10;
            csv.push_str(&format!(
                "{name},{day},{p},{},{},{p},1000000,{p}\n",
                p + 2,
                p - 2
            ));
        }
    }
    trading.import(csv.as_bytes()).await.expect("imported");
    trading.account("u").await.expect("account");
    let started = Instant::now();
    for i in 0..orders {
        let outcome = trading
            .signal(
                "u",
                SignalRequest {
                    symbol: symbols[i % symbols.len()].into(),
                    side: Side::Buy,
                    strength: 1.0,
                    reason: "bench".into(),
                    quantity: Some(Decimal::from(10)),
                    limit_price: None,
                    time_in_force: TimeInForce::Day,
                    source: "bench".into(),
                    client_order_id: None,
                },
            )
            .await
            .expect("signal");
        assert_eq!(
            outcome.order.status.name(),
            "accepted",
            "{:?}",
            outcome.order.reason
        );
    }
    let placed = started.elapsed();
    let account = trading
        .advance("u", date("2005-01-04"))
        .await
        .expect("traded");
    let total = started.elapsed();
    assert!(account.open.is_empty(), "every order filled or ended");
    println!(
        "pipeline, signal to settlement on embedded libSQL: {orders} orders in {:.2} s = {:.0} orders/s (placing {:.0}/s; trading and settling the session {:.2} s)",
        total.as_secs_f64(),
        orders as f64 / total.as_secs_f64(),
        orders as f64 / placed.as_secs_f64(),
        (total - placed).as_secs_f64(),
    );
}

fn main() {
    risk_check();
    backtest_13_years();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(pipeline(1_000));
}
