//! The daily notional limit, shared between replicas by escrow: a [`BoundedCounter`] of
//! cents per user and replay day (`trading#<user>` / `notional#<date>`). The first order of a
//! day on a replica grants it its share of the limit (the shares of all deployments add up
//! to at most one); each order spends its notional from the rights this replica holds, with
//! a conditional write, so two replicas that cannot talk never exceed the limit together.
//! Rights can be handed to another replica that needs them ([`transfer`]).

use jarvis_crdt::{BoundedCounter, Crdt, ReplicaId};
use jarvis_store::{Key, MergeOptions, Site, StoreError};
use jiff::civil::Date;

/// This replica's part of every daily limit.
#[derive(Debug, Clone, Copy)]
pub struct Share {
    /// The replica.
    pub replica: ReplicaId,
    /// Its fraction of the limit, 0 to 1.
    pub fraction: f64,
}

impl Share {
    /// Its rights of a `limit` (rounded down, so the shares never add up past it).
    pub fn of(&self, limit: u64) -> u64 {
        let fraction = self.fraction.clamp(0.0, 1.0);
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rights = ((limit as f64) * fraction).floor() as u64;
        rights
    }
}

fn key(user: &str, date: Date) -> Result<Key, StoreError> {
    Key::new(format!("trading#{user}"), format!("notional#{date}"))
}

/// What this replica may still spend of `user`'s limit on `date`, in cents (its share when
/// the day has not begun here).
pub async fn left(
    site: &Site,
    user: &str,
    date: Date,
    share: Share,
    limit_cents: u64,
) -> Result<u64, StoreError> {
    let counter = site
        .store
        .read::<BoundedCounter>(&key(user, date)?)
        .await?
        .map(|doc| doc.state)
        .unwrap_or_default();
    let granted = counter.granted_by(share.replica);
    let extra = share.of(limit_cents).saturating_sub(granted);
    Ok(counter.held_by(share.replica).saturating_add(extra))
}

/// Spends `cents` of `user`'s limit on `date` from this replica's rights: `false` (and
/// nothing changes) when it holds too few.
pub async fn spend(
    site: &Site,
    user: &str,
    date: Date,
    share: Share,
    limit_cents: u64,
    cents: u64,
) -> Result<bool, StoreError> {
    with_rights(site, user, date, share, limit_cents, |counter| {
        counter.spend(share.replica, cents).ok()
    })
    .await
}

/// Hands `cents` of this replica's rights for `user`'s `date` to `to`: `false` when it holds
/// too few.
pub async fn transfer(
    site: &Site,
    user: &str,
    date: Date,
    share: Share,
    limit_cents: u64,
    to: ReplicaId,
    cents: u64,
) -> Result<bool, StoreError> {
    with_rights(site, user, date, share, limit_cents, |counter| {
        counter.transfer(share.replica, to, cents).ok()
    })
    .await
}

/// Grants this replica its share of the day when it has not had it, then applies `act` to
/// its rights, in one conditional write: whether `act` could (the grant stands either way:
/// it was this replica's share anyway).
async fn with_rights(
    site: &Site,
    user: &str,
    date: Date,
    share: Share,
    limit_cents: u64,
    act: impl Fn(&mut BoundedCounter) -> Option<BoundedCounter> + Send + Sync,
) -> Result<bool, StoreError> {
    let rights = share.of(limit_cents);
    let (_, done) = site
        .store
        .transact(
            &key(user, date)?,
            MergeOptions::default(),
            |counter: &mut BoundedCounter| {
                let mut delta = BoundedCounter::new();
                let granted = counter.granted_by(share.replica);
                if granted < rights {
                    delta.join(counter.grant(share.replica, rights - granted));
                }
                match act(counter) {
                    Some(change) => {
                        delta.join(change);
                        (delta, true)
                    }
                    None => (delta, false),
                }
            },
        )
        .await?;
    Ok(done)
}
