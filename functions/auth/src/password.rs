//! Emails and passwords: parsed once at the edge, hashed with argon2id.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

use jarvis_http::error::ApiError;
use jarvis_secrets::random_bytes;

/// A normalised (trimmed, lower-cased) and checked email address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses an address: one `@`, a local part of 1–64 characters, a dotted domain, no
    /// spaces or control characters, at most 254 characters.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let email = raw.trim().to_lowercase();
        let invalid = || ApiError::invalid_field("email", "not a valid email address");
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && domain
                .split('.')
                .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest accepted password, in characters (bounds the hashing cost).
pub const MAX_PASSWORD_CHARS: usize = 128;

/// A password that meets the policy: 12–128 characters, not the email or its local part,
/// not one repeated character. Never printed.
pub struct Password(SecretString);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

impl Password {
    /// Checks a new password against the policy.
    pub fn new_for(raw: &str, email: &Email) -> Result<Self, ApiError> {
        let chars = raw.chars().count();
        let field = |message: &'static str| ApiError::invalid_field("password", message);
        if chars < MIN_PASSWORD_CHARS {
            return Err(field("must be at least 12 characters"));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(field("must be at most 128 characters"));
        }
        // Past the length, which the schema states, the policy refuses with a 422.
        let field = |message: &'static str| ApiError::Unprocessable {
            field: Some("password".into()),
            message: message.into(),
        };
        let lowered = raw.to_lowercase();
        let local = email.as_str().split('@').next().unwrap_or_default();
        if lowered.contains(email.as_str()) || (local.len() >= 4 && lowered.contains(local)) {
            return Err(field("must not contain the email address"));
        }
        let mut distinct = raw.chars().collect::<Vec<_>>();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 4 {
            return Err(field("must use more than three different characters"));
        }
        Ok(Self(SecretString::from(raw.to_owned())))
    }

    /// A password as typed at sign-in: only the length bound applies.
    pub fn attempt(raw: &str) -> Result<Self, ApiError> {
        if raw.is_empty() || raw.chars().count() > MAX_PASSWORD_CHARS {
            return Err(ApiError::invalid_field(
                "password",
                "must be 1 to 128 characters",
            ));
        }
        Ok(Self(SecretString::from(raw.to_owned())))
    }
}

/// argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane).
fn hasher() -> Argon2<'static> {
    // These constants are valid parameters; `Params::DEFAULT` is the same set.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or(Params::DEFAULT);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Most argon2id computations a process runs at once. Each holds 19 MiB, so a burst of
/// sign-ins cannot take a Lambda instance (or a laptop) out of memory; the rest wait their
/// turn. A process-wide bound is what this is for, hence a static rather than state.
pub const MAX_CONCURRENT_HASHES: usize = 4;

static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_HASHES);
static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Runs an argon2id computation off the async workers, at most [`MAX_CONCURRENT_HASHES`] at
/// once.
async fn bounded<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    use std::sync::atomic::Ordering;
    let _permit = HASHING.acquire().await.ok()?;
    tokio::task::spawn_blocking(move || {
        let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(now, Ordering::SeqCst);
        let out = work();
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        out
    })
    .await
    .ok()
}

/// The most argon2id computations this process has run at once.
#[cfg(test)]
fn peak_concurrent_hashes() -> usize {
    PEAK.load(std::sync::atomic::Ordering::SeqCst)
}

/// Hashes a password into a PHC string (`$argon2id$v=19$…`). CPU-bound: run it off the
/// async workers.
pub async fn hash(password: Password) -> Result<String, ApiError> {
    bounded(move || {
        let salt = SaltString::encode_b64(&random_bytes::<16>())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        hasher()
            .hash_password(password.0.expose_secret().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await
    .ok_or_else(|| ApiError::internal("password hashing was cancelled"))?
}

/// A hash of a random password nobody knows, verified against when an email has no account,
/// so an unknown email costs the same time as a wrong password.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$N9cnqBSyyvudqoKTH8jXNKlbqNFsUbPq7EutmcOMtR0";

/// Whether `password` matches `stored` (a PHC string), or the decoy when there is no
/// account; either way one argon2id verification is spent.
pub async fn verify(password: Password, stored: Option<String>) -> bool {
    let known = stored.is_some();
    let stored = stored.unwrap_or_else(|| DECOY_HASH.to_owned());
    let outcome = bounded(move || {
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        hasher()
            .verify_password(password.0.expose_secret().as_bytes(), &parsed)
            .is_ok()
    })
    .await
    .unwrap_or(false);
    outcome && known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_the_bound_of_hashes_run_at_once() {
        let attempts: Vec<_> = (0..12)
            .map(|_| {
                tokio::spawn(async {
                    let attempt = Password::attempt("a password nobody has").expect("valid");
                    verify(attempt, None).await
                })
            })
            .collect();
        for attempt in attempts {
            assert!(!attempt.await.expect("joined"));
        }
        let peak = peak_concurrent_hashes();
        assert!(
            (1..=MAX_CONCURRENT_HASHES).contains(&peak),
            "{peak} hashes ran at once"
        );
    }

    fn email(raw: &str) -> Email {
        Email::parse(raw).expect("valid email")
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(email("  Ada@Example.COM ").as_str(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@ex..com",
            "a@b@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_password_policy_names_what_is_wrong() {
        let ada = email("ada.lovelace@example.com");
        assert!(Password::new_for("short", &ada).is_err());
        assert!(Password::new_for("x".repeat(129).as_str(), &ada).is_err());
        assert!(Password::new_for("my ada.lovelace rules", &ada).is_err());
        assert!(Password::new_for("aaaaaaaaaaaaaaaa", &ada).is_err());
        assert!(Password::new_for("correct horse battery", &ada).is_ok());
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let ada = email("ada@example.com");
        let hashed = hash(Password::new_for("correct horse battery", &ada).expect("policy"))
            .await
            .expect("hash");
        assert!(hashed.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            verify(
                Password::attempt("correct horse battery").expect("ok"),
                Some(hashed.clone())
            )
            .await
        );
        assert!(
            !verify(
                Password::attempt("wrong horse battery").expect("ok"),
                Some(hashed)
            )
            .await
        );
    }

    #[tokio::test]
    async fn no_account_never_verifies() {
        assert!(!verify(Password::attempt("anything at all").expect("ok"), None).await);
    }

    #[test]
    fn the_decoy_is_a_valid_hash_with_the_same_parameters() {
        let parsed = PasswordHash::new(DECOY_HASH).expect("valid PHC string");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert_eq!(
            Params::try_from(&parsed).expect("params").m_cost(),
            19 * 1024
        );
    }

    proptest::proptest! {
        #[test]
        fn parsed_emails_are_normalised_and_parse_again_unchanged(raw in "\\PC{0,80}") {
            if let Ok(email) = Email::parse(&raw) {
                proptest::prop_assert_eq!(email.as_str(), email.as_str().trim().to_lowercase());
                proptest::prop_assert_eq!(Email::parse(email.as_str()).ok(), Some(email.clone()));
            }
        }
    }

    #[test]
    fn passwords_never_print() {
        let p = Password::attempt("hunter2hunter2").expect("ok");
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
