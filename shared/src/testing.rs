//! Helpers for in-process HTTP tests of functions: an application on a fresh libSQL store in
//! a temporary directory, and one call that sends a request and parses the JSON answer.

use std::path::PathBuf;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;

use crate::config::Config;
use crate::state::AppState;

/// An application over a store in its own temporary directory, removed on drop.
pub struct TestApp {
    router: Router,
    /// The state the application runs with.
    pub state: AppState,
    dir: PathBuf,
}

impl TestApp {
    /// Serves `routes` as every host does, on a fresh store, as replica `test`.
    pub async fn new(routes: Router<AppState>) -> Self {
        Self::with_env(routes, &[]).await
    }

    /// [`new`](Self::new) with extra configuration variables.
    pub async fn with_env(routes: Router<AppState>, env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("jarvis-test-{}", uuid::Uuid::new_v4()));
        let mut vars = vec![
            (
                "JARVIS_DATA_DIR".to_owned(),
                dir.to_string_lossy().into_owned(),
            ),
            ("JARVIS_REPLICA_ID".to_owned(), "test".to_owned()),
        ];
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let config = Config::from_vars(vars).unwrap_or_else(|e| panic!("test configuration: {e}"));
        let state = AppState::from_config(config)
            .await
            .unwrap_or_else(|e| panic!("test state: {e}"));
        Self {
            router: crate::http::app(routes, state.clone()),
            state,
            dir,
        }
    }

    /// Sends a request (with a JSON body when given) and returns the status and JSON body
    /// (`null` when empty).
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let request = Request::builder().method(method).uri(uri);
        let request = match body {
            Some(json) => request
                .header("content-type", "application/json")
                .body(Body::from(json.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap_or_else(|e| panic!("request: {e}"));
        self.send(request).await
    }

    /// Sends a prepared request.
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {});
        let status = response.status();
        let bytes = to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_else(|e| panic!("body: {e}"));
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        (status, json)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
