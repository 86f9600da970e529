use super::*;
use jarvis_config::Config;
use jarvis_store::{Key, Write};

async fn state() -> (AppState, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        Config::from_vars([("JARVIS_DATA_DIR", dir.path().to_string_lossy())]).expect("config");
    let state = AppState::from_config(config).await.expect("state");
    (state, dir)
}

#[test]
fn every_job_parses_and_fits_eventbridge_schedulers_retry_limits() {
    for job in &SYSTEM_JOBS {
        let schedule = job.parsed().expect(job.name);
        assert!(job.retries <= 185, "{}", job.name);
        assert!((60..=86_400).contains(&job.max_age_secs), "{}", job.name);
        if let Some(interval) = schedule.interval() {
            assert!(
                u64::from(job.max_age_secs) <= interval.as_secs(),
                "{}: a retry may overlap the next run",
                job.name
            );
        }
    }
    let mut names: Vec<&str> = SYSTEM_JOBS.iter().map(|j| j.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), SYSTEM_JOBS.len(), "names are unique");
}

#[test]
fn a_schedulers_input_names_one_job_and_nothing_else() {
    let fire: Fire = serde_json::from_str(r#"{"job":"feed-prune"}"#).expect("input");
    assert_eq!(fire.job, "feed-prune");
    assert!(serde_json::from_str::<Fire>(r#"{"job":"feed-prune","extra":1}"#).is_err());
    assert!(serde_json::from_str::<Fire>("{}").is_err());
}

#[tokio::test]
async fn an_unknown_job_is_refused_by_name() {
    let (state, _dir) = state().await;
    let err = run(&state, "reboot").await.expect_err("unknown");
    assert!(matches!(err, JobError::Unknown(ref n) if n == "reboot"));
}

#[tokio::test]
async fn the_expiry_job_purges_what_has_expired_and_keeps_the_rest() {
    let (state, _dir) = state().await;
    let now = jarvis_store::now_secs();
    for (sort, expires_at) in [
        ("gone", Some(now - 10)),
        ("kept", Some(now + 3_600)),
        ("forever", None),
    ] {
        state
            .store
            .put(
                &Key::new("user#u1", sort).expect("key"),
                Write {
                    expected_version: 0,
                    state: b"state",
                    delta: b"delta",
                    expires_at,
                },
            )
            .await
            .expect("put");
    }
    let outcome = run(&state, "expiry-purge").await.expect("runs");
    assert_eq!(outcome.detail["purged"], 1);
    let again = run(&state, "expiry-purge").await.expect("runs");
    assert_eq!(again.detail["purged"], 0, "a second run finds nothing more");
    for sort in ["kept", "forever"] {
        assert!(
            state
                .store
                .get(&Key::new("user#u1", sort).expect("key"))
                .await
                .expect("get")
                .is_some(),
            "{sort}"
        );
    }
}

#[tokio::test]
async fn the_feed_job_keeps_changes_inside_the_retention() {
    let (state, _dir) = state().await;
    state
        .store
        .put(
            &Key::new("user#u1", "note").expect("key"),
            Write {
                expected_version: 0,
                state: b"state",
                delta: b"delta",
                expires_at: None,
            },
        )
        .await
        .expect("put");
    let outcome = run(&state, "feed-prune").await.expect("runs");
    assert_eq!(outcome.detail["pruned"], 0, "a change of just now is kept");
    assert_eq!(state.store.changes(0, 10).await.expect("feed").len(), 1);
}

#[tokio::test]
async fn the_health_probe_reports_the_status_score_and_what_is_not_ok() {
    let (state, dir) = state().await;
    // No secrets file yet: the signing keys cannot be read.
    let outcome = run(&state, "health-probe").await.expect("runs");
    assert_eq!(outcome.detail["status"], "down");
    assert!(outcome.detail["score"].as_u64().expect("score") < 100);
    assert!(
        !outcome.detail["not_ok"]
            .as_array()
            .expect("names")
            .is_empty(),
        "{outcome:?}"
    );
    jarvis_secrets::ensure_local_file(&dir.path().join("secrets.json")).expect("secrets file");
    let outcome = run(&state, "health-probe").await.expect("runs");
    assert_eq!(outcome.detail["status"], "ok", "{outcome:?}");
    assert_eq!(outcome.detail["score"], 100);
}

#[tokio::test]
async fn a_sync_round_without_peers_pulls_nothing() {
    let (state, _dir) = state().await;
    let outcome = run(&state, "sync-round").await.expect("runs");
    assert_eq!(
        outcome.detail,
        serde_json::json!({"peers": 0, "merged": 0, "failed": 0})
    );
    assert!(
        local_timings(&state)
            .expect("timings")
            .iter()
            .all(|(job, _)| job.name != "sync-round"),
        "jarvis-local runs no sync rounds without peers"
    );
}

#[test]
fn a_local_interval_fires_at_the_start_and_every_interval_after() {
    let every = Timing::Every(Duration::from_secs(30));
    let start: Timestamp = "2026-12-04T12:00:00Z".parse().expect("ts");
    let before = start.checked_sub(SignedDuration::from_secs(5)).expect("ts");
    assert_eq!(every.next_after(before, start), Some(start));
    assert_eq!(
        every.next_after(start, start),
        Some("2026-12-04T12:00:30Z".parse().expect("ts"))
    );
    assert_eq!(
        every.next_after("2026-12-04T12:01:10Z".parse().expect("ts"), start),
        Some("2026-12-04T12:01:30Z".parse().expect("ts"))
    );
}

#[tokio::test]
async fn the_local_scheduler_pulls_peers_at_its_start_and_every_interval_until_shutdown() {
    // A peer that counts the pulls it is asked for.
    let (seen, mut heard) = tokio::sync::mpsc::channel::<()>(16);
    let peer = axum::Router::new().route(
        "/sync/changes",
        axum::routing::get(move || {
            let seen = seen.clone();
            async move {
                let _ = seen.send(()).await;
                axum::Json(serde_json::json!({
                    "replica_id": "peer", "changes": [], "next_cursor": "0"
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, peer).await });
    let dir = tempfile::tempdir().expect("tempdir");
    let peers = format!("http://{addr}");
    let config = Config::from_vars([
        ("JARVIS_DATA_DIR", dir.path().to_string_lossy().into_owned()),
        ("JARVIS_PEERS", peers),
        ("JARVIS_SYNC_TOKEN", "0123456789abcdef-secret".to_owned()),
        ("JARVIS_SYNC_INTERVAL", "1".to_owned()),
    ])
    .expect("config");
    let state = AppState::from_config(config).await.expect("state");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = std::time::Instant::now();
    let running = tokio::spawn(run_locally(state, async {
        let _ = stopped.await;
    }));
    for pull in ["at the start", "a second later"] {
        tokio::time::timeout(Duration::from_secs(10), heard.recv())
            .await
            .unwrap_or_else(|_| panic!("no pull {pull}"))
            .expect("a pull");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the second pull waited"
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the scheduler stops on shutdown")
        .expect("no panic");
}
