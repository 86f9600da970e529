//! WebSocket benchmark: `cargo bench -p jarvis-tests --bench realtime`, against a release
//! `jarvis-local` in its own process. Prints figures; asserts nothing.
//!
//! 1. Publish to deliver: `CONNECTIONS` (1,000) concurrent connections of one user, all
//!    subscribed to `archive`; each of `ROUNDS` archive writes over HTTP is timed from the
//!    moment its request is sent to the moment each connection receives `archive.changed`
//!    (so every round fans out to every connection), p50 and p99 over all deliveries.
//! 2. Memory per idle connection: the server's resident set with the connections open and
//!    subscribed, less before they opened, divided by their number.
//! 3. Messages per second through one connection: `PINGS` `ping` actions sent at once and
//!    every `pong` read back.
//!
//! `CONNECTIONS=2000 ROUNDS=100 cargo bench …` changes the load. The client and the server
//! each hold one socket per connection: the open-file limit must allow it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use jarvis_tests::LocalNode;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

#[tokio::main]
async fn main() {
    let connections = setting("CONNECTIONS", 1_000);
    let rounds = setting("ROUNDS", 50);
    let pings = setting("PINGS", 20_000);

    let binary = jarvis_tests::jarvis_local_release_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let node = LocalNode::start_binary(
        &binary,
        "127.0.0.1:0",
        &dir.path().join("data"),
        &[("JARVIS_RATE_LIMIT", "1000000"), ("JARVIS_LOG", "warn")],
    );
    let http = reqwest::Client::new();
    let account = json!({"email": "bench@example.com", "password": "correct horse battery staple"});
    http.post(node.url("/auth/register"))
        .json(&account)
        .send()
        .await
        .expect("register");
    let tokens: Value = http
        .post(node.url("/auth/login"))
        .json(&account)
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("tokens");
    let token = tokens["access_token"].as_str().expect("token").to_owned();
    let ws_url = format!(
        "{}/ws?token={token}",
        node.base_url().replacen("http://", "ws://", 1)
    );

    // Warm the server's paths once, then measure its memory before the connections.
    let (mut warm, _) = connect_async(&ws_url).await.expect("connect");
    warm.send(Message::text(r#"{"action":"ping"}"#))
        .await
        .expect("send");
    warm.next().await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss(node.pid());

    // 1,000 connections, each subscribed to `archive`, each read by its own task that
    // reports when an `archive.changed` arrives.
    let (arrivals, mut arrived) = mpsc::unbounded_channel::<(String, Instant)>();
    let opened = Instant::now();
    let mut readers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (mut socket, _) = connect_async(&ws_url).await.expect("connect");
        socket
            .send(Message::text(
                r#"{"action":"subscribe","topics":["archive"]}"#,
            ))
            .await
            .expect("subscribe");
        loop {
            if let Some(Ok(Message::Text(text))) = socket.next().await
                && text.contains("\"subscribed\"")
            {
                break;
            }
        }
        let arrivals = arrivals.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(frame)) = socket.next().await {
                if let Message::Text(text) = frame {
                    let at = Instant::now();
                    if let Ok(message) = serde_json::from_str::<Value>(&text)
                        && let Some(id) = message["id"].as_str()
                    {
                        let _ = arrivals.send((id.to_owned(), at));
                    }
                }
            }
        }));
    }
    let setup = opened.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss(node.pid());

    let mut latencies = Vec::with_capacity(connections * rounds);
    let mut early: HashMap<String, Vec<Instant>> = HashMap::new();
    for round in 0..rounds {
        let sent = Instant::now();
        let created: Value = http
            .post(node.url("/archive"))
            .bearer_auth(&token)
            .json(&json!({"kind": "note", "title": format!("round {round}"), "content": "x"}))
            .send()
            .await
            .expect("write")
            .json()
            .await
            .expect("entry");
        let id = created["id"].as_str().expect("id").to_owned();
        let mut got = early.remove(&id).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < connections {
            let Ok(Some((heard, at))) =
                tokio::time::timeout_at(deadline.into(), arrived.recv()).await
            else {
                eprintln!(
                    "round {round}: only {} of {connections} deliveries within 10 s",
                    got.len()
                );
                break;
            };
            if heard == id {
                got.push(at);
            } else {
                early.entry(heard).or_default().push(at);
            }
        }
        latencies.extend(got.into_iter().map(|at| at.saturating_duration_since(sent)));
    }
    latencies.sort_unstable();

    // Messages per second through one connection.
    let (one, _) = connect_async(&ws_url).await.expect("connect");
    let started = Instant::now();
    let (mut sink, mut stream) = one.split();
    let sender = tokio::spawn(async move {
        for i in 0..pings {
            let ping = format!(r#"{{"action":"ping","id":{i}}}"#);
            if sink.send(Message::text(ping)).await.is_err() {
                break;
            }
        }
        sink
    });
    let mut pongs = 0;
    while pongs < pings {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if text.contains("\"pong\"") => pongs += 1,
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    let through_one = pongs as f64 / started.elapsed().as_secs_f64();
    drop(sender.await);

    println!("WebSocket API, release jarvis-local on embedded libSQL, one process, loopback");
    println!(
        "  connections                 {connections} (one user, all subscribed to archive), opened and subscribed in {:.1} s",
        setup.as_secs_f64()
    );
    println!(
        "  publish to deliver          p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms   ({} deliveries, {rounds} writes)",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
        latencies.len()
    );
    println!(
        "  memory per idle connection  {:.1} KiB   (server RSS {:.1} MiB before, {:.1} MiB with the connections)",
        (idle.saturating_sub(before)) as f64 / connections as f64 / 1024.0,
        before as f64 / 1_048_576.0,
        idle as f64 / 1_048_576.0
    );
    println!(
        "  through one connection      {through_one:.0} ping/pong exchanges per second ({pongs} of {pings})"
    );
    for reader in readers {
        reader.abort();
    }
}
