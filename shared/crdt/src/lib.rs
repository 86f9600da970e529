//! Conflict-free replicated data types: the state every Jarvis document is made of.
//!
//! Every type here is a *delta-state* CRDT: a join-semilattice whose [`Crdt::join`] is
//! commutative, associative and idempotent, and whose mutators each return a **delta** —
//! itself a valid state, usually tiny — such that joining the delta into the old state gives
//! the mutated state. Deltas join with each other, so a batch of changes ships as one value.
//! Nothing in this module performs I/O or reads a clock: callers pass time in through the
//! [`hlc`] module's clock, so a merge is a pure function of its inputs.
//!
//! Written here rather than taken from a crate: `crdts` (the field's best-kept crate, used by
//! the tests as a reference) has no delta mutators, no hybrid-logical-clock registers, no
//! observed-remove record without tombstones and no versioned byte format with invariant
//! checks on decode, and those four are what the store merges on every write.
//!
//! Owns the merge semantics and the byte format of every document; changes when a type or
//! its encoding does. The bottom of the crate map: imports no other Jarvis crate and nothing
//! that does I/O (no tokio, no store, no HTTP).
//!
//! | type | use |
//! | --- | --- |
//! | [`GCounter`] | grow-only counter (metrics) |
//! | [`PNCounter`] | counter that also decrements |
//! | [`BoundedCounter`] | non-negative counter whose rights are escrowed per replica (quotas, limits) |
//! | [`GSet`] | grow-only set (permanent records) |
//! | [`LwwRegister`] | last-writer-wins value on hybrid logical clocks (configuration) |
//! | [`MvRegister`] | multi-value register: keeps concurrent writes so a conflict can be shown |
//! | [`OrSet`] | observed-remove, add-wins set without tombstones (archive entries, tags) |
//! | [`LwwMap`] | record whose fields merge independently, last writer wins per field |
//! | [`Record`] | fields as in an [`LwwMap`], plus deletion by observed remove (archive entries) |
//! | [`Entity`] | fields (last writer wins), levels (maximum) and marks (grow-only): security state no merge may undo |
//!
//! States that arrive from the wire or the store are untrusted: decoding (see [`codec`])
//! checks every invariant ([`Validate`]) and rejects a broken state with an
//! [`InvalidState`] error; nothing here panics on bad input.
//!
//! # Keeping state bounded
//!
//! - **Actors are replicas, not processes.** A [`ReplicaId`] names a deployment (a region, a
//!   laptop). Every Lambda instance of one deployment writes under the same id; the store's
//!   conditional write serialises them, so a counter holds one entry per deployment, not one
//!   per cold start. Version vectors and counters therefore grow with the number of
//!   deployments, which is small and changes rarely.
//! - **Causal contexts are compacted.** An OR-set or MV-register context is a version vector
//!   plus a "dot cloud" of dots received out of order. [`CausalContext::compact`] folds every
//!   dot contiguous with the vector into it, and every join compacts, so once deliveries
//!   catch up the cloud is empty and the context costs one entry per replica.
//! - **No tombstones in sets.** A removal in an [`OrSet`] deletes the element's dots and keeps
//!   only their ids in the causal context, where they vanish into the version vector; the
//!   removed element itself leaves nothing behind.
//! - **What stays.** [`LwwMap`] keeps a timestamped tombstone per removed key, bounded by the
//!   number of distinct keys the record ever had (its fields). [`GSet`] never shrinks by
//!   design; use an [`OrSet`] where removal matters. Unbounded collections are one document
//!   per element in the store, never one growing value.
//! - **A retired replica** leaves one version-vector entry (and, in counters, its final
//!   count, which is part of the value). Its entry can be dropped from causal contexts only
//!   once every live replica has seen all of its dots — a coordinated step, deliberately not
//!   automatic. A replica id must never be reused by a deployment that lost its state: it
//!   would mint dots that others have already seen.
#![deny(missing_docs)]

pub mod bounded;
pub mod causal;
pub mod codec;
pub mod counter;
pub mod entity;
pub mod gset;
pub mod hlc;
pub mod map;
pub mod orset;
pub mod record;
pub mod register;

pub use bounded::{BoundedCounter, Insufficient};
pub use causal::{CausalContext, Dot, ReplicaId};
pub use codec::{Codec, DecodeError};
pub use counter::{GCounter, PNCounter};
pub use entity::Entity;
pub use gset::GSet;
pub use hlc::{ClockError, Hlc, Timestamp};
pub use map::LwwMap;
pub use orset::OrSet;
pub use record::Record;
pub use register::{LwwRegister, MvRegister};

/// A join-semilattice: states that merge without coordination.
///
/// Laws (proved by property tests for every implementation): for all states `a`, `b`, `c`,
/// `a ⊔ b = b ⊔ a`, `(a ⊔ b) ⊔ c = a ⊔ (b ⊔ c)` and `a ⊔ a = a`. [`Default`] is the bottom
/// element: the empty state.
pub trait Crdt: Default + Clone {
    /// Merges `other` into `self` (`self ← self ⊔ other`).
    fn join(&mut self, other: Self);

    /// `self ⊔ other`, by value.
    fn joined(mut self, other: Self) -> Self {
        self.join(other);
        self
    }
}

/// Checks the invariants of a state that came from outside (wire, store).
pub trait Validate {
    /// `Ok` when the state could have been produced by this module's mutators and joins.
    fn validate(&self) -> Result<(), InvalidState>;
}

/// A decoded state that breaks an invariant. The message says which, without echoing data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidState {
    /// A dot carries counter 0; counters start at 1.
    #[error("dot with counter 0")]
    ZeroDot,
    /// An element or value holds a dot its own causal context does not cover.
    #[error("dot {0} is beyond the causal context")]
    DotBeyondContext(Dot),
    /// The same dot tags two elements or values.
    #[error("dot {0} is used twice")]
    DuplicateDot(Dot),
    /// An OR-set element is present with no dot.
    #[error("element present without a dot")]
    EmptyDots,
    /// The same key (replica, element) appears twice.
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    /// A counter entry is zero; entries exist only once incremented.
    #[error("counter entry of zero for replica {0}")]
    ZeroCount(ReplicaId),
    /// Keys are not in their canonical (ascending) order.
    #[error("{0} not in ascending order")]
    Unsorted(&'static str),
}
