//! A Lambda Runtime API emulator: starts a function's bootstrap the way Lambda does and hands
//! it invocations, timing each step.
//!
//! It speaks the runtime side of the [Runtime API] (`GET /runtime/invocation/next`, `POST
//! /runtime/invocation/{id}/response` and `/error`, `POST /runtime/init/error`) on loopback,
//! and starts the bootstrap with the environment a `provided.al2023` sandbox has
//! (`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_*`, `_HANDLER`, `LAMBDA_TASK_ROOT`,
//! temporary credentials…) and nothing of the caller's. The cold-start bench
//! (`src/main.rs`) and the functions' tests of their Lambda entry point are built on it.
//!
//! Owns the emulation and the measures (init, per-invocation latency, peak RSS); changes
//! when the Runtime API does. Imports no Jarvis crate: it measures bootstraps from outside.
//!
//! [Runtime API]: https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc};

/// The API Gateway HTTP API (payload 2.0) event every invocation is made from.
pub const HTTP_EVENT: &str = include_str!("../fixtures/apigw-http-v2.json");

/// The function timeout the emulator announces in each invocation's deadline.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Something the bootstrap told the Runtime API.
#[derive(Debug)]
enum Report {
    /// `GET /next`: the runtime is ready for an invocation.
    Ready(Instant),
    /// `POST /invocation/{id}/response`.
    Response(String, Instant, Bytes),
    /// `POST /invocation/{id}/error`.
    Error(String, Bytes),
    /// `POST /init/error`.
    InitError(Bytes),
}

struct Shared {
    events: Mutex<mpsc::Receiver<(String, Value)>>,
    reports: mpsc::UnboundedSender<Report>,
}

/// What went wrong in a run.
#[derive(Debug)]
pub enum Failure {
    /// The bootstrap reported an init error (its body is the runtime's error document).
    Init(String),
    /// The bootstrap reported an invocation error.
    Invocation(String),
    /// The bootstrap exited.
    Exited(String),
    /// Nothing happened in time.
    TimedOut(&'static str),
    /// The emulator itself failed.
    Io(std::io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Init(body) => write!(f, "init error: {body}"),
            Self::Invocation(body) => write!(f, "invocation error: {body}"),
            Self::Exited(status) => write!(f, "the bootstrap exited: {status}"),
            Self::TimedOut(what) => write!(f, "timed out waiting for {what}"),
            Self::Io(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for Failure {}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Self::Io(err)
    }
}

/// One sandbox: the Runtime API on loopback and the bootstrap process it serves.
pub struct Sandbox {
    child: Child,
    started: Instant,
    events: mpsc::Sender<(String, Value)>,
    reports: mpsc::UnboundedReceiver<Report>,
    server: tokio::task::JoinHandle<()>,
}

/// The answer to one invocation.
#[derive(Debug)]
pub struct Invoked {
    /// From handing the event over to receiving the response.
    pub latency: Duration,
    /// The response document (for an HTTP event: `statusCode`, `headers`, `body`…).
    pub response: Value,
}

impl Sandbox {
    /// Starts the Runtime API, then `bootstrap` with a Lambda sandbox's environment for a
    /// function named `function`, plus `env` (the function's own variables). Its output goes
    /// to `log`.
    pub async fn start(
        bootstrap: &Path,
        function: &str,
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Self, Failure> {
        let (event_tx, event_rx) = mpsc::channel(1);
        let (report_tx, reports) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: Mutex::new(event_rx),
            reports: report_tx,
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            // The server stops when the sandbox drops its task.
            let _ = axum::serve(listener, runtime_api(shared)).await;
        });
        let bootstrap = std::fs::canonicalize(bootstrap)?;
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let task_root = bootstrap
            .parent()
            .map_or_else(|| "/".to_owned(), |p| p.display().to_string());
        let started = Instant::now();
        let child = Command::new(&bootstrap)
            .env_clear()
            .envs(sandbox_env(function, address, &task_root))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&task_root)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()?;
        Ok(Self {
            child,
            started,
            events: event_tx,
            reports,
            server,
        })
    }

    /// Waits until the runtime asks for its first invocation: the init time, from process
    /// start.
    pub async fn ready(&mut self, within: Duration) -> Result<Duration, Failure> {
        let started = self.started;
        match self.next_report(within, "the first GET /next").await? {
            Report::Ready(at) => Ok(at - started),
            Report::InitError(body) => Err(Failure::Init(text(&body))),
            other => Err(Failure::Invocation(format!("{other:?} before init"))),
        }
    }

    /// Hands `event` over and waits for its response.
    pub async fn invoke(&mut self, event: Value, within: Duration) -> Result<Invoked, Failure> {
        let id = uuid::Uuid::new_v4().to_string();
        let sent = Instant::now();
        self.events
            .send((id.clone(), event))
            .await
            .map_err(|_| Failure::Exited("the Runtime API stopped".into()))?;
        loop {
            match self.next_report(within, "a response").await? {
                Report::Ready(_) => continue,
                Report::Response(answered, at, body) if answered == id => {
                    let response = serde_json::from_slice(&body).map_err(|err| {
                        Failure::Invocation(format!("response is not JSON: {err}"))
                    })?;
                    return Ok(Invoked {
                        latency: at - sent,
                        response,
                    });
                }
                Report::Response(other, ..) => {
                    return Err(Failure::Invocation(format!(
                        "response for unknown id {other}"
                    )));
                }
                Report::Error(failed, body) => {
                    return Err(Failure::Invocation(format!("{failed}: {}", text(&body))));
                }
                Report::InitError(body) => return Err(Failure::Init(text(&body))),
            }
        }
    }

    /// The process's peak resident set so far, in KiB (`VmHWM`), where `/proc` has it.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Stops the bootstrap and the Runtime API.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        self.server.abort();
    }

    async fn next_report(
        &mut self,
        within: Duration,
        what: &'static str,
    ) -> Result<Report, Failure> {
        tokio::select! {
            report = self.reports.recv() => {
                report.ok_or(Failure::Exited("the Runtime API stopped".into()))
            }
            status = self.child.wait() => Err(Failure::Exited(
                status.map_or_else(|e| e.to_string(), |s| s.to_string()),
            )),
            () = tokio::time::sleep(within) => Err(Failure::TimedOut(what)),
        }
    }
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// The variables a `provided.al2023` sandbox starts its bootstrap with.
fn sandbox_env(function: &str, runtime_api: SocketAddr, task_root: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/22/[$LATEST]0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        // Temporary credentials of the execution role; never valid anywhere.
        ("AWS_ACCESS_KEY_ID", "ASIAJARVISCOLDSTART0".to_owned()),
        (
            "AWS_SECRET_ACCESS_KEY",
            "coldstart-not-a-real-secret".to_owned(),
        ),
        (
            "AWS_SESSION_TOKEN",
            "coldstart-not-a-real-session".to_owned(),
        ),
        ("_HANDLER", "bootstrap".to_owned()),
        ("LAMBDA_TASK_ROOT", task_root.to_owned()),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn runtime_api(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(|State(s): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Bytes| async move {
                let _ = s.reports.send(Report::Response(id, Instant::now(), body));
                StatusCode::ACCEPTED
            }),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(|State(s): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Bytes| async move {
                let _ = s.reports.send(Report::Error(id, body));
                StatusCode::ACCEPTED
            }),
        )
        .route(
            "/2018-06-01/runtime/init/error",
            post(|State(s): State<Arc<Shared>>, body: Bytes| async move {
                let _ = s.reports.send(Report::InitError(body));
                StatusCode::ACCEPTED
            }),
        )
        .with_state(shared)
}

/// `GET /next`: blocks until there is an event, as Lambda's does.
async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let _ = shared.reports.send(Report::Ready(Instant::now()));
    let Some((id, event)) = shared.events.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        + FUNCTION_TIMEOUT.as_millis();
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", id);
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:jarvis".to_owned(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-5e8b7a4c-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=0".to_owned(),
    );
    (headers, axum::Json(event)).into_response()
}

/// The HTTP API event of `method path` (query string and headers as in the fixture, plus
/// `headers`).
pub fn http_event(method: &str, path: &str, headers: &[(&str, &str)]) -> Value {
    let mut event: Value =
        serde_json::from_str(HTTP_EVENT).unwrap_or_else(|_| serde_json::json!({}));
    event["rawPath"] = Value::from(path);
    event["requestContext"]["http"]["method"] = Value::from(method);
    event["requestContext"]["http"]["path"] = Value::from(path);
    event["requestContext"]["requestId"] = Value::from(uuid::Uuid::new_v4().to_string());
    for (name, value) in headers {
        event["headers"][*name] = Value::from(*value);
    }
    event
}

/// The `q`-quantile (0 to 1) of `samples`, which must be sorted; zero for none.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = (q * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_is_an_http_api_v2_event() {
        let event = http_event("POST", "/archive", &[("authorization", "Bearer x")]);
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["rawPath"], "/archive");
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(event["headers"]["authorization"], "Bearer x");
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&samples, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&samples, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
