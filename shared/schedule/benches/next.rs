//! What finding a schedule's next time costs: the work a scheduler does per due schedule
//! after running it. `cargo bench -p jarvis-schedule --bench next`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jarvis_schedule::Schedule;
use jiff::Timestamp;

fn next_after(c: &mut Criterion) {
    let start: Timestamp = "2026-01-01T00:00:00Z".parse().expect("timestamp");
    let after: Timestamp = "2026-12-04T10:07:00Z".parse().expect("timestamp");
    let cases = [
        ("every minute", "cron(* * * * ? *)", "UTC"),
        ("every 15 minutes", "cron(0/15 * * * ? *)", "UTC"),
        ("weekdays 18:00", "cron(0 18 ? * MON-FRI *)", "UTC"),
        (
            "daily 02:30 New York",
            "cron(30 2 * * ? *)",
            "America/New_York",
        ),
        (
            "first Monday 09:00 Paris",
            "cron(0 9 ? * 2#1 *)",
            "Europe/Paris",
        ),
        ("last weekday of the month", "cron(0 17 LW * ? *)", "UTC"),
        ("29 February", "cron(0 0 29 2 ? *)", "UTC"),
        ("rate 5 minutes", "rate(5 minutes)", "UTC"),
        ("one time", "at(2027-06-01T09:00:00)", "Europe/Paris"),
    ];
    let mut group = c.benchmark_group("next_after");
    for (name, expression, zone) in cases {
        let schedule = Schedule::parse(expression, zone).expect("valid");
        group.bench_function(name, |b| {
            b.iter(|| black_box(&schedule).next_after(black_box(after), start));
        });
    }
    group.finish();
    c.bench_function("parse cron", |b| {
        b.iter(|| Schedule::parse(black_box("cron(0/5 8-17 ? * MON-FRI *)"), "Europe/Paris"));
    });
}

criterion_group!(benches, next_after);
criterion_main!(benches);
