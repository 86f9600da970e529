//! The pipeline over the store: signal → validation → risk check → order → execution on the
//! replay clock → settlement, every step audited and safe to retry.
//!
//! | document | key | kind |
//! | --- | --- | --- |
//! | instrument | `market#instruments` / `<symbol>` | [`Record`]: the instrument as JSON |
//! | bars | `market#<symbol>` / `bars#<year>` | [`Record`]: a field per session |
//! | account | `trading#<user>` / `account` | [`Entity`]: the book, the replay clock, open orders' reservations, protections (field `state`, JSON) |
//! | order | `trading#<user>` / `order#<id>` | [`Entity`]: the order's lattice ([`crate::order`]) |
//! | client order id | `trading#<user>` / `coid#<client id>` | [`Entity`]: the order it names and the request's fingerprint |
//! | signal | `trading#<user>` / `signal#<id>` | [`Record`] |
//! | daily notional | `trading#<user>` / `notional#<date>` | [`jarvis_crdt::BoundedCounter`] ([`crate::escrow`]) |
//! | backtest | `trading#<user>` / `backtest#<id>` | [`Record`]: request and result |
//! | ledger | `ledger#<user>` / `tx#<key>` | [`Record`]: a transaction ([`crate::ledger`]) |
//! | kill switch | `trading` / `state` | [`Entity`] ([`crate::state`]) |
//! | order rate | `~trading#<user>` / `orders#<minute>` | [`jarvis_crdt::GCounter`] (replica-local) |
//!
//! An account trades on one deployment — its home, where its orders were placed and its
//! clock runs; orders, fills and the ledger sync elsewhere to be read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jarvis_crdt::{Crdt, Entity, GCounter, Record};
use jarvis_realtime::{Notifier, Topic};
use jarvis_store::{Key, MergeOptions, Page, Site, StoreError};
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::TradingError;
use crate::backtest::{self, Outcome, Point};
use crate::bars::{self, Bar, BarFeed, StoredBars};
use crate::escrow::{self, Share};
use crate::exchange::{Broker, EndOfOrder, Funds, PaperExchange, Params};
use crate::instrument::{self, Instrument, Symbol};
use crate::ledger::{self, Book, Transaction};
use crate::money::{Decimal, Round, bps, cents, to_step};
use crate::order::{self, Fill, Order, OrderRequest, OrderType, Side, Status, TimeInForce};
use crate::risk::{self, Limits, Lock, Refusal};
use crate::state::{self, TradingState};
use crate::strategy::Strategy;

/// Sessions a symbol is locked for after a losing trade (as calendar days: five).
pub const COOLDOWN_DAYS: i64 = 5;
/// The fall from the equity's peak that locks the account, in percent.
pub const MAX_DRAWDOWN_PERCENT: i64 = 25;
/// Losing trades within [`STOPLOSS_WINDOW_DAYS`] that lock the account.
pub const STOPLOSS_GUARD_TRADES: usize = 3;
/// The window of [`STOPLOSS_GUARD_TRADES`], in calendar days.
pub const STOPLOSS_WINDOW_DAYS: i64 = 14;
/// How long an account lock holds, in calendar days.
pub const LOCK_DAYS: i64 = 7;
/// A price older than this many calendar days before the replay date is stale.
pub const STALE_DAYS: i64 = 7;

/// Where audit events of trading go (the deployment's audit trail).
#[async_trait]
pub trait AuditTrail: Send + Sync {
    /// Records `kind` (`trading.…`) for `user`, with `detail` (never a secret).
    async fn record(&self, kind: &'static str, user: &str, detail: String);
}

/// The deployment's audit trail: trading's events in this replica's hash chain
/// ([`jarvis_identity::audit`]), MACed with the secret document's audit key.
pub struct ChainAudit {
    /// Where the chain is kept.
    pub site: Site,
    /// The secrets holding the audit key.
    pub secrets: Arc<dyn jarvis_secrets::SecretSource>,
    /// The chain: this replica's name.
    pub chain: String,
}

#[async_trait]
impl AuditTrail for ChainAudit {
    async fn record(&self, kind: &'static str, user: &str, detail: String) {
        let secrets = match self.secrets.current().await {
            Ok(secrets) => secrets,
            Err(err) => {
                tracing::error!(error = %err, kind, "a trading event could not be audited: no key");
                return;
            }
        };
        let event = jarvis_identity::audit::Event::own(kind, user).detail(detail);
        if let Err(err) = jarvis_identity::audit::record(
            self.site.store.as_ref(),
            &self.site.clock,
            &secrets,
            &self.chain,
            event,
        )
        .await
        {
            tracing::error!(error = %err, kind, "a trading event could not be audited");
        }
    }
}

/// An audit trail that records nothing (tests, benchmarks).
pub struct NoAudit;

#[async_trait]
impl AuditTrail for NoAudit {
    async fn record(&self, _kind: &'static str, _user: &str, _detail: String) {}
}

/// The trading settings, as decimals and dates.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Cash a new account starts with.
    pub start_cash: Decimal,
    /// The replay date a new account starts on.
    pub start_date: Date,
    /// The risk engine's limits.
    pub limits: Limits,
    /// The notional a user may trade a replay day.
    pub daily_notional: Decimal,
    /// This deployment's share of it.
    pub share: f64,
    /// The paper exchange's settings.
    pub params: Params,
}

impl Settings {
    /// The settings `config` gives.
    pub fn from_config(config: &jarvis_config::TradingConfig) -> Self {
        Self {
            start_cash: Decimal::from(config.start_cash),
            start_date: config
                .start_date
                .parse()
                .unwrap_or_else(|_| jiff::civil::date(2005, 1, 3)),
            limits: Limits {
                max_order_notional: Decimal::from(config.max_order_notional),
                orders_per_minute: config.orders_per_minute,
                buffer_bps: 50,
            },
            daily_notional: Decimal::from(config.daily_notional),
            share: config.share,
            params: Params {
                slippage_bps: config.slippage_bps,
                fee_bps: config.fee_bps,
                partial_fill_percent: config.partial_fill_percent,
            },
        }
    }
}

/// What an open order holds back: cash for a buy, quantity for a sell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    /// The symbol.
    pub symbol: String,
    /// Buy or sell.
    pub side: Side,
    /// Quantity not yet filled.
    pub quantity: Decimal,
    /// Cash held back (a buy), at the price the order was checked at.
    pub cash: Decimal,
}

/// A paper account's state: its book, its replay clock, its open orders and its locks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountState {
    /// What the ledger adds up to.
    pub book: Book,
    /// The replay date: sessions through it have traded.
    pub clock: Date,
    /// The highest equity at a close.
    pub peak_equity: Decimal,
    /// Open orders' reservations, by order id.
    pub open: BTreeMap<String, Reservation>,
    /// Symbols locked after a losing trade, until a date.
    pub symbol_locks: BTreeMap<String, Date>,
    /// The account's lock, if any: code and until.
    pub account_lock: Option<(String, Date)>,
    /// Dates of recent losing trades.
    pub losses: Vec<Date>,
}

impl AccountState {
    /// Cash not held back by open buys.
    pub fn free_cash(&self) -> Decimal {
        self.book.cash
            - self
                .open
                .values()
                .filter(|r| r.side == Side::Buy)
                .map(|r| r.cash)
                .sum::<Decimal>()
    }

    /// Quantity of `symbol` held and not being sold by open sells.
    pub fn free_position(&self, symbol: &str) -> Decimal {
        self.book.held(symbol)
            - self
                .open
                .values()
                .filter(|r| r.side == Side::Sell && r.symbol == symbol)
                .map(|r| r.quantity)
                .sum::<Decimal>()
    }
}

/// What a signal became.
#[derive(Debug, Clone)]
pub struct SignalOutcome {
    /// The signal's id.
    pub id: String,
    /// The order it led to.
    pub order: Order,
    /// Whether it was sent now (`false`: a retry answered with what the first made).
    pub new: bool,
}

/// A signal as asked.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalRequest {
    /// The symbol (as given: it is checked here).
    pub symbol: String,
    /// Buy or sell.
    pub side: Side,
    /// How strongly, 0 to 1 (sizes the order when no quantity is given).
    pub strength: f64,
    /// Why.
    pub reason: String,
    /// How much, when the signal says.
    pub quantity: Option<Decimal>,
    /// A limit price, for a limit order.
    pub limit_price: Option<Decimal>,
    /// How long the order stays open.
    pub time_in_force: TimeInForce,
    /// What made it: `user`, `agent`, `strategy:<name>`.
    pub source: String,
    /// The client's id for the order it becomes: a retry with the same id answers the
    /// same signal and order.
    pub client_order_id: Option<String>,
}

/// A signal as kept (`trading#<user>`, `signal#<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredSignal {
    /// The symbol.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: Side,
    /// How strongly, 0 to 1.
    pub strength: f64,
    /// Why.
    pub reason: String,
    /// What made it: `user`, `agent`, `strategy:<name>`.
    pub source: String,
    /// The replay date it was sent on.
    pub date: Date,
    /// The order it became.
    pub order: String,
}

/// A stored backtest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredBacktest {
    /// Its id.
    pub id: String,
    /// The strategy.
    pub strategy: Strategy,
    /// The symbols.
    pub symbols: Vec<Symbol>,
    /// The first session.
    pub from: Date,
    /// The last session.
    pub to: Date,
    /// The starting cash.
    pub cash: Decimal,
    /// The seed.
    pub seed: u64,
    /// What it came to (curves cut to at most [`KEPT_POINTS`] points, trades to the first
    /// [`KEPT_TRADES`]).
    pub outcome: Outcome,
    /// How many fills it made in all.
    pub trades_total: usize,
    /// When it ran, ms since the epoch.
    pub created_at_ms: u64,
}

/// Points of an equity curve a stored backtest keeps (about one a week over 13 years).
pub const KEPT_POINTS: usize = 1_000;

/// Fills a stored backtest keeps, the first ones: with the curves, well within the
/// largest document a store takes, however often the strategy trades.
pub const KEPT_TRADES: usize = 1_000;

fn thin(curve: &[Point]) -> Vec<Point> {
    if curve.len() <= KEPT_POINTS {
        return curve.to_vec();
    }
    let step = curve.len().div_ceil(KEPT_POINTS);
    let mut kept: Vec<Point> = curve.iter().step_by(step).copied().collect();
    if let (Some(last), Some(kept_last)) = (curve.last(), kept.last())
        && kept_last.date != last.date
    {
        kept.push(*last);
    }
    kept
}

fn now_ms() -> u64 {
    jarvis_crdt::hlc::system_time_ms()
}

fn days(n: i64) -> jiff::Span {
    jiff::Span::new().days(n)
}

fn add_days(date: Date, n: i64) -> Date {
    date.checked_add(days(n)).unwrap_or(date)
}

/// The trading service of a deployment.
pub struct Trading {
    site: Site,
    bars: Arc<StoredBars>,
    broker: PaperExchange,
    notifier: Arc<Notifier>,
    audit: Arc<dyn AuditTrail>,
    settings: Settings,
    instruments: Mutex<Option<(std::time::Instant, Arc<Vec<Instrument>>)>>,
}

/// How long the list of instruments is kept in memory.
const INSTRUMENTS_TTL: std::time::Duration = std::time::Duration::from_secs(60);

impl Trading {
    /// Trading over `site`, publishing to `notifier`, auditing to `audit`.
    pub fn new(
        site: Site,
        notifier: Arc<Notifier>,
        audit: Arc<dyn AuditTrail>,
        settings: Settings,
    ) -> Self {
        Self {
            bars: Arc::new(StoredBars::new(site.clone())),
            broker: PaperExchange {
                params: settings.params,
            },
            site,
            notifier,
            audit,
            settings,
            instruments: Mutex::new(None),
        }
    }

    /// Where it keeps its documents.
    pub fn site(&self) -> &Site {
        &self.site
    }

    /// Its settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The bar feed.
    pub fn feed(&self) -> &dyn BarFeed {
        self.bars.as_ref()
    }

    /// Loads bars from CSV (gzip-compressed or not) into the store: how many per symbol.
    pub async fn import(&self, bytes: &[u8]) -> Result<BTreeMap<Symbol, usize>, TradingError> {
        let parsed = bars::parse_csv(bytes)?;
        let mut counts = BTreeMap::new();
        for (symbol, bars) in &parsed {
            counts.insert(symbol.clone(), bars::store(&self.site, symbol, bars).await?);
        }
        self.bars.forget();
        if let Ok(mut cached) = self.instruments.lock() {
            *cached = None;
        }
        Ok(counts)
    }

    /// Every listed instrument.
    pub async fn instruments(&self) -> Result<Arc<Vec<Instrument>>, TradingError> {
        let cached = self.instruments.lock().ok().and_then(|c| {
            c.as_ref()
                .filter(|(at, _)| at.elapsed() < INSTRUMENTS_TTL)
                .map(|(_, list)| Arc::clone(list))
        });
        if let Some(list) = cached {
            return Ok(list);
        }
        let list = Arc::new(instrument::all(&self.site).await?);
        if let Ok(mut cached) = self.instruments.lock() {
            *cached = Some((std::time::Instant::now(), Arc::clone(&list)));
        }
        Ok(list)
    }

    async fn instrument(&self, symbol: &Symbol) -> Result<Option<Instrument>, TradingError> {
        Ok(self
            .instruments()
            .await?
            .iter()
            .find(|i| &i.symbol == symbol)
            .cloned())
    }

    fn account_key(user: &str) -> Result<Key, StoreError> {
        Key::new(format!("trading#{user}"), "account")
    }

    fn order_key(user: &str, id: &str) -> Result<Key, StoreError> {
        Key::new(format!("trading#{user}"), format!("order#{id}"))
    }

    /// `user`'s account, opened (with the starting cash deposited, on the start date) when
    /// it is new.
    pub async fn account(&self, user: &str) -> Result<AccountState, TradingError> {
        let key = Self::account_key(user)?;
        if let Some(doc) = self.site.store.read::<Entity>(&key).await?
            && let Some(state) = doc
                .state
                .field("state")
                .and_then(|s| serde_json::from_str(s).ok())
        {
            return Ok(state);
        }
        let deposit = Transaction::deposit(self.settings.start_date, self.settings.start_cash);
        let deposit = ledger::write(&self.site, user, &deposit).await?;
        let mut book = Book::default();
        book.apply(&deposit);
        let fresh = AccountState {
            book,
            clock: self.settings.start_date,
            peak_equity: self.settings.start_cash,
            open: BTreeMap::new(),
            symbol_locks: BTreeMap::new(),
            account_lock: None,
            losses: Vec::new(),
        };
        let json = serde_json::to_string(&fresh).unwrap_or_default();
        let clock = &self.site.clock;
        let doc = self
            .site
            .store
            .update(&key, |entity: &mut Entity| {
                if entity.field("state").is_some() {
                    return Entity::new();
                }
                entity.set("state", clock.now(), json.clone())
            })
            .await?;
        Ok(doc
            .state
            .field("state")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(fresh))
    }

    /// Changes `user`'s account state with `change` (one conditional write, retried on a
    /// conflict with the state read again).
    async fn change_account<T: Send>(
        &self,
        user: &str,
        change: impl Fn(&mut AccountState) -> T + Send + Sync,
    ) -> Result<(AccountState, T), TradingError> {
        let clock = &self.site.clock;
        let apply = |entity: &mut Entity| {
            let Some(mut state) = entity
                .field("state")
                .and_then(|s| serde_json::from_str::<AccountState>(s).ok())
            else {
                return (Entity::new(), None);
            };
            let answer = change(&mut state);
            let json = serde_json::to_string(&state).unwrap_or_default();
            let delta = if entity.field("state") == Some(json.as_str()) {
                Entity::new()
            } else {
                entity.set("state", clock.stamp_after(entity.latest_stamp()), json)
            };
            (delta, Some(answer))
        };
        let key = Self::account_key(user)?;
        let (mut doc, mut answer) = self
            .site
            .store
            .transact(&key, MergeOptions::default(), &apply)
            .await?;
        if answer.is_none() {
            // A new account: opened, then changed.
            self.account(user).await?;
            (doc, answer) = self
                .site
                .store
                .transact(&key, MergeOptions::default(), &apply)
                .await?;
        }
        let state = doc
            .state
            .field("state")
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| TradingError::Conflict("the account could not be read".into()))?;
        let answer =
            answer.ok_or_else(|| TradingError::Conflict("the account could not be read".into()))?;
        Ok((state, answer))
    }

    /// The trading state of the deployment.
    pub async fn trading_state(&self) -> Result<TradingState, TradingError> {
        let doc = self
            .site
            .store
            .read::<Entity>(&Key::new("trading", "state")?)
            .await?;
        Ok(doc.map_or(TradingState::Active, |d| state::effective(&d.state)))
    }

    /// Sets the kill switch (an administrator's act, audited).
    pub async fn set_trading_state(
        &self,
        actor: &str,
        target: TradingState,
    ) -> Result<TradingState, TradingError> {
        let clock = &self.site.clock;
        let doc = self
            .site
            .store
            .update(&Key::new("trading", "state")?, |entity: &mut Entity| {
                state::set(entity, clock.now(), target)
            })
            .await?;
        let now = state::effective(&doc.state);
        self.audit
            .record("trading.state", actor, format!("state={}", now.name()))
            .await;
        Ok(now)
    }

    /// The latest price of `symbol` on or before `date`: 400 naming `field` when none is
    /// newer than [`STALE_DAYS`].
    async fn fresh_price(
        &self,
        symbol: &Symbol,
        date: Date,
        field: &str,
    ) -> Result<Bar, TradingError> {
        bars::latest(self.bars.as_ref(), symbol, date, STALE_DAYS)
            .await?
            .ok_or_else(|| {
                TradingError::invalid(
                    field,
                    format!(
                        "the price of {symbol} is stale: none in the {STALE_DAYS} days to {date}"
                    ),
                )
            })
    }

    fn share(&self) -> Share {
        Share {
            replica: self.site.replica,
            fraction: self.settings.share,
        }
    }

    /// The counter of `user`'s orders in the current minute, and the minute.
    fn rate_key(user: &str) -> Result<(Key, i64), StoreError> {
        let minute = jarvis_store::now_secs() / 60;
        let key = Key::new(format!("~trading#{user}"), format!("orders#{minute}"))?;
        Ok((key, minute))
    }

    async fn recent_orders(&self, user: &str) -> Result<u32, TradingError> {
        let (key, _) = Self::rate_key(user)?;
        let count = self
            .site
            .store
            .read::<GCounter>(&key)
            .await?
            .map_or(0, |d| d.state.value());
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn count_order(&self, user: &str) -> Result<(), TradingError> {
        let (key, minute) = Self::rate_key(user)?;
        let replica = self.site.replica;
        let options = MergeOptions {
            expires_at: Some((minute + 2) * 60),
            retry: None,
        };
        self.site
            .store
            .update_with(
                &key,
                |counter: &mut GCounter| counter.increment(replica, 1),
                options,
            )
            .await?;
        Ok(())
    }

    /// `user`'s order `id`.
    pub async fn order(&self, user: &str, id: &str) -> Result<Order, TradingError> {
        let doc = self
            .site
            .store
            .read::<Entity>(&Self::order_key(user, id)?)
            .await?;
        doc.and_then(|d| Order::from_entity(id, &d.state))
            .ok_or_else(|| TradingError::NotFound("no such order".into()))
    }

    /// The order `id` a write answered.
    fn order_in(id: &str, doc: &jarvis_store::Document<Entity>) -> Result<Order, TradingError> {
        Order::from_entity(id, &doc.state)
            .ok_or_else(|| TradingError::NotFound("no such order".into()))
    }

    /// A page of `user`'s orders, newest first.
    pub async fn orders(
        &self,
        user: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Order>, TradingError> {
        Ok(self
            .site
            .store
            .list_by_id(
                &format!("trading#{user}"),
                "order#",
                cursor,
                limit,
                |id, state: &Entity| Order::from_entity(id, state),
            )
            .await?)
    }

    /// A page of `user`'s ledger, oldest first.
    pub async fn ledger(
        &self,
        user: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Transaction>, TradingError> {
        self.account(user).await?;
        Ok(ledger::list(&self.site, user, cursor, limit).await?)
    }

    /// Places an order for `user` through validation and the risk engine. A retry with the
    /// same client order id answers the same order (`false`: not new); the same id with
    /// another request is a 422.
    pub async fn place(
        &self,
        user: &str,
        request: OrderRequest,
        signal: Option<String>,
    ) -> Result<(Order, bool), TradingError> {
        let fresh_id = self.fresh_order_id();
        self.place_as(user, request, signal, fresh_id).await
    }

    fn fresh_order_id(&self) -> String {
        jarvis_store::ids::newest_first(&self.site.clock.now())
            .hyphenated()
            .to_string()
    }

    /// [`place`](Self::place), the order named `fresh_id` if the client's id is new.
    async fn place_as(
        &self,
        user: &str,
        request: OrderRequest,
        signal: Option<String>,
        fresh_id: String,
    ) -> Result<(Order, bool), TradingError> {
        // The client's id names the order: claimed once, with the request's fingerprint.
        let fingerprint = request.fingerprint();
        let coid = Key::new(
            format!("trading#{user}"),
            format!("coid#{}", request.client_order_id),
        )?;
        let clock = &self.site.clock;
        let (_, claimed) = self
            .site
            .store
            .transact(&coid, MergeOptions::default(), |entity: &mut Entity| {
                if let Some(order) = entity.field("order") {
                    let same = entity.field("request") == Some(fingerprint.as_str());
                    return (Entity::new(), (order.to_owned(), same));
                }
                let stamp = clock.now();
                let mut delta = entity.set("order", stamp, fresh_id.clone());
                delta.join(entity.set("request", stamp, fingerprint.clone()));
                (delta, (fresh_id.clone(), true))
            })
            .await?;
        let (id, same) = claimed;
        if !same {
            return Err(TradingError::Unprocessable {
                field: "client_order_id".into(),
                message: "was used for another order".into(),
            });
        }
        if let Ok(existing) = self.order(user, &id).await {
            return Ok((existing, false));
        }
        let account = self.account(user).await?;
        let instrument = self.instrument(&request.symbol).await?;
        // A stale price refuses the request (a schema-valid one: 422), not the order.
        let last = match &instrument {
            Some(_) => Some(
                self.fresh_price(&request.symbol, account.clock, "symbol")
                    .await
                    .map_err(|err| match err {
                        TradingError::Invalid { field, message } => {
                            TradingError::Unprocessable { field, message }
                        }
                        other => other,
                    })?,
            ),
            None => None,
        };
        let reference = request
            .limit_price
            .or(last.map(|b| b.close))
            .unwrap_or(Decimal::ZERO);
        let limit_cents = cents(self.settings.daily_notional);
        let context = risk::Context {
            instrument: instrument.as_ref(),
            reference_price: reference,
            free_cash: account.free_cash(),
            free_position: account.free_position(request.symbol.as_str()),
            state: self.trading_state().await?,
            recent_orders: self.recent_orders(user).await?,
            today: account.clock,
            symbol_lock: account
                .symbol_locks
                .get(request.symbol.as_str())
                .map(|until| Lock {
                    code: "symbol_cooldown",
                    until: *until,
                }),
            account_lock: account.account_lock.as_ref().map(|(code, until)| Lock {
                code: if code == "max_drawdown" {
                    "max_drawdown"
                } else {
                    "stoploss_guard"
                },
                until: *until,
            }),
            notional_rights: escrow::left(
                &self.site,
                user,
                account.clock,
                self.share(),
                limit_cents,
            )
            .await?,
        };
        let mut decision = risk::check(&request, &context, &self.settings.limits);
        if let Ok(notional) = decision
            && !escrow::spend(
                &self.site,
                user,
                account.clock,
                self.share(),
                limit_cents,
                cents(notional),
            )
            .await?
        {
            decision = Err(Refusal {
                code: "daily_notional",
                reason: "another order took what was left of the day's notional".into(),
            });
        }
        let (status, reason_code, reason) = match &decision {
            Ok(_) => (Status::Accepted, None, None),
            Err(refusal) => (
                Status::Rejected,
                Some(refusal.code.to_owned()),
                Some(refusal.reason.clone()),
            ),
        };
        let order = Order {
            id: id.clone(),
            request: request.clone(),
            status,
            filled: Decimal::ZERO,
            fills: Vec::new(),
            placed_on: account.clock,
            created_at_ms: now_ms(),
            signal,
            reason_code,
            reason,
            cancel_requested: false,
        };
        let created = order.create(self.site.clock.now());
        let stored = self
            .site
            .store
            .update(&Self::order_key(user, &id)?, |entity: &mut Entity| {
                if entity.field("request").is_some() {
                    return Entity::new();
                }
                entity.join(created.clone());
                created.clone()
            })
            .await?;
        let detail = format!(
            "order={id}{} symbol={} side={} type={} quantity={}",
            order
                .signal
                .as_deref()
                .map(|s| format!(" signal={s}"))
                .unwrap_or_default(),
            request.symbol,
            request.side.name(),
            match request.order_type {
                OrderType::Market => "market",
                OrderType::Limit => "limit",
            },
            request.quantity
        );
        match &decision {
            Ok(notional) => {
                let reserve_cash = match request.side {
                    Side::Buy => *notional + bps(*notional, self.settings.limits.buffer_bps),
                    Side::Sell => Decimal::ZERO,
                };
                let reservation = Reservation {
                    symbol: request.symbol.to_string(),
                    side: request.side,
                    quantity: request.quantity,
                    cash: reserve_cash,
                };
                self.change_account(user, |state| {
                    state.open.insert(id.clone(), reservation.clone());
                })
                .await?;
                self.count_order(user).await?;
                self.audit
                    .record(
                        "trading.risk.passed",
                        user,
                        format!("order={id} notional={notional}"),
                    )
                    .await;
                self.audit
                    .record("trading.order.accepted", user, detail)
                    .await;
            }
            Err(refusal) => {
                self.audit
                    .record(
                        "trading.risk.refused",
                        user,
                        format!("order={id} code={} reason={}", refusal.code, refusal.reason),
                    )
                    .await;
                self.audit
                    .record("trading.order.rejected", user, detail)
                    .await;
            }
        }
        let order = Self::order_in(&id, &stored)?;
        self.announce(user, "order.changed", &order).await;
        metrics::counter!("trading_orders_total", "status" => order.status.name()).increment(1);
        Ok((order, true))
    }

    async fn announce(&self, user: &str, kind: &str, order: &Order) {
        let message = serde_json::json!({
            "type": format!("trading.{kind}"),
            "topic": "trading",
            "order": order.id,
            "symbol": order.request.symbol,
            "status": order.status.name(),
            "filled": order.filled,
        });
        self.notifier.publish(user, &Topic::Trading, &message).await;
    }

    /// Cancels `user`'s open order `id` (taken while trading is halted too). 409 once it
    /// has ended.
    pub async fn cancel(&self, user: &str, id: &str) -> Result<Order, TradingError> {
        let order = self.order(user, id).await?;
        if order.status.is_terminal() {
            return Err(TradingError::Conflict(format!(
                "the order is {}",
                order.status.name()
            )));
        }
        let clock = &self.site.clock;
        let stored = self
            .site
            .store
            .update(&Self::order_key(user, id)?, |entity: &mut Entity| {
                let mut delta = order::request_cancel(entity);
                delta.join(order::end(
                    entity,
                    clock.stamp_after(entity.latest_stamp()),
                    Status::Canceled,
                    "canceled",
                    "cancelled by the user",
                ));
                delta
            })
            .await?;
        self.change_account(user, |state| {
            state.open.remove(id);
        })
        .await?;
        self.audit
            .record("trading.order.canceled", user, format!("order={id}"))
            .await;
        let order = Self::order_in(id, &stored)?;
        self.announce(user, "order.changed", &order).await;
        Ok(order)
    }

    /// Validates a signal, records it, and places the order it leads to. A signal of an
    /// unknown symbol, a stale price or a malformed quantity is a 400 naming the field (and
    /// audited as refused).
    pub async fn signal(
        &self,
        user: &str,
        request: SignalRequest,
    ) -> Result<SignalOutcome, TradingError> {
        if let Some(coid) = &request.client_order_id {
            let claim = Key::new(format!("trading#{user}"), format!("coid#{coid}"))?;
            let claimed = self.site.store.read::<Entity>(&claim).await?;
            if let Some(id) = claimed.as_ref().and_then(|d| d.state.field("order")) {
                let reused = |message: &str| TradingError::Unprocessable {
                    field: "client_order_id".into(),
                    message: message.into(),
                };
                return match self.order(user, id).await {
                    Ok(order)
                        if order.request.symbol.as_str() != request.symbol
                            || order.request.side != request.side =>
                    {
                        Err(reused("was used for another signal"))
                    }
                    Ok(order) => match order.signal.clone() {
                        Some(signal) => Ok(SignalOutcome {
                            id: signal,
                            order,
                            new: false,
                        }),
                        None => Err(reused("was used for an order that no signal sent")),
                    },
                    // Claimed, the order not yet made: the first attempt stopped there, and
                    // goes on (the claim answers it the same order id).
                    Err(TradingError::NotFound(_)) => self.signal_once(user, request).await,
                    Err(err) => Err(err),
                };
            }
        }
        self.signal_once(user, request).await
    }

    async fn signal_once(
        &self,
        user: &str,
        request: SignalRequest,
    ) -> Result<SignalOutcome, TradingError> {
        let refused = |field: &str, message: String| TradingError::invalid(field, message);
        let validated = async {
            let symbol = Symbol::parse(&request.symbol).ok_or_else(|| {
                refused("symbol", format!("{:?} is not a symbol", request.symbol))
            })?;
            let instrument = self
                .instrument(&symbol)
                .await?
                .ok_or_else(|| refused("symbol", format!("{symbol} is not a listed instrument")))?;
            let account = self.account(user).await?;
            let bar = self.fresh_price(&symbol, account.clock, "symbol").await?;
            if let Some(quantity) = request.quantity
                && !instrument.quantity_ok(quantity)
            {
                return Err(refused(
                    "quantity",
                    format!(
                        "quantities of {symbol} are whole multiples of {} from {} to {}",
                        instrument.lot_size, instrument.min_quantity, instrument.max_quantity
                    ),
                ));
            }
            if let Some(limit) = request.limit_price
                && !instrument.price_ok(limit)
            {
                return Err(refused(
                    "limit_price",
                    format!(
                        "prices of {symbol} are positive multiples of {}",
                        instrument.tick_size
                    ),
                ));
            }
            Ok::<_, TradingError>((symbol, instrument, account, bar))
        }
        .await;
        let (symbol, instrument, account, bar) = match validated {
            Ok(ok) => ok,
            Err(err) => {
                self.audit
                    .record(
                        "trading.signal.refused",
                        user,
                        format!(
                            "symbol={} side={} reason={err}",
                            request.symbol,
                            request.side.name()
                        ),
                    )
                    .await;
                return Err(err);
            }
        };
        let price = request.limit_price.unwrap_or(bar.close);
        let strength =
            Decimal::from_f64_retain(request.strength.clamp(0.0, 1.0)).unwrap_or(Decimal::ONE);
        let quantity = match (request.quantity, request.side) {
            (Some(quantity), _) => quantity,
            (None, Side::Sell) => to_step(
                account.free_position(symbol.as_str()) * strength,
                instrument.lot_size,
                Round::Down,
            ),
            (None, Side::Buy) => {
                let budget = self
                    .settings
                    .limits
                    .max_order_notional
                    .min(account.free_cash())
                    * strength;
                let per = price + bps(price, self.settings.limits.buffer_bps);
                to_step(budget / per, instrument.lot_size, Round::Down)
            }
        };
        if quantity <= Decimal::ZERO {
            let err = refused(
                "quantity",
                match request.side {
                    Side::Sell => format!("none of {symbol} is held to sell"),
                    Side::Buy => "the free cash buys less than one lot".into(),
                },
            );
            self.audit
                .record(
                    "trading.signal.refused",
                    user,
                    format!("symbol={symbol} reason={err}"),
                )
                .await;
            return Err(err);
        }
        let id = Uuid::now_v7().hyphenated().to_string();
        let order_id = self.fresh_order_id();
        let record = serde_json::to_string(&StoredSignal {
            symbol: symbol.clone(),
            side: request.side,
            strength: request.strength,
            reason: request.reason.clone(),
            source: request.source.clone(),
            date: account.clock,
            order: order_id.clone(),
        })
        .unwrap_or_default();
        let (replica, clock) = (self.site.replica, &self.site.clock);
        self.site
            .store
            .update(
                &Key::new(format!("trading#{user}"), format!("signal#{id}"))?,
                |r: &mut Record| {
                    if r.is_live() {
                        return Record::new();
                    }
                    r.create(
                        replica,
                        clock.now(),
                        [("signal".to_owned(), record.clone())],
                    )
                },
            )
            .await?;
        self.audit
            .record(
                "trading.signal.accepted",
                user,
                format!(
                    "signal={id} order={order_id} symbol={symbol} side={} strength={} source={} reason={}",
                    request.side.name(),
                    request.strength,
                    request.source,
                    request.reason
                ),
            )
            .await;
        let order_request = OrderRequest {
            client_order_id: request
                .client_order_id
                .clone()
                .unwrap_or_else(|| format!("signal-{id}")),
            symbol,
            side: request.side,
            order_type: if request.limit_price.is_some() {
                OrderType::Limit
            } else {
                OrderType::Market
            },
            quantity,
            limit_price: request.limit_price,
            time_in_force: request.time_in_force,
        };
        let (order, new) = self
            .place_as(user, order_request, Some(id.clone()), order_id)
            .await?;
        Ok(SignalOutcome {
            id: order.signal.clone().unwrap_or(id),
            order,
            new,
        })
    }

    /// Runs `strategy` on each symbol's closes to `user`'s replay date and sends the
    /// signals it gives (none where it holds steady).
    pub async fn run_strategy(
        &self,
        user: &str,
        strategy: Strategy,
        symbols: &[Symbol],
    ) -> Result<Vec<SignalOutcome>, TradingError> {
        let account = self.account(user).await?;
        let from = add_days(account.clock, -((strategy.warmup() as i64) * 2 + 30));
        let mut outcomes = Vec::new();
        for symbol in symbols {
            let bars = self.bars.bars(symbol, from, account.clock).await?;
            let closes: Vec<f64> = bars.iter().map(|b| crate::money::float(b.close)).collect();
            let Some(side) = strategy.signal(&closes) else {
                continue;
            };
            if side == Side::Sell && account.free_position(symbol.as_str()) <= Decimal::ZERO {
                continue;
            }
            let request = SignalRequest {
                symbol: symbol.to_string(),
                side,
                strength: 1.0,
                reason: format!("{} on {}", strategy.name(), account.clock),
                quantity: None,
                limit_price: None,
                time_in_force: TimeInForce::Day,
                source: format!("strategy:{}", strategy.name()),
                client_order_id: None,
            };
            outcomes.push(self.signal(user, request).await?);
        }
        Ok(outcomes)
    }

    /// Moves `user`'s replay clock forward to `to`: every session in between trades the
    /// open orders on the paper exchange, settles their fills into the ledger and marks the
    /// account to market. Moving it to where it is, or back, changes nothing.
    pub async fn advance(&self, user: &str, to: Date) -> Result<AccountState, TradingError> {
        let account = self.account(user).await?;
        if to <= account.clock {
            return Ok(account);
        }
        let mut symbols: Vec<Symbol> = account
            .open
            .values()
            .map(|r| r.symbol.clone())
            .chain(
                account
                    .book
                    .positions
                    .iter()
                    .filter(|(_, p)| p.quantity > Decimal::ZERO)
                    .map(|(s, _)| s.clone()),
            )
            .filter_map(|s| Symbol::parse(&s))
            .collect();
        symbols.sort();
        symbols.dedup();
        let start = add_days(account.clock, 1);
        let mut series: BTreeMap<Symbol, Vec<Bar>> = BTreeMap::new();
        for symbol in &symbols {
            // From a little before, to tell an order's first session and the last close.
            let bars = self
                .bars
                .bars(symbol, add_days(account.clock, -STALE_DAYS), to)
                .await?;
            series.insert(symbol.clone(), bars);
        }
        let mut sessions: Vec<Date> = series
            .values()
            .flat_map(|b| b.iter().map(|bar| bar.date))
            .filter(|d| *d >= start && *d <= to)
            .collect();
        sessions.sort_unstable();
        sessions.dedup();
        for date in sessions {
            self.session(user, date, &series).await?;
        }
        let (state, ()) = self
            .change_account(user, |state| {
                if state.clock < to {
                    state.clock = to;
                }
            })
            .await?;
        Ok(state)
    }

    /// Trades one session: each open order against its symbol's bar of `date`, in the order
    /// the orders were placed; then marks the account to market at the closes.
    async fn session(
        &self,
        user: &str,
        date: Date,
        series: &BTreeMap<Symbol, Vec<Bar>>,
    ) -> Result<(), TradingError> {
        let mut account = self.account(user).await?;
        let mut open: Vec<Order> = Vec::new();
        for id in account.open.keys() {
            if let Ok(order) = self.order(user, id).await {
                open.push(order);
            }
        }
        open.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then(a.id.cmp(&b.id)));
        for mut order in open {
            let Some(bars) = series.get(&order.request.symbol) else {
                continue;
            };
            let Some(position) = bars.iter().position(|b| b.date == date) else {
                continue;
            };
            let bar = bars[position];
            if bar.date <= order.placed_on {
                continue;
            }
            if order.status.is_terminal() {
                (account, ()) = self
                    .change_account(user, |state| {
                        state.open.remove(&order.id);
                    })
                    .await?;
                continue;
            }
            let first = position == 0 || bars[position - 1].date <= order.placed_on;
            let Some(instrument) = self.instrument(&order.request.symbol).await? else {
                continue;
            };
            let funds = Funds {
                cash: account.book.cash,
                position: account.book.held(order.request.symbol.as_str()),
            };
            let execution = self.broker.execute(&order, &instrument, &bar, first, funds);
            if let Some((quantity, price, fee)) = execution.fill {
                let fill = Fill {
                    n: u32::try_from(order.fills.len() + 1).unwrap_or(u32::MAX),
                    date,
                    quantity,
                    price,
                    fee,
                };
                (account, order) = self.settle(user, &order, &fill).await?;
            }
            let ends = match execution.ends {
                Some(EndOfOrder::Canceled) => Some((
                    Status::Canceled,
                    "ioc",
                    "the rest of an immediate-or-cancel order",
                )),
                Some(EndOfOrder::Expired) => {
                    Some((Status::Expired, "day", "the session of a day order ended"))
                }
                None => None,
            };
            if let Some((status, code, reason)) = ends.filter(|_| !order.status.is_terminal()) {
                let clock = &self.site.clock;
                let stored = self
                    .site
                    .store
                    .update(&Self::order_key(user, &order.id)?, |entity: &mut Entity| {
                        order::end(
                            entity,
                            clock.stamp_after(entity.latest_stamp()),
                            status,
                            code,
                            reason,
                        )
                    })
                    .await?;
                let filled = order.filled;
                order = Self::order_in(&order.id, &stored)?;
                self.audit
                    .record(
                        if status == Status::Canceled {
                            "trading.order.canceled"
                        } else {
                            "trading.order.expired"
                        },
                        user,
                        format!("order={} filled={filled}", order.id),
                    )
                    .await;
            }
            if order.status.is_terminal() {
                (account, ()) = self
                    .change_account(user, |state| {
                        state.open.remove(&order.id);
                    })
                    .await?;
                self.announce(user, "order.changed", &order).await;
            }
        }
        // Marked to market at the session's closes: the peak, and the drawdown lock.
        let closes: BTreeMap<String, Decimal> = series
            .iter()
            .filter_map(|(symbol, bars)| {
                let last = bars.iter().rev().find(|b| b.date <= date)?;
                Some((symbol.to_string(), last.close))
            })
            .collect();
        let limit = Decimal::from(100 - MAX_DRAWDOWN_PERCENT) / Decimal::ONE_HUNDRED;
        self.change_account(user, |state| {
            let equity = state.book.cash
                + state
                    .book
                    .positions
                    .iter()
                    .map(|(s, p)| p.quantity * closes.get(s).copied().unwrap_or(Decimal::ZERO))
                    .sum::<Decimal>();
            if equity > state.peak_equity {
                state.peak_equity = equity;
            }
            if equity < state.peak_equity * limit && state.account_lock.is_none() {
                state.account_lock = Some(("max_drawdown".into(), add_days(date, LOCK_DAYS)));
                // A new peak is measured from here once the lock ends.
                state.peak_equity = equity;
            }
            if state
                .account_lock
                .as_ref()
                .is_some_and(|(_, until)| *until <= date)
            {
                state.account_lock = None;
            }
            state.symbol_locks.retain(|_, until| *until > date);
            state.clock = state.clock.max(date);
        })
        .await?;
        Ok(())
    }

    /// Settles `fill` of `order`: the ledger transaction (once), the order's lattice, the
    /// book and the reservations, the protections a loss sets off; each step is safe to
    /// repeat.
    async fn settle(
        &self,
        user: &str,
        order: &Order,
        fill: &Fill,
    ) -> Result<(AccountState, Order), TradingError> {
        // The ledger keeps the first settlement of a fill: a session traded again after a
        // crash settles what the ledger holds, whatever the second draw said.
        let tx = ledger::write(&self.site, user, &Transaction::trade(order, fill)).await?;
        let fill = &tx.settled_fill().unwrap_or(*fill);
        let clock = &self.site.clock;
        let quantity = order.request.quantity;
        let stored = self
            .site
            .store
            .update(&Self::order_key(user, &order.id)?, |entity: &mut Entity| {
                order::record_fill(
                    entity,
                    clock.stamp_after(entity.latest_stamp()),
                    fill,
                    quantity,
                )
            })
            .await?;
        let symbol = order.request.symbol.to_string();
        let (account, realized) = self
            .change_account(user, |state| {
                let realized = state.book.apply(&tx);
                if let Some(reservation) = state.open.get_mut(&order.id) {
                    let before = reservation.quantity;
                    reservation.quantity =
                        (reservation.quantity - fill.quantity).max(Decimal::ZERO);
                    if before > Decimal::ZERO {
                        reservation.cash = reservation.cash * reservation.quantity / before;
                    }
                }
                if let Some(gain) = realized
                    && gain < Decimal::ZERO
                {
                    state
                        .symbol_locks
                        .insert(symbol.clone(), add_days(fill.date, COOLDOWN_DAYS));
                    state.losses.push(fill.date);
                    let window = add_days(fill.date, -STOPLOSS_WINDOW_DAYS);
                    state.losses.retain(|d| *d > window);
                    if state.losses.len() >= STOPLOSS_GUARD_TRADES && state.account_lock.is_none() {
                        state.account_lock =
                            Some(("stoploss_guard".into(), add_days(fill.date, LOCK_DAYS)));
                        state.losses.clear();
                    }
                }
                realized
            })
            .await?;
        self.audit
            .record(
                "trading.fill",
                user,
                format!(
                    "order={} fill={} quantity={} price={} fee={}",
                    order.id, fill.n, fill.quantity, fill.price, fill.fee
                ),
            )
            .await;
        self.audit
            .record(
                "trading.settled",
                user,
                format!(
                    "order={} fill={} tx={} cash={}{}",
                    order.id,
                    fill.n,
                    tx.key,
                    tx.amount("cash", ledger::CASH),
                    realized
                        .map(|r| format!(" realized={r}"))
                        .unwrap_or_default()
                ),
            )
            .await;
        let message = serde_json::json!({
            "type": "trading.fill", "topic": "trading", "order": order.id, "symbol": order.request.symbol,
            "side": order.request.side, "quantity": fill.quantity, "price": fill.price, "fee": fill.fee, "date": fill.date,
        });
        self.notifier.publish(user, &Topic::Trading, &message).await;
        metrics::counter!("trading_fills_total").increment(1);
        Ok((account, Self::order_in(&order.id, &stored)?))
    }

    /// This replica's rights to `user`'s notional on `date`, in cents, and the limit.
    pub async fn notional_left(&self, user: &str, date: Date) -> Result<(u64, u64), TradingError> {
        let limit = cents(self.settings.daily_notional);
        Ok((
            escrow::left(&self.site, user, date, self.share(), limit).await?,
            limit,
        ))
    }

    /// Hands `cents` of this replica's rights to `user`'s notional on `date` to `to`.
    pub async fn transfer(
        &self,
        actor: &str,
        user: &str,
        date: Date,
        to: &str,
        amount_cents: u64,
    ) -> Result<bool, TradingError> {
        let limit = cents(self.settings.daily_notional);
        let target = jarvis_crdt::ReplicaId::from_name(to);
        let moved = escrow::transfer(
            &self.site,
            user,
            date,
            self.share(),
            limit,
            target,
            amount_cents,
        )
        .await?;
        if moved {
            self.audit
                .record(
                    "trading.limits.transferred",
                    actor,
                    format!("user={user} date={date} to={to} cents={amount_cents}"),
                )
                .await;
        }
        Ok(moved)
    }

    /// Runs a backtest over the stored bars and keeps it for `user`.
    pub async fn backtest(
        &self,
        user: &str,
        request: backtest::Request,
    ) -> Result<StoredBacktest, TradingError> {
        let warmup = add_days(request.from, -((request.strategy.warmup() as i64) * 2 + 30));
        let mut bars = BTreeMap::new();
        for symbol in &request.symbols {
            if self.instrument(symbol).await?.is_none() {
                return Err(TradingError::Unprocessable {
                    field: "symbols".into(),
                    message: format!("{symbol} is not a listed instrument"),
                });
            }
            bars.insert(
                symbol.clone(),
                self.bars.bars(symbol, warmup, request.to).await?,
            );
        }
        let started = std::time::Instant::now();
        let mut outcome = backtest::run(&request, &bars)?;
        metrics::histogram!("trading_backtest_seconds").record(started.elapsed().as_secs_f64());
        outcome.strategy.equity = thin(&outcome.strategy.equity);
        outcome.buy_and_hold.equity = thin(&outcome.buy_and_hold.equity);
        let trades_total = outcome.trades.len();
        outcome.trades.truncate(KEPT_TRADES);
        let stored = StoredBacktest {
            id: jarvis_store::ids::newest_first(&self.site.clock.now())
                .hyphenated()
                .to_string(),
            strategy: request.strategy,
            symbols: request.symbols,
            from: request.from,
            to: request.to,
            cash: request.cash,
            seed: request.seed,
            outcome,
            trades_total,
            created_at_ms: now_ms(),
        };
        let json = serde_json::to_string(&stored).unwrap_or_default();
        let (replica, clock) = (self.site.replica, &self.site.clock);
        self.site
            .store
            .update(
                &Key::new(format!("trading#{user}"), format!("backtest#{}", stored.id))?,
                |r: &mut Record| {
                    r.create(
                        replica,
                        clock.now(),
                        [("backtest".to_owned(), json.clone())],
                    )
                },
            )
            .await?;
        Ok(stored)
    }

    /// `user`'s backtest `id`.
    pub async fn stored_backtest(
        &self,
        user: &str,
        id: &str,
    ) -> Result<StoredBacktest, TradingError> {
        let doc = self
            .site
            .store
            .read::<Record>(&Key::new(
                format!("trading#{user}"),
                format!("backtest#{id}"),
            )?)
            .await?;
        doc.and_then(|d| serde_json::from_str(d.state.get("backtest")?).ok())
            .ok_or_else(|| TradingError::NotFound("no such backtest".into()))
    }

    /// The latest close of each of `symbols` on or before `date` (for marking to market).
    pub async fn closes(
        &self,
        symbols: &[String],
        date: Date,
    ) -> Result<BTreeMap<String, Decimal>, TradingError> {
        let mut out = BTreeMap::new();
        for symbol in symbols.iter().filter_map(|s| Symbol::parse(s)) {
            if let Some(bar) = bars::latest(self.bars.as_ref(), &symbol, date, 31).await? {
                out.insert(symbol.to_string(), bar.close);
            }
        }
        Ok(out)
    }
}
