//! End to end: durable agent runs and automations in the real `jarvis-local` binary, with
//! the offline scripted provider calling tools (`JARVIS_AI_SCRIPT`, replies chosen by turn,
//! so a run resumed by another process gets the reply it would have).
//!
//! - a ten-step run, each worker invocation given 2 s, completes across at least three
//!   invocations, each step recorded once and announced once on the `agents` topic;
//! - the worker process is killed (SIGKILL) at random points while 50 runs go on: all 50
//!   complete, and no archive entry is made twice;
//! - a `cron(0/1 * * * ? *)` automation fires three times in three minutes, exactly three
//!   runs recorded, across a restart in the middle.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use jarvis_tests::LocalNode;
use jarvis_tests::client::Client;
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// A node on `data`, playing `script`, each worker invocation given `invocation_secs`,
/// driving `concurrency` runs at once.
fn start_with(data: &Path, script: &Path, invocation_secs: &str, concurrency: &str) -> LocalNode {
    LocalNode::start(
        data,
        &[
            (
                "JARVIS_AI_MODELS",
                "smart=scripted:script;fast=scripted:echo;embed=scripted:hash",
            ),
            ("JARVIS_AI_SCRIPT", &script.to_string_lossy()),
            ("JARVIS_AGENTS_INVOCATION_SECONDS", invocation_secs),
            ("JARVIS_AGENTS_CONCURRENCY", concurrency),
            // Fifty runs started in a second, and watched: above the default request budget.
            ("JARVIS_RATE_LIMIT", "100000"),
        ],
    )
}

fn start(data: &Path, script: &Path, invocation_secs: &str) -> LocalNode {
    start_with(data, script, invocation_secs, "4")
}

/// Writes a script of `turns` tool-calling turns (each adding `per_turn` archive notes
/// tagged `tag`) and a final answer, each reply taking `delay_ms`.
fn write_script(
    dir: &Path,
    turns: usize,
    per_turn: usize,
    delay_ms: u64,
    tag: &str,
) -> std::path::PathBuf {
    let mut replies: Vec<Value> = (0..turns)
        .map(|turn| {
            let calls: Vec<Value> = (0..per_turn)
                .map(|i| {
                    json!({"name": "archive_add", "arguments": {
                        "title": format!("turn {turn} note {i}"),
                        "content": "written by an agent",
                        "tags": [tag],
                    }})
                })
                .collect();
            json!({"delay_ms": delay_ms, "text": format!("Turn {turn}."), "tool_calls": calls})
        })
        .collect();
    replies.push(json!({"delay_ms": delay_ms, "text": "All written."}));
    let path = dir.join("script.json");
    std::fs::write(&path, json!({ "replies": replies }).to_string()).expect("script");
    path
}

/// Every archive entry of `client`'s account tagged `tag`.
async fn notes(client: &Client, tag: &str) -> Vec<Value> {
    let mut notes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/archive?tag={tag}&limit=100&cursor={c}"),
            None => format!("/archive?tag={tag}&limit=100"),
        };
        let page = client.get(&path).await;
        notes.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return notes,
        }
    }
}

#[tokio::test]
async fn a_ten_step_run_completes_across_three_worker_invocations_each_step_once() {
    let dir = tempfile::tempdir().expect("dir");
    // Five model turns: the first calls two tools, the next three one each, the last
    // answers — ten steps. Each turn takes 0.9 s, so a 2 s invocation (which starts no step
    // within its last 0.5 s) holds at most two of them.
    let mut replies: Vec<Value> = Vec::new();
    for turn in 0..4 {
        let calls: Vec<Value> = (0..if turn == 0 { 2 } else { 1 })
            .map(|i| {
                json!({"name": "archive_add", "arguments": {
                    "title": format!("turn {turn} call {i}"), "content": "x", "tags": ["ten"]}})
            })
            .collect();
        replies
            .push(json!({"delay_ms": 900, "text": format!("Turn {turn}."), "tool_calls": calls}));
    }
    replies.push(json!({"delay_ms": 900, "text": "Ten steps done."}));
    let script = dir.path().join("script.json");
    std::fs::write(&script, json!({ "replies": replies }).to_string()).expect("script");
    let node = start(&dir.path().join("data"), &script, "2");
    let client = Client::sign_up(&node).await;

    let ws = node.base_url().replacen("http://", "ws://", 1);
    let (mut socket, _) = connect_async(format!("{ws}/ws?token={}", client.token))
        .await
        .expect("connect");
    socket
        .send(Message::text(
            json!({"action": "subscribe", "topics": ["agents"]}).to_string(),
        ))
        .await
        .expect("subscribe");

    let (status, run) = client
        .send(
            reqwest::Method::POST,
            "/agents/runs",
            Some(json!({"goal": "Write five notes", "tools": ["archive_add"]})),
        )
        .await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().expect("id").to_owned();

    let mut steps_heard = BTreeSet::new();
    let mut step_events = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let frame = tokio::time::timeout_at(deadline.into(), socket.next())
            .await
            .expect("the run ends within a minute")
            .expect("open")
            .expect("frame");
        let Message::Text(text) = frame else { continue };
        let event: Value = serde_json::from_str(&text).expect("JSON");
        if event["run"] != id.as_str() {
            continue;
        }
        match event["type"].as_str() {
            Some("agent.step") => {
                step_events += 1;
                steps_heard.insert(event["seq"].as_u64().expect("seq"));
            }
            Some("agent.status") if event["status"] == "succeeded" => break,
            Some("agent.status") => {
                assert!(
                    ["queued", "running"].contains(&event["status"].as_str().unwrap_or("")),
                    "{event}"
                );
            }
            _ => {}
        }
    }
    let detail = client.get(&format!("/agents/runs/{id}")).await;
    assert_eq!(detail["status"], "succeeded");
    assert_eq!(detail["result"], "Ten steps done.");
    assert!(
        detail["invocations"].as_u64().expect("invocations") >= 3,
        "{}",
        detail["invocations"]
    );
    let steps = detail["steps"].as_array().expect("steps");
    let seqs: Vec<u64> = steps
        .iter()
        .map(|s| s["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=10).collect::<Vec<u64>>(),
        "each step once, in order"
    );
    let kinds: Vec<&str> = steps
        .iter()
        .map(|s| s["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "model", "tool", "tool", "model", "tool", "model", "tool", "model", "tool", "model"
        ]
    );
    assert_eq!(detail["steps_taken"], 10);
    assert_eq!(step_events, 10, "one event a step");
    assert_eq!(steps_heard, (1..=10).collect());
    assert_eq!(notes(&client, "ten").await.len(), 5);
}

#[tokio::test]
async fn killed_workers_lose_no_run_and_repeat_no_side_effect() {
    const RUNS: usize = 50;
    const TURNS: usize = 3;
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let script = write_script(dir.path(), TURNS, 1, 300, "crash");
    // Two runs at a time: the fifty take about half a minute of work, long enough to be
    // killed in the middle of many of them.
    let mut node = start_with(&data, &script, "2", "2");
    let mut client = Client::sign_up(&node).await;
    let mut ids = BTreeSet::new();
    for i in 0..RUNS {
        let (status, run) = client
            .send(
                reqwest::Method::POST,
                "/agents/runs",
                Some(json!({"goal": format!("Write three notes, run {i}"), "tools": ["archive_add"]})),
            )
            .await;
        assert_eq!(status, 202, "{run}");
        ids.insert(run["id"].as_str().expect("id").to_owned());
    }
    // SIGKILL at random points while the runs go on, each time starting a new process on the
    // same data. (No request is made in between: each process leases a slice of the
    // account's request budget for the minute on its first one.)
    let mut rng = fastrand::Rng::with_seed(7);
    let kills = 10;
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.u64(1_500..4_000))).await;
        drop(node);
        node = start_with(&data, &script, "2", "2");
    }
    client.at(&node);
    let give_up = Instant::now() + Duration::from_secs(300);
    loop {
        let page = client.get("/agents/runs?limit=100").await;
        let runs = page["items"].as_array().expect("runs");
        assert_eq!(runs.len(), RUNS);
        assert!(runs.iter().all(|r| r["status"] != "failed"), "{page}");
        let finished = runs.iter().filter(|r| r["status"] == "succeeded").count();
        if finished == RUNS {
            break;
        }
        assert!(Instant::now() < give_up, "{finished} of {RUNS} runs ended");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let notes = notes(&client, "crash").await;
    assert_eq!(notes.len(), RUNS * TURNS, "each note made once");
    let titles: BTreeSet<String> = notes
        .iter()
        .map(|n| n["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(titles.len(), RUNS * TURNS);
    let mut resumed = 0;
    for id in &ids {
        let run = client.get(&format!("/agents/runs/{id}")).await;
        let steps = run["steps"].as_array().expect("steps");
        let tools = steps.iter().filter(|s| s["kind"] == "tool").count();
        assert_eq!(tools, TURNS, "{run}");
        assert!(steps.iter().all(|s| s["status"] == "completed"), "{run}");
        if run["invocations"].as_u64().unwrap_or(0) > 1 {
            resumed += 1;
        }
    }
    eprintln!("{kills} kills; {resumed} of {RUNS} runs were resumed by a later invocation");
    assert!(resumed > 0, "no run was cut off by a kill");
}

#[tokio::test]
async fn a_minutely_cron_automation_fires_three_times_in_three_minutes_across_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let script = write_script(dir.path(), 0, 0, 0, "unused");
    let mut node = start(&data, &script, "60");
    let mut client = Client::sign_up(&node).await;
    let created_at = Instant::now();
    let (status, automation) = client
        .send(
            reqwest::Method::POST,
            "/automations",
            Some(json!({
                "name": "minutely note",
                "schedule": "cron(0/1 * * * ? *)",
                "time_zone": "UTC",
                "action": {"type": "archive_note", "title": "tick", "content": "a minute passed", "tags": ["minutely"]},
            })),
        )
        .await;
    assert_eq!(status, 201, "{automation}");
    let id = automation["id"].as_str().expect("id").to_owned();
    let runs_path = format!("/automations/{id}/runs");
    let next: jiff::Timestamp = automation["next_run_at"]
        .as_str()
        .expect("next")
        .parse()
        .expect("RFC 3339");
    let first = Duration::try_from(next.duration_since(jiff::Timestamp::now())).unwrap_or_default();

    // After the first run, stop the process across the second minute's time, and start it
    // again: the second run fires late, on restart.
    tokio::time::sleep(first + Duration::from_secs(3)).await;
    let runs = client.get(&runs_path).await;
    assert_eq!(runs["items"].as_array().expect("runs").len(), 1, "{runs}");
    tokio::time::sleep(Duration::from_secs(54)).await;
    drop(node);
    tokio::time::sleep(Duration::from_secs(8)).await;
    node = start(&data, &script, "60");
    client.at(&node);

    let three_minutes = created_at + Duration::from_secs(180);
    tokio::time::sleep_until(three_minutes.into()).await;
    let runs = client.get(&runs_path).await;
    let items = runs["items"].as_array().expect("runs");
    assert_eq!(items.len(), 3, "{runs}");
    assert!(items.iter().all(|r| r["status"] == "succeeded"), "{runs}");
    let scheduled: BTreeSet<&str> = items
        .iter()
        .map(|r| r["scheduled_at"].as_str().expect("time"))
        .collect();
    assert_eq!(scheduled.len(), 3);
    for at in &scheduled {
        assert!(at.ends_with(":00.000Z"), "on the minute: {at}");
    }
    assert!(
        items
            .iter()
            .any(|r| r["detail"].as_str().is_some_and(|d| !d.contains("late"))),
        "{runs}"
    );
    assert_eq!(notes(&client, "minutely").await.len(), 3);
    drop(node);
}
