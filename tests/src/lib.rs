//! Helpers shared by the workspace-level tests: where the workspace is, a handle on a real
//! `jarvis-local` process started on a free port, the store backends, a store a test can watch
//! or disturb, and the data sets some tests run on.

pub mod backends;
pub mod client;
pub mod corpus;
pub mod hooked;
pub mod market;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The workspace root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Builds `jarvis-local` once per test binary (a no-op when it is fresh) and returns the
/// path of the executable, wherever the target directory is.
pub fn jarvis_local_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build_jarvis_local(false)).clone()
}

/// [`jarvis_local_binary`] in the release profile, for benchmarks.
pub fn jarvis_local_release_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build_jarvis_local(true)).clone()
}

fn build_jarvis_local(release: bool) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut args = vec![
        "build",
        "--quiet",
        "-p",
        "jarvis-local",
        "--bin",
        "jarvis-local",
        "--message-format=json",
    ];
    if release {
        args.push("--release");
    }
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo can be run");
    assert!(output.status.success(), "building jarvis-local failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact")
        .filter_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .find(|path| path.file_stem().is_some_and(|s| s == "jarvis-local"))
        .expect("cargo reported the jarvis-local executable")
}

/// The directory holding both local models (`infra/fetch-models.sh` puts them in the
/// workspace's `.tools/models`), or `None` when they are missing: a test then says so and
/// passes, unless `JARVIS_TEST_LOCAL_MODELS=required` (set by `infra/test.sh`) where it fails.
pub fn local_models_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("JARVIS_AI_LOCAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools/models"));
    if jarvis_ai::local::Local::installed(&dir) {
        return Some(dir);
    }
    assert_ne!(
        std::env::var("JARVIS_TEST_LOCAL_MODELS").as_deref(),
        Ok("required"),
        "the local models are required and missing from {}",
        dir.display()
    );
    eprintln!(
        "local models missing from {}: run ./infra/fetch-models.sh",
        dir.display()
    );
    None
}

/// A running `jarvis-local` process.
pub struct LocalNode {
    child: Child,
    base_url: String,
    logs: Arc<Mutex<String>>,
}

impl LocalNode {
    /// Starts `jarvis-local` on a free loopback port with `data_dir`, plus extra environment,
    /// and waits until it announces its address. The node loads no local models unless `env`
    /// sets `JARVIS_AI_LOCAL_DIR` (see [`local_models_dir`]).
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_at("127.0.0.1:0", data_dir, env)
    }

    /// [`start`](Self::start) on a given address.
    pub fn start_at(addr: &str, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_binary(&jarvis_local_binary(), addr, data_dir, env)
    }

    /// [`start_at`](Self::start_at) with a given `jarvis-local` executable.
    pub fn start_binary(binary: &Path, addr: &str, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary);
        command
            .args(["--addr", addr, "--data-dir"])
            .arg(data_dir)
            .env_remove("JARVIS_ADDR")
            .env_remove("JARVIS_DATA_DIR")
            .env_remove("JARVIS_PEERS")
            .env_remove("JARVIS_SYNC_TOKEN")
            .env_remove("JARVIS_REPLICA_ID")
            .env_remove("JARVIS_SECRETS")
            .env_remove("JARVIS_SECRET_ID")
            .env_remove("JARVIS_SECRETS_FILE")
            .env("JARVIS_LOG_FORMAT", "json")
            .env("JARVIS_AI_LOCAL_DIR", data_dir.join("no-models"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("jarvis-local starts");
        let logs = Arc::new(Mutex::new(String::new()));
        if let Some(mut stderr) = child.stderr.take() {
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut logs) = logs.lock() {
                        logs.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut announced = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !announced && let Some(url) = line.split("listening on ").nth(1) {
                    announced = true;
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let base_url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let logs = logs.lock().map(|l| l.clone()).unwrap_or_default();
                panic!("jarvis-local did not announce its address; logs:\n{logs}");
            }
        };
        Self {
            child,
            base_url,
            logs,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// What the process has logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits (up to 10 s) until the process has logged `needle`; returns whether it did.
    /// Logs are read by a thread, so a line written just now may not be here yet.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends SIGTERM and waits (up to 20 s) for the process to exit.
    pub fn stop(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill can be run");
        assert!(status.success(), "SIGTERM could not be sent");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait().expect("wait on child") {
                Some(status) => return status,
                None if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    panic!("jarvis-local did not stop within 20 s of SIGTERM");
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A loopback port that was free a moment ago (for processes that must know each other's
/// addresses before they start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// Every function's routes, as the local gateway serves them, for in-process tests.
pub fn all_routes() -> axum::Router<jarvis_app::AppState> {
    jarvis_local::routes_and_openapi().0
}
