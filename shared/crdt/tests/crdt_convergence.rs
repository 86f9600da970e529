//! Convergence: 2 to 10 replicas perform random operations and ship their deltas over a
//! channel that drops, duplicates and reorders messages. After a final full exchange of
//! states every replica holds the identical state and the identical value.

mod support;

use jarvis_crdt::{
    BoundedCounter, Entity, GCounter, GSet, LwwMap, LwwRegister, MvRegister, OrSet, PNCounter,
    Record,
};
use proptest::prelude::*;
use proptest::sample::Index;
use support::{Model, World};

/// What the network does next.
#[derive(Debug, Clone)]
enum Event<Op> {
    /// A replica performs an operation and broadcasts the delta.
    Op { at: Index, op: Op, skew_ms: i64 },
    /// A message in flight is delivered and leaves the channel.
    Deliver(Index),
    /// A message in flight is delivered and stays (it will arrive again).
    Duplicate(Index),
    /// A message in flight is lost.
    Drop(Index),
}

fn events<M: Model>() -> impl Strategy<Value = Vec<Event<M::Op>>> {
    let event = prop_oneof![
        3 => (any::<Index>(), M::op(), -40i64..40)
            .prop_map(|(at, op, skew_ms)| Event::Op { at, op, skew_ms }),
        3 => any::<Index>().prop_map(Event::Deliver),
        1 => any::<Index>().prop_map(Event::Duplicate),
        1 => any::<Index>().prop_map(Event::Drop),
    ];
    proptest::collection::vec(event, 0..150)
}

fn converge<M: Model>(replicas: usize, events: Vec<Event<M::Op>>) -> Result<(), TestCaseError> {
    let mut world = World::<M>::new(replicas);
    // (recipient, delta)
    let mut in_flight: Vec<(usize, M)> = Vec::new();
    for event in events {
        match event {
            Event::Op { at, op, skew_ms } => {
                let at = at.index(replicas);
                let delta = world.perform(at, &op, skew_ms)?;
                for to in (0..replicas).filter(|to| *to != at) {
                    in_flight.push((to, delta.clone()));
                }
            }
            Event::Deliver(i) if !in_flight.is_empty() => {
                let (to, delta) = in_flight.swap_remove(i.index(in_flight.len()));
                world.receive(to, delta);
            }
            Event::Duplicate(i) if !in_flight.is_empty() => {
                let (to, delta) = in_flight[i.index(in_flight.len())].clone();
                world.receive(to, delta);
            }
            Event::Drop(i) if !in_flight.is_empty() => {
                in_flight.swap_remove(i.index(in_flight.len()));
            }
            _ => {}
        }
    }
    // Anti-entropy: every replica pulls every other's full state.
    let snapshot = world.states.clone();
    for to in 0..replicas {
        for state in &snapshot {
            world.receive(to, state.clone());
        }
    }
    let first = world.states[0].clone();
    for (i, state) in world.states.iter().enumerate() {
        prop_assert_eq!(state, &first, "replica {} diverged", i);
        prop_assert_eq!(
            state.value(),
            first.value(),
            "replica {} shows another value",
            i
        );
    }
    // Joining every state in any order gives the same result.
    let mut reversed = M::default();
    for state in snapshot.into_iter().rev() {
        reversed.join(state);
    }
    prop_assert_eq!(reversed, first);
    Ok(())
}

macro_rules! convergence {
    ($name:ident, $ty:ty) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]
            #[test]
            fn $name(replicas in 2usize..=10, events in events::<$ty>()) {
                converge::<$ty>(replicas, events)?;
            }
        }
    };
}

convergence!(g_counters_converge_over_a_lossy_channel, GCounter);
convergence!(pn_counters_converge_over_a_lossy_channel, PNCounter);
convergence!(
    bounded_counters_converge_over_a_lossy_channel,
    BoundedCounter
);
convergence!(g_sets_converge_over_a_lossy_channel, GSet<String>);
convergence!(
    lww_registers_converge_over_a_lossy_channel,
    LwwRegister<u16>
);
convergence!(mv_registers_converge_over_a_lossy_channel, MvRegister<u16>);
convergence!(or_sets_converge_over_a_lossy_channel, OrSet<u8>);
convergence!(lww_maps_converge_over_a_lossy_channel, LwwMap<u8, u16>);
convergence!(records_converge_over_a_lossy_channel, Record);
convergence!(entities_converge_over_a_lossy_channel, Entity);

#[test]
fn counter_total_is_the_sum_of_every_increment_once_converged() {
    let mut world = World::<GCounter>::new(5);
    let mut expected = 0;
    for round in 0..50u64 {
        let at = (round % 5) as usize;
        let by = round + 1;
        expected += by;
        let delta = world.perform(at, &by, 0).expect("delta law");
        // Deliver each delta twice to everybody: duplicates must not double-count.
        for to in 0..5 {
            world.receive(to, delta.clone());
            world.receive(to, delta.clone());
        }
    }
    for state in &world.states {
        assert_eq!(state.value(), expected);
    }
}
