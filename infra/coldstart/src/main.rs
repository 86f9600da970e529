//! The cold-start bench: each function's release bootstrap started the way Lambda does,
//! beside a hello-world `lambda_http` + axum function built with the same profile (the floor).
//!
//! Run it with `./infra/bench-coldstart.sh`, which builds the bootstraps and passes them here.
//! Prints, per function: bootstrap size, init (process start to the first `GET /next`), first
//! invocation, warm p50 and p99 over `--invocations`, and peak RSS; then a second run of the
//! Lambda builds with every AWS endpoint on a closed port, which must still start.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use jarvis_coldstart::{Failure, Sandbox, http_event, quantile};

/// Measures cold starts of function bootstraps against a Runtime API emulator.
#[derive(Parser)]
#[command(name = "coldstart")]
struct Args {
    /// The floor's bootstrap (the `floor` binary of this package).
    #[arg(long)]
    floor: PathBuf,
    /// `name=path` of a bootstrap built with the embedded store (`--features libsql`).
    #[arg(long = "embedded", value_parser = named)]
    embedded: Vec<(String, PathBuf)>,
    /// `name=path` of a Lambda build (DynamoDB, Secrets Manager), started with every AWS
    /// endpoint on a closed port.
    #[arg(long = "closed-port", value_parser = named)]
    closed_port: Vec<(String, PathBuf)>,
    /// Warm invocations per function.
    #[arg(long, default_value_t = 1000)]
    invocations: usize,
    /// Cold starts per function: init and first invocation are their medians.
    #[arg(long, default_value_t = 5)]
    cold_starts: usize,
}

fn named(arg: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = arg.split_once('=').ok_or("expected name=path")?;
    Ok((name.to_owned(), PathBuf::from(path)))
}

/// The request each function is measured with: `/health` where it exists, else a route of
/// the function asked without a credential (the whole request path up to the 401).
fn route(function: &str) -> &'static str {
    match function {
        "crdt" => "/crdt/counters/visits",
        "archive" => "/archive",
        "sync" => "/sync/changes",
        "auth" => "/auth/me",
        _ => "/health",
    }
}

struct Measured {
    name: String,
    size: u64,
    init: Duration,
    first: Duration,
    first_status: u64,
    p50: Duration,
    p99: Duration,
    rss_kib: Option<u64>,
}

/// How a bench run goes: how many cold starts and warm invocations, where logs go.
struct Plan<'a> {
    cold_starts: usize,
    invocations: usize,
    logs: &'a std::path::Path,
}

/// `plan.cold_starts` cold starts of `bootstrap` (the environment of the `i`-th from
/// `env(i)`, so each sandbox starts with an empty `/tmp` as on Lambda), then the warm
/// invocations in the last sandbox.
async fn measure(
    name: &str,
    bootstrap: &std::path::Path,
    env: &dyn Fn(usize) -> Vec<(String, String)>,
    plan: &Plan<'_>,
) -> Result<Measured, Failure> {
    let size = std::fs::metadata(bootstrap)?.len();
    let event = || http_event("GET", route(name), &[]);
    let (mut inits, mut firsts) = (Vec::new(), Vec::new());
    let mut first_status = 0;
    let mut warm = Vec::with_capacity(plan.invocations);
    let mut rss_kib = None;
    for start in 0..plan.cold_starts.max(1) {
        let log = plan.logs.join(format!("{name}-{start}.log"));
        let mut sandbox =
            Sandbox::start(bootstrap, &format!("jarvis-{name}"), &env(start), &log).await?;
        let last = start + 1 >= plan.cold_starts;
        let result = async {
            inits.push(sandbox.ready(Duration::from_secs(30)).await?);
            let first = sandbox.invoke(event(), Duration::from_secs(30)).await?;
            firsts.push(first.latency);
            first_status = first.response["statusCode"].as_u64().unwrap_or(0);
            if last {
                for _ in 0..plan.invocations {
                    warm.push(
                        sandbox
                            .invoke(event(), Duration::from_secs(30))
                            .await?
                            .latency,
                    );
                }
                rss_kib = sandbox.peak_rss_kib();
            }
            Ok::<_, Failure>(())
        }
        .await;
        sandbox.stop().await;
        if let Err(err) = result {
            eprintln!("log of {name}: {}", log.display());
            return Err(err);
        }
    }
    inits.sort();
    firsts.sort();
    warm.sort();
    Ok(Measured {
        name: name.to_owned(),
        size,
        init: quantile(&inits, 0.5),
        first: quantile(&firsts, 0.5),
        first_status,
        p50: quantile(&warm, 0.5),
        p99: quantile(&warm, 0.99),
        rss_kib,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn ratio(value: Duration, floor: Duration) -> String {
    if floor.is_zero() {
        return "—".into();
    }
    format!("{:.2}×", value.as_secs_f64() / floor.as_secs_f64())
}

fn print_table(rows: &[Measured], floor: &Measured) {
    println!(
        "| function | request | status | size MB | init ms | init / floor | first ms | first / floor | warm p50 ms | p50 / floor | warm p99 ms | peak RSS MB |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in std::iter::once(floor).chain(rows) {
        println!(
            "| {} | GET {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            route(&row.name),
            row.first_status,
            row.size as f64 / 1_000_000.0,
            ms(row.init),
            ratio(row.init, floor.init),
            ms(row.first),
            ratio(row.first, floor.first),
            ms(row.p50),
            ratio(row.p50, floor.p50),
            ms(row.p99),
            row.rss_kib
                .map_or_else(|| "—".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
        );
    }
}

async fn run(args: Args) -> Result<(), String> {
    let scratch = std::env::temp_dir().join(format!("jarvis-coldstart-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let master_key = uuid::Uuid::new_v4().simple().to_string().repeat(2);
    let plan = Plan {
        cold_starts: args.cold_starts,
        invocations: args.invocations,
        logs: &scratch,
    };
    let embedded_env = |name: &str, start: usize| {
        vec![
            (
                "JARVIS_DATA_DIR".to_owned(),
                scratch
                    .join(format!("{name}-{start}"))
                    .display()
                    .to_string(),
            ),
            ("JARVIS_STORE".to_owned(), "libsql".to_owned()),
            ("JARVIS_REPLICA_ID".to_owned(), "coldstart".to_owned()),
            (
                "JARVIS_SECRETS".to_owned(),
                serde_json::json!({ "master_key": master_key }).to_string(),
            ),
        ]
    };

    println!(
        "## Embedded store: median of {} cold starts, {} warm invocations",
        args.cold_starts, args.invocations
    );
    println!();
    let floor = measure("floor", &args.floor, &|_| Vec::new(), &plan)
        .await
        .map_err(|e| format!("floor: {e}"))?;
    let mut rows = Vec::new();
    for (name, path) in &args.embedded {
        let row = measure(name, path, &|start| embedded_env(name, start), &plan)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        rows.push(row);
    }
    print_table(&rows, &floor);

    if args.closed_port.is_empty() {
        return Ok(());
    }
    // A port that was free a moment ago and has no listener: every connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?;
    let endpoint = format!("http://{closed}");
    let aws_env = vec![
        ("JARVIS_STORE".to_owned(), "dynamodb".to_owned()),
        (
            "JARVIS_DYNAMODB_TABLE".to_owned(),
            "jarvis-documents".to_owned(),
        ),
        ("JARVIS_SECRET_ID".to_owned(), "jarvis/secrets".to_owned()),
        ("AWS_ENDPOINT_URL".to_owned(), endpoint.clone()),
    ];
    println!();
    println!("## Lambda builds, every AWS endpoint at {endpoint} (closed): init must succeed");
    println!();
    let once = Plan {
        cold_starts: 1,
        invocations: 0,
        logs: &scratch,
    };
    let mut rows = Vec::new();
    for (name, path) in &args.closed_port {
        let row = measure(name, path, &|_| aws_env.clone(), &once)
            .await
            .map_err(|e| format!("{name} with AWS unreachable: {e}"))?;
        rows.push(row);
    }
    println!("| function | size MB | init ms | init / floor | first request | status | first ms |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for row in &rows {
        println!(
            "| {} | {:.2} | {} | {} | GET {} | {} | {} |",
            row.name,
            row.size as f64 / 1_000_000.0,
            ms(row.init),
            ratio(row.init, floor.init),
            route(&row.name),
            row.first_status,
            ms(row.first),
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("coldstart: {message}");
            ExitCode::FAILURE
        }
    }
}
