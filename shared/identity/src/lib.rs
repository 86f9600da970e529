//! Identity: who a request acts for and what it may do.
//!
//! Owns verifying a credential (an access token or an API key) into an [`Identity`], roles and
//! scopes, and the request-security state every function shares: rate limits, idempotency
//! records and the audit trail. Creating and managing accounts is the auth function's; this
//! crate only reads what it wrote. May not import the application layer (`jarvis-app`) or any
//! function; speaks HTTP only through `jarvis-http`'s error type.
//!
//! Every piece of security state is a store document like any other, so it syncs between
//! deployments; the parts no merge may undo are levels and marks of an
//! [`Entity`](jarvis_crdt::Entity).
//!
//! - [`credential`]: the stored layout of accounts, sessions and keys, and [`credential::authenticate`].
//! - [`token`]: access tokens (JWT) and the opaque refresh tokens and API keys.
//! - [`audit`]: the tamper-evident event chain.
//! - [`limits`]: rate limits and login lockout kept in the store.
//! - [`idempotency`]: `Idempotency-Key` handling.
//! - [`delegation`]: a user's permission handed to work that runs without them (agent runs,
//!   automations).
#![deny(missing_docs)]

pub mod audit;
pub mod credential;
pub mod delegation;
pub mod idempotency;
pub mod limits;
pub mod token;

use std::fmt;
use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

use jarvis_http::error::ApiError;
use jarvis_store::principal::Principal;

/// What an account may do, coarsely. Scopes refine it per credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including administration.
    Admin,
    /// Reads and writes their own data.
    User,
    /// Reads their own data.
    Viewer,
}

impl Role {
    /// The name used in documents and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::User => "user",
            Self::Viewer => "viewer",
        }
    }

    /// Parses a role name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "admin" => Some(Self::Admin),
            "user" => Some(Self::User),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }

    /// Whether the role allows `scope` at all.
    pub fn grants(self, scope: Scope) -> bool {
        match self {
            Self::Admin => true,
            Self::User => scope != Scope::Admin,
            Self::Viewer => matches!(
                scope,
                Scope::ArchiveRead
                    | Scope::CrdtRead
                    | Scope::AgentsRead
                    | Scope::AutomationsRead
                    | Scope::TradingRead
            ),
        }
    }
}

/// A permission a route requires and an API key may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Read archive entries.
    ArchiveRead,
    /// Create, change and delete archive entries.
    ArchiveWrite,
    /// Read CRDT objects.
    CrdtRead,
    /// Change CRDT objects.
    CrdtWrite,
    /// Call AI models (spending the caller's token budget) and read one's usage.
    Ai,
    /// Read one's conversations and memories.
    ChatRead,
    /// Converse (spending the caller's token budget), and change conversations and memories.
    ChatWrite,
    /// Search one's knowledge base and ask it questions (spending the caller's token budget).
    KnowledgeRead,
    /// Add and delete documents of one's knowledge base.
    KnowledgeWrite,
    /// Read one's agent runs, their steps and the tools agents may use.
    AgentsRead,
    /// Start, cancel, approve and deny agent runs (spending the caller's token budget).
    AgentsWrite,
    /// Read one's automations and their run history.
    AutomationsRead,
    /// Create, change and delete automations and reminders.
    AutomationsWrite,
    /// Read one's orders, positions, ledger, backtests and the trading state.
    TradingRead,
    /// Send signals and orders, cancel orders and run backtests (paper trading).
    TradingWrite,
    /// Administration: users, the audit trail, detailed health.
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 16] = [
        Self::ArchiveRead,
        Self::ArchiveWrite,
        Self::CrdtRead,
        Self::CrdtWrite,
        Self::Ai,
        Self::ChatRead,
        Self::ChatWrite,
        Self::KnowledgeRead,
        Self::KnowledgeWrite,
        Self::AgentsRead,
        Self::AgentsWrite,
        Self::AutomationsRead,
        Self::AutomationsWrite,
        Self::TradingRead,
        Self::TradingWrite,
        Self::Admin,
    ];

    /// The scope's name, e.g. `archive:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ArchiveRead => "archive:read",
            Self::ArchiveWrite => "archive:write",
            Self::CrdtRead => "crdt:read",
            Self::CrdtWrite => "crdt:write",
            Self::Ai => "ai",
            Self::ChatRead => "chat:read",
            Self::ChatWrite => "chat:write",
            Self::KnowledgeRead => "knowledge:read",
            Self::KnowledgeWrite => "knowledge:write",
            Self::AgentsRead => "agents:read",
            Self::AgentsWrite => "agents:write",
            Self::AutomationsRead => "automations:read",
            Self::AutomationsWrite => "automations:write",
            Self::TradingRead => "trading:read",
            Self::TradingWrite => "trading:write",
            Self::Admin => "admin",
        }
    }

    /// Parses a scope name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// In the OpenAPI document, a scope is one of its names.
impl utoipa::PartialSchema for Scope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Self::ALL.map(Scope::as_str)))
            .into()
    }
}

impl utoipa::ToSchema for Scope {}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the caller proved who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// An access token of a session.
    Session {
        /// The session's id.
        session_id: String,
    },
    /// An API key, limited to its scopes.
    ApiKey {
        /// The key's id.
        key_id: String,
        /// What the key may do (within the account's role).
        scopes: Vec<Scope>,
    },
    /// Work the user handed permission to (an agent run, an automation; see
    /// [`delegation`]), limited to the scopes it was given.
    Delegated {
        /// What the work may do (within the account's role).
        scopes: Vec<Scope>,
        /// The API key that started the work, when one did.
        api_key: Option<String>,
    },
}

/// The authenticated caller, checked against the store on this request: the account exists,
/// is not disabled, and the session or key is live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The account's id.
    pub user_id: String,
    /// The account's email.
    pub email: String,
    /// The account's current role (from the store, not from the token).
    pub role: Role,
    /// The credential used.
    pub credential: Credential,
}

impl Identity {
    /// Whether the caller may act with `scope`: the role grants it and, for an API key, the
    /// key carries it.
    pub fn allows(&self, scope: Scope) -> bool {
        self.role.grants(scope)
            && match &self.credential {
                Credential::Session { .. } => true,
                Credential::ApiKey { scopes, .. } | Credential::Delegated { scopes, .. } => {
                    scopes.contains(&scope)
                }
            }
    }

    /// `Ok` when the caller signed in with a session, else 403: account management never
    /// accepts an API key, whatever its scopes.
    pub fn require_session(&self) -> Result<(), ApiError> {
        match self.credential {
            Credential::Session { .. } => Ok(()),
            Credential::ApiKey { .. } | Credential::Delegated { .. } => Err(ApiError::Forbidden(
                "this needs a signed-in session, not an API key".into(),
            )),
        }
    }

    /// `Ok` when [`allows`](Self::allows), else 403 naming the scope.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                format!("this credential lacks the {scope} permission").into(),
            ))
        }
    }

    /// The principal whose documents the caller owns.
    pub fn principal(&self) -> Principal {
        Principal::user(&self.user_id)
    }

    /// The session id, when the caller used an access token.
    pub fn session_id(&self) -> Option<&str> {
        match &self.credential {
            Credential::Session { session_id } => Some(session_id),
            Credential::ApiKey { .. } | Credential::Delegated { .. } => None,
        }
    }
}

/// Why the credentials a request carried were not accepted. The authentication layer keeps
/// it for the routes that need an [`Identity`]; routes that do not (sign-in, refresh) ignore
/// it, so a client that sends an expired token everywhere can still refresh it.
#[derive(Debug, Clone)]
pub struct CredentialRejection(pub std::sync::Arc<ApiError>);

impl CredentialRejection {
    fn to_error(&self) -> ApiError {
        match self.0.as_ref() {
            ApiError::Unauthorized(message) => ApiError::Unauthorized(message.clone()),
            ApiError::BadRequest { field, message } => ApiError::BadRequest {
                field: field.clone(),
                message: message.clone(),
            },
            ApiError::NotConfigured(message) => ApiError::NotConfigured(message.clone()),
            // The cause was logged when it happened.
            _ => ApiError::Unavailable("credentials could not be checked".into()),
        }
    }
}

/// Extracts the authenticated caller; 401 when the request carried no credentials or ones
/// that were refused (saying which).
impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        if let Some(identity) = parts.extensions.get::<Identity>() {
            return Ok(identity.clone());
        }
        Err(match parts.extensions.get::<CredentialRejection>() {
            Some(rejection) => rejection.to_error(),
            None => ApiError::Unauthorized("authentication required".into()),
        })
    }
}

/// `Option<Identity>`: the caller when the request carried accepted credentials, `None`
/// otherwise.
impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Identity {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Identity>().cloned())
    }
}

/// The authenticated caller, signed in with a session rather than an API key: 401 without
/// credentials, 403 for an API key of any scope. Account management (sessions, API keys,
/// 2FA, signing out) takes this, so a key handed to a script can never manage the account
/// it belongs to, list its sessions or mint and revoke keys.
#[derive(Debug, Clone)]
pub struct SignedIn(pub Identity);

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let identity = Identity::from_request_parts(parts, state).await?;
        identity.require_session()?;
        Ok(Self(identity))
    }
}

/// A scope a route requires, as a type, so the requirement shows in the handler's signature.
pub trait RequiredScope: Send + Sync + 'static {
    /// The scope.
    const SCOPE: Scope;
}

/// The scopes as types, for [`Authorized`].
pub mod scope {
    use super::{RequiredScope, Scope};

    macro_rules! scopes {
        ($($name:ident => $scope:ident),* $(,)?) => {$(
            #[doc = concat!("Requires [`Scope::", stringify!($scope), "`].")]
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl RequiredScope for $name {
                const SCOPE: Scope = Scope::$scope;
            }
        )*};
    }

    scopes! {
        ArchiveRead => ArchiveRead,
        ArchiveWrite => ArchiveWrite,
        CrdtRead => CrdtRead,
        CrdtWrite => CrdtWrite,
        Ai => Ai,
        ChatRead => ChatRead,
        ChatWrite => ChatWrite,
        KnowledgeRead => KnowledgeRead,
        KnowledgeWrite => KnowledgeWrite,
        AgentsRead => AgentsRead,
        AgentsWrite => AgentsWrite,
        AutomationsRead => AutomationsRead,
        AutomationsWrite => AutomationsWrite,
        TradingRead => TradingRead,
        TradingWrite => TradingWrite,
        Admin => Admin,
    }
}

/// The authenticated caller, allowed `S`: 401 without credentials, 403 without the scope.
#[derive(Debug, Clone)]
pub struct Authorized<S> {
    /// The caller.
    pub identity: Identity,
    scope: PhantomData<S>,
}

impl<S> Authorized<S> {
    /// The principal whose documents the caller owns.
    pub fn principal(&self) -> Principal {
        self.identity.principal()
    }
}

impl<S: RequiredScope, St: Send + Sync> FromRequestParts<St> for Authorized<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, ApiError> {
        let identity = Identity::from_request_parts(parts, state).await?;
        identity.require(S::SCOPE)?;
        Ok(Self {
            identity,
            scope: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(role: Role, credential: Credential) -> Identity {
        Identity {
            user_id: "u1".into(),
            email: "a@example.com".into(),
            role,
            credential,
        }
    }

    #[test]
    fn a_viewer_reads_but_never_writes() {
        let viewer = identity(
            Role::Viewer,
            Credential::Session {
                session_id: "s".into(),
            },
        );
        assert!(viewer.allows(Scope::ArchiveRead));
        assert!(!viewer.allows(Scope::ArchiveWrite));
        assert!(!viewer.allows(Scope::CrdtWrite));
        assert!(!viewer.allows(Scope::Admin));
    }

    #[test]
    fn a_key_is_limited_to_its_scopes_and_its_owners_role() {
        let key = Credential::ApiKey {
            key_id: "k".into(),
            scopes: vec![Scope::ArchiveRead, Scope::Admin],
        };
        let user = identity(Role::User, key.clone());
        assert!(user.allows(Scope::ArchiveRead));
        assert!(!user.allows(Scope::ArchiveWrite), "not in the key");
        assert!(!user.allows(Scope::Admin), "not in the role");
        assert!(identity(Role::Admin, key).allows(Scope::Admin));
    }

    #[test]
    fn scope_names_round_trip() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::parse("archive:delete"), None);
    }
}
