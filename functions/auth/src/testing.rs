//! Helpers for in-process HTTP tests of every function: an application on a fresh libSQL
//! store in a temporary directory, accounts signed in through this function's account
//! domain, and one call that sends a request and parses the JSON answer. Built for tests only
//! (cargo feature `testing`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;

use jarvis_app::AppState;
use jarvis_config::{Config, SecretsConfig};
use jarvis_store::Store;

/// An application over a store in its own temporary directory, removed on drop.
pub struct TestApp {
    router: Router,
    /// The state the application runs with.
    pub state: AppState,
    dir: PathBuf,
    default_token: Option<String>,
}

impl TestApp {
    /// Serves `routes` as every host does, on a fresh store, as replica `test`.
    pub async fn new(routes: Router<AppState>) -> Self {
        Self::with_env(routes, &[]).await
    }

    /// [`new`](Self::new) with extra configuration variables.
    pub async fn with_env(routes: Router<AppState>, env: &[(&str, &str)]) -> Self {
        Self::with_store_layer(routes, env, |store| store).await
    }

    /// [`with_env`](Self::with_env) with the opened store wrapped by `wrap` (to observe or
    /// disturb what the application does with it).
    pub async fn with_store_layer(
        routes: Router<AppState>,
        env: &[(&str, &str)],
        wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>,
    ) -> Self {
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
        if let SecretsConfig::File(path) = &config.secrets {
            jarvis_secrets::ensure_local_file(path)
                .unwrap_or_else(|e| panic!("test secrets file: {e}"));
        }
        let store = jarvis_store::open(&config.store)
            .await
            .unwrap_or_else(|e| panic!("test store: {e}"));
        let state = AppState::with_store(config, wrap(store));
        Self {
            router: jarvis_app::app(routes, state.clone()),
            state,
            dir,
            default_token: None,
        }
    }

    /// Sends a request (with a JSON body when given) and returns the status and JSON body
    /// (`null` when empty). On a [`signed_in`](Self::signed_in) app it acts as that account.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let token = self.default_token.clone();
        self.call_as(token.as_deref(), method, uri, body).await
    }

    /// [`call`](Self::call) with `Authorization: Bearer <token>`, or with no credentials
    /// when `token` is `None`.
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(json) => request
                .header("content-type", "application/json")
                .body(Body::from(json.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap_or_else(|e| panic!("request: {e}"));
        self.send(request).await
    }

    /// Registers an account with [`PASSWORD`] and signs it in, through the account domain
    /// (no route needed). The first account of an app is its admin.
    pub async fn sign_up(&self, email: &str) -> SignedIn {
        let accounts = crate::accounts::Accounts::new(self.state.clone(), None)
            .await
            .unwrap_or_else(|e| panic!("secrets: {e}"));
        let account = accounts
            .register(email, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("register {email}: {e}"));
        let tokens = accounts
            .login(email, PASSWORD, None)
            .await
            .unwrap_or_else(|e| panic!("login {email}: {e}"));
        SignedIn {
            user_id: account.id,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
        }
    }

    /// An app like [`new`](Self::new) whose [`call`](Self::call) acts as a signed-in
    /// account, `owner@example.com` (the app's admin).
    pub async fn signed_in(routes: Router<AppState>) -> Self {
        Self::signed_in_with_env(routes, &[]).await
    }

    /// [`signed_in`](Self::signed_in) with extra configuration variables.
    pub async fn signed_in_with_env(routes: Router<AppState>, env: &[(&str, &str)]) -> Self {
        let mut app = Self::with_env(routes, env).await;
        let owner = app.sign_up("owner@example.com").await;
        app.default_token = Some(owner.access_token);
        app
    }

    /// Sends a prepared request and returns the whole response.
    /// Like [`call`](Self::call), a request without credentials acts as the signed-in
    /// account when the app has one.
    pub async fn respond(&self, mut request: Request<Body>) -> axum::response::Response {
        let headers = request.headers();
        let anonymous =
            !headers.contains_key("authorization") && !headers.contains_key("x-api-key");
        if let (true, Some(token)) = (anonymous, &self.default_token)
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            request.headers_mut().insert("authorization", value);
        }
        if request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .is_none()
        {
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
        }
        self.router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {})
    }

    /// Sends a prepared request.
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = self.respond(request).await;
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

/// The password [`TestApp::sign_up`] registers with.
pub const PASSWORD: &str = "correct horse battery staple";

/// An account signed in by [`TestApp::sign_up`].
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The account id.
    pub user_id: String,
    /// A fresh access token.
    pub access_token: String,
    /// Its refresh token.
    pub refresh_token: String,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
