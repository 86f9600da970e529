//! Accounts, sessions, API keys and second factors: creating and changing the documents whose
//! layout, and what sync may never undo in them, [`jarvis_identity::credential`] describes.
//!
//! **The same email registered on two replicas before they sync**: each replica accepts it
//! (a replica can only serialise its own writers). After sync the email document holds both
//! claims and the earliest one (by hybrid logical clock, then account id) owns the address
//! everywhere: sign-in by that email reaches the first account. The other account keeps its
//! data but can no longer sign in; `GET /admin/users` shows it with `"email_conflict": true`
//! so an administrator can contact the user.

use std::sync::Arc;

use aws_smithy_types::date_time::{DateTime, Format};

use jarvis_http::time::rfc3339;
use serde::{Deserialize, Serialize};

use jarvis_app::AppState;
use jarvis_crdt::{Crdt, Entity};
use jarvis_http::ApiError;
use jarvis_http::validate;
use jarvis_identity::audit::{self, Event};
use jarvis_identity::credential::{
    SESSION_SECS, USERS, api_key_key, is_disabled, key, role_of, session_expiry, session_key,
    session_live, set_disabled, user_key,
};
use jarvis_identity::limits::Lockout;
use jarvis_identity::token::{self, API_KEY_PREFIX, Opaque, RefreshToken};
use jarvis_identity::{Identity, Role, Scope};
use jarvis_secrets::Secrets;
use jarvis_store::{Document, Key, MergeOptions, Page, now_secs};

use crate::password::{self, Email, Password};
use crate::totp;

/// Recovery codes issued when 2FA is confirmed.
pub const RECOVERY_CODES: usize = 10;
const ISSUER: &str = "Jarvis";

fn email_key(email: &Email) -> Result<Key, ApiError> {
    key(format!("email#{}", email.as_str()), "owner")
}

fn invalid_credentials() -> ApiError {
    ApiError::SignInFailed {
        code: "invalid_credentials",
        message: "the email, password or code is not correct",
    }
}

fn invalid_code() -> ApiError {
    ApiError::SignInFailed {
        code: "invalid_code",
        message: "the one-time code or recovery code is not correct",
    }
}

fn invalid_refresh() -> ApiError {
    ApiError::SignInFailed {
        code: "invalid_refresh_token",
        message: "the refresh token is invalid, expired or revoked",
    }
}

/// An account as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    /// The account id.
    pub id: String,
    /// The email address.
    pub email: String,
    /// The role.
    pub role: Role,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// Whether 2FA is on.
    pub totp_enabled: bool,
    /// When the account was created (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Whether another account registered the same email first on another replica (see
    /// the module docs); such an account cannot sign in.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub email_conflict: bool,
}

fn account_view(id: &str, account: &Entity) -> AccountView {
    AccountView {
        id: id.to_owned(),
        email: account.field("email").unwrap_or_default().to_owned(),
        role: role_of(account),
        disabled: is_disabled(account),
        totp_enabled: account.flag("totp"),
        created_at: rfc3339(
            account
                .field("created_at")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ),
        email_conflict: false,
    }
}

/// Tokens returned by sign-in and refresh.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// The JWT to send as `Authorization: Bearer`.
    pub access_token: String,
    /// Exchanged once at `/auth/refresh` for a new pair.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// A session as its owner sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The session id.
    pub id: String,
    /// When it started (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The address it started from.
    pub ip: Option<String>,
    /// When it ends at the latest (RFC 3339).
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// Whether this request's token belongs to it.
    pub current: bool,
}

/// An API key as its owner sees it (never the secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    /// The key id.
    pub id: String,
    /// The owner's label.
    pub name: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// When it was created (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it stops working (RFC 3339), if ever.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// A new 2FA secret, before confirmation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Enrollment {
    /// The secret in base32, for typing into an authenticator app.
    pub secret: String,
    /// The `otpauth://` URI, for a QR code.
    pub otpauth_uri: String,
}

/// The account operations, over one request's state and secrets.
pub struct Accounts {
    state: AppState,
    secrets: Arc<Secrets>,
    ip: Option<String>,
}

/// What a refresh found.
enum Refresh {
    /// The live token: the session moved to the next generation (its seed enclosed).
    Rotated(Vec<u8>),
    /// An earlier, authentic token: the session is now revoked.
    Reused,
    /// Not a live session's authentic token.
    Dead,
}

impl Accounts {
    /// Loads the secrets; `ip` is the client address, for the audit trail.
    pub async fn new(state: AppState, ip: Option<String>) -> Result<Self, ApiError> {
        let secrets = state.secrets.current().await?;
        Ok(Self { state, secrets, ip })
    }

    fn store(&self) -> &dyn jarvis_store::Store {
        self.state.store.as_ref()
    }

    /// Audits a change that committed, in this replica's chain (see [`audit::record`]).
    pub async fn audit(&self, event: Event) -> Result<(), ApiError> {
        audit::record(
            self.store(),
            &self.state.clock,
            &self.secrets,
            &self.state.config.replica_id,
            Event {
                ip: event.ip.or_else(|| self.ip.clone()),
                ..event
            },
        )
        .await
    }

    fn lockout(&self) -> Lockout {
        let security = &self.state.config.security;
        Lockout {
            threshold: security.lockout_threshold,
            duration_secs: i64::try_from(security.lockout.as_secs()).unwrap_or(i64::MAX),
        }
    }

    async fn account(&self, user_id: &str) -> Result<Option<Document<Entity>>, ApiError> {
        Ok(self.store().read::<Entity>(&user_key(user_id)?).await?)
    }

    /// The account that owns `email`: the earliest claim wins (see the module docs).
    async fn owner_of(&self, email: &Email) -> Result<Option<String>, ApiError> {
        let claims = self.store().read::<Entity>(&email_key(email)?).await?;
        Ok(claims.and_then(|doc| {
            doc.state
                .marks()
                .filter_map(|m| m.strip_prefix("claim:"))
                .min()
                .and_then(|claim| claim.rsplit(':').next())
                .map(str::to_owned)
        }))
    }

    /// `POST /auth/register`: the first account of a deployment is `admin`.
    pub async fn register(&self, email: &str, password: &str) -> Result<AccountView, ApiError> {
        let email = Email::parse(email)?;
        let password = Password::new_for(password, &email)?;
        let hashed = password::hash(password).await?;
        let user_id = uuid::Uuid::now_v7().simple().to_string();
        let clock = &self.state.clock;
        let now = now_secs();
        // The account first (unreachable until its email is claimed), so a crash leaves an
        // orphan document rather than an email nobody can register.
        self.store()
            .update(&user_key(&user_id)?, |account: &mut Entity| {
                let stamp = clock.now();
                let mut delta = account.set("email", stamp, email.as_str());
                delta.join(account.set("role", stamp, Role::User.as_str()));
                delta.join(account.set("password", stamp, hashed.as_str()));
                delta.join(account.set("created_at", stamp, now.to_string()));
                delta
            })
            .await?;
        let claim_key = email_key(&email)?;
        let (_, claimed) = self
            .store()
            .transact(
                &claim_key,
                MergeOptions::default(),
                |claims: &mut Entity| {
                    if claims.marks().any(|m| m.starts_with("claim:")) {
                        return (Entity::new(), false);
                    }
                    let stamp = clock.now();
                    let claim = format!(
                        "claim:{:013}:{:010}:{user_id}",
                        stamp.wall_ms, stamp.logical
                    );
                    (claims.mark(claim), true)
                },
            )
            .await?;
        if !claimed {
            self.store()
                .update(&user_key(&user_id)?, |a: &mut Entity| a.mark("abandoned"))
                .await?;
            return Err(ApiError::Conflict(
                "an account with this email already exists".into(),
            ));
        }
        let (_, first) = self
            .store()
            .transact(
                &key("auth", "bootstrap")?,
                MergeOptions::default(),
                |boot: &mut Entity| {
                    if boot.marks().any(|m| m.starts_with("admin:")) {
                        (Entity::new(), false)
                    } else {
                        (boot.mark(format!("admin:{user_id}")), true)
                    }
                },
            )
            .await?;
        let doc = if first {
            self.store()
                .update(&user_key(&user_id)?, |a: &mut Entity| {
                    let stamp = clock.stamp_after(a.stamp("role"));
                    a.set("role", stamp, Role::Admin.as_str())
                })
                .await?
        } else {
            self.account(&user_id)
                .await?
                .ok_or_else(|| ApiError::internal("account vanished after creation"))?
        };
        self.audit(Event::own("user.registered", &user_id).detail(role_of(&doc.state).as_str()))
            .await?;
        Ok(account_view(&user_id, &doc.state))
    }

    async fn failed_login(&self, email: &Email, user_id: Option<String>) -> Result<(), ApiError> {
        let locked = self
            .lockout()
            .record_failure(self.store(), self.state.replica, email.as_str())
            .await?;
        self.audit(Event {
            kind: "login.failed",
            subject: user_id.clone(),
            detail: Some(email.as_str().to_owned()),
            ..Event::default()
        })
        .await?;
        if locked {
            self.audit(Event {
                kind: "login.locked",
                subject: user_id,
                detail: Some(email.as_str().to_owned()),
                ..Event::default()
            })
            .await?;
        }
        Ok(())
    }

    /// `POST /auth/login`.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        code: Option<&str>,
    ) -> Result<TokenPair, ApiError> {
        let outcome = self.sign_in(email, password, code).await;
        if let Err(err) = &outcome {
            metrics::counter!("auth_sign_in_failures_total", "reason" => err.code()).increment(1);
        }
        outcome
    }

    async fn sign_in(
        &self,
        email: &str,
        password: &str,
        code: Option<&str>,
    ) -> Result<TokenPair, ApiError> {
        let email = Email::parse(email)?;
        let attempt = Password::attempt(password)?;
        self.lockout().check(self.store(), email.as_str()).await?;
        let account = match self.owner_of(&email).await? {
            Some(user_id) => self
                .account(&user_id)
                .await?
                .map(|doc| (user_id, doc.state)),
            None => None,
        };
        let stored_hash = account
            .as_ref()
            .and_then(|(_, a)| a.field("password").map(str::to_owned));
        let verified = password::verify(attempt, stored_hash).await;
        let known = account.as_ref().map(|(user_id, _)| user_id.clone());
        let Some((user_id, account)) = account.filter(|_| verified) else {
            self.failed_login(&email, known).await?;
            return Err(invalid_credentials());
        };
        if account.flag("totp") {
            let Some(code) = code.map(str::trim).filter(|c| !c.is_empty()) else {
                return Err(ApiError::SignInFailed {
                    code: "totp_required",
                    message: "this account needs a one-time code or a recovery code",
                });
            };
            if !self.second_factor(&user_id, code).await? {
                self.failed_login(&email, Some(user_id)).await?;
                return Err(invalid_credentials());
            }
        }
        if is_disabled(&account) {
            self.audit(Event {
                kind: "login.refused",
                subject: Some(user_id),
                detail: Some("account disabled".into()),
                ..Event::default()
            })
            .await?;
            return Err(ApiError::Forbidden("this account is disabled".into()));
        }
        self.lockout().clear(self.store(), email.as_str()).await?;
        let pair = self.open_session(&user_id).await?;
        self.audit(Event::own("login.succeeded", &user_id)).await?;
        Ok(pair)
    }

    /// Checks a TOTP code (refusing any step not above the last accepted one) or spends a
    /// recovery code.
    async fn second_factor(&self, user_id: &str, code: &str) -> Result<bool, ApiError> {
        let secrets = &self.secrets;
        let now = u64::try_from(now_secs()).unwrap_or(0);
        if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            let (_, accepted) = self
                .store()
                .transact(
                    &user_key(user_id)?,
                    MergeOptions::default(),
                    |account: &mut Entity| {
                        let step = account
                            .field("totp_secret")
                            .and_then(|sealed| secrets.open(user_id, sealed))
                            .and_then(|secret| totp::matching_step(&secret, code, now));
                        match step {
                            Some(step) if step > account.level("totp_step") => {
                                (account.raise("totp_step", step), true)
                            }
                            _ => (Entity::new(), false),
                        }
                    },
                )
                .await?;
            return Ok(accepted);
        }
        let hash = recovery_hash(secrets, user_id, code);
        let used = format!("recovery_used:{hash}");
        let (_, spent) = self
            .store()
            .transact(
                &user_key(user_id)?,
                MergeOptions::default(),
                |account: &mut Entity| {
                    let issued = account
                        .field("recovery_codes")
                        .is_some_and(|codes| codes.split(' ').any(|c| c == hash));
                    if issued && !account.has_mark(&used) {
                        (account.mark(used.clone()), true)
                    } else {
                        (Entity::new(), false)
                    }
                },
            )
            .await?;
        if spent {
            self.audit(Event::own("recovery_code.used", user_id))
                .await?;
        }
        Ok(spent)
    }

    async fn open_session(&self, user_id: &str) -> Result<TokenPair, ApiError> {
        let session_id = uuid::Uuid::new_v4().simple().to_string();
        let seed = jarvis_secrets::random_bytes::<32>();
        let sealed = self.secrets.seal(&session_id, &seed)?;
        let now = now_secs();
        let clock = &self.state.clock;
        let ip = self.ip.clone();
        self.store()
            .update_with(
                &session_key(user_id, &session_id)?,
                |session: &mut Entity| {
                    let stamp = clock.now();
                    let mut delta = session.set("seed", stamp, sealed.as_str());
                    delta.join(session.set("created_at", stamp, now.to_string()));
                    delta.join(session.set("expires_at", stamp, (now + SESSION_SECS).to_string()));
                    if let Some(ip) = &ip {
                        delta.join(session.set("ip", stamp, ip.as_str()));
                    }
                    delta.join(session.raise("generation", 1));
                    delta
                },
                MergeOptions {
                    expires_at: Some(now + SESSION_SECS),
                    ..MergeOptions::default()
                },
            )
            .await?;
        let refresh = RefreshToken::derive(user_id, &session_id, &seed, 1);
        self.token_pair(user_id, &session_id, &refresh)
    }

    fn token_pair(
        &self,
        user_id: &str,
        session_id: &str,
        refresh: &RefreshToken,
    ) -> Result<TokenPair, ApiError> {
        let now = u64::try_from(now_secs()).unwrap_or(0);
        Ok(TokenPair {
            access_token: token::issue_access(
                &self.secrets,
                &self.state.config.security,
                user_id,
                session_id,
                now,
            )?,
            refresh_token: refresh.render(),
            token_type: "Bearer".into(),
            expires_in: token::ACCESS_TOKEN_SECS,
        })
    }

    /// `POST /auth/refresh`: rotates the refresh token. A token that was already rotated
    /// is a sign of theft (RFC 9700 §4.14.2): the whole session is revoked and audited.
    pub async fn refresh(&self, raw: &str) -> Result<TokenPair, ApiError> {
        let presented = RefreshToken::parse(raw.trim()).ok_or_else(invalid_refresh)?;
        let (user_id, session_id) = (presented.user_id.clone(), presented.session_id.clone());
        let secrets = &self.secrets;
        let now = now_secs();
        let (_, outcome) = self
            .store()
            .transact(
                &session_key(&user_id, &session_id)?,
                MergeOptions::default(),
                |session: &mut Entity| {
                    let seed = session
                        .field("seed")
                        .and_then(|sealed| secrets.open(&session_id, sealed));
                    let authentic = seed.as_deref().is_some_and(|s| presented.is_authentic(s));
                    if !authentic || !session_live(session, now) {
                        return (Entity::new(), Refresh::Dead);
                    }
                    let live = session.level("generation");
                    match presented.generation.cmp(&live) {
                        std::cmp::Ordering::Equal => (
                            session.raise("generation", live + 1),
                            Refresh::Rotated(seed.unwrap_or_default()),
                        ),
                        std::cmp::Ordering::Less => (session.mark("revoked"), Refresh::Reused),
                        std::cmp::Ordering::Greater => (Entity::new(), Refresh::Dead),
                    }
                },
            )
            .await?;
        match outcome {
            Refresh::Dead => Err(invalid_refresh()),
            Refresh::Reused => {
                self.audit(Event {
                    kind: "refresh.reused",
                    subject: Some(user_id),
                    detail: Some(format!("session {session_id} revoked")),
                    ..Event::default()
                })
                .await?;
                Err(ApiError::SignInFailed {
                    code: "refresh_token_reused",
                    message: "this refresh token was already used; the session is revoked",
                })
            }
            Refresh::Rotated(seed) => {
                let live = self
                    .account(&user_id)
                    .await?
                    .is_some_and(|a| !is_disabled(&a.state) && !a.state.has_mark("abandoned"));
                if !live {
                    return Err(invalid_refresh());
                }
                let next =
                    RefreshToken::derive(&user_id, &session_id, &seed, presented.generation + 1);
                self.token_pair(&user_id, &session_id, &next)
            }
        }
    }

    async fn revoke_session_doc(&self, user_id: &str, session_id: &str) -> Result<bool, ApiError> {
        let key = session_key(user_id, session_id)?;
        if self.store().read::<Entity>(&key).await?.is_none() {
            return Ok(false);
        }
        self.store()
            .update(&key, |session: &mut Entity| session.mark("revoked"))
            .await?;
        Ok(true)
    }

    /// `POST /auth/logout`: ends the caller's session.
    pub async fn logout(&self, identity: &Identity) -> Result<(), ApiError> {
        let session_id = identity.session_id().ok_or_else(|| {
            ApiError::bad_request("an API key has no session; revoke the key instead")
        })?;
        self.revoke_session_doc(&identity.user_id, session_id)
            .await?;
        self.audit(Event::own("logout", &identity.user_id).detail(format!("session {session_id}")))
            .await
    }

    /// Every document of `user_id`'s partition whose sort key starts with `prefix`, with
    /// the rest of the sort key (the id).
    async fn owned(&self, user_id: &str, prefix: &str) -> Result<Vec<(String, Entity)>, ApiError> {
        let partition = format!("user#{user_id}");
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page: Page<Document<Entity>> = self
                .store()
                .list_documents(&partition, Some(prefix), cursor.as_deref(), 200)
                .await?;
            out.extend(page.items.into_iter().map(|doc| {
                let id = doc.key.sort().trim_start_matches(prefix).to_owned();
                (id, doc.state)
            }));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// `GET /auth/sessions`: live sessions, oldest first.
    pub async fn sessions(&self, identity: &Identity) -> Result<Vec<SessionView>, ApiError> {
        let sessions = self.owned(&identity.user_id, "session#").await?;
        let now = now_secs();
        Ok(sessions
            .into_iter()
            .filter(|(_, session)| session_live(session, now))
            .map(|(id, session)| {
                let created: i64 = session
                    .field("created_at")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                SessionView {
                    current: identity.session_id() == Some(id.as_str()),
                    id,
                    created_at: rfc3339(created),
                    ip: session.field("ip").map(str::to_owned),
                    expires_at: rfc3339(session_expiry(&session)),
                }
            })
            .collect())
    }

    /// `DELETE /auth/sessions/{id}`: revokes one of the caller's sessions.
    pub async fn revoke_session(
        &self,
        identity: &Identity,
        session_id: &str,
    ) -> Result<(), ApiError> {
        let valid = (16..=32).contains(&session_id.len())
            && session_id.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid
            || !self
                .revoke_session_doc(&identity.user_id, session_id)
                .await?
        {
            return Err(ApiError::NotFound("no such session".into()));
        }
        self.audit(
            Event::own("session.revoked", &identity.user_id)
                .detail(format!("session {session_id}")),
        )
        .await
    }

    /// `POST /auth/2fa/enroll`: a new secret, pending until confirmed with a code.
    pub async fn enroll_totp(&self, identity: &Identity) -> Result<Enrollment, ApiError> {
        identity.require_session()?;
        let user_id = identity.user_id.as_str();
        let secret = totp::new_secret();
        let sealed = self.secrets.seal(user_id, &secret)?;
        let clock = &self.state.clock;
        let (_, enrolled) = self
            .store()
            .transact(
                &user_key(user_id)?,
                MergeOptions::default(),
                |account: &mut Entity| {
                    if account.flag("totp") {
                        return (Entity::new(), false);
                    }
                    let stamp = clock.stamp_after(account.stamp("totp_pending"));
                    (account.set("totp_pending", stamp, sealed.as_str()), true)
                },
            )
            .await?;
        if !enrolled {
            return Err(ApiError::Conflict(
                "2FA is already on; disable it first".into(),
            ));
        }
        Ok(Enrollment {
            secret: totp::secret_base32(&secret),
            otpauth_uri: totp::provisioning_uri(&secret, &identity.email, ISSUER),
        })
    }

    /// `POST /auth/2fa/confirm`: turns 2FA on with a code from the pending secret; returns
    /// single-use recovery codes, shown this once.
    pub async fn confirm_totp(
        &self,
        identity: &Identity,
        code: &str,
    ) -> Result<Vec<String>, ApiError> {
        identity.require_session()?;
        let user_id = identity.user_id.as_str();
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
        let hashes: Vec<String> = codes
            .iter()
            .map(|code| recovery_hash(&self.secrets, user_id, code))
            .collect();
        let hashes = hashes.join(" ");
        let secrets = &self.secrets;
        let clock = &self.state.clock;
        let now = u64::try_from(now_secs()).unwrap_or(0);
        let (_, confirmed) = self
            .store()
            .transact(
                &user_key(user_id)?,
                MergeOptions::default(),
                |account: &mut Entity| {
                    if account.flag("totp") {
                        return (
                            Entity::new(),
                            Err(ApiError::Conflict("2FA is already on".into())),
                        );
                    }
                    let Some(pending) = account.field("totp_pending").map(str::to_owned) else {
                        return (
                            Entity::new(),
                            Err(ApiError::Conflict("enroll first".into())),
                        );
                    };
                    let step = secrets
                        .open(user_id, &pending)
                        .and_then(|secret| totp::matching_step(&secret, code.trim(), now));
                    match step {
                        Some(step) if step > account.level("totp_step") => {
                            let stamp = clock.stamp_after(
                                account
                                    .stamp("totp_secret")
                                    .max(account.stamp("totp_pending")),
                            );
                            let mut delta = account.raise("totp_step", step);
                            delta.join(account.set("totp_secret", stamp, pending.as_str()));
                            delta.join(account.unset("totp_pending", stamp));
                            delta.join(account.set("recovery_codes", stamp, hashes.as_str()));
                            delta.join(account.toggle("totp", true));
                            (delta, Ok(()))
                        }
                        _ => (
                            Entity::new(),
                            Err(ApiError::Unprocessable {
                                field: Some("code".into()),
                                message: "the code is not correct".into(),
                            }),
                        ),
                    }
                },
            )
            .await?;
        confirmed?;
        self.audit(Event::own("totp.enabled", user_id)).await?;
        Ok(codes)
    }

    /// `POST /auth/2fa/disable`: turns 2FA off, with a current code.
    pub async fn disable_totp(&self, identity: &Identity, code: &str) -> Result<(), ApiError> {
        identity.require_session()?;
        let user_id = identity.user_id.as_str();
        let current = self
            .account(user_id)
            .await?
            .ok_or_else(|| ApiError::NotFound("no such account".into()))?;
        if !current.state.flag("totp") {
            return Err(ApiError::Conflict("2FA is not on".into()));
        }
        // A stolen session must not be able to guess its way past the second factor: wrong
        // codes count toward a lockout of 2FA changes and are audited like failed sign-ins.
        let subject = format!("2fa:{user_id}");
        self.lockout().check(self.store(), &subject).await?;
        if !self.second_factor(user_id, code.trim()).await? {
            let locked = self
                .lockout()
                .record_failure(self.store(), self.state.replica, &subject)
                .await?;
            self.audit(Event::own("totp.failed", user_id).detail("2fa disable"))
                .await?;
            if locked {
                self.audit(Event::own("totp.locked", user_id)).await?;
            }
            return Err(invalid_code());
        }
        self.lockout().clear(self.store(), &subject).await?;
        let clock = &self.state.clock;
        self.store()
            .update(&user_key(user_id)?, |account: &mut Entity| {
                let stamp = clock.stamp_after(account.stamp("totp_secret"));
                let mut delta = account.toggle("totp", false);
                delta.join(account.unset("totp_secret", stamp));
                delta.join(account.unset("recovery_codes", stamp));
                delta
            })
            .await?;
        self.audit(Event::own("totp.disabled", user_id)).await
    }

    /// `POST /auth/api-keys`: a key limited to `scopes` (each granted by the caller's role);
    /// returns its view and the key itself, shown this once.
    pub async fn create_key(
        &self,
        identity: &Identity,
        name: &str,
        scopes: &[String],
        expires_at: Option<&str>,
    ) -> Result<(KeyView, String), ApiError> {
        identity.require_session()?;
        validate::text("name", name, validate::MAX_LABEL_CHARS)?;
        if scopes.is_empty() {
            return Err(ApiError::invalid_field("scopes", "name at least one scope"));
        }
        let mut parsed = Vec::new();
        for (i, raw) in scopes.iter().enumerate() {
            let scope = Scope::parse(raw)
                .ok_or_else(|| ApiError::invalid_field(format!("scopes[{i}]"), "unknown scope"))?;
            if !identity.role.grants(scope) {
                return Err(ApiError::Unprocessable {
                    field: Some(format!("scopes[{i}]").into()),
                    message: "your role does not grant this scope".into(),
                });
            }
            if !parsed.contains(&scope) {
                parsed.push(scope);
            }
        }
        let now = now_secs();
        let expires = match expires_at {
            None => None,
            Some(raw) => {
                let at = DateTime::from_str(raw, Format::DateTimeWithOffset)
                    .map_err(|_| {
                        ApiError::invalid_field("expires_at", "expected an RFC 3339 date-time")
                    })?
                    .secs();
                if at <= now {
                    return Err(ApiError::Unprocessable {
                        field: Some("expires_at".into()),
                        message: "must be in the future".into(),
                    });
                }
                Some(at)
            }
        };
        let user_id = identity.user_id.as_str();
        let key_id = hex::encode(jarvis_secrets::random_bytes::<8>());
        let secret = Opaque::generate(user_id, &key_id);
        let rendered = secret.render(API_KEY_PREFIX);
        let prefix: String = rendered
            .chars()
            .take(API_KEY_PREFIX.len() + 1 + 32 + 1 + 16)
            .collect();
        let digest = secret.digest();
        let scope_names = parsed
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let clock = &self.state.clock;
        let doc = self
            .store()
            .update(&api_key_key(user_id, &key_id)?, |k: &mut Entity| {
                let stamp = clock.now();
                let mut delta = k.set("name", stamp, name);
                delta.join(k.set("scopes", stamp, scope_names.as_str()));
                delta.join(k.set("hash", stamp, digest.as_str()));
                delta.join(k.set("prefix", stamp, prefix.as_str()));
                delta.join(k.set("created_at", stamp, now.to_string()));
                if let Some(at) = expires {
                    delta.join(k.set("expires_at", stamp, at.to_string()));
                }
                delta
            })
            .await?;
        self.audit(
            Event::own("apikey.created", user_id)
                .detail(format!("key {key_id} scopes {scope_names}")),
        )
        .await?;
        Ok((key_view(&key_id, &doc.state), rendered))
    }

    /// `GET /auth/api-keys`.
    pub async fn keys(&self, identity: &Identity) -> Result<Vec<KeyView>, ApiError> {
        let keys = self.owned(&identity.user_id, "apikey#").await?;
        Ok(keys.iter().map(|(id, key)| key_view(id, key)).collect())
    }

    /// `DELETE /auth/api-keys/{id}`.
    pub async fn revoke_key(&self, identity: &Identity, key_id: &str) -> Result<(), ApiError> {
        let valid = validate::is_hex(key_id, 16);
        let not_found = || ApiError::NotFound("no such API key".into());
        if !valid {
            return Err(not_found());
        }
        let key = api_key_key(&identity.user_id, key_id)?;
        if self.store().read::<Entity>(&key).await?.is_none() {
            return Err(not_found());
        }
        self.store()
            .update(&key, |k: &mut Entity| k.mark("revoked"))
            .await?;
        self.audit(Event::own("apikey.revoked", &identity.user_id).detail(format!("key {key_id}")))
            .await
    }

    /// `GET /admin/users`: accounts in id (creation) order, a page at a time.
    pub async fn users(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<AccountView>, Option<String>), ApiError> {
        let page: Page<Document<Entity>> = self
            .store()
            .list_documents(USERS, None, cursor, limit)
            .await?;
        let mut out = Vec::with_capacity(page.items.len());
        for doc in page.items.iter().filter(|d| !d.state.has_mark("abandoned")) {
            let mut view = account_view(doc.key.sort(), &doc.state);
            if let Ok(email) = Email::parse(&view.email) {
                view.email_conflict =
                    self.owner_of(&email).await?.as_deref() != Some(doc.key.sort());
            }
            out.push(view);
        }
        Ok((out, page.next_cursor))
    }

    /// `PATCH /admin/users/{id}`: changes another account's role or disabled flag.
    pub async fn update_user(
        &self,
        admin: &Identity,
        user_id: &str,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> Result<AccountView, ApiError> {
        if role.is_none() && disabled.is_none() {
            return Err(ApiError::bad_request("set `role`, `disabled` or both"));
        }
        if user_id == admin.user_id {
            return Err(ApiError::Unprocessable {
                field: None,
                message: "administrators cannot change their own role or disable themselves".into(),
            });
        }
        if !validate::is_hex(user_id, 32) {
            return Err(ApiError::NotFound("no such account".into()));
        }
        let before = self
            .account(user_id)
            .await?
            .filter(|d| !d.state.has_mark("abandoned"))
            .ok_or_else(|| ApiError::NotFound("no such account".into()))?;
        let clock = &self.state.clock;
        let doc = self
            .store()
            .update(&user_key(user_id)?, |account: &mut Entity| {
                let mut delta = Entity::new();
                if let Some(role) = role
                    && role_of(account) != role
                {
                    let stamp = clock.stamp_after(account.stamp("role"));
                    delta.join(account.set("role", stamp, role.as_str()));
                }
                if let Some(disabled) = disabled {
                    let stamp = clock.now();
                    delta.join(set_disabled(account, stamp, disabled));
                }
                delta
            })
            .await?;
        let actor = Some(admin.user_id.clone());
        let subject = Some(user_id.to_owned());
        if role_of(&before.state) != role_of(&doc.state) {
            self.audit(Event {
                kind: "role.changed",
                actor: actor.clone(),
                subject: subject.clone(),
                detail: Some(format!(
                    "{} -> {}",
                    role_of(&before.state).as_str(),
                    role_of(&doc.state).as_str()
                )),
                ..Event::default()
            })
            .await?;
        }
        if is_disabled(&before.state) != is_disabled(&doc.state) {
            let kind = if is_disabled(&doc.state) {
                "user.disabled"
            } else {
                "user.enabled"
            };
            self.audit(Event {
                kind,
                actor,
                subject,
                ..Event::default()
            })
            .await?;
        }
        Ok(account_view(user_id, &doc.state))
    }

    /// `GET /auth/me`.
    pub async fn me(&self, identity: &Identity) -> Result<AccountView, ApiError> {
        self.account(&identity.user_id)
            .await?
            .map(|doc| account_view(&identity.user_id, &doc.state))
            .ok_or_else(|| ApiError::NotFound("no such account".into()))
    }
}

fn key_view(id: &str, k: &Entity) -> KeyView {
    let secs = |name: &str| k.field(name).and_then(|v| v.parse::<i64>().ok());
    KeyView {
        id: id.to_owned(),
        name: k.field("name").unwrap_or_default().to_owned(),
        prefix: k.field("prefix").unwrap_or_default().to_owned(),
        scopes: k
            .field("scopes")
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: rfc3339(secs("created_at").unwrap_or(0)),
        expires_at: secs("expires_at").map(rfc3339),
        revoked: k.has_mark("revoked"),
    }
}

/// What the account keeps of a recovery code: a keyed hash of it without case or dashes.
fn recovery_hash(secrets: &Secrets, user_id: &str, code: &str) -> String {
    let normalised: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    secrets.peppered(format!("{user_id}:{normalised}").as_bytes())
}

/// A recovery code: ten base32 characters (50 bits), shown as `xxxxx-xxxxx`.
fn recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let bytes = jarvis_secrets::random_bytes::<10>();
    let chars: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

/// A handler's account operations, over the request's state, secrets and client address.
impl axum::extract::FromRequestParts<AppState> for Accounts {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<jarvis_app::layers::ClientIp>()
            .and_then(|c| c.0.clone());
        let Ok(state) =
            <AppState as axum::extract::FromRequestParts<AppState>>::from_request_parts(
                parts, state,
            )
            .await;
        Self::new(state, ip).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_have_the_documented_shape() {
        let code = recovery_code();
        assert_eq!(code.len(), 11);
        assert_eq!(&code[5..6], "-");
        assert_ne!(recovery_code(), code);
    }
}
