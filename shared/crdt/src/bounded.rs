//! [`BoundedCounter`]: a counter that never goes below zero, however many replicas spend
//! from it without talking to each other.
//!
//! The escrow design of Balegas et al., "Extending Eventually Consistent Cloud Databases for
//! Enforcing Numeric Invariants" (SRDS 2015). The counter's value is a quantity of *rights*
//! (tokens of a budget, notional of a trading limit). Rights are created at a replica
//! ([`BoundedCounter::grant`]), and each replica may spend ([`BoundedCounter::spend`]) or
//! hand on ([`BoundedCounter::transfer`]) only the rights it holds. Every entry of the state
//! is written by one replica only and only grows, so states join by entry-wise maximum like
//! a [`GCounter`](crate::GCounter), and a join can only add to a replica's rights (transfers
//! *to* it arrive), never take them away. Hence no interleaving of partitions lets the
//! replicas together spend more than was granted.
//!
//! Like every counter here, the state holds one entry per replica (and per pair of replicas
//! that ever transferred), so it grows with the number of deployments, not of operations.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Crdt, GCounter, InvalidState, ReplicaId, Validate};

/// A replica asked for more rights than it holds; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{wanted} rights wanted, {held} held here")]
pub struct Insufficient {
    /// What the operation needed.
    pub wanted: u64,
    /// What the replica holds.
    pub held: u64,
}

/// A non-negative counter whose rights are escrowed per replica.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct BoundedCounter {
    /// Rights created at each replica.
    granted: GCounter,
    /// Rights spent at each replica.
    spent: GCounter,
    /// Rights each replica gave back after spending them (a reservation settled for less):
    /// never more than it spent.
    returned: GCounter,
    /// Rights each replica handed to another, `((from, to), total)`: sorted, no zero
    /// totals, never `from == to`.
    transfers: Vec<((ReplicaId, ReplicaId), u64)>,
}

impl BoundedCounter {
    /// The empty counter: no rights anywhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rights not yet spent, wherever they are held.
    pub fn value(&self) -> u64 {
        // Spending is bounded by what was granted, so this never underflows in a valid state.
        self.granted
            .value()
            .saturating_add(self.returned.value())
            .saturating_sub(self.spent.value())
    }

    /// Rights spent so far and not given back, across replicas.
    pub fn spent(&self) -> u64 {
        self.spent.value().saturating_sub(self.returned.value())
    }

    /// Rights `replica` has granted itself so far.
    pub fn granted_by(&self, replica: ReplicaId) -> u64 {
        self.granted.count(replica)
    }

    /// Rights granted so far, across replicas.
    pub fn granted(&self) -> u64 {
        self.granted.value()
    }

    /// The rights `replica` may spend or transfer now.
    pub fn held_by(&self, replica: ReplicaId) -> u64 {
        self.balance(replica).try_into().unwrap_or(0)
    }

    /// What `replica` was granted and received, minus what it spent and handed on. Never
    /// negative in a state that holds a replica's whole history; a delta (a spend without
    /// the grant it spends from) may be.
    pub fn balance(&self, replica: ReplicaId) -> i128 {
        let incoming: i128 = self
            .transfers
            .iter()
            .filter(|((_, to), _)| *to == replica)
            .map(|(_, n)| i128::from(*n))
            .sum();
        let outgoing: i128 = self
            .transfers
            .iter()
            .filter(|((from, _), _)| *from == replica)
            .map(|(_, n)| i128::from(*n))
            .sum();
        i128::from(self.granted.count(replica))
            + i128::from(self.returned.count(replica))
            + incoming
            - outgoing
            - i128::from(self.spent.count(replica))
    }

    /// Creates `rights` at `replica` (a budget, or its top-up); returns the delta.
    pub fn grant(&mut self, replica: ReplicaId, rights: u64) -> Self {
        Self {
            granted: self.granted.increment(replica, rights),
            ..Self::default()
        }
    }

    /// Spends `rights` held by `replica`; returns the delta, or [`Insufficient`] and changes
    /// nothing.
    pub fn spend(&mut self, replica: ReplicaId, rights: u64) -> Result<Self, Insufficient> {
        self.check(replica, rights)?;
        Ok(Self {
            spent: self.spent.increment(replica, rights),
            ..Self::default()
        })
    }

    /// Gives back `rights` that `replica` spent (the unused part of a reservation); returns
    /// the delta, or [`Insufficient`] (naming what it may still give back) when it spent
    /// less, and changes nothing.
    pub fn release(&mut self, replica: ReplicaId, rights: u64) -> Result<Self, Insufficient> {
        let releasable = self
            .spent
            .count(replica)
            .saturating_sub(self.returned.count(replica));
        if rights > releasable {
            return Err(Insufficient {
                wanted: rights,
                held: releasable,
            });
        }
        Ok(Self {
            returned: self.returned.increment(replica, rights),
            ..Self::default()
        })
    }

    /// Hands `rights` held by `from` to `to`; returns the delta, or [`Insufficient`] and
    /// changes nothing. A transfer to oneself changes nothing.
    pub fn transfer(
        &mut self,
        from: ReplicaId,
        to: ReplicaId,
        rights: u64,
    ) -> Result<Self, Insufficient> {
        self.check(from, rights)?;
        if from == to || rights == 0 {
            return Ok(Self::default());
        }
        let total = match self
            .transfers
            .binary_search_by_key(&(from, to), |(k, _)| *k)
        {
            Ok(i) => {
                self.transfers[i].1 += rights;
                self.transfers[i].1
            }
            Err(i) => {
                self.transfers.insert(i, ((from, to), rights));
                rights
            }
        };
        Ok(Self {
            transfers: vec![((from, to), total)],
            ..Self::default()
        })
    }

    fn check(&self, replica: ReplicaId, rights: u64) -> Result<(), Insufficient> {
        let held = self.held_by(replica);
        if rights > held {
            Err(Insufficient {
                wanted: rights,
                held,
            })
        } else {
            Ok(())
        }
    }

    /// Every replica the state mentions (with repeats).
    pub fn replicas(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        self.granted
            .counts()
            .iter()
            .chain(self.spent.counts())
            .chain(self.returned.counts())
            .map(|(r, _)| *r)
            .chain(self.transfers.iter().flat_map(|((a, b), _)| [*a, *b]))
    }
}

impl Crdt for BoundedCounter {
    fn join(&mut self, other: Self) {
        self.granted.join(other.granted);
        self.spent.join(other.spent);
        self.returned.join(other.returned);
        super::causal::join_max(&mut self.transfers, &other.transfers);
    }
}

impl Validate for BoundedCounter {
    fn validate(&self) -> Result<(), InvalidState> {
        self.granted.validate()?;
        self.spent.validate()?;
        self.returned.validate()?;
        for pair in self.transfers.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(InvalidState::Duplicate("transfer between two replicas"));
            }
            if pair[0].0 > pair[1].0 {
                return Err(InvalidState::Unsorted("transfers"));
            }
        }
        for ((from, to), total) in &self.transfers {
            if from == to {
                return Err(InvalidState::Duplicate(
                    "replica on both ends of a transfer",
                ));
            }
            if *total == 0 {
                return Err(InvalidState::ZeroCount(*from));
            }
        }
        // Balances are not checked: a delta (a spend shipped without the grant it spends
        // from, a release without its spend) is a valid state with a negative balance. A state claiming spends it never
        // had rights for only lowers the value, which saturates at zero.
        Ok(())
    }
}

/// The wire and stored form: JSON `{"granted":{…},"spent":{…},"returned":{…},
/// "transfers":[[from,to,n],…]}`, binary the same fields in order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layout {
    granted: GCounter,
    spent: GCounter,
    returned: GCounter,
    transfers: Vec<(ReplicaId, ReplicaId, u64)>,
}

impl Serialize for BoundedCounter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Layout {
            granted: self.granted.clone(),
            spent: self.spent.clone(),
            returned: self.returned.clone(),
            transfers: self
                .transfers
                .iter()
                .map(|((from, to), n)| (*from, *to, *n))
                .collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for BoundedCounter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let layout = Layout::deserialize(deserializer)?;
        let counter = Self {
            granted: layout.granted,
            spent: layout.spent,
            returned: layout.returned,
            transfers: layout
                .transfers
                .into_iter()
                .map(|(from, to, n)| ((from, to), n))
                .collect(),
        };
        counter.validate().map_err(serde::de::Error::custom)?;
        Ok(counter)
    }
}

impl BoundedCounter {
    /// Every `((from, to), total)` transfer, ascending.
    pub fn transfers(&self) -> &[((ReplicaId, ReplicaId), u64)] {
        &self.transfers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ReplicaId = ReplicaId::from_u64(1);
    const B: ReplicaId = ReplicaId::from_u64(2);

    #[test]
    fn a_replica_spends_only_what_it_holds() {
        let mut counter = BoundedCounter::new();
        counter.grant(A, 10);
        assert!(counter.spend(A, 7).is_ok());
        assert_eq!(
            counter.spend(A, 4),
            Err(Insufficient { wanted: 4, held: 3 })
        );
        assert_eq!(counter.value(), 3);
        assert_eq!(counter.held_by(B), 0);
        assert!(counter.spend(B, 1).is_err(), "B was granted nothing");
    }

    #[test]
    fn transferred_rights_move_and_partitioned_replicas_never_overspend_together() {
        let mut a = BoundedCounter::new();
        a.grant(A, 100);
        a.transfer(A, B, 40).expect("A holds 100");
        let mut b = BoundedCounter::new();
        b.join(a.clone());
        // Partitioned: each spends all it can on its own.
        while a.spend(A, 1).is_ok() {}
        while b.spend(B, 1).is_ok() {}
        assert_eq!(a.spent(), 60);
        assert_eq!(b.spent(), 40);
        a.join(b);
        assert_eq!(a.spent(), 100);
        assert_eq!(a.value(), 0);
        assert!(a.validate().is_ok());
    }

    #[test]
    fn a_reservation_settled_for_less_gives_the_rest_back_and_no_more() {
        let mut counter = BoundedCounter::new();
        counter.grant(A, 100);
        counter.spend(A, 60).expect("reserve the worst case");
        counter.release(A, 45).expect("settle: 15 used");
        assert_eq!(counter.spent(), 15);
        assert_eq!(counter.value(), 85);
        assert_eq!(counter.held_by(A), 85);
        assert_eq!(
            counter.release(A, 16),
            Err(Insufficient {
                wanted: 16,
                held: 15
            })
        );
        assert!(counter.release(B, 1).is_err(), "B spent nothing");
    }

    #[test]
    fn a_refused_operation_changes_nothing() {
        let mut counter = BoundedCounter::new();
        counter.grant(A, 5);
        let before = counter.clone();
        assert!(counter.transfer(A, B, 6).is_err());
        assert!(counter.spend(A, 6).is_err());
        assert_eq!(counter, before);
    }

    #[test]
    fn a_spend_ships_as_a_delta_that_decodes_and_a_self_transfer_does_not() {
        let mut counter = BoundedCounter::new();
        counter.grant(A, 5);
        let delta = counter.spend(A, 2).expect("held");
        let json = serde_json::to_value(&delta).expect("json");
        assert_eq!(
            serde_json::from_value::<BoundedCounter>(json).expect("a delta decodes"),
            delta
        );
        let forged = serde_json::json!({
            "granted": {},
            "spent": {},
            "returned": {},
            "transfers": [[A.to_string(), A.to_string(), 3]]
        });
        assert!(serde_json::from_value::<BoundedCounter>(forged).is_err());
    }
}
