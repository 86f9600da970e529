//! Retries, circuit breakers and fallback over providers: a [`Chain`] is the providers (and
//! models) one alias may use, tried in order.
//!
//! - **Timeouts per attempt**: until the first event, between events, and for the whole
//!   reply (connection timeouts belong to the HTTP client).
//! - **Retries** with exponential backoff and full jitter on connection errors, 429s (after
//!   their `Retry-After` when they give one) and 5xx, and only before the first event reached
//!   the caller: once text has been sent, a failure ends the stream with an error event.
//! - **A circuit breaker per provider and model**: closed until `breaker_threshold`
//!   consecutive failures, then open (skipped) for `breaker_cooldown`, then half-open: one
//!   probe call; its success closes the breaker, its failure opens it again.
//! - **Fallback**: a target whose attempts are spent, whose breaker is open, or which refuses
//!   the request (4xx) hands over to the next one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, timeout_at};

use crate::{Audio, ChatRequest, Event, EventStream, Provider, ProviderError, SpeechRequest};

/// How hard a chain tries.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Attempts per target before falling back (at least 1).
    pub attempts: u32,
    /// The first retry waits up to this long (full jitter); each further one up to twice as
    /// long, to `max_backoff`.
    pub base_backoff: Duration,
    /// The longest wait between attempts, `Retry-After` included.
    pub max_backoff: Duration,
    /// The longest wait for a reply's first event.
    pub first_event: Duration,
    /// The longest wait between two events.
    pub idle: Duration,
    /// The longest a whole call may take, retries and fallbacks included.
    pub total: Duration,
    /// Consecutive failures that open a breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker skips its target before a probe.
    pub breaker_cooldown: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            first_event: Duration::from_secs(30),
            idle: Duration::from_secs(30),
            total: Duration::from_secs(300),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

/// A breaker's state, as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are skipped until the cool-down ends.
    Open,
    /// One probe call is being made.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The circuit breaker of one provider and model.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            cooldown,
        }
    }

    /// Its state now.
    pub fn state(&self) -> BreakerState {
        match self.state.lock().map(|s| match *s {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }) {
            Ok(state) => state,
            Err(_) => BreakerState::Open,
        }
    }

    /// Whether a call may go through now; the first call after the cool-down is the probe.
    fn admit(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen { probing: true };
                true
            }
            State::Open { .. } | State::HalfOpen { probing: true } => false,
            State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                true
            }
        }
    }

    fn succeeded(&self) {
        if let Ok(mut state) = self.state.lock() {
            *state = State::Closed { failures: 0 };
        }
    }

    fn failed(&self) {
        if let Ok(mut state) = self.state.lock() {
            let failures = match *state {
                State::Closed { failures } => failures + 1,
                _ => self.threshold,
            };
            *state = if failures >= self.threshold {
                State::Open {
                    until: Instant::now() + self.cooldown,
                }
            } else {
                State::Closed { failures }
            };
        }
    }

    /// A call that was admitted ended without telling (a refusal): a probe frees its slot.
    fn released(&self) {
        if let Ok(mut state) = self.state.lock()
            && let State::HalfOpen { probing: true } = *state
        {
            *state = State::HalfOpen { probing: false };
        }
    }
}

/// One place a chain may send a request: a provider and its model.
pub struct Target {
    /// The provider.
    pub provider: Arc<dyn Provider>,
    /// The model's name at that provider.
    pub model: String,
    /// The target's breaker.
    pub breaker: Arc<Breaker>,
}

/// A reply that has started, and the target giving it.
pub struct Answer {
    /// The provider's name.
    pub provider: String,
    /// The model at that provider.
    pub model: String,
    /// The reply.
    pub events: EventStream,
}

/// Embeddings, and the target that made them.
pub struct Embedding {
    /// The provider's name.
    pub provider: String,
    /// The model at that provider.
    pub model: String,
    /// One vector per text, in order.
    pub vectors: Vec<Vec<f32>>,
}

/// The providers one alias may use, tried in order.
pub struct Chain {
    targets: Vec<Target>,
    policy: Policy,
}

/// Whether retrying the same target may help.
fn transient(err: &ProviderError) -> bool {
    err.is_transient()
}

impl Chain {
    /// A chain over `(provider, model)` pairs, each with its own breaker.
    pub fn new(targets: Vec<(Arc<dyn Provider>, String)>, policy: Policy) -> Self {
        let targets = targets
            .into_iter()
            .map(|(provider, model)| Target {
                provider,
                model,
                breaker: Arc::new(Breaker::new(
                    policy.breaker_threshold,
                    policy.breaker_cooldown,
                )),
            })
            .collect();
        Self { targets, policy }
    }

    /// Each target's provider, model and breaker state.
    pub fn breakers(&self) -> Vec<(String, String, BreakerState)> {
        self.targets
            .iter()
            .map(|t| {
                (
                    t.provider.name().to_owned(),
                    t.model.clone(),
                    t.breaker.state(),
                )
            })
            .collect()
    }

    /// The wait before retry number `retry` (0 for the first), honouring `Retry-After`.
    fn backoff(&self, retry: u32, err: &ProviderError) -> Duration {
        if let ProviderError::RateLimited {
            retry_after_secs: Some(secs),
        } = err
        {
            return Duration::from_secs(*secs).min(self.policy.max_backoff);
        }
        let ceiling = self
            .policy
            .base_backoff
            .saturating_mul(2u32.saturating_pow(retry.min(16)))
            .min(self.policy.max_backoff);
        ceiling.mul_f64(fastrand::f64())
    }

    /// Streams a reply from the first target that gives one.
    pub async fn stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
        self.answer(request).await.map(|answer| answer.events)
    }

    /// [`stream`](Self::stream), saying which target answers.
    pub async fn answer(&self, request: ChatRequest) -> Result<Answer, ProviderError> {
        let deadline = Instant::now() + self.policy.total;
        let mut last = ProviderError::Unreachable {
            message: "no provider is configured".into(),
        };
        for target in &self.targets {
            for attempt in 0..self.policy.attempts.max(1) {
                if !target.breaker.admit() {
                    last = ProviderError::Unreachable {
                        message: format!(
                            "{} ({}) is failing; its circuit is open",
                            target.provider.name(),
                            target.model
                        ),
                    };
                    break;
                }
                let mut asked = request.clone();
                asked.model.clone_from(&target.model);
                match self.attempt(target, asked, deadline).await {
                    Ok(events) => {
                        return Ok(Answer {
                            provider: target.provider.name().to_owned(),
                            model: target.model.clone(),
                            events,
                        });
                    }
                    Err(err) if transient(&err) => {
                        target.breaker.failed();
                        let wait = self.backoff(attempt, &err);
                        last = err;
                        let retry = attempt + 1 < self.policy.attempts;
                        if retry && Instant::now() + wait < deadline {
                            tokio::time::sleep(wait).await;
                        } else {
                            break;
                        }
                    }
                    Err(err) => {
                        // A refusal says nothing of the provider's health: no retry, on to
                        // the next target.
                        target.breaker.released();
                        last = err;
                        break;
                    }
                }
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(last)
    }

    /// The tokens `text` takes for the chain's first model, when its provider counts them.
    pub fn count_tokens(&self, text: &str) -> Option<u64> {
        let target = self.targets.first()?;
        target.provider.count_tokens(&target.model, text)
    }

    /// Embeds `texts` with the first target that can.
    pub async fn embed(&self, texts: &[String]) -> Result<Embedding, ProviderError> {
        let (provider, model, vectors) = self
            .first_able("embedding", |p| async move { p.embed(texts).await })
            .await?;
        Ok(Embedding {
            provider,
            model,
            vectors,
        })
    }

    /// Transcribes `audio` with the first target that can: `(provider, model, text)`.
    pub async fn transcribe(
        &self,
        audio: &Audio,
        language: Option<&str>,
    ) -> Result<(String, String, String), ProviderError> {
        self.first_able("transcription", |p| async move {
            p.transcribe(audio, language).await
        })
        .await
    }

    /// Speaks `request` with the first target that can: `(provider, model, audio)`.
    pub async fn speak(
        &self,
        request: &SpeechRequest,
    ) -> Result<(String, String, Audio), ProviderError> {
        self.first_able("speech", |p| async move { p.speak(request).await })
            .await
    }

    /// `call` on the first target that answers it: targets that do not do it and ones
    /// whose breaker is open are skipped; a transient failure counts against the breaker
    /// and falls back to the next target. Answers the provider, the model and the answer.
    async fn first_able<'a, T, F, Fut>(
        &'a self,
        what: &str,
        call: F,
    ) -> Result<(String, String, T), ProviderError>
    where
        F: Fn(&'a dyn Provider) -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>> + 'a,
    {
        let deadline = Instant::now() + self.policy.total;
        let mut last = ProviderError::Unsupported {
            what: format!("{what} by every target of this alias"),
        };
        for target in &self.targets {
            if !target.breaker.admit() {
                continue;
            }
            let answer = timeout_at(deadline, call(target.provider.as_ref()))
                .await
                .unwrap_or_else(|_| {
                    Err(ProviderError::Unreachable {
                        message: "no answer in time".into(),
                    })
                });
            match answer {
                Ok(answer) => {
                    target.breaker.succeeded();
                    let provider = target.provider.name().to_owned();
                    return Ok((provider, target.model.clone(), answer));
                }
                Err(err) => {
                    if transient(&err) {
                        target.breaker.failed();
                    } else {
                        target.breaker.released();
                    }
                    last = err;
                }
            }
        }
        Err(last)
    }

    /// One attempt: the reply, once its first event has come and is not an error.
    async fn attempt(
        &self,
        target: &Target,
        request: ChatRequest,
        deadline: Instant,
    ) -> Result<EventStream, ProviderError> {
        let first_due = deadline.min(Instant::now() + self.policy.first_event);
        let late = || ProviderError::Unreachable {
            message: "no answer in time".into(),
        };
        let mut stream = timeout_at(first_due, target.provider.stream(request))
            .await
            .map_err(|_| late())??;
        let first = timeout_at(first_due, stream.next())
            .await
            .map_err(|_| late())?;
        match first {
            None => Err(ProviderError::Truncated),
            Some(Event::Error(err)) => Err(err),
            Some(first) => {
                // The provider answers: that is the health the breaker tracks, whether or
                // not the caller reads the reply to its end.
                target.breaker.succeeded();
                Ok(watch(
                    first,
                    stream,
                    Arc::clone(&target.breaker),
                    self.policy.idle,
                    deadline,
                ))
            }
        }
    }
}

/// The rest of a reply that has started: each event within `idle` of the last and before
/// `deadline`, else an error event; a failure mid-way counts against the breaker.
fn watch(
    first: Event,
    rest: EventStream,
    breaker: Arc<Breaker>,
    idle: Duration,
    deadline: Instant,
) -> EventStream {
    let ended = matches!(first, Event::Done { .. } | Event::Error(_));
    let tail = futures_util::stream::unfold(
        (rest, breaker, ended),
        move |(mut rest, breaker, ended)| async move {
            if ended {
                return None;
            }
            let due = deadline.min(Instant::now() + idle);
            let event = match timeout_at(due, rest.next()).await {
                Ok(Some(event)) => event,
                Ok(None) => Event::Error(ProviderError::Truncated),
                Err(_) => Event::Error(ProviderError::Unreachable {
                    message: "the reply stalled".into(),
                }),
            };
            let ended = match &event {
                Event::Done { .. } => true,
                Event::Error(_) => {
                    breaker.failed();
                    true
                }
                _ => false,
            };
            Some((event, (rest, breaker, ended)))
        },
    );
    Box::pin(futures_util::stream::once(async move { first }).chain(tail))
}
