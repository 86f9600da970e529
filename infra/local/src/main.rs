//! `jarvis-local`: every Jarvis function on one local address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use jarvis_local::{Gateway, Options, shutdown_signal};
use jarvis_shared::{Config, telemetry};

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
    let config = Config::from_env().map_err(|e| e.to_string())?;
    telemetry::init(&config).map_err(|e| e.to_string())?;
    let options = Options {
        addr: args.addr,
        data_dir: args.data_dir,
    };
    let gateway = Gateway::bind(config, &options)
        .await
        .map_err(|e| e.to_string())?;
    let addr = gateway.local_addr().map_err(|e| e.to_string())?;
    println!("Jarvis is listening on http://{addr}");
    println!("  data:    {}", gateway.config().store);
    println!("  health:  http://{addr}/health");
    println!("  openapi: http://{addr}{}", jarvis_local::OPENAPI_PATH);
    println!("Press Ctrl-C to stop.");
    gateway
        .run(shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("jarvis-local stopped");
    Ok(())
}
