//! Token budgets on both store backends: concurrent reservations spend exactly the budget,
//! settling gives back what a call did not use, a refusal holds nothing, and two deployments
//! partitioned from each other never spend more than the budget together.

use std::sync::Arc;

use jarvis_ai::quota::{self, Budget, Escrow, Period, QuotaError};
use jarvis_crdt::{BoundedCounter, ReplicaId};
use jarvis_store::{Key, Store};
use jarvis_tests::backends::{self, Backend};

const NOW: i64 = 1_795_348_800; // 2026-11-22T12:00:00Z

fn escrow(name: &str, share: f64) -> Escrow {
    Escrow {
        replica: ReplicaId::from_name(name),
        share,
    }
}

/// 8 tasks × 50 calls of 10 tokens against a day budget of 100 calls' worth.
async fn concurrent_calls_spend_exactly_the_budget(backend: Backend) {
    let store = backend.store;
    let budget = Budget {
        per_day: Some(1_000),
        per_month: None,
    };
    let here = escrow("eu", 1.0);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut granted = 0u64;
            for _ in 0..50 {
                match quota::reserve(store.as_ref(), here, "ada", budget, 10, NOW).await {
                    Ok(reservation) => {
                        granted += 1;
                        quota::settle(store.as_ref(), here, reservation, 10)
                            .await
                            .expect("settle");
                    }
                    Err(QuotaError::Exceeded(exceeded)) => {
                        assert_eq!(exceeded.period, Period::Day);
                        assert_eq!(exceeded.resets_at, 1_795_392_000);
                    }
                    Err(QuotaError::Store(err)) => panic!("store: {err}"),
                }
            }
            granted
        }));
    }
    let mut calls = 0;
    for task in tasks {
        calls += task.await.expect("task");
    }
    assert_eq!(calls, 100, "exactly the budget's worth of calls");
    let (used, _) = quota::used(store.as_ref(), "ada", Period::Day, NOW)
        .await
        .expect("used");
    assert_eq!(used, 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_spend_exactly_the_budget_on_libsql() {
    concurrent_calls_spend_exactly_the_budget(backends::libsql().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_spend_exactly_the_budget_on_dynamodb() {
    concurrent_calls_spend_exactly_the_budget(backends::dynamodb().await).await;
}

#[tokio::test]
async fn settling_gives_back_what_the_call_did_not_use_and_a_refusal_holds_nothing() {
    let backend = backends::libsql().await;
    let store = backend.store.as_ref();
    let here = escrow("eu", 1.0);
    let budget = Budget {
        per_day: Some(1_000),
        per_month: Some(300),
    };
    let reservation = quota::reserve(store, here, "ada", budget, 250, NOW)
        .await
        .expect("within both budgets");
    quota::settle(store, here, reservation, 40)
        .await
        .expect("settle");
    for period in [Period::Day, Period::Month] {
        let (used, _) = quota::used(store, "ada", period, NOW).await.expect("used");
        assert_eq!(used, 40, "{period:?}");
    }
    // The month has 260 left: 261 is refused by the month, and the day keeps nothing of it.
    let refused = quota::reserve(store, here, "ada", budget, 261, NOW).await;
    assert!(
        matches!(refused, Err(QuotaError::Exceeded(e)) if e.period == Period::Month && e.left == 260),
        "{refused:?}"
    );
    let (day, _) = quota::used(store, "ada", Period::Day, NOW)
        .await
        .expect("used");
    assert_eq!(day, 40);
    // Another user's budget is their own.
    let (other, _) = quota::used(store, "grace", Period::Day, NOW)
        .await
        .expect("used");
    assert_eq!(other, 0);
}

/// Copies every quota document of `user` from one deployment's store into another's, as a
/// sync round does.
async fn sync(from: &dyn Store, to: &dyn Store, user: &str) {
    for period in ["day#2026-11-22", "month#2026-11"] {
        let key = Key::new(format!("quota#{user}"), format!("tokens#{period}")).expect("key");
        if let Some(doc) = from.read::<BoundedCounter>(&key).await.expect("read") {
            to.merge(&key, doc.state).await.expect("merge");
        }
    }
}

#[tokio::test]
async fn two_deployments_partitioned_from_each_other_never_spend_more_than_the_budget() {
    let (eu, us) = (backends::libsql().await, backends::libsql().await);
    let (eu_store, us_store) = (eu.store.as_ref(), us.store.as_ref());
    let (eu_escrow, us_escrow) = (escrow("eu", 0.6), escrow("us", 0.4));
    let budget = Budget {
        per_day: Some(1_000),
        per_month: None,
    };
    // Connected for a while: each spends a little, and they sync.
    for (store, escrow) in [(eu_store, eu_escrow), (us_store, us_escrow)] {
        let r = quota::reserve(store, escrow, "ada", budget, 100, NOW)
            .await
            .expect("reserve");
        quota::settle(store, escrow, r, 100).await.expect("settle");
    }
    sync(eu_store, us_store, "ada").await;
    sync(us_store, eu_store, "ada").await;

    // Partitioned: each spends everything it can, 7 tokens at a time.
    let mut spent = 200;
    for (store, escrow) in [(eu_store, eu_escrow), (us_store, us_escrow)] {
        while let Ok(r) = quota::reserve(store, escrow, "ada", budget, 7, NOW).await {
            quota::settle(store, escrow, r, 7).await.expect("settle");
            spent += 7;
        }
    }
    assert!(spent <= 1_000, "{spent} spent while partitioned");

    // Healed: the merged state agrees on both sides and stays within the budget.
    sync(eu_store, us_store, "ada").await;
    sync(us_store, eu_store, "ada").await;
    let (eu_used, _) = quota::used(eu_store, "ada", Period::Day, NOW)
        .await
        .expect("used");
    let (us_used, _) = quota::used(us_store, "ada", Period::Day, NOW)
        .await
        .expect("used");
    assert_eq!(eu_used, us_used);
    assert_eq!(eu_used, spent);
    assert!(eu_used <= 1_000);
    assert!(
        quota::reserve(eu_store, eu_escrow, "ada", budget, 7, NOW)
            .await
            .is_err()
    );
}
