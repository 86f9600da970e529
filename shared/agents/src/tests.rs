use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jarvis_ai::scripted::{Script, Scripted};
use jarvis_ai::service::Ai;
use jarvis_config::Config;
use jarvis_crdt::{Entity, ReplicaId};
use jarvis_identity::Scope;
use jarvis_identity::delegation::Delegation;
use jarvis_realtime::{Notifier, Registry};
use jarvis_store::clock::Clock;
use jarvis_store::{Key, Site};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::journal::{self, Step, StepKind, StepStatus};
use crate::queue::{self, Job};
use crate::run::RunStatus;
use crate::service::LocalDispatch;
use crate::tools::{Calculator, Clock as ClockTool, schema_of};
use crate::*;

const MASTER: &str = "0123456789abcdef0123456789abcdef0123456789";

/// A tool that makes a note named by its idempotency key, and counts every call.
#[derive(Default)]
struct Notes {
    calls: Mutex<Vec<String>>,
    made: Mutex<std::collections::BTreeSet<String>>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoteArgs {
    /// The note.
    text: String,
}

#[async_trait]
impl Tool for Notes {
    fn name(&self) -> &'static str {
        "note_add"
    }
    fn description(&self) -> &'static str {
        "Adds a note."
    }
    fn parameters(&self) -> serde_json::Value {
        schema_of::<NoteArgs>()
    }
    fn scope(&self) -> Option<Scope> {
        Some(Scope::ArchiveWrite)
    }
    fn effect(&self) -> Effect {
        Effect::Idempotent
    }
    async fn call(&self, call: &ToolCall<'_>) -> Result<serde_json::Value, ToolError> {
        let args: NoteArgs = call.arguments()?;
        let key = call.idempotency_key();
        self.calls.lock().expect("lock").push(key.clone());
        self.made.lock().expect("lock").insert(key.clone());
        Ok(serde_json::json!({ "note": key, "text": args.text }))
    }
}

/// A tool that cannot tell a repeat.
#[derive(Default)]
struct Bump {
    calls: Mutex<u32>,
}

#[async_trait]
impl Tool for Bump {
    fn name(&self) -> &'static str {
        "bump"
    }
    fn description(&self) -> &'static str {
        "Adds one to a counter."
    }
    fn parameters(&self) -> serde_json::Value {
        serde_json::json!({"type": "object", "properties": {}})
    }
    fn scope(&self) -> Option<Scope> {
        Some(Scope::CrdtWrite)
    }
    fn effect(&self) -> Effect {
        Effect::AtMostOnce
    }
    async fn call(&self, _call: &ToolCall<'_>) -> Result<serde_json::Value, ToolError> {
        *self.calls.lock().expect("lock") += 1;
        Ok(serde_json::json!({ "bumped": true }))
    }
}

struct Host {
    agents: Arc<Agents>,
    notes: Arc<Notes>,
    bump: Arc<Bump>,
    site: Site,
    _dir: tempfile::TempDir,
}

fn script(json: serde_json::Value) -> Script {
    serde_json::from_value(json).expect("script")
}

async fn host(script: Script) -> Host {
    let dir = tempfile::tempdir().expect("dir");
    let secrets = format!(r#"{{"master_key":"{MASTER}"}}"#);
    let config = Config::from_vars([
        ("JARVIS_DATA_DIR", dir.path().to_string_lossy().into_owned()),
        ("JARVIS_SECRETS", secrets),
        ("JARVIS_AI_MODELS", "smart=scripted:script".to_owned()),
    ])
    .expect("config");
    let store = jarvis_store::open(&config.store).await.expect("store");
    let replica = ReplicaId::from_name("here");
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
    let notes = Arc::new(Notes::default());
    let bump = Arc::new(Bump::default());
    let tools = Toolbox::new(vec![
        Arc::new(ClockTool),
        Arc::new(Calculator),
        Arc::clone(&notes) as Arc<dyn Tool>,
        Arc::clone(&bump) as Arc<dyn Tool>,
    ])
    .expect("tools");
    let notifier = Arc::new(Notifier::new(Registry::new(
        store,
        replica,
        clock,
        Duration::from_secs(60),
    )));
    let agents = Arc::new(Agents::new(
        site.clone(),
        ai,
        tools,
        notifier,
        config.agents.clone(),
    ));
    agents.attach_dispatch(Arc::new(LocalDispatch(Arc::default())));
    account(&site, "u1", "user").await;
    Host {
        agents,
        notes,
        bump,
        site,
        _dir: dir,
    }
}

/// An account, as the auth function stores it.
async fn account(site: &Site, id: &str, role: &str) {
    let key = Key::new("users", id).expect("key");
    let clock = Arc::clone(&site.clock);
    site.store
        .update(&key, |account: &mut Entity| {
            let stamp = clock.now();
            let mut delta = account.set("email", stamp, format!("{id}@example.com"));
            jarvis_crdt::Crdt::join(&mut delta, account.set("role", stamp, role));
            delta
        })
        .await
        .expect("account");
}

fn everything() -> Delegation {
    Delegation {
        user_id: "u1".into(),
        scopes: vec![
            "archive:write".into(),
            "crdt:write".into(),
            "agents:write".into(),
        ],
        api_key: None,
    }
}

fn goal(text: &str) -> RunRequest {
    RunRequest {
        goal: text.into(),
        ..RunRequest::default()
    }
}

fn job(run: &run::Run) -> Job {
    Job {
        user: run.user.clone(),
        run: run.id.clone(),
    }
}

/// Invokes until the run is over, at most `rounds` times; answers how many invocations it
/// took.
async fn drive_to_end(host: &Host, run: &run::Run, each: Duration, rounds: usize) -> usize {
    for round in 1..=rounds {
        let invoked = host
            .agents
            .invoke(&job(run), Instant::now() + each, "worker")
            .await
            .expect("invoke");
        if let Invoked::Finished(_) = invoked {
            return round;
        }
        assert!(
            matches!(invoked, Invoked::Yielded),
            "round {round}: {invoked:?}"
        );
    }
    panic!("the run did not end in {rounds} invocations");
}

fn note_then_answer(delay_ms: u64, notes: usize) -> Script {
    let mut replies: Vec<serde_json::Value> = (0..notes)
        .map(|i| {
            serde_json::json!({
                "delay_ms": delay_ms,
                "text": format!("Noting {i}."),
                "tool_calls": [{"name": "note_add", "arguments": {"text": format!("note {i}")}}]
            })
        })
        .collect();
    replies.push(serde_json::json!({"delay_ms": delay_ms, "text": "All noted."}));
    script(serde_json::json!({ "replies": replies }))
}

#[tokio::test]
async fn a_run_calls_its_tools_and_answers_with_each_step_recorded_once() {
    let host = host(note_then_answer(0, 2)).await;
    let run = host
        .agents
        .start(&everything(), goal("Note two things"), None, None)
        .await
        .expect("started");
    assert_eq!(run.status, RunStatus::Queued);
    let invocations = drive_to_end(&host, &run, Duration::from_secs(30), 3).await;
    assert_eq!(invocations, 1);
    let (run, steps) = host.agents.get("u1", &run.id).await.expect("run");
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.result.as_deref(), Some("All noted."));
    let kinds: Vec<&str> = steps.iter().map(|s| s.kind.name()).collect();
    assert_eq!(kinds, ["model", "tool", "model", "tool", "model"]);
    let seqs: Vec<u32> = steps.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert!(steps.iter().all(|s| s.status == StepStatus::Completed));
    assert_eq!(host.notes.calls.lock().expect("lock").len(), 2);
    let depth = queue::depth(&host.site, jarvis_crdt::hlc::system_time_ms())
        .await
        .expect("depth");
    assert_eq!(depth, queue::Depth::default(), "off the queue once over");
}

#[tokio::test]
async fn an_invocation_stops_before_its_deadline_and_the_next_goes_on_without_repeating_a_step() {
    // Each model call takes 300 ms; each invocation has 1 s (a margin of 250 ms).
    let host = host(note_then_answer(300, 4)).await;
    let run = host
        .agents
        .start(&everything(), goal("Note four things"), None, None)
        .await
        .expect("started");
    let invocations = drive_to_end(&host, &run, Duration::from_secs(1), 10).await;
    assert!(invocations >= 2, "{invocations}");
    let (run, steps) = host.agents.get("u1", &run.id).await.expect("run");
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.invocations, invocations as u64);
    assert_eq!(steps.len(), 9, "four notes, five model calls");
    let calls = host.notes.calls.lock().expect("lock").clone();
    let mut unique = calls.clone();
    unique.dedup();
    assert_eq!(calls.len(), 4);
    assert_eq!(unique.len(), 4, "no tool call repeated: {calls:?}");
}

#[tokio::test]
async fn a_resumed_run_repeats_an_unrecorded_idempotent_call_under_the_same_key() {
    let host = host(note_then_answer(0, 1)).await;
    let run = host
        .agents
        .start(&everything(), goal("Note it"), None, None)
        .await
        .expect("started");
    // A worker recorded the model's turn and called the tool, then died before recording
    // the call: the journal holds only the model step.
    drive_to_end(&host, &run, Duration::from_secs(30), 1).await;
    let (_, steps) = host.agents.get("u1", &run.id).await.expect("run");
    let first_key = host.notes.calls.lock().expect("lock")[0].clone();
    // Replay the same call as a resumed worker would, from the same journal position.
    let identity = everything()
        .act(host.site.store.as_ref())
        .await
        .expect("acts");
    let arguments = steps[1].call.as_ref().expect("call").arguments.clone();
    let repeat = ToolCall {
        identity: &identity,
        run: &run.id,
        step: 2,
        arguments: &arguments,
        now_ms: 0,
        run_created_ms: run.created_at_ms,
    };
    assert_eq!(repeat.idempotency_key(), first_key);
    host.notes.call(&repeat).await.expect("again");
    assert_eq!(
        host.notes.made.lock().expect("lock").len(),
        1,
        "the repeat makes nothing new"
    );
}

#[tokio::test]
async fn a_call_that_cannot_be_repeated_and_was_interrupted_is_reported_not_made_again() {
    let host = host(script(serde_json::json!({"replies": [
        {"text": "Bumping.", "tool_calls": [{"name": "bump"}]},
        {"text": "It may have bumped."}
    ]})))
    .await;
    let run = host
        .agents
        .start(&everything(), goal("Bump it"), None, None)
        .await
        .expect("started");
    // The first worker recorded the model's turn and the call as started, then died.
    let identity = everything()
        .act(host.site.store.as_ref())
        .await
        .expect("acts");
    let _ = identity;
    let reply = journal::ModelReply {
        text: "Bumping.".into(),
        tool_calls: vec![jarvis_ai::ToolCall {
            id: "call_0_0".into(),
            name: "bump".into(),
            arguments: serde_json::json!({}),
        }],
        usage: jarvis_ai::Usage::default(),
        model: "scripted:script".into(),
        stop_reason: "tool_use".into(),
    };
    let mut model = Step::new(1, StepKind::Model, StepStatus::Completed, 1);
    model.reply = Some(reply.clone());
    journal::record(&host.site, "u1", &run.id, &model, None)
        .await
        .expect("model step");
    let mut started = Step::new(2, StepKind::Tool, StepStatus::Started, 2);
    started.call = Some(reply.tool_calls[0].clone());
    journal::record(&host.site, "u1", &run.id, &started, None)
        .await
        .expect("started step");

    drive_to_end(&host, &run, Duration::from_secs(30), 2).await;
    assert_eq!(*host.bump.calls.lock().expect("lock"), 0, "not made again");
    let (run, steps) = host.agents.get("u1", &run.id).await.expect("run");
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(steps[1].status, StepStatus::Interrupted);
    assert!(
        steps[1]
            .result
            .as_deref()
            .is_some_and(|r| r.contains("may or may not")),
        "{:?}",
        steps[1].result
    );
}

#[tokio::test]
async fn a_call_that_needs_approval_waits_without_a_worker_and_goes_on_once_approved() {
    let host = host(note_then_answer(0, 1)).await;
    let mut request = goal("Note it, with my approval");
    request.approval = vec!["note_add".into()];
    let run = host
        .agents
        .start(&everything(), request, None, None)
        .await
        .expect("started");
    let invoked = host
        .agents
        .invoke(&job(&run), Instant::now() + Duration::from_secs(30), "w")
        .await
        .expect("invoke");
    let Invoked::Later(until) = invoked else {
        panic!("{invoked:?}")
    };
    let (waiting, steps) = host.agents.get("u1", &run.id).await.expect("run");
    assert_eq!(waiting.status, RunStatus::Waiting);
    assert_eq!(steps.last().map(|s| s.kind), Some(StepKind::Approval));
    assert!(host.notes.calls.lock().expect("lock").is_empty());
    let depth = queue::depth(&host.site, jarvis_crdt::hlc::system_time_ms())
        .await
        .expect("depth");
    assert_eq!((depth.ready, depth.waiting), (0, 1));
    // A worker coming before the decision finds nothing to do yet.
    let early = host
        .agents
        .invoke(&job(&run), Instant::now() + Duration::from_secs(30), "w2")
        .await
        .expect("invoke");
    assert_eq!(early, Invoked::Later(until));

    let decided = host
        .agents
        .decide("u1", &run.id, true, None)
        .await
        .expect("approved");
    assert_eq!(decided.status, RunStatus::Queued);
    assert!(matches!(
        host.agents.decide("u1", &run.id, false, None).await,
        Err(AgentError::Conflict(_))
    ));
    drive_to_end(&host, &run, Duration::from_secs(30), 2).await;
    assert_eq!(host.notes.calls.lock().expect("lock").len(), 1);
    let (done, steps) = host.agents.get("u1", &run.id).await.expect("run");
    assert_eq!(done.status, RunStatus::Succeeded);
    let kinds: Vec<&str> = steps.iter().map(|s| s.kind.name()).collect();
    assert_eq!(kinds, ["model", "approval", "tool", "model"]);
    assert_eq!(steps[1].status, StepStatus::Approved);
}

#[tokio::test]
async fn a_denied_or_timed_out_call_is_not_made_and_the_model_is_told() {
    let host = host(note_then_answer(0, 1)).await;
    let mut request = goal("Note it, with my approval");
    request.approval = vec!["note_add".into()];
    let denied = host
        .agents
        .start(&everything(), request.clone(), None, None)
        .await
        .expect("started");
    host.agents
        .invoke(&job(&denied), Instant::now() + Duration::from_secs(30), "w")
        .await
        .expect("waits");
    host.agents
        .decide("u1", &denied.id, false, Some("not today".into()))
        .await
        .expect("denied");
    drive_to_end(&host, &denied, Duration::from_secs(30), 2).await;
    let (_, steps) = host.agents.get("u1", &denied.id).await.expect("run");
    assert_eq!(steps[2].kind, StepKind::Tool);
    assert_eq!(steps[2].status, StepStatus::Failed);
    assert_eq!(
        steps[2].result.as_deref(),
        Some("the user denied this call: not today")
    );

    let timed = host
        .agents
        .start(&everything(), request, None, None)
        .await
        .expect("started");
    host.agents
        .invoke(&job(&timed), Instant::now() + Duration::from_secs(30), "w")
        .await
        .expect("waits");
    // The wait's time passes.
    let (_, steps) = host.agents.get("u1", &timed.id).await.expect("run");
    let mut waiting = steps[1].clone();
    waiting.until_ms = Some(1);
    journal::record(
        &host.site,
        "u1",
        &timed.id,
        &waiting,
        Some(StepStatus::Waiting),
    )
    .await
    .expect("rewound");
    queue::put(&host.site, &job(&timed), 0, 0, None)
        .await
        .expect("due");
    drive_to_end(&host, &timed, Duration::from_secs(30), 2).await;
    let (run, steps) = host.agents.get("u1", &timed.id).await.expect("run");
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(steps[1].status, StepStatus::TimedOut);
    assert_eq!(steps[2].status, StepStatus::Failed);
    assert!(host.notes.calls.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn a_cancelled_run_ends_before_its_next_step_and_cannot_be_cancelled_again() {
    let host = host(note_then_answer(0, 1)).await;
    let mut request = goal("Note it, with my approval");
    request.approval = vec!["note_add".into()];
    let run = host
        .agents
        .start(&everything(), request, None, None)
        .await
        .expect("started");
    host.agents
        .invoke(&job(&run), Instant::now() + Duration::from_secs(30), "w")
        .await
        .expect("waits");
    let asked = host.agents.cancel("u1", &run.id).await.expect("cancel");
    assert!(asked.cancel_requested);
    drive_to_end(&host, &run, Duration::from_secs(30), 1).await;
    let (run, _) = host.agents.get("u1", &run.id).await.expect("run");
    assert_eq!(run.status, RunStatus::Cancelled);
    assert!(matches!(
        host.agents.cancel("u1", &run.id).await,
        Err(AgentError::Conflict(_))
    ));
    assert!(host.notes.calls.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn a_run_stops_at_its_step_limit_and_its_token_budget() {
    let forever = script(
        serde_json::json!({"replies": (0..20).map(|i| serde_json::json!({
        "text": "more", "tool_calls": [{"name": "calculator", "arguments": {"expression": format!("{i} + 1")}}]
    })).collect::<Vec<_>>()}),
    );
    let host = host(forever).await;
    let mut request = goal("Count");
    request.max_steps = Some(3);
    let limited = host
        .agents
        .start(&everything(), request, None, None)
        .await
        .expect("started");
    drive_to_end(&host, &limited, Duration::from_secs(30), 1).await;
    let (run, steps) = host.agents.get("u1", &limited.id).await.expect("run");
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(steps.len(), 3);
    assert!(run.error.as_deref().is_some_and(|e| e.contains("3 steps")));

    let mut request = goal(&"a long goal ".repeat(100));
    request.token_budget = Some(100);
    let costly = host
        .agents
        .start(&everything(), request, None, None)
        .await
        .expect("started");
    drive_to_end(&host, &costly, Duration::from_secs(30), 1).await;
    let (run, steps) = host.agents.get("u1", &costly.id).await.expect("run");
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.error.as_deref().is_some_and(|e| e.contains("budget")),
        "{run:?}"
    );
    assert!(steps.len() <= 2, "{}", steps.len());
}

#[tokio::test]
async fn a_run_only_gets_tools_its_credential_allows_and_bad_requests_name_their_field() {
    let host = host(note_then_answer(0, 0)).await;
    let reader = Delegation {
        user_id: "u1".into(),
        scopes: vec!["agents:write".into()],
        api_key: None,
    };
    let run = host
        .agents
        .start(&reader, goal("What time is it?"), None, None)
        .await
        .expect("started");
    assert_eq!(run.tools, ["current_time", "calculator"]);
    let mut request = goal("Note it");
    request.tools = Some(vec!["note_add".into()]);
    assert!(matches!(
        host.agents.start(&reader, request, None, None).await,
        Err(AgentError::Forbidden(_))
    ));
    let field_of = |result: Result<run::Run, AgentError>| match result {
        Err(AgentError::Invalid { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    let mut unknown = goal("x");
    unknown.tools = Some(vec!["calculator".into(), "teleport".into()]);
    assert_eq!(
        field_of(host.agents.start(&everything(), unknown, None, None).await),
        "tools[1]"
    );
    let mut reads_only = goal("x");
    reads_only.approval = vec!["calculator".into()];
    assert_eq!(
        field_of(
            host.agents
                .start(&everything(), reads_only, None, None)
                .await
        ),
        "approval[0]"
    );
    let mut steps = goal("x");
    steps.max_steps = Some(0);
    assert_eq!(
        field_of(host.agents.start(&everything(), steps, None, None).await),
        "max_steps"
    );
    assert_eq!(
        field_of(host.agents.start(&everything(), goal(""), None, None).await),
        "goal"
    );
}

#[tokio::test]
async fn a_run_of_a_disabled_account_fails_at_its_next_invocation() {
    let host = host(note_then_answer(0, 1)).await;
    let run = host
        .agents
        .start(&everything(), goal("Note it"), None, None)
        .await
        .expect("started");
    let key = Key::new("users", "u1").expect("key");
    let clock = Arc::clone(&host.site.clock);
    host.site
        .store
        .update(&key, |account: &mut Entity| {
            jarvis_identity::credential::set_disabled(account, clock.now(), true)
        })
        .await
        .expect("disabled");
    drive_to_end(&host, &run, Duration::from_secs(30), 1).await;
    let (run, steps) = host.agents.get("u1", &run.id).await.expect("run");
    assert_eq!(run.status, RunStatus::Failed);
    assert!(steps.is_empty());
    assert!(host.notes.calls.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn two_workers_never_drive_one_run_at_once_and_a_repeated_start_starts_one_run() {
    let host = host(note_then_answer(200, 1)).await;
    let id = uuid::Uuid::new_v4();
    let run = host
        .agents
        .start(
            &everything(),
            goal("Note it"),
            Some(id),
            Some("automation:a@1".into()),
        )
        .await
        .expect("started");
    let again = host
        .agents
        .start(&everything(), goal("Something else"), Some(id), None)
        .await
        .expect("the same");
    assert_eq!(again.goal, "Note it");
    assert_eq!(again.origin.as_deref(), Some("automation:a@1"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let the_job = job(&run);
    let (a, b) = tokio::join!(
        host.agents.invoke(&the_job, deadline, "a"),
        host.agents.invoke(&the_job, deadline, "b"),
    );
    let outcomes = [a.expect("a"), b.expect("b")];
    assert!(outcomes.contains(&Invoked::Skipped), "{outcomes:?}");
    assert!(
        outcomes.contains(&Invoked::Finished(RunStatus::Succeeded)),
        "{outcomes:?}"
    );
    assert_eq!(host.notes.calls.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn the_calculator_and_clock_answer_and_refuse_what_they_cannot_read() {
    assert_eq!(
        crate::tools::calculate("2 * (3 + 4) ^ 2").expect("value"),
        98.0
    );
    assert!((crate::tools::calculate("sqrt(2)").expect("value") - 2f64.sqrt()).abs() < 1e-12);
    assert!(crate::tools::calculate("1 / 0").is_err(), "not finite");
    assert!(crate::tools::calculate("rm -rf /").is_err());
    assert!(crate::tools::calculate(&"1+".repeat(300)).is_err());
    let identity = everything();
    let host = host(note_then_answer(0, 0)).await;
    let identity = identity.act(host.site.store.as_ref()).await.expect("acts");
    let arguments = serde_json::json!({"time_zone": "Asia/Tokyo"});
    let call = ToolCall {
        identity: &identity,
        run: "r",
        step: 1,
        arguments: &arguments,
        now_ms: 1_733_000_000_000,
        run_created_ms: 0,
    };
    let answer = ClockTool.call(&call).await.expect("time");
    assert_eq!(answer["utc"], "2024-11-30T20:53:20Z");
    assert_eq!(answer["local"], "2024-12-01T05:53:20");
    let bad = serde_json::json!({"time_zone": "Nowhere/Land"});
    let call = ToolCall {
        arguments: &bad,
        ..call
    };
    assert!(ClockTool.call(&call).await.is_err());
}

#[test]
fn every_tool_schema_is_an_object_and_names_are_checked() {
    let tools = Toolbox::new(vec![Arc::new(ClockTool), Arc::new(Calculator)]).expect("valid");
    for info in tools.describe() {
        assert_eq!(info.parameters["type"], "object", "{}", info.name);
        assert!(info.parameters.get("$schema").is_none());
    }
    assert_eq!(
        tools.describe()[1].parameters["required"],
        serde_json::json!(["expression"])
    );
    assert!(Toolbox::new(vec![Arc::new(ClockTool), Arc::new(ClockTool)]).is_err());
}

fn golden(name: &str, value: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("JARVIS_BLESS").is_some() {
        std::fs::write(&path, format!("{value}\n")).expect("bless");
    }
    let golden = std::fs::read_to_string(&path).expect("golden file");
    assert_eq!(value.trim_end(), golden.trim_end(), "{name}");
}

#[test]
fn the_stored_run_and_steps_are_golden_and_read_back() {
    let run = run::Run {
        id: "5b1c1d3e-0000-8000-8000-000000000001".into(),
        user: "u1".into(),
        goal: "Note what I said".into(),
        tools: vec!["archive_add".into(), "current_time".into()],
        approval: vec!["archive_add".into()],
        max_steps: 10,
        token_budget: 20_000,
        approval_timeout_secs: 600,
        model: "smart".into(),
        delegation: everything(),
        status: RunStatus::Queued,
        result: None,
        error: None,
        origin: Some("automation:a1@1733000000000".into()),
        created_at_ms: 1_733_000_000_000,
        updated_at_ms: 1_733_000_000_000,
        invocations: 0,
        retries: 0,
        cancel_requested: false,
    };
    let call = jarvis_ai::ToolCall {
        id: "call_0_0".into(),
        name: "archive_add".into(),
        arguments: serde_json::json!({"title": "Said", "content": "hello"}),
    };
    let mut model = Step::new(1, StepKind::Model, StepStatus::Completed, 1_733_000_000_100);
    model.finished_at_ms = Some(1_733_000_000_900);
    model.reply = Some(journal::ModelReply {
        text: "Noting it.".into(),
        tool_calls: vec![call.clone()],
        usage: jarvis_ai::Usage {
            input_tokens: 120,
            output_tokens: 14,
        },
        model: "local:smollm2-135m-instruct".into(),
        stop_reason: "tool_use".into(),
    });
    let mut approval = Step::new(2, StepKind::Approval, StepStatus::Denied, 1_733_000_001_000);
    approval.call = Some(call.clone());
    approval.until_ms = Some(1_733_000_601_000);
    approval.reason = Some("not now".into());
    let mut tool = Step::new(3, StepKind::Tool, StepStatus::Failed, 1_733_000_002_000);
    tool.call = Some(call);
    tool.result = Some("the user denied this call: not now".into());
    let layout = serde_json::json!({
        "run": run.stored_fields(),
        "steps": [model.stored_fields(), approval.stored_fields(), tool.stored_fields()],
    });
    golden(
        "run.json",
        &serde_json::to_string_pretty(&layout).expect("json"),
    );

    let replica = ReplicaId::from_name("g");
    let stamp = jarvis_crdt::Timestamp::new(1_733_000_000_000, 0, replica);
    let mut stored = Entity::new();
    for (name, value) in run.stored_fields() {
        stored.set(name, stamp, value);
    }
    assert_eq!(
        run::Run::from_entity("u1", &run.id, &stored).expect("reads"),
        run
    );
}
