//! Backtests: a strategy run over history through the same paper exchange orders use, beside
//! buying and holding the same symbols, with the statistics people compare them by and a
//! chart of both equity curves.
//!
//! Each day the strategy decides on the close; what it decides trades at the next session's
//! open as a market order (slippage, fees and seeded partial fills as the exchange has them;
//! what a partial fill leaves is tried again the next session). Cash is split evenly between
//! the symbols: a buy takes the symbol's share of the equity, or the cash left if less; a
//! sell sells all. Buy-and-hold buys each symbol's share at the first session and holds it.
//! The same request and seed give the same result.

use std::collections::BTreeMap;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::TradingError;
use crate::bars::Bar;
use crate::exchange::{Broker, Funds, PaperExchange, Params};
use crate::instrument::{Instrument, Symbol};
use crate::money::{Decimal, Round, bps, float, to_step};
use crate::order::{Order, OrderRequest, OrderType, Side, Status, TimeInForce};
use crate::strategy::Strategy;

/// What to test.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The strategy.
    pub strategy: Strategy,
    /// The symbols it trades.
    pub symbols: Vec<Symbol>,
    /// The first session.
    pub from: Date,
    /// The last session.
    pub to: Date,
    /// The cash it starts with.
    pub cash: Decimal,
    /// The seed of the exchange's random draws.
    pub seed: u64,
    /// The exchange's settings.
    pub params: Params,
}

/// One point of an equity curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// The session.
    pub date: Date,
    /// Cash and holdings at its close.
    pub equity: Decimal,
}

/// One fill of a backtest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    /// The session.
    pub date: Date,
    /// The symbol.
    pub symbol: Symbol,
    /// Buy or sell.
    pub side: Side,
    /// How much.
    pub quantity: Decimal,
    /// At what price.
    pub price: Decimal,
    /// The fee.
    pub fee: Decimal,
}

/// How a curve did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Equity at the last close.
    pub final_equity: Decimal,
    /// `final / start − 1`.
    pub total_return: f64,
    /// The annualized Sharpe ratio of daily returns (no risk-free rate, 252 sessions a year).
    pub sharpe: f64,
    /// The largest fall from a peak, as a fraction of the peak.
    pub max_drawdown: f64,
    /// The curve, a point per session.
    pub equity: Vec<Point>,
}

/// A backtest's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The strategy's curve and figures.
    pub strategy: Summary,
    /// Buy-and-hold's, of the same symbols.
    pub buy_and_hold: Summary,
    /// The strategy's fills.
    pub trades: Vec<Trade>,
}

/// The figures of an equity curve starting from `start`.
pub fn summarize(start: Decimal, equity: Vec<Point>) -> Summary {
    let values: Vec<f64> = equity.iter().map(|p| float(p.equity)).collect();
    let start_f = float(start);
    let final_equity = equity.last().map_or(start, |p| p.equity);
    let total_return = if start_f > 0.0 {
        float(final_equity) / start_f - 1.0
    } else {
        0.0
    };
    let returns: Vec<f64> = std::iter::once(start_f)
        .chain(values.iter().copied())
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] > 0.0)
        .map(|w| w[1] / w[0] - 1.0)
        .collect();
    let n = returns.len() as f64;
    let sharpe = if returns.len() > 1 {
        let mean = returns.iter().sum::<f64>() / n;
        let var = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
        if var > 0.0 {
            mean / var.sqrt() * 252f64.sqrt()
        } else {
            0.0
        }
    } else {
        0.0
    };
    let mut peak = start_f;
    let mut max_drawdown: f64 = 0.0;
    for value in &values {
        peak = peak.max(*value);
        if peak > 0.0 {
            max_drawdown = max_drawdown.max((peak - value) / peak);
        }
    }
    Summary {
        final_equity,
        total_return,
        sharpe,
        max_drawdown,
        equity,
    }
}

/// One symbol's series in a run.
struct Series<'a> {
    symbol: &'a Symbol,
    instrument: Instrument,
    bars: &'a [Bar],
    /// Index of each session's bar.
    by_date: BTreeMap<Date, usize>,
    holds: Vec<bool>,
    position: Decimal,
    pending: Option<Order>,
    orders: u64,
}

impl Series<'_> {
    fn last_close(&self, date: Date) -> Option<Decimal> {
        self.by_date
            .range(..=date)
            .next_back()
            .map(|(_, i)| self.bars[*i].close)
    }
}

fn market(id: String, symbol: &Symbol, side: Side, quantity: Decimal, placed_on: Date) -> Order {
    Order {
        id,
        request: OrderRequest {
            client_order_id: String::new(),
            symbol: symbol.clone(),
            side,
            order_type: OrderType::Market,
            quantity,
            limit_price: None,
            time_in_force: TimeInForce::Gtc,
        },
        status: Status::Accepted,
        filled: Decimal::ZERO,
        fills: Vec::new(),
        placed_on,
        created_at_ms: 0,
        signal: None,
        reason_code: None,
        reason: None,
        cancel_requested: false,
    }
}

/// The most a backtest's equity may grow to: a strategy that compounds past it ends the
/// backtest with a 422, before any product of quantities and prices nears a decimal's limit.
pub const MAX_EQUITY: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0); // 1e15

fn outgrown() -> TradingError {
    TradingError::Unprocessable {
        field: "cash".into(),
        message: "the equity grows past 1,000,000,000,000,000: start with less cash, or test a \
                  shorter span"
            .into(),
    }
}

/// Cash plus `holdings` (quantity, price), when it stays within [`MAX_EQUITY`].
fn worth(cash: Decimal, holdings: impl Iterator<Item = (Decimal, Decimal)>) -> Option<Decimal> {
    let mut total = cash;
    for (quantity, price) in holdings {
        total = total.checked_add(quantity.checked_mul(price)?)?;
    }
    (total <= MAX_EQUITY).then_some(total)
}

/// Runs `request` over `bars` (each symbol's, oldest first; bars before `from` warm the
/// strategy up).
pub fn run(request: &Request, bars: &BTreeMap<Symbol, Vec<Bar>>) -> Result<Outcome, TradingError> {
    let exchange = PaperExchange {
        params: request.params,
    };
    let mut series = Vec::new();
    for symbol in &request.symbols {
        let bars = bars
            .get(symbol)
            .map(Vec::as_slice)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| TradingError::invalid("symbols", format!("no bars of {symbol}")))?;
        let closes: Vec<f64> = bars.iter().map(|b| float(b.close)).collect();
        series.push(Series {
            symbol,
            instrument: Instrument::equity(symbol.clone()),
            bars,
            by_date: bars.iter().enumerate().map(|(i, b)| (b.date, i)).collect(),
            holds: request.strategy.holds(&closes),
            position: Decimal::ZERO,
            pending: None,
            orders: 0,
        });
    }
    let mut dates: Vec<Date> = series
        .iter()
        .flat_map(|s| s.by_date.range(request.from..=request.to).map(|(d, _)| *d))
        .collect();
    dates.sort_unstable();
    dates.dedup();
    if dates.is_empty() {
        return Err(TradingError::invalid(
            "from",
            "no session between from and to",
        ));
    }
    let share = Decimal::ONE / Decimal::from(series.len());
    let mut cash = request.cash;
    let mut trades = Vec::new();
    let mut curve = Vec::with_capacity(dates.len());
    for &date in &dates {
        // Orders decided at the last close trade at this open.
        for s in &mut series {
            let (Some(order), Some(&i)) = (s.pending.as_mut(), s.by_date.get(&date)) else {
                continue;
            };
            let funds = Funds {
                cash,
                position: s.position,
            };
            let execution = exchange.execute(order, &s.instrument, &s.bars[i], false, funds);
            if let Some((quantity, price, fee)) = execution.fill {
                let notional = quantity * price;
                cash = match order.request.side {
                    Side::Buy => cash.checked_sub(notional + fee),
                    Side::Sell => cash.checked_add(notional - fee),
                }
                .ok_or_else(outgrown)?;
                match order.request.side {
                    Side::Buy => s.position += quantity,
                    Side::Sell => s.position -= quantity,
                }
                order.filled += quantity;
                order.fills.push(crate::order::Fill {
                    n: u32::try_from(order.fills.len() + 1).unwrap_or(u32::MAX),
                    date,
                    quantity,
                    price,
                    fee,
                });
                trades.push(Trade {
                    date,
                    symbol: s.symbol.clone(),
                    side: order.request.side,
                    quantity,
                    price,
                    fee,
                });
            }
            if order.remaining().is_zero()
                || (order.fills.is_empty()
                    && execution.fill.is_none()
                    && order.request.side == Side::Buy
                    && cash <= Decimal::ZERO)
            {
                s.pending = None;
            }
        }
        // Equity at this close, then the decisions it leads to.
        let equity = worth(
            cash,
            series
                .iter()
                .map(|s| (s.position, s.last_close(date).unwrap_or(Decimal::ZERO))),
        )
        .ok_or_else(outgrown)?;
        curve.push(Point { date, equity });
        for s in &mut series {
            let Some(&i) = s.by_date.get(&date) else {
                continue;
            };
            let close = s.bars[i].close;
            let wants = s.holds[i];
            let pending_side = s.pending.as_ref().map(|o| o.request.side);
            if wants && s.position.is_zero() && pending_side != Some(Side::Buy) {
                let budget = (equity * share).min(cash);
                let per_share = close
                    + bps(
                        close,
                        request.params.slippage_bps + request.params.fee_bps + 10,
                    );
                let quantity = to_step(budget / per_share, s.instrument.lot_size, Round::Down);
                s.pending = (quantity > Decimal::ZERO).then(|| {
                    s.orders += 1;
                    market(
                        format!("bt-{}-{}-{}", request.seed, s.symbol, s.orders),
                        s.symbol,
                        Side::Buy,
                        quantity,
                        date,
                    )
                });
            } else if !wants && s.position > Decimal::ZERO && pending_side != Some(Side::Sell) {
                s.orders += 1;
                s.pending = Some(market(
                    format!("bt-{}-{}-{}", request.seed, s.symbol, s.orders),
                    s.symbol,
                    Side::Sell,
                    s.position,
                    date,
                ));
            } else if !wants && pending_side == Some(Side::Buy) {
                s.pending = None;
            }
        }
    }
    let strategy = summarize(request.cash, curve);
    let buy_and_hold = buy_and_hold(request, &series, &dates, &exchange)?;
    Ok(Outcome {
        strategy,
        buy_and_hold,
        trades,
    })
}

/// Buys each symbol's share at the first session it trades in and holds it.
fn buy_and_hold(
    request: &Request,
    series: &[Series<'_>],
    dates: &[Date],
    exchange: &PaperExchange,
) -> Result<Summary, TradingError> {
    let share = request.cash / Decimal::from(series.len());
    let mut cash = request.cash;
    let mut held: Vec<Decimal> = vec![Decimal::ZERO; series.len()];
    let mut bought = vec![false; series.len()];
    let mut curve = Vec::with_capacity(dates.len());
    for &date in dates {
        for (k, s) in series.iter().enumerate() {
            if bought[k] {
                continue;
            }
            let Some(&i) = s.by_date.get(&date) else {
                continue;
            };
            let bar = &s.bars[i];
            let per_share = bar.open
                + bps(
                    bar.open,
                    request.params.slippage_bps + request.params.fee_bps + 10,
                );
            let quantity = to_step(
                share.min(cash) / per_share,
                s.instrument.lot_size,
                Round::Down,
            );
            let order = market(
                format!("bh-{}-{}", request.seed, s.symbol),
                s.symbol,
                Side::Buy,
                quantity,
                date,
            );
            let mut plain = *exchange;
            plain.params.partial_fill_percent = 0;
            let funds = Funds {
                cash,
                position: Decimal::ZERO,
            };
            if let Some((quantity, price, fee)) =
                plain.execute(&order, &s.instrument, bar, false, funds).fill
            {
                cash -= quantity * price + fee;
                held[k] = quantity;
            }
            bought[k] = true;
        }
        let equity = worth(
            cash,
            series
                .iter()
                .zip(&held)
                .map(|(s, q)| (*q, s.last_close(date).unwrap_or(Decimal::ZERO))),
        )
        .ok_or_else(outgrown)?;
        curve.push(Point { date, equity });
    }
    Ok(summarize(request.cash, curve))
}

/// The equity curves of a backtest as an SVG chart: the strategy's and buy-and-hold's,
/// with the first and last dates and the lowest and highest equity marked.
///
/// Written out rather than drawn with a plotting crate: two polylines, four labels and a
/// legend are a page of text, where a plotting crate would bring font rasterization into a
/// Lambda that never needs it (SVG text is drawn by the viewer).
pub fn chart(title: &str, outcome: &Outcome) -> String {
    const WIDTH: f64 = 800.0;
    const HEIGHT: f64 = 420.0;
    const LEFT: f64 = 80.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 50.0;
    let curves = [&outcome.strategy.equity, &outcome.buy_and_hold.equity];
    let values = curves
        .iter()
        .flat_map(|c| c.iter().map(|p| float(p.equity)));
    let (low, high) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (low, high) = if low < high {
        (low, high)
    } else {
        (low - 1.0, low + 1.0)
    };
    let points = outcome.strategy.equity.len().max(1);
    let x = |i: usize| LEFT + (WIDTH - LEFT - RIGHT) * (i as f64) / ((points.max(2) - 1) as f64);
    let y = |v: f64| TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - (v - low) / (high - low));
    let line = |curve: &Vec<Point>| {
        curve
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(float(p.equity))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let first = outcome
        .strategy
        .equity
        .first()
        .map(|p| p.date.to_string())
        .unwrap_or_default();
    let last = outcome
        .strategy
        .equity
        .last()
        .map(|p| p.date.to_string())
        .unwrap_or_default();
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{LEFT}" y="22" font-size="15">{title}</text>
<line x1="{LEFT}" y1="{bottom:.1}" x2="{right:.1}" y2="{bottom:.1}" stroke="#888888"/>
<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom:.1}" stroke="#888888"/>
<text x="{label_x:.1}" y="{top_label:.1}" text-anchor="end">{high:.0}</text>
<text x="{label_x:.1}" y="{bottom:.1}" text-anchor="end">{low:.0}</text>
<text x="{LEFT}" y="{date_y:.1}">{first}</text>
<text x="{right:.1}" y="{date_y:.1}" text-anchor="end">{last}</text>
<polyline fill="none" stroke="#999999" stroke-width="1.5" points="{hold}"/>
<polyline fill="none" stroke="#1f6feb" stroke-width="1.5" points="{strategy}"/>
<rect x="{legend_x:.1}" y="30" width="12" height="3" fill="#1f6feb"/><text x="{legend_text:.1}" y="35">strategy {strategy_return:+.1}%</text>
<rect x="{legend_x:.1}" y="46" width="12" height="3" fill="#999999"/><text x="{legend_text:.1}" y="51">buy and hold {hold_return:+.1}%</text>
</svg>
"##,
        title = escape(title),
        bottom = HEIGHT - BOTTOM,
        right = WIDTH - RIGHT,
        label_x = LEFT - 6.0,
        top_label = TOP + 4.0,
        date_y = HEIGHT - BOTTOM + 18.0,
        hold = line(&outcome.buy_and_hold.equity),
        strategy = line(&outcome.strategy.equity),
        legend_x = WIDTH - RIGHT - 190.0,
        legend_text = WIDTH - RIGHT - 172.0,
        strategy_return = outcome.strategy.total_return * 100.0,
        hold_return = outcome.buy_and_hold.total_return * 100.0,
    )
}
