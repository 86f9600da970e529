//! The model aliases of a deployment (`smart`, `fast`, `embed`…), each a [`Chain`] over the
//! providers configured for it, and what each target's state is.
//!
//! Providers are named: `openai`, `anthropic`, `gemini`, `scripted`, any OpenAI-compatible
//! server of the configuration (`ollama`, `groq`…), and those the host builds itself and
//! hands over: `bedrock` (an SDK client) and `local` (models loaded from files). A provider
//! that needs a key and has none in the secret document is left out of its chains and listed
//! as `missing_key`; `local` without its model files is `not_installed`; a name nobody
//! knows is `unknown_provider`. Each target gets its own provider value, so a target's model
//! is also the model it embeds with. Nothing here calls a provider.

use std::collections::HashMap;
use std::sync::Arc;

use secrecy::SecretString;
use serde::Serialize;

use crate::Provider;
use crate::anthropic::Anthropic;
use crate::gemini::Gemini;
use crate::openai::OpenAi;
use crate::resilience::{BreakerState, Chain, Policy};
use crate::scripted::Scripted;

/// The settings a registry is built from (a mirror of `jarvis_config::AiConfig`, so this
/// crate needs no configuration crate).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `(alias, [(provider, model)])`, targets in the order they are tried.
    pub aliases: Vec<(String, Vec<(String, String)>)>,
    /// OpenAI's base URL.
    pub openai_url: String,
    /// Anthropic's base URL.
    pub anthropic_url: String,
    /// Gemini's base URL.
    pub gemini_url: String,
    /// Further OpenAI-compatible servers: `(name, base URL)`.
    pub servers: Vec<(String, String)>,
    /// The script file of the scripted provider's `script` model.
    pub script: Option<std::path::PathBuf>,
}

/// A target's state, as `GET /ai/models` and `/health` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Usable; its breaker is closed.
    Ready,
    /// Usable, but failing: its breaker is open or probing.
    Degraded,
    /// Its provider needs a key the secret document does not have.
    MissingKey,
    /// A local model whose files are not installed (or a build without local models).
    NotInstalled,
    /// No provider of that name exists in this build or configuration.
    UnknownProvider,
}

/// One target of an alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetInfo {
    /// The provider's name.
    pub provider: String,
    /// The model at that provider.
    pub model: String,
    /// Whether it can be used now.
    pub state: TargetState,
}

/// One alias and its targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AliasInfo {
    /// The alias.
    pub alias: String,
    /// Every configured target, in order.
    pub targets: Vec<TargetInfo>,
}

/// The scripted provider's model that plays the script file of [`Settings::script`] by turn.
pub const SCRIPT_MODEL: &str = "script";

/// The aliases of a deployment.
pub struct Registry {
    chains: Vec<(String, Chain)>,
    unusable: HashMap<(String, String, String), TargetState>,
    order: Vec<(String, Vec<(String, String)>)>,
}

impl Registry {
    /// Builds every alias's chain. `key` gives a provider's API key from the secret
    /// document; `hosted` are the providers the host built (`bedrock`, `local`), by name.
    pub fn new(
        settings: &Settings,
        key: impl Fn(&str) -> Option<SecretString>,
        client: &reqwest::Client,
        hosted: &[(String, Arc<dyn Provider>)],
        policy: &Policy,
    ) -> Self {
        let scripted: Arc<dyn Provider> = Arc::new(Scripted::default());
        let mut providers: HashMap<(String, String), Result<Arc<dyn Provider>, TargetState>> =
            HashMap::new();
        let mut provider = |name: &str, model: &str| -> Result<Arc<dyn Provider>, TargetState> {
            providers
                .entry((name.to_owned(), model.to_owned()))
                .or_insert_with(|| {
                    let keyed = |k: Option<SecretString>| k.ok_or(TargetState::MissingKey);
                    if let Some((_, hosted)) = hosted.iter().find(|(n, _)| n == name) {
                        return Ok(hosted
                            .for_model(model)
                            .unwrap_or_else(|| Arc::clone(hosted)));
                    }
                    Ok(match name {
                        "scripted" if model == SCRIPT_MODEL => {
                            let Some(path) = &settings.script else {
                                tracing::warn!("the scripted `script` model needs JARVIS_AI_SCRIPT");
                                return Err(TargetState::NotInstalled);
                            };
                            match crate::scripted::Script::load(path) {
                                Ok(script) => Arc::new(Scripted::by_turn(script)),
                                Err(err) => {
                                    tracing::warn!(error = %err, "the scripted `script` model has no script");
                                    return Err(TargetState::NotInstalled);
                                }
                            }
                        }
                        "scripted" => Arc::clone(&scripted),
                        "openai" => Arc::new(
                            OpenAi::new(
                                client.clone(),
                                &settings.openai_url,
                                Some(keyed(key(name))?),
                            )
                            .with_embedding_model(model),
                        ),
                        "anthropic" => Arc::new(Anthropic::new(
                            client.clone(),
                            &settings.anthropic_url,
                            keyed(key(name))?,
                        )),
                        "gemini" => Arc::new(
                            Gemini::new(client.clone(), &settings.gemini_url, keyed(key(name))?)
                                .with_embedding_model(model),
                        ),
                        "local" => return Err(TargetState::NotInstalled),
                        other => match settings.servers.iter().find(|(n, _)| n == other) {
                            // A local server often needs no key; one is sent when there is.
                            Some((_, url)) => Arc::new(
                                OpenAi::new(client.clone(), url, key(other))
                                    .with_embedding_model(model),
                            ),
                            None => return Err(TargetState::UnknownProvider),
                        },
                    })
                })
                .clone()
        };
        let mut chains = Vec::new();
        let mut unusable = HashMap::new();
        for (alias, targets) in &settings.aliases {
            let mut usable = Vec::new();
            for (name, model) in targets {
                match provider(name, model) {
                    Ok(p) => usable.push((p, model.clone())),
                    Err(state) => {
                        unusable.insert((alias.clone(), name.clone(), model.clone()), state);
                    }
                }
            }
            chains.push((alias.clone(), Chain::new(usable, policy.clone())));
        }
        Self {
            chains,
            unusable,
            order: settings.aliases.clone(),
        }
    }

    /// The first usable target of `alias`, as `provider:model`: what answers when nothing
    /// fails, for `/health`.
    pub fn first_ready(&self, alias: &str) -> Option<String> {
        self.models()
            .into_iter()
            .find(|a| a.alias == alias)?
            .targets
            .into_iter()
            .find(|t| t.state == TargetState::Ready)
            .map(|t| format!("{}:{}", t.provider, t.model))
    }

    /// The tokens `text` takes for `alias`'s first model, when its provider counts them.
    pub fn count_tokens(&self, alias: &str, text: &str) -> Option<u64> {
        self.chain(alias)?.count_tokens(text)
    }

    /// The chain of `alias`, when it is configured.
    pub fn chain(&self, alias: &str) -> Option<&Chain> {
        self.chains
            .iter()
            .find(|(name, _)| name == alias)
            .map(|(_, chain)| chain)
    }

    /// Every breaker: alias, provider, model and state.
    pub fn breakers(&self) -> Vec<(String, String, String, BreakerState)> {
        self.chains
            .iter()
            .flat_map(|(alias, chain)| {
                chain
                    .breakers()
                    .into_iter()
                    .map(move |(provider, model, state)| (alias.clone(), provider, model, state))
            })
            .collect()
    }

    /// Every alias, its targets and their states.
    pub fn models(&self) -> Vec<AliasInfo> {
        self.order
            .iter()
            .map(|(alias, targets)| {
                let breakers = self.chain(alias).map(Chain::breakers).unwrap_or_default();
                let targets = targets
                    .iter()
                    .map(|(provider, model)| {
                        let key = (alias.clone(), provider.clone(), model.clone());
                        let state = match self.unusable.get(&key) {
                            Some(state) => *state,
                            None => match breakers
                                .iter()
                                .find(|(p, m, _)| p == provider && m == model)
                                .map(|(_, _, state)| *state)
                            {
                                Some(BreakerState::Closed) | None => TargetState::Ready,
                                Some(_) => TargetState::Degraded,
                            },
                        };
                        TargetInfo {
                            provider: provider.clone(),
                            model: model.clone(),
                            state,
                        }
                    })
                    .collect();
                AliasInfo {
                    alias: alias.clone(),
                    targets,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChatRequest, Message, collect};

    fn settings() -> Settings {
        Settings {
            aliases: vec![
                (
                    "smart".into(),
                    vec![
                        ("anthropic".into(), "claude-sonnet-4-5".into()),
                        ("openai".into(), "gpt-4o".into()),
                        ("scripted".into(), "echo".into()),
                    ],
                ),
                (
                    "local".into(),
                    vec![
                        ("ollama".into(), "llama3.2".into()),
                        ("mystery".into(), "m".into()),
                    ],
                ),
            ],
            openai_url: "https://api.openai.com/v1".into(),
            anthropic_url: "https://api.anthropic.com".into(),
            gemini_url: "https://generativelanguage.googleapis.com".into(),
            servers: vec![("ollama".into(), "http://127.0.0.1:11434/v1".into())],
            script: None,
        }
    }

    #[test]
    fn targets_without_a_key_or_a_provider_are_listed_but_left_out() {
        let key = |name: &str| (name == "openai").then(|| SecretString::from("sk-test"));
        let registry = Registry::new(
            &settings(),
            key,
            &reqwest::Client::new(),
            &[],
            &Policy::default(),
        );
        let models = registry.models();
        let states: Vec<(&str, TargetState)> = models[0]
            .targets
            .iter()
            .map(|t| (t.provider.as_str(), t.state))
            .collect();
        assert_eq!(
            states,
            [
                ("anthropic", TargetState::MissingKey),
                ("openai", TargetState::Ready),
                ("scripted", TargetState::Ready),
            ]
        );
        assert_eq!(
            models[1].targets[0].state,
            TargetState::Ready,
            "no key needed"
        );
        assert_eq!(models[1].targets[1].state, TargetState::UnknownProvider);
        assert_eq!(
            registry.chain("smart").map(|c| c.breakers().len()),
            Some(2),
            "only usable targets are in the chain"
        );
        assert!(registry.chain("nope").is_none());
    }

    #[tokio::test]
    async fn an_alias_answers_through_its_chain() {
        let settings = Settings {
            aliases: vec![("fast".into(), vec![("scripted".into(), "echo".into())])],
            ..settings()
        };
        let registry = Registry::new(
            &settings,
            |_| None,
            &reqwest::Client::new(),
            &[],
            &Policy::default(),
        );
        let chain = registry.chain("fast").expect("configured");
        let reply = collect(
            chain
                .stream(ChatRequest {
                    model: "fast".into(),
                    messages: vec![Message::user("ping")],
                    ..ChatRequest::default()
                })
                .await
                .expect("stream"),
        )
        .await
        .expect("reply");
        assert_eq!(reply.text, "You said: ping");
    }
}
