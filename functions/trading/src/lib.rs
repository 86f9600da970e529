//! The trading function: paper trading from signal to settlement, the kill switch and the
//! daily limits, market data, backtests.
//!
//! The domain is `jarvis-trading`; here are its routes (scopes `trading:read`,
//! `trading:write`; administration for the kill switch, limit transfers and imports), its
//! audit trail (the deployment's hash chain, [`AuditLog`]) and [`trading_error`], what its
//! errors become. Money is a decimal string on the wire, never a JSON number.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use jarvis_app::AppState;
use jarvis_http::error::{ApiError, AuthRejections, ErrorEnvelope};
use jarvis_http::time::rfc3339_ms;
use jarvis_http::{Hosted, Json, PageParams, Paged, Path, Query, validate};
use jarvis_identity::{Authorized, scope};
use jarvis_trading::backtest::{self, Point};
use jarvis_trading::ledger::Transaction;
use jarvis_trading::money::{self, Decimal};
use jarvis_trading::service::{AccountState, ChainAudit, Settings, SignalRequest, StoredBacktest};
use jarvis_trading::state::TradingState;
use jarvis_trading::strategy::Strategy;
use jarvis_trading::{Order, OrderRequest, Symbol, Trading, TradingError};
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use jarvis_trading;

/// Most symbols a backtest or strategy run trades.
pub const MAX_SYMBOLS: usize = 10;
/// Longest signal reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// The largest whole number JSON carries exactly (2^53 − 1).
const MAX_SAFE_INTEGER: u64 = 9_007_199_254_740_991;
/// Most sessions `GET /trading/bars/{symbol}` answers (about four years).
pub const MAX_BARS_DAYS: i64 = 1_500;

impl jarvis_http::Capability for Hosting {
    const WHAT: &'static str = "trading";
}

/// The trading of a host.
pub struct Hosting(pub Trading);

/// The function's routes with their OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_instruments))
        .routes(routes!(import_bars))
        .routes(routes!(get_bars))
        .routes(routes!(get_account))
        .routes(routes!(set_clock))
        .routes(routes!(send_signal))
        .routes(routes!(run_strategy))
        .routes(routes!(place_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .routes(routes!(list_ledger))
        .routes(routes!(get_state, put_state))
        .routes(routes!(get_limits))
        .routes(routes!(transfer_limits))
        .routes(routes!(run_backtest))
        .routes(routes!(get_backtest))
        .routes(routes!(get_chart))
}

/// The function's routes, serving `trading`.
pub fn routes(trading: Arc<Hosting>) -> axum::Router<AppState> {
    let router: axum::Router<AppState> = api().into();
    router.layer(Extension(trading))
}

/// The trading of a deployment, auditing to its audit trail.
pub fn service(state: &AppState) -> Arc<Hosting> {
    Arc::new(Hosting(Trading::new(
        state.site(),
        Arc::clone(&state.realtime),
        Arc::new(ChainAudit {
            site: state.site(),
            secrets: Arc::clone(&state.secrets),
            chain: state.config.replica_id.clone(),
        }),
        Settings::from_config(&state.config.trading),
    )))
}

/// The HTTP answer to a failed trading operation.
pub fn trading_error(err: TradingError) -> ApiError {
    match err {
        TradingError::Invalid { field, message } => ApiError::invalid_field(field, message),
        TradingError::Unprocessable { field, message } => {
            ApiError::unprocessable_field(field, message)
        }
        TradingError::NotFound(message) => ApiError::NotFound(message.into()),
        TradingError::Conflict(message) => ApiError::Conflict(message.into()),
        TradingError::Import(message) => ApiError::invalid_field("body", message),
        TradingError::Store(err) => err.into(),
    }
}

jarvis_http::string_schema!(
    /// An amount or quantity: a positive decimal string, at most 12 whole digits (no leading
    /// zero) and 8 places.
    Amount,
    || validate::bounded(
        validate::string(
            "a positive decimal string: at most 12 whole digits, no leading zero, up to 8 places"
        )
        .pattern(Some(money::AMOUNT_PATTERN)),
        1,
        21
    )
);

jarvis_http::string_schema!(
    /// A ticker symbol.
    SymbolText,
    || validate::bounded(
        validate::string(jarvis_trading::instrument::SYMBOL_RULE)
            .pattern(Some(jarvis_trading::instrument::SYMBOL_PATTERN)),
        1,
        10
    )
);

jarvis_http::string_schema!(
    /// A calendar date, `yyyy-mm-dd`.
    DateText,
    || validate::string("a calendar date, yyyy-mm-dd")
        .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Date
        )))
        .pattern(Some(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))
);

jarvis_http::string_schema!(
    /// A client's id for an order: 1 to 64 of letters, digits, `_` and `-`.
    ClientOrderId,
    || validate::bounded(
        validate::string("1 to 64 of letters, digits, '_' and '-'")
            .pattern(Some("^[A-Za-z0-9_-]{1,64}$")),
        1,
        64
    )
);

jarvis_http::string_schema!(
    /// Why a signal was sent: 1 to 500 characters.
    ReasonText,
    || validate::text_schema(
        "1 to 500 characters, no control characters other than tab and line breaks",
        MAX_REASON_CHARS
    )
);

/// Buy or sell.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SideName {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

impl From<SideName> for jarvis_trading::Side {
    fn from(side: SideName) -> Self {
        match side {
            SideName::Buy => Self::Buy,
            SideName::Sell => Self::Sell,
        }
    }
}

/// At the market, or at a limit.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderTypeName {
    /// At the next session's open (and slippage).
    Market,
    /// At the limit price or better.
    Limit,
}

/// How long an order stays open.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeInForceName {
    /// Until the end of the next session.
    Day,
    /// Until cancelled.
    Gtc,
    /// The next session's open only; the rest is cancelled.
    Ioc,
}

impl From<TimeInForceName> for jarvis_trading::TimeInForce {
    fn from(tif: TimeInForceName) -> Self {
        match tif {
            TimeInForceName::Day => Self::Day,
            TimeInForceName::Gtc => Self::Gtc,
            TimeInForceName::Ioc => Self::Ioc,
        }
    }
}

fn amount(field: &'static str, text: &str) -> Result<Decimal, ApiError> {
    money::parse_positive(text).ok_or_else(|| {
        ApiError::invalid_field(
            field,
            "must be a positive decimal string: at most 12 whole digits, no leading zero, up to 8 places",
        )
    })
}

fn date(field: &'static str, text: &str) -> Result<Date, ApiError> {
    let well_formed = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    well_formed
        .then(|| text.parse::<Date>().ok())
        .flatten()
        .ok_or_else(|| ApiError::invalid_field(field, "must be a calendar date, yyyy-mm-dd"))
}

fn client_order_id(text: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "client_order_id",
            "must be 1 to 64 of letters, digits, '_' and '-'",
        ))
    }
}

fn symbol(field: &'static str, text: &str) -> Result<Symbol, ApiError> {
    Symbol::parse(text)
        .ok_or_else(|| ApiError::invalid_field(field, jarvis_trading::instrument::SYMBOL_RULE))
}

/// An instrument.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstrumentView {
    /// Its symbol.
    pub symbol: String,
    /// Prices are whole multiples of this.
    #[schema(value_type = Amount)]
    pub tick_size: Decimal,
    /// Quantities are whole multiples of this.
    #[schema(value_type = Amount)]
    pub lot_size: Decimal,
    /// The least quantity of an order.
    #[schema(value_type = Amount)]
    pub min_quantity: Decimal,
    /// The most quantity of an order.
    #[schema(value_type = Amount)]
    pub max_quantity: Decimal,
    /// The currency of its prices.
    pub currency: String,
}

/// The listed instruments.
#[utoipa::path(
    get,
    path = "/trading/instruments",
    tag = "trading",
    security(("access_token" = ["trading:read"]), ("api_key" = ["trading:read"])),
    responses(
        (status = 200, description = "The instruments", body = Vec<InstrumentView>),
        AuthRejections,
    )
)]
async fn list_instruments(
    _caller: Authorized<scope::TradingRead>,
    Hosted(hosting): Hosted<Hosting>,
) -> Result<Json<Vec<InstrumentView>>, ApiError> {
    let list = hosting.0.instruments().await.map_err(trading_error)?;
    Ok(Json(
        list.iter()
            .map(|i| InstrumentView {
                symbol: i.symbol.to_string(),
                tick_size: i.tick_size,
                lot_size: i.lot_size,
                min_quantity: i.min_quantity,
                max_quantity: i.max_quantity,
                currency: i.currency.clone(),
            })
            .collect(),
    ))
}

/// What an import loaded.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Imported {
    /// Sessions loaded, by symbol.
    pub symbols: BTreeMap<String, usize>,
}

/// Loads daily bars from CSV (`Ticker,Date,Open,High,Low,Close,Volume,Adj Close`, the bundled
/// data's form; `text/csv`, or gzip-compressed as `application/gzip`), split-adjusted, and
/// lists new symbols (admins only). Days already stored are replaced.
#[utoipa::path(
    post,
    path = "/trading/bars",
    tag = "trading",
    request_body(content((String = "text/csv"), (Vec<u8> = "application/gzip")), description = "The CSV, plain or gzip-compressed"),
    security(("access_token" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "Sessions loaded by symbol", body = Imported),
        (status = 400, description = "Not the expected CSV; the line at fault is named", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn import_bars(
    _admin: Authorized<scope::Admin>,
    Hosted(hosting): Hosted<Hosting>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Imported>, ApiError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media != "text/csv" && media != "application/gzip" {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: text/csv or application/gzip".into(),
        ));
    }
    let counts = hosting.0.import(&body).await.map_err(trading_error)?;
    Ok(Json(Imported {
        symbols: counts
            .into_iter()
            .map(|(s, n)| (s.to_string(), n))
            .collect(),
    }))
}

/// Which bars.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BarParams {
    /// The first session (`yyyy-mm-dd`).
    #[param(value_type = DateText, inline)]
    pub from: String,
    /// The last session (`yyyy-mm-dd`, at most 1,500 days after `from`).
    #[param(value_type = DateText, inline)]
    pub to: String,
}

/// One session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BarView {
    /// The session.
    #[schema(value_type = DateText)]
    pub date: Date,
    /// Open.
    #[schema(value_type = Amount)]
    pub open: Decimal,
    /// High.
    #[schema(value_type = Amount)]
    pub high: Decimal,
    /// Low.
    #[schema(value_type = Amount)]
    pub low: Decimal,
    /// Close.
    #[schema(value_type = Amount)]
    pub close: Decimal,
    /// Volume.
    pub volume: u64,
}

/// A symbol's daily bars (split-adjusted) between two dates.
#[utoipa::path(
    get,
    path = "/trading/bars/{symbol}",
    tag = "trading",
    params(("symbol" = inline(SymbolText), Path, description = "The symbol"), BarParams),
    security(("access_token" = ["trading:read"]), ("api_key" = ["trading:read"])),
    responses(
        (status = 200, description = "The bars, oldest first", body = Vec<BarView>),
        (status = 400, description = "A malformed symbol or date", body = ErrorEnvelope),
        (status = 422, description = "`to` before `from`, or more than 1,500 days after it", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_bars(
    _caller: Authorized<scope::TradingRead>,
    Hosted(hosting): Hosted<Hosting>,
    Path(name): Path<String>,
    Query(params): Query<BarParams>,
) -> Result<Json<Vec<BarView>>, ApiError> {
    let symbol = symbol("symbol", &name)?;
    let (from, to) = (date("from", &params.from)?, date("to", &params.to)?);
    let span = from.until(to).map(|s| s.get_days()).unwrap_or(i32::MAX);
    if to < from || i64::from(span) > MAX_BARS_DAYS {
        return Err(ApiError::unprocessable_field(
            "to",
            "must be on or after from, at most 1,500 days later",
        ));
    }
    let bars = hosting
        .0
        .feed()
        .bars(&symbol, from, to)
        .await
        .map_err(|e| trading_error(e.into()))?;
    Ok(Json(
        bars.iter()
            .map(|b| BarView {
                date: b.date,
                open: b.open,
                high: b.high,
                low: b.low,
                close: b.close,
                volume: b.volume,
            })
            .collect(),
    ))
}

/// A holding, marked to market.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PositionView {
    /// The symbol.
    pub symbol: String,
    /// Quantity held.
    #[schema(value_type = String)]
    pub quantity: Decimal,
    /// What it cost on average (fees included), while held.
    #[schema(value_type = Option<String>)]
    pub average_cost: Option<Decimal>,
    /// The last close on or before the replay date.
    #[schema(value_type = Option<String>)]
    pub last_price: Option<Decimal>,
    /// Quantity times the last close.
    #[schema(value_type = String)]
    pub market_value: Decimal,
    /// Market value less cost.
    #[schema(value_type = String)]
    pub unrealized_pnl: Decimal,
    /// Realized by selling it, fees included.
    #[schema(value_type = String)]
    pub realized_pnl: Decimal,
}

/// A lock on new risk.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LockView {
    /// `account`, or the symbol.
    pub on: String,
    /// `symbol_cooldown`, `max_drawdown` or `stoploss_guard`.
    pub code: String,
    /// The first replay date it no longer holds.
    #[schema(value_type = DateText)]
    pub until: Date,
}

/// A paper account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PaperAccount {
    /// The replay date: sessions through it have traded.
    #[schema(value_type = DateText)]
    pub clock: Date,
    /// Cash.
    #[schema(value_type = String)]
    pub cash: Decimal,
    /// Cash not held back by open buys.
    #[schema(value_type = String)]
    pub free_cash: Decimal,
    /// Cash plus holdings at their last closes.
    #[schema(value_type = String)]
    pub equity: Decimal,
    /// The highest equity at a close.
    #[schema(value_type = String)]
    pub peak_equity: Decimal,
    /// Cash deposited.
    #[schema(value_type = String)]
    pub capital: Decimal,
    /// Fees paid.
    #[schema(value_type = String)]
    pub fees: Decimal,
    /// Realized P&L, fees included.
    #[schema(value_type = String)]
    pub realized_pnl: Decimal,
    /// Unrealized P&L at the last closes.
    #[schema(value_type = String)]
    pub unrealized_pnl: Decimal,
    /// Holdings (with what was realized on symbols no longer held).
    pub positions: Vec<PositionView>,
    /// Open orders.
    pub open_orders: usize,
    /// Locks on new risk.
    pub locks: Vec<LockView>,
}

async fn account_view(trading: &Trading, state: &AccountState) -> Result<PaperAccount, ApiError> {
    let symbols: Vec<String> = state.book.positions.keys().cloned().collect();
    let closes = trading
        .closes(&symbols, state.clock)
        .await
        .map_err(trading_error)?;
    let mut positions = Vec::new();
    let (mut market, mut unrealized) = (Decimal::ZERO, Decimal::ZERO);
    for (symbol, position) in &state.book.positions {
        let last = closes.get(symbol).copied();
        let value = last.map_or(Decimal::ZERO, |p| p * position.quantity);
        let pnl = if position.quantity > Decimal::ZERO {
            value - position.cost
        } else {
            Decimal::ZERO
        };
        market += value;
        unrealized += pnl;
        positions.push(PositionView {
            symbol: symbol.clone(),
            quantity: position.quantity,
            average_cost: position.average_cost(),
            last_price: last,
            market_value: value,
            unrealized_pnl: pnl,
            realized_pnl: position.realized,
        });
    }
    let mut locks: Vec<LockView> = state
        .symbol_locks
        .iter()
        .filter(|(_, until)| **until > state.clock)
        .map(|(symbol, until)| LockView {
            on: symbol.clone(),
            code: "symbol_cooldown".into(),
            until: *until,
        })
        .collect();
    if let Some((code, until)) = state
        .account_lock
        .as_ref()
        .filter(|(_, u)| *u > state.clock)
    {
        locks.push(LockView {
            on: "account".into(),
            code: code.clone(),
            until: *until,
        });
    }
    Ok(PaperAccount {
        clock: state.clock,
        cash: state.book.cash,
        free_cash: state.free_cash(),
        equity: state.book.cash + market,
        peak_equity: state.peak_equity,
        capital: state.book.capital,
        fees: state.book.fees,
        realized_pnl: state.book.realized(),
        unrealized_pnl: unrealized,
        positions,
        open_orders: state.open.len(),
        locks,
    })
}

/// The caller's paper account (opened with the starting cash on first use): cash, equity,
/// positions and P&L at the replay date, open orders, locks.
#[utoipa::path(
    get,
    path = "/trading/account",
    tag = "trading",
    security(("access_token" = ["trading:read"]), ("api_key" = ["trading:read"])),
    responses((status = 200, description = "The account", body = PaperAccount), AuthRejections)
)]
async fn get_account(
    caller: Authorized<scope::TradingRead>,
    Hosted(hosting): Hosted<Hosting>,
) -> Result<Json<PaperAccount>, ApiError> {
    let state = hosting
        .0
        .account(&caller.identity.user_id)
        .await
        .map_err(trading_error)?;
    Ok(Json(account_view(&hosting.0, &state).await?))
}

/// `PUT /trading/clock`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockBody {
    /// The replay date to move to.
    #[schema(value_type = DateText)]
    pub date: String,
}

/// Moves the replay clock forward to a date: every session in between trades the open
/// orders on the paper exchange and settles their fills. A date not after the clock
/// changes nothing (so a retry changes nothing either).
#[utoipa::path(
    put,
    path = "/trading/clock",
    tag = "trading",
    request_body = ClockBody,
    security(("access_token" = ["trading:write"]), ("api_key" = ["trading:write"])),
    responses(
        (status = 200, description = "The account after", body = PaperAccount),
        (status = 400, description = "Not a date", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn set_clock(
    caller: Authorized<scope::TradingWrite>,
    Hosted(hosting): Hosted<Hosting>,
    Json(body): Json<ClockBody>,
) -> Result<Json<PaperAccount>, ApiError> {
    let to = date("date", &body.date)?;
    let state = hosting
        .0
        .advance(&caller.identity.user_id, to)
        .await
        .map_err(trading_error)?;
    Ok(Json(account_view(&hosting.0, &state).await?))
}

/// An order as clients see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    /// Its id.
    pub id: String,
    /// The client's id for it.
    pub client_order_id: String,
    /// The symbol.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// `market` or `limit`.
    #[serde(rename = "type")]
    pub order_type: String,
    /// How much.
    #[schema(value_type = String)]
    pub quantity: Decimal,
    /// The limit.
    #[schema(value_type = Option<String>)]
    pub limit_price: Option<Decimal>,
    /// `day`, `gtc` or `ioc`.
    pub time_in_force: String,
    /// `new`, `accepted`, `partially_filled`, `filled`, `canceled`, `expired` or
    /// `rejected`.
    pub status: String,
    /// How much filled.
    #[schema(value_type = String)]
    pub filled_quantity: Decimal,
    /// The average fill price.
    #[schema(value_type = Option<String>)]
    pub average_price: Option<Decimal>,
    /// Its fills.
    pub fills: Vec<FillView>,
    /// The replay date it was placed on.
    #[schema(value_type = DateText)]
    pub placed_on: Date,
    /// When it was placed.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The signal it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// The risk engine's code, for a rejected order; why an order ended early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// What the code means here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One fill.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FillView {
    /// Its number within the order.
    pub n: u32,
    /// The session.
    #[schema(value_type = DateText)]
    pub date: Date,
    /// How much.
    #[schema(value_type = String)]
    pub quantity: Decimal,
    /// At what price.
    #[schema(value_type = String)]
    pub price: Decimal,
    /// The fee.
    #[schema(value_type = String)]
    pub fee: Decimal,
}

fn order_view(order: &Order) -> OrderView {
    let r = &order.request;
    OrderView {
        id: order.id.clone(),
        client_order_id: r.client_order_id.clone(),
        symbol: r.symbol.to_string(),
        side: r.side.name().to_owned(),
        order_type: match r.order_type {
            jarvis_trading::OrderType::Market => "market",
            jarvis_trading::OrderType::Limit => "limit",
        }
        .to_owned(),
        quantity: r.quantity,
        limit_price: r.limit_price,
        time_in_force: match r.time_in_force {
            jarvis_trading::TimeInForce::Day => "day",
            jarvis_trading::TimeInForce::Gtc => "gtc",
            jarvis_trading::TimeInForce::Ioc => "ioc",
        }
        .to_owned(),
        status: order.status.name().to_owned(),
        filled_quantity: order.filled,
        average_price: order.average_price(),
        fills: order
            .fills
            .iter()
            .map(|f| FillView {
                n: f.n,
                date: f.date,
                quantity: f.quantity,
                price: f.price,
                fee: f.fee,
            })
            .collect(),
        placed_on: order.placed_on,
        created_at: rfc3339_ms(order.created_at_ms),
        signal: order.signal.clone(),
        reason_code: order.reason_code.clone(),
        reason: order.reason.clone(),
    }
}

/// `POST /trading/signals`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalBody {
    /// The symbol.
    #[schema(value_type = SymbolText)]
    pub symbol: String,
    /// Buy or sell.
    pub side: SideName,
    /// Why.
    #[schema(value_type = ReasonText)]
    pub reason: String,
    /// How strongly, 0 to 1 (default 1): sizes the order when no quantity is given — a
    /// buy's share of the most an order may be worth (or of the free cash, if less), a
    /// sell's share of what is held.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(minimum = 0, maximum = 1, nullable = false)]
    pub strength: Option<f64>,
    /// How much (whole lots of the instrument).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = Amount, nullable = false)]
    pub quantity: Option<String>,
    /// A limit price: the order is a limit order.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = Amount, nullable = false)]
    pub limit_price: Option<String>,
    /// How long the order stays open (default `day`).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(nullable = false)]
    pub time_in_force: Option<TimeInForceName>,
    /// The client's id for the order: a retry with the same id answers the same signal
    /// and order (200), one of another symbol or side is a 422.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = ClientOrderId, nullable = false)]
    pub client_order_id: Option<String>,
}

/// What a signal became.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SignalView {
    /// The signal's id.
    pub signal: String,
    /// The order it led to (`rejected`, with the risk engine's code, when refused there).
    pub order: OrderView,
}

/// Sends a signal (from a user or an agent): validated — an unknown symbol, a stale price
/// or a malformed quantity is a 400 naming the field — recorded, sized, and placed as an
/// order through the risk engine. Every step is audited. With a `client_order_id`, a retry
/// answers the first signal and its order (200).
#[utoipa::path(
    post,
    path = "/trading/signals",
    tag = "trading",
    request_body = SignalBody,
    security(("access_token" = ["trading:write"]), ("api_key" = ["trading:write"])),
    responses(
        (status = 201, description = "The signal and its order", body = SignalView),
        (status = 200, description = "The signal and order this client order id names (a retry)", body = SignalView),
        (status = 400, description = "An unknown symbol, a stale price, a malformed quantity or another invalid field", body = ErrorEnvelope),
        (status = 422, description = "The client order id names another signal or order", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn send_signal(
    caller: Authorized<scope::TradingWrite>,
    Hosted(hosting): Hosted<Hosting>,
    Json(body): Json<SignalBody>,
) -> Result<impl IntoResponse, ApiError> {
    validate::text("reason", &body.reason, MAX_REASON_CHARS)?;
    if let Some(id) = &body.client_order_id {
        client_order_id(id)?;
    }
    let strength = body.strength.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&strength) {
        return Err(ApiError::invalid_field("strength", "must be 0 to 1"));
    }
    let request = SignalRequest {
        symbol: body.symbol,
        side: body.side.into(),
        strength,
        reason: body.reason,
        quantity: body
            .quantity
            .as_deref()
            .map(|q| amount("quantity", q))
            .transpose()?,
        limit_price: body
            .limit_price
            .as_deref()
            .map(|p| amount("limit_price", p))
            .transpose()?,
        time_in_force: body.time_in_force.unwrap_or(TimeInForceName::Day).into(),
        source: match caller.identity.credential {
            jarvis_identity::Credential::Delegated { .. } => "agent".into(),
            _ => "user".into(),
        },
        client_order_id: body.client_order_id,
    };
    let outcome = hosting
        .0
        .signal(&caller.identity.user_id, request)
        .await
        .map_err(trading_error)?;
    let status = if outcome.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(SignalView {
            signal: outcome.id,
            order: order_view(&outcome.order),
        }),
    ))
}

/// A strategy and its parameters.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum StrategyBody {
    /// Long while the fast simple moving average of closes is above the slow one.
    SmaCrossover {
        /// The fast average's closes (2 to 250).
        #[schema(value_type = u32, minimum = 2, maximum = 250)]
        #[serde(deserialize_with = "validate::whole_number")]
        fast: u64,
        /// The slow average's closes (more than `fast`, at most 250).
        #[schema(value_type = u32, minimum = 3, maximum = 250)]
        #[serde(deserialize_with = "validate::whole_number")]
        slow: u64,
    },
    /// Long from a close where Wilder's RSI falls below `oversold` until one where it
    /// rises above `overbought`.
    RsiReversion {
        /// The RSI's closes (2 to 100).
        #[schema(value_type = u32, minimum = 2, maximum = 100)]
        #[serde(deserialize_with = "validate::whole_number")]
        period: u64,
        /// Below this, buy (above 0, below `overbought`).
        #[schema(exclusive_minimum = 0, exclusive_maximum = 100)]
        oversold: f64,
        /// Above this, sell (below 100).
        #[schema(exclusive_minimum = 0, exclusive_maximum = 100)]
        overbought: f64,
    },
}

fn strategy_of(body: StrategyBody) -> Result<Strategy, ApiError> {
    let strategy = match body {
        StrategyBody::SmaCrossover { fast, slow } => Strategy::SmaCrossover {
            fast: usize::try_from(fast).unwrap_or(usize::MAX),
            slow: usize::try_from(slow).unwrap_or(usize::MAX),
        },
        StrategyBody::RsiReversion {
            period,
            oversold,
            overbought,
        } => Strategy::RsiReversion {
            period: usize::try_from(period).unwrap_or(usize::MAX),
            oversold,
            overbought,
        },
    };
    strategy.check().map_err(|(field, message)| {
        // Bounds the schema states are a 400; `slow` above `fast` and `overbought` above
        // `oversold` are rules between fields, a 422.
        let between = matches!(field, "slow" | "overbought");
        let field = format!("strategy.{field}");
        if between {
            ApiError::unprocessable_field(field, message)
        } else {
            ApiError::invalid_field(field, message)
        }
    })?;
    Ok(strategy)
}

fn symbols(field: &'static str, names: &[String]) -> Result<Vec<Symbol>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::invalid_field(
            field,
            "must name at least one symbol",
        ));
    }
    validate::count(field, names.len(), MAX_SYMBOLS)?;
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let symbol = Symbol::parse(name).ok_or_else(|| {
            ApiError::invalid_field(
                format!("{field}[{i}]"),
                jarvis_trading::instrument::SYMBOL_RULE,
            )
        })?;
        if !out.contains(&symbol) {
            out.push(symbol);
        }
    }
    Ok(out)
}

/// `POST /trading/strategies/run`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StrategyRun {
    /// The strategy.
    pub strategy: StrategyBody,
    /// The symbols it looks at (1 to 10).
    #[schema(value_type = Vec<SymbolText>, min_items = 1, max_items = 10)]
    pub symbols: Vec<String>,
}

/// The signals a run sent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StrategySignals {
    /// One per symbol whose position the strategy changes at the replay date.
    pub signals: Vec<SignalView>,
}

/// Runs a strategy on each symbol's closes to the replay date, and sends the signal it
/// gives (none where it holds steady; no sell of what is not held).
#[utoipa::path(
    post,
    path = "/trading/strategies/run",
    tag = "trading",
    request_body = StrategyRun,
    security(("access_token" = ["trading:write"]), ("api_key" = ["trading:write"])),
    responses(
        (status = 200, description = "The signals sent and their orders", body = StrategySignals),
        (status = 400, description = "An invalid field; a symbol not listed or without a fresh price", body = ErrorEnvelope),
        (status = 422, description = "Parameters that contradict each other", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn run_strategy(
    caller: Authorized<scope::TradingWrite>,
    Hosted(hosting): Hosted<Hosting>,
    Json(body): Json<StrategyRun>,
) -> Result<Json<StrategySignals>, ApiError> {
    let strategy = strategy_of(body.strategy)?;
    let symbols = symbols("symbols", &body.symbols)?;
    let outcomes = hosting
        .0
        .run_strategy(&caller.identity.user_id, strategy, &symbols)
        .await
        .map_err(trading_error)?;
    Ok(Json(StrategySignals {
        signals: outcomes
            .iter()
            .map(|o| SignalView {
                signal: o.id.clone(),
                order: order_view(&o.order),
            })
            .collect(),
    }))
}

/// `POST /trading/orders`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// The client's id: a retry with the same id answers the same order.
    #[schema(value_type = ClientOrderId)]
    pub client_order_id: String,
    /// The symbol.
    #[schema(value_type = SymbolText)]
    pub symbol: String,
    /// Buy or sell.
    pub side: SideName,
    /// Market or limit.
    #[serde(rename = "type")]
    pub order_type: OrderTypeName,
    /// How much.
    #[schema(value_type = Amount)]
    pub quantity: String,
    /// The limit, for a limit order.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = Amount, nullable = false)]
    pub limit_price: Option<String>,
    /// How long it stays open (default `day`).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(nullable = false)]
    pub time_in_force: Option<TimeInForceName>,
}

/// Places an order: checked by the risk engine, then traded on the paper exchange as the
/// replay clock moves. 201 with the order (`accepted`, or `rejected` with the risk engine's
/// code); a retry with the same `client_order_id` is 200 with the same order, a different
/// order with that id a 422.
#[utoipa::path(
    post,
    path = "/trading/orders",
    tag = "trading",
    request_body = NewOrder,
    security(("access_token" = ["trading:write"]), ("api_key" = ["trading:write"])),
    responses(
        (status = 201, description = "The order, accepted or rejected", body = OrderView),
        (status = 200, description = "The order this client id names (a retry)", body = OrderView),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        (status = 422, description = "The client id names another order, or the symbol's price is stale", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn place_order(
    caller: Authorized<scope::TradingWrite>,
    Hosted(hosting): Hosted<Hosting>,
    Json(body): Json<NewOrder>,
) -> Result<impl IntoResponse, ApiError> {
    let request = OrderRequest {
        client_order_id: body.client_order_id,
        symbol: symbol("symbol", &body.symbol)?,
        side: body.side.into(),
        order_type: match body.order_type {
            OrderTypeName::Market => jarvis_trading::OrderType::Market,
            OrderTypeName::Limit => jarvis_trading::OrderType::Limit,
        },
        quantity: amount("quantity", &body.quantity)?,
        limit_price: body
            .limit_price
            .as_deref()
            .map(|p| amount("limit_price", p))
            .transpose()?,
        time_in_force: body.time_in_force.unwrap_or(TimeInForceName::Day).into(),
    };
    client_order_id(&request.client_order_id)?;
    let (order, new) = hosting
        .0
        .place(&caller.identity.user_id, request, None)
        .await
        .map_err(trading_error)?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(header::LOCATION, format!("/trading/orders/{}", order.id))],
        Json(order_view(&order)),
    ))
}

/// The caller's orders, newest first.
#[utoipa::path(
    get,
    path = "/trading/orders",
    tag = "trading",
    params(PageParams),
    security(("access_token" = ["trading:read"]), ("api_key" = ["trading:read"])),
    responses(
        (status = 200, description = "A page of orders", body = Paged<OrderView>),
        (status = 400, description = "Invalid limit or cursor", body = ErrorEnvelope),
        (status = 422, description = "A cursor this API did not return", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn list_orders(
    caller: Authorized<scope::TradingRead>,
    Hosted(hosting): Hosted<Hosting>,
    Query(params): Query<PageParams>,
) -> Result<Json<Paged<OrderView>>, ApiError> {
    let limit = params.limit()?;
    let page = hosting
        .0
        .orders(&caller.identity.user_id, params.cursor.as_deref(), limit)
        .await
        .map_err(trading_error)?;
    Ok(Json(Paged {
        items: page.items.iter().map(order_view).collect(),
        next_cursor: page.next_cursor,
    }))
}

fn order_id(id: &str) -> Result<String, ApiError> {
    Ok(validate::uuid("id", id)?.hyphenated().to_string())
}

/// One order, with its fills.
#[utoipa::path(
    get,
    path = "/trading/orders/{id}",
    tag = "trading",
    params(("id" = inline(validate::Uuid), Path, description = "The order's id")),
    security(("access_token" = ["trading:read"]), ("api_key" = ["trading:read"])),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "Not an order id", body = ErrorEnvelope),
        (status = 404, description = "No such order", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_order(
    caller: Authorized<scope::TradingRead>,
    Hosted(hosting): Hosted<Hosting>,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let order = hosting
        .0
        .order(&caller.identity.user_id, &order_id(&id)?)
        .await
        .map_err(trading_error)?;
    Ok(Json(order_view(&order)))
}

/// Cancels an open order (taken while trading is halted too). 409 once it has ended.
#[utoipa::path(
    post,
    path = "/trading/orders/{id}/cancel",
    tag = "trading",
    params(("id" = inline(validate::Uuid), Path, description = "The order's id")),
    security(("access_token" = ["trading:write"]), ("api_key" = ["trading:write"])),
    responses(
        (status = 200, description = "The order, cancelled", body = OrderView),
        (status = 400, description = "Not an order id", body = ErrorEnvelope),
        (status = 404, description = "No such order", body = ErrorEnvelope),
        (status = 409, description = "The order has ended", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn cancel_order(
    caller: Authorized<scope::TradingWrite>,
    Hosted(hosting): Hosted<Hosting>,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let order = hosting
        .0
        .cancel(&caller.identity.user_id, &order_id(&id)?)
        .await
        .map_err(trading_error)?;
    Ok(Json(order_view(&order)))
}

/// One posting.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PostingView {
    /// `cash`, `positions`, `fees`, `exchange` or `capital`.
    pub account: String,
    /// `USD` or a symbol.
    pub asset: String,
    /// Signed.
    #[schema(value_type = String)]
    pub amount: Decimal,
}

/// One transaction of the ledger: its postings balance, asset by asset.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TransactionView {
    /// What orders it.
    pub key: String,
    /// The session.
    #[schema(value_type = DateText)]
    pub date: Date,
    /// `deposit` or `trade`.
    pub kind: String,
    /// The order it settles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// The fill it settles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fill: Option<u32>,
    /// Its postings.
    pub postings: Vec<PostingView>,
}

fn transaction_view(tx: &Transaction) -> TransactionView {
    TransactionView {
        key: tx.key.clone(),
        date: tx.date,
        kind: tx.kind.clone(),
        order: tx.order.clone(),
        fill: tx.fill,
        postings: tx
            .postings
            .iter()
            .map(|p| PostingView {
                account: p.account.clone(),
                asset: p.asset.clone(),
                amount: p.amount,
            })
            .collect(),
    }
}

/// The caller's ledger, oldest first: the deposit, then a transaction per fill.
#[utoipa::path(
    get,
    path = "/trading/ledger",
    tag = "trading",
    params(PageParams),
    security(("access_token" = ["trading:read"]), ("api_key" = ["trading:read"])),
    responses(
        (status = 200, description = "A page of transactions", body = Paged<TransactionView>),
        (status = 400, description = "Invalid limit or cursor", body = ErrorEnvelope),
        (status = 422, description = "A cursor this API did not return", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn list_ledger(
    caller: Authorized<scope::TradingRead>,
    Hosted(hosting): Hosted<Hosting>,
    Query(params): Query<PageParams>,
) -> Result<Json<Paged<TransactionView>>, ApiError> {
    let limit = params.limit()?;
    let page = hosting
        .0
        .ledger(&caller.identity.user_id, params.cursor.as_deref(), limit)
        .await
        .map_err(trading_error)?;
    Ok(Json(Paged {
        items: page.items.iter().map(transaction_view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// The kill switch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    /// `active`, `reducing` (only orders that shrink a position) or `halted` (nothing but
    /// cancels).
    pub state: StateName,
}

/// A trading state.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateName {
    /// Orders as usual.
    Active,
    /// Only orders that shrink a position.
    Reducing,
    /// Nothing but cancels.
    Halted,
}

impl From<TradingState> for StateName {
    fn from(state: TradingState) -> Self {
        match state {
            TradingState::Active => Self::Active,
            TradingState::Reducing => Self::Reducing,
            TradingState::Halted => Self::Halted,
        }
    }
}

/// The trading state of the deployment.
#[utoipa::path(
    get,
    path = "/trading/state",
    tag = "trading",
    security(("access_token" = ["trading:read"]), ("api_key" = ["trading:read"])),
    responses((status = 200, description = "The state", body = StateBody), AuthRejections)
)]
async fn get_state(
    _caller: Authorized<scope::TradingRead>,
    Hosted(hosting): Hosted<Hosting>,
) -> Result<Json<StateBody>, ApiError> {
    let state = hosting.0.trading_state().await.map_err(trading_error)?;
    Ok(Json(StateBody {
        state: state.into(),
    }))
}

/// Sets the kill switch (admins only). Across replicas the most restrictive state wins
/// until an explicit, later resume that saw it: a stale `active` never undoes a halt.
#[utoipa::path(
    put,
    path = "/trading/state",
    tag = "trading",
    request_body = StateBody,
    security(("access_token" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The state now", body = StateBody),
        (status = 400, description = "Not a state", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn put_state(
    admin: Authorized<scope::Admin>,
    Hosted(hosting): Hosted<Hosting>,
    Json(body): Json<StateBody>,
) -> Result<Json<StateBody>, ApiError> {
    let target = match body.state {
        StateName::Active => TradingState::Active,
        StateName::Reducing => TradingState::Reducing,
        StateName::Halted => TradingState::Halted,
    };
    let now = hosting
        .0
        .set_trading_state(&admin.identity.user_id, target)
        .await
        .map_err(trading_error)?;
    Ok(Json(StateBody { state: now.into() }))
}

/// Which day's limit.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LimitParams {
    /// The replay date (default: the account's).
    #[param(value_type = Option<DateText>, inline)]
    pub date: Option<String>,
}

/// A day's notional limit as this deployment holds it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LimitView {
    /// The replay date.
    #[schema(value_type = DateText)]
    pub date: Date,
    /// The notional a user may trade that day, in cents, across deployments.
    pub limit_cents: u64,
    /// What this deployment may still spend of it, in cents.
    pub left_here_cents: u64,
}

/// The caller's daily notional limit and what this deployment holds of it.
#[utoipa::path(
    get,
    path = "/trading/limits",
    tag = "trading",
    params(LimitParams),
    security(("access_token" = ["trading:read"]), ("api_key" = ["trading:read"])),
    responses(
        (status = 200, description = "The limit", body = LimitView),
        (status = 400, description = "Not a date", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_limits(
    caller: Authorized<scope::TradingRead>,
    Hosted(hosting): Hosted<Hosting>,
    Query(params): Query<LimitParams>,
) -> Result<Json<LimitView>, ApiError> {
    let user = &caller.identity.user_id;
    let day = match params.date.as_deref() {
        Some(text) => date("date", text)?,
        None => hosting.0.account(user).await.map_err(trading_error)?.clock,
    };
    let (left, limit) = hosting
        .0
        .notional_left(user, day)
        .await
        .map_err(trading_error)?;
    Ok(Json(LimitView {
        date: day,
        limit_cents: limit,
        left_here_cents: left,
    }))
}

jarvis_http::string_schema!(
    /// A deployment's replica name.
    ReplicaName,
    || validate::bounded(
        validate::string("1 to 64 of letters, digits, '_', '-' and '.'")
            .pattern(Some("^[A-Za-z0-9_.-]{1,64}$")),
        1,
        64
    )
);

/// `POST /trading/limits/transfer`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// The user whose limit.
    #[schema(value_type = validate::HexId32)]
    pub user: String,
    /// The replay date.
    #[schema(value_type = DateText)]
    pub date: String,
    /// The deployment that receives the rights.
    #[schema(value_type = ReplicaName)]
    pub replica: String,
    /// How much, in cents.
    #[schema(minimum = 1, maximum = 9_007_199_254_740_991_u64)]
    #[serde(deserialize_with = "validate::whole_number")]
    pub cents: u64,
}

/// Whether the rights moved.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Transferred {
    /// `false` when this deployment holds fewer rights than asked.
    pub moved: bool,
}

/// Hands rights to a user's daily notional from this deployment to another (admins only):
/// the other may spend them once the change reaches it by sync.
#[utoipa::path(
    post,
    path = "/trading/limits/transfer",
    tag = "trading",
    request_body = Transfer,
    security(("access_token" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "Whether the rights moved", body = Transferred),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn transfer_limits(
    admin: Authorized<scope::Admin>,
    Hosted(hosting): Hosted<Hosting>,
    Json(body): Json<Transfer>,
) -> Result<Json<Transferred>, ApiError> {
    if !validate::is_hex(&body.user, 32) {
        return Err(ApiError::invalid_field(
            "user",
            "must be 32 lowercase hex digits",
        ));
    }
    let ok = (1..=64).contains(&body.replica.len())
        && body
            .replica
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(ApiError::invalid_field("replica", "must be a replica name"));
    }
    if !(1..=MAX_SAFE_INTEGER).contains(&body.cents) {
        return Err(ApiError::invalid_field(
            "cents",
            "must be 1 to 9,007,199,254,740,991",
        ));
    }
    let day = date("date", &body.date)?;
    let moved = hosting
        .0
        .transfer(
            &admin.identity.user_id,
            &body.user,
            day,
            &body.replica,
            body.cents,
        )
        .await
        .map_err(trading_error)?;
    Ok(Json(Transferred { moved }))
}

/// `POST /trading/backtests`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBacktest {
    /// The strategy.
    pub strategy: StrategyBody,
    /// The symbols it trades, cash split evenly (1 to 10).
    #[schema(value_type = Vec<SymbolText>, min_items = 1, max_items = 10)]
    pub symbols: Vec<String>,
    /// The first session.
    #[schema(value_type = DateText)]
    pub from: String,
    /// The last session.
    #[schema(value_type = DateText)]
    pub to: String,
    /// The cash it starts with (default 100000).
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(value_type = Amount, nullable = false)]
    pub cash: Option<String>,
    /// The seed of the exchange's random draws (default 1).
    #[serde(default, deserialize_with = "validate::whole_not_null")]
    #[schema(value_type = u64, minimum = 0, maximum = 9_007_199_254_740_991_u64, nullable = false)]
    pub seed: Option<u64>,
}

/// One point of an equity curve.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EquityPoint {
    /// The session.
    #[schema(value_type = DateText)]
    pub date: Date,
    /// Equity at its close.
    #[schema(value_type = String)]
    pub equity: Decimal,
}

/// How a curve did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BacktestSummary {
    /// Equity at the last close.
    #[schema(value_type = String)]
    pub final_equity: Decimal,
    /// `final / start − 1`.
    pub total_return: f64,
    /// Annualized Sharpe ratio of daily returns.
    pub sharpe: f64,
    /// The largest fall from a peak, as a fraction.
    pub max_drawdown: f64,
    /// The curve (at most 1,000 points: thinned evenly beyond).
    pub equity: Vec<EquityPoint>,
}

/// One fill of a backtest.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BacktestTrade {
    /// The session.
    #[schema(value_type = DateText)]
    pub date: Date,
    /// The symbol.
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// How much.
    #[schema(value_type = String)]
    pub quantity: Decimal,
    /// At what price.
    #[schema(value_type = String)]
    pub price: Decimal,
    /// The fee.
    #[schema(value_type = String)]
    pub fee: Decimal,
}

/// A backtest.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BacktestView {
    /// Its id.
    pub id: String,
    /// The strategy and its parameters.
    #[schema(value_type = Object)]
    pub strategy: serde_json::Value,
    /// The symbols.
    pub symbols: Vec<String>,
    /// The first session.
    #[schema(value_type = DateText)]
    pub from: Date,
    /// The last session.
    #[schema(value_type = DateText)]
    pub to: Date,
    /// The starting cash.
    #[schema(value_type = String)]
    pub cash: Decimal,
    /// The seed.
    pub seed: u64,
    /// The strategy's figures and curve.
    #[serde(rename = "result")]
    pub strategy_result: BacktestSummary,
    /// Buy-and-hold's, of the same symbols.
    pub buy_and_hold: BacktestSummary,
    /// The strategy's fills: the first 1,000.
    pub trades: Vec<BacktestTrade>,
    /// How many fills it made in all.
    pub trades_total: usize,
    /// The chart of both curves.
    pub chart: String,
    /// When it ran.
    #[schema(format = DateTime)]
    pub created_at: String,
}

fn summary_view(summary: &backtest::Summary) -> BacktestSummary {
    BacktestSummary {
        final_equity: summary.final_equity,
        total_return: summary.total_return,
        sharpe: summary.sharpe,
        max_drawdown: summary.max_drawdown,
        equity: summary
            .equity
            .iter()
            .map(|p: &Point| EquityPoint {
                date: p.date,
                equity: p.equity,
            })
            .collect(),
    }
}

fn backtest_view(stored: &StoredBacktest) -> BacktestView {
    BacktestView {
        id: stored.id.clone(),
        strategy: serde_json::to_value(stored.strategy).unwrap_or_default(),
        symbols: stored.symbols.iter().map(ToString::to_string).collect(),
        from: stored.from,
        to: stored.to,
        cash: stored.cash,
        seed: stored.seed,
        strategy_result: summary_view(&stored.outcome.strategy),
        buy_and_hold: summary_view(&stored.outcome.buy_and_hold),
        trades: stored
            .outcome
            .trades
            .iter()
            .map(|t| BacktestTrade {
                date: t.date,
                symbol: t.symbol.to_string(),
                side: t.side.name().to_owned(),
                quantity: t.quantity,
                price: t.price,
                fee: t.fee,
            })
            .collect(),
        trades_total: stored.trades_total,
        chart: format!("/trading/backtests/{}/chart", stored.id),
        created_at: rfc3339_ms(stored.created_at_ms),
    }
}

/// Runs a backtest over the stored bars: the strategy through the paper exchange beside
/// buy-and-hold, with total return, Sharpe ratio and maximum drawdown. The same request
/// and seed give the same result.
#[utoipa::path(
    post,
    path = "/trading/backtests",
    tag = "trading",
    request_body = NewBacktest,
    security(("access_token" = ["trading:write"]), ("api_key" = ["trading:write"])),
    responses(
        (status = 201, description = "The backtest", body = BacktestView),
        (status = 400, description = "Invalid field", body = ErrorEnvelope),
        (status = 422, description = "`to` before `from`, a symbol not listed, no session between the dates, parameters that contradict each other, or an equity that grows past 10^15", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn run_backtest(
    caller: Authorized<scope::TradingWrite>,
    Hosted(hosting): Hosted<Hosting>,
    Json(body): Json<NewBacktest>,
) -> Result<impl IntoResponse, ApiError> {
    let strategy = strategy_of(body.strategy)?;
    let symbols = symbols("symbols", &body.symbols)?;
    let (from, to) = (date("from", &body.from)?, date("to", &body.to)?);
    if to < from {
        return Err(ApiError::unprocessable_field(
            "to",
            "must be on or after from",
        ));
    }
    let cash = match body.cash.as_deref() {
        Some(text) => amount("cash", text)?,
        None => Decimal::from(100_000),
    };
    if body.seed.is_some_and(|seed| seed > MAX_SAFE_INTEGER) {
        return Err(ApiError::invalid_field(
            "seed",
            "must be 0 to 9,007,199,254,740,991",
        ));
    }
    let settings = hosting.0.settings();
    let request = backtest::Request {
        strategy,
        symbols,
        from,
        to,
        cash,
        seed: body.seed.unwrap_or(1),
        params: settings.params,
    };
    let stored = hosting
        .0
        .backtest(&caller.identity.user_id, request)
        .await
        .map_err(|err| match err {
            TradingError::Invalid { field, message } => {
                ApiError::unprocessable_field(field, message)
            }
            other => trading_error(other),
        })?;
    Ok((
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/trading/backtests/{}", stored.id),
        )],
        Json(backtest_view(&stored)),
    ))
}

/// A backtest the caller ran.
#[utoipa::path(
    get,
    path = "/trading/backtests/{id}",
    tag = "trading",
    params(("id" = inline(validate::Uuid), Path, description = "The backtest's id")),
    security(("access_token" = ["trading:read"]), ("api_key" = ["trading:read"])),
    responses(
        (status = 200, description = "The backtest", body = BacktestView),
        (status = 400, description = "Not a backtest id", body = ErrorEnvelope),
        (status = 404, description = "No such backtest", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_backtest(
    caller: Authorized<scope::TradingRead>,
    Hosted(hosting): Hosted<Hosting>,
    Path(id): Path<String>,
) -> Result<Json<BacktestView>, ApiError> {
    let id = validate::uuid("id", &id)?.hyphenated().to_string();
    let stored = hosting
        .0
        .stored_backtest(&caller.identity.user_id, &id)
        .await
        .map_err(trading_error)?;
    Ok(Json(backtest_view(&stored)))
}

/// A backtest's equity curves, the strategy's beside buy-and-hold's, as an SVG chart.
#[utoipa::path(
    get,
    path = "/trading/backtests/{id}/chart",
    tag = "trading",
    params(("id" = inline(validate::Uuid), Path, description = "The backtest's id")),
    security(("access_token" = ["trading:read"]), ("api_key" = ["trading:read"])),
    responses(
        (status = 200, description = "The chart", content_type = "image/svg+xml", body = String),
        (status = 400, description = "Not a backtest id", body = ErrorEnvelope),
        (status = 404, description = "No such backtest", body = ErrorEnvelope),
        AuthRejections,
    )
)]
async fn get_chart(
    caller: Authorized<scope::TradingRead>,
    Hosted(hosting): Hosted<Hosting>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = validate::uuid("id", &id)?.hyphenated().to_string();
    let stored = hosting
        .0
        .stored_backtest(&caller.identity.user_id, &id)
        .await
        .map_err(trading_error)?;
    let symbols: Vec<String> = stored.symbols.iter().map(ToString::to_string).collect();
    let title = format!(
        "{} on {}, {} to {}",
        stored.strategy.name(),
        symbols.join(", "),
        stored.from,
        stored.to
    );
    Ok((
        [(header::CONTENT_TYPE, "image/svg+xml")],
        backtest::chart(&title, &stored.outcome),
    ))
}

#[cfg(test)]
mod tests;
