//! Schedule expressions as AWS writes them, evaluated as EventBridge Scheduler evaluates
//! them, so a schedule fires at the same moments in `jarvis-local` as on AWS.
//!
//! - `cron(minutes hours day-of-month month day-of-week year)` ([`cron`]);
//! - `rate(value unit)`: `minute`, `hour` or `day` for 1, `minutes`, `hours` or `days` for
//!   more; a day is 24 hours whatever daylight saving does, and the first run is at the
//!   schedule's start;
//! - `at(yyyy-mm-ddThh:mm:ss)`: once.
//!
//! Each is read in an IANA time zone (UTC by default). When the clocks go forward, a cron
//! time that does not exist that day is skipped; when they go back, a time that happens
//! twice runs once, at the first. A one-time schedule in the gap runs at the same wall-clock
//! time after it (the time zone database's usual reading). Cron crates parse the Unix or
//! Quartz dialects; none reads this one exactly (day-of-week 1 = Sunday, `?`, `W`, `L`,
//! `#`, the year field, singular and plural rates), hence this crate, on `jiff`'s calendar
//! and time zone database (bundled, so a Lambda needs none installed).

pub mod cron;

use std::fmt;
use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

pub use cron::Cron;

/// Why an expression or time zone was refused; the message names the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The expression is malformed.
    #[error("{0}")]
    Expression(String),
    /// The time zone is not an IANA name this build knows.
    #[error("{0:?} is not an IANA time zone, such as Europe/Paris or UTC")]
    TimeZone(String),
}

/// A rate's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// 60 seconds.
    Minute,
    /// 3,600 seconds.
    Hour,
    /// 86,400 seconds.
    Day,
}

impl Unit {
    fn seconds(self) -> u64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }
}

/// What a schedule expression says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expression {
    /// `cron(…)`.
    Cron(Cron),
    /// `rate(value unit)`.
    Rate {
        /// How many units.
        value: u32,
        /// Which.
        unit: Unit,
    },
    /// `at(…)`: a wall-clock time in the schedule's time zone.
    At(DateTime),
}

/// The most units a rate may count (AWS takes a positive 32-bit number; a year of minutes
/// is far beyond any use).
pub const MAX_RATE: u32 = 1_000_000;

impl Expression {
    /// Parses `cron(…)`, `rate(…)` or `at(…)`, exactly as AWS spells them.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let text = text.trim();
        let inner = |prefix: &str| {
            text.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(')'))
        };
        if let Some(fields) = inner("cron(") {
            return Cron::parse(fields).map(Self::Cron);
        }
        if let Some(rate) = inner("rate(") {
            return Self::rate(rate);
        }
        if let Some(at) = inner("at(") {
            return Self::at(at);
        }
        Err(ScheduleError::Expression(
            "a schedule is cron(…), rate(…) or at(…)".into(),
        ))
    }

    fn rate(text: &str) -> Result<Self, ScheduleError> {
        let refuse = |why: &str| ScheduleError::Expression(format!("rate: {why}"));
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [value, unit] = parts[..] else {
            return Err(refuse("takes a value and a unit, as in rate(5 minutes)"));
        };
        let value: u32 = value
            .parse()
            .ok()
            .filter(|v| (1..=MAX_RATE).contains(v))
            .ok_or_else(|| refuse(&format!("the value is a whole number from 1 to {MAX_RATE}")))?;
        let (unit, singular) = match unit {
            "minute" => (Unit::Minute, true),
            "minutes" => (Unit::Minute, false),
            "hour" => (Unit::Hour, true),
            "hours" => (Unit::Hour, false),
            "day" => (Unit::Day, true),
            "days" => (Unit::Day, false),
            _ => return Err(refuse("the unit is minute(s), hour(s) or day(s)")),
        };
        if singular != (value == 1) {
            return Err(refuse(
                "the unit is singular for 1 and plural otherwise, as in rate(1 hour), rate(2 hours)",
            ));
        }
        Ok(Self::Rate { value, unit })
    }

    fn at(text: &str) -> Result<Self, ScheduleError> {
        let refuse = || {
            ScheduleError::Expression(
                "at: a date and time as yyyy-mm-ddThh:mm:ss, as in at(2026-11-20T13:00:00)".into(),
            )
        };
        let bytes = text.as_bytes();
        let shape_ok = bytes.len() == 19
            && bytes.iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'-',
                10 => *b == b'T',
                13 | 16 => *b == b':',
                _ => b.is_ascii_digit(),
            });
        if !shape_ok {
            return Err(refuse());
        }
        let at: DateTime = text.parse().map_err(|_| refuse())?;
        Ok(Self::At(at))
    }
}

/// A schedule expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    expression: Expression,
    zone_name: String,
    zone: TimeZone,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.zone_name == other.zone_name
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}", self.text, self.zone_name)
    }
}

impl Schedule {
    /// `expression` read in `time_zone` (an IANA name).
    pub fn parse(expression: &str, time_zone: &str) -> Result<Self, ScheduleError> {
        let parsed = Expression::parse(expression)?;
        let zone =
            TimeZone::get(time_zone).map_err(|_| ScheduleError::TimeZone(time_zone.to_owned()))?;
        Ok(Self {
            text: expression.trim().to_owned(),
            expression: parsed,
            zone_name: time_zone.to_owned(),
            zone,
        })
    }

    /// `expression` in UTC.
    pub fn utc(expression: &str) -> Result<Self, ScheduleError> {
        Self::parse(expression, "UTC")
    }

    /// The expression as written.
    pub fn expression_text(&self) -> &str {
        &self.text
    }

    /// What the expression says.
    pub fn expression(&self) -> &Expression {
        &self.expression
    }

    /// The time zone's name.
    pub fn time_zone(&self) -> &str {
        &self.zone_name
    }

    /// Whether it fires once at most (`at(…)`).
    pub fn is_one_time(&self) -> bool {
        matches!(self.expression, Expression::At(_))
    }

    /// The interval of a rate.
    pub fn interval(&self) -> Option<Duration> {
        match self.expression {
            Expression::Rate { value, unit } => {
                Some(Duration::from_secs(u64::from(value) * unit.seconds()))
            }
            _ => None,
        }
    }

    /// The first time strictly after `after` that the schedule fires, for a schedule that
    /// began at `start` (a rate fires at `start` and every interval after it; nothing fires
    /// before `start`); `None` when it never fires again.
    pub fn next_after(&self, after: Timestamp, start: Timestamp) -> Option<Timestamp> {
        // Nothing before the start: look from just before it.
        let from = if after < start {
            start.checked_sub(SignedDuration::from_nanos(1)).ok()?
        } else {
            after
        };
        match &self.expression {
            Expression::Rate { .. } => {
                let every = i64::try_from(self.interval()?.as_secs()).ok()?;
                // Exactly, to the nanosecond: a start within a second still runs at itself.
                let since = from.duration_since(start).as_nanos();
                let every_nanos = i128::from(every) * 1_000_000_000;
                // The first k ≥ 0 with start + k·every > from.
                let k = if since < 0 {
                    0
                } else {
                    i64::try_from(since / every_nanos + 1).ok()?
                };
                let at = start
                    .checked_add(SignedDuration::from_secs(k.checked_mul(every)?))
                    .ok()?;
                Some(at)
            }
            Expression::At(at) => {
                let when = self.zone.to_ambiguous_timestamp(*at).compatible().ok()?;
                (when > from).then_some(when)
            }
            Expression::Cron(cron) => {
                let mut civil = self.zone.to_datetime(from);
                loop {
                    civil = cron.next_civil(civil)?;
                    let ambiguous = self.zone.to_ambiguous_timestamp(civil);
                    match ambiguous.offset() {
                        // The clocks skipped this time today.
                        AmbiguousOffset::Gap { .. } => continue,
                        AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => {
                            let when = ambiguous.earlier().ok()?;
                            // A repeated hour's second pass runs nothing again.
                            if when > from {
                                return Some(when);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The times it fires strictly after `after` and at or before `until`, at most `limit`.
    pub fn fires_between(
        &self,
        after: Timestamp,
        until: Timestamp,
        start: Timestamp,
        limit: usize,
    ) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let mut cursor = after;
        while out.len() < limit {
            match self.next_after(cursor, start) {
                Some(next) if next <= until => {
                    out.push(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
