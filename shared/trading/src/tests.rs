use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jarvis_config::StoreConfig;
use jarvis_crdt::{Crdt, Entity, ReplicaId, Timestamp};
use jarvis_realtime::{Notifier, Registry};
use jarvis_store::Site;
use jarvis_store::clock::Clock;
use jiff::civil::Date;
use proptest::prelude::*;
use proptest::strategy::Strategy as _;

use crate::TradingError;
use crate::backtest;
use crate::bars::Bar;
use crate::exchange::{Broker, Funds, PaperExchange, Params};
use crate::instrument::{Instrument, Symbol};
use crate::ledger::{Book, Transaction};
use crate::money::Decimal;
use crate::order::{self, Fill, Order, OrderRequest, OrderType, Side, Status, TimeInForce};
use crate::service::{AuditTrail, Settings, SignalRequest, Trading};
use crate::state::TradingState;
use crate::strategy::Strategy;

fn d(text: &str) -> Decimal {
    text.parse().expect("decimal")
}

fn date(text: &str) -> Date {
    text.parse().expect("date")
}

fn symbol(text: &str) -> Symbol {
    Symbol::parse(text).expect("symbol")
}

/// Daily bars of a random walk from `start`, every weekday, as the bundled CSV writes them.
fn csv(symbols: &[(&str, f64)], from: &str, sessions: usize, seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = String::from("Ticker,Date,Open,High,Low,Close,Volume,Adj Close\n");
    for (name, start) in symbols {
        let mut day = date(from);
        let mut close = *start;
        let mut written = 0;
        while written < sessions {
            if day.weekday().to_monday_zero_offset() < 5 {
                let open = close * (1.0 + (rng.f64() - 0.5) * 0.02);
                close = open * (1.0 + (rng.f64() - 0.5) * 0.04);
                let high = open.max(close) * (1.0 + rng.f64() * 0.01);
                let low = open.min(close) * (1.0 - rng.f64() * 0.01);
                out.push_str(&format!(
                    "{name},{day},{open:.2},{high:.2},{low:.2},{close:.2},{},{close:.2}\n",
                    1_000_000 + rng.u32(..100_000)
                ));
                written += 1;
            }
            day = day.tomorrow().expect("day");
        }
    }
    out
}

/// Audit events, kept.
#[derive(Default)]
struct Trail(Mutex<Vec<(String, String)>>);

#[async_trait]
impl AuditTrail for Trail {
    async fn record(&self, kind: &'static str, _user: &str, detail: String) {
        self.0.lock().expect("lock").push((kind.to_owned(), detail));
    }
}

impl Trail {
    fn kinds(&self) -> Vec<String> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }
}

struct Host {
    trading: Trading,
    trail: Arc<Trail>,
    _dir: tempfile::TempDir,
}

fn settings() -> Settings {
    Settings {
        start_cash: d("100000"),
        start_date: date("2010-01-04"),
        limits: crate::risk::Limits {
            max_order_notional: d("50000"),
            orders_per_minute: 1000,
            buffer_bps: 50,
        },
        daily_notional: d("200000"),
        share: 1.0,
        params: Params {
            slippage_bps: 5,
            fee_bps: 1,
            partial_fill_percent: 0,
        },
    }
}

async fn site_of(dir: &tempfile::TempDir, name: &str) -> Site {
    let store = jarvis_store::open(&StoreConfig::Libsql {
        path: dir.path().join(format!("{name}.db")),
    })
    .await
    .expect("store");
    let replica = ReplicaId::from_name(name);
    Site {
        store,
        replica,
        clock: Arc::new(Clock::new(replica)),
    }
}

async fn host_with(settings: Settings) -> Host {
    let dir = tempfile::tempdir().expect("dir");
    let site = site_of(&dir, "here").await;
    let notifier = Arc::new(Notifier::new(Registry::new(
        Arc::clone(&site.store),
        site.replica,
        Arc::clone(&site.clock),
        Duration::from_secs(60),
    )));
    let trail = Arc::new(Trail::default());
    let trading = Trading::new(site, notifier, Arc::clone(&trail) as _, settings);
    trading
        .import(csv(&[("AAA", 100.0), ("BBB", 40.0)], "2009-10-01", 260, 7).as_bytes())
        .await
        .expect("imported");
    Host {
        trading,
        trail,
        _dir: dir,
    }
}

async fn host() -> Host {
    host_with(settings()).await
}

fn order(coid: &str, symbol_name: &str, side: Side, quantity: &str) -> OrderRequest {
    OrderRequest {
        client_order_id: coid.into(),
        symbol: symbol(symbol_name),
        side,
        order_type: OrderType::Market,
        quantity: d(quantity),
        limit_price: None,
        time_in_force: TimeInForce::Gtc,
    }
}

#[tokio::test]
async fn an_order_passes_the_risk_check_fills_at_the_next_open_and_settles_into_the_ledger() {
    let host = host().await;
    let (placed, new) = host
        .trading
        .place("u1", order("c1", "AAA", Side::Buy, "100"), None)
        .await
        .expect("placed");
    assert!(new);
    assert_eq!(placed.status, Status::Accepted);
    let account = host
        .trading
        .advance("u1", date("2010-01-08"))
        .await
        .expect("advanced");
    let filled = host.trading.order("u1", &placed.id).await.expect("order");
    assert_eq!(filled.status, Status::Filled);
    assert_eq!(filled.filled, d("100"));
    let fill = filled.fills[0];
    assert_eq!(
        fill.date,
        date("2010-01-05"),
        "the next session after placing"
    );
    let bars = host
        .trading
        .feed()
        .bars(&symbol("AAA"), fill.date, fill.date)
        .await
        .expect("bars");
    let open = bars[0].open;
    assert!(
        fill.price >= open && fill.price <= bars[0].high,
        "{fill:?} {:?}",
        bars[0]
    );
    assert_eq!(account.book.held("AAA"), d("100"));
    assert_eq!(
        account.book.cash,
        d("100000") - fill.price * d("100") - fill.fee
    );
    assert!(account.open.is_empty());
    let ledger = host.trading.ledger("u1", None, 100).await.expect("ledger");
    assert_eq!(ledger.items.len(), 2, "the deposit and the fill");
    assert!(ledger.items.iter().all(Transaction::is_balanced));
    let kinds = host.trail.kinds();
    for kind in [
        "trading.risk.passed",
        "trading.order.accepted",
        "trading.fill",
        "trading.settled",
    ] {
        assert!(kinds.contains(&kind.to_owned()), "{kind}: {kinds:?}");
    }
}

#[tokio::test]
async fn a_retried_order_is_the_same_order_and_a_reused_id_for_another_is_refused() {
    let host = host().await;
    let (first, _) = host
        .trading
        .place("u1", order("c1", "AAA", Side::Buy, "10"), None)
        .await
        .expect("placed");
    for _ in 0..3 {
        let (again, new) = host
            .trading
            .place("u1", order("c1", "AAA", Side::Buy, "10"), None)
            .await
            .expect("retried");
        assert!(!new);
        assert_eq!(again, first);
    }
    let err = host
        .trading
        .place("u1", order("c1", "AAA", Side::Buy, "11"), None)
        .await
        .expect_err("another order");
    assert!(
        matches!(err, TradingError::Unprocessable { ref field, .. } if field == "client_order_id")
    );
    let account = host.trading.account("u1").await.expect("account");
    assert_eq!(account.open.len(), 1);
    let page = host.trading.orders("u1", None, 10).await.expect("orders");
    assert_eq!(page.items.len(), 1);
}

#[tokio::test]
async fn the_risk_engine_refuses_in_its_order_with_a_stable_code() {
    let mut tight = settings();
    tight.daily_notional = d("3000");
    let host = host_with(tight).await;
    let refused = |o: Order| o.reason_code.unwrap_or_default();
    let (unknown, _) = host
        .trading
        .place("u1", order("c1", "ZZZ", Side::Buy, "1"), None)
        .await
        .expect("placed");
    assert_eq!(unknown.status, Status::Rejected);
    assert_eq!(refused(unknown), "unknown_instrument");
    let (lots, _) = host
        .trading
        .place("u1", order("c2", "AAA", Side::Buy, "1.5"), None)
        .await
        .expect("placed");
    assert_eq!(refused(lots), "invalid_quantity");
    let mut limit = order("c3", "AAA", Side::Buy, "1");
    limit.order_type = OrderType::Limit;
    limit.limit_price = Some(d("10.005"));
    let (tick, _) = host.trading.place("u1", limit, None).await.expect("placed");
    assert_eq!(refused(tick), "invalid_price");
    let (big, _) = host
        .trading
        .place("u1", order("c4", "AAA", Side::Buy, "900"), None)
        .await
        .expect("placed");
    assert_eq!(refused(big), "max_order_notional");
    let (short, _) = host
        .trading
        .place("u1", order("c5", "AAA", Side::Sell, "1"), None)
        .await
        .expect("placed");
    assert_eq!(refused(short), "insufficient_position");
    let (within, _) = host
        .trading
        .place("u1", order("c6", "BBB", Side::Buy, "50"), None)
        .await
        .expect("placed");
    assert_eq!(within.status, Status::Accepted, "{within:?}");
    let (beyond, _) = host
        .trading
        .place("u1", order("c7", "BBB", Side::Buy, "50"), None)
        .await
        .expect("placed");
    assert_eq!(refused(beyond), "daily_notional");
    host.trading
        .set_trading_state("admin", TradingState::Halted)
        .await
        .expect("halted");
    let (halted, _) = host
        .trading
        .place("u1", order("c8", "BBB", Side::Buy, "1"), None)
        .await
        .expect("placed");
    assert_eq!(refused(halted), "trading_halted");
    // A cancel is still taken.
    let cancelled = host.trading.cancel("u1", &within.id).await.expect("cancel");
    assert_eq!(cancelled.status, Status::Canceled);
    assert!(matches!(
        host.trading.cancel("u1", &within.id).await,
        Err(TradingError::Conflict(_))
    ));
    host.trading
        .set_trading_state("admin", TradingState::Reducing)
        .await
        .expect("reducing");
    let (grows, _) = host
        .trading
        .place("u1", order("c9", "BBB", Side::Buy, "1"), None)
        .await
        .expect("placed");
    assert_eq!(refused(grows), "reducing_only");
    let kinds = host.trail.kinds();
    assert!(kinds.contains(&"trading.risk.refused".to_owned()));
    assert!(kinds.contains(&"trading.state".to_owned()));
}

#[tokio::test]
async fn orders_over_the_minutes_rate_are_refused() {
    let mut slow = settings();
    slow.limits.orders_per_minute = 2;
    let host = host_with(slow).await;
    for i in 0..2 {
        let (ok, _) = host
            .trading
            .place("u1", order(&format!("r{i}"), "BBB", Side::Buy, "1"), None)
            .await
            .expect("placed");
        assert_eq!(ok.status, Status::Accepted);
    }
    let (third, _) = host
        .trading
        .place("u1", order("r2", "BBB", Side::Buy, "1"), None)
        .await
        .expect("placed");
    assert_eq!(third.reason_code.as_deref(), Some("rate_limited"));
}

#[tokio::test]
async fn limit_day_and_ioc_orders_trade_as_their_kind_says() {
    let host = host().await;
    let bars = host
        .trading
        .feed()
        .bars(&symbol("AAA"), date("2010-01-05"), date("2010-01-05"))
        .await
        .expect("bars");
    let next = bars[0];
    // A limit far below the market: a day order expires, an ioc order is cancelled, a gtc
    // order waits.
    let far = next.low / d("2");
    let far = crate::money::to_step(far, d("0.01"), crate::money::Round::Down);
    let mut requests = Vec::new();
    for (coid, tif) in [
        ("day", TimeInForce::Day),
        ("ioc", TimeInForce::Ioc),
        ("gtc", TimeInForce::Gtc),
    ] {
        let mut request = order(coid, "AAA", Side::Buy, "5");
        request.order_type = OrderType::Limit;
        request.limit_price = Some(far);
        request.time_in_force = tif;
        requests.push(
            host.trading
                .place("u1", request, None)
                .await
                .expect("placed")
                .0,
        );
    }
    // A limit above the open fills at the open.
    let mut eager = order("eager", "AAA", Side::Buy, "5");
    eager.order_type = OrderType::Limit;
    eager.limit_price = Some(crate::money::to_step(
        next.high + d("1"),
        d("0.01"),
        crate::money::Round::Up,
    ));
    let eager = host
        .trading
        .place("u1", eager, None)
        .await
        .expect("placed")
        .0;
    host.trading
        .advance("u1", date("2010-01-06"))
        .await
        .expect("advanced");
    let status = |o: &Order| o.status;
    let after: Vec<Order> = futures_free(&host, &requests).await;
    assert_eq!(status(&after[0]), Status::Expired);
    assert_eq!(status(&after[1]), Status::Canceled);
    assert_eq!(status(&after[2]), Status::Accepted);
    let eager = host.trading.order("u1", &eager.id).await.expect("order");
    assert_eq!(eager.status, Status::Filled);
    assert_eq!(
        eager.fills[0].price,
        crate::money::to_step(next.open, d("0.01"), crate::money::Round::Up)
    );
    let account = host.trading.account("u1").await.expect("account");
    assert_eq!(account.open.len(), 1, "only the gtc order is open");
}

async fn futures_free(host: &Host, orders: &[Order]) -> Vec<Order> {
    let mut out = Vec::new();
    for o in orders {
        out.push(host.trading.order("u1", &o.id).await.expect("order"));
    }
    out
}

#[tokio::test]
async fn signals_are_validated_by_field_recorded_and_sized_into_orders() {
    let host = host().await;
    let signal = |symbol: &str, quantity: Option<&str>| SignalRequest {
        symbol: symbol.into(),
        side: Side::Buy,
        strength: 0.5,
        reason: "looks cheap".into(),
        quantity: quantity.map(d),
        limit_price: None,
        time_in_force: TimeInForce::Day,
        source: "user".into(),
        client_order_id: None,
    };
    let field = |err: TradingError| match err {
        TradingError::Invalid { field, .. } => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(
            host.trading
                .signal("u1", signal("ZZZ", None))
                .await
                .expect_err("unknown")
        ),
        "symbol"
    );
    assert_eq!(
        field(
            host.trading
                .signal("u1", signal("aaa", None))
                .await
                .expect_err("malformed")
        ),
        "symbol"
    );
    assert_eq!(
        field(
            host.trading
                .signal("u1", signal("AAA", Some("2.5")))
                .await
                .expect_err("lots")
        ),
        "quantity"
    );
    // Past the end of the data, the price is stale.
    host.trading
        .advance("u1", date("2011-06-01"))
        .await
        .expect("advanced");
    let stale = host
        .trading
        .signal("u1", signal("AAA", None))
        .await
        .expect_err("stale");
    assert_eq!(field(stale), "symbol");
    // A fresh account of another user: sized from strength and free cash.
    let outcome = host
        .trading
        .signal("u3", signal("BBB", None))
        .await
        .expect("accepted");
    assert_eq!(outcome.order.status, Status::Accepted);
    assert_eq!(outcome.order.signal.as_deref(), Some(outcome.id.as_str()));
    let notional = outcome.order.request.quantity * d("40");
    assert!(
        notional > d("15000") && notional < d("30000"),
        "half of 50,000 at about 40: {notional}"
    );
    let kinds = host.trail.kinds();
    assert!(kinds.contains(&"trading.signal.refused".to_owned()));
    assert!(kinds.contains(&"trading.signal.accepted".to_owned()));

    // With a client order id, a retry is the same signal and order, whatever the account
    // did since (sizing again would size otherwise); another symbol with it is refused.
    let keyed = |symbol_name: &str| SignalRequest {
        client_order_id: Some("agent-call-1".into()),
        ..signal(symbol_name, None)
    };
    let first = host.trading.signal("u4", keyed("BBB")).await.expect("sent");
    assert!(first.new);
    host.trading
        .place("u4", order("other", "AAA", Side::Buy, "10"), None)
        .await
        .expect("placed");
    let again = host
        .trading
        .signal("u4", keyed("BBB"))
        .await
        .expect("answered");
    assert!(!again.new);
    assert_eq!((again.id, again.order), (first.id, first.order));
    let other = host
        .trading
        .signal("u4", keyed("AAA"))
        .await
        .expect_err("reused");
    assert!(
        matches!(other, TradingError::Unprocessable { ref field, .. } if field == "client_order_id"),
        "{other:?}"
    );
    let accepted = host
        .trail
        .kinds()
        .iter()
        .filter(|k| *k == "trading.signal.accepted")
        .count();
    assert_eq!(accepted, 2, "u3's and u4's first");
}

#[tokio::test]
async fn a_losing_trade_cools_its_symbol_down_but_selling_what_is_held_stays_possible() {
    let host = host().await;
    let (buy, _) = host
        .trading
        .place("u1", order("b", "AAA", Side::Buy, "100"), None)
        .await
        .expect("placed");
    host.trading
        .advance("u1", date("2010-01-05"))
        .await
        .expect("bought");
    let bought = host.trading.order("u1", &buy.id).await.expect("order");
    assert_eq!(bought.status, Status::Filled);
    // Sell at once: slippage and fees both ways make it a loss.
    host.trading
        .place("u1", order("s", "AAA", Side::Sell, "100"), None)
        .await
        .expect("placed");
    let mut day = date("2010-01-06");
    let mut account = host.trading.account("u1").await.expect("account");
    while account.book.held("AAA") > Decimal::ZERO {
        account = host.trading.advance("u1", day).await.expect("sold");
        day = day.tomorrow().expect("day");
    }
    let realized = account.book.positions["AAA"].realized;
    if realized < Decimal::ZERO {
        assert!(account.symbol_locks.contains_key("AAA"), "{account:?}");
        let (again, _) = host
            .trading
            .place("u1", order("b2", "AAA", Side::Buy, "1"), None)
            .await
            .expect("placed");
        assert_eq!(again.reason_code.as_deref(), Some("symbol_cooldown"));
    }
}

#[tokio::test]
async fn a_strategy_run_sends_the_signal_of_the_last_close() {
    let host = host().await;
    let strategy = Strategy::SmaCrossover { fast: 2, slow: 3 };
    // Find a date where the crossover gives a buy on AAA.
    let bars = host
        .trading
        .feed()
        .bars(&symbol("AAA"), date("2009-10-01"), date("2010-09-30"))
        .await
        .expect("bars");
    let closes: Vec<f64> = bars.iter().map(|b| crate::money::float(b.close)).collect();
    let at = (10..closes.len())
        .find(|i| {
            strategy.signal(&closes[..=*i]) == Some(Side::Buy) && bars[*i].date > date("2010-01-04")
        })
        .expect("a crossing");
    host.trading
        .advance("u1", bars[at].date)
        .await
        .expect("advanced");
    let outcomes = host
        .trading
        .run_strategy("u1", strategy, &[symbol("AAA")])
        .await
        .expect("ran");
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].order.request.side, Side::Buy);
}

#[tokio::test]
async fn a_backtest_is_the_same_twice_and_charts_both_curves() {
    let host = host().await;
    let request = backtest::Request {
        strategy: Strategy::SmaCrossover { fast: 5, slow: 20 },
        symbols: vec![symbol("AAA"), symbol("BBB")],
        from: date("2010-01-04"),
        to: date("2010-09-30"),
        cash: d("100000"),
        seed: 42,
        params: Params::default(),
    };
    let first = host
        .trading
        .backtest("u1", request.clone())
        .await
        .expect("ran");
    let second = host.trading.backtest("u1", request).await.expect("ran");
    assert_eq!(first.outcome, second.outcome);
    assert!(!first.outcome.trades.is_empty());
    let stored = host
        .trading
        .stored_backtest("u1", &first.id)
        .await
        .expect("stored");
    assert_eq!(stored.outcome, first.outcome);
    let svg = backtest::chart("SMA 5/20 on AAA, BBB", &stored.outcome);
    assert!(svg.starts_with("<svg"));
    assert_eq!(svg.matches("<polyline").count(), 2);
}

#[test]
fn a_backtest_whose_equity_outgrows_the_ceiling_is_refused_rather_than_overflowing() {
    // A price that doubles every session, held from the start.
    let mut bars = Vec::new();
    let mut day = date("2010-01-04");
    let mut price = d("1");
    while bars.len() < 80 {
        if day.weekday().to_monday_zero_offset() < 5 {
            bars.push(Bar {
                date: day,
                open: price,
                high: price,
                low: price,
                close: price,
                volume: 1,
            });
            price *= d("2");
        }
        day = day.tomorrow().expect("day");
    }
    let request = backtest::Request {
        strategy: Strategy::SmaCrossover { fast: 2, slow: 3 },
        symbols: vec![symbol("AAA")],
        from: date("2010-01-04"),
        to: date("2010-12-31"),
        cash: d("1000000"),
        seed: 1,
        params: Params::default(),
    };
    let err =
        backtest::run(&request, &BTreeMap::from([(symbol("AAA"), bars)])).expect_err("refused");
    assert!(
        matches!(&err, TradingError::Unprocessable { field, .. } if field == "cash"),
        "{err:?}"
    );
}

#[tokio::test]
async fn replicas_that_cannot_talk_never_exceed_the_daily_notional_together() {
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = (site_of(&dir, "a").await, site_of(&dir, "b").await);
    let day = date("2010-01-05");
    let limit = 10_000;
    let share = |site: &Site| crate::escrow::Share {
        replica: site.replica,
        fraction: 0.5,
    };
    let mut spent = 0;
    for site in [&a, &b] {
        for _ in 0..10 {
            if crate::escrow::spend(site, "u1", day, share(site), limit, 1_000)
                .await
                .expect("spend")
            {
                spent += 1_000;
            }
        }
    }
    assert_eq!(spent, limit, "each replica spends its half");
    // A hands B some of a new day's rights: B may spend them once it has A's counter.
    let next = date("2010-01-06");
    assert!(
        crate::escrow::transfer(&a, "u1", next, share(&a), limit, b.replica, 2_000)
            .await
            .expect("transfer")
    );
    let key = jarvis_store::Key::new("trading#u1", format!("notional#{next}")).expect("key");
    let from_a: jarvis_crdt::BoundedCounter = a
        .store
        .read(&key)
        .await
        .expect("read")
        .expect("counter")
        .state;
    b.store.merge(&key, from_a).await.expect("synced");
    assert_eq!(
        crate::escrow::left(&b, "u1", next, share(&b), limit)
            .await
            .expect("left"),
        7_000
    );
}

/// The trading of `site`, with the usual bars.
async fn trading_on(site: Site) -> Trading {
    let notifier = Arc::new(Notifier::new(Registry::new(
        Arc::clone(&site.store),
        site.replica,
        Arc::clone(&site.clock),
        Duration::from_secs(60),
    )));
    let trading = Trading::new(site, notifier, Arc::new(Trail::default()), settings());
    trading
        .import(csv(&[("AAA", 100.0)], "2009-10-01", 260, 7).as_bytes())
        .await
        .expect("imported");
    trading
}

/// Copies the kill switch of `from` into `to`, as sync does.
async fn sync_state(from: &Site, to: &Site) {
    let key = jarvis_store::Key::new("trading", "state").expect("key");
    if let Some(doc) = from
        .store
        .read::<jarvis_crdt::Entity>(&key)
        .await
        .expect("read")
    {
        to.store.merge(&key, doc.state).await.expect("merged");
    }
}

#[tokio::test]
async fn a_halt_on_one_replica_is_never_undone_by_a_stale_active_from_another_after_sync() {
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = (site_of(&dir, "a").await, site_of(&dir, "b").await);
    let (here, there) = (trading_on(a.clone()).await, trading_on(b.clone()).await);
    assert_eq!(
        here.set_trading_state("admin", TradingState::Halted)
            .await
            .expect("set"),
        TradingState::Halted
    );
    // B never saw the halt: its admin reduces, then resumes, on a state that was active.
    there
        .set_trading_state("admin", TradingState::Reducing)
        .await
        .expect("set");
    there
        .set_trading_state("admin", TradingState::Active)
        .await
        .expect("set");
    sync_state(&b, &a).await;
    sync_state(&a, &b).await;
    for trading in [&here, &there] {
        assert_eq!(
            trading.trading_state().await.expect("state"),
            TradingState::Halted
        );
    }
    let (refused, _) = there
        .place("u1", order("after-sync", "AAA", Side::Buy, "1"), None)
        .await
        .expect("placed");
    assert_eq!(refused.reason_code.as_deref(), Some("trading_halted"));

    // A resume that saw the halt resumes everywhere once it syncs.
    there
        .set_trading_state("admin", TradingState::Active)
        .await
        .expect("set");
    sync_state(&b, &a).await;
    for trading in [&here, &there] {
        assert_eq!(
            trading.trading_state().await.expect("state"),
            TradingState::Active
        );
    }
}

#[test]
fn the_stored_forms_are_golden() {
    let stamp = Timestamp::new(1_733_000_000_000, 0, ReplicaId::from_name("g"));
    let request = OrderRequest {
        client_order_id: "client-1".into(),
        symbol: symbol("AAPL"),
        side: Side::Buy,
        order_type: OrderType::Limit,
        quantity: d("10"),
        limit_price: Some(d("101.25")),
        time_in_force: TimeInForce::Gtc,
    };
    let order = Order {
        id: "fe5daf7b-0000-8000-8000-000000000001".into(),
        request,
        status: Status::Accepted,
        filled: Decimal::ZERO,
        fills: Vec::new(),
        placed_on: date("2005-01-03"),
        created_at_ms: 1_733_000_000_000,
        signal: Some("signal-1".into()),
        reason_code: None,
        reason: None,
        cancel_requested: false,
    };
    let mut entity = order.create(stamp);
    let fill = Fill {
        n: 1,
        date: date("2005-01-04"),
        quantity: d("4"),
        price: d("101.20"),
        fee: d("0.05"),
    };
    let delta = order::record_fill(&mut entity, stamp, &fill, d("10"));
    entity.join(delta);
    let fields: Vec<(&str, &str)> = entity.fields().collect();
    let levels: Vec<(&str, u64)> = entity.levels().collect();
    let marks: Vec<&str> = entity.marks().collect();
    let back = Order::from_entity(&order.id, &entity).expect("reads");
    assert_eq!(back.status, Status::PartiallyFilled);
    assert_eq!(back.filled, d("4"));
    let mut book = Book::default();
    let deposit = Transaction::deposit(date("2005-01-03"), d("100000"));
    book.apply(&deposit);
    let trade = Transaction::trade(&back, &fill);
    book.apply(&trade);
    // The kill switch: halted, then resumed by a replica that saw the halt.
    let mut switch = Entity::new();
    let halt = crate::state::set(&mut switch, stamp, TradingState::Halted);
    switch.join(halt);
    let later = Timestamp::new(1_733_000_000_001, 0, ReplicaId::from_name("g"));
    let resume = crate::state::set(&mut switch, later, TradingState::Active);
    switch.join(resume);
    let account = crate::service::AccountState {
        book: book.clone(),
        clock: date("2005-01-04"),
        peak_equity: d("100004.85"),
        open: BTreeMap::from([(
            order.id.clone(),
            crate::service::Reservation {
                symbol: "AAPL".into(),
                side: Side::Buy,
                quantity: d("6"),
                cash: d("613.33"),
            },
        )]),
        symbol_locks: BTreeMap::from([("MSFT".to_owned(), date("2005-01-10"))]),
        account_lock: Some(("max_drawdown".to_owned(), date("2005-02-01"))),
        losses: vec![date("2005-01-03")],
    };
    let signal = crate::service::StoredSignal {
        symbol: symbol("AAPL"),
        side: Side::Buy,
        strength: 0.5,
        reason: "breakout".into(),
        source: "agent".into(),
        date: date("2005-01-03"),
        order: order.id.clone(),
    };
    let point = |day: &str, equity: &str| backtest::Point {
        date: date(day),
        equity: d(equity),
    };
    let summary = |last: &str| backtest::Summary {
        final_equity: d(last),
        total_return: 0.015,
        sharpe: 1.25,
        max_drawdown: 0.02,
        equity: vec![point("2005-01-03", "1000"), point("2005-01-04", last)],
    };
    let stored_backtest = crate::service::StoredBacktest {
        id: "fe5daf7b-0000-8000-8000-000000000002".into(),
        strategy: Strategy::SmaCrossover { fast: 20, slow: 50 },
        symbols: vec![symbol("AAPL")],
        from: date("2005-01-03"),
        to: date("2005-01-04"),
        cash: d("1000"),
        seed: 1,
        outcome: backtest::Outcome {
            strategy: summary("1015"),
            buy_and_hold: summary("1010"),
            trades: vec![backtest::Trade {
                date: date("2005-01-04"),
                symbol: symbol("AAPL"),
                side: Side::Buy,
                quantity: d("9"),
                price: d("101.2"),
                fee: d("0.01"),
            }],
        },
        trades_total: 1,
        created_at_ms: 1_733_000_000_000,
    };
    let layout = serde_json::json!({
        "order": {"fields": fields, "levels": levels, "marks": marks},
        "client_order_id": back.request.fingerprint(),
        "transactions": [deposit, trade],
        "book": book,
        "account": account,
        "instrument": Instrument::equity(symbol("AAPL")),
        "kill_switch": {"marks": switch.marks().collect::<Vec<_>>()},
        "signal": signal,
        "backtest": stored_backtest,
    });
    let text = serde_json::to_string_pretty(&layout).expect("json");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/trading.json");
    if std::env::var_os("JARVIS_BLESS").is_some() {
        std::fs::write(&path, format!("{text}\n")).expect("bless");
    }
    let golden = std::fs::read_to_string(&path).expect("golden file");
    assert_eq!(text.trim_end(), golden.trim_end());
}

// --- Properties -----------------------------------------------------------------------

/// What can happen to an order's stored state.
#[derive(Debug, Clone)]
enum Event {
    Fill(u32),
    Cancel,
    Expire,
    Accept,
    /// A stale copy from another replica, taken at step `n`, merged back.
    Stale(usize),
}

fn event() -> impl proptest::strategy::Strategy<Value = Event> {
    prop_oneof![
        (1u32..4).prop_map(Event::Fill),
        Just(Event::Cancel),
        Just(Event::Expire),
        Just(Event::Accept),
        (0usize..20).prop_map(Event::Stale),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever happens to an order and whatever stale copy merges in, once its status is
    /// terminal it stays terminal (and its rank never falls); the filled quantity never falls
    /// and equals the sum of its fills.
    #[test]
    fn an_order_never_leaves_a_terminal_state(events in proptest::collection::vec(event(), 1..30)) {
        let stamp = |n: usize| Timestamp::new(1_000 + n as u64, 0, ReplicaId::from_u64(1));
        let mut entity = Entity::new();
        entity.raise("status", Status::New.rank());
        let mut history = vec![entity.clone()];
        let mut terminal_at: Option<u64> = None;
        let mut fills = 0u32;
        for (n, event) in events.iter().enumerate() {
            match event {
                Event::Fill(q) => {
                    if !Status::of_rank(entity.level("status")).is_terminal() {
                        fills += 1;
                        let fill = Fill { n: fills, date: date("2005-01-04"), quantity: Decimal::from(*q), price: d("10"), fee: Decimal::ZERO };
                        order::record_fill(&mut entity, stamp(n), &fill, d("6"));
                    }
                }
                Event::Cancel => { order::end(&mut entity, stamp(n), Status::Canceled, "c", "c"); }
                Event::Expire => { order::end(&mut entity, stamp(n), Status::Expired, "e", "e"); }
                Event::Accept => { order::advance(&mut entity, Status::Accepted); }
                Event::Stale(k) => {
                    let stale = history[*k % history.len()].clone();
                    entity.join(stale);
                }
            }
            history.push(entity.clone());
            let status = Status::of_rank(entity.level("status"));
            if let Some(rank) = terminal_at {
                prop_assert!(status.is_terminal(), "left a terminal state: {status:?}");
                prop_assert!(status.rank() >= rank);
            }
            if status.is_terminal() {
                terminal_at = Some(status.rank());
            }
            let recorded: u64 = entity
                .marks()
                .filter_map(|m| m.strip_prefix("fill:"))
                .filter_map(|k| serde_json::from_str::<Fill>(entity.field(&format!("fill:{k}"))?).ok())
                .map(|f| u64::try_from(f.quantity).unwrap_or(0))
                .sum();
            prop_assert_eq!(entity.level("filled"), recorded * 100_000_000);
        }
    }
}

/// A session's bar, sane.
fn bar_at(day: usize, open: u32, move_bps: i32, range_bps: u32) -> Bar {
    let open = Decimal::from(open) / Decimal::ONE_HUNDRED;
    let close = (open + open * Decimal::from(move_bps) / Decimal::from(10_000))
        .round_dp(2)
        .max(d("0.05"));
    let spread = open * Decimal::from(range_bps) / Decimal::from(10_000);
    Bar {
        date: date("2005-01-03")
            .checked_add(jiff::Span::new().days(day as i64))
            .expect("day"),
        open,
        high: (open.max(close) + spread).round_dp(2),
        low: (open.min(close) - spread).round_dp(2).max(d("0.01")),
        close,
        volume: 1,
    }
}

#[derive(Debug, Clone)]
enum Act {
    Place {
        buy: bool,
        quantity: u32,
        limit_bps: Option<i32>,
        tif: u8,
    },
    Cancel(usize),
    Session {
        open: u32,
        move_bps: i32,
        range_bps: u32,
    },
    RetrySettlement(usize),
}

fn act() -> impl proptest::strategy::Strategy<Value = Act> {
    prop_oneof![
        (
            any::<bool>(),
            1u32..400,
            proptest::option::of(-300i32..300),
            0u8..3
        )
            .prop_map(|(buy, quantity, limit_bps, tif)| Act::Place {
                buy,
                quantity,
                limit_bps,
                tif
            }),
        (0usize..20).prop_map(Act::Cancel),
        (2_000u32..20_000, -500i32..500, 0u32..300).prop_map(|(open, move_bps, range_bps)| {
            Act::Session {
                open,
                move_bps,
                range_bps,
            }
        }),
        (0usize..50).prop_map(Act::RetrySettlement),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Through any sequence of orders, sessions, cancels and repeated settlements on the
    /// paper exchange and the book: cash never goes negative, no position goes short, each
    /// position equals the sum of its fills, and the ledger balances, transaction by
    /// transaction and in total.
    #[test]
    fn the_ledger_balances_and_cash_never_goes_negative(acts in proptest::collection::vec(act(), 1..60)) {
        let exchange = PaperExchange { params: Params { slippage_bps: 10, fee_bps: 5, partial_fill_percent: 30 } };
        let instrument = Instrument::equity(symbol("AAA"));
        let mut book = Book::default();
        let mut ledger = vec![Transaction::deposit(date("2005-01-03"), d("10000"))];
        book.apply(&ledger[0]);
        let mut orders: Vec<Order> = Vec::new();
        let mut day = 0usize;
        let mut last_close = d("100");
        for (n, act) in acts.into_iter().enumerate() {
            match act {
                Act::Place { buy, quantity, limit_bps, tif } => {
                    let limit_price = limit_bps.map(|b| crate::money::to_step(last_close + last_close * Decimal::from(b) / Decimal::from(10_000), d("0.01"), crate::money::Round::Nearest).max(d("0.01")));
                    orders.push(Order {
                        id: format!("o{n:04}"),
                        request: OrderRequest {
                            client_order_id: format!("c{n}"),
                            symbol: symbol("AAA"),
                            side: if buy { Side::Buy } else { Side::Sell },
                            order_type: if limit_price.is_some() { OrderType::Limit } else { OrderType::Market },
                            quantity: Decimal::from(quantity),
                            limit_price,
                            time_in_force: [TimeInForce::Day, TimeInForce::Gtc, TimeInForce::Ioc][usize::from(tif)],
                        },
                        status: Status::Accepted,
                        filled: Decimal::ZERO,
                        fills: Vec::new(),
                        placed_on: bar_at(day, 100, 0, 0).date,
                        created_at_ms: 0,
                        signal: None,
                        reason_code: None,
                        reason: None,
                        cancel_requested: false,
                    });
                }
                Act::Cancel(k) => {
                    if let Some(order) = orders.get_mut(k)
                        && !order.status.is_terminal()
                    {
                        order.status = Status::Canceled;
                    }
                }
                Act::Session { open, move_bps, range_bps } => {
                    day += 1;
                    let bar = bar_at(day, open, move_bps, range_bps);
                    last_close = bar.close;
                    for order in orders.iter_mut().filter(|o| !o.status.is_terminal()) {
                        let first = order.fills.is_empty() && order.placed_on < bar.date && order.status == Status::Accepted;
                        let funds = Funds { cash: book.cash, position: book.held("AAA") };
                        let execution = exchange.execute(order, &instrument, &bar, first, funds);
                        if let Some((quantity, price, fee)) = execution.fill {
                            let fill = Fill { n: u32::try_from(order.fills.len() + 1).unwrap_or(0), date: bar.date, quantity, price, fee };
                            order.fills.push(fill);
                            order.filled += quantity;
                            let tx = Transaction::trade(order, &fill);
                            book.apply(&tx);
                            ledger.push(tx);
                            order.status = if order.remaining().is_zero() { Status::Filled } else { Status::PartiallyFilled };
                        }
                        if let Some(end) = execution.ends {
                            if !order.status.is_terminal() {
                                order.status = match end {
                                    crate::exchange::EndOfOrder::Canceled => Status::Canceled,
                                    crate::exchange::EndOfOrder::Expired => Status::Expired,
                                };
                            }
                        } else if first && !order.status.is_terminal() && order.request.time_in_force != TimeInForce::Gtc {
                            order.status = Status::Expired;
                        }
                    }
                }
                Act::RetrySettlement(k) => {
                    if let Some(tx) = ledger.get(k % ledger.len()).cloned() {
                        let before = book.clone();
                        book.apply(&tx);
                        prop_assert_eq!(&book, &before, "a settlement taken in again changed the book");
                    }
                }
            }
            prop_assert!(book.cash >= Decimal::ZERO, "cash went negative: {}", book.cash);
            prop_assert!(book.held("AAA") >= Decimal::ZERO);
            let filled: Decimal = orders
                .iter()
                .flat_map(|o| o.fills.iter().map(move |f| if o.request.side == Side::Buy { f.quantity } else { -f.quantity }))
                .sum();
            prop_assert_eq!(book.held("AAA"), filled);
            let mut totals: BTreeMap<String, Decimal> = BTreeMap::new();
            for tx in &ledger {
                prop_assert!(tx.is_balanced(), "{:?}", tx);
                for posting in &tx.postings {
                    *totals.entry(posting.asset.clone()).or_default() += posting.amount;
                }
            }
            prop_assert!(totals.values().all(Decimal::is_zero));
            let cash: Decimal = ledger.iter().map(|tx| tx.amount("cash", "USD")).sum();
            prop_assert_eq!(cash, book.cash);
        }
    }
}
