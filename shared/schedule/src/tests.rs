//! The examples are those of AWS's documentation: the cron examples table and wildcard
//! descriptions of "Cron expressions" (Amazon EventBridge User Guide, "Using cron and rate
//! expressions to schedule rules") and "Schedule types in EventBridge Scheduler" (rate,
//! one-time and cron schedules; time zones; daylight saving time) of the EventBridge
//! Scheduler User Guide. Weekdays are those of the Gregorian calendar: 2026-12-04 is a
//! Friday.

use super::*;
use proptest::prelude::*;

fn ts(text: &str) -> Timestamp {
    text.parse().expect("a timestamp")
}

/// The next `n` firings after `after` (UTC), as wall-clock times of the schedule's zone.
fn fires(expression: &str, zone: &str, after: &str, n: usize) -> Vec<String> {
    let schedule = Schedule::parse(expression, zone).expect(expression);
    let start = ts("2000-01-01T00:00:00Z");
    let mut cursor = ts(after);
    let tz = TimeZone::get(zone).expect("zone");
    let mut out = Vec::new();
    for _ in 0..n {
        let Some(next) = schedule.next_after(cursor, start) else {
            break;
        };
        out.push(
            tz.to_datetime(next)
                .strftime("%Y-%m-%dT%H:%M %a")
                .to_string(),
        );
        cursor = next;
    }
    out
}

fn refused(expression: &str) -> String {
    match Expression::parse(expression) {
        Err(ScheduleError::Expression(why)) => why,
        other => panic!("{expression} was not refused: {other:?}"),
    }
}

#[test]
fn the_documented_cron_examples_fire_when_the_documentation_says() {
    // "Run at 10:00 am (UTC+0) every day"
    assert_eq!(
        fires("cron(0 10 * * ? *)", "UTC", "2026-12-04T10:00:00Z", 2),
        ["2026-12-05T10:00 Sat", "2026-12-06T10:00 Sun"]
    );
    // "Run at 12:15 pm (UTC+0) every day"
    assert_eq!(
        fires("cron(15 12 * * ? *)", "UTC", "2026-12-04T12:00:00Z", 2),
        ["2026-12-04T12:15 Fri", "2026-12-05T12:15 Sat"]
    );
    // "Run at 6:00 pm (UTC+0) every Monday through Friday"
    assert_eq!(
        fires("cron(0 18 ? * MON-FRI *)", "UTC", "2026-12-04T18:00:00Z", 2),
        ["2026-12-07T18:00 Mon", "2026-12-08T18:00 Tue"]
    );
    // "Run at 8:00 am (UTC+0) every 1st day of the month"
    assert_eq!(
        fires("cron(0 8 1 * ? *)", "UTC", "2026-12-04T00:00:00Z", 2),
        ["2027-01-01T08:00 Fri", "2027-02-01T08:00 Mon"]
    );
    // "Run every 15 minutes"
    assert_eq!(
        fires("cron(0/15 * * * ? *)", "UTC", "2026-12-04T10:07:00Z", 4),
        [
            "2026-12-04T10:15 Fri",
            "2026-12-04T10:30 Fri",
            "2026-12-04T10:45 Fri",
            "2026-12-04T11:00 Fri"
        ]
    );
    // "Run every 10 minutes Monday through Friday"
    assert_eq!(
        fires(
            "cron(0/10 * ? * MON-FRI *)",
            "UTC",
            "2026-12-04T23:45:00Z",
            3
        ),
        [
            "2026-12-04T23:50 Fri",
            "2026-12-07T00:00 Mon",
            "2026-12-07T00:10 Mon"
        ]
    );
    // "Run every 5 minutes Monday through Friday between 8:00 am and 5:55 pm (UTC+0)"
    assert_eq!(
        fires(
            "cron(0/5 8-17 ? * MON-FRI *)",
            "UTC",
            "2026-12-04T17:50:00Z",
            2
        ),
        ["2026-12-04T17:55 Fri", "2026-12-07T08:00 Mon"]
    );
    // "Run every 30 minutes Monday through Friday between 10:00 pm on the starting day to
    // 2:00 am on the following day": the hours wrap, and each day is a weekday of its own,
    // so Monday runs from midnight to 2:30 and Saturday runs nothing.
    assert_eq!(
        fires(
            "cron(0/30 20-2 ? * MON-FRI *)",
            "UTC",
            "2026-12-04T23:10:00Z",
            7
        ),
        [
            "2026-12-04T23:30 Fri",
            "2026-12-07T00:00 Mon",
            "2026-12-07T00:30 Mon",
            "2026-12-07T01:00 Mon",
            "2026-12-07T01:30 Mon",
            "2026-12-07T02:00 Mon",
            "2026-12-07T02:30 Mon"
        ]
    );
    assert_eq!(
        fires(
            "cron(0/30 20-2 ? * MON-FRI *)",
            "UTC",
            "2026-12-07T02:30:00Z",
            1
        ),
        ["2026-12-07T20:00 Mon"]
    );
}

#[test]
fn the_documented_wildcards_mean_what_the_documentation_says() {
    // "1/10 … every tenth minute, starting from the first minute of the hour (for example,
    // the 11th, 21st, and 31st minute, and so on)"
    assert_eq!(
        fires("cron(1/10 * * * ? *)", "UTC", "2026-12-04T10:00:00Z", 3),
        [
            "2026-12-04T10:01 Fri",
            "2026-12-04T10:11 Fri",
            "2026-12-04T10:21 Fri"
        ]
    );
    // "JAN,FEB,MAR includes January, February, and March"; names in any case.
    assert_eq!(
        fires(
            "cron(0 0 1 jan,FEB,Mar ? *)",
            "UTC",
            "2026-12-04T00:00:00Z",
            4
        ),
        [
            "2027-01-01T00:00 Fri",
            "2027-02-01T00:00 Mon",
            "2027-03-01T00:00 Mon",
            "2028-01-01T00:00 Sat"
        ]
    );
    // "1-15 includes days 1 through 15 of the specified month"
    assert_eq!(
        fires("cron(0 0 1-15 * ? *)", "UTC", "2026-12-15T00:00:00Z", 1),
        ["2027-01-01T00:00 Fri"]
    );
    // "3W specifies the weekday closest to the third day of the month": a Saturday gives the
    // Friday before, a Sunday the Monday after, a weekday itself.
    assert_eq!(
        fires("cron(0 9 3W * ? *)", "UTC", "2025-12-31T00:00:00Z", 5),
        [
            "2026-01-02T09:00 Fri",
            "2026-02-03T09:00 Tue",
            "2026-03-03T09:00 Tue",
            "2026-04-03T09:00 Fri",
            "2026-05-04T09:00 Mon"
        ]
    );
    // … without leaving the month: 1 August 2026 is a Saturday, 31 May 2026 a Sunday.
    assert_eq!(
        fires("cron(0 9 1W 8 ? 2026)", "UTC", "2026-07-01T00:00:00Z", 1),
        ["2026-08-03T09:00 Mon"]
    );
    assert_eq!(
        fires("cron(0 9 31W 5 ? 2026)", "UTC", "2026-05-01T00:00:00Z", 1),
        ["2026-05-29T09:00 Fri"]
    );
    // "3#2 is the second Tuesday of the month"
    assert_eq!(
        fires("cron(0 9 ? * 3#2 *)", "UTC", "2026-12-01T00:00:00Z", 2),
        ["2026-12-08T09:00 Tue", "2027-01-12T09:00 Tue"]
    );
    // "L … the last day of the month or week": the month's last day, leap years included;
    // Saturday in day-of-week; `6L` the last Friday; `LW` the last weekday.
    assert_eq!(
        fires("cron(0 0 L * ? *)", "UTC", "2028-01-31T00:00:00Z", 2),
        ["2028-02-29T00:00 Tue", "2028-03-31T00:00 Fri"]
    );
    assert_eq!(
        fires("cron(0 0 ? * L *)", "UTC", "2026-12-04T00:00:00Z", 2),
        ["2026-12-05T00:00 Sat", "2026-12-12T00:00 Sat"]
    );
    assert_eq!(
        fires("cron(0 0 ? * 6L *)", "UTC", "2026-12-04T00:00:00Z", 2),
        ["2026-12-25T00:00 Fri", "2027-01-29T00:00 Fri"]
    );
    assert_eq!(
        fires("cron(0 0 LW * ? 2026)", "UTC", "2026-04-30T00:00:00Z", 3),
        [
            "2026-05-29T00:00 Fri",
            "2026-06-30T00:00 Tue",
            "2026-07-31T00:00 Fri"
        ]
    );
    // Day-of-week 1–7 is SUN–SAT; ranges may wrap.
    assert_eq!(
        fires("cron(0 12 ? * 1 *)", "UTC", "2026-12-04T00:00:00Z", 1),
        ["2026-12-06T12:00 Sun"]
    );
    assert_eq!(
        fires("cron(0 12 ? * FRI-MON *)", "UTC", "2026-12-04T12:00:00Z", 3),
        [
            "2026-12-05T12:00 Sat",
            "2026-12-06T12:00 Sun",
            "2026-12-07T12:00 Mon"
        ]
    );
    // The year field; past the last year named, nothing.
    assert_eq!(
        fires(
            "cron(0 0 1 1 ? 2027-2028)",
            "UTC",
            "2026-12-04T00:00:00Z",
            3
        ),
        ["2027-01-01T00:00 Fri", "2028-01-01T00:00 Sat"]
    );
    assert_eq!(
        fires("cron(0 0 1 1 ? 2199)", "UTC", "2199-01-01T00:00:00Z", 1),
        Vec::<String>::new()
    );
    // A date that never comes, never fires.
    assert!(fires("cron(0 0 30 2 ? *)", "UTC", "2026-01-01T00:00:00Z", 1).is_empty());
}

#[test]
fn the_documented_restrictions_are_refused_with_the_field_named() {
    // "If you use '#', you can define only one expression in the day-of-week field."
    assert!(refused("cron(0 0 ? * 3#1,6#3 *)").contains("day-of-week"));
    // "You can't specify the Day-of-month and Day-of-week fields in the same cron
    // expression"; "You can't use * in both".
    assert!(refused("cron(0 10 5 * MON *)").contains('?'));
    assert!(refused("cron(0 10 * * * *)").contains('?'));
    assert!(refused("cron(0 10 ? * ? *)").contains("day-of-month"));
    for (expression, field) in [
        ("cron(60 * * * ? *)", "minutes"),
        ("cron(0 24 * * ? *)", "hours"),
        ("cron(0 0 32 * ? *)", "day-of-month"),
        ("cron(0 0 0 * ? *)", "day-of-month"),
        ("cron(0 0 1 13 ? *)", "month"),
        ("cron(0 0 ? * 8 *)", "day-of-week"),
        ("cron(0 0 ? * 0 *)", "day-of-week"),
        ("cron(0 0 1 * ? 1969)", "year"),
        ("cron(0 0 1 * ? 2200)", "year"),
        ("cron(0 0 1 * ? 2030-2027)", "year"),
        ("cron(0/0 * * * ? *)", "minutes"),
        ("cron(0/61 * * * ? *)", "minutes"),
        ("cron(? * * * ? *)", "minutes"),
        ("cron(0 0 ? * MON/2 *)", "day-of-week"),
        ("cron(0 0 ? * 2#6 *)", "day-of-week"),
        ("cron(0 0 ? * L,2 *)", "day-of-week"),
        ("cron(0 0 L,15 * ? *)", "day-of-month"),
        ("cron(0 0 1#2 * ? *)", "day-of-month"),
        ("cron(0 0 W * ? *)", "day-of-month"),
        ("cron(0 0 1 FOO ? *)", "month"),
        ("cron(0 0 1,,2 * ? *)", "day-of-month"),
    ] {
        let why = refused(expression);
        assert!(why.contains(field), "{expression}: {why}");
    }
    assert!(refused("cron(0 0 * * ?)").contains("6 fields"));
    assert!(refused("cron(0 0 * * ? * *)").contains("6 fields"));
    assert!(refused("crontab(0 0 * * ? *)").contains("cron(…)"));
    assert!(refused("0 0 * * ? *").contains("cron(…)"));
}

#[test]
fn rates_are_singular_for_one_and_plural_otherwise() {
    for good in [
        "rate(1 minute)",
        "rate(5 minutes)",
        "rate(1 hour)",
        "rate(12 hours)",
        "rate(1 day)",
        "rate(7 days)",
    ] {
        assert!(Expression::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(0 minutes)",
        "rate(-5 minutes)",
        "rate(1.5 hours)",
        "rate(2 weeks)",
        "rate(5)",
        "rate(5 minutes now)",
    ] {
        assert!(refused(bad).starts_with("rate:"), "{bad}");
    }
}

#[test]
fn a_rate_fires_at_its_start_and_every_interval_after() {
    let five = Schedule::utc("rate(5 minutes)").expect("valid");
    let start = ts("2026-12-04T12:00:30Z");
    assert_eq!(
        five.next_after(ts("2026-12-04T11:00:00Z"), start),
        Some(start)
    );
    assert_eq!(
        five.next_after(start, start),
        Some(ts("2026-12-04T12:05:30Z"))
    );
    assert_eq!(
        five.next_after(ts("2026-12-04T12:07:00Z"), start),
        Some(ts("2026-12-04T12:10:30Z"))
    );
    assert_eq!(five.interval(), Some(Duration::from_secs(300)));
}

#[test]
fn a_rate_that_starts_within_a_second_runs_at_its_start_to_the_nanosecond() {
    let minute = Schedule::utc("rate(1 minute)").expect("valid");
    let start = ts("2026-12-04T12:00:30.250Z");
    let just_before = start
        .checked_sub(jiff::SignedDuration::from_nanos(1))
        .expect("time");
    assert_eq!(minute.next_after(just_before, start), Some(start));
    assert_eq!(
        minute.next_after(start, start),
        Some(ts("2026-12-04T12:01:30.250Z"))
    );
}

#[test]
fn a_day_of_a_rate_is_24_hours_whatever_the_clocks_do() {
    // "days represents a 24-hour duration": across the spring change in New York, the next
    // run is at 13:00 on the wall clock, 24 hours after 12:00 the day before.
    let daily = Schedule::parse("rate(1 day)", "America/New_York").expect("valid");
    let start = ts("2026-03-07T17:00:00Z"); // 12:00 EST
    let next = daily.next_after(start, start).expect("fires");
    assert_eq!(next, ts("2026-03-08T17:00:00Z"));
    let tz = TimeZone::get("America/New_York").expect("zone");
    assert_eq!(tz.to_datetime(next).hour(), 13);
}

#[test]
fn a_cron_time_the_clocks_skip_is_skipped_and_one_they_repeat_runs_once() {
    // 2026-03-08 02:30 does not happen in New York; 2026-11-01 01:30 happens twice.
    assert_eq!(
        fires(
            "cron(30 2 * * ? *)",
            "America/New_York",
            "2026-03-07T08:00:00Z",
            2
        ),
        ["2026-03-09T02:30 Mon", "2026-03-10T02:30 Tue"]
    );
    let daily = Schedule::parse("cron(30 1 * * ? *)", "America/New_York").expect("valid");
    let start = ts("2026-01-01T00:00:00Z");
    let first = daily
        .next_after(ts("2026-10-31T12:00:00Z"), start)
        .expect("fires");
    assert_eq!(
        first,
        ts("2026-11-01T05:30:00Z"),
        "01:30 EDT, the first pass"
    );
    let second = daily.next_after(first, start).expect("fires");
    assert_eq!(
        second,
        ts("2026-11-02T06:30:00Z"),
        "not 01:30 EST the same night"
    );
    // Every minute through the repeated hour: its second pass runs nothing again.
    let minutely = Schedule::parse("cron(* * * * ? *)", "America/New_York").expect("valid");
    assert_eq!(
        minutely.next_after(ts("2026-11-01T05:59:00Z"), start),
        Some(ts("2026-11-01T07:00:00Z"))
    );
}

#[test]
fn a_one_time_schedule_fires_once_at_its_wall_clock_time() {
    // The Scheduler guide's one-time example, read in Paris (UTC+1 in November).
    let once = Schedule::parse("at(2026-11-20T13:00:00)", "Europe/Paris").expect("valid");
    assert!(once.is_one_time());
    let start = ts("2026-01-01T00:00:00Z");
    let at = ts("2026-11-20T12:00:00Z");
    assert_eq!(once.next_after(ts("2026-11-20T11:59:59Z"), start), Some(at));
    assert_eq!(once.next_after(at, start), None);
    // Created after its time, it never fires.
    assert_eq!(once.next_after(start, ts("2026-11-21T00:00:00Z")), None);
    for bad in [
        "at(2026-11-20 13:00:00)",
        "at(2026-11-20T13:00)",
        "at(2026-11-20T13:00:00Z)",
        "at(2026-11-20T13:00:00.5)",
        "at(2026-02-30T10:00:00)",
        "at(2026-11-20T25:00:00)",
    ] {
        assert!(refused(bad).starts_with("at:"), "{bad}");
    }
}

#[test]
fn the_time_zone_is_an_iana_name() {
    assert!(Schedule::parse("rate(1 hour)", "Europe/Paris").is_ok());
    assert_eq!(
        Schedule::parse("rate(1 hour)", "Mars/Olympus"),
        Err(ScheduleError::TimeZone("Mars/Olympus".into()))
    );
    // The same cron in two zones fires at different instants.
    let start = ts("2026-01-01T00:00:00Z");
    let after = ts("2026-12-04T00:00:00Z");
    let paris = Schedule::parse("cron(0 9 * * ? *)", "Europe/Paris").expect("valid");
    let tokyo = Schedule::parse("cron(0 9 * * ? *)", "Asia/Tokyo").expect("valid");
    assert_eq!(
        paris.next_after(after, start),
        Some(ts("2026-12-04T08:00:00Z"))
    );
    assert_eq!(
        tokyo.next_after(after, start),
        Some(ts("2026-12-05T00:00:00Z"))
    );
}

#[test]
fn nothing_fires_before_the_schedule_starts() {
    let minutely = Schedule::utc("cron(* * * * ? *)").expect("valid");
    let start = ts("2026-12-04T12:00:30Z");
    assert_eq!(
        minutely.next_after(ts("2026-12-01T00:00:00Z"), start),
        Some(ts("2026-12-04T12:01:00Z"))
    );
    assert_eq!(
        minutely
            .fires_between(start, ts("2026-12-04T12:05:00Z"), start, 10)
            .len(),
        5
    );
}

fn field(min: u16, max: u16) -> impl Strategy<Value = String> {
    prop_oneof![
        listed(min, max),
        (min..=max, 1..=max.max(1)).prop_map(|(a, s)| format!("{a}/{s}")),
        (min..=max, min..=max, 2..=max.max(2)).prop_map(|(a, b, s)| format!("{a}-{b}/{s}")),
    ]
}

/// Values without steps (day-of-week takes none).
fn listed(min: u16, max: u16) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        (min..=max).prop_map(|v| v.to_string()),
        (min..=max, min..=max).prop_map(|(a, b)| format!("{a}-{b}")),
        (min..=max, min..=max).prop_map(|(a, b)| format!("{a},{b}")),
    ]
}

fn days() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        field(1, 31).prop_map(|d| (d, "?".to_owned())),
        Just(("L".to_owned(), "?".to_owned())),
        Just(("LW".to_owned(), "?".to_owned())),
        (1u16..=31).prop_map(|d| (format!("{d}W"), "?".to_owned())),
        listed(1, 7).prop_map(|w| ("?".to_owned(), w)),
        (1u16..=7).prop_map(|w| ("?".to_owned(), format!("{w}L"))),
        (1u16..=7, 1u16..=5).prop_map(|(w, n)| ("?".to_owned(), format!("{w}#{n}"))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The search skips whole years, months, days and hours at a time; stepping a minute
    /// at a time must find exactly the same firings.
    #[test]
    fn skipping_ahead_never_misses_or_invents_a_firing(
        minutes in field(0, 59),
        hours in field(0, 23),
        (dom, dow) in days(),
        months in field(1, 12),
        from_day in 0i64..3_000,
    ) {
        let text = format!("cron({minutes} {hours} {dom} {months} {dow} *)");
        let schedule = Schedule::utc(&text).expect("generated expressions are valid");
        let start = ts("2020-01-01T00:00:00Z");
        let from = start.checked_add(SignedDuration::from_hours(24 * from_day)).expect("in range");
        let until = from.checked_add(SignedDuration::from_hours(24 * 2)).expect("in range");
        let fast = schedule.fires_between(from, until, start, 10_000);
        let mut slow = Vec::new();
        let mut minute = from.checked_add(SignedDuration::from_secs(60)).expect("in range");
        while minute <= until {
            let just_before = minute.checked_sub(SignedDuration::from_secs(60)).expect("in range");
            if schedule.next_after(just_before, start) == Some(minute) {
                slow.push(minute);
            }
            minute = minute.checked_add(SignedDuration::from_secs(60)).expect("in range");
        }
        prop_assert_eq!(fast, slow, "{}", text);
    }
}
