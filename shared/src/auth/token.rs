//! Tokens: signed access tokens (JWT), and the opaque refresh tokens and API keys.
//!
//! Access tokens follow RFC 8725: one algorithm (HS256) is accepted and the header cannot
//! pick another (`none` included); `typ` must be `at+jwt` (RFC 9068) so no other JWT can
//! pass as one; `kid` picks the key, and an unknown `kid` makes the secret source fetch
//! again once before the token is refused, so a rotated key needs no redeploy; `iss`, `aud`,
//! `exp`, `nbf` and `sub` are required and checked.
//!
//! Refresh tokens and API keys are opaque: a recognisable prefix, the ids that locate their
//! document, and 256 random bits of which only a SHA-256 hash is stored.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::SecurityConfig;
use crate::error::ApiError;
use crate::secrets::{SecretSource, Secrets, random_token};

/// How long an access token lives, in seconds.
pub const ACCESS_TOKEN_SECS: u64 = 15 * 60;
/// The only signing algorithm issued and accepted.
pub const ALGORITHM: Algorithm = Algorithm::HS256;
/// The `typ` header of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The account id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    /// Issued at (seconds since the Unix epoch).
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expires at.
    pub exp: u64,
    /// Unique token id.
    pub jti: String,
}

/// Signs an access token for `user_id`'s session `session_id`, with the active key.
pub fn issue_access(
    secrets: &Secrets,
    security: &SecurityConfig,
    user_id: &str,
    session_id: &str,
    now: u64,
) -> Result<String, ApiError> {
    let key = secrets.signing_key();
    let mut header = Header::new(ALGORITHM);
    header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
    header.kid = Some(key.kid.clone());
    let claims = AccessClaims {
        iss: security.issuer.clone(),
        aud: security.audience.clone(),
        sub: user_id.to_owned(),
        sid: session_id.to_owned(),
        iat: now,
        nbf: now,
        exp: now + ACCESS_TOKEN_SECS,
        jti: uuid::Uuid::new_v4().simple().to_string(),
    };
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(key.bytes()))
        .map_err(|e| ApiError::internal(e.to_string()))
}

fn invalid_token() -> ApiError {
    ApiError::Unauthorized("invalid or expired access token".into())
}

/// Checks an access token and returns its claims; 401 on any defect, without saying which.
pub async fn verify_access(
    token: &str,
    source: &dyn SecretSource,
    security: &SecurityConfig,
) -> Result<AccessClaims, ApiError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| invalid_token())?;
    if header.alg != ALGORITHM || header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
        return Err(invalid_token());
    }
    let kid = header.kid.ok_or_else(invalid_token)?;
    let mut secrets = source.current().await?;
    if secrets.verification_key(&kid).is_none() {
        secrets = source.refresh().await?;
    }
    let key = secrets.verification_key(&kid).ok_or_else(invalid_token)?;
    let mut validation = Validation::new(ALGORITHM);
    validation.algorithms = vec![ALGORITHM];
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[&security.issuer]);
    validation.set_audience(&[&security.audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<AccessClaims>(token, &DecodingKey::from_secret(key.bytes()), &validation)
        .map(|data| data.claims)
        .map_err(|e| {
            tracing::debug!(reason = ?e.kind(), "access token refused");
            invalid_token()
        })
}

/// Hex SHA-256 of an opaque token's secret part: what the store keeps.
pub fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Constant-time comparison of two digests.
pub fn digests_match(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// An opaque credential: `<prefix>_<owner>_<id>_<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Opaque {
    /// The account it belongs to.
    pub user_id: String,
    /// The session or key id.
    pub id: String,
    secret: String,
}

impl std::fmt::Debug for Opaque {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opaque")
            .field("user_id", &self.user_id)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "jrt";
/// Prefix of API keys: recognisable by people and secret scanners.
pub const API_KEY_PREFIX: &str = "jvk";

fn is_id(part: &str) -> bool {
    (16..=32).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Opaque {
    /// A new credential with 256 random bits.
    pub fn generate(user_id: &str, id: &str) -> Self {
        Self {
            user_id: user_id.to_owned(),
            id: id.to_owned(),
            secret: random_token::<32>(),
        }
    }

    /// Parses `<prefix>_<owner>_<id>_<secret>`; `None` when it is not one of ours.
    pub fn parse(prefix: &str, raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix(prefix)?.strip_prefix('_')?;
        let (user_id, rest) = rest.split_once('_')?;
        let (id, secret) = rest.split_once('_')?;
        let secret_ok = secret.len() == 43
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (is_id(user_id) && is_id(id) && secret_ok).then(|| Self {
            user_id: user_id.to_owned(),
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The credential as the client holds it.
    pub fn render(&self, prefix: &str) -> String {
        format!("{prefix}_{}_{}_{}", self.user_id, self.id, self.secret)
    }

    /// What the store keeps of the secret.
    pub fn digest(&self) -> String {
        digest(&self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_credentials_round_trip_and_reject_strangers() {
        let token = Opaque::generate("0123456789abcdef0123456789abcdef", "fedcba9876543210");
        let rendered = token.render(API_KEY_PREFIX);
        assert!(rendered.starts_with("jvk_0123456789abcdef"));
        let parsed = Opaque::parse(API_KEY_PREFIX, &rendered).expect("parses");
        assert_eq!(parsed, token);
        assert!(
            Opaque::parse(REFRESH_PREFIX, &rendered).is_none(),
            "other prefix"
        );
        assert!(Opaque::parse(API_KEY_PREFIX, "jvk_zz_yy_xx").is_none());
        assert!(Opaque::parse(API_KEY_PREFIX, &rendered[..rendered.len() - 1]).is_none());
        assert!(!format!("{parsed:?}").contains(&rendered[rendered.len() - 43..]));
    }

    #[test]
    fn digests_compare_exactly() {
        assert!(digests_match(&digest("a"), &digest("a")));
        assert!(!digests_match(&digest("a"), &digest("b")));
    }
}
