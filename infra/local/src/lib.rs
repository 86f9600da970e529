//! The local gateway: every Jarvis function's router on one address, over an embedded libSQL
//! file, with no AWS account.
//!
//! [`functions`] is the one list of functions the gateway hosts. [`Gateway`] owns what a
//! running host needs and runs its parts until shutdown: the HTTP server, the WebSocket API
//! ([`ws`], on the same address or its own), the system jobs ([`jarvis_fn_jobs::run_locally`])
//! and the knowledge base's ingestion worker, sharing the same state and the same shutdown signal.

pub mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::get;
use jarvis_app::layers::ClientIp;
use jarvis_app::state::StartupError;
use jarvis_app::{AppState, app};
use jarvis_config::{Config, SecretsConfig};
use jarvis_fn_agents::jarvis_agents::Agents;
use jarvis_fn_agents::jarvis_agents::service::{AgentsHealth, LocalDispatch};
use jarvis_fn_automations::Automating;
use jarvis_fn_knowledge::jarvis_knowledge::service::{Knowledge, LocalQueue, run_local_worker};
use jarvis_fn_realtime::Realtime;
use jarvis_http::Json;
use jarvis_secrets::ensure_local_file;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi};
use utoipa_axum::router::OpenApiRouter;

/// A function the gateway hosts: the name of its Lambda binary and its routes.
pub struct Function {
    /// The function's binary name, as in `template.yaml` and the `cargo lambda watch` table.
    pub name: &'static str,
    /// Its routes with their OpenAPI description.
    pub api: OpenApiRouter<AppState>,
}

/// Every function the gateway hosts.
pub fn functions() -> Vec<Function> {
    vec![
        Function {
            name: "system",
            api: jarvis_fn_system::api(),
        },
        Function {
            name: "crdt",
            api: jarvis_fn_crdt::api(),
        },
        Function {
            name: "archive",
            api: jarvis_fn_archive::api(),
        },
        Function {
            name: "sync",
            api: jarvis_fn_sync::api(),
        },
        Function {
            name: "auth",
            api: jarvis_fn_auth::api(),
        },
        Function {
            name: "ai",
            api: jarvis_fn_ai::api(),
        },
        Function {
            name: "chat",
            api: jarvis_fn_chat::api(),
        },
        Function {
            name: "knowledge",
            api: jarvis_fn_knowledge::api(),
        },
        Function {
            name: "agents",
            api: jarvis_fn_agents::api(),
        },
        Function {
            name: "automations",
            api: jarvis_fn_automations::api(),
        },
        Function {
            name: "trading",
            api: jarvis_fn_trading::api(),
        },
    ]
}

/// Every function's routes on one router, and the OpenAPI document describing them all.
pub fn routes_and_openapi() -> (axum::Router<AppState>, OpenApi) {
    let merged = functions()
        .into_iter()
        .fold(OpenApiRouter::new(), |all, function| {
            all.merge(function.api)
        });
    let (routes, mut openapi) = merged.split_for_parts();
    openapi.info = InfoBuilder::new()
        .title("Jarvis")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Personal AI assistant platform: every function's HTTP routes.",
        ))
        .build();
    let bearer = |format: Option<&str>| {
        let mut scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer);
        if let Some(format) = format {
            scheme = scheme.bearer_format(format);
        }
        SecurityScheme::Http(scheme.build()).into()
    };
    openapi
        .components
        .get_or_insert_with(Default::default)
        .security_schemes
        .extend([
            ("access_token".to_owned(), bearer(Some("JWT"))),
            ("peer_token".to_owned(), bearer(None)),
            (
                "api_key".to_owned(),
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))).into(),
            ),
        ]);
    jarvis_http::openapi::document_shared_answers(&mut openapi);
    jarvis_http::openapi::close_tagged_variants(&mut openapi);
    (routes, openapi)
}

/// The gateway's own route serving the merged OpenAPI document (local only: on AWS each
/// function is deployed on its own).
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The gateway's Prometheus endpoint: loopback callers only (see [`metrics_text`]).
pub const METRICS_PATH: &str = "/metrics";

/// Options of a gateway run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to listen on; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Directory holding the embedded database (created if missing).
    pub data_dir: PathBuf,
    /// The installed Prometheus recorder, served on [`METRICS_PATH`]; `None` serves no metrics.
    pub metrics: Option<PrometheusHandle>,
    /// Where the WebSocket API and its management API listen; `None` serves them on `addr`.
    pub ws_addr: Option<SocketAddr>,
}

/// Installs the process-wide Prometheus recorder every `metrics::…!` call records into.
/// Request durations are histograms with buckets from 1 ms to 10 s.
pub fn install_metrics() -> Result<PrometheusHandle, GatewayError> {
    const BUCKETS: [f64; 13] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| GatewayError::Metrics(e.to_string()))
}

/// `GET /metrics`: the Prometheus text exposition, to callers on a loopback address only.
///
/// Metrics name routes, peers and failure reasons; they are for the machine's own scraper,
/// so no credential is involved and any other address gets a 403. The address is the
/// client's as the request layers resolved it ([`ClientIp`]), so behind
/// `JARVIS_TRUSTED_PROXY_HOPS` proxies on the same machine a remote caller is still remote.
pub async fn metrics_text(
    handle: PrometheusHandle,
    ClientIp(client): ClientIp,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let loopback = client
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.to_canonical().is_loopback());
    if !loopback {
        return jarvis_http::ApiError::Forbidden(
            "metrics are served to loopback callers only".into(),
        )
        .into_response();
    }
    handle.run_upkeep();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// A bound, ready-to-run gateway.
pub struct Gateway {
    listener: TcpListener,
    router: axum::Router,
    ws: Option<(TcpListener, axum::Router)>,
    config: Config,
    state: AppState,
    knowledge: (Arc<Knowledge>, Arc<LocalQueue>),
    agents: (Arc<Agents>, Arc<Notify>),
    automating: Arc<Automating>,
    trading: Arc<jarvis_fn_trading::Hosting>,
}

impl Gateway {
    /// Opens the store under `options.data_dir` and binds `options.addr`.
    pub async fn bind(config: Config, options: &Options) -> Result<Self, GatewayError> {
        let mut config = config.with_data_dir(&options.data_dir);
        if config.replica_id_from_data_dir {
            config.replica_id =
                jarvis_config::datadir::replica_id(&config.data_dir).map_err(|source| {
                    GatewayError::Secrets {
                        path: config
                            .data_dir
                            .join(jarvis_config::datadir::REPLICA_ID_FILE),
                        source,
                    }
                })?;
        }
        if let SecretsConfig::File(path) = &config.secrets
            && ensure_local_file(path).map_err(|source| GatewayError::Secrets {
                path: path.clone(),
                source,
            })?
        {
            tracing::info!(path = %path.display(), "generated a local secrets file with random keys");
        }
        let mut state = AppState::from_config(config.clone()).await?;
        let ai = Arc::new(jarvis_fn_ai::Ai::new(
            &config,
            Arc::clone(&state.secrets),
            local_models(&config).await,
        ));
        state.register_health(Arc::new(jarvis_fn_ai::AiHealth(Arc::clone(&ai))));
        let sockets = Arc::new(ws::Sockets::default());
        state
            .realtime
            .attach(Arc::clone(&sockets) as Arc<dyn jarvis_realtime::Connections>);
        let chat = jarvis_fn_chat::service(&state, Arc::clone(&ai));
        let knowledge = jarvis_fn_knowledge::service(&state, Arc::clone(&ai))
            .map_err(|err| GatewayError::Processors(err.to_string()))?;
        let queue = Arc::new(LocalQueue::new(knowledge.site().clone()));
        knowledge.attach_queue(Arc::clone(&queue) as _);
        let watching = jarvis_fn_archive::Watching(Arc::new(jarvis_fn_knowledge::ArchiveIndexing(
            Arc::clone(&queue) as _,
        )));
        let agents = jarvis_fn_agents::service(
            &state,
            Arc::clone(&ai),
            Some(Arc::clone(&knowledge)),
            Some(watching.clone()),
        )
        .map_err(|err| GatewayError::Tools(err.to_string()))?;
        let wake = Arc::new(Notify::new());
        agents.attach_dispatch(Arc::new(LocalDispatch(Arc::clone(&wake))));
        state.register_health(Arc::new(AgentsHealth(Arc::clone(&agents))));
        let automating = jarvis_fn_automations::service(
            &state,
            Some(Arc::clone(&agents)),
            Some(watching.clone()),
        );
        let trading = jarvis_fn_trading::service(&state);
        let realtime = Arc::new(Realtime::new(state.clone(), Arc::clone(&chat)));
        let lifetimes = ws::Lifetimes {
            idle: config.realtime.idle_timeout,
            max: config.realtime.max_lifetime,
        };
        let ws_router = Arc::new(ws::WsGateway::new(realtime, sockets, lifetimes)).router();
        let (routes, openapi) = routes_and_openapi();
        let mut routes = routes
            .route(OPENAPI_PATH, get(move || async move { Json(openapi) }))
            .layer(axum::Extension(ai))
            .layer(axum::Extension(chat))
            .layer(axum::Extension(Arc::clone(&knowledge)))
            .layer(axum::Extension(Arc::clone(&agents)))
            .layer(axum::Extension(Arc::clone(&automating)))
            .layer(axum::Extension(Arc::clone(&trading)))
            .layer(axum::Extension(watching));
        if let Some(handle) = options.metrics.clone() {
            routes = routes.route(
                METRICS_PATH,
                get(move |client| metrics_text(handle.clone(), client)),
            );
        }
        let listener =
            TcpListener::bind(options.addr)
                .await
                .map_err(|source| GatewayError::Bind {
                    addr: options.addr,
                    source,
                })?;
        let (router, ws) = match options.ws_addr {
            None => (app(routes, state.clone()).merge(ws_router), None),
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| GatewayError::Bind { addr, source })?;
                (app(routes, state.clone()), Some((listener, ws_router)))
            }
        };
        Ok(Self {
            listener,
            router,
            ws,
            config,
            state,
            knowledge: (knowledge, queue),
            agents: (agents, wake),
            automating,
            trading,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, GatewayError> {
        self.listener.local_addr().map_err(GatewayError::Serve)
    }

    /// The address of the WebSocket API and its management API: [`local_addr`](Self::local_addr)
    /// unless `ws_addr` was given.
    pub fn ws_addr(&self) -> Result<SocketAddr, GatewayError> {
        match &self.ws {
            Some((listener, _)) => listener.local_addr().map_err(GatewayError::Serve),
            None => self.local_addr(),
        }
    }

    /// The configuration the gateway runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Serves HTTP and runs the system jobs (sync rounds, the purge of expired documents,
    /// feed pruning, the health probe) and the ingestion worker until `shutdown` resolves, then lets in-flight requests and the
    /// current sync round finish. A document being read when it stops stays queued and is
    /// read again on the next start.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        let (stop, stopped) = watch::channel(false);
        // The system jobs (sync rounds, expiry purge, feed pruning, health probe) on the
        // schedules EventBridge Scheduler fires them on AWS.
        let jobs = tokio::spawn(jarvis_fn_jobs::run_locally(
            self.state.clone(),
            wait_until_set(stopped.clone()),
        ));
        let (knowledge, queue) = self.knowledge;
        let worker_stopped = stopped.clone();
        let worker = tokio::spawn(async move {
            tokio::select! {
                () = run_local_worker(knowledge, queue) => {}
                () = wait_until_set(worker_stopped) => {}
            }
        });
        // Agent runs, driven in process: an invocation has `JARVIS_AGENTS_INVOCATION_SECONDS`
        // before it queues the run again, as a Lambda's timeout would make it.
        let (agents, wake) = self.agents;
        let agents_config = self.config.agents.clone();
        let agents_stopped = stopped.clone();
        let agent_worker = tokio::spawn(async move {
            tokio::select! {
                () = agents.run_local_worker(wake, agents_config.invocation, agents_config.concurrency) => {}
                () = wait_until_set(agents_stopped) => {}
            }
        });
        // The bundled daily bars, loaded once into a store that has none of their symbols.
        let bars = tokio::spawn(load_bars(
            Arc::clone(&self.trading),
            self.config.trading.bars_file.clone(),
        ));
        // Automations and reminders, fired every second.
        let automating = self.automating;
        let firer = tokio::spawn(
            jarvis_fn_automations::jarvis_automations::fire::run_locally(
                automating.automations.clone(),
                Arc::clone(&automating.actions) as _,
                wait_until_set(stopped.clone()),
            ),
        );
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let ws = self.ws.map(|(listener, router)| {
            let stopped = stopped.clone();
            tokio::spawn(async move {
                let service = router.into_make_service_with_connect_info::<SocketAddr>();
                axum::serve(listener, service)
                    .with_graceful_shutdown(wait_until_set(stopped))
                    .await
            })
        });
        let served = axum::serve(self.listener, service)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop.send(true);
            })
            .await;
        // The sender is gone once the server stops, whichever way: the loops end too.
        bars.abort();
        let _ = tokio::join!(jobs, worker, agent_worker, firer);
        if let Some(ws) = ws {
            match ws.await {
                Ok(Err(err)) => return Err(GatewayError::Serve(err)),
                Err(err) => tracing::warn!(error = %err, "the WebSocket server task failed"),
                Ok(Ok(())) => {}
            }
        }
        served.map_err(GatewayError::Serve)
    }
}

/// The local models found in the configured directory, as the `local` provider; none (with
/// a hint) when they are not installed or do not load.
#[cfg(feature = "local-models")]
async fn local_models(config: &Config) -> Vec<(String, Arc<dyn jarvis_ai::Provider>)> {
    let dir = config.ai.local_dir.clone();
    let shown = dir.display().to_string();
    match tokio::task::spawn_blocking(move || jarvis_ai::local::Local::discover(&dir)).await {
        Ok(Ok(Some(local))) => {
            tracing::info!(dir = %shown, chat = local.has_chat(), embedder = local.has_embedder(), "local models loaded");
            vec![(
                "local".to_owned(),
                Arc::new(local) as Arc<dyn jarvis_ai::Provider>,
            )]
        }
        Ok(Ok(None)) => {
            tracing::warn!(dir = %shown, "no local models: replies are scripted echoes until ./infra/fetch-models.sh fetches them");
            Vec::new()
        }
        Ok(Err(err)) => {
            tracing::warn!(dir = %shown, error = %err, "the local models did not load; run ./infra/fetch-models.sh again");
            Vec::new()
        }
        Err(err) => {
            tracing::warn!(error = %err, "loading the local models failed");
            Vec::new()
        }
    }
}

/// Without the `local-models` feature there is no `local` provider.
#[cfg(not(feature = "local-models"))]
async fn local_models(_config: &Config) -> Vec<(String, Arc<dyn jarvis_fn_ai::Provider>)> {
    Vec::new()
}

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Configuration, store or telemetry setup failed.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A file of the data directory (the secrets file, the replica id) could not be created.
    #[error("could not create {path}: {source}")]
    Secrets {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server error: {0}")]
    Serve(std::io::Error),
    /// The metrics recorder could not be installed.
    #[error("metrics: {0}")]
    Metrics(String),
    /// The knowledge base's file processors did not validate.
    #[error("file processors: {0}")]
    Processors(String),
    /// The agents' tools did not validate.
    #[error("agent tools: {0}")]
    Tools(String),
}

/// Loads the bars of `file` (`JARVIS_TRADING_BARS_FILE`) when it exists and the store lists
/// none of its symbols: the paper exchange's default market data, taken from the
/// `bokeh-sampledata` package by `infra/fetch-market-data.sh`.
async fn load_bars(trading: Arc<jarvis_fn_trading::Hosting>, file: PathBuf) {
    let bytes = match tokio::fs::read(&file).await {
        Ok(bytes) => bytes,
        Err(_) => {
            tracing::info!(file = %file.display(), "no bundled market data: run ./infra/fetch-market-data.sh to trade on historical prices");
            return;
        }
    };
    match trading.0.instruments().await {
        Ok(listed) if !listed.is_empty() => return,
        Ok(_) => {}
        Err(err) => {
            tracing::warn!(error = %err, "the instruments could not be read");
            return;
        }
    }
    match trading.0.import(&bytes).await {
        Ok(counts) => {
            tracing::info!(file = %file.display(), symbols = counts.len(), "market data loaded");
        }
        Err(err) => {
            tracing::warn!(file = %file.display(), error = %err, "the market data could not be loaded")
        }
    }
}

/// Resolves once the flag is set or its sender is gone.
async fn wait_until_set(mut flag: watch::Receiver<bool>) {
    while !*flag.borrow_and_update() {
        if flag.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::body::to_bytes;
    use metrics_exporter_prometheus::PrometheusBuilder;

    fn handle() -> PrometheusHandle {
        PrometheusBuilder::new().build_recorder().handle()
    }

    fn client(ip: Option<&str>) -> ClientIp {
        ClientIp(ip.map(str::to_owned))
    }

    #[tokio::test]
    async fn metrics_are_refused_to_a_caller_off_the_loopback_interface() {
        for from in [Some("192.0.2.7"), None] {
            let response = metrics_text(handle(), client(from)).await;
            assert_eq!(response.status(), 403, "{from:?}");
            let body = to_bytes(response.into_body(), 4096).await.expect("body");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("envelope");
            assert_eq!(body["error"]["code"], "forbidden");
        }
    }

    #[tokio::test]
    async fn metrics_are_served_to_loopback_callers_over_ipv4_and_ipv6() {
        for from in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let response = metrics_text(handle(), client(Some(from))).await;
            assert_eq!(response.status(), 200, "{from}");
        }
    }
}
