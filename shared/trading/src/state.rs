//! The kill switch: whether the deployment trades (`active`), only shrinks positions
//! (`reducing`) or does nothing but cancels (`halted`).
//!
//! Across replicas the most restrictive state wins until an explicit, later resume: a halt
//! or a reduce is a mark (`halt:<stamp>`, `reduce:<stamp>`) in an [`Entity`], and a resume
//! covers the marks it has *seen* (`cover:<mark>`). A halt made on one replica while
//! another resumed, unseen, stays uncovered and keeps trading halted after they sync; a stale
//! copy saying `active` carries no cover of a halt it never saw, so it undoes nothing.

use jarvis_crdt::{Crdt, Entity, Timestamp};
use serde::{Deserialize, Serialize};

/// The trading state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TradingState {
    /// Orders as usual.
    Active,
    /// Only orders that shrink a position.
    Reducing,
    /// Nothing but cancels.
    Halted,
}

impl TradingState {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Reducing => "reducing",
            Self::Halted => "halted",
        }
    }
}

fn uncovered<'a>(entity: &'a Entity, kind: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    entity
        .marks()
        .filter(move |m| m.starts_with(kind))
        .filter(|m| !entity.has_mark(&format!("cover:{m}")))
}

/// The state a stored switch says: the most restrictive uncovered mark, `active` without
/// one.
pub fn effective(entity: &Entity) -> TradingState {
    if uncovered(entity, "halt:").next().is_some() {
        TradingState::Halted
    } else if uncovered(entity, "reduce:").next().is_some() {
        TradingState::Reducing
    } else {
        TradingState::Active
    }
}

/// Sets the switch to `target` as seen here at `stamp`; answers the delta (empty when it is
/// already there). Going to a less restrictive state covers the marks of the more
/// restrictive ones seen here; going to a more restrictive one adds its mark.
pub fn set(entity: &mut Entity, stamp: Timestamp, target: TradingState) -> Entity {
    let current = effective(entity);
    if current == target {
        return Entity::new();
    }
    let mark = |kind: &str| {
        format!(
            "{kind}:{}.{}.{}",
            stamp.wall_ms, stamp.logical, stamp.replica
        )
    };
    let mut delta = Entity::new();
    let cover = |entity: &mut Entity, delta: &mut Entity, kind: &str| {
        let marks: Vec<String> = uncovered(entity, kind).map(str::to_owned).collect();
        for m in marks {
            delta.join(entity.mark(format!("cover:{m}")));
        }
    };
    match target {
        TradingState::Halted => delta.join(entity.mark(mark("halt"))),
        TradingState::Reducing => {
            cover(entity, &mut delta, "halt:");
            if uncovered(entity, "reduce:").next().is_none() {
                delta.join(entity.mark(mark("reduce")));
            }
        }
        TradingState::Active => {
            cover(entity, &mut delta, "halt:");
            cover(entity, &mut delta, "reduce:");
        }
    }
    delta
}

#[cfg(test)]
mod tests {
    use super::*;
    use jarvis_crdt::ReplicaId;

    fn at(ms: u64, replica: u64) -> Timestamp {
        Timestamp::new(ms, 0, ReplicaId::from_u64(replica))
    }

    #[test]
    fn a_halt_on_one_replica_is_never_undone_by_a_stale_active_from_another() {
        let mut a = Entity::new();
        let mut b = Entity::new();
        // Both active; then A halts.
        set(&mut a, at(10, 1), TradingState::Halted);
        assert_eq!(effective(&a), TradingState::Halted);
        // B, which never saw the halt, says active (it is: nothing to change) and even
        // goes to reducing and back, all stale.
        set(&mut b, at(20, 2), TradingState::Reducing);
        set(&mut b, at(30, 2), TradingState::Active);
        let merged_at_a = a.clone().joined(b.clone());
        let merged_at_b = b.joined(a);
        assert_eq!(effective(&merged_at_a), TradingState::Halted);
        assert_eq!(merged_at_a, merged_at_b);
    }

    #[test]
    fn a_resume_that_saw_the_halt_resumes_everywhere_but_a_concurrent_halt_still_wins() {
        let mut a = Entity::new();
        set(&mut a, at(10, 1), TradingState::Halted);
        let mut b = a.clone();
        // B resumes having seen A's halt; meanwhile A halts again (a new incident).
        set(&mut b, at(20, 2), TradingState::Active);
        assert_eq!(effective(&b), TradingState::Active);
        let mut seen = a.clone().joined(b.clone());
        assert_eq!(
            effective(&seen),
            TradingState::Active,
            "the halt B saw is resumed"
        );
        set(&mut a, at(30, 1), TradingState::Reducing);
        set(&mut a, at(31, 1), TradingState::Halted);
        seen.join(a);
        assert_eq!(
            effective(&seen),
            TradingState::Halted,
            "a halt B never saw wins"
        );
    }

    #[test]
    fn reducing_sits_between_and_setting_the_same_state_changes_nothing() {
        let mut s = Entity::new();
        assert_eq!(effective(&s), TradingState::Active);
        assert!(set(&mut s, at(1, 1), TradingState::Active).is_empty());
        set(&mut s, at(2, 1), TradingState::Reducing);
        assert_eq!(effective(&s), TradingState::Reducing);
        assert!(set(&mut s, at(3, 1), TradingState::Reducing).is_empty());
        set(&mut s, at(4, 1), TradingState::Halted);
        assert_eq!(effective(&s), TradingState::Halted);
        set(&mut s, at(5, 1), TradingState::Reducing);
        assert_eq!(
            effective(&s),
            TradingState::Reducing,
            "halt covered, reduce kept"
        );
        set(&mut s, at(6, 1), TradingState::Active);
        assert_eq!(effective(&s), TradingState::Active);
    }
}
