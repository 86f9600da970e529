use std::sync::{Arc, OnceLock};

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode};
use jarvis_fn_auth::testing::TestApp;
use jiff::civil::Date;
use serde_json::{Value, json};

use crate::Hosting;

/// The function's routes (with auth's, for the audit trail) on a fresh store, signed in
/// as the deployment's admin, with every fill whole.
async fn host() -> TestApp {
    let slot: Arc<OnceLock<Arc<Hosting>>> = Arc::new(OnceLock::new());
    let hosting = Arc::clone(&slot);
    let router: axum::Router<jarvis_app::AppState> =
        super::api().merge(jarvis_fn_auth::api()).into();
    let router = router.layer(tower::util::MapRequestLayer::new(
        move |mut request: Request<Body>| {
            if let Some(hosting) = hosting.get() {
                request.extensions_mut().insert(Arc::clone(hosting));
            }
            request
        },
    ));
    let app = TestApp::signed_in_with_env(
        router,
        &[
            ("JARVIS_TRADING_PARTIAL_FILL_PERCENT", "0"),
            ("JARVIS_TRADING_START_DATE", "2005-01-03"),
        ],
    )
    .await;
    assert!(slot.set(super::service(&app.state)).is_ok());
    app
}

/// Weekday bars of `symbols` from 2004-11-01 to `last`, each a steady climb from its
/// start price by 0.25 a session, as the bundled CSV writes them.
fn csv(symbols: &[(&str, f64)], last: &str) -> String {
    let last: Date = last.parse().expect("date");
    let mut out = String::from("Ticker,Date,Open,High,Low,Close,Volume,Adj Close\n");
    for (name, start) in symbols {
        let mut day: Date = "2004-11-01".parse().expect("date");
        let mut open = *start;
        while day <= last {
            if day.weekday().to_monday_zero_offset() < 5 {
                let close = open + 0.25;
                out.push_str(&format!(
                    "{name},{day},{open:.2},{:.2},{:.2},{close:.2},1000000,{close:.2}\n",
                    close + 0.5,
                    open - 0.5
                ));
                open = close;
            }
            day = day.tomorrow().expect("day");
        }
    }
    out
}

async fn import(app: &TestApp, csv: &str) -> (StatusCode, Value) {
    let request = Request::post("/trading/bars")
        .header("content-type", "text/csv")
        .body(Body::from(csv.to_owned()))
        .expect("request");
    app.send(request).await
}

/// A POST with an `Idempotency-Key`.
async fn post_keyed(app: &TestApp, uri: &str, key: &str, body: &Value) -> (StatusCode, Value) {
    let request = Request::post(uri)
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .expect("request");
    app.send(request).await
}

/// A POST sent three times with the same `Idempotency-Key`: every answer is the first.
async fn post_thrice(app: &TestApp, uri: &str, key: &str, body: Value) -> (StatusCode, Value) {
    let first = post_keyed(app, uri, key, &body).await;
    for _ in 0..2 {
        assert_eq!(
            post_keyed(app, uri, key, &body).await,
            first,
            "a retry of {uri}"
        );
    }
    first
}

async fn get(app: &TestApp, uri: &str) -> Value {
    let (status, body) = app.call(Method::GET, uri, None).await;
    assert_eq!(status, StatusCode::OK, "GET {uri}: {body}");
    body
}

fn decimal(value: &Value) -> rust_decimal::Decimal {
    value
        .as_str()
        .expect("a decimal string")
        .parse()
        .expect("decimal")
}

/// The kinds of the audit events about `text`, oldest first.
async fn story(app: &TestApp, text: &str) -> Vec<String> {
    let page = get(
        app,
        &format!("/audit?type=trading.*&about={text}&limit=200"),
    )
    .await;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_owned())
        .collect()
}

/// Everything the caller's account says, for comparing before and after.
async fn snapshot(app: &TestApp) -> (Value, Value, Value) {
    (
        get(app, "/trading/account").await,
        get(app, "/trading/orders?limit=100").await,
        get(app, "/trading/ledger?limit=100").await,
    )
}

#[tokio::test]
async fn retrying_every_post_of_a_signal_to_settlement_flow_three_times_changes_nothing() {
    let app = host().await;
    let data = csv(&[("AAA", 100.0), ("BBB", 50.0)], "2005-03-31");
    let (status, imported) = post_thrice_csv(&app, &data).await;
    assert_eq!(status, StatusCode::OK, "{imported}");
    let sessions = data.lines().filter(|l| l.starts_with("AAA,")).count();
    assert_eq!(imported["symbols"]["AAA"], sessions);

    // A signal with a quantity: validated, recorded, risk-checked, placed.
    let (status, sent) = post_thrice(
        &app,
        "/trading/signals",
        "signal-1",
        json!({"symbol": "AAA", "side": "buy", "quantity": "10", "reason": "breakout"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let order = sent["order"]["id"].as_str().expect("order id").to_owned();
    assert_eq!(sent["order"]["status"], "accepted");
    assert_eq!(sent["order"]["signal"], sent["signal"]);

    // The next session trades it at the open, plus slippage; settlement posts it.
    let (status, account) = app
        .call(
            Method::PUT,
            "/trading/clock",
            Some(json!({"date": "2005-01-04"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{account}");
    let filled = get(&app, &format!("/trading/orders/{order}")).await;
    assert_eq!(filled["status"], "filled", "{filled}");
    assert_eq!(filled["fills"].as_array().map(Vec::len), Some(1));
    assert_eq!(account["positions"][0]["symbol"], "AAA");
    assert_eq!(decimal(&account["positions"][0]["quantity"]), 10.into());

    // Selling it back, by client order id: the retries answer the same order, 200.
    let sell = json!({"client_order_id": "exit-1", "symbol": "AAA", "side": "sell",
        "type": "market", "quantity": "10", "time_in_force": "day"});
    let (status, placed) = app
        .call(Method::POST, "/trading/orders", Some(sell.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    for _ in 0..2 {
        let (status, again) = app
            .call(Method::POST, "/trading/orders", Some(sell.clone()))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again, placed);
    }
    app.call(
        Method::PUT,
        "/trading/clock",
        Some(json!({"date": "2005-01-05"})),
    )
    .await;
    let before = snapshot(&app).await;

    // Every POST of the flow again, three times more: nothing changes.
    post_thrice_csv(&app, &data).await;
    for _ in 0..3 {
        let (status, again) = post_keyed(
            &app,
            "/trading/signals",
            "signal-1",
            &json!({"symbol": "AAA", "side": "buy", "quantity": "10", "reason": "breakout"}),
        )
        .await;
        assert_eq!(
            (status, &again["signal"]),
            (StatusCode::CREATED, &sent["signal"])
        );
        let (status, _) = app
            .call(Method::POST, "/trading/orders", Some(sell.clone()))
            .await;
        assert_eq!(status, StatusCode::OK);
        app.call(
            Method::PUT,
            "/trading/clock",
            Some(json!({"date": "2005-01-05"})),
        )
        .await;
    }
    assert_eq!(snapshot(&app).await, before);

    // What it comes to: a deposit and two trades that balance; cash is what is left.
    let (account, orders, ledger) = before;
    assert_eq!(orders["items"].as_array().map(Vec::len), Some(2));
    let transactions = ledger["items"].as_array().expect("items");
    let kinds: Vec<&str> = transactions
        .iter()
        .filter_map(|t| t["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["deposit", "trade", "trade"]);
    for tx in transactions {
        let mut by_asset = std::collections::BTreeMap::new();
        for posting in tx["postings"].as_array().expect("postings") {
            *by_asset
                .entry(posting["asset"].as_str().expect("asset").to_owned())
                .or_insert(rust_decimal::Decimal::ZERO) += decimal(&posting["amount"]);
        }
        assert!(by_asset.values().all(|sum| sum.is_zero()), "{tx}");
    }
    let held: Vec<_> = account["positions"]
        .as_array()
        .expect("positions")
        .iter()
        .map(|p| decimal(&p["quantity"]))
        .collect();
    assert_eq!(held, [rust_decimal::Decimal::ZERO], "{account}");
    let cash = decimal(&account["cash"]);
    let pnl = decimal(&account["realized_pnl"]);
    assert!(decimal(&account["fees"]) > rust_decimal::Decimal::ZERO);
    assert_eq!(
        cash,
        rust_decimal::Decimal::from(100_000) + pnl,
        "fees are in the P&L"
    );
    assert!(
        pnl > rust_decimal::Decimal::ZERO,
        "the climb paid: {account}"
    );

    // The whole story of the first order, in the audit trail.
    assert_eq!(
        story(&app, &order).await,
        [
            "trading.signal.accepted",
            "trading.risk.passed",
            "trading.order.accepted",
            "trading.fill",
            "trading.settled",
        ]
    );
}

/// The bars imported three times with the same `Idempotency-Key`.
async fn post_thrice_csv(app: &TestApp, csv: &str) -> (StatusCode, Value) {
    let send = || async {
        let request = Request::post("/trading/bars")
            .header("content-type", "text/csv")
            .header("idempotency-key", "bars-1")
            .body(Body::from(csv.to_owned()))
            .expect("request");
        app.send(request).await
    };
    let first = send().await;
    for _ in 0..2 {
        assert_eq!(send().await, first, "a retry of the import");
    }
    first
}

#[tokio::test]
async fn a_client_order_id_names_one_order_and_another_request_with_it_is_a_422() {
    let app = host().await;
    import(&app, &csv(&[("AAA", 100.0)], "2005-02-28")).await;
    let order = json!({"client_order_id": "c-1", "symbol": "AAA", "side": "buy",
        "type": "limit", "quantity": "5", "limit_price": "99.50", "time_in_force": "gtc"});
    let (status, first) = app
        .call(Method::POST, "/trading/orders", Some(order.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = app
        .call(Method::POST, "/trading/orders", Some(order.clone()))
        .await;
    assert_eq!((status, &again), (StatusCode::OK, &first));

    let mut other = order.clone();
    other["quantity"] = json!("6");
    let (status, refused) = app.call(Method::POST, "/trading/orders", Some(other)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["field"], "client_order_id");
    let orders = get(&app, "/trading/orders").await;
    assert_eq!(orders["items"].as_array().map(Vec::len), Some(1));

    // A gtc limit below the market rests; cancelling ends it, once.
    let id = first["id"].as_str().expect("id");
    let (status, cancelled) = app
        .call(Method::POST, &format!("/trading/orders/{id}/cancel"), None)
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (StatusCode::OK, Some("canceled"))
    );
    let (status, _) = app
        .call(Method::POST, &format!("/trading/orders/{id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let account = get(&app, "/trading/account").await;
    assert_eq!(account["open_orders"], 0);
    assert_eq!(decimal(&account["free_cash"]), 100_000.into());
}

#[tokio::test]
async fn a_signal_of_an_unknown_symbol_a_stale_price_or_a_malformed_quantity_is_a_400_naming_the_field()
 {
    let app = host().await;
    import(&app, &csv(&[("AAA", 100.0)], "2005-01-31")).await;
    let cases = [
        (
            json!({"symbol": "ZZZ", "side": "buy", "reason": "r"}),
            "symbol",
        ),
        (
            json!({"symbol": "aa a", "side": "buy", "reason": "r"}),
            "symbol",
        ),
        (
            json!({"symbol": "AAA", "side": "buy", "quantity": "1.5", "reason": "r"}),
            "quantity",
        ),
        (
            json!({"symbol": "AAA", "side": "buy", "quantity": "ten", "reason": "r"}),
            "quantity",
        ),
        (
            json!({"symbol": "AAA", "side": "buy", "quantity": "0", "reason": "r"}),
            "quantity",
        ),
        (
            json!({"symbol": "AAA", "side": "sell", "reason": "nothing held"}),
            "quantity",
        ),
        (
            json!({"symbol": "AAA", "side": "buy", "limit_price": "100.001", "reason": "r"}),
            "limit_price",
        ),
        (
            json!({"symbol": "AAA", "side": "buy", "strength": 1.5, "reason": "r"}),
            "strength",
        ),
    ];
    for (body, field) in cases {
        let (status, refused) = app
            .call(Method::POST, "/trading/signals", Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {refused}");
        assert_eq!(refused["error"]["field"], field, "{body}: {refused}");
    }
    // The data ends in January: in March the price is stale.
    app.call(
        Method::PUT,
        "/trading/clock",
        Some(json!({"date": "2005-03-01"})),
    )
    .await;
    let (status, refused) = app
        .call(
            Method::POST,
            "/trading/signals",
            Some(json!({"symbol": "AAA", "side": "buy", "reason": "late"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"]["field"], "symbol");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("stale"))
    );

    // Nothing was placed; every refusal that reached the domain is in the audit trail.
    let orders = get(&app, "/trading/orders").await;
    assert_eq!(orders["items"].as_array().map(Vec::len), Some(0));
    let refusals = get(&app, "/audit?type=trading.signal.refused&limit=200").await;
    assert_eq!(
        refusals["items"].as_array().map(Vec::len),
        Some(6),
        "{refusals}"
    );
}

#[tokio::test]
async fn the_kill_switch_is_an_admins_and_halted_refuses_everything_but_cancels() {
    let app = host().await;
    import(&app, &csv(&[("AAA", 100.0)], "2005-02-28")).await;
    let user = app.sign_up("trader@example.com").await;
    let (status, _) = app
        .call_as(
            Some(&user.access_token),
            Method::PUT,
            "/trading/state",
            Some(json!({"state": "halted"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let buy = |coid: &str, tif: &str, limit: &str| {
        json!({"client_order_id": coid, "symbol": "AAA", "side": "buy", "type": "limit",
            "quantity": "10", "limit_price": limit, "time_in_force": tif})
    };
    let (_, resting) = app
        .call_as(
            Some(&user.access_token),
            Method::POST,
            "/trading/orders",
            Some(buy("rest", "gtc", "90")),
        )
        .await;
    assert_eq!(resting["status"], "accepted");

    let (status, state) = app
        .call(
            Method::PUT,
            "/trading/state",
            Some(json!({"state": "halted"})),
        )
        .await;
    assert_eq!(
        (status, &state),
        (StatusCode::OK, &json!({"state": "halted"}))
    );
    let (status, refused) = app
        .call_as(
            Some(&user.access_token),
            Method::POST,
            "/trading/orders",
            Some(buy("h", "day", "101")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(refused["status"], "rejected");
    assert_eq!(refused["reason_code"], "trading_halted");
    let id = resting["id"].as_str().expect("id");
    let (status, cancelled) = app
        .call_as(
            Some(&user.access_token),
            Method::POST,
            &format!("/trading/orders/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (StatusCode::OK, Some("canceled"))
    );

    // Reducing: only what shrinks a position; a buy of nothing held does not.
    app.call(
        Method::PUT,
        "/trading/state",
        Some(json!({"state": "reducing"})),
    )
    .await;
    let (_, refused) = app
        .call_as(
            Some(&user.access_token),
            Method::POST,
            "/trading/orders",
            Some(buy("r", "day", "101")),
        )
        .await;
    assert_eq!(refused["reason_code"], "reducing_only");

    app.call(
        Method::PUT,
        "/trading/state",
        Some(json!({"state": "active"})),
    )
    .await;
    let (_, accepted) = app
        .call_as(
            Some(&user.access_token),
            Method::POST,
            "/trading/orders",
            Some(buy("a", "day", "101")),
        )
        .await;
    assert_eq!(accepted["status"], "accepted", "{accepted}");
    let kinds = story(&app, "state=").await;
    assert_eq!(kinds, ["trading.state", "trading.state", "trading.state"]);
}

#[tokio::test]
async fn another_users_order_is_not_found() {
    let app = host().await;
    import(&app, &csv(&[("AAA", 100.0)], "2005-02-28")).await;
    let (_, order) = app
        .call(
            Method::POST,
            "/trading/orders",
            Some(
                json!({"client_order_id": "mine", "symbol": "AAA", "side": "buy",
                "type": "market", "quantity": "1"}),
            ),
        )
        .await;
    let other = app.sign_up("other@example.com").await;
    let id = order["id"].as_str().expect("id");
    for (method, uri) in [
        (Method::GET, format!("/trading/orders/{id}")),
        (Method::POST, format!("/trading/orders/{id}/cancel")),
    ] {
        let (status, _) = app
            .call_as(Some(&other.access_token), method, &uri, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn a_backtest_is_kept_with_its_figures_and_charted_as_svg() {
    let app = host().await;
    import(&app, &csv(&[("AAA", 100.0), ("BBB", 50.0)], "2005-06-30")).await;
    let request = json!({"strategy": {"name": "sma_crossover", "fast": 5, "slow": 20},
        "symbols": ["AAA", "BBB"], "from": "2005-01-03", "to": "2005-06-30", "cash": "10000"});
    let (status, run) = post_thrice(&app, "/trading/backtests", "bt-1", request.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    assert!(
        run["buy_and_hold"]["total_return"]
            .as_f64()
            .is_some_and(|r| r > 0.0)
    );
    assert!(
        run["result"]["equity"]
            .as_array()
            .is_some_and(|e| e.len() > 100)
    );
    let id = run["id"].as_str().expect("id");
    assert_eq!(get(&app, &format!("/trading/backtests/{id}")).await, run);

    // The same request again is a new backtest with the same figures.
    let (_, again) = app
        .call(Method::POST, "/trading/backtests", Some(request))
        .await;
    assert_ne!(again["id"], run["id"]);
    for field in ["result", "buy_and_hold", "trades"] {
        assert_eq!(again[field], run[field], "{field}");
    }

    let response = app
        .respond(
            Request::get(format!("/trading/backtests/{id}/chart"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/svg+xml")
    );
    let svg = to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let svg = String::from_utf8_lossy(&svg);
    assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
}

#[tokio::test]
async fn bars_that_are_not_the_expected_csv_are_a_400_naming_the_line_and_change_nothing() {
    let app = host().await;
    let (status, refused) = import(&app, "Ticker,Date,Open\nAAA,2005-01-03,1\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let good = csv(&[("AAA", 100.0)], "2005-01-31");
    let torn = format!("{good}AAA,2005-02-01,1,2,x,1,5,1\n");
    let (status, refused) = import(&app, &torn).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("line")),
        "{refused}"
    );
    let listed = get(&app, "/trading/instruments").await;
    assert_eq!(listed, json!([]));
}

#[tokio::test]
async fn a_signal_retried_with_its_client_order_id_answers_the_first_signal_and_order() {
    let app = host().await;
    import(&app, &csv(&[("AAA", 100.0), ("BBB", 50.0)], "2005-02-28")).await;
    let signal = json!({"symbol": "AAA", "side": "buy", "strength": 0.5, "reason": "r",
        "client_order_id": "sig-1"});
    let (status, first) = app
        .call(Method::POST, "/trading/signals", Some(signal.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    // The account changed in between (another order holds cash): the retry is not sized
    // again, it is the first signal's answer.
    app.call(
        Method::POST,
        "/trading/orders",
        Some(
            json!({"client_order_id": "other", "symbol": "BBB", "side": "buy",
            "type": "market", "quantity": "100"}),
        ),
    )
    .await;
    let (status, again) = app
        .call(Method::POST, "/trading/signals", Some(signal.clone()))
        .await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    let mut other = signal;
    other["symbol"] = json!("BBB");
    let (status, refused) = app
        .call(Method::POST, "/trading/signals", Some(other))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["field"], "client_order_id");
    let orders = get(&app, "/trading/orders").await;
    assert_eq!(orders["items"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_backtest_that_trades_thousands_of_times_keeps_its_first_fills_and_counts_them_all() {
    let app = host().await;
    // 45 years of a price that swings every 16 sessions: a 2/3 crossover trades on every
    // swing, about 1,400 times.
    let mut data = String::from("Ticker,Date,Open,High,Low,Close,Volume,Adj Close\n");
    let mut day: Date = "1960-01-04".parse().expect("date");
    let mut n = 0u32;
    while day <= "2004-12-31".parse::<Date>().expect("date") {
        if day.weekday().to_monday_zero_offset() < 5 {
            let close = 100.0 + 2.0 * (f64::from(n) * std::f64::consts::TAU / 16.0).sin();
            data.push_str(&format!(
                "ZIG,{day},{close:.2},{:.2},{:.2},{close:.2},1000000,{close:.2}\n",
                close + 1.0,
                close - 1.0
            ));
            n += 1;
        }
        day = day.tomorrow().expect("day");
    }
    assert_eq!(import(&app, &data).await.0, StatusCode::OK);
    let (status, run) = app
        .call(
            Method::POST,
            "/trading/backtests",
            Some(
                json!({"strategy": {"name": "sma_crossover", "fast": 2, "slow": 3},
                "symbols": ["ZIG"], "from": "1960-03-01", "to": "2004-12-31"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let total = run["trades_total"].as_u64().expect("total");
    assert!(total > 1_000, "{total} fills");
    assert_eq!(run["trades"].as_array().map(Vec::len), Some(1_000));
    let id = run["id"].as_str().expect("id");
    assert_eq!(get(&app, &format!("/trading/backtests/{id}")).await, run);
}
