//! The AI service of a process: the registry of aliases (built on first use, with the
//! provider keys of the secret document), the price table and this deployment's share of
//! every budget; the budgeted call around a chain; the health component.
//!
//! Every feature that calls models (the AI routes, chat, knowledge, agents) goes through
//! it, so each call is reserved, settled, recorded and observed the same way.

use std::sync::Arc;

use futures_util::StreamExt;
use jarvis_config::Config;
use jarvis_crdt::ReplicaId;
use jarvis_health::{Finding, HealthCheck, Status};
use jarvis_secrets::SecretSource;
use jarvis_store::StoreError;
use tokio::sync::{OnceCell, mpsc, oneshot};
pub use tokio_util::sync::CancellationToken;

use crate::observed::Publisher;
use crate::quota::{self, Escrow, Exceeded, QuotaError, Reservation};
use crate::registry::{Registry, Settings, TargetState};
use crate::resilience::Policy;
use crate::usage::{self, Price, Prices};
use crate::{
    Audio, ChatRequest, Event, EventStream, Provider, ProviderError, Reply, SpeechRequest, Usage,
    collect,
};

/// Where calls run: the store, this replica and its clock.
pub use jarvis_store::Site;

/// Why a budgeted call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No alias of that name is configured.
    #[error("no model alias {0:?}")]
    UnknownAlias(String),
    /// The caller's budget cannot cover the call.
    #[error("the {} token budget is spent", .0.period.name())]
    Quota(Exceeded),
    /// Every target failed or refused.
    #[error(transparent)]
    Provider(ProviderError),
    /// The secret document (provider keys) could not be read.
    #[error("secrets unavailable: {0}")]
    Secrets(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The call's task ended abnormally.
    #[error("the call's task failed: {0}")]
    Task(String),
}

/// The AI service.
pub struct Ai {
    settings: Settings,
    hosted: Vec<(String, Arc<dyn Provider>)>,
    client: reqwest::Client,
    policy: Policy,
    prices: Prices,
    share: f64,
    secrets: Arc<dyn SecretSource>,
    registry: OnceCell<Arc<Registry>>,
    publisher: Publisher,
}

/// A finished completion.
pub struct Completed {
    /// The reply.
    pub reply: Reply,
    /// `provider:model` that answered.
    pub model: String,
    /// Its cost in millionths of a dollar.
    pub cost_micros: u64,
}

/// Finished embeddings.
pub struct Embedded {
    /// `provider:model` that answered.
    pub model: String,
    /// The vectors.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens counted.
    pub tokens: u64,
}

impl From<QuotaError> for CallError {
    fn from(err: QuotaError) -> Self {
        match err {
            QuotaError::Exceeded(exceeded) => Self::Quota(exceeded),
            QuotaError::Store(err) => Self::Store(err),
        }
    }
}

/// The HTTP client of every remote provider: connecting may take 10 s (the chain bounds the
/// rest of an attempt: first event, idle, total); idle connections are kept for reuse.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap_or_else(|err| {
            tracing::warn!(error = %err, "the provider client falls back to reqwest's defaults");
            reqwest::Client::new()
        })
}

impl Ai {
    /// The service of a deployment: `hosted` are the providers the host built (`bedrock`,
    /// `local`).
    pub fn new(
        config: &Config,
        secrets: Arc<dyn SecretSource>,
        hosted: Vec<(String, Arc<dyn Provider>)>,
    ) -> Self {
        let ai = &config.ai;
        Self {
            settings: Settings {
                aliases: ai
                    .aliases
                    .iter()
                    .map(|a| (a.name.clone(), a.targets.clone()))
                    .collect(),
                openai_url: ai.openai_url.clone(),
                anthropic_url: ai.anthropic_url.clone(),
                gemini_url: ai.gemini_url.clone(),
                servers: ai.servers.clone(),
                script: ai.script.clone(),
            },
            hosted,
            client: http_client(),
            policy: Policy {
                breaker_threshold: ai.breaker_threshold,
                breaker_cooldown: ai.breaker_cooldown,
                ..Policy::default()
            },
            prices: Prices(
                ai.prices
                    .iter()
                    .map(|(target, (input, output))| {
                        (
                            target.clone(),
                            Price {
                                input_per_million: *input,
                                output_per_million: *output,
                            },
                        )
                    })
                    .collect(),
            ),
            share: ai.quota_share,
            secrets,
            registry: OnceCell::new(),
            publisher: Publisher::default(),
        }
    }

    /// The registry, built on first use from the configuration and the provider keys of the
    /// secret document.
    pub async fn registry(&self) -> Result<Arc<Registry>, CallError> {
        self.registry
            .get_or_try_init(|| async {
                let secrets = self
                    .secrets
                    .current()
                    .await
                    .map_err(|e| CallError::Secrets(e.to_string()))?;
                Ok::<_, CallError>(Arc::new(Registry::new(
                    &self.settings,
                    |name| secrets.provider_key(name).cloned(),
                    &self.client,
                    &self.hosted,
                    &self.policy,
                )))
            })
            .await
            .cloned()
    }

    fn escrow(&self, replica: ReplicaId) -> Escrow {
        Escrow {
            replica,
            share: self.share,
        }
    }

    /// Settles `call`, records its usage and publishes breaker changes; failures are logged
    /// (the call's answer stands). Returns the call's cost.
    async fn finish(&self, call: Call, provider: &str, model: &str, used: Usage) -> u64 {
        let store = call.site.store.as_ref();
        let now = jarvis_store::now_secs();
        let total = used.input_tokens.saturating_add(used.output_tokens);
        let escrow = self.escrow(call.site.replica);
        if let Err(err) = quota::settle(store, escrow, call.reservation, total).await {
            tracing::error!(error = %err, "a reservation could not be settled; its rest stays spent");
        }
        let cost = self.prices.cost_micros(provider, model, used);
        let replica = call.site.replica;
        // Writes nothing for a call that used nothing.
        if let Err(err) =
            usage::record(store, replica, &call.user, provider, model, used, cost, now).await
        {
            tracing::error!(error = %err, "usage could not be recorded");
        }
        self.observe(&call.site, &call.registry).await;
        cost
    }

    /// Publishes this process's breaker changes, for a `/health` served elsewhere.
    async fn observe(&self, site: &Site, registry: &Registry) {
        self.publisher
            .publish(
                site.store.as_ref(),
                &site.clock,
                registry,
                self.policy.breaker_cooldown,
                jarvis_store::now_secs(),
            )
            .await;
    }

    /// Checks `alias` and reserves `worst` tokens of the payer's budget.
    async fn begin(
        &self,
        site: &Site,
        payer: Payer<'_>,
        alias: &str,
        worst: u64,
    ) -> Result<Call, CallError> {
        let registry = self.registry().await?;
        if registry.chain(alias).is_none() {
            return Err(CallError::UnknownAlias(alias.to_owned()));
        }
        let store = site.store.as_ref();
        let (user, reservation) = match payer {
            Payer::User { id, role } => {
                let budget = quota::effective_budget(store, id, role).await?;
                let escrow = self.escrow(site.replica);
                let now = jarvis_store::now_secs();
                let held = quota::reserve(store, escrow, id, budget, worst, now).await?;
                (id.to_owned(), held)
            }
            Payer::Deployment => (DEPLOYMENT_ACCOUNT.to_owned(), Reservation::default()),
        };
        Ok(Call {
            site: site.clone(),
            registry,
            alias: alias.to_owned(),
            user,
            reservation,
        })
    }

    /// Answers `request` through `alias`, reserving `worst` tokens of the payer's budget,
    /// and collects the reply.
    pub async fn complete(
        self: &Arc<Self>,
        site: &Site,
        payer: Payer<'_>,
        alias: &str,
        request: ChatRequest,
        worst: u64,
    ) -> Result<Completed, CallError> {
        let mut streamed = self
            .stream(site, payer, alias, request, worst, CancellationToken::new())
            .await?;
        let reply = collect(streamed.events())
            .await
            .map_err(CallError::Provider)?;
        let model = streamed.model.clone();
        let cost_micros = streamed.cost().await;
        Ok(Completed {
            reply,
            model,
            cost_micros,
        })
    }

    /// Starts answering `request` through `alias` within the payer's budget; the reply's
    /// events arrive on [`Streamed::events`].
    ///
    /// The call runs in its own task, independent of whoever reads it: a reader that goes
    /// away does not stop the reply (it is read to its end and settled as if collected);
    /// only `cancel` does. A reply cancelled or failed after it started keeps its
    /// reservation spent, since the provider may bill for what it generated. Retries and
    /// fallback happen before the first event only, so once this returns the model is
    /// fixed.
    pub async fn stream(
        self: &Arc<Self>,
        site: &Site,
        payer: Payer<'_>,
        alias: &str,
        request: ChatRequest,
        worst: u64,
        cancel: CancellationToken,
    ) -> Result<Streamed, CallError> {
        let call = self.begin(site, payer, alias, worst).await?;
        let (started, first) = oneshot::channel();
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let (cost_sender, cost) = oneshot::channel();
        let ai = Arc::clone(self);
        tokio::spawn(async move {
            let Some(chain) = call.registry.chain(&call.alias) else {
                let _ = started.send(Err(CallError::UnknownAlias(call.alias.clone())));
                return;
            };
            let answer = match chain.answer(request).await {
                Ok(answer) => answer,
                Err(err) => {
                    // Nothing was generated: everything goes back.
                    ai.finish(call, "", "", Usage::default()).await;
                    let _ = started.send(Err(CallError::Provider(err)));
                    return;
                }
            };
            let model = format!("{}:{}", answer.provider, answer.model);
            if started.send(Ok(model)).is_err() {
                tracing::debug!("the caller left before the reply started; it is read anyway");
            }
            let outcome = relay(answer.events, &sender, &cancel).await;
            match outcome {
                Relayed::Finished(used) => {
                    let cost = ai.finish(call, &answer.provider, &answer.model, used).await;
                    let _ = cost_sender.send(cost);
                }
                Relayed::Failed | Relayed::Cancelled => {
                    tracing::info!(provider = %answer.provider, outcome = ?outcome, "a reply ended early; its reservation stays spent");
                    ai.observe(&call.site, &call.registry).await;
                }
            }
        });
        let model = first.await.map_err(|e| CallError::Task(e.to_string()))??;
        Ok(Streamed {
            model,
            receiver,
            cost,
        })
    }

    /// Embeds `texts` through `alias` within the payer's budget.
    pub async fn embed(
        self: &Arc<Self>,
        site: &Site,
        payer: Payer<'_>,
        alias: &str,
        texts: Vec<String>,
    ) -> Result<Embedded, CallError> {
        // Bytes bound the tokens of every tokenizer: the worst case to reserve.
        let bytes: u64 = texts.iter().map(|t| t.len() as u64).sum();
        let tokens: u64 = texts
            .iter()
            .map(|t| crate::scripted::estimate_tokens(t))
            .sum();
        let (model, vectors) = self
            .metered(
                site,
                payer,
                alias,
                bytes,
                move |registry, alias| async move {
                    let embedding = chain(&registry, &alias)?.embed(&texts).await?;
                    let used = Usage {
                        input_tokens: tokens,
                        output_tokens: 0,
                    };
                    Ok((embedding.provider, embedding.model, embedding.vectors, used))
                },
            )
            .await?;
        Ok(Embedded {
            model,
            vectors,
            tokens,
        })
    }

    /// Transcribes `audio` through `alias` within the payer's budget: `(provider:model,
    /// text)`. The budget counts the text's tokens (estimated); the worst case reserved is
    /// one token per [`AUDIO_BYTES_PER_TOKEN`] bytes of sound.
    pub async fn transcribe(
        self: &Arc<Self>,
        site: &Site,
        payer: Payer<'_>,
        alias: &str,
        audio: Audio,
        language: Option<String>,
    ) -> Result<(String, String), CallError> {
        let worst = (audio.bytes.len() as u64).div_ceil(AUDIO_BYTES_PER_TOKEN);
        self.metered(
            site,
            payer,
            alias,
            worst,
            move |registry, alias| async move {
                let (provider, model, text) = chain(&registry, &alias)?
                    .transcribe(&audio, language.as_deref())
                    .await?;
                let used = Usage {
                    input_tokens: 0,
                    output_tokens: crate::scripted::estimate_tokens(&text),
                };
                Ok((provider, model, text, used))
            },
        )
        .await
    }

    /// Speaks `request` through `alias` within the payer's budget: `(provider:model,
    /// audio)`. The budget counts the text's tokens (estimated).
    pub async fn speak(
        self: &Arc<Self>,
        site: &Site,
        payer: Payer<'_>,
        alias: &str,
        request: SpeechRequest,
    ) -> Result<(String, Audio), CallError> {
        let tokens = crate::scripted::estimate_tokens(&request.text);
        let worst = request.text.len() as u64;
        self.metered(
            site,
            payer,
            alias,
            worst,
            move |registry, alias| async move {
                let (provider, model, audio) = chain(&registry, &alias)?.speak(&request).await?;
                let used = Usage {
                    input_tokens: tokens,
                    output_tokens: 0,
                };
                Ok((provider, model, audio, used))
            },
        )
        .await
    }

    /// Runs one call through `alias`'s chain in its own task (so a request cut off still
    /// settles), reserving `worst` tokens first and settling what `call` reports it used;
    /// a call that fails gives everything back. Answers `provider:model` and the answer.
    async fn metered<T, F, Fut>(
        self: &Arc<Self>,
        site: &Site,
        payer: Payer<'_>,
        alias: &str,
        worst: u64,
        call: F,
    ) -> Result<(String, T), CallError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Registry>, String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(String, String, T, Usage), ProviderError>> + Send,
    {
        let call_site = self.begin(site, payer, alias, worst).await?;
        let ai = Arc::clone(self);
        let task = tokio::spawn(async move {
            let registry = Arc::clone(&call_site.registry);
            match call(registry, call_site.alias.clone()).await {
                Ok((provider, model, answer, used)) => {
                    ai.finish(call_site, &provider, &model, used).await;
                    Ok((format!("{provider}:{model}"), answer))
                }
                Err(err) => {
                    ai.finish(call_site, "", "", Usage::default()).await;
                    Err(CallError::Provider(err))
                }
            }
        });
        task.await.map_err(|e| CallError::Task(e.to_string()))?
    }
}

/// The chain of `alias`, checked when the call began.
fn chain<'a>(
    registry: &'a Registry,
    alias: &str,
) -> Result<&'a crate::resilience::Chain, ProviderError> {
    registry
        .chain(alias)
        .ok_or_else(|| ProviderError::Unsupported {
            what: format!("the model alias {alias:?}"),
        })
}

/// Bytes of sound reserved as one token of a transcription's budget: about a second of
/// 16 kHz 16-bit mono speech, which no one says 32 words in.
pub const AUDIO_BYTES_PER_TOKEN: u64 = 1_000;

/// Events a streamed reply may have waiting for a slow reader before the call waits too.
const STREAM_BUFFER: usize = 256;

/// The account that work done for the deployment rather than asked by a user is recorded
/// under (titles, summaries, memory extraction): never a user's budget.
pub const DEPLOYMENT_ACCOUNT: &str = "deployment";

/// Whose budget a call spends.
#[derive(Debug, Clone, Copy)]
pub enum Payer<'a> {
    /// A user's, by their role's or their own budget.
    User {
        /// The user's id.
        id: &'a str,
        /// Their role, whose budget applies unless they have their own.
        role: &'a str,
    },
    /// Nobody's: work the deployment does on a user's behalf, recorded under
    /// [`DEPLOYMENT_ACCOUNT`].
    Deployment,
}

/// A reply under way.
pub struct Streamed {
    /// `provider:model` answering.
    pub model: String,
    receiver: mpsc::Receiver<Event>,
    cost: oneshot::Receiver<u64>,
}

impl Streamed {
    /// The next event; `None` after the last (a `Done` or `Error`, or a cancel).
    pub async fn next(&mut self) -> Option<Event> {
        self.receiver.recv().await
    }

    /// The events as a stream (for [`collect`]).
    pub fn events(&mut self) -> EventStream {
        let receiver = std::mem::replace(&mut self.receiver, mpsc::channel(1).1);
        Box::pin(futures_util::stream::unfold(receiver, |mut r| async move {
            r.recv().await.map(|event| (event, r))
        }))
    }

    /// What the finished reply cost, in millionths of a dollar, once it is settled (0 for a
    /// reply that ended early).
    pub async fn cost(self) -> u64 {
        self.cost.await.unwrap_or(0)
    }
}

/// How a relayed reply ended.
#[derive(Debug)]
enum Relayed {
    /// With `Done`, having used this much.
    Finished(Usage),
    /// With an error, or cut off.
    Failed,
    /// Cancelled by the caller.
    Cancelled,
}

/// Passes `events` on to `sender` until the final one or `cancel`; a stream that ends
/// without its final event gets a `Truncated` error. A receiver that went away does not
/// stop the reading: the reply is settled as if it had been collected.
async fn relay(
    mut events: EventStream,
    sender: &mpsc::Sender<Event>,
    cancel: &CancellationToken,
) -> Relayed {
    let mut usage = Usage::default();
    let mut listening = true;
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => return Relayed::Cancelled,
            event = events.next() => event,
        };
        let event = event.unwrap_or(Event::Error(ProviderError::Truncated));
        let outcome = match &event {
            Event::Usage(latest) => {
                usage = *latest;
                None
            }
            Event::Done { .. } => Some(Relayed::Finished(usage)),
            Event::Error(_) => Some(Relayed::Failed),
            _ => None,
        };
        if listening && sender.send(event).await.is_err() {
            listening = false;
        }
        if let Some(outcome) = outcome {
            return outcome;
        }
    }
}

/// A call under way: where it runs, through what, for whom, and what it reserved.
struct Call {
    site: Site,
    registry: Arc<Registry>,
    alias: String,
    user: String,
    reservation: Reservation,
}

/// The health component `ai`: the default model (`smart`'s first usable target) and every
/// target's state. Degraded when a breaker is open or the default is only the scripted
/// provider; never critical (the rest of Jarvis works without models).
pub struct AiHealth(pub Arc<Ai>);

#[async_trait::async_trait]
impl HealthCheck for AiHealth {
    fn name(&self) -> &'static str {
        "ai"
    }

    fn critical(&self) -> bool {
        false
    }

    async fn check(&self) -> Finding {
        let registry = match self.0.registry().await {
            Ok(registry) => registry,
            Err(err) => return Finding::down(err.to_string()),
        };
        let default = registry.first_ready("smart");
        let models = registry.models();
        let open: Vec<String> = models
            .iter()
            .flat_map(|a| &a.targets)
            .filter(|t| t.state == TargetState::Degraded)
            .map(|t| format!("{}:{}", t.provider, t.model))
            .collect();
        let mut finding = Finding::ok();
        if !open.is_empty() {
            finding.status = Status::Degraded;
            finding.message = Some(format!("circuit open: {}", open.join(", ")));
        } else if default
            .as_deref()
            .is_none_or(|d| d.starts_with("scripted:"))
        {
            finding.status = Status::Degraded;
            finding.message = Some(
                "no language model: replies are scripted echoes (run ./infra/fetch-models.sh \
                 for the local models, or configure a provider)"
                    .into(),
            );
        }
        finding
            .with_detail("default", default.unwrap_or_default())
            .with_detail("targets", serde_json::to_value(&models).unwrap_or_default())
    }
}
