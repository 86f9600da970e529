//! The auth function: accounts, sign-in, sessions, API keys and 2FA (`/auth/…`),
//! administration of accounts (`/admin/users…`) and the audit trail (`/audit…`).
//!
//! Handlers parse the request, call [`accounts::Accounts`], and shape the answer. Account
//! management lives here, in this function alone: password hashing ([`password`]) and TOTP
//! ([`totp`]) are linked by no other function. Verifying a credential is `jarvis-identity`'s.

pub mod accounts;
pub mod password;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod totp;

use crate::accounts::{AccountView, Accounts, Enrollment, KeyView, SessionView, TokenPair};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use jarvis_app::AppState;
use jarvis_http::error::{ApiError, ErrorEnvelope};
use jarvis_http::{Json, Paged, Path, Query, validate};
use jarvis_identity::audit::{self, Filter, Record, Verification};
use jarvis_identity::{Authorized, Identity, Role, SignedIn, scope};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Default page size of listings.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page size of listings.
pub const MAX_PAGE: usize = 200;

/// The function's routes with their OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(enroll_totp))
        .routes(routes!(confirm_totp))
        .routes(routes!(disable_totp))
        .routes(routes!(create_api_key, list_api_keys))
        .routes(routes!(revoke_api_key))
        .routes(routes!(list_users))
        .routes(routes!(update_user))
        .routes(routes!(list_audit))
        .routes(routes!(verify_audit))
}

/// The function's routes.
pub fn routes() -> axum::Router<AppState> {
    api().into()
}

fn page_size(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid_field("limit", "must be 1 to 200")),
    }
}

/// `POST /auth/register`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Email address (normalised to lower case).
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 12 to 128 characters; a password that contains the email or uses fewer than four
    /// different characters is refused with a 422.
    #[schema(min_length = 12, max_length = 128)]
    pub password: String,
}

/// Creates an account. The first account of a deployment is its admin.
#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "auth",
    request_body = Credentials,
    responses(
        (status = 201, description = "The account", body = AccountView),
        (status = 400, description = "Invalid email or password", body = ErrorEnvelope),
        (status = 409, description = "The email is taken", body = ErrorEnvelope),
        (status = 422, description = "The password fails the policy", body = ErrorEnvelope),
        (status = 429, description = "Too many requests from this address", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all)]
async fn register(
    accounts: Accounts,
    Json(body): Json<Credentials>,
) -> Result<impl IntoResponse, ApiError> {
    let account = accounts.register(&body.email, &body.password).await?;
    Ok((StatusCode::CREATED, Json(account)))
}

/// `POST /auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// Email address.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// Password.
    #[schema(min_length = 1, max_length = 128)]
    pub password: String,
    /// A 6-digit code from the authenticator, or a recovery code, when 2FA is on.
    pub totp: Option<String>,
}

/// Signs in: a 15-minute access token and a single-use refresh token.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    request_body = Login,
    responses(
        (status = 200, description = "Signed in", body = TokenPair),
        (status = 401, description = "`invalid_credentials` or `totp_required`", body = ErrorEnvelope),
        (status = 403, description = "The account is disabled", body = ErrorEnvelope),
        (status = 429, description = "`locked_out` after repeated failures, or `rate_limited`", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all)]
async fn login(accounts: Accounts, Json(body): Json<Login>) -> Result<Json<TokenPair>, ApiError> {
    let pair = accounts
        .login(&body.email, &body.password, body.totp.as_deref())
        .await?;
    Ok(Json(pair))
}

/// `POST /auth/refresh`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token of the last pair.
    pub refresh_token: String,
}

/// Exchanges a refresh token for a new pair. The old token dies; presenting it again
/// revokes the session (`refresh_token_reused`).
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair", body = TokenPair),
        (status = 401, description = "`invalid_refresh_token` or `refresh_token_reused`", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all)]
async fn refresh(
    accounts: Accounts,
    Json(body): Json<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let pair = accounts.refresh(&body.refresh_token).await?;
    Ok(Json(pair))
}

/// Ends the caller's session: its access and refresh tokens stop working at once.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    security(("access_token" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
async fn logout(accounts: Accounts, SignedIn(identity): SignedIn) -> Result<StatusCode, ApiError> {
    accounts.logout(&identity).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account.
#[utoipa::path(
    get,
    path = "/auth/me",
    tag = "auth",
    security(("access_token" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
async fn me(accounts: Accounts, identity: Identity) -> Result<Json<AccountView>, ApiError> {
    Ok(Json(accounts.me(&identity).await?))
}

/// The caller's live sessions.
#[utoipa::path(
    get,
    path = "/auth/sessions",
    tag = "auth",
    security(("access_token" = [])),
    responses(
        (status = 200, description = "Live sessions", body = [SessionView]),
        (status = 401, description = "Not signed in", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
async fn sessions(
    accounts: Accounts,
    SignedIn(identity): SignedIn,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    Ok(Json(accounts.sessions(&identity).await?))
}

/// Revokes one of the caller's sessions.
#[utoipa::path(
    delete,
    path = "/auth/sessions/{id}",
    tag = "auth",
    params(("id" = inline(validate::HexId32), Path, description = "Session id")),
    security(("access_token" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such session of the caller's", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
async fn revoke_session(
    accounts: Accounts,
    SignedIn(identity): SignedIn,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    accounts.revoke_session(&identity, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts turning on 2FA: a new secret, pending until confirmed.
#[utoipa::path(
    post,
    path = "/auth/2fa/enroll",
    tag = "auth",
    security(("access_token" = [])),
    responses(
        (status = 200, description = "The secret and its otpauth URI", body = Enrollment),
        (status = 409, description = "2FA is already on", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
async fn enroll_totp(
    accounts: Accounts,
    SignedIn(identity): SignedIn,
) -> Result<Json<Enrollment>, ApiError> {
    Ok(Json(accounts.enroll_totp(&identity).await?))
}

/// A one-time code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Code {
    /// The 6-digit code (or, to disable 2FA, a recovery code).
    pub code: String,
}

/// Recovery codes, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecoveryCodes {
    /// Single-use codes that stand in for a TOTP code at sign-in.
    pub recovery_codes: Vec<String>,
}

/// Turns on 2FA with a code from the pending secret.
#[utoipa::path(
    post,
    path = "/auth/2fa/confirm",
    tag = "auth",
    request_body = Code,
    security(("access_token" = [])),
    responses(
        (status = 200, description = "2FA is on", body = RecoveryCodes),
        (status = 409, description = "Not enrolled, or already on", body = ErrorEnvelope),
        (status = 422, description = "Wrong or reused code", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
async fn confirm_totp(
    accounts: Accounts,
    SignedIn(identity): SignedIn,
    Json(body): Json<Code>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let recovery_codes = accounts.confirm_totp(&identity, &body.code).await?;
    Ok(Json(RecoveryCodes { recovery_codes }))
}

/// Turns off 2FA, with a current code.
#[utoipa::path(
    post,
    path = "/auth/2fa/disable",
    tag = "auth",
    request_body = Code,
    security(("access_token" = [])),
    responses(
        (status = 204, description = "2FA is off"),
        (status = 401, description = "`invalid_code`: a wrong or reused code", body = ErrorEnvelope),
        (status = 409, description = "2FA is not on", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
async fn disable_totp(
    accounts: Accounts,
    SignedIn(identity): SignedIn,
    Json(body): Json<Code>,
) -> Result<StatusCode, ApiError> {
    accounts.disable_totp(&identity, &body.code).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /auth/api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// A label.
    #[schema(value_type = validate::Label)]
    pub name: String,
    /// The scopes, each granted by the caller's role (one given twice counts once).
    #[schema(value_type = Vec<jarvis_identity::Scope>, min_items = 1)]
    pub scopes: Vec<String>,
    /// When the key stops working (RFC 3339); never when absent.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// A new key: its description and the key itself, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    /// The key, for `Authorization: Bearer` or `X-Api-Key`. Not retrievable later.
    pub key: String,
    /// Its description.
    #[serde(flatten)]
    pub view: KeyView,
}

/// Creates an API key.
#[utoipa::path(
    post,
    path = "/auth/api-keys",
    tag = "auth",
    request_body = NewApiKey,
    security(("access_token" = [])),
    responses(
        (status = 201, description = "The key, shown once", body = CreatedApiKey),
        (status = 400, description = "Invalid name, scope or date", body = ErrorEnvelope),
        (status = 422, description = "A scope the role does not grant, or a past date", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
async fn create_api_key(
    accounts: Accounts,
    SignedIn(identity): SignedIn,
    Json(body): Json<NewApiKey>,
) -> Result<impl IntoResponse, ApiError> {
    let (view, key) = accounts
        .create_key(
            &identity,
            &body.name,
            &body.scopes,
            body.expires_at.as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedApiKey { key, view })))
}

/// The caller's API keys (never their secrets).
#[utoipa::path(
    get,
    path = "/auth/api-keys",
    tag = "auth",
    security(("access_token" = [])),
    responses((status = 200, description = "The keys", body = [KeyView]))
)]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
async fn list_api_keys(
    accounts: Accounts,
    SignedIn(identity): SignedIn,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    Ok(Json(accounts.keys(&identity).await?))
}

/// Revokes an API key: it stops working at once.
#[utoipa::path(
    delete,
    path = "/auth/api-keys/{id}",
    tag = "auth",
    params(("id" = inline(validate::HexId16), Path, description = "Key id")),
    security(("access_token" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such key of the caller's", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
async fn revoke_api_key(
    accounts: Accounts,
    SignedIn(identity): SignedIn,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    accounts.revoke_key(&identity, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Paging of admin listings.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size (1 to 200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<validate::Cursor>, inline)]
    pub cursor: Option<String>,
}

/// Every account (admins only).
#[utoipa::path(
    get,
    path = "/admin/users",
    tag = "admin",
    params(PageParams),
    security(("access_token" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "A page of accounts", body = Paged<AccountView>),
        (status = 422, description = "A cursor this API did not return", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all)]
async fn list_users(
    accounts: Accounts,
    _admin: Authorized<scope::Admin>,
    Query(params): Query<PageParams>,
) -> Result<Json<Paged<AccountView>>, ApiError> {
    let (items, next_cursor) = accounts
        .users(params.cursor.as_deref(), page_size(params.limit)?)
        .await?;
    Ok(Json(Paged { items, next_cursor }))
}

/// `PATCH /admin/users/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UserUpdate {
    /// The new role.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(nullable = false)]
    pub role: Option<Role>,
    /// Disable (`true`) or re-enable (`false`) the account; a disabled account's tokens and
    /// keys stop working at once.
    #[serde(default, deserialize_with = "validate::not_null")]
    #[schema(nullable = false)]
    pub disabled: Option<bool>,
}

/// Changes another account's role or disabled flag (admins only).
#[utoipa::path(
    patch,
    path = "/admin/users/{id}",
    tag = "admin",
    params(("id" = inline(validate::HexId32), Path, description = "Account id")),
    request_body = UserUpdate,
    security(("access_token" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 404, description = "No such account", body = ErrorEnvelope),
        (status = 422, description = "An admin changing themselves", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all, fields(target = %id))]
async fn update_user(
    accounts: Accounts,
    admin: Authorized<scope::Admin>,
    Path(id): Path<String>,
    Json(body): Json<UserUpdate>,
) -> Result<Json<AccountView>, ApiError> {
    let account = accounts
        .update_user(&admin.identity, &id, body.role, body.disabled)
        .await?;
    Ok(Json(account))
}

/// Filters and paging of `GET /audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only events of this type, e.g. `login.failed`; ending in `*`, a prefix, e.g.
    /// `trading.*`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Only events whose detail holds this text, e.g. an order's id.
    #[param(value_type = Option<AboutText>, inline)]
    pub about: Option<String>,
    /// Only events whose actor or subject is this account id.
    pub user: Option<String>,
    /// Page size (1 to 200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<validate::Cursor>, inline)]
    pub cursor: Option<String>,
}

jarvis_http::string_schema!(
    /// Text an audit event's detail holds: 1 to 128 characters.
    AboutText,
    || validate::text_schema(
        "1 to 128 characters, no control characters other than tab and line breaks",
        128
    )
);

/// The audit trail (admins only).
#[utoipa::path(
    get,
    path = "/audit",
    tag = "admin",
    params(AuditParams),
    security(("access_token" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "A page of events", body = Paged<Record>),
        (status = 422, description = "A cursor this API did not return", body = ErrorEnvelope),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all)]
async fn list_audit(
    state: AppState,
    _admin: Authorized<scope::Admin>,
    Query(params): Query<AuditParams>,
) -> Result<Json<Paged<Record>>, ApiError> {
    if let Some(about) = &params.about {
        validate::text("about", about, 128)?;
    }
    let filter = Filter {
        kind: params.kind,
        user: params.user,
        about: params.about,
    };
    let (items, next_cursor) = audit::list(
        state.store.as_ref(),
        &filter,
        params.cursor.as_deref(),
        page_size(params.limit)?,
    )
    .await?;
    Ok(Json(Paged { items, next_cursor }))
}

/// Where `GET /audit/verify` goes on from.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyParams {
    /// `next_cursor` of the previous answer.
    #[param(value_type = Option<validate::Cursor>, inline)]
    pub cursor: Option<String>,
}

/// Recomputes the links of the audit chains (admins only), at most 5,000 events per request:
/// while the events checked are intact and more remain, the answer carries `next_cursor`.
#[utoipa::path(
    get,
    path = "/audit/verify",
    tag = "admin",
    params(VerifyParams),
    security(("access_token" = ["admin"]), ("api_key" = ["admin"])),
    responses(
        (status = 200, description = "`ok` with the count checked (and `next_cursor` while more remain), or the first broken link", body = Verification),
        (status = 403, description = "Not an admin", body = ErrorEnvelope),
        (status = 422, description = "A cursor this API did not return", body = ErrorEnvelope),
    )
)]
#[tracing::instrument(skip_all)]
async fn verify_audit(
    state: AppState,
    _admin: Authorized<scope::Admin>,
    Query(params): Query<VerifyParams>,
) -> Result<Json<Verification>, ApiError> {
    let secrets = state.secrets.current().await?;
    let verification =
        audit::verify(state.store.as_ref(), &secrets, params.cursor.as_deref()).await?;
    Ok(Json(verification))
}

#[cfg(test)]
mod tests;
