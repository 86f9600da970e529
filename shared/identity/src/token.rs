//! Tokens: signed access tokens (JWT), and the opaque refresh tokens and API keys.
//!
//! Access tokens follow RFC 8725: one algorithm (HS256) is accepted and the header cannot
//! pick another (`none` included); `typ` must be `at+jwt` (RFC 9068) so no other JWT can
//! pass as one; `kid` picks the key, and an unknown `kid` makes the secret source fetch
//! again once before the token is refused, so a rotated key needs no redeploy; `iss`, `aud`,
//! `exp`, `nbf` and `sub` are required and checked.
//!
//! API keys are opaque: a recognisable prefix, the ids that locate their document, and 256
//! random bits of which only a SHA-256 hash is stored.
//!
//! Refresh tokens ([`RefreshToken`]) carry their generation: the token of generation `g` of
//! a session is an HMAC of `g` under the session's random seed, which the store keeps only
//! encrypted under the master key. Tokens are never stored; a session holds its seed and its
//! live generation (a level that only rises), so reuse of *any* earlier token is recognised
//! and proven authentic with constant state, however often the session refreshes.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use jarvis_config::SecurityConfig;
use jarvis_http::error::ApiError;
use jarvis_secrets::{SecretSource, Secrets, random_token};

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
    hex::encode(Sha256::digest(secret.as_bytes()))
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

/// A refresh token: `jrt_<account>_<session>_<generation>_<mac>`.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// The account.
    pub user_id: String,
    /// The session.
    pub session_id: String,
    /// Which rotation of the session this token is (from 1).
    pub generation: u64,
    mac: String,
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshToken")
            .field("user_id", &self.user_id)
            .field("session_id", &self.session_id)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

fn generation_mac(seed: &[u8], session_id: &str, generation: u64) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, seed);
    let tag = hmac::sign(
        &key,
        format!("jarvis-refresh-v1:{session_id}:{generation}").as_bytes(),
    );
    hex::encode(tag)
}

impl RefreshToken {
    /// The token of `generation` of a session whose seed is `seed`.
    pub fn derive(user_id: &str, session_id: &str, seed: &[u8], generation: u64) -> Self {
        Self {
            user_id: user_id.to_owned(),
            session_id: session_id.to_owned(),
            generation,
            mac: generation_mac(seed, session_id, generation),
        }
    }

    /// Parses a token; `None` when it is not one of ours.
    pub fn parse(raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix(REFRESH_PREFIX)?.strip_prefix('_')?;
        let mut parts = rest.split('_');
        let (user_id, session_id, generation, mac) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let generation_ok = (1..=16).contains(&generation.len())
            && generation.bytes().all(|b| b.is_ascii_hexdigit());
        let mac_ok = mac.len() == 64 && mac.bytes().all(|b| b.is_ascii_hexdigit());
        if parts.next().is_some()
            || !is_id(user_id)
            || !is_id(session_id)
            || !generation_ok
            || !mac_ok
        {
            return None;
        }
        Some(Self {
            user_id: user_id.to_owned(),
            session_id: session_id.to_owned(),
            generation: u64::from_str_radix(generation, 16).ok()?,
            mac: mac.to_ascii_lowercase(),
        })
    }

    /// Whether the token was made from `seed` (constant time).
    pub fn is_authentic(&self, seed: &[u8]) -> bool {
        digests_match(
            &generation_mac(seed, &self.session_id, self.generation),
            &self.mac,
        )
    }

    /// The token as the client holds it.
    pub fn render(&self) -> String {
        format!(
            "{REFRESH_PREFIX}_{}_{}_{:x}_{}",
            self.user_id, self.session_id, self.generation, self.mac
        )
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

    /// Issued credentials are a persisted format: keys handed out by one build must parse
    /// in every later one.
    #[test]
    fn a_credential_issued_earlier_still_parses() {
        let key = "jvk_0193a0c27a3e70008000000000000001_9f1c2b3a4d5e6f70_q8Zr0u_kM3xYw2nV5bT7sD1fG4hJ6lP9aQeRtUiOpAs";
        let parsed = Opaque::parse(API_KEY_PREFIX, key).expect("parses");
        assert_eq!(parsed.user_id, "0193a0c27a3e70008000000000000001");
        assert_eq!(parsed.id, "9f1c2b3a4d5e6f70");
        assert_eq!(parsed.render(API_KEY_PREFIX), key);
        assert_eq!(
            parsed.digest(),
            digest("q8Zr0u_kM3xYw2nV5bT7sD1fG4hJ6lP9aQeRtUiOpAs")
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips_what_it_accepts(raw in ".{0,160}") {
            if let Some(parsed) = Opaque::parse(API_KEY_PREFIX, &raw) {
                proptest::prop_assert_eq!(parsed.render(API_KEY_PREFIX), raw.clone());
            }
            if let Some(parsed) = RefreshToken::parse(&raw) {
                proptest::prop_assert_eq!(parsed.render().to_ascii_lowercase(), raw.to_ascii_lowercase());
            }
        }
    }

    #[test]
    fn refresh_tokens_are_bound_to_their_seed_session_and_generation() {
        let seed = [7u8; 32];
        let token = RefreshToken::derive(
            "0193a0c27a3e70008000000000000001",
            "fedcba9876543210fedcba9876543210",
            &seed,
            3,
        );
        let parsed = RefreshToken::parse(&token.render()).expect("parses");
        assert_eq!(parsed, token);
        assert!(parsed.is_authentic(&seed));
        assert!(!parsed.is_authentic(&[8u8; 32]), "another seed");
        let mut next = parsed.clone();
        next.generation = 4;
        assert!(
            !next.is_authentic(&seed),
            "a generation cannot be relabelled"
        );
        assert!(!format!("{token:?}").contains(&token.mac));
    }

    /// Refresh tokens are a persisted format: tokens held by clients must verify after an
    /// upgrade.
    #[test]
    fn a_refresh_token_issued_earlier_still_verifies() {
        let token = RefreshToken::derive(
            "0193a0c27a3e70008000000000000001",
            "fedcba9876543210fedcba9876543210",
            &[7u8; 32],
            3,
        );
        assert_eq!(token.render(), GOLDEN_REFRESH_TOKEN);
    }

    const GOLDEN_REFRESH_TOKEN: &str = "jrt_0193a0c27a3e70008000000000000001_fedcba9876543210fedcba9876543210_3_b45c5057e43e904409fb55a4b4da2a4217a052c00e802f934ad9e131de36d9a1";

    #[test]
    fn digests_compare_exactly() {
        assert!(digests_match(&digest("a"), &digest("a")));
        assert!(!digests_match(&digest("a"), &digest("b")));
    }
}
