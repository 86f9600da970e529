//! CRDT benchmarks against the published `crdts` crate, on the same workloads in one run.
//!
//! `cargo bench -p jarvis-crdt --bench crdt` prints criterion's figures for each join and
//! then a summary of ratios (ours / crdts; below 1 is better) and of encoded sizes, with
//! `crdts` states serialised with postcard (the most compact serde format for both).

use std::hint::black_box;
use std::time::{Duration, Instant};

use crdts::{CmRDT, CvRDT};
use criterion::{BatchSize, Criterion, criterion_group};
use jarvis_crdt::{Codec, Crdt, GCounter, OrSet, ReplicaId};

const SET_SIZE: usize = 100_000;
/// 10% of the set changes concurrently: each side removes 2.5% and adds 2.5%.
const CHANGES_PER_SIDE: usize = SET_SIZE / 20;
const COUNTER_REPLICAS: u64 = 64;

fn element(i: usize) -> String {
    format!("element-{i:06}")
}

fn actor(name: &str) -> ReplicaId {
    ReplicaId::from_name(name)
}

/// Two replicas of a 100,000-element set that diverged by 10% concurrent changes.
fn diverged_orsets() -> (OrSet<String>, OrSet<String>) {
    let (a_id, b_id) = (actor("replica-a"), actor("replica-b"));
    let mut a = OrSet::new();
    for i in 0..SET_SIZE {
        a.add(a_id, element(i));
    }
    let mut b = a.clone();
    for i in 0..CHANGES_PER_SIDE {
        a.remove(&element(i * 20));
        a.add(a_id, element(SET_SIZE + i));
        b.remove(&element(i * 20 + 10));
        b.add(b_id, element(2 * SET_SIZE + i));
    }
    (a, b)
}

type Orswot = crdts::Orswot<String, u64>;

fn orswot_add(set: &mut Orswot, actor: u64, member: String) {
    let ctx = set.read_ctx().derive_add_ctx(actor);
    let op = set.add(member, ctx);
    set.apply(op);
}

fn orswot_rm(set: &mut Orswot, member: String) {
    let ctx = set.contains(&member).derive_rm_ctx();
    let op = set.rm(member, ctx);
    set.apply(op);
}

/// The same workload on `crdts::Orswot`.
fn diverged_orswots() -> (Orswot, Orswot) {
    let (a_id, b_id) = (actor("replica-a").as_u64(), actor("replica-b").as_u64());
    let mut a = Orswot::new();
    for i in 0..SET_SIZE {
        orswot_add(&mut a, a_id, element(i));
    }
    let mut b = a.clone();
    for i in 0..CHANGES_PER_SIDE {
        orswot_rm(&mut a, element(i * 20));
        orswot_add(&mut a, a_id, element(SET_SIZE + i));
        orswot_rm(&mut b, element(i * 20 + 10));
        orswot_add(&mut b, b_id, element(2 * SET_SIZE + i));
    }
    (a, b)
}

/// Two 64-replica counters with different counts.
fn counters() -> (GCounter, GCounter) {
    let (mut a, mut b) = (GCounter::new(), GCounter::new());
    for r in 0..COUNTER_REPLICAS {
        let id = actor(&format!("replica-{r}"));
        a.increment(id, 1 + r * 3);
        b.increment(id, 1 + (COUNTER_REPLICAS - r) * 2);
    }
    (a, b)
}

fn crdts_counters() -> (crdts::GCounter<u64>, crdts::GCounter<u64>) {
    let (mut a, mut b) = (crdts::GCounter::new(), crdts::GCounter::new());
    for r in 0..COUNTER_REPLICAS {
        let id = actor(&format!("replica-{r}")).as_u64();
        a.apply(a.inc_many(id, 1 + r * 3));
        b.apply(b.inc_many(id, 1 + (COUNTER_REPLICAS - r) * 2));
    }
    (a, b)
}

fn joins(c: &mut Criterion) {
    let (a, b) = diverged_orsets();
    let (x, y) = diverged_orswots();
    assert_eq!(a.clone().joined(b.clone()).len(), {
        let mut m = x.clone();
        m.merge(y.clone());
        m.read().val.len()
    });
    let mut group = c.benchmark_group("or_set_join_100k_10pct");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("jarvis::OrSet", |bench| {
        bench.iter_batched(
            || (a.clone(), b.clone()),
            |(mut a, b)| {
                a.join(b);
                a
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("crdts::Orswot", |bench| {
        bench.iter_batched(
            || (x.clone(), y.clone()),
            |(mut x, y)| {
                x.merge(y);
                x
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();

    let (a, b) = counters();
    let (x, y) = crdts_counters();
    let mut group = c.benchmark_group("g_counter_join_64_replicas");
    group.bench_function("jarvis::GCounter", |bench| {
        bench.iter_batched(
            || (a.clone(), b.clone()),
            |(mut a, b)| {
                a.join(b);
                a
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("crdts::GCounter", |bench| {
        bench.iter_batched(
            || (x.clone(), y.clone()),
            |(mut x, y)| {
                x.merge(y);
                x
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Median time of `runs` executions of `routine` on fresh inputs from `setup`.
fn median<I, O>(runs: usize, setup: impl Fn() -> I, routine: impl Fn(I) -> O) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let input = setup();
            let started = Instant::now();
            let output = routine(input);
            let elapsed = started.elapsed();
            drop(black_box(output));
            elapsed
        })
        .collect();
    times.sort_unstable();
    times[runs / 2]
}

/// Joins of `batch` counters at once, to time something longer than the clock's grain.
fn counter_batches<T: Clone>(pair: &(T, T), batch: usize) -> Vec<(T, T)> {
    (0..batch).map(|_| pair.clone()).collect()
}

fn summary() {
    println!("\n== Summary (ours / crdts: below 1.0 is better) ==");

    let (a, b) = diverged_orsets();
    let (x, y) = diverged_orswots();
    let ours = median(
        15,
        || (a.clone(), b.clone()),
        |(mut a, b)| {
            a.join(b);
            a
        },
    );
    let theirs = median(
        15,
        || (x.clone(), y.clone()),
        |(mut x, y)| {
            x.merge(y);
            x
        },
    );
    println!(
        "OR-set join, 2 x 100,000 elements, 10% concurrent changes: ours {:.2} ms, crdts::Orswot {:.2} ms, ratio {:.2} ({:.1}x faster)",
        ours.as_secs_f64() * 1e3,
        theirs.as_secs_f64() * 1e3,
        ours.as_secs_f64() / theirs.as_secs_f64(),
        theirs.as_secs_f64() / ours.as_secs_f64(),
    );

    const BATCH: usize = 1_000;
    let pair = counters();
    let crdts_pair = crdts_counters();
    let ours = median(
        31,
        || counter_batches(&pair, BATCH),
        |pairs| {
            pairs
                .into_iter()
                .map(|(a, b)| a.joined(b))
                .collect::<Vec<_>>()
        },
    ) / BATCH as u32;
    let theirs = median(
        31,
        || counter_batches(&crdts_pair, BATCH),
        |pairs| {
            pairs
                .into_iter()
                .map(|(mut x, y)| {
                    x.merge(y);
                    x
                })
                .collect::<Vec<_>>()
        },
    ) / BATCH as u32;
    println!(
        "GCounter join, 64 replicas: ours {:.0} ns, crdts::GCounter {:.0} ns, ratio {:.2} ({:.1}x faster)",
        ours.as_secs_f64() * 1e9,
        theirs.as_secs_f64() * 1e9,
        ours.as_secs_f64() / theirs.as_secs_f64(),
        theirs.as_secs_f64() / ours.as_secs_f64(),
    );

    let merged = a.clone().joined(b.clone());
    let mut merged_orswot = x.clone();
    merged_orswot.merge(y.clone());
    let ours = merged.encode().expect("encode").len();
    let theirs = postcard::to_allocvec(&merged_orswot)
        .expect("postcard")
        .len();
    println!(
        "Encoded OR-set, {} elements: ours (binary codec) {} bytes, crdts::Orswot (postcard) {} bytes, ratio {:.2}",
        merged.len(),
        ours,
        theirs,
        ours as f64 / theirs as f64,
    );
    let ours_json = serde_json::to_vec(&merged).expect("json").len();
    let theirs_json = serde_json::to_vec(&merged_orswot).expect("json").len();
    println!("  (JSON for reference: ours {ours_json} bytes, crdts::Orswot {theirs_json} bytes)");

    let replica = actor("replica-a");
    for k in [10usize, 100, 1_000] {
        let mut state = merged.clone();
        let mut delta = OrSet::new();
        for i in 0..k {
            if i % 2 == 0 {
                delta.join(state.add(replica, element(3 * SET_SIZE + i)));
            } else {
                delta.join(state.remove(&element(i * 7 + 1)));
            }
        }
        let bytes = delta.encode().expect("encode").len();
        println!(
            "Delta of k = {k} changes on the {}-element set: {bytes} bytes ({:.1} bytes per change; full state {ours} bytes)",
            merged.len(),
            bytes as f64 / k as f64,
        );
    }
}

criterion_group!(benches, joins);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
