//! `cron(minutes hours day-of-month month day-of-week year)` as AWS writes it.
//!
//! | field | values | wildcards |
//! |---|---|---|
//! | minutes | 0–59 | `, - * /` |
//! | hours | 0–23 | `, - * /` |
//! | day-of-month | 1–31 | `, - * ? / L W` |
//! | month | 1–12 or `JAN`–`DEC` | `, - * /` |
//! | day-of-week | 1–7 or `SUN`–`SAT` (1 = Sunday) | `, - * ? L #` |
//! | year | 1970–2199 | `, - * /` |
//!
//! One of the two day fields is `?` and the other is not. `L` alone is the last day of the
//! month (or, in day-of-week, Saturday); `nL` in day-of-week is the month's last weekday `n`;
//! `LW` is the month's last weekday (Monday to Friday), `nW` the weekday nearest day `n`
//! without leaving the month; `n#k` the `k`-th weekday `n` of the month, alone in its field.
//! A range may wrap (`20-2` in hours is 20:00 to 02:59; `FRI-MON`); a step counts from the
//! start of its range (`1/10` is minutes 1, 11, 21 …).

use jiff::civil::{Date, DateTime};

use crate::ScheduleError;

/// The first and last year a cron expression may name.
pub const YEARS: (u16, u16) = (1970, 2199);

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A set of a field's values, `base` and up (at most 256 of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Set {
    base: u16,
    bits: [u64; 4],
}

impl Set {
    fn empty(base: u16) -> Self {
        Self { base, bits: [0; 4] }
    }

    fn insert(&mut self, value: u16) {
        let i = usize::from(value - self.base);
        self.bits[i / 64] |= 1 << (i % 64);
    }

    fn contains(&self, value: u16) -> bool {
        let Some(i) = value.checked_sub(self.base).map(usize::from) else {
            return false;
        };
        i < 256 && self.bits[i / 64] & (1 << (i % 64)) != 0
    }
}

/// What the two day fields say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Days {
    /// Days of the month (day-of-week is `?`).
    OfMonth(Set),
    /// `L`: the last day of the month.
    LastOfMonth,
    /// `LW`: the month's last day from Monday to Friday.
    LastWeekdayOfMonth,
    /// `nW`: the day from Monday to Friday nearest day `n`, within the month.
    NearestWeekday(u8),
    /// Days of the week, 1 = Sunday (day-of-month is `?`).
    OfWeek(Set),
    /// `nL`: the month's last weekday `n`.
    LastOfWeek(u8),
    /// `n#k`: the month's `k`-th weekday `n`.
    Nth(u8, u8),
}

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Set,
    hours: Set,
    days: Days,
    months: Set,
    years: Set,
}

/// One field's rules.
struct Field {
    name: &'static str,
    min: u16,
    max: u16,
    names: &'static [&'static str],
    steps: bool,
    wraps: bool,
}

const MINUTES: Field = Field {
    name: "minutes",
    min: 0,
    max: 59,
    names: &[],
    steps: true,
    wraps: true,
};
const HOURS: Field = Field {
    name: "hours",
    min: 0,
    max: 23,
    names: &[],
    steps: true,
    wraps: true,
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    steps: true,
    wraps: true,
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
    steps: true,
    wraps: true,
};
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 1,
    max: 7,
    names: &WEEKDAYS,
    steps: false,
    wraps: true,
};
const YEAR: Field = Field {
    name: "year",
    min: YEARS.0,
    max: YEARS.1,
    names: &[],
    steps: true,
    wraps: false,
};

fn invalid(field: &Field, why: impl std::fmt::Display) -> ScheduleError {
    ScheduleError::Expression(format!("cron {}: {why}", field.name))
}

impl Field {
    fn value(&self, text: &str) -> Result<u16, ScheduleError> {
        let upper = text.to_ascii_uppercase();
        let value = match self.names.iter().position(|n| *n == upper) {
            Some(i) => self.min + i as u16,
            None => text.parse::<u16>().map_err(|_| {
                invalid(self, format_args!("{text:?} is not a value of this field"))
            })?,
        };
        if !(self.min..=self.max).contains(&value) {
            return Err(invalid(
                self,
                format_args!("{value} is outside {}–{}", self.min, self.max),
            ));
        }
        Ok(value)
    }

    /// The values of a list of `*`, `a`, `a-b`, each with an optional `/step`.
    fn set(&self, text: &str) -> Result<Set, ScheduleError> {
        let mut set = Set::empty(self.min);
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some(_) if !self.steps => {
                    return Err(invalid(self, "`/` is not allowed in this field"));
                }
                Some((range, step)) => {
                    let step: u16 = step
                        .parse()
                        .map_err(|_| invalid(self, format_args!("{step:?} is not a step")))?;
                    if step == 0 || step > self.max {
                        return Err(invalid(
                            self,
                            format_args!("a step is 1 to {}, not {step}", self.max),
                        ));
                    }
                    (range, step)
                }
                None => (item, 1),
            };
            let (first, last) = match range {
                "*" => (self.min, self.max),
                "" => return Err(invalid(self, "an empty value")),
                _ => match range.split_once('-') {
                    Some((a, b)) => (self.value(a)?, self.value(b)?),
                    // `a/step` runs from `a` to the end of the field.
                    None if item.contains('/') => (self.value(range)?, self.max),
                    None => {
                        let v = self.value(range)?;
                        (v, v)
                    }
                },
            };
            if first > last && !self.wraps {
                return Err(invalid(self, format_args!("{first}-{last} runs backwards")));
            }
            let span = self.max - self.min + 1;
            let length = (last + span - first) % span + 1;
            let mut offset = 0;
            while offset < length {
                let value = self.min + (first - self.min + offset) % span;
                set.insert(value);
                offset += step;
            }
        }
        Ok(set)
    }
}

fn weekday_number(text: &str) -> Result<u8, ScheduleError> {
    DAY_OF_WEEK.value(text).map(|v| v as u8)
}

impl Cron {
    /// Parses the six fields inside `cron(…)`.
    pub fn parse(fields: &str) -> Result<Self, ScheduleError> {
        let parts: Vec<&str> = fields.split_whitespace().collect();
        let [minutes, hours, dom, month, dow, year] = parts[..] else {
            return Err(ScheduleError::Expression(format!(
                "cron takes 6 fields (minutes hours day-of-month month day-of-week year), not {}",
                parts.len()
            )));
        };
        let days = match (dom, dow) {
            ("?", "?") => {
                return Err(ScheduleError::Expression(
                    "cron: one of day-of-month and day-of-week must be a value or `*`".into(),
                ));
            }
            ("?", dow) => Self::days_of_week(dow)?,
            (dom, "?") => Self::days_of_month(dom)?,
            _ => {
                return Err(ScheduleError::Expression(
                    "cron: day-of-month and day-of-week cannot both be given; one must be `?`"
                        .into(),
                ));
            }
        };
        for (field, text) in [
            (&MINUTES, minutes),
            (&HOURS, hours),
            (&MONTH, month),
            (&YEAR, year),
        ] {
            if text.contains('?') {
                return Err(invalid(field, "`?` is only for the day fields"));
            }
        }
        Ok(Self {
            minutes: MINUTES.set(minutes)?,
            hours: HOURS.set(hours)?,
            days,
            months: MONTH.set(month)?,
            years: YEAR.set(year)?,
        })
    }

    fn days_of_month(text: &str) -> Result<Days, ScheduleError> {
        match text.to_ascii_uppercase().as_str() {
            "L" => return Ok(Days::LastOfMonth),
            "LW" => return Ok(Days::LastWeekdayOfMonth),
            upper if upper.ends_with('W') => {
                let day = DAY_OF_MONTH.value(&upper[..upper.len() - 1]).map_err(|_| {
                    invalid(
                        &DAY_OF_MONTH,
                        "`W` follows one day of the month, as in `15W`",
                    )
                })?;
                return Ok(Days::NearestWeekday(day as u8));
            }
            upper if upper.contains('L') || upper.contains('W') || upper.contains('#') => {
                return Err(invalid(
                    &DAY_OF_MONTH,
                    "`L`, `LW` and `nW` stand alone; `#` is for day-of-week",
                ));
            }
            _ => {}
        }
        DAY_OF_MONTH.set(text).map(Days::OfMonth)
    }

    fn days_of_week(text: &str) -> Result<Days, ScheduleError> {
        let upper = text.to_ascii_uppercase();
        if let Some((day, nth)) = upper.split_once('#') {
            if upper.contains(',') {
                return Err(invalid(
                    &DAY_OF_WEEK,
                    "`#` allows one expression in the field",
                ));
            }
            let day = weekday_number(day)?;
            let nth: u8 = nth
                .parse()
                .ok()
                .filter(|n| (1..=5).contains(n))
                .ok_or_else(|| invalid(&DAY_OF_WEEK, "`#` takes an occurrence from 1 to 5"))?;
            return Ok(Days::Nth(day, nth));
        }
        if upper == "L" {
            let mut saturday = Set::empty(1);
            saturday.insert(7);
            return Ok(Days::OfWeek(saturday));
        }
        if let Some(day) = upper.strip_suffix('L') {
            if upper.contains(',') || upper.contains('-') {
                return Err(invalid(&DAY_OF_WEEK, "`nL` stands alone"));
            }
            return Ok(Days::LastOfWeek(weekday_number(day)?));
        }
        if upper.contains('L') {
            return Err(invalid(
                &DAY_OF_WEEK,
                "`L` stands alone or follows one weekday",
            ));
        }
        DAY_OF_WEEK.set(text).map(Days::OfWeek)
    }

    fn day_matches(&self, date: Date) -> bool {
        let (day, last) = (date.day() as u8, date.days_in_month() as u8);
        let weekday = date.weekday().to_sunday_one_offset() as u8;
        let is_weekday = (2..=6).contains(&weekday);
        match self.days {
            Days::OfMonth(set) => set.contains(u16::from(day)),
            Days::LastOfMonth => day == last,
            Days::LastWeekdayOfMonth => {
                is_weekday && (day == last || (weekday == 6 && last - day <= 2))
            }
            Days::NearestWeekday(target) => {
                if target > last {
                    return false;
                }
                let nearest = match date.with().day(target as i8).build() {
                    Ok(t) => nearest_weekday(t),
                    Err(_) => return false,
                };
                day == nearest
            }
            Days::OfWeek(set) => set.contains(u16::from(weekday)),
            Days::LastOfWeek(wanted) => weekday == wanted && day + 7 > last,
            Days::Nth(wanted, nth) => weekday == wanted && (day - 1) / 7 + 1 == nth,
        }
    }

    /// The first minute strictly after `after` (civil time) that the expression names.
    pub fn next_civil(&self, after: DateTime) -> Option<DateTime> {
        let (first_year, last_year) = (i16::try_from(YEARS.0).ok()?, i16::try_from(YEARS.1).ok()?);
        let (mut y, mut mo, mut d, mut h, mut mi) = if after.year() < first_year {
            (first_year, 1i8, 1i8, 0i8, 0i8)
        } else {
            (
                after.year(),
                after.month(),
                after.day(),
                after.hour(),
                after.minute() + 1,
            )
        };
        loop {
            // Carry what overflowed.
            if mi > 59 {
                mi = 0;
                h += 1;
            }
            if h > 23 {
                h = 0;
                d += 1;
            }
            if mo > 12 {
                mo = 1;
                y += 1;
            }
            if y > last_year {
                return None;
            }
            let days_in_month = Date::new(y, mo, 1).ok()?.days_in_month();
            if d > days_in_month {
                (d, h, mi) = (1, 0, 0);
                mo += 1;
                continue;
            }
            if !self.years.contains(y as u16) {
                (y, mo, d, h, mi) = (y + 1, 1, 1, 0, 0);
                continue;
            }
            if !self.months.contains(mo as u16) {
                (mo, d, h, mi) = (mo + 1, 1, 0, 0);
                continue;
            }
            let date = Date::new(y, mo, d).ok()?;
            if !self.day_matches(date) {
                (d, h, mi) = (d + 1, 0, 0);
                continue;
            }
            if !self.hours.contains(h as u16) {
                (h, mi) = (h + 1, 0);
                continue;
            }
            if !self.minutes.contains(mi as u16) {
                mi += 1;
                continue;
            }
            return Some(date.at(h, mi, 0, 0));
        }
    }
}

/// The day from Monday to Friday nearest `date`, without leaving its month.
fn nearest_weekday(date: Date) -> u8 {
    let (day, last) = (date.day() as u8, date.days_in_month() as u8);
    match date.weekday().to_sunday_one_offset() {
        // Saturday: the Friday before, or the Monday after when that is another month.
        7 if day > 1 => day - 1,
        7 => day + 2,
        // Sunday: the Monday after, or the Friday before when that is another month.
        1 if day < last => day + 1,
        1 => day - 2,
        _ => day,
    }
}
