//! Checks on request input, each failing with a 400 that names the field.

use crate::error::ApiError;

/// A name of a user-visible object (a counter, a set): 1 to 128 characters of
/// `A-Z a-z 0-9 _ - .`, not starting with a dot.
pub fn name(field: &'static str, value: &str) -> Result<(), ApiError> {
    let ok = (1..=128).contains(&value.len())
        && !value.starts_with('.')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            "must be 1 to 128 characters of letters, digits, '_', '-' or '.', not starting with '.'",
        ))
    }
}

/// A text of 1 to `max_bytes` bytes without control characters other than tab and newline.
pub fn text(field: impl Into<String>, value: &str, max_bytes: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max_bytes {
        return Err(ApiError::invalid_field(
            field.into(),
            format!("must be 1 to {max_bytes} bytes"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(ApiError::invalid_field(
            field.into(),
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A list of at most `max` items.
pub fn count(field: &'static str, len: usize, max: usize) -> Result<(), ApiError> {
    if len > max {
        Err(ApiError::invalid_field(
            field,
            format!("at most {max} items"),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_restricted_to_a_safe_alphabet() {
        assert!(name("name", "daily-visits_2.v1").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(name("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn texts_have_bounds_and_no_control_characters() {
        assert!(text("title", "Groceries\nmilk", 64).is_ok());
        assert!(text("title", "", 64).is_err());
        assert!(text("title", "a\u{0}b", 64).is_err());
        assert!(text("title", &"x".repeat(65), 64).is_err());
    }
}
