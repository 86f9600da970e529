//! Time-based one-time passwords (RFC 6238: SHA-1, 6 digits, 30-second steps), with the
//! step arithmetic replay protection needs (RFC 6238 §5.2): a code is accepted for the step
//! before, at or after now, and the caller refuses any step not above the last one accepted.

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

/// Seconds per step.
pub const STEP_SECS: u64 = 30;
/// Bytes of a new secret (160 bits, as RFC 4226 recommends).
pub const SECRET_BYTES: usize = 20;

fn totp(secret: &[u8], account: &str, issuer: &str) -> TOTP {
    TOTP::new_unchecked(
        Algorithm::SHA1,
        6,
        1,
        STEP_SECS,
        secret.to_vec(),
        Some(issuer.to_owned()),
        account.to_owned(),
    )
}

/// A new random secret.
pub fn new_secret() -> Vec<u8> {
    jarvis_secrets::random_bytes::<SECRET_BYTES>().to_vec()
}

/// The secret in base32, as authenticator apps take it when typed.
pub fn secret_base32(secret: &[u8]) -> String {
    totp(secret, "", "").get_secret_base32()
}

/// Decodes a base32 secret as [`secret_base32`] writes it.
pub fn decode_base32(encoded: &str) -> Option<Vec<u8>> {
    totp_rs::Secret::Encoded(encoded.to_owned()).to_bytes().ok()
}

/// The `otpauth://` URI an authenticator app scans.
pub fn provisioning_uri(secret: &[u8], account: &str, issuer: &str) -> String {
    totp(secret, account, issuer).get_url()
}

/// The step (time ÷ 30 s) whose code `code` is, among the step before `now`, `now`'s and the
/// one after; `None` when it matches none. Compares in constant time.
pub fn matching_step(secret: &[u8], code: &str, now_secs: u64) -> Option<u64> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let generator = totp(secret, "", "");
    let current = now_secs / STEP_SECS;
    let mut found = None;
    for step in [current.saturating_sub(1), current, current + 1] {
        let expected = generator.generate(step * STEP_SECS);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// The code for `at` (tests and tools).
pub fn code_at(secret: &[u8], at_secs: u64) -> String {
    totp(secret, "", "").generate(at_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 secret, truncated to 6 digits.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn codes_match_the_rfc_test_vectors() {
        assert_eq!(code_at(RFC_SECRET, 59), "287082");
        assert_eq!(code_at(RFC_SECRET, 1_111_111_109), "081804");
        assert_eq!(code_at(RFC_SECRET, 2_000_000_000), "279037");
    }

    #[test]
    fn a_code_matches_its_step_and_the_neighbours_only() {
        let now = 1_111_111_109;
        let code = code_at(RFC_SECRET, now);
        assert_eq!(matching_step(RFC_SECRET, &code, now), Some(now / STEP_SECS));
        assert_eq!(
            matching_step(RFC_SECRET, &code, now + STEP_SECS),
            Some(now / STEP_SECS),
            "one step late is accepted"
        );
        assert_eq!(matching_step(RFC_SECRET, &code, now + 3 * STEP_SECS), None);
        assert_eq!(matching_step(RFC_SECRET, "12345", now), None);
        assert_eq!(matching_step(RFC_SECRET, "abcdef", now), None);
    }

    #[test]
    fn the_uri_names_issuer_and_account() {
        let uri = provisioning_uri(RFC_SECRET, "ada@example.com", "Jarvis");
        assert!(
            uri.starts_with("otpauth://totp/Jarvis:ada%40example.com?"),
            "{uri}"
        );
        assert!(uri.contains(&format!("secret={}", secret_base32(RFC_SECRET))));
        assert_eq!(
            decode_base32(&secret_base32(RFC_SECRET)).as_deref(),
            Some(RFC_SECRET)
        );
    }
}
