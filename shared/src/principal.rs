//! Who a request acts for. Every document a user creates lives under its principal's
//! partition, so one principal can never address another's documents.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;

/// The principal a request acts for.
///
/// Until accounts exist every request acts for the single local principal, `local`; the
/// identity layer replaces this extractor's source, not its callers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal(String);

impl Principal {
    /// The single principal of a deployment without accounts.
    pub fn local() -> Self {
        Self("local".to_owned())
    }

    /// The principal's id, as used in document partitions.
    pub fn id(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(Self::local())
    }
}
