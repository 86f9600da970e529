//! Durable agent runs and automations, measured on the embedded store:
//! `cargo bench -p jarvis-tests --bench agents`.
//!
//! - **Step journal cost**: a run of 40 steps (20 model calls, 20 tool calls that only read)
//!   with the scripted provider answering at once, over a store that counts every
//!   operation: the journal's writes per step (the run's partitions and its queue entry),
//!   apart from what the AI layer writes (usage, budgets) and the tools do; and the time
//!   each step takes beyond the model and the tool.
//! - **Due time to action**: 200 one-time automations due over 20 seconds, fired by the
//!   local firer (`jarvis-local`'s, every second) with an action that records when it ran:
//!   the delay from each due time to its action, p50 / p99 / max.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jarvis_agents::queue::Job;
use jarvis_agents::service::LocalDispatch;
use jarvis_agents::{Agents, RunRequest, Toolbox};
use jarvis_ai::scripted::{Script, Scripted};
use jarvis_ai::service::Ai;
use jarvis_automations::{Action, Automations, Executor, Fired, NewAutomation, Outcome};
use jarvis_config::Config;
use jarvis_crdt::{Entity, ReplicaId};
use jarvis_identity::delegation::Delegation;
use jarvis_realtime::{Notifier, Registry};
use jarvis_store::clock::Clock;
use jarvis_store::{Key, Site, Store};
use jarvis_tests::hooked::{Hooked, Operation};

type Counts = Arc<Mutex<BTreeMap<(&'static str, &'static str), u64>>>;

/// Which part of the system a partition belongs to.
fn part(partition: &str) -> &'static str {
    if partition.starts_with("agent#") || partition == "~agentq" {
        "journal"
    } else if partition.starts_with("quota#")
        || partition.starts_with("usage#")
        || partition.starts_with("~ai#")
    {
        "ai"
    } else if partition == "users" || partition.starts_with("user#") {
        "account"
    } else {
        "other"
    }
}

async fn journal_cost(runtime_dir: &std::path::Path) {
    const TURNS: usize = 20;
    let replies: Vec<serde_json::Value> = (0..TURNS)
        .map(|i| {
            serde_json::json!({"text": "more", "tool_calls": [
                {"name": "calculator", "arguments": {"expression": format!("{i} * 2")}}]})
        })
        .chain([serde_json::json!({"text": "done"})])
        .collect();
    let script: Script =
        serde_json::from_value(serde_json::json!({ "replies": replies })).expect("script");
    let secrets = r#"{"master_key":"0123456789abcdef0123456789abcdef0123456789"}"#;
    let config = Config::from_vars([
        (
            "JARVIS_DATA_DIR",
            runtime_dir.to_string_lossy().into_owned(),
        ),
        ("JARVIS_SECRETS", secrets.to_owned()),
        ("JARVIS_AI_MODELS", "smart=scripted:script".to_owned()),
    ])
    .expect("config");
    let counts: Counts = Arc::default();
    let counting = Arc::clone(&counts);
    let inner = jarvis_store::open(&config.store).await.expect("store");
    let store: Arc<dyn Store> = Arc::new(Hooked {
        inner,
        hook: move |operation: Operation, partition: &str| {
            let kind = match operation {
                Operation::PutItem => "write",
                _ => "read",
            };
            if let Ok(mut counts) = counting.lock() {
                *counts.entry((part(partition), kind)).or_default() += 1;
            }
            Ok(())
        },
    });
    let replica = ReplicaId::from_name("bench");
    let clock = Arc::new(Clock::new(replica));
    let site = Site {
        store: Arc::clone(&store),
        replica,
        clock: Arc::clone(&clock),
    };
    let scripted: Arc<dyn jarvis_ai::Provider> = Arc::new(Scripted::by_turn(script));
    let ai = Arc::new(Ai::new(
        &config,
        jarvis_secrets::source(&config.secrets),
        vec![("scripted".into(), scripted)],
    ));
    let tools = Toolbox::new(vec![Arc::new(jarvis_agents::tools::Calculator)]).expect("tools");
    let notifier = Arc::new(Notifier::new(Registry::new(
        Arc::clone(&store),
        replica,
        clock.clone(),
        Duration::from_secs(60),
    )));
    let agents = Agents::new(site.clone(), ai, tools, notifier, config.agents.clone());
    agents.attach_dispatch(Arc::new(LocalDispatch(Arc::default())));
    let account = Key::new("users", "u1").expect("key");
    store
        .update(&account, |a: &mut Entity| {
            a.set("role", clock.now(), "user")
        })
        .await
        .expect("account");
    let delegation = Delegation {
        user_id: "u1".into(),
        scopes: vec!["agents:write".into()],
        api_key: None,
    };
    let request = RunRequest {
        goal: "Double the numbers".into(),
        max_steps: Some(100),
        ..RunRequest::default()
    };
    let run = agents
        .start(&delegation, request, None, None)
        .await
        .expect("started");
    counts.lock().expect("counts").clear();
    let started = Instant::now();
    let invoked = agents
        .invoke(
            &Job {
                user: "u1".into(),
                run: run.id.clone(),
            },
            Instant::now() + Duration::from_secs(600),
            "bench",
        )
        .await
        .expect("driven");
    let took = started.elapsed();
    let (_, steps) = agents.get("u1", &run.id).await.expect("run");
    assert!(
        matches!(invoked, jarvis_agents::Invoked::Finished(_)),
        "{invoked:?}"
    );
    let steps = steps.len() as f64;
    let counts = counts.lock().expect("counts").clone();
    let of =
        |part: &'static str, kind: &'static str| counts.get(&(part, kind)).copied().unwrap_or(0);
    println!(
        "journal: {} steps in one invocation, {:.1} ms in all, {:.0} µs a step (model and tool answering at once)",
        steps,
        took.as_secs_f64() * 1000.0,
        took.as_secs_f64() * 1e6 / steps
    );
    println!(
        "journal: {:.2} writes and {:.2} reads a step (run, steps, queue entry and lease; {} writes in all, of which {} for the invocation itself)",
        (of("journal", "write") as f64) / steps,
        (of("journal", "read") as f64) / steps,
        of("journal", "write"),
        of("journal", "write") as f64 - steps,
    );
    println!(
        "journal: besides, the AI layer's {:.2} writes a model step (usage) and the account check's {} reads an invocation",
        (of("ai", "write") as f64) / (steps / 2.0),
        of("account", "read")
    );
}

/// Records how late each action ran.
struct Lateness(Mutex<Vec<u64>>);

#[async_trait]
impl Executor for Lateness {
    async fn execute(&self, fired: &Fired<'_>) -> Result<Outcome, String> {
        let now = jarvis_crdt::hlc::system_time_ms();
        if let Ok(mut late) = self.0.lock() {
            late.push(now.saturating_sub(fired.scheduled_at_ms));
        }
        Ok(Outcome::succeeded("recorded"))
    }
}

async fn due_to_action(dir: &std::path::Path) {
    const COUNT: usize = 200;
    let store = jarvis_store::open(&jarvis_config::StoreConfig::Libsql {
        path: dir.join("due.db"),
    })
    .await
    .expect("store");
    let replica = ReplicaId::from_name("bench");
    let site = Site {
        store,
        replica,
        clock: Arc::new(Clock::new(replica)),
    };
    let automations = Automations::new(site, COUNT + 1);
    let delegation = Delegation {
        user_id: "u1".into(),
        scopes: vec![],
        api_key: None,
    };
    let start = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(3))
        .expect("time");
    for i in 0..COUNT {
        // Spread over 20 s, at whole seconds (what `at(…)` can say).
        let at = start
            .checked_add(jiff::SignedDuration::from_millis((i as i64) * 100))
            .expect("time");
        let civil = jiff::tz::TimeZone::UTC.to_datetime(at);
        automations
            .create(
                &delegation,
                NewAutomation {
                    name: format!("reminder {i}"),
                    schedule: format!(
                        "at({:04}-{:02}-{:02}T{:02}:{:02}:{:02})",
                        civil.year(),
                        civil.month(),
                        civil.day(),
                        civil.hour(),
                        civil.minute(),
                        civil.second()
                    ),
                    time_zone: "UTC".into(),
                    action: Action::Notify {
                        message: "now".into(),
                    },
                    enabled: true,
                },
                None,
            )
            .await
            .expect("made");
    }
    let lateness = Arc::new(Lateness(Mutex::new(Vec::new())));
    let firing = tokio::spawn(jarvis_automations::fire::run_locally(
        automations,
        Arc::clone(&lateness) as Arc<dyn Executor>,
        tokio::time::sleep(Duration::from_secs(26)),
    ));
    firing.await.expect("fired");
    let mut late = lateness.0.lock().expect("late").clone();
    late.sort_unstable();
    assert_eq!(late.len(), COUNT, "every automation ran once");
    let at = |q: f64| late[((late.len() - 1) as f64 * q) as usize];
    println!(
        "due to action ({COUNT} automations, local firer every second): p50 {} ms, p99 {} ms, max {} ms",
        at(0.5),
        at(0.99),
        late[late.len() - 1]
    );
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    runtime.block_on(async {
        journal_cost(dir.path()).await;
        due_to_action(dir.path()).await;
    });
}
