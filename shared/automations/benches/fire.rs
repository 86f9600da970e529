//! Scheduler overhead per due automation: `cargo bench -p jarvis-automations --bench fire`.
//!
//! Makes N automations of one user due in the same minute on an embedded libSQL store, then
//! times the firing round that runs them all with an action that does nothing: what firing
//! costs on top of the actions themselves (re-reading the automation, claiming and finishing
//! its run, indexing its next time, taking its entry away).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use jarvis_automations::{Action, Automations, Executor, Fired, NewAutomation, Outcome};
use jarvis_config::StoreConfig;
use jarvis_crdt::ReplicaId;
use jarvis_identity::delegation::Delegation;
use jarvis_store::Site;
use jarvis_store::clock::Clock;

struct Nothing;

#[async_trait]
impl Executor for Nothing {
    async fn execute(&self, _fired: &Fired<'_>) -> Result<Outcome, String> {
        Ok(Outcome::succeeded("nothing"))
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        for n in [100usize, 1_000] {
            let dir = tempfile::tempdir().expect("dir");
            let store = jarvis_store::open(&StoreConfig::Libsql {
                path: dir.path().join("jarvis.db"),
            })
            .await
            .expect("store");
            let replica = ReplicaId::from_name("bench");
            let site = Site {
                store,
                replica,
                clock: Arc::new(Clock::new(replica)),
            };
            let automations = Automations::new(site, n + 1);
            let delegation = Delegation {
                user_id: "u1".into(),
                scopes: vec!["automations:write".into()],
                api_key: None,
            };
            // All due at the top of a minute a little ahead.
            let now = jiff::Timestamp::now();
            let due = now
                .checked_add(jiff::SignedDuration::from_secs(120))
                .expect("time")
                .round(jiff::Unit::Minute)
                .expect("rounded");
            let civil = jiff::tz::TimeZone::UTC.to_datetime(due);
            let at = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:00",
                civil.year(),
                civil.month(),
                civil.day(),
                civil.hour(),
                civil.minute()
            );
            for i in 0..n {
                automations
                    .create(
                        &delegation,
                        NewAutomation {
                            name: format!("reminder {i}"),
                            schedule: format!("at({at})"),
                            time_zone: "UTC".into(),
                            action: Action::Notify {
                                message: "hello".into(),
                            },
                            enabled: true,
                        },
                        None,
                    )
                    .await
                    .expect("made");
            }
            let due_ms = u64::try_from(due.as_millisecond()).expect("ms");
            // The firer has been running: nothing older to look at.
            jarvis_automations::due::advance(automations.site(), due_ms / 60_000 - 1)
                .await
                .expect("cursor");
            let started = Instant::now();
            let report = automations
                .fire_due(&Nothing, due_ms)
                .await
                .expect("round");
            let took = started.elapsed();
            assert_eq!(report.fired as usize, n, "{report:?}");
            println!(
                "fire {n:>5} due automations: {:>8.1} ms in all, {:>6.1} µs per automation ({} buckets read)",
                took.as_secs_f64() * 1000.0,
                took.as_secs_f64() * 1e6 / n as f64,
                report.buckets
            );
        }
    });
}
