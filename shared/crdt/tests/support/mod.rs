//! A model of replicas for the CRDT property tests: each CRDT type says which operations
//! it supports and what its observable value is; the harness runs random histories over
//! several replicas, checking the laws along the way.

#![allow(dead_code)]

use std::fmt::Debug;
use std::time::Duration;

use jarvis_crdt::{
    BoundedCounter, Codec, Crdt, Entity, GCounter, GSet, Hlc, LwwMap, LwwRegister, MvRegister,
    OrSet, PNCounter, Record, ReplicaId, Timestamp,
};
use proptest::prelude::*;

/// A CRDT under test.
pub trait Model: Crdt + Codec + PartialEq + Debug + 'static {
    /// An operation a replica can perform.
    type Op: Debug + Clone + 'static;
    /// The observable value.
    type Value: PartialEq + Debug;

    /// Random operations.
    fn op() -> BoxedStrategy<Self::Op>;
    /// Applies `op` at `replica`, stamping with `stamp` where the type needs time; returns
    /// the delta.
    fn apply(&mut self, replica: ReplicaId, stamp: Timestamp, op: &Self::Op) -> Self;
    /// What a user sees.
    fn value(&self) -> Self::Value;
    /// Whether `joined` kept everything `part` had that the other side had not removed.
    fn keeps_observed(part: &Self, other: &Self, joined: &Self) -> bool;
}

/// The replica id of replica number `i`.
pub fn replica(i: usize) -> ReplicaId {
    ReplicaId::from_name(&format!("replica-{i}"))
}

/// One step of a history.
#[derive(Debug, Clone)]
pub enum Step<Op> {
    /// Replica `at` performs `op`, its wall clock off by `skew_ms`.
    Op { at: usize, op: Op, skew_ms: i64 },
    /// Replica `to` joins the full state of replica `from`.
    Sync { from: usize, to: usize },
}

/// Random histories over `replicas` replicas.
pub fn history<M: Model>(replicas: usize, len: usize) -> BoxedStrategy<Vec<Step<M::Op>>> {
    let step = prop_oneof![
        4 => (0..replicas, M::op(), -40i64..40).prop_map(|(at, op, skew_ms)| Step::Op { at, op, skew_ms }),
        1 => (0..replicas, 0..replicas).prop_map(|(from, to)| Step::Sync { from, to }),
    ];
    proptest::collection::vec(step, 0..len).boxed()
}

/// Replicas with their clocks.
pub struct World<M> {
    pub states: Vec<M>,
    pub clocks: Vec<Hlc>,
    pub tick: u64,
}

impl<M: Model> World<M> {
    pub fn new(replicas: usize) -> Self {
        Self {
            states: (0..replicas).map(|_| M::default()).collect(),
            clocks: (0..replicas)
                .map(|i| Hlc::new(replica(i), Duration::from_secs(60)))
                .collect(),
            tick: 1_000_000,
        }
    }

    /// Performs an operation, checking the delta law on the way; returns the delta.
    pub fn perform(&mut self, at: usize, op: &M::Op, skew_ms: i64) -> Result<M, TestCaseError> {
        self.tick += 10;
        let physical = self.tick.saturating_add_signed(skew_ms);
        let stamp = self.clocks[at].now(physical);
        let before = self.states[at].clone();
        let delta = self.states[at].apply(replica(at), stamp, op);
        prop_assert_eq!(
            &before.clone().joined(delta.clone()),
            &self.states[at],
            "joining the delta of {:?} into the old state must equal the mutated state",
            op
        );
        prop_assert_eq!(
            &self.states[at].clone().joined(delta.clone()),
            &self.states[at],
            "the delta is already part of the new state"
        );
        Ok(delta)
    }

    /// Replica `to` joins a state, moving its clock past any stamp it has seen.
    pub fn receive(&mut self, to: usize, state: M) {
        self.states[to].join(state);
    }

    /// Runs `steps`, returning every state and delta seen (a pool of mutually consistent
    /// states for the lattice laws).
    pub fn run(&mut self, steps: &[Step<M::Op>]) -> Result<Vec<M>, TestCaseError> {
        let mut pool = vec![M::default()];
        for step in steps {
            match step {
                Step::Op { at, op, skew_ms } => {
                    let delta = self.perform(*at, op, *skew_ms)?;
                    pool.push(delta);
                    pool.push(self.states[*at].clone());
                }
                Step::Sync { from, to } => {
                    let state = self.states[*from].clone();
                    self.receive(*to, state);
                    pool.push(self.states[*to].clone());
                }
            }
        }
        pool.extend(self.states.iter().cloned());
        Ok(pool)
    }
}

// ---- The types under test ---------------------------------------------------------------

#[derive(Debug, Clone)]
pub enum CounterOp {
    Inc(u64),
    Dec(u64),
}

impl Model for GCounter {
    type Op = u64;
    type Value = u64;
    fn op() -> BoxedStrategy<u64> {
        (1u64..1_000).boxed()
    }
    fn apply(&mut self, replica: ReplicaId, _: Timestamp, by: &u64) -> Self {
        self.increment(replica, *by)
    }
    fn value(&self) -> u64 {
        GCounter::value(self)
    }
    fn keeps_observed(part: &Self, _: &Self, joined: &Self) -> bool {
        part.counts().iter().all(|(r, c)| joined.count(*r) >= *c)
    }
}

impl Model for PNCounter {
    type Op = CounterOp;
    type Value = i128;
    fn op() -> BoxedStrategy<CounterOp> {
        prop_oneof![
            (1u64..1_000).prop_map(CounterOp::Inc),
            (1u64..1_000).prop_map(CounterOp::Dec)
        ]
        .boxed()
    }
    fn apply(&mut self, replica: ReplicaId, _: Timestamp, op: &CounterOp) -> Self {
        match op {
            CounterOp::Inc(by) => self.increment(replica, *by),
            CounterOp::Dec(by) => self.decrement(replica, *by),
        }
    }
    fn value(&self) -> i128 {
        PNCounter::value(self)
    }
    fn keeps_observed(part: &Self, other: &Self, joined: &Self) -> bool {
        GCounter::keeps_observed(&part.increments, &other.increments, &joined.increments)
            && GCounter::keeps_observed(&part.decrements, &other.decrements, &joined.decrements)
    }
}

#[derive(Debug, Clone)]
pub enum EscrowOp {
    Grant(u64),
    Spend(u64),
    Release(u64),
    /// To replica number `.0` (of four).
    Transfer(usize, u64),
}

impl Model for BoundedCounter {
    type Op = EscrowOp;
    type Value = (u64, u64);
    fn op() -> BoxedStrategy<EscrowOp> {
        prop_oneof![
            1 => (1u64..100).prop_map(EscrowOp::Grant),
            3 => (1u64..40).prop_map(EscrowOp::Spend),
            1 => (1u64..40).prop_map(EscrowOp::Release),
            1 => (0usize..4, 1u64..60).prop_map(|(to, n)| EscrowOp::Transfer(to, n)),
        ]
        .boxed()
    }
    /// A refused spend or transfer changes nothing: its delta is empty.
    fn apply(&mut self, at: ReplicaId, _: Timestamp, op: &EscrowOp) -> Self {
        match op {
            EscrowOp::Grant(n) => self.grant(at, *n),
            EscrowOp::Spend(n) => self.spend(at, *n).unwrap_or_default(),
            EscrowOp::Release(n) => self.release(at, *n).unwrap_or_default(),
            EscrowOp::Transfer(to, n) => self.transfer(at, replica(*to), *n).unwrap_or_default(),
        }
    }
    fn value(&self) -> (u64, u64) {
        (self.granted(), self.spent())
    }
    fn keeps_observed(part: &Self, _: &Self, joined: &Self) -> bool {
        // Every entry only grows: the join is above `part` in the lattice order.
        part.clone().joined(joined.clone()) == *joined
    }
}

impl Model for GSet<String> {
    type Op = String;
    type Value = Vec<String>;
    fn op() -> BoxedStrategy<String> {
        "[a-p]{1,2}".boxed()
    }
    fn apply(&mut self, _: ReplicaId, _: Timestamp, e: &String) -> Self {
        self.insert(e.clone())
    }
    fn value(&self) -> Vec<String> {
        self.iter().cloned().collect()
    }
    fn keeps_observed(part: &Self, _: &Self, joined: &Self) -> bool {
        part.iter().all(|e| joined.contains(e))
    }
}

impl Model for LwwRegister<u16> {
    type Op = u16;
    type Value = Option<u16>;
    fn op() -> BoxedStrategy<u16> {
        any::<u16>().boxed()
    }
    fn apply(&mut self, _: ReplicaId, stamp: Timestamp, v: &u16) -> Self {
        self.set(stamp, *v)
    }
    fn value(&self) -> Option<u16> {
        self.get().copied()
    }
    fn keeps_observed(part: &Self, _: &Self, joined: &Self) -> bool {
        joined.stamp() >= part.stamp()
    }
}

impl Model for MvRegister<u16> {
    type Op = u16;
    type Value = Vec<u16>;
    fn op() -> BoxedStrategy<u16> {
        any::<u16>().boxed()
    }
    fn apply(&mut self, replica: ReplicaId, _: Timestamp, v: &u16) -> Self {
        self.write(replica, *v)
    }
    fn value(&self) -> Vec<u16> {
        let mut values: Vec<u16> = self.values().copied().collect();
        values.sort_unstable();
        values
    }
    fn keeps_observed(part: &Self, other: &Self, joined: &Self) -> bool {
        // A value survives unless the other side saw its write and superseded it.
        part.entries().all(|(dot, value)| {
            other.context().contains(dot) || joined.entries().any(|(d, v)| d == dot && v == value)
        })
    }
}

#[derive(Debug, Clone)]
pub enum SetOp {
    Add(u8),
    Remove(u8),
    Clear,
}

impl Model for OrSet<u8> {
    type Op = SetOp;
    type Value = Vec<u8>;
    fn op() -> BoxedStrategy<SetOp> {
        prop_oneof![
            6 => (0u8..12).prop_map(SetOp::Add),
            3 => (0u8..12).prop_map(SetOp::Remove),
            1 => Just(SetOp::Clear),
        ]
        .boxed()
    }
    fn apply(&mut self, replica: ReplicaId, _: Timestamp, op: &SetOp) -> Self {
        match op {
            SetOp::Add(e) => self.add(replica, *e),
            SetOp::Remove(e) => self.remove(e),
            SetOp::Clear => self.clear(),
        }
    }
    fn value(&self) -> Vec<u8> {
        let mut values: Vec<u8> = self.iter().copied().collect();
        values.sort_unstable();
        values
    }
    fn keeps_observed(part: &Self, other: &Self, joined: &Self) -> bool {
        // An element stays while one of its adds here is unseen by the other side: only an
        // observed remove takes an element away.
        part.iter().all(|e| {
            let unseen = part
                .dots(e)
                .is_some_and(|dots| dots.iter().any(|d| !other.context().contains(d)));
            !unseen || joined.contains(e)
        })
    }
}

#[derive(Debug, Clone)]
pub enum MapOp {
    Set(u8, u16),
    Remove(u8),
}

impl Model for LwwMap<u8, u16> {
    type Op = MapOp;
    type Value = Vec<(u8, u16)>;
    fn op() -> BoxedStrategy<MapOp> {
        prop_oneof![
            3 => (0u8..6, any::<u16>()).prop_map(|(k, v)| MapOp::Set(k, v)),
            1 => (0u8..6).prop_map(MapOp::Remove),
        ]
        .boxed()
    }
    fn apply(&mut self, _: ReplicaId, stamp: Timestamp, op: &MapOp) -> Self {
        match op {
            MapOp::Set(k, v) => self.set(*k, stamp, *v),
            MapOp::Remove(k) => self.remove(*k, stamp),
        }
    }
    fn value(&self) -> Vec<(u8, u16)> {
        self.iter().map(|(k, v)| (*k, *v)).collect()
    }
    fn keeps_observed(part: &Self, _: &Self, joined: &Self) -> bool {
        (0u8..6).all(|k| joined.stamp(&k) >= part.stamp(&k))
    }
}

#[derive(Debug, Clone)]
pub enum RecordOp {
    Create(u16),
    Set(u8, u16),
    Unset(u8),
    /// Replaces the `tags` set with the elements `t0`..`t3` whose bits are set.
    Tags(u8),
    Delete,
}

impl Model for Record {
    type Op = RecordOp;
    type Value = (bool, Vec<(String, String)>, Option<Vec<String>>);
    fn op() -> BoxedStrategy<RecordOp> {
        prop_oneof![
            2 => any::<u16>().prop_map(RecordOp::Create),
            4 => (0u8..4, any::<u16>()).prop_map(|(k, v)| RecordOp::Set(k, v)),
            1 => (0u8..4).prop_map(RecordOp::Unset),
            2 => (0u8..16).prop_map(RecordOp::Tags),
            2 => Just(RecordOp::Delete),
        ]
        .boxed()
    }
    fn apply(&mut self, replica: ReplicaId, stamp: Timestamp, op: &RecordOp) -> Self {
        match op {
            RecordOp::Create(v) => {
                self.create(replica, stamp, [("title".to_owned(), v.to_string())])
            }
            RecordOp::Set(k, v) => self.set(format!("f{k}"), stamp, v.to_string()),
            RecordOp::Unset(k) => self.unset(format!("f{k}"), stamp),
            RecordOp::Tags(bits) => self.replace_set(
                replica,
                "tags",
                (0..4)
                    .filter(|i| bits & (1 << i) != 0)
                    .map(|i| format!("t{i}")),
            ),
            RecordOp::Delete => self.delete(stamp),
        }
    }
    fn value(&self) -> Self::Value {
        (
            self.is_live(),
            self.fields()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            self.set_elements("tags")
                .map(|tags| tags.into_iter().map(str::to_owned).collect()),
        )
    }
    fn keeps_observed(part: &Self, _: &Self, joined: &Self) -> bool {
        part.fields()
            .iter()
            .all(|(k, _)| joined.stamp(k) >= part.stamp(k))
    }
}

#[derive(Debug, Clone)]
pub enum EntityOp {
    Set(u8, u16),
    Unset(u8),
    Raise(u8, u64),
    Toggle(u8, bool),
    Mark(u8),
}

impl Model for Entity {
    type Op = EntityOp;
    type Value = (Vec<(String, String)>, Vec<(String, u64)>, Vec<String>);
    fn op() -> BoxedStrategy<EntityOp> {
        prop_oneof![
            3 => (0u8..4, any::<u16>()).prop_map(|(k, v)| EntityOp::Set(k, v)),
            1 => (0u8..4).prop_map(EntityOp::Unset),
            2 => (0u8..3, 0u64..50).prop_map(|(k, v)| EntityOp::Raise(k, v)),
            2 => (0u8..2, any::<bool>()).prop_map(|(k, on)| EntityOp::Toggle(k, on)),
            2 => (0u8..8).prop_map(EntityOp::Mark),
        ]
        .boxed()
    }
    fn apply(&mut self, _: ReplicaId, stamp: Timestamp, op: &EntityOp) -> Self {
        match op {
            EntityOp::Set(k, v) => self.set(&format!("f{k}"), stamp, v.to_string()),
            EntityOp::Unset(k) => self.unset(&format!("f{k}"), stamp),
            EntityOp::Raise(k, v) => self.raise(&format!("l{k}"), *v),
            EntityOp::Toggle(k, on) => self.toggle(&format!("flag{k}"), *on),
            EntityOp::Mark(m) => self.mark(format!("m{m}")),
        }
    }
    fn value(&self) -> Self::Value {
        (
            self.fields()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            self.levels().map(|(k, v)| (k.to_owned(), v)).collect(),
            self.marks().map(str::to_owned).collect(),
        )
    }
    fn keeps_observed(part: &Self, _: &Self, joined: &Self) -> bool {
        part.fields().all(|(k, _)| joined.stamp(k) >= part.stamp(k))
            && part.levels().all(|(k, v)| joined.level(k) >= v)
            && part.marks().all(|m| joined.has_mark(m))
    }
}
