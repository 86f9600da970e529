//! Conflict-free replicated data types.
