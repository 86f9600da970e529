//! Trading on real historical prices (the bundled `stocks.csv.gz`, see
//! `jarvis_tests::market`):
//!
//! - an SMA(20/50) crossover backtest on AAPL from 2000-03-01 to 2013-03-01 through the
//!   service on a libSQL store gives the same result twice, and the API gives it too;
//! - the real `jarvis-local` loads the data at start, and a signal becomes an order that
//!   fills at the next session's open plus slippage, is announced on the `trading` topic of
//!   the WebSocket API, settles in the ledger, and is all still there after a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use jarvis_crdt::ReplicaId;
use jarvis_realtime::{Notifier, Registry};
use jarvis_store::Site;
use jarvis_store::clock::Clock;
use jarvis_tests::client::Client;
use jarvis_tests::{LocalNode, market};
use jarvis_trading::backtest::{Outcome, Request};
use jarvis_trading::exchange::Params;
use jarvis_trading::money::Decimal;
use jarvis_trading::service::{NoAudit, Settings};
use jarvis_trading::strategy::Strategy;
use jarvis_trading::{Symbol, Trading};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// The trading of a fresh libSQL store in `dir`, with the default settings.
async fn trading_in(dir: &std::path::Path) -> Trading {
    let store = jarvis_store::open(&jarvis_config::StoreConfig::Libsql {
        path: dir.join("trading.db"),
    })
    .await
    .expect("store");
    let replica = ReplicaId::from_name("test");
    let clock = Arc::new(Clock::new(replica));
    let notifier = Arc::new(Notifier::new(Registry::new(
        Arc::clone(&store),
        replica,
        Arc::clone(&clock),
        Duration::from_secs(60),
    )));
    let config = jarvis_config::Config::from_vars([(
        "JARVIS_DATA_DIR".to_owned(),
        dir.to_string_lossy().into_owned(),
    )])
    .expect("config");
    Trading::new(
        Site {
            store,
            replica,
            clock,
        },
        notifier,
        Arc::new(NoAudit),
        Settings::from_config(&config.trading),
    )
}

/// SMA(20/50) on AAPL over the whole data set, $100,000, seed 1, the default exchange.
fn aapl_sma() -> Request {
    Request {
        strategy: Strategy::SmaCrossover { fast: 20, slow: 50 },
        symbols: vec![Symbol::parse("AAPL").expect("symbol")],
        from: "2000-03-01".parse().expect("date"),
        to: "2013-03-01".parse().expect("date"),
        cash: Decimal::from(100_000),
        seed: 1,
        params: Params::default(),
    }
}

fn describe(outcome: &Outcome) -> String {
    let line = |name: &str, s: &jarvis_trading::backtest::Summary| {
        format!(
            "{name}: final {} total return {:.1} % Sharpe {:.2} max drawdown {:.1} %",
            s.final_equity.round_dp(2),
            s.total_return * 100.0,
            s.sharpe,
            s.max_drawdown * 100.0
        )
    };
    format!(
        "{}\n{}\ntrades: {}",
        line("SMA(20/50)", &outcome.strategy),
        line("buy and hold", &outcome.buy_and_hold),
        outcome.trades.len()
    )
}

#[tokio::test]
async fn an_sma_20_50_backtest_on_aapl_2000_to_2013_gives_the_same_result_twice() {
    let Some(file) = market::stocks_csv() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let trading = trading_in(dir.path()).await;
    let counts = trading
        .import(&std::fs::read(&file).expect("the data"))
        .await
        .expect("imported");
    let sessions: Vec<(String, usize)> = counts.iter().map(|(s, n)| (s.to_string(), *n)).collect();
    assert_eq!(
        sessions,
        [
            ("AAPL".to_owned(), 3270),
            ("FB".to_owned(), 196),
            ("GOOG".to_owned(), 2148),
            ("IBM".to_owned(), 3270),
            ("MSFT".to_owned(), 3270),
        ]
    );

    let first = trading.backtest("u", aapl_sma()).await.expect("ran");
    let second = trading.backtest("u", aapl_sma()).await.expect("ran");
    assert_ne!(first.id, second.id);
    assert_eq!(first.outcome, second.outcome);
    let outcome = &first.outcome;
    eprintln!("{}", describe(outcome));

    // What the data says happened: AAPL rose about thirteenfold (split-adjusted) and fell
    // by more than half twice; a trend follower trades a few dozen times.
    let hold = &outcome.buy_and_hold;
    assert!(
        hold.total_return > 8.0 && hold.total_return < 20.0,
        "{}",
        describe(outcome)
    );
    assert!(hold.max_drawdown > 0.5, "{}", describe(outcome));
    assert!(
        (20..200).contains(&outcome.trades.len()),
        "{}",
        describe(outcome)
    );
    assert!(outcome.strategy.max_drawdown < hold.max_drawdown);
    // The README shows these figures.
    let readme =
        std::fs::read_to_string(jarvis_tests::workspace_root().join("README.md")).expect("README");
    for summary in [&outcome.strategy, hold] {
        let figures = format!(
            "| ${} | {} % | {:.2} | {:.1} % |",
            thousands(&summary.final_equity.round_dp(2).to_string()),
            thousands(&format!("{:.1}", summary.total_return * 100.0)),
            summary.sharpe,
            summary.max_drawdown * 100.0
        );
        assert!(readme.contains(&figures), "the README shows {figures}");
    }
    assert!(readme.contains(&format!("({} fills)", outcome.trades.len())));
    let first_day = outcome.strategy.equity.first().expect("points").date;
    let last_day = outcome.strategy.equity.last().expect("points").date;
    assert_eq!(
        (first_day.to_string(), last_day.to_string()),
        ("2000-03-01".into(), "2013-03-01".into())
    );
    assert!(
        outcome
            .trades
            .iter()
            .all(|t| t.date >= first_day && t.date <= last_day)
    );
}

/// `1234567.89` as `1,234,567.89`.
fn thousands(number: &str) -> String {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let mut out = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if fraction.is_empty() {
        out
    } else {
        format!("{out}.{fraction}")
    }
}

fn decimal(value: &Value) -> Decimal {
    value
        .as_str()
        .expect("a decimal string")
        .parse()
        .expect("decimal")
}

#[tokio::test]
async fn jarvis_local_trades_a_signal_on_real_prices_to_settlement_and_keeps_it_across_a_restart() {
    let Some(file) = market::stocks_csv() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let bars_file = file.to_string_lossy().into_owned();
    let env = [("JARVIS_TRADING_BARS_FILE", bars_file.as_str())];
    let node = LocalNode::start(&data, &env);
    let mut client = Client::sign_up(&node).await;

    // The data is loaded at start.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = client.get("/trading/instruments").await;
        if listed.as_array().is_some_and(|l| l.len() == 5) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the market data was not loaded: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let ws = node.base_url().replacen("http://", "ws://", 1);
    let (mut socket, _) = connect_async(format!("{ws}/ws?token={}", client.token))
        .await
        .expect("connect");
    socket
        .send(Message::text(
            json!({"action": "subscribe", "topics": ["trading"]}).to_string(),
        ))
        .await
        .expect("subscribe");

    let (status, sent) = client
        .send(
            reqwest::Method::POST,
            "/trading/signals",
            Some(json!({"symbol": "AAPL", "side": "buy", "quantity": "100", "reason": "new year"})),
        )
        .await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(sent["order"]["status"], "accepted", "{sent}");
    let order = sent["order"]["id"].as_str().expect("id").to_owned();

    // The account starts on 2005-01-03; the next session is the 4th.
    let (status, account) = client
        .send(
            reqwest::Method::PUT,
            "/trading/clock",
            Some(json!({"date": "2005-01-04"})),
        )
        .await;
    assert_eq!(status, 200, "{account}");
    let filled = client.get(&format!("/trading/orders/{order}")).await;
    assert_eq!(filled["status"], "filled", "{filled}");
    let bar = &client
        .get("/trading/bars/AAPL?from=2005-01-04&to=2005-01-04")
        .await[0];
    let (open, high, low) = (
        decimal(&bar["open"]),
        decimal(&bar["high"]),
        decimal(&bar["low"]),
    );
    for fill in filled["fills"].as_array().expect("fills") {
        let price = decimal(&fill["price"]);
        assert!(
            price >= open && price <= high && price >= low,
            "{fill} in {bar}"
        );
    }
    assert_eq!(decimal(&filled["filled_quantity"]), Decimal::from(100));

    // The fill is announced to the account's connections.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let frame = tokio::time::timeout_at(deadline.into(), socket.next())
            .await
            .expect("a fill event within 10 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = frame {
            let event: Value = serde_json::from_str(&text).expect("json");
            if event["type"] == "trading.fill" && event["order"] == order.as_str() {
                break;
            }
        }
    }

    // Settled: the deposit and the trade; after a restart, all of it is still there.
    let ledger = client.get("/trading/ledger").await;
    let kinds: Vec<&str> = ledger["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|t| t["kind"].as_str())
        .collect();
    assert!(kinds.starts_with(&["deposit", "trade"]), "{ledger}");
    let before = client.get("/trading/account").await;
    drop(socket);
    drop(node);
    let node = LocalNode::start(&data, &env);
    client.at(&node);
    assert_eq!(client.get("/trading/account").await, before);
    assert_eq!(
        client.get(&format!("/trading/orders/{order}")).await,
        filled
    );
}

#[tokio::test]
async fn the_api_backtest_of_aapl_matches_the_services() {
    let Some(file) = market::stocks_csv() else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let trading = trading_in(dir.path()).await;
    trading
        .import(&std::fs::read(&file).expect("the data"))
        .await
        .expect("imported");
    let expected = trading
        .backtest("u", aapl_sma())
        .await
        .expect("ran")
        .outcome;

    let bars_file = file.to_string_lossy().into_owned();
    let node = LocalNode::start(
        &dir.path().join("data"),
        &[("JARVIS_TRADING_BARS_FILE", bars_file.as_str())],
    );
    let client = Client::sign_up(&node).await;
    let request = json!({"strategy": {"name": "sma_crossover", "fast": 20, "slow": 50},
        "symbols": ["AAPL"], "from": "2000-03-01", "to": "2013-03-01", "cash": "100000", "seed": 1});
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let (status, run) = client
            .send(
                reqwest::Method::POST,
                "/trading/backtests",
                Some(request.clone()),
            )
            .await;
        if status == 201 {
            break run;
        }
        // Until the data is loaded, AAPL is not listed.
        assert_eq!(status, 422, "{run}");
        assert!(
            Instant::now() < deadline,
            "the market data was not loaded: {run}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        decimal(&run["result"]["final_equity"]),
        expected.strategy.final_equity
    );
    assert_eq!(
        decimal(&run["buy_and_hold"]["final_equity"]),
        expected.buy_and_hold.final_equity
    );
    assert_eq!(
        run["trades"].as_array().map(Vec::len),
        Some(expected.trades.len())
    );
}
