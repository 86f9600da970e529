//! The AI service of a process: the registry of aliases (built on first use, with the
//! provider keys of the secret document), the price table and this deployment's share of
//! every budget; the budgeted call around a chain; the health component.

use std::sync::Arc;

use jarvis_ai::observed::Publisher;
use jarvis_ai::quota::{self, Escrow, QuotaError, Reservation};
use jarvis_ai::registry::{Registry, Settings};
use jarvis_ai::resilience::Policy;
use jarvis_ai::usage::{self, Price, Prices};
use jarvis_ai::{ChatRequest, Provider, ProviderError, Reply, Usage, collect};
use jarvis_app::AppState;
use jarvis_config::Config;
use jarvis_crdt::ReplicaId;
use jarvis_health::{Finding, HealthCheck, Status};
use jarvis_http::ApiError;
use jarvis_secrets::SecretSource;
use tokio::sync::OnceCell;

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

fn quota_error(err: QuotaError) -> ApiError {
    match err {
        QuotaError::Exceeded(exceeded) => ApiError::QuotaExceeded {
            period: exceeded.period.name(),
            resets_at: jarvis_http::time::rfc3339(exceeded.resets_at),
            retry_after_secs: u64::try_from(exceeded.resets_at - jarvis_store::now_secs())
                .unwrap_or(0)
                .max(1),
        },
        QuotaError::Store(err) => err.into(),
    }
}

fn provider_error(err: ProviderError) -> ApiError {
    match err {
        ProviderError::Refused { message, .. } => ApiError::Unprocessable {
            field: None,
            message: format!("the model refused the request: {message}").into(),
        },
        ProviderError::Unsupported { what } => ApiError::Unprocessable {
            field: Some("model".into()),
            message: format!("{what} is not supported by the models of this alias").into(),
        },
        other => ApiError::Unavailable(Box::new(other)),
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

    /// Registers the service's health component in `state`.
    pub fn register_health(self: &Arc<Self>, state: &mut AppState) {
        let mut health = (*state.health).clone();
        health.register(Arc::new(AiHealth(Arc::clone(self))));
        state.health = Arc::new(health);
    }

    /// The registry, built on first use from the configuration and the provider keys of the
    /// secret document.
    pub async fn registry(&self) -> Result<Arc<Registry>, ApiError> {
        self.registry
            .get_or_try_init(|| async {
                let secrets = self.secrets.current().await.map_err(|e| {
                    ApiError::Unavailable(format!("secrets unavailable: {e}").into())
                })?;
                Ok::<_, ApiError>(Arc::new(Registry::new(
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
        let store = call.state.store.as_ref();
        let now = jarvis_store::now_secs();
        let total = used.input_tokens.saturating_add(used.output_tokens);
        let escrow = self.escrow(call.state.replica);
        if let Err(err) = quota::settle(store, escrow, call.reservation, total).await {
            tracing::error!(error = %err, "a reservation could not be settled; its rest stays spent");
        }
        let cost = self.prices.cost_micros(provider, model, used);
        if total > 0 {
            let replica = call.state.replica;
            if let Err(err) =
                usage::record(store, replica, &call.user, provider, model, used, cost, now).await
            {
                tracing::error!(error = %err, "usage could not be recorded");
            }
        }
        self.observe(&call.state, &call.registry).await;
        cost
    }

    /// Publishes this process's breaker changes, for a `/health` served elsewhere.
    async fn observe(&self, state: &AppState, registry: &Registry) {
        self.publisher
            .publish(
                state.store.as_ref(),
                &state.clock,
                registry,
                self.policy.breaker_cooldown,
                jarvis_store::now_secs(),
            )
            .await;
    }

    /// Checks `alias` and reserves `worst` tokens of `user`'s budget.
    async fn begin(
        &self,
        state: &AppState,
        user: &str,
        role: &str,
        alias: &str,
        worst: u64,
    ) -> Result<Call, ApiError> {
        let registry = self.registry().await?;
        if registry.chain(alias).is_none() {
            return Err(ApiError::NotFound(
                format!("no model alias {alias:?}").into(),
            ));
        }
        let store = state.store.as_ref();
        let budget = quota::effective_budget(store, user, role).await?;
        let reservation = quota::reserve(
            store,
            self.escrow(state.replica),
            user,
            budget,
            worst,
            jarvis_store::now_secs(),
        )
        .await
        .map_err(quota_error)?;
        Ok(Call {
            state: state.clone(),
            registry,
            alias: alias.to_owned(),
            user: user.to_owned(),
            reservation,
        })
    }

    /// Answers `request` through `alias` within `user`'s budget, reserving `worst` tokens.
    pub async fn complete(
        self: &Arc<Self>,
        state: &AppState,
        user: &str,
        role: &str,
        alias: &str,
        request: ChatRequest,
        worst: u64,
    ) -> Result<Completed, ApiError> {
        let call = self.begin(state, user, role, alias, worst).await?;
        // The call runs on its own: if the request is cut off, it still settles.
        let ai = Arc::clone(self);
        let task = tokio::spawn(async move {
            let Some(chain) = call.registry.chain(&call.alias) else {
                return Err(ApiError::NotFound("no such model alias".into()));
            };
            let answer = match chain.answer(request).await {
                Ok(answer) => answer,
                Err(err) => {
                    // Nothing was generated: everything goes back.
                    ai.finish(call, "", "", Usage::default()).await;
                    return Err(provider_error(err));
                }
            };
            match collect(answer.events).await {
                Ok(reply) => {
                    let cost = ai
                        .finish(call, &answer.provider, &answer.model, reply.usage)
                        .await;
                    Ok(Completed {
                        model: format!("{}:{}", answer.provider, answer.model),
                        reply,
                        cost_micros: cost,
                    })
                }
                Err(err) => {
                    tracing::warn!(error = %err, provider = %answer.provider, "a reply failed mid-way; its reservation stays spent");
                    ai.observe(&call.state, &call.registry).await;
                    Err(provider_error(err))
                }
            }
        });
        task.await.map_err(|e| ApiError::Internal(Box::new(e)))?
    }

    /// Embeds `texts` through `alias` within `user`'s budget.
    pub async fn embed(
        self: &Arc<Self>,
        state: &AppState,
        user: &str,
        role: &str,
        alias: &str,
        texts: Vec<String>,
    ) -> Result<Embedded, ApiError> {
        // Bytes bound the tokens of every tokenizer: the worst case to reserve.
        let bytes: u64 = texts.iter().map(|t| t.len() as u64).sum();
        let tokens: u64 = texts
            .iter()
            .map(|t| jarvis_ai::scripted::estimate_tokens(t))
            .sum();
        let call = self.begin(state, user, role, alias, bytes).await?;
        let ai = Arc::clone(self);
        let task = tokio::spawn(async move {
            let Some(chain) = call.registry.chain(&call.alias) else {
                return Err(ApiError::NotFound("no such model alias".into()));
            };
            match chain.embed(&texts).await {
                Ok(embedding) => {
                    let used = Usage {
                        input_tokens: tokens,
                        output_tokens: 0,
                    };
                    ai.finish(call, &embedding.provider, &embedding.model, used)
                        .await;
                    Ok(Embedded {
                        model: format!("{}:{}", embedding.provider, embedding.model),
                        vectors: embedding.vectors,
                        tokens,
                    })
                }
                Err(err) => {
                    ai.finish(call, "", "", Usage::default()).await;
                    Err(provider_error(err))
                }
            }
        });
        task.await.map_err(|e| ApiError::Internal(Box::new(e)))?
    }
}

/// A call under way: where it runs, through what, for whom, and what it reserved.
struct Call {
    state: AppState,
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
            .filter(|t| t.state == jarvis_ai::registry::TargetState::Degraded)
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

/// The Bedrock provider, through the function's IAM role. SDK retries are off: the chain
/// retries, with its own backoff and breaker.
#[cfg(feature = "bedrock")]
pub async fn bedrock() -> Arc<dyn Provider> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    Arc::new(jarvis_ai::bedrock::Bedrock::new(
        aws_sdk_bedrockruntime::Client::new(&config),
    ))
}
