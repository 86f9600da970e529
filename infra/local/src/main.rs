//! `jarvis-local`: every Jarvis function on one local address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use jarvis_app::telemetry;
use jarvis_config::Config;
use jarvis_local::{Gateway, Options, shutdown_signal};

/// Runs every Jarvis function on one local address, on an embedded libSQL file.
#[derive(Debug, Parser)]
#[command(name = "jarvis-local", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "JARVIS_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Directory for local data; created if missing. The embedded database lives inside.
    #[arg(long, env = "JARVIS_DATA_DIR", default_value = ".jarvis")]
    data_dir: PathBuf,
    /// This deployment's replica name (JARVIS_REPLICA_ID; default: generated once per data
    /// directory, `local-` and 12 hex digits, kept in its `replica-id` file).
    #[arg(long)]
    replica_id: Option<String>,
    /// Base URL of a peer deployment to pull changes from; repeatable (JARVIS_PEERS,
    /// comma-separated).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Seconds between pull rounds (JARVIS_SYNC_INTERVAL; default 30).
    #[arg(long)]
    sync_interval: Option<u64>,
    /// Address of the WebSocket API (`/ws`) and its management API (`/@connections`);
    /// default: the HTTP address.
    #[arg(long, env = "JARVIS_WS_ADDR")]
    ws_addr: Option<SocketAddr>,
}

impl Args {
    /// Flags as the configuration variables they stand for.
    fn overrides(&self) -> Vec<(String, String)> {
        let mut vars = Vec::new();
        if let Some(id) = &self.replica_id {
            vars.push(("JARVIS_REPLICA_ID".to_owned(), id.clone()));
        }
        if !self.peers.is_empty() {
            vars.push(("JARVIS_PEERS".to_owned(), self.peers.join(",")));
        }
        if let Some(secs) = self.sync_interval {
            vars.push(("JARVIS_SYNC_INTERVAL".to_owned(), secs.to_string()));
        }
        vars
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("jarvis-local: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let config = Config::from_env_with(args.overrides()).map_err(|e| e.to_string())?;
    telemetry::init(&config).map_err(|e| e.to_string())?;
    let options = Options {
        addr: args.addr,
        data_dir: args.data_dir,
        metrics: Some(jarvis_local::install_metrics().map_err(|e| e.to_string())?),
        ws_addr: args.ws_addr,
    };
    let gateway = Gateway::bind(config, &options)
        .await
        .map_err(|e| e.to_string())?;
    let addr = gateway.local_addr().map_err(|e| e.to_string())?;
    println!("Jarvis is listening on http://{addr}");
    println!("  data:    {}", gateway.config().store);
    println!("  replica: {}", gateway.config().replica_id);
    let sync = &gateway.config().sync;
    match (&sync.token, sync.peers.is_empty()) {
        (Some(_), false) => println!(
            "  sync:    pulling {} every {} s",
            sync.peers.join(", "),
            sync.interval.as_secs()
        ),
        (Some(_), true) => {
            println!("  sync:    serving the change feed to peers; no peers to pull")
        }
        (None, _) => println!("  sync:    off (set JARVIS_SYNC_TOKEN to enable)"),
    }
    let ws = gateway.ws_addr().map_err(|e| e.to_string())?;
    println!("  ws:      ws://{ws}{}", jarvis_local::ws::WS_PATH);
    println!("  health:  http://{addr}/health");
    println!("  openapi: http://{addr}{}", jarvis_local::OPENAPI_PATH);
    println!(
        "  metrics: http://{addr}{} (loopback only)",
        jarvis_local::METRICS_PATH
    );
    println!("Press Ctrl-C to stop.");
    gateway
        .run(shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("jarvis-local stopped");
    Ok(())
}
