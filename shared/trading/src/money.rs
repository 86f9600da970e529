//! Amounts of money and quantities: [`Decimal`], exact to 28 digits, from the API to the
//! store. Floating point appears only in statistics (returns, Sharpe ratios), never in a
//! balance.

pub use rust_decimal::Decimal;
use rust_decimal::RoundingStrategy;

/// Decimal places an amount or quantity may have on the wire.
pub const MAX_SCALE: u32 = 8;

/// Whole digits an amount or quantity may have on the wire (so it is below 10^12).
pub const MAX_WHOLE_DIGITS: usize = 12;

/// The wire form of an amount or quantity, as [`parse_positive`] reads it: a positive
/// decimal string, at most 12 whole digits with no leading zero (or a single `0`), and at
/// most 8 places, at least one digit not zero.
pub const AMOUNT_PATTERN: &str = concat!(
    r"^(?:[1-9][0-9]{0,11}(?:\.[0-9]{1,8})?",
    r"|0\.(?:[1-9][0-9]{0,7}|0[1-9][0-9]{0,6}|00[1-9][0-9]{0,5}|000[1-9][0-9]{0,4}",
    r"|0000[1-9][0-9]{0,3}|00000[1-9][0-9]{0,2}|000000[1-9][0-9]?|0000000[1-9]))$"
);

/// Which way to round to a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Toward negative infinity.
    Down,
    /// Toward positive infinity.
    Up,
    /// To the nearest, halves away from zero.
    Nearest,
}

/// `value` rounded to a multiple of `step` (a positive step; `value` itself otherwise).
pub fn to_step(value: Decimal, step: Decimal, round: Round) -> Decimal {
    if step <= Decimal::ZERO {
        return value;
    }
    let units = value / step;
    let units = match round {
        Round::Down => units.floor(),
        Round::Up => units.ceil(),
        Round::Nearest => units.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero),
    };
    (units * step).normalize()
}

/// Whether `value` is a whole multiple of `step`.
pub fn is_multiple(value: Decimal, step: Decimal) -> bool {
    step > Decimal::ZERO && (value % step).is_zero()
}

/// `bps` basis points of `value`.
pub fn bps(value: Decimal, bps: u32) -> Decimal {
    // The rate first: exact, and never larger than the value it scales down.
    value * (Decimal::from(bps) / Decimal::from(10_000))
}

/// Cents (rounded up) of a dollar amount, for counters that hold whole numbers.
pub fn cents(amount: Decimal) -> u64 {
    let cents = (amount * Decimal::ONE_HUNDRED).ceil();
    u64::try_from(cents).unwrap_or(u64::MAX)
}

/// A dollar amount rounded to the cent, halves away from zero.
pub fn to_cent(amount: Decimal) -> Decimal {
    amount
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

/// Parses an amount or quantity as the API writes them ([`AMOUNT_PATTERN`]); `None`
/// otherwise.
pub fn parse_positive(text: &str) -> Option<Decimal> {
    let (whole, places) = match text.split_once('.') {
        Some((whole, places)) => (whole, Some(places)),
        None => (text, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let whole_ok = digits(whole)
        && whole.len() <= MAX_WHOLE_DIGITS
        && (whole == "0" || !whole.starts_with('0'));
    let places_ok = places.is_none_or(|p| digits(p) && p.len() <= MAX_SCALE as usize);
    if !whole_ok || !places_ok {
        return None;
    }
    let value: Decimal = text.parse().ok()?;
    (value > Decimal::ZERO).then(|| value.normalize())
}

/// `value` as a float, for statistics only.
pub fn float(value: Decimal) -> f64 {
    use rust_decimal::prelude::ToPrimitive;
    value.to_f64().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().expect("decimal")
    }

    #[test]
    fn values_round_to_their_step_each_way() {
        assert_eq!(to_step(d("101.237"), d("0.01"), Round::Down), d("101.23"));
        assert_eq!(to_step(d("101.231"), d("0.01"), Round::Up), d("101.24"));
        assert_eq!(
            to_step(d("101.235"), d("0.01"), Round::Nearest),
            d("101.24")
        );
        assert_eq!(to_step(d("17"), d("5"), Round::Down), d("15"));
        assert!(is_multiple(d("15"), d("5")));
        assert!(!is_multiple(d("15.5"), d("1")));
    }

    #[test]
    fn the_wire_form_is_a_plain_positive_decimal() {
        assert_eq!(parse_positive("100.25"), Some(d("100.25")));
        assert_eq!(parse_positive("0.00000001"), Some(d("0.00000001")));
        assert_eq!(
            parse_positive("999999999999.99999999"),
            Some(d("999999999999.99999999"))
        );
        for refused in [
            "1e3",
            "-1",
            "+1",
            "0",
            "0.0",
            "00.5",
            "007",
            "1.",
            ".5",
            "1.2.3",
            "",
            " 1",
            "0.000000001",
            "1000000000000",
            "1.123456789",
        ] {
            assert_eq!(parse_positive(refused), None, "{refused:?}");
        }
    }

    proptest::proptest! {
        /// The pattern the API documents accepts exactly what the parser does.
        #[test]
        fn the_documented_pattern_accepts_what_the_parser_accepts(text in "[0-9.]{0,24}|[0-9]{1,13}(\\.[0-9]{0,10})?") {
            let pattern = regex::Regex::new(AMOUNT_PATTERN).expect("pattern");
            proptest::prop_assert_eq!(pattern.is_match(&text), parse_positive(&text).is_some(), "{:?}", text);
        }
    }

    #[test]
    fn basis_points_and_cents_are_exact() {
        assert_eq!(bps(d("10000"), 5), d("5"));
        assert_eq!(cents(d("12.341")), 1235);
        assert_eq!(to_cent(d("0.125")), d("0.13"));
    }
}
