//! A user's permission handed to work that runs without them: an agent run, an automation.
//!
//! A [`Delegation`] is what such work keeps instead of a credential: whose it is, the
//! scopes it was given (never more than the credential that started it had, and never
//! administration) and, when an API key started it, that key's id. Each time the work acts,
//! [`Delegation::act`] checks the account again — it must exist and not be disabled — and
//! the key, if any, must still be live, so disabling the account or revoking the key stops
//! the work at its next step. A signed-in session is not tied to the work: signing out does
//! not cancel a reminder. The identity it acts as carries the account's current role, so a
//! demotion narrows what the work may do at once.

use jarvis_crdt::Entity;
use jarvis_http::ApiError;
use jarvis_store::{Store, now_secs};
use serde::{Deserialize, Serialize};

use crate::credential::{account_usable, api_key_key, key_live, role_of, user_key};
use crate::{Credential, Identity, Scope};

/// Permission to act for a user within some scopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delegation {
    /// The account acted for.
    pub user_id: String,
    /// What the work may do, by scope name (within the account's role when it acts).
    pub scopes: Vec<String>,
    /// The API key that started the work, when one did: revoking it stops the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

impl Delegation {
    /// What `identity` may hand on: a session everything its role grants, an API key its
    /// scopes (within the role); administration never.
    pub fn from_identity(identity: &Identity) -> Self {
        let scopes = Scope::ALL
            .into_iter()
            .filter(|scope| *scope != Scope::Admin && identity.allows(*scope))
            .map(|scope| scope.as_str().to_owned())
            .collect();
        let api_key = match &identity.credential {
            Credential::ApiKey { key_id, .. } => Some(key_id.clone()),
            Credential::Delegated { api_key, .. } => api_key.clone(),
            Credential::Session { .. } => None,
        };
        Self {
            user_id: identity.user_id.clone(),
            scopes,
            api_key,
        }
    }

    /// The scopes, parsed (names a newer build wrote and this one does not know are left
    /// out: the least privilege).
    pub fn scopes(&self) -> Vec<Scope> {
        self.scopes.iter().filter_map(|s| Scope::parse(s)).collect()
    }

    /// Whether the delegation carries `scope`.
    pub fn carries(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| s == scope.as_str())
    }

    /// The same delegation limited to `scopes`.
    pub fn narrowed(&self, scopes: &[Scope]) -> Self {
        Self {
            scopes: self
                .scopes()
                .into_iter()
                .filter(|s| scopes.contains(s))
                .map(|s| s.as_str().to_owned())
                .collect(),
            ..self.clone()
        }
    }

    /// The identity the work acts as now: the account's current role and email, limited to
    /// the delegated scopes. 401 when the account is gone, disabled or abandoned, or the key
    /// that started the work is revoked or expired.
    pub async fn act(&self, store: &dyn Store) -> Result<Identity, ApiError> {
        let refused = || {
            ApiError::Unauthorized(
                "the account or key this work acts for is no longer valid".into(),
            )
        };
        let account_key = user_key(&self.user_id)?;
        let key_key = match &self.api_key {
            Some(key_id) => Some(api_key_key(&self.user_id, key_id)?),
            None => None,
        };
        let (account, key) = tokio::try_join!(store.read::<Entity>(&account_key), async {
            match &key_key {
                Some(key) => store.read::<Entity>(key).await,
                None => Ok(None),
            }
        })?;
        let account = account.ok_or_else(refused)?.state;
        if !account_usable(&account) {
            return Err(refused());
        }
        if self.api_key.is_some() && !key.is_some_and(|k| key_live(&k.state, now_secs())) {
            return Err(refused());
        }
        Ok(Identity {
            user_id: self.user_id.clone(),
            email: account.field("email").unwrap_or_default().to_owned(),
            role: role_of(&account),
            credential: Credential::Delegated {
                scopes: self.scopes(),
                api_key: self.api_key.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    fn identity(role: Role, credential: Credential) -> Identity {
        Identity {
            user_id: "u1".into(),
            email: "a@example.com".into(),
            role,
            credential,
        }
    }

    #[test]
    fn a_session_hands_on_what_its_role_grants_but_never_administration() {
        let admin = identity(
            Role::Admin,
            Credential::Session {
                session_id: "s".into(),
            },
        );
        let delegated = Delegation::from_identity(&admin);
        assert!(delegated.carries(Scope::ArchiveWrite));
        assert!(delegated.carries(Scope::AgentsWrite));
        assert!(!delegated.carries(Scope::Admin));
        assert_eq!(delegated.api_key, None);

        let viewer = identity(
            Role::Viewer,
            Credential::Session {
                session_id: "s".into(),
            },
        );
        let delegated = Delegation::from_identity(&viewer);
        assert!(delegated.carries(Scope::ArchiveRead));
        assert!(!delegated.carries(Scope::ArchiveWrite));
    }

    #[test]
    fn a_key_hands_on_its_scopes_only_and_is_named() {
        let key = identity(
            Role::User,
            Credential::ApiKey {
                key_id: "k1".into(),
                scopes: vec![Scope::AgentsWrite, Scope::ArchiveRead, Scope::Admin],
            },
        );
        let delegated = Delegation::from_identity(&key);
        assert_eq!(
            delegated.scopes(),
            vec![Scope::ArchiveRead, Scope::AgentsWrite]
        );
        assert_eq!(delegated.api_key.as_deref(), Some("k1"));
        let narrowed = delegated.narrowed(&[Scope::ArchiveRead, Scope::CrdtWrite]);
        assert_eq!(narrowed.scopes(), vec![Scope::ArchiveRead]);
    }

    #[test]
    fn a_delegated_identity_is_limited_to_its_scopes_within_the_role_and_manages_nothing() {
        let delegated = identity(
            Role::Viewer,
            Credential::Delegated {
                scopes: vec![Scope::ArchiveRead, Scope::ArchiveWrite],
                api_key: None,
            },
        );
        assert!(delegated.allows(Scope::ArchiveRead));
        assert!(
            !delegated.allows(Scope::ArchiveWrite),
            "the role no longer grants it"
        );
        assert!(!delegated.allows(Scope::CrdtRead));
        assert!(delegated.require_session().is_err());
    }

    #[test]
    fn the_stored_form_is_stable() {
        let delegation = Delegation {
            user_id: "u1".into(),
            scopes: vec!["archive:write".into()],
            api_key: Some("k1".into()),
        };
        let json = serde_json::to_string(&delegation).expect("json");
        assert_eq!(
            json,
            r#"{"user_id":"u1","scopes":["archive:write"],"api_key":"k1"}"#
        );
        let back: Delegation = serde_json::from_str(&json).expect("back");
        assert_eq!(back, delegation);
    }
}
