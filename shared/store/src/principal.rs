//! Who a request acts for. Every document a user creates lives under its principal's
//! partition, so one principal can never address another's documents: ownership is part of
//! the key, and a request for someone else's object finds nothing (404).

/// The owner of documents: an account's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal(String);

impl Principal {
    /// The principal of the account `user_id`.
    pub fn user(user_id: &str) -> Self {
        Self(user_id.to_owned())
    }

    /// The principal's id, as used in document partitions.
    pub fn id(&self) -> &str {
        &self.0
    }
}
