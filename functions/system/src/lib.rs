//! The system function: `GET /health` (component health, overall status and score) and
//! `GET /version` (what is deployed).

use axum::http::StatusCode;
use jarvis_app::AppState;
use jarvis_health::{HealthReport, Status};
use jarvis_http::Json;
use jarvis_identity::{Identity, Scope};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The function's routes with their OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(version))
}

/// The function's routes.
pub fn routes() -> axum::Router<AppState> {
    api().into()
}

/// The routes of the Lambda build, whose `/health` also reports the model breakers the AI
/// function's instances recorded (`ai`, not critical): on AWS they live in other processes.
pub async fn lambda_routes(state: &mut AppState) -> axum::Router<AppState> {
    let breakers = jarvis_ai::observed::ObservedBreakers(std::sync::Arc::clone(&state.store));
    state.register_health(std::sync::Arc::new(breakers));
    routes()
}

/// Health of every registered component, folded into a status and a 0–100 score.
///
/// Everyone sees each component's status; admins also see messages, details and timings.
///
/// Answers 200 while the system can serve (`ok` or `degraded`) and 503 when it is `down`,
/// so load balancers and uptime checks can act on the status code alone.
#[utoipa::path(
    get,
    path = "/health",
    tag = "system",
    responses(
        (status = 200, description = "Serving", body = HealthReport),
        (status = 503, description = "A critical component is down", body = HealthReport),
    )
)]
#[tracing::instrument(skip_all)]
async fn health(state: AppState, caller: Option<Identity>) -> (StatusCode, Json<HealthReport>) {
    let report = state.health.report().await;
    // Component messages and details describe the deployment: admins only.
    let report = if caller.is_some_and(|c| c.allows(Scope::Admin)) {
        report
    } else {
        report.summary()
    };
    let status = match report.status {
        Status::Ok | Status::Degraded => StatusCode::OK,
        Status::Down => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(report))
}

/// What `/version` answers.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionInfo {
    /// Product name.
    pub name: String,
    /// Crate version.
    pub version: String,
    /// Git revision the binary was built from, when known at build time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_revision: Option<String>,
}

/// The version of the running build.
#[utoipa::path(
    get,
    path = "/version",
    tag = "system",
    responses((status = 200, description = "The running build", body = VersionInfo))
)]
async fn version() -> Json<VersionInfo> {
    Json(VersionInfo {
        name: "jarvis".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git_revision: option_env!("JARVIS_GIT_REVISION").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::{Method, Request};
    use jarvis_config::Config;
    use jarvis_store::{Change, Key, ListQuery, Store, StoreError, Stored, Write};
    use std::sync::Arc;
    use tower::ServiceExt;

    #[derive(Debug)]
    struct DownStore;

    fn refused() -> StoreError {
        StoreError::Unavailable("connection refused".into())
    }

    /// A store whose every call fails, as an unreachable backend does.
    #[async_trait::async_trait]
    impl Store for DownStore {
        fn backend(&self) -> &'static str {
            "test"
        }
        fn max_document_bytes(&self) -> usize {
            0
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Err(refused())
        }
        async fn get(&self, _: &Key) -> Result<Option<Stored>, StoreError> {
            Err(refused())
        }
        async fn put(&self, _: &Key, _: Write<'_>) -> Result<u64, StoreError> {
            Err(refused())
        }
        async fn list(&self, _: &str, _: ListQuery<'_>) -> Result<Vec<(Key, Stored)>, StoreError> {
            Err(refused())
        }
        async fn changes(&self, _: u64, _: usize) -> Result<Vec<Change>, StoreError> {
            Err(refused())
        }
        async fn load_cursor(&self, _: &str) -> Result<Option<String>, StoreError> {
            Err(refused())
        }
        async fn save_cursor(&self, _: &str, _: &str) -> Result<(), StoreError> {
            Err(refused())
        }
        async fn purge_expired(&self, _: i64) -> Result<u64, StoreError> {
            Err(refused())
        }
    }

    async fn app_on_temp_store() -> (axum::Router, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config =
            Config::from_vars([("JARVIS_DATA_DIR", dir.path().to_string_lossy())]).expect("config");
        jarvis_secrets::ensure_local_file(&dir.path().join("secrets.json")).expect("secrets file");
        let state = AppState::from_config(config).await.expect("state");
        (jarvis_app::app(routes(), state), dir)
    }

    async fn get(app: axum::Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let response = app
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice(&body).expect("json body"))
    }

    #[tokio::test]
    async fn admins_see_the_store_and_secret_components_in_detail() {
        let app = jarvis_fn_auth::testing::TestApp::signed_in(routes()).await;
        let (status, body) = app.call(Method::GET, "/health", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["score"], 100);
        let store = &body["components"][0];
        assert_eq!(store["name"], "store");
        assert_eq!(store["status"], "ok");
        assert_eq!(store["details"]["backend"], "libsql");
        assert_eq!(store["details"]["reachable"], true);
        assert!(store["latency_ms"].as_f64().is_some());
        let secrets = &body["components"][1];
        assert_eq!(secrets["name"], "secrets");
        assert_eq!(secrets["status"], "ok");
        assert_eq!(secrets["details"]["source"], "file");
    }

    #[tokio::test]
    async fn anonymous_callers_see_statuses_without_details() {
        let (app, _dir) = app_on_temp_store().await;
        let (status, body) = get(app, "/health").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
        for component in body["components"].as_array().expect("components") {
            assert_eq!(component["status"], "ok");
            assert!(component.get("details").is_none(), "{component}");
        }
    }

    #[tokio::test]
    async fn a_missing_secret_source_is_reported_down_without_its_cause() {
        let config = Config::from_vars([
            ("AWS_LAMBDA_FUNCTION_NAME", "system"),
            ("JARVIS_DATA_DIR", "/nonexistent/jarvis-test"),
            ("JARVIS_STORE", "libsql"),
        ])
        .expect("config");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config.with_data_dir(dir.path());
        let state = AppState::from_config(config).await.expect("state");
        let app = jarvis_app::app(routes(), state);
        let (_, body) = get(app, "/health").await;
        assert_eq!(body["components"][1]["name"], "secrets");
        assert_eq!(body["components"][1]["status"], "down");
    }

    #[tokio::test]
    async fn health_is_503_when_the_store_is_down() {
        let config = Config::from_vars(Vec::<(String, String)>::new()).expect("config");
        let state = AppState::with_store(config, Arc::new(DownStore));
        let app = jarvis_app::app(routes(), state);
        let (status, body) = get(app, "/health").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "down");
        assert_eq!(body["score"], 0);
        assert_eq!(body["components"][0]["status"], "down");
        assert!(!body.to_string().contains("connection refused"));
    }

    #[tokio::test]
    async fn the_lambda_build_reports_the_breakers_the_ai_function_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config =
            Config::from_vars([("JARVIS_DATA_DIR", dir.path().to_string_lossy())]).expect("config");
        jarvis_secrets::ensure_local_file(&dir.path().join("secrets.json")).expect("secrets file");
        let mut state = AppState::from_config(config).await.expect("state");
        let routes = lambda_routes(&mut state).await;
        let (store, clock) = (Arc::clone(&state.store), Arc::clone(&state.clock));
        let app = jarvis_app::app(routes, state);
        let ai = |body: &serde_json::Value| {
            body["components"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["name"] == "ai"))
                .cloned()
                .expect("an ai component")
        };
        let (_, body) = get(app.clone(), "/health").await;
        assert_eq!(ai(&body)["status"], "ok", "nothing recorded");

        // What an AI function instance writes when a breaker opens.
        jarvis_ai::observed::record(
            store.as_ref(),
            &clock,
            "smart",
            "openai",
            "gpt-4o",
            jarvis_ai::resilience::BreakerState::Open,
            std::time::Duration::from_secs(30),
            jarvis_store::now_secs(),
        )
        .await
        .expect("record");
        let (status, body) = get(app, "/health").await;
        assert_eq!(status, StatusCode::OK, "not critical");
        assert_eq!(body["status"], "degraded");
        assert_eq!(ai(&body)["status"], "degraded");
    }

    #[tokio::test]
    async fn version_reports_the_crate_version() {
        let (app, _dir) = app_on_temp_store().await;
        let (status, body) = get(app, "/version").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["name"], "jarvis");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    }

    #[tokio::test]
    async fn unknown_route_gets_the_404_envelope_with_the_request_id() {
        let (app, _dir) = app_on_temp_store().await;
        let response = app
            .oneshot(Request::get("/nope").body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let header_id = response.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"]["code"], "not_found");
        assert_eq!(body["error"]["request_id"], header_id.as_str());
    }

    #[tokio::test]
    async fn wrong_method_gets_the_405_envelope() {
        let (app, _dir) = app_on_temp_store().await;
        let response = app
            .oneshot(
                Request::post("/health")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }

    #[tokio::test]
    async fn responses_carry_security_headers() {
        let (app, _dir) = app_on_temp_store().await;
        let response = app
            .oneshot(
                Request::get("/version")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.headers()["x-frame-options"], "DENY");
    }
}
