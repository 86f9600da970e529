//! The sync function: a deployment's change feed for its peers (`GET /sync/changes`), and
//! one pull round from every configured peer on demand (`POST /sync/run`), both with the
//! peer token (`Authorization: Bearer …`, compared in constant time); and, for
//! administrators, the changes pulled from peers that could not be merged
//! (`GET /sync/dead-letters`).

use jarvis_app::AppState;
use jarvis_http::error::{ApiError, AuthRejections, ErrorEnvelope};
use jarvis_http::{Json, Paged, Query};
use jarvis_identity::{Authorized, scope};
use jarvis_replication::{self as sync, ChangesPage, DeadLetter, FeedCursor, PeerResult};
use serde::{Deserialize, Serialize};
use tower_http::compression::CompressionLayer;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The function's routes with their OpenAPI description. The feed is gzip-compressed for
/// clients that accept it.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(changes))
        .layer(CompressionLayer::new().gzip(true))
        .routes(routes!(run))
        .routes(routes!(list_dead_letters))
}

/// The function's routes.
pub fn routes() -> axum::Router<AppState> {
    api().into()
}

/// Where to read the feed from.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedParams {
    /// `next_cursor` of the previous page; from the start when absent.
    #[param(value_type = Option<sync::FeedCursorText>, inline)]
    pub since: Option<String>,
    /// Most changes in the page (1 to 2000, default 500).
    #[param(minimum = 1, maximum = 2000)]
    pub limit: Option<usize>,
}

/// This deployment's changes after a cursor.
#[utoipa::path(
    get,
    path = "/sync/changes",
    tag = "sync",
    params(FeedParams),
    security(("peer_token" = [])),
    responses(
        (status = 200, description = "A page of the change feed", body = ChangesPage),
        (status = 400, description = "Invalid cursor or limit", body = ErrorEnvelope),
        (status = 422, description = "A cursor this API did not return", body = ErrorEnvelope),
        (status = 401, description = "Missing or wrong peer token", body = ErrorEnvelope),
        (status = 503, description = "Sync is not configured here", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all)]
async fn changes(
    state: AppState,
    _peer: Peer,
    Query(params): Query<FeedParams>,
) -> Result<Json<ChangesPage>, ApiError> {
    let since = match params.since.as_deref() {
        None => FeedCursor::Seq(0),
        Some(cursor) => FeedCursor::from_param(cursor)?,
    };
    let limit = params.limit.unwrap_or(sync::DEFAULT_PAGE);
    if !(1..=sync::MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be 1 to 2000"));
    }
    let page = sync::changes_page(
        state.store.as_ref(),
        &state.config.replica_id,
        &since,
        limit,
    )
    .await?;
    Ok(Json(page))
}

/// The outcome of a pull round.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunReport {
    /// This deployment.
    pub replica_id: String,
    /// One result per configured peer.
    pub results: Vec<PeerResult>,
}

/// Pulls every configured peer once and answers when done.
#[utoipa::path(
    post,
    path = "/sync/run",
    tag = "sync",
    security(("peer_token" = [])),
    responses(
        (status = 200, description = "What each peer's pull did", body = RunReport),
        (status = 401, description = "Missing or wrong peer token", body = ErrorEnvelope),
        (status = 503, description = "Sync is not configured here", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all)]
async fn run(state: AppState, _peer: Peer) -> Result<Json<RunReport>, ApiError> {
    let results = state.sync.run_round().await;
    Ok(Json(RunReport {
        replica_id: state.config.replica_id.clone(),
        results,
    }))
}

/// Paging of `GET /sync/dead-letters`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// Page size (1 to 200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<jarvis_http::validate::Cursor>, inline)]
    pub cursor: Option<String>,
}

/// Changes pulled from peers that this deployment refused (admins only), by peer and in feed
/// order: each with its peer, feed position, document, reason and time. Sync went on past
/// them.
#[utoipa::path(
    get,
    path = "/sync/dead-letters",
    tag = "sync",
    params(DeadLetterParams),
    security(("access_token" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "A page of refused changes", body = Paged<DeadLetter>),
        (status = 400, description = "Invalid limit or cursor", body = ErrorEnvelope),
        (status = 422, description = "A cursor this API did not return", body = ErrorEnvelope),
        AuthRejections,
    )
)]
#[tracing::instrument(skip_all)]
async fn list_dead_letters(
    state: AppState,
    _admin: Authorized<scope::Admin>,
    Query(params): Query<DeadLetterParams>,
) -> Result<Json<Paged<DeadLetter>>, ApiError> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be 1 to 200"));
    }
    let (items, next_cursor) =
        sync::dead_letters(state.store.as_ref(), params.cursor.as_deref(), limit).await?;
    Ok(Json(Paged { items, next_cursor }))
}

/// A request from a peer: extracting it checks the peer token, so a route that takes a
/// `Peer` cannot be reached without one.
#[derive(Debug, Clone, Copy)]
pub struct Peer;

impl axum::extract::FromRequestParts<AppState> for Peer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let token = sync::peer_token(&state.config.sync, state.secrets.as_ref()).await?;
        sync::authorize(&parts.headers, token.as_ref()).map(|()| Peer)
    }
}

#[cfg(test)]
mod tests;
