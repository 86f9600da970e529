//! Retries, breakers and fallback, against providers that fail on cue. Time is paused, so
//! backoffs and cool-downs are exact and instant.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use jarvis_ai::resilience::{BreakerState, Chain, Policy};
use jarvis_ai::{
    ChatRequest, Event, EventStream, Message, Provider, ProviderError, StopReason, collect,
};
use tokio::time::Instant;

/// What a provider does on one call.
enum Outcome {
    Fails(ProviderError),
    Answers(&'static str),
    /// Sends text, then the connection breaks.
    Breaks(&'static str),
    /// Never answers.
    Hangs,
}

struct Flaky {
    name: &'static str,
    script: Mutex<VecDeque<Outcome>>,
    calls: AtomicUsize,
    models: Mutex<Vec<String>>,
}

impl Flaky {
    fn new(name: &'static str, script: Vec<Outcome>) -> Arc<Self> {
        Arc::new(Self {
            name,
            script: Mutex::new(script.into()),
            calls: AtomicUsize::new(0),
            models: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Provider for Flaky {
    fn name(&self) -> &str {
        self.name
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.models.lock().expect("lock").push(request.model);
        let outcome = self
            .script
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or(Outcome::Answers("default"));
        let done = Event::Done {
            stop_reason: StopReason::EndTurn,
        };
        match outcome {
            Outcome::Fails(err) => Err(err),
            Outcome::Answers(text) => Ok(Box::pin(futures_util::stream::iter(vec![
                Event::TextDelta { text: text.into() },
                done,
            ]))),
            Outcome::Breaks(text) => Ok(Box::pin(futures_util::stream::iter(vec![
                Event::TextDelta { text: text.into() },
                Event::Error(ProviderError::Unreachable {
                    message: "connection reset".into(),
                }),
            ]))),
            Outcome::Hangs => Ok(Box::pin(futures_util::stream::pending())),
        }
    }
}

fn policy() -> Policy {
    Policy {
        attempts: 3,
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(10),
        first_event: Duration::from_secs(5),
        idle: Duration::from_secs(5),
        total: Duration::from_secs(120),
        breaker_threshold: 3,
        breaker_cooldown: Duration::from_secs(30),
    }
}

fn chain(targets: &[(&Arc<Flaky>, &str)], policy: Policy) -> Chain {
    Chain::new(
        targets
            .iter()
            .map(|(p, m)| (Arc::clone(p) as Arc<dyn Provider>, (*m).to_owned()))
            .collect(),
        policy,
    )
}

fn ask() -> ChatRequest {
    ChatRequest {
        model: "smart".into(),
        messages: vec![Message::user("hello")],
        ..ChatRequest::default()
    }
}

async fn text(chain: &Chain) -> Result<String, ProviderError> {
    Ok(collect(chain.stream(ask()).await?).await?.text)
}

#[tokio::test(start_paused = true)]
async fn a_429_is_retried_after_its_retry_after_then_succeeds() {
    let primary = Flaky::new(
        "primary",
        vec![
            Outcome::Fails(ProviderError::RateLimited {
                retry_after_secs: Some(7),
            }),
            Outcome::Answers("hi"),
        ],
    );
    let chain = chain(&[(&primary, "gpt-4o")], policy());
    let started = Instant::now();
    assert_eq!(text(&chain).await, Ok("hi".into()));
    assert_eq!(started.elapsed(), Duration::from_secs(7));
    assert_eq!(primary.calls(), 2);
    assert_eq!(
        primary.models.lock().expect("lock").as_slice(),
        ["gpt-4o", "gpt-4o"],
        "the target's model replaces the alias"
    );
}

#[tokio::test(start_paused = true)]
async fn a_target_that_keeps_failing_hands_over_to_the_next_one() {
    let failed = || Outcome::Fails(ProviderError::Failed { status: 500 });
    let primary = Flaky::new("primary", vec![failed(), failed(), failed()]);
    let fallback = Flaky::new("fallback", vec![Outcome::Answers("from the fallback")]);
    let chain = chain(&[(&primary, "a"), (&fallback, "b")], policy());
    assert_eq!(text(&chain).await, Ok("from the fallback".into()));
    assert_eq!(primary.calls(), 3, "every attempt was used");
    assert_eq!(fallback.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_is_not_retried_but_falls_back() {
    let primary = Flaky::new(
        "primary",
        vec![Outcome::Fails(ProviderError::Refused {
            status: 401,
            message: "bad key".into(),
        })],
    );
    let fallback = Flaky::new("fallback", vec![Outcome::Answers("ok")]);
    let chain = chain(&[(&primary, "a"), (&fallback, "b")], policy());
    assert_eq!(text(&chain).await, Ok("ok".into()));
    assert_eq!(primary.calls(), 1);
    assert_eq!(chain.breakers()[0].2, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_reply_broken_after_text_was_sent_ends_with_an_error_and_is_not_retried() {
    let primary = Flaky::new("primary", vec![Outcome::Breaks("Half a")]);
    let fallback = Flaky::new("fallback", vec![Outcome::Answers("never")]);
    let chain = chain(&[(&primary, "a"), (&fallback, "b")], policy());
    let events: Vec<Event> = chain.stream(ask()).await.expect("stream").collect().await;
    assert_eq!(
        events,
        vec![
            Event::TextDelta {
                text: "Half a".into()
            },
            Event::Error(ProviderError::Unreachable {
                message: "connection reset".into()
            }),
        ]
    );
    assert_eq!(primary.calls(), 1);
    assert_eq!(fallback.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn no_first_event_in_time_counts_as_a_failure_and_is_retried() {
    let primary = Flaky::new("primary", vec![Outcome::Hangs, Outcome::Answers("late")]);
    let chain = chain(&[(&primary, "a")], policy());
    let started = Instant::now();
    assert_eq!(text(&chain).await, Ok("late".into()));
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_eq!(primary.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_after_the_threshold_skips_its_target_then_half_opens_for_one_probe() {
    let failed = || Outcome::Fails(ProviderError::Failed { status: 503 });
    let primary = Flaky::new(
        "primary",
        vec![failed(), failed(), failed(), Outcome::Answers("recovered")],
    );
    let fallback = Flaky::new(
        "fallback",
        vec![Outcome::Answers("fb 1"), Outcome::Answers("fb 2")],
    );
    let chain = chain(&[(&primary, "a"), (&fallback, "b")], policy());

    assert_eq!(text(&chain).await, Ok("fb 1".into()));
    assert_eq!(primary.calls(), 3);
    assert_eq!(chain.breakers()[0].2, BreakerState::Open);

    // Open: the primary is not called at all.
    assert_eq!(text(&chain).await, Ok("fb 2".into()));
    assert_eq!(primary.calls(), 3);

    // After the cool-down, one probe goes through; its success closes the breaker.
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(chain.breakers()[0].2, BreakerState::HalfOpen);
    assert_eq!(text(&chain).await, Ok("recovered".into()));
    assert_eq!(primary.calls(), 4);
    assert_eq!(chain.breakers()[0].2, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_the_breaker_again() {
    let failed = || Outcome::Fails(ProviderError::Failed { status: 503 });
    let primary = Flaky::new("primary", vec![failed(), failed(), failed(), failed()]);
    let fallback = Flaky::new("fallback", Vec::new());
    let mut policy = policy();
    policy.attempts = 1;
    let chain = chain(&[(&primary, "a"), (&fallback, "b")], policy);
    for _ in 0..3 {
        text(&chain).await.expect("the fallback answers");
    }
    assert_eq!(chain.breakers()[0].2, BreakerState::Open);
    tokio::time::advance(Duration::from_secs(31)).await;
    text(&chain).await.expect("the fallback answers");
    assert_eq!(primary.calls(), 4, "exactly one probe");
    assert_eq!(chain.breakers()[0].2, BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn when_every_target_fails_the_last_error_is_returned() {
    let primary = Flaky::new(
        "primary",
        vec![Outcome::Fails(ProviderError::Failed { status: 502 })],
    );
    let mut policy = policy();
    policy.attempts = 1;
    let chain = chain(&[(&primary, "a")], policy);
    assert_eq!(
        text(&chain).await,
        Err(ProviderError::Failed { status: 502 })
    );
}
