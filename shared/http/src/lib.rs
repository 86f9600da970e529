//! The HTTP contract of Jarvis: the error type and its one mapping to the JSON envelope
//! ([`error`]), extractors whose rejections are [`ApiError`]s, the input rules written once as
//! checks and schema types ([`validate`]), OpenAPI helpers ([`openapi`]), the request's id
//! ([`request_id`]) and how times appear on the wire ([`time`]).
//!
//! Owns what a client sees; changes when the contract does. May import the store and secrets
//! (to map their errors), never identity, replication or the application layer above it.
#![deny(missing_docs)]

pub mod error;
pub mod openapi;
pub mod request_id;
pub mod time;
pub mod validate;

pub use error::ApiError;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A JSON body extractor and response. A body that is not JSON, or not of the expected
/// shape, is a 400 whose envelope names the field at fault (`tags[2]`, `by`), so a malformed
/// body gets the same envelope as every other error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|media| {
                let media = media.trim();
                media.eq_ignore_ascii_case("application/json")
                    || (media.starts_with("application/") && media.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "expected Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::bad_request("the request body could not be read")
                }
            })?;
        // Every request body is a JSON object; serde would otherwise read an array into a
        // struct field by field.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        parse_json(&bytes).map(Json)
    }
}

/// One page of a listing, as every listing route answers it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Paged<T> {
    /// The items of this page, in the listing's order.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Paging of a listing with no filters: `limit` (1 to 100, default 20) and `cursor`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<validate::Cursor>, inline)]
    pub cursor: Option<String>,
}

impl PageParams {
    /// Default page size.
    pub const DEFAULT: usize = 20;
    /// Largest page size.
    pub const MAX: usize = 100;

    /// The page size asked for; a 400 naming `limit` outside 1 to 100.
    pub fn limit(&self) -> Result<usize, ApiError> {
        validate::page_limit(self.limit, Self::DEFAULT, Self::MAX)
    }
}

/// A path-parameter extractor whose rejections are [`ApiError`]s (400 in the envelope).
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

/// A query-string extractor whose rejections are [`ApiError`]s (400 in the envelope).
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

/// A service a host sets up once (a domain's service object) and hands to handlers as a
/// request extension (`Arc<T>`).
pub trait Capability: Send + Sync + 'static {
    /// What it is, for the answer of a host without it: "this host has no {WHAT}".
    const WHAT: &'static str;
}

/// The host's `T`, from the request's extensions: 503 `not_configured` on a host that did
/// not set one up.
pub struct Hosted<T>(pub std::sync::Arc<T>);

impl<T: Capability, S: Send + Sync> axum::extract::FromRequestParts<S> for Hosted<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<std::sync::Arc<T>>()
            .cloned()
            .map(Hosted)
            .ok_or_else(|| ApiError::NotConfigured(format!("this host has no {}", T::WHAT).into()))
    }
}

/// Parses a JSON document, naming the field at fault when it does not fit `T`.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request("the request body is not valid JSON");
        }
        // serde's message without its "at line 1 column 9" suffix.
        let message = inner.to_string();
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(text, _)| text)
            .to_owned();
        if path == "." {
            ApiError::bad_request(message)
        } else {
            ApiError::invalid_field(path, message)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[allow(dead_code)]
        by: u64,
        #[allow(dead_code)]
        #[serde(default)]
        tags: Vec<String>,
    }

    fn field_of(err: &ApiError) -> Option<&str> {
        match err {
            ApiError::BadRequest { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let err = parse_json::<Body>(br#"{"by": -1}"#).expect_err("negative");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(field_of(&err), Some("by"));
        assert!(!err.to_string().contains("line"), "{err}");
    }

    #[test]
    fn a_nested_field_is_named_with_its_index() {
        let err = parse_json::<Body>(br#"{"by": 1, "tags": ["a", 7]}"#).expect_err("number tag");
        assert_eq!(field_of(&err), Some("tags[1]"));
    }

    #[test]
    fn malformed_json_is_a_400_without_a_field() {
        let err = parse_json::<Body>(b"{not json").expect_err("syntax");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(field_of(&err), None);
    }

    #[test]
    fn a_missing_field_is_reported() {
        let err = parse_json::<Body>(b"{}").expect_err("missing");
        assert!(err.to_string().contains("missing field `by`"), "{err}");
    }
}
