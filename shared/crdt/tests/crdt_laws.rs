//! Lattice laws for every CRDT: join is commutative, associative and idempotent; every
//! mutator's delta joined into the old state equals the mutated state; a join never loses
//! what either side observed; both encodings round-trip.
//!
//! States are drawn from one simulated history per case, so they are mutually consistent
//! (no replica ever minted the same dot twice), as states in a real deployment are.

mod support;

use jarvis_crdt::{
    BoundedCounter, Crdt, Entity, GCounter, GSet, LwwMap, LwwRegister, MvRegister, OrSet,
    PNCounter, Record,
};
use proptest::prelude::*;
use proptest::sample::Index;
use support::{Model, World, history};

fn pick<M: Clone>(pool: &[M], index: &Index) -> M {
    pool[index.index(pool.len())].clone()
}

fn check_laws<M: Model>(
    steps: Vec<support::Step<M::Op>>,
    picks: [Index; 3],
) -> Result<(), TestCaseError> {
    let pool = World::<M>::new(4).run(&steps)?;
    let [a, b, c] = picks.map(|i| pick(&pool, &i));

    prop_assert_eq!(
        a.clone().joined(b.clone()),
        b.clone().joined(a.clone()),
        "commutative"
    );
    prop_assert_eq!(
        a.clone().joined(b.clone()).joined(c.clone()),
        a.clone().joined(b.clone().joined(c.clone())),
        "associative"
    );
    prop_assert_eq!(a.clone().joined(a.clone()), a.clone(), "idempotent");
    prop_assert_eq!(
        a.clone().joined(M::default()),
        a.clone(),
        "the empty state is the identity"
    );

    let joined = a.clone().joined(b.clone());
    prop_assert!(
        M::keeps_observed(&a, &b, &joined),
        "join lost what {:?} observed",
        a
    );
    prop_assert!(
        M::keeps_observed(&b, &a, &joined),
        "join lost what {:?} observed",
        b
    );

    let bytes = a.encode().map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(
        &M::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?,
        &a
    );
    let json = a
        .to_json()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(
        &M::from_json(json).map_err(|e| TestCaseError::fail(e.to_string()))?,
        &a
    );
    Ok(())
}

macro_rules! laws {
    ($name:ident, $ty:ty) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn $name(steps in history::<$ty>(4, 60), picks in any::<[Index; 3]>()) {
                check_laws::<$ty>(steps, picks)?;
            }
        }
    };
}

laws!(g_counter_obeys_the_lattice_laws, GCounter);
laws!(pn_counter_obeys_the_lattice_laws, PNCounter);
laws!(bounded_counter_obeys_the_lattice_laws, BoundedCounter);
laws!(g_set_obeys_the_lattice_laws, GSet<String>);
laws!(lww_register_obeys_the_lattice_laws, LwwRegister<u16>);
laws!(mv_register_obeys_the_lattice_laws, MvRegister<u16>);
laws!(or_set_obeys_the_lattice_laws, OrSet<u8>);
laws!(lww_map_obeys_the_lattice_laws, LwwMap<u8, u16>);
laws!(record_obeys_the_lattice_laws, Record);
laws!(entity_obeys_the_lattice_laws, Entity);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Bounded counter: whatever the partitions, replicas together never spend more than was
    /// granted, no replica ever holds a negative balance, and every state they pass through
    /// is one a decoder accepts.
    #[test]
    fn bounded_counter_replicas_never_spend_more_than_was_granted(
        steps in history::<BoundedCounter>(4, 80),
    ) {
        use jarvis_crdt::Validate;
        let mut world = World::<BoundedCounter>::new(4);
        let pool = world.run(&steps)?;
        let mut everything = BoundedCounter::default();
        for state in pool {
            prop_assert!(state.validate().is_ok(), "{:?}", state);
            everything.join(state);
        }
        prop_assert!(everything.validate().is_ok(), "{:?}", everything);
        prop_assert!(everything.spent() <= everything.granted());
        for replica in everything.replicas() {
            prop_assert!(everything.balance(replica) >= 0, "{} overspent", replica);
        }
        for i in 0..4 {
            let held = everything.held_by(support::replica(i));
            let mut probe = everything.clone();
            prop_assert!(probe.spend(support::replica(i), held + 1).is_err());
        }
    }

    /// OR-set: an add concurrent with a remove of the same element wins, whatever came
    /// before and whichever way the join goes.
    #[test]
    fn or_set_concurrent_add_beats_remove(
        steps in history::<OrSet<u8>>(3, 40),
        element in 0u8..12,
    ) {
        let mut world = World::<OrSet<u8>>::new(3);
        world.run(&steps)?;
        let mut left = world.states[0].clone();
        let mut right = left.clone();
        left.add(support::replica(0), element);
        right.remove(&element);
        prop_assert!(left.clone().joined(right.clone()).contains(&element));
        prop_assert!(right.joined(left).contains(&element));
    }

    /// OR-set: a remove takes away only the adds it observed.
    #[test]
    fn or_set_remove_spares_unobserved_adds(
        steps in history::<OrSet<u8>>(3, 40),
        element in 0u8..12,
    ) {
        let mut world = World::<OrSet<u8>>::new(3);
        world.run(&steps)?;
        let mut remover = world.states[0].clone();
        let mut adder = world.states[1].clone();
        let unseen_add = adder.add(support::replica(1), element);
        remover.remove(&element);
        prop_assert!(remover.joined(unseen_add).contains(&element));
    }

    /// Deltas of several mutations join into one delta that has the same effect as all of
    /// them, so a batch of changes ships as one value.
    #[test]
    fn or_set_deltas_batch(
        steps in history::<OrSet<u8>>(3, 40),
        ops in proptest::collection::vec(<OrSet<u8> as Model>::op(), 1..10),
    ) {
        let mut world = World::<OrSet<u8>>::new(3);
        world.run(&steps)?;
        let before = world.states[0].clone();
        let mut batch = OrSet::default();
        for op in &ops {
            batch.join(world.perform(0, op, 0)?);
        }
        prop_assert_eq!(before.joined(batch), world.states[0].clone());
    }
}
