//! Token budgets per user, per day and per month, that hold across concurrent requests on
//! any number of instances and across replicas that cannot reach each other.
//!
//! Each period of a user's budget is one [`BoundedCounter`] document. A deployment holds a
//! fixed share of every budget (`share`, its fraction; the shares of all deployments add up
//! to at most 1): the first request of a period grants that share to this replica, and a
//! raised budget tops it up. Before a call, the worst case (prompt tokens plus the reply's
//! limit) is spent from the replica's rights in one conditional write; after it, what was
//! not used is given back. Within a deployment the conditional write serialises instances,
//! so concurrent reservations never take more than the share; between deployments each
//! spends only the rights it holds, so together they never take more than the budget, even
//! while partitioned. A budget lowered mid-period takes effect in the next period (granted
//! rights are not taken back).

use jarvis_crdt::{BoundedCounter, LwwRegister, ReplicaId};
use jarvis_store::clock::Clock;
use jarvis_store::{Key, MergeOptions, Store, StoreError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A token budget; `None` is unlimited. Stored (postcard, in a last-writer-wins register)
/// as each limit in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Budget {
    /// Tokens per UTC day.
    pub per_day: Option<u64>,
    /// Tokens per UTC calendar month.
    pub per_month: Option<u64>,
}

/// The periods a budget counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A UTC day.
    Day,
    /// A UTC calendar month.
    Month,
}

impl Period {
    /// `day` or `month`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// The period containing `now` (unix seconds): its label (`YYYY-MM-DD` or `YYYY-MM`) and
    /// when it ends.
    pub fn at(self, now: i64) -> (String, i64) {
        let moment = OffsetDateTime::from_unix_timestamp(now).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let date = moment.date();
        match self {
            Self::Day => {
                let end = date
                    .next_day()
                    .map_or(i64::MAX, |d| d.midnight().assume_utc().unix_timestamp());
                (date.to_string(), end)
            }
            Self::Month => {
                let (year, month) = (date.year(), date.month());
                let (next_year, next_month) = match month {
                    time::Month::December => (year + 1, time::Month::January),
                    other => (year, other.next()),
                };
                let end = time::Date::from_calendar_date(next_year, next_month, 1)
                    .map_or(i64::MAX, |d| d.midnight().assume_utc().unix_timestamp());
                (format!("{year:04}-{:02}", u8::from(month)), end)
            }
        }
    }
}

/// This deployment's part in every budget.
#[derive(Debug, Clone, Copy)]
pub struct Escrow {
    /// The replica whose rights this deployment spends.
    pub replica: ReplicaId,
    /// Its fraction of each budget, 0 to 1.
    pub share: f64,
}

impl Escrow {
    /// The rights this deployment holds of a budget of `limit`.
    fn share_of(&self, limit: u64) -> u64 {
        let share = self.share.clamp(0.0, 1.0);
        // Rounded down: the shares of all deployments never add up past the budget.
        ((limit as f64) * share).floor() as u64
    }
}

/// Whose budget an admin sets: one user's, or every user's of a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// One user, by id.
    User(String),
    /// Every user of a role (`admin`, `user`) who has no budget of their own.
    Role(String),
}

/// Budgets are set by admins, replicated, one document per subject.
fn budget_key(subject: &Subject) -> Result<Key, StoreError> {
    let sort = match subject {
        Subject::User(id) => format!("user#{id}"),
        Subject::Role(role) => format!("role#{role}"),
    };
    Key::new("quota#budgets", sort)
}

/// Sets `subject`'s budget (the last write wins across replicas).
pub async fn set_budget(
    store: &dyn Store,
    clock: &Clock,
    subject: &Subject,
    budget: Budget,
) -> Result<(), StoreError> {
    let key = budget_key(subject)?;
    store
        .update(&key, |register: &mut LwwRegister<Budget>| {
            register.set(clock.stamp_after(register.stamp()), budget)
        })
        .await?;
    Ok(())
}

/// `subject`'s own budget, when one was set.
pub async fn budget_of(store: &dyn Store, subject: &Subject) -> Result<Option<Budget>, StoreError> {
    let key = budget_key(subject)?;
    Ok(store
        .read::<LwwRegister<Budget>>(&key)
        .await?
        .and_then(|doc| doc.state.get().copied()))
}

/// The budget that applies to a user: their own, else their role's, else none (unlimited).
pub async fn effective_budget(
    store: &dyn Store,
    user: &str,
    role: &str,
) -> Result<Budget, StoreError> {
    if let Some(own) = budget_of(store, &Subject::User(user.to_owned())).await? {
        return Ok(own);
    }
    Ok(budget_of(store, &Subject::Role(role.to_owned()))
        .await?
        .unwrap_or_default())
}

/// A reservation refused: the budget of `period` is spent until `resets_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {} token budget is spent until {resets_at}", period.name())]
pub struct Exceeded {
    /// Which budget.
    pub period: Period,
    /// When it starts again (unix seconds).
    pub resets_at: i64,
    /// Tokens the request needed.
    pub wanted: u64,
    /// Tokens still available here.
    pub left: u64,
}

/// Why a reservation failed.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// Over budget.
    #[error(transparent)]
    Exceeded(#[from] Exceeded),
    /// The store failed; nothing was reserved.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Tokens held for one call, to be settled when it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "a reservation is settled when the call ends, or its tokens stay spent"]
pub struct Reservation {
    held: Vec<(Key, u64)>,
}

impl Reservation {
    /// Tokens held.
    pub fn tokens(&self) -> u64 {
        self.held.first().map_or(0, |(_, n)| *n)
    }
}

/// How long a period's document is kept after the period ends, for usage reports. Budget
/// documents replicate: every deployment sees the user's whole usage.
const KEEP_SECS: i64 = 62 * 24 * 3600;

fn key(user: &str, period: Period, now: i64) -> Result<(Key, i64), StoreError> {
    let (label, end) = period.at(now);
    let key = Key::new(
        format!("quota#{user}"),
        format!("tokens#{}#{label}", period.name()),
    )?;
    Ok((key, end))
}

/// Holds `tokens` of `user`'s budget for one call: from every period that has a limit, or
/// from none if any refuses.
pub async fn reserve(
    store: &dyn Store,
    escrow: Escrow,
    user: &str,
    budget: Budget,
    tokens: u64,
    now: i64,
) -> Result<Reservation, QuotaError> {
    let mut held = Vec::new();
    for (period, limit) in [
        (Period::Day, budget.per_day),
        (Period::Month, budget.per_month),
    ] {
        let Some(limit) = limit else { continue };
        match hold(store, escrow, user, period, limit, tokens, now).await {
            Ok(key) => held.push((key, tokens)),
            Err(err) => {
                // Give back what the other periods already held.
                settle(store, escrow, Reservation { held }, 0).await?;
                return Err(err);
            }
        }
    }
    Ok(Reservation { held })
}

async fn hold(
    store: &dyn Store,
    escrow: Escrow,
    user: &str,
    period: Period,
    limit: u64,
    tokens: u64,
    now: i64,
) -> Result<Key, QuotaError> {
    let (key, end) = key(user, period, now)?;
    let options = MergeOptions {
        expires_at: Some(end.saturating_add(KEEP_SECS)),
        ..MergeOptions::default()
    };
    let share = escrow.share_of(limit);
    let (_, outcome) = store
        .transact(&key, options, |counter: &mut BoundedCounter| {
            let mut delta = BoundedCounter::default();
            let granted = counter.granted_by(escrow.replica);
            if granted < share {
                delta = counter.grant(escrow.replica, share - granted);
            }
            match counter.spend(escrow.replica, tokens) {
                Ok(spent) => {
                    jarvis_crdt::Crdt::join(&mut delta, spent);
                    (delta, Ok(()))
                }
                Err(short) => (delta, Err(short.held)),
            }
        })
        .await?;
    match outcome {
        Ok(()) => Ok(key),
        Err(left) => Err(QuotaError::Exceeded(Exceeded {
            period,
            resets_at: end,
            wanted: tokens,
            left,
        })),
    }
}

/// Ends a call that used `used` tokens: the rest of the reservation is given back. A call
/// never uses more than it reserved (the reply's limit is part of the reservation).
pub async fn settle(
    store: &dyn Store,
    escrow: Escrow,
    reservation: Reservation,
    used: u64,
) -> Result<(), StoreError> {
    for (key, held) in reservation.held {
        let unused = held.saturating_sub(used);
        if unused == 0 {
            continue;
        }
        store
            .update(&key, |counter: &mut BoundedCounter| {
                counter.release(escrow.replica, unused).unwrap_or_default()
            })
            .await?;
    }
    Ok(())
}

/// Tokens `user` has used in the period of `period` containing `now`, across every replica
/// this store has heard from, and when the period resets.
pub async fn used(
    store: &dyn Store,
    user: &str,
    period: Period,
    now: i64,
) -> Result<(u64, i64), StoreError> {
    let (key, end) = key(user, period, now)?;
    let counter = store.read::<BoundedCounter>(&key).await?;
    Ok((counter.map_or(0, |doc| doc.state.spent()), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_utc_days_and_calendar_months_with_their_ends() {
        // 2026-11-22T12:00:00Z
        let now = 1_795_348_800;
        assert_eq!(
            Period::Day.at(now),
            ("2026-11-22".to_owned(), 1_795_392_000)
        );
        assert_eq!(Period::Month.at(now), ("2026-11".to_owned(), 1_796_083_200));
        // 2026-12-31T23:59:59Z: the month ends at the new year.
        assert_eq!(Period::Month.at(1_798_761_599).1, 1_798_761_600);
    }

    #[test]
    fn a_budget_register_keeps_its_stored_form() {
        use jarvis_crdt::{Codec, Timestamp};
        let register = LwwRegister::with(
            Timestamp::new(1_795_348_800_000, 2, ReplicaId::from_u64(7)),
            Budget {
                per_day: Some(100_000),
                per_month: None,
            },
        );
        let bytes = register.encode().expect("encode");
        assert_eq!(
            hex::encode(&bytes),
            GOLDEN_BUDGET,
            "the stored form changed"
        );
        assert_eq!(
            LwwRegister::<Budget>::decode(&bytes).expect("decode"),
            register
        );
    }

    /// Magic and format version, the register's tag, then postcard: the stamp present
    /// (wall ms, logical, replica as varints), `per_day` Some(100000), `per_month` None.
    const GOLDEN_BUDGET: &str = "4a0104000180c48299a034020701a08d0600";

    #[test]
    fn shares_round_down_so_deployments_never_add_up_past_the_budget() {
        let escrow = |share| Escrow {
            replica: ReplicaId::from_u64(1),
            share,
        };
        assert_eq!(escrow(1.0).share_of(1000), 1000);
        assert_eq!(escrow(1.0 / 3.0).share_of(1000), 333);
        assert_eq!(escrow(2.0).share_of(10), 10);
        assert_eq!(escrow(-1.0).share_of(10), 0);
    }
}
