//! Checks on request input, each failing with a 400 that names the field, and the schema
//! types that state the same rules in the OpenAPI document.
//!
//! Each rule is written once here: a check function the handlers call and a schema type
//! (`#[schema(value_type = Title)]` on a body field, `("name" = ObjectName, Path)` on a path
//! parameter) built from the same constants. A request the schema allows is never refused for
//! its shape, and one the schema forbids is always refused.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};

use crate::error::ApiError;

/// Characters a text field refuses: the control characters (Unicode category Cc) other than
/// tab, line feed and carriage return.
const TEXT_CHARACTER: &str = r"[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]";

fn is_text_character(c: char) -> bool {
    !c.is_control() || matches!(c, '\t' | '\n' | '\r')
}

/// Declares a schema type: a unit struct whose OpenAPI schema is the `ObjectBuilder` the
/// given function builds.
#[macro_export]
macro_rules! string_schema {
    ($(#[$doc:meta])* $name:ident, $build:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::Schema> {
                let build: fn() -> ::utoipa::openapi::schema::ObjectBuilder = $build;
                build().into()
            }
        }

        impl ::utoipa::ToSchema for $name {}
    };
}

/// A string schema with a description.
pub fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

/// `builder` with a length of `min` to `max` characters.
pub fn bounded(builder: ObjectBuilder, min: usize, max: usize) -> ObjectBuilder {
    builder.min_length(Some(min)).max_length(Some(max))
}

/// Longest object name, in characters.
pub const MAX_NAME_CHARS: usize = 128;
const NAME_PATTERN: &str = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$";

string_schema!(
    /// A name of a user-visible object (a counter, a set): 1 to 128 characters of
    /// `A-Z a-z 0-9 _ - .`, not starting with a dot.
    ObjectName,
    || bounded(
        string("1 to 128 characters of letters, digits, '_', '-' or '.', not starting with '.'")
            .pattern(Some(NAME_PATTERN)),
        1,
        MAX_NAME_CHARS,
    )
);

/// Checks an object name (see [`ObjectName`]).
pub fn name(field: &'static str, value: &str) -> Result<(), ApiError> {
    let ok = (1..=MAX_NAME_CHARS).contains(&value.len())
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

/// Checks a text of 1 to `max_chars` characters without control characters other than tab,
/// line feed and carriage return (see [`text_schema`]).
pub fn text(
    field: impl Into<Cow<'static, str>>,
    value: &str,
    max_chars: usize,
) -> Result<(), ApiError> {
    let chars = value.chars().count();
    if chars == 0 || chars > max_chars {
        return Err(ApiError::invalid_field(
            field,
            format!("must be 1 to {max_chars} characters"),
        ));
    }
    if !value.chars().all(is_text_character) {
        return Err(ApiError::invalid_field(
            field,
            "must not contain control characters other than tab and line breaks",
        ));
    }
    Ok(())
}

/// The schema of a [`text`] field.
pub fn text_schema(description: &str, max_chars: usize) -> ObjectBuilder {
    bounded(
        string(description).pattern(Some(format!("^{TEXT_CHARACTER}*$"))),
        1,
        max_chars,
    )
}

/// Longest label (an API key's name), in characters.
pub const MAX_LABEL_CHARS: usize = 64;

string_schema!(
    /// A short label: 1 to 64 characters, no control characters other than tab and line
    /// breaks.
    Label,
    || text_schema(
        "1 to 64 characters, no control characters other than tab and line breaks",
        MAX_LABEL_CHARS,
    )
);

/// Checks a list of at most `max` items.
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

/// A listing's page size: `limit`, else `default`; a 400 naming `limit` outside 1 to `max`.
pub fn page_limit(limit: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid_field(
            "limit",
            format!("must be 1 to {max}"),
        ))
    }
}

/// Longest page cursor, in characters (the hex form of the longest sort key).
pub const MAX_CURSOR_CHARS: usize = 2 * jarvis_store::MAX_KEY_BYTES;

string_schema!(
    /// A page cursor: the `next_cursor` of the previous page (lowercase hex). A value of this
    /// form that the listing did not return is refused with a 422.
    Cursor,
    || bounded(
        string("`next_cursor` of the previous page").pattern(Some("^(?:[0-9a-f]{2})+$")),
        2,
        MAX_CURSOR_CHARS,
    )
);

string_schema!(
    /// An id made of a UUID in its hyphenated form.
    Uuid,
    || string("A UUID, hyphenated")
        .format(Some(SchemaFormat::Custom("uuid".to_owned())))
        .pattern(Some(
            "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        ))
);

/// Parses a hyphenated UUID (see [`Uuid`]).
pub fn uuid(field: &'static str, value: &str) -> Result<uuid::Uuid, ApiError> {
    (value.len() == 36)
        .then(|| uuid::Uuid::try_parse(value).ok())
        .flatten()
        .ok_or_else(|| ApiError::invalid_field(field, "must be a UUID (hyphenated)"))
}

string_schema!(
    /// An account, session or similar id: 32 lowercase hex digits.
    HexId32,
    || bounded(string("32 lowercase hex digits").pattern(Some("^[0-9a-f]{32}$")), 32, 32)
);

string_schema!(
    /// An API key id: 16 lowercase hex digits.
    HexId16,
    || bounded(string("16 lowercase hex digits").pattern(Some("^[0-9a-f]{16}$")), 16, 16)
);

/// Whether `value` is exactly `len` lowercase hex digits.
pub fn is_hex(value: &str, len: usize) -> bool {
    value.len() == len
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Serde `deserialize_with` for an optional field that may be absent but not `null`: with
/// `#[serde(default)]`, absent is `None` and `null` is refused like any other wrong type.
pub fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Serde `deserialize_with` for an optional whole number (see [`whole_number`]) that may be
/// absent but not `null` (with `#[serde(default)]`).
pub fn whole_not_null<'de, D>(deserializer: D) -> Result<Option<u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    whole_number(deserializer).map(Some)
}

/// Serde `deserialize_with` for a whole number given as a JSON number, `2` and `2.0` alike
/// (JSON Schema's `integer` admits both), refusing fractions, negatives, and numbers written
/// with a fraction part at or past 2^53 (where a float is no longer exact).
pub fn whole_number<'de, D>(deserializer: D) -> Result<u64, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Whole;
    impl serde::de::Visitor<'_> for Whole {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a whole number")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom("must not be negative"))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u64, E> {
            // 2^53: the last float below it that is whole is exact.
            if v.fract() == 0.0 && (0.0..9_007_199_254_740_992.0).contains(&v) {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(v as u64)
            } else {
                Err(E::custom("must be a whole number"))
            }
        }
    }
    deserializer.deserialize_any(Whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use utoipa::PartialSchema;

    fn pattern_of<T: PartialSchema>() -> String {
        let json = serde_json::to_value(T::schema()).expect("schema");
        json["pattern"].as_str().expect("pattern").to_owned()
    }

    /// The schema's pattern as Rust's regex reads it: ECMA's `\uXXXX` is `\x{XXXX}` there.
    fn rust_regex(pattern: &str) -> String {
        let mut out = String::new();
        let mut rest = pattern;
        while let Some(at) = rest.find(r"\u") {
            out.push_str(&rest[..at]);
            out.push_str(&format!(r"\x{{{}}}", &rest[at + 2..at + 6]));
            rest = &rest[at + 6..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn names_are_restricted_to_a_safe_alphabet() {
        assert!(name("name", "daily-visits_2.v1").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(name("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn texts_have_bounds_in_characters_and_no_control_characters() {
        assert!(text("title", "Groceries\nmilk", 64).is_ok());
        assert!(
            text("title", &"é".repeat(64), 64).is_ok(),
            "64 characters, 128 bytes"
        );
        assert!(text("title", "", 64).is_err());
        assert!(text("title", "a\u{0}b", 64).is_err());
        assert!(text("title", "a\u{85}b", 64).is_err(), "C1 control");
        assert!(text("title", &"x".repeat(65), 64).is_err());
    }

    #[test]
    fn integral_numbers_are_whole_and_fractions_are_not() {
        #[derive(serde::Deserialize)]
        struct By {
            #[serde(deserialize_with = "whole_number")]
            by: u64,
        }
        let by = |json: &str| serde_json::from_str::<By>(json).map(|b| b.by);
        assert_eq!(by(r#"{"by": 7}"#).ok(), Some(7));
        assert_eq!(by(r#"{"by": 7.0}"#).ok(), Some(7));
        assert!(by(r#"{"by": 7.5}"#).is_err());
        assert!(by(r#"{"by": -1}"#).is_err());
        assert!(by(r#"{"by": 1e300}"#).is_err());
        assert!(by(r#"{"by": "7"}"#).is_err());
    }

    #[test]
    fn hyphenated_uuids_only() {
        assert!(uuid("id", "0191e3c2-7d1a-7c3e-9b6e-3f1d2a4b5c6d").is_ok());
        for bad in [
            "0191e3c27d1a7c3e9b6e3f1d2a4b5c6d",
            "{0191e3c2-7d1a-7c3e-9b6e-3f1d2a4b5c6d}",
            "",
        ] {
            assert!(uuid("id", bad).is_err(), "{bad}");
        }
    }

    proptest! {
        /// The OpenAPI pattern and the check agree on every string: what one accepts the
        /// other accepts.
        #[test]
        fn the_name_schema_and_the_name_check_agree(value in "\\PC{0,3}|[A-Za-z0-9_.-]{0,130}") {
            let pattern = regex::Regex::new(&rust_regex(&pattern_of::<ObjectName>())).expect("regex");
            let by_schema = pattern.is_match(&value) && value.chars().count() <= MAX_NAME_CHARS;
            prop_assert_eq!(by_schema, name("name", &value).is_ok(), "{:?}", value);
        }

        #[test]
        fn the_text_schema_and_the_text_check_agree(value in "(\\PC|[\\x00-\\x1f\\x7f-\\u{9f}]){0,70}") {
            let pattern = regex::Regex::new(&rust_regex(&pattern_of::<Label>())).expect("regex");
            let chars = value.chars().count();
            let by_schema = pattern.is_match(&value) && (1..=MAX_LABEL_CHARS).contains(&chars);
            prop_assert_eq!(by_schema, text("name", &value, MAX_LABEL_CHARS).is_ok(), "{:?}", value);
        }
    }
}
