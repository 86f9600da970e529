use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jarvis_config::StoreConfig;
use jarvis_crdt::ReplicaId;
use jarvis_identity::delegation::Delegation;
use jarvis_store::Site;
use jarvis_store::clock::Clock;

use crate::fire::Status;
use crate::runs;
use crate::*;

async fn site_named(dir: &tempfile::TempDir, replica: &str) -> Site {
    let store = jarvis_store::open(&StoreConfig::Libsql {
        path: dir.path().join("jarvis.db"),
    })
    .await
    .expect("store");
    let replica = ReplicaId::from_name(replica);
    Site {
        store,
        replica,
        clock: Arc::new(Clock::new(replica)),
    }
}

async fn automations(dir: &tempfile::TempDir) -> Automations {
    Automations::new(site_named(dir, "here").await, 5)
}

fn ada() -> Delegation {
    Delegation {
        user_id: "u1".into(),
        scopes: vec!["automations:write".into(), "archive:write".into()],
        api_key: None,
    }
}

fn notify(schedule: &str) -> NewAutomation {
    NewAutomation {
        name: "stretch".into(),
        schedule: schedule.into(),
        time_zone: "UTC".into(),
        action: Action::Notify {
            message: "Stand up and stretch".into(),
        },
        enabled: true,
    }
}

/// Records every firing; fails the first `fail_first` of them with "try again".
#[derive(Default)]
struct Recorder {
    fired: Mutex<Vec<(String, u64, u64)>>,
    fail_first: Mutex<usize>,
}

#[async_trait]
impl Executor for Recorder {
    async fn execute(&self, fired: &Fired<'_>) -> Result<Outcome, String> {
        {
            let mut failing = self.fail_first.lock().expect("lock");
            if *failing > 0 {
                *failing -= 1;
                return Err("the queue is down".into());
            }
        }
        self.fired.lock().expect("lock").push((
            fired.run_id.to_owned(),
            fired.scheduled_at_ms,
            fired.attempt,
        ));
        Ok(Outcome::succeeded("notified"))
    }
}

impl Recorder {
    fn times(&self) -> Vec<u64> {
        self.fired
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, at, _)| *at)
            .collect()
    }
}

const MINUTE: u64 = 60_000;

#[tokio::test]
async fn a_due_automation_fires_once_for_its_time_and_indexes_the_next() {
    let dir = tempfile::tempdir().expect("dir");
    let automations = automations(&dir).await;
    let made = automations
        .create(&ada(), notify("rate(5 minutes)"), None)
        .await
        .expect("made");
    let first = made.next_after(made.start_ms - 1).expect("fires");
    assert_eq!(first, made.start_ms, "a rate's first run is at its start");
    let recorder = Recorder::default();

    let early = automations
        .fire_due(&recorder, first.saturating_sub(1))
        .await
        .expect("fires");
    assert_eq!(early.fired, 0);
    let on_time = automations.fire_due(&recorder, first).await.expect("fires");
    assert_eq!(on_time.fired, 1);
    let again = automations
        .fire_due(&recorder, first + 10)
        .await
        .expect("fires");
    assert_eq!(again.fired, 0, "a time fires once");
    assert_eq!(recorder.times(), vec![first]);

    let second = automations
        .fire_due(&recorder, first + 5 * MINUTE)
        .await
        .expect("fires");
    assert_eq!(second.fired, 1);
    assert_eq!(recorder.times(), vec![first, first + 5 * MINUTE]);

    let history = runs::list(automations.site(), "u1", &made.id, None, 10)
        .await
        .expect("runs");
    let times: Vec<u64> = history.items.iter().map(|r| r.scheduled_at_ms).collect();
    assert_eq!(times, vec![first + 5 * MINUTE, first], "newest first");
    assert!(
        history
            .items
            .iter()
            .all(|r| r.status == Some(Status::Succeeded) && r.attempts == 1)
    );
}

#[tokio::test]
async fn an_action_that_asks_to_be_tried_again_runs_again_after_its_lease_under_the_same_run_id() {
    let dir = tempfile::tempdir().expect("dir");
    let automations = automations(&dir).await;
    let made = automations
        .create(&ada(), notify("rate(1 day)"), None)
        .await
        .expect("made");
    let at = made.start_ms;
    let recorder = Recorder {
        fail_first: Mutex::new(1),
        ..Recorder::default()
    };
    let report = automations.fire_due(&recorder, at).await.expect("round");
    assert_eq!(report.deferred, 1);
    let soon = automations
        .fire_due(&recorder, at + 1_000)
        .await
        .expect("round");
    assert_eq!(
        (soon.fired, soon.deferred),
        (0, 1),
        "claimed within its lease: left alone"
    );
    let later = automations
        .fire_due(&recorder, at + runs::LEASE_MS + 1)
        .await
        .expect("round");
    assert_eq!(later.fired, 1);
    let fired = recorder.fired.lock().expect("lock").clone();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].0, runs::run_id(&made.id, at));
    assert_eq!(fired[0].2, 2, "the second attempt");
}

#[tokio::test]
async fn a_firer_that_was_down_runs_only_the_latest_missed_time_late() {
    let dir = tempfile::tempdir().expect("dir");
    let automations = automations(&dir).await;
    let made = automations
        .create(&ada(), notify("rate(1 minute)"), None)
        .await
        .expect("made");
    let recorder = Recorder::default();
    let start = made.start_ms;
    // Down for ten minutes and a bit.
    let now = start + 10 * MINUTE + 7_000;
    let mut total = Report::default();
    for _ in 0..3 {
        let report = automations.fire_due(&recorder, now).await.expect("round");
        total.fired += report.fired;
        total.superseded += report.superseded;
    }
    assert_eq!(recorder.times(), vec![start + 10 * MINUTE]);
    assert_eq!(total.superseded, 1);
    let run = runs::get(automations.site(), "u1", &made.id, start + 10 * MINUTE)
        .await
        .expect("read")
        .expect("the late run");
    assert_eq!(run.status, Some(Status::Succeeded));
}

#[tokio::test]
async fn a_cron_in_a_time_zone_fires_at_that_zones_wall_clock_time() {
    let dir = tempfile::tempdir().expect("dir");
    let automations = automations(&dir).await;
    let mut new = notify("cron(30 9 * * ? *)");
    new.time_zone = "Europe/Paris".into();
    let made = automations.create(&ada(), new, None).await.expect("made");
    let next = made.next_after(made.start_ms - 1).expect("fires");
    let civil = jiff::tz::TimeZone::get("Europe/Paris")
        .expect("zone")
        .to_datetime(
            jiff::Timestamp::from_millisecond(i64::try_from(next).expect("ms")).expect("time"),
        );
    assert_eq!((civil.hour(), civil.minute(), civil.second()), (9, 30, 0));
    let recorder = Recorder::default();
    // The firer has been running all along: its cursor is just before the time.
    crate::due::advance(automations.site(), crate::due::minute_of(next) - 1)
        .await
        .expect("cursor");
    automations.fire_due(&recorder, next).await.expect("round");
    assert_eq!(recorder.times(), vec![next]);
}

#[tokio::test]
async fn a_changed_automation_fires_on_its_new_schedule_and_never_on_its_old_one() {
    let dir = tempfile::tempdir().expect("dir");
    let automations = automations(&dir).await;
    let made = automations
        .create(&ada(), notify("rate(1 day)"), None)
        .await
        .expect("made");
    let old_time = made.start_ms;
    let changed = automations
        .update(
            &ada(),
            &made.id,
            Change {
                schedule: Some("rate(2 hours)".into()),
                ..Change::default()
            },
        )
        .await
        .expect("changed");
    assert_ne!(changed.generation, made.generation);
    let recorder = Recorder::default();
    automations
        .fire_due(&recorder, changed.start_ms)
        .await
        .expect("round");
    assert_eq!(recorder.times(), vec![changed.start_ms]);
    // A day on, the old schedule's time passes without a run; the new one ran every two
    // hours (only the latest of them, late, since this firer was away).
    for _ in 0..8 {
        // A round reads at most four hours of minutes: a day takes several.
        automations
            .fire_due(&recorder, old_time + 24 * 60 * MINUTE)
            .await
            .expect("round");
    }
    let times = recorder.times();
    assert_eq!(times.len(), 2, "{times:?}");
    assert_eq!((times[1] - changed.start_ms) % (120 * MINUTE), 0);
}

#[tokio::test]
async fn a_renamed_automation_keeps_its_pending_time_and_fires_with_its_new_action() {
    let dir = tempfile::tempdir().expect("dir");
    let automations = automations(&dir).await;
    let made = automations
        .create(&ada(), notify("rate(1 hour)"), None)
        .await
        .expect("made");
    let changed = automations
        .update(
            &ada(),
            &made.id,
            Change {
                name: Some("renamed".into()),
                action: Some(Action::Notify {
                    message: "New words".into(),
                }),
                ..Change::default()
            },
        )
        .await
        .expect("changed");
    assert_eq!(changed.generation, made.generation);
    assert_eq!(changed.start_ms, made.start_ms);
    let recorder = Recorder::default();
    let report = automations
        .fire_due(&recorder, made.start_ms + 1)
        .await
        .expect("round");
    assert_eq!(report.fired, 1);
    assert_eq!(recorder.times(), vec![made.start_ms]);
}

#[tokio::test]
async fn disabled_and_deleted_automations_do_not_fire() {
    let dir = tempfile::tempdir().expect("dir");
    let automations = automations(&dir).await;
    let disabled = automations
        .create(&ada(), notify("rate(1 hour)"), None)
        .await
        .expect("made");
    automations
        .update(
            &ada(),
            &disabled.id,
            Change {
                enabled: Some(false),
                ..Change::default()
            },
        )
        .await
        .expect("disabled");
    let deleted = automations
        .create(&ada(), notify("rate(1 hour)"), None)
        .await
        .expect("made");
    automations
        .delete("u1", &deleted.id)
        .await
        .expect("deleted");
    assert!(matches!(
        automations.get("u1", &deleted.id).await,
        Err(AutomationError::NotFound)
    ));
    let recorder = Recorder::default();
    let now = jarvis_crdt::hlc::system_time_ms() + 1_000;
    let report = automations.fire_due(&recorder, now).await.expect("round");
    assert_eq!(report.fired, 0);
    assert!(recorder.times().is_empty());
    assert!(matches!(
        automations.delete("u1", &deleted.id).await,
        Err(AutomationError::NotFound)
    ));
}

#[tokio::test]
async fn an_automation_made_on_another_deployment_fires_there_not_here() {
    let dir = tempfile::tempdir().expect("dir");
    let elsewhere = Automations::new(site_named(&dir, "elsewhere").await, 5);
    let made = elsewhere
        .create(&ada(), notify("rate(1 hour)"), None)
        .await
        .expect("made");
    // The same store, read by this deployment (as if the record came by sync), with the
    // entry the other deployment indexed copied here too.
    let here = automations(&dir).await;
    let recorder = Recorder::default();
    let report = here
        .fire_due(&recorder, made.start_ms + 1)
        .await
        .expect("round");
    assert_eq!(report.fired, 0);
    assert!(report.dropped >= 1);
}

#[tokio::test]
async fn two_firers_at_once_run_each_time_once() {
    let dir = tempfile::tempdir().expect("dir");
    let a = automations(&dir).await;
    let b = Automations::new(a.site().clone(), 5);
    let made = a
        .create(&ada(), notify("rate(1 hour)"), None)
        .await
        .expect("made");
    let recorder = Recorder::default();
    let at = made.start_ms;
    let (x, y) = tokio::join!(a.fire_due(&recorder, at), b.fire_due(&recorder, at));
    x.expect("a");
    y.expect("b");
    assert_eq!(recorder.times(), vec![at]);
}

#[tokio::test]
async fn bad_schedules_time_zones_names_and_past_times_are_refused_by_field() {
    let dir = tempfile::tempdir().expect("dir");
    let automations = automations(&dir).await;
    let refused = |result: Result<Automation, AutomationError>| match result {
        Err(AutomationError::Invalid { field, .. }) => field,
        Err(AutomationError::NeverFires(_)) => "never",
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refused(
            automations
                .create(&ada(), notify("rate(1 minutes)"), None)
                .await
        ),
        "schedule"
    );
    let mut zone = notify("rate(1 hour)");
    zone.time_zone = "Mars/Olympus".into();
    assert_eq!(
        refused(automations.create(&ada(), zone, None).await),
        "time_zone"
    );
    let mut name = notify("rate(1 hour)");
    name.name = String::new();
    assert_eq!(
        refused(automations.create(&ada(), name, None).await),
        "name"
    );
    assert_eq!(
        refused(
            automations
                .create(&ada(), notify("at(2001-01-01T00:00:00)"), None)
                .await
        ),
        "never"
    );
    let mut silent = notify("rate(1 hour)");
    silent.action = Action::Notify {
        message: String::new(),
    };
    assert_eq!(
        refused(automations.create(&ada(), silent, None).await),
        "action.message"
    );
}

#[tokio::test]
async fn a_user_keeps_at_most_the_allowed_number_and_a_repeated_make_makes_one() {
    let dir = tempfile::tempdir().expect("dir");
    let automations = automations(&dir).await;
    let id = uuid::Uuid::new_v4();
    let first = automations
        .create(&ada(), notify("rate(1 hour)"), Some(id))
        .await
        .expect("made");
    let again = automations
        .create(&ada(), notify("rate(2 hours)"), Some(id))
        .await
        .expect("the same");
    assert_eq!(first, again);
    for _ in 0..4 {
        automations
            .create(&ada(), notify("rate(1 hour)"), None)
            .await
            .expect("made");
    }
    assert!(matches!(
        automations
            .create(&ada(), notify("rate(1 hour)"), None)
            .await,
        Err(AutomationError::TooMany(5))
    ));
    let listed = automations.list("u1", None, 10).await.expect("list");
    assert_eq!(listed.items.len(), 5);
    let created: Vec<u64> = listed
        .items
        .iter()
        .filter(|a| a.id != id.hyphenated().to_string())
        .map(|a| a.created_at_ms)
        .collect();
    let mut newest_first = created.clone();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(created, newest_first);
}

#[test]
fn actions_are_stored_tagged_by_type_and_refuse_unknown_fields() {
    let action = Action::ArchiveNote {
        title: "Weekly review".into(),
        content: "What went well?".into(),
        tags: vec!["review".into()],
    };
    assert_eq!(
        action.encode(),
        r#"{"type":"archive_note","title":"Weekly review","content":"What went well?","tags":["review"]}"#
    );
    assert_eq!(Action::decode(&action.encode()), Some(action));
    assert_eq!(
        Action::decode(r#"{"type":"notify","message":"hi","extra":1}"#),
        None
    );
    assert_eq!(Action::decode(r#"{"type":"reboot"}"#), None);
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
fn the_stored_automation_is_golden_and_reads_back() {
    let automation = Automation {
        id: "5b1c1d3e-0000-8000-8000-000000000001".into(),
        user: "u1".into(),
        name: "Weekly review".into(),
        schedule: jarvis_schedule::Schedule::parse("cron(0 18 ? * FRI *)", "Europe/Oslo")
            .expect("schedule"),
        action: Action::Agent {
            goal: "Summarise this week's archive notes".into(),
            tools: Some(vec!["archive_search".into()]),
            max_steps: Some(8),
            token_budget: None,
        },
        enabled: true,
        start_ms: 1_733_000_000_000,
        generation: "9f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e".into(),
        home: "0000000000000001".into(),
        delegation: ada(),
        created_at_ms: 1_733_000_000_000,
        updated_at_ms: 1_733_000_000_000,
    };
    let fields = automation.stored_fields();
    golden(
        "automation.json",
        &serde_json::to_string_pretty(&fields).expect("json"),
    );
    let mut record = jarvis_crdt::Record::new();
    let replica = ReplicaId::from_name("g");
    let stamp = jarvis_crdt::Timestamp::new(1_733_000_000_000, 0, replica);
    record.create(replica, stamp, fields);
    let back = Automation::from_record("u1", &automation.id, &record).expect("reads");
    assert_eq!(back, automation);
}

#[tokio::test]
async fn the_stored_run_and_due_entry_are_golden() {
    let dir = tempfile::tempdir().expect("dir");
    let site = site_named(&dir, "g").await;
    let key = runs::key("u1", "a1", 1_733_000_000_000).expect("key");
    let entry = crate::due::Entry {
        at_ms: 4_102_444_800_000,
        user: "u1".into(),
        automation: "a1".into(),
        generation: "g1".into(),
    };
    crate::due::put(&site, &entry).await.expect("put");
    runs::claim(&site, "u1", "a1", 1_733_000_000_000, 1_733_000_000_500)
        .await
        .expect("claim");
    let outcome = Outcome {
        status: Status::Succeeded,
        detail: "started agent run r1".into(),
        agent_run: Some("r1".into()),
    };
    runs::finish(
        &site,
        "u1",
        "a1",
        1_733_000_000_000,
        &outcome,
        1_733_000_001_000,
    )
    .await
    .expect("finish");
    let run = site
        .store
        .read::<jarvis_crdt::Entity>(&key)
        .await
        .expect("read")
        .expect("run");
    let fields: Vec<(&str, &str)> = run.state.fields().collect();
    let levels: Vec<(&str, u64)> = run.state.levels().collect();
    let layout = serde_json::json!({
        "run_key": [key.partition(), key.sort()],
        "run_fields": fields,
        "run_levels": levels,
        "due_key": [
            crate::due::bucket(crate::due::minute_of(entry.at_ms)),
            format!("{:013}#{}#{}", entry.at_ms, entry.user, entry.automation),
        ],
    });
    golden(
        "run.json",
        &serde_json::to_string_pretty(&layout).expect("json"),
    );
    let listed = crate::due::due_page(
        &site,
        crate::due::minute_of(entry.at_ms),
        u64::MAX,
        None,
        10,
    )
    .await
    .expect("page");
    assert_eq!(listed.0, vec![entry]);
}
