//! Registers: [`LwwRegister`] (one value, the last write wins) and [`MvRegister`] (every
//! concurrent write is kept until a later write supersedes them).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{CausalContext, Crdt, Dot, InvalidState, ReplicaId, Timestamp, Validate};

/// A value stamped with a hybrid-logical-clock [`Timestamp`]; the greater stamp wins.
///
/// Two writes with equal stamps (possible only when two processes of one replica write in
/// the same millisecond) are ordered by their values, so every replica picks the same one.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LwwRegister<T> {
    entry: Option<(Timestamp, T)>,
}

impl<T> Default for LwwRegister<T> {
    fn default() -> Self {
        Self { entry: None }
    }
}

impl<T> LwwRegister<T> {
    /// The unset register.
    pub fn new() -> Self {
        Self::default()
    }

    /// A register holding `value` written at `stamp`.
    pub fn with(stamp: Timestamp, value: T) -> Self {
        Self {
            entry: Some((stamp, value)),
        }
    }

    /// The current value.
    pub fn get(&self) -> Option<&T> {
        self.entry.as_ref().map(|(_, v)| v)
    }

    /// The stamp of the current value.
    pub fn stamp(&self) -> Option<Timestamp> {
        self.entry.as_ref().map(|(s, _)| *s)
    }
}

impl<T: Ord + Clone> LwwRegister<T> {
    /// Writes `value` at `stamp` (taken from the replica's [`super::Hlc`]); returns the
    /// delta. A write older than the current value changes nothing.
    pub fn set(&mut self, stamp: Timestamp, value: T) -> Self {
        let delta = Self::with(stamp, value);
        self.join(delta.clone());
        delta
    }

    fn wins_over(a: &(Timestamp, T), b: &(Timestamp, T)) -> bool {
        (a.0, &a.1) > (b.0, &b.1)
    }
}

impl<T: Ord + Clone> Crdt for LwwRegister<T> {
    fn join(&mut self, other: Self) {
        if let Some(theirs) = other.entry {
            match &self.entry {
                Some(mine) if !Self::wins_over(&theirs, mine) => {}
                _ => self.entry = Some(theirs),
            }
        }
    }
}

impl<T> Validate for LwwRegister<T> {
    fn validate(&self) -> Result<(), InvalidState> {
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LwwRepr<T> {
    stamp: Timestamp,
    value: T,
}

impl<T: Serialize> Serialize for LwwRegister<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.entry
            .as_ref()
            .map(|(stamp, value)| LwwRepr {
                stamp: *stamp,
                value,
            })
            .serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LwwRegister<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self {
            entry: Option::<LwwRepr<T>>::deserialize(deserializer)?.map(|r| (r.stamp, r.value)),
        })
    }
}

/// A multi-value register: a write replaces every value it has seen; concurrent writes are
/// all kept, so a conflict can be shown to the user and resolved by the next write.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MvRegister<T> {
    // Sorted by dot.
    values: Vec<(Dot, T)>,
    context: CausalContext,
}

impl<T> Default for MvRegister<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            context: CausalContext::default(),
        }
    }
}

impl<T: Clone> MvRegister<T> {
    /// The empty register.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `value` on behalf of `replica`, superseding every value seen; returns the delta.
    pub fn write(&mut self, replica: ReplicaId, value: T) -> Self {
        let dot = self.context.next_dot(replica);
        let mut seen = CausalContext::new();
        for (d, _) in &self.values {
            seen.insert(*d);
        }
        seen.insert(dot);
        self.values = vec![(dot, value.clone())];
        self.context.insert(dot);
        Self {
            values: vec![(dot, value)],
            context: seen,
        }
    }

    /// The current values: one, or several after concurrent writes; ordered by dot.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &T> {
        self.values.iter().map(|(_, v)| v)
    }

    /// The current values with the dots of the writes that made them.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (&Dot, &T)> {
        self.values.iter().map(|(d, v)| (d, v))
    }

    /// Whether concurrent writes are waiting to be resolved.
    pub fn is_conflicted(&self) -> bool {
        self.values.len() > 1
    }

    /// The causal context.
    pub fn context(&self) -> &CausalContext {
        &self.context
    }
}

impl<T: Clone> Crdt for MvRegister<T> {
    fn join(&mut self, other: Self) {
        // Both sides are sorted by dot: a value both hold stays; a value one side holds
        // stays unless the other side has seen its dot (and so superseded it).
        let mut merged = Vec::with_capacity(self.values.len() + other.values.len());
        let mut mine = std::mem::take(&mut self.values).into_iter().peekable();
        let mut theirs = other.values.into_iter().peekable();
        loop {
            match (mine.peek(), theirs.peek()) {
                (None, None) => break,
                (Some((a, _)), Some((b, _))) if a == b => {
                    theirs.next();
                    merged.extend(mine.next());
                }
                (Some((a, _)), Some((b, _))) if a > b => {
                    if let Some((dot, value)) = theirs.next()
                        && !self.context.contains(&dot)
                    {
                        merged.push((dot, value));
                    }
                }
                (None, Some(_)) => {
                    if let Some((dot, value)) = theirs.next()
                        && !self.context.contains(&dot)
                    {
                        merged.push((dot, value));
                    }
                }
                (Some(_), _) => {
                    if let Some((dot, value)) = mine.next()
                        && !other.context.contains(&dot)
                    {
                        merged.push((dot, value));
                    }
                }
            }
        }
        self.values = merged;
        self.context.join(&other.context);
    }
}

impl<T> Validate for MvRegister<T> {
    fn validate(&self) -> Result<(), InvalidState> {
        validate_dots(self.values.iter().map(|(d, _)| d), &self.context)
    }
}

/// Dots ascending, non-zero, unique and covered by `context`.
fn validate_dots<'a>(
    dots: impl Iterator<Item = &'a Dot>,
    context: &CausalContext,
) -> Result<(), InvalidState> {
    let mut previous: Option<&Dot> = None;
    for dot in dots {
        if dot.counter == 0 {
            return Err(InvalidState::ZeroDot);
        }
        if let Some(prev) = previous {
            if prev == dot {
                return Err(InvalidState::DuplicateDot(*dot));
            }
            if prev > dot {
                return Err(InvalidState::Unsorted("register values"));
            }
        }
        if !context.contains(dot) {
            return Err(InvalidState::DotBeyondContext(*dot));
        }
        previous = Some(dot);
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MvRepr<T> {
    values: Vec<MvValue<T>>,
    context: CausalContext,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MvValue<T> {
    dot: Dot,
    value: T,
}

impl<T: Serialize + Clone> Serialize for MvRegister<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MvRepr {
            values: self
                .values
                .iter()
                .map(|(dot, value)| MvValue {
                    dot: *dot,
                    value: value.clone(),
                })
                .collect(),
            context: self.context.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MvRegister<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = MvRepr::<T>::deserialize(deserializer)?;
        let register = Self {
            values: repr.values.into_iter().map(|v| (v.dot, v.value)).collect(),
            context: repr.context,
        };
        register.validate().map_err(serde::de::Error::custom)?;
        Ok(register)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ReplicaId = ReplicaId::from_u64(1);
    const B: ReplicaId = ReplicaId::from_u64(2);

    #[test]
    fn the_later_stamp_wins_whatever_the_join_order() {
        let early = LwwRegister::with(Timestamp::new(1, 0, A), "early");
        let late = LwwRegister::with(Timestamp::new(2, 0, B), "late");
        assert_eq!(early.clone().joined(late.clone()).get(), Some(&"late"));
        assert_eq!(late.joined(early).get(), Some(&"late"));
    }

    #[test]
    fn an_older_write_changes_nothing() {
        let mut register = LwwRegister::with(Timestamp::new(5, 0, A), 1);
        register.set(Timestamp::new(4, 0, B), 2);
        assert_eq!(register.get(), Some(&1));
    }

    #[test]
    fn equal_stamps_are_broken_by_value_on_every_replica() {
        let stamp = Timestamp::new(5, 0, A);
        let x = LwwRegister::with(stamp, "x");
        let y = LwwRegister::with(stamp, "y");
        assert_eq!(x.clone().joined(y.clone()), y.joined(x));
    }

    #[test]
    fn concurrent_writes_are_all_kept_until_a_write_that_saw_them() {
        let mut a = MvRegister::new();
        let mut b = MvRegister::new();
        a.write(A, "from a");
        b.write(B, "from b");
        a.join(b.clone());
        assert!(a.is_conflicted());
        assert_eq!(
            a.values().copied().collect::<Vec<_>>(),
            ["from a", "from b"]
        );
        a.write(A, "resolved");
        b.join(a.clone());
        assert_eq!(b.values().copied().collect::<Vec<_>>(), ["resolved"]);
    }

    #[test]
    fn a_value_whose_dot_is_beyond_the_context_is_invalid() {
        let json = r#"{"values":[{"dot":{"replica":"0000000000000001","counter":3},"value":1}],
                       "context":{"vv":[["0000000000000001",2]]}}"#;
        let err = serde_json::from_str::<MvRegister<u8>>(json).expect_err("invalid");
        assert!(
            err.to_string().contains("beyond the causal context"),
            "{err}"
        );
    }
}
