//! Automations themselves: their stored form, and making, changing and removing them.

use jarvis_crdt::Record;
use jarvis_identity::delegation::Delegation;
use jarvis_schedule::Schedule;
use jarvis_store::{Key, Page, Site, StoreError};
use uuid::Uuid;

use crate::action::Action;
use crate::due::{self, Entry};
use crate::{AutomationError, millis, timestamp};

/// Longest automation name, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest schedule expression, in characters.
pub const MAX_SCHEDULE_CHARS: usize = 256;
/// Longest time zone name, in characters.
pub const MAX_TIME_ZONE_CHARS: usize = 64;

/// Field names of the stored record.
mod field {
    pub const NAME: &str = "name";
    pub const SCHEDULE: &str = "schedule";
    pub const TIME_ZONE: &str = "time_zone";
    pub const ACTION: &str = "action";
    pub const ENABLED: &str = "enabled";
    pub const START: &str = "start";
    pub const GENERATION: &str = "generation";
    pub const HOME: &str = "home";
    pub const DELEGATION: &str = "delegation";
    pub const CREATED_AT: &str = "created_at";
}

/// An automation as it is stored and shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Automation {
    /// Its id.
    pub id: String,
    /// Its owner.
    pub user: String,
    /// What the user calls it.
    pub name: String,
    /// When it fires.
    pub schedule: Schedule,
    /// What it does.
    pub action: Action,
    /// Whether it fires.
    pub enabled: bool,
    /// When its schedule began (a rate counts from here), ms since the epoch.
    pub start_ms: u64,
    /// Changes with every change of the automation: due entries of an older generation are
    /// stale.
    pub generation: String,
    /// The deployment that fires it.
    pub home: String,
    /// What it may do, and for whom.
    pub delegation: Delegation,
    /// When it was made, ms since the epoch.
    pub created_at_ms: u64,
    /// When it last changed, ms since the epoch.
    pub updated_at_ms: u64,
}

impl Automation {
    /// When it fires next after `now_ms`, if ever (and if enabled).
    pub fn next_after(&self, now_ms: u64) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        self.schedule
            .next_after(timestamp(now_ms), timestamp(self.start_ms))
            .map(millis)
    }

    /// The stored record's fields (their golden form is `tests/golden/automation.json`).
    pub fn stored_fields(&self) -> Vec<(String, String)> {
        [
            (field::NAME, self.name.clone()),
            (field::SCHEDULE, self.schedule.expression_text().to_owned()),
            (field::TIME_ZONE, self.schedule.time_zone().to_owned()),
            (field::ACTION, self.action.encode()),
            (field::ENABLED, self.enabled.to_string()),
            (field::START, self.start_ms.to_string()),
            (field::GENERATION, self.generation.clone()),
            (field::HOME, self.home.clone()),
            (
                field::DELEGATION,
                serde_json::to_string(&self.delegation).unwrap_or_default(),
            ),
            (field::CREATED_AT, self.created_at_ms.to_string()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// The automation a stored record holds, when it is live and this build reads it.
    pub fn from_record(user: &str, id: &str, record: &Record) -> Option<Self> {
        if !record.is_live() {
            return None;
        }
        let text = |name: &str| record.get(name).unwrap_or_default();
        let number = |name: &str| text(name).parse::<u64>().unwrap_or(0);
        let schedule = Schedule::parse(text(field::SCHEDULE), text(field::TIME_ZONE)).ok()?;
        Some(Self {
            id: id.to_owned(),
            user: user.to_owned(),
            name: text(field::NAME).to_owned(),
            schedule,
            action: Action::decode(text(field::ACTION))?,
            enabled: text(field::ENABLED) == "true",
            start_ms: number(field::START),
            generation: text(field::GENERATION).to_owned(),
            home: text(field::HOME).to_owned(),
            delegation: serde_json::from_str(text(field::DELEGATION)).ok()?,
            created_at_ms: number(field::CREATED_AT),
            updated_at_ms: record.latest_stamp().map_or(0, |stamp| stamp.wall_ms),
        })
    }
}

/// What a new automation is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAutomation {
    /// Its name.
    pub name: String,
    /// An AWS schedule expression.
    pub schedule: String,
    /// The IANA time zone the expression is read in.
    pub time_zone: String,
    /// What it does.
    pub action: Action,
    /// Whether it fires.
    pub enabled: bool,
}

/// A change to an automation: the fields given are replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// A new name.
    pub name: Option<String>,
    /// A new schedule expression.
    pub schedule: Option<String>,
    /// A new time zone.
    pub time_zone: Option<String>,
    /// A new action.
    pub action: Option<Action>,
    /// Enables or disables it.
    pub enabled: Option<bool>,
}

/// The partition of a user's automations.
pub fn partition(user: &str) -> String {
    format!("automation#{user}")
}

const SORT_PREFIX: &str = "auto#";

fn key(user: &str, id: &str) -> Result<Key, StoreError> {
    Key::new(partition(user), format!("{SORT_PREFIX}{id}"))
}

fn check_name(name: &str) -> Result<(), AutomationError> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(AutomationError::Invalid {
            field: "name",
            message: format!(
                "must be 1 to {MAX_NAME_CHARS} characters, without control characters"
            ),
        });
    }
    Ok(())
}

fn parse_schedule(expression: &str, time_zone: &str) -> Result<Schedule, AutomationError> {
    if expression.chars().count() > MAX_SCHEDULE_CHARS {
        return Err(AutomationError::Invalid {
            field: "schedule",
            message: format!("must be at most {MAX_SCHEDULE_CHARS} characters"),
        });
    }
    if time_zone.chars().count() > MAX_TIME_ZONE_CHARS {
        return Err(AutomationError::Invalid {
            field: "time_zone",
            message: format!("must be at most {MAX_TIME_ZONE_CHARS} characters"),
        });
    }
    Schedule::parse(expression, time_zone).map_err(|err| match err {
        jarvis_schedule::ScheduleError::TimeZone(_) => AutomationError::Invalid {
            field: "time_zone",
            message: err.to_string(),
        },
        jarvis_schedule::ScheduleError::Expression(message) => AutomationError::Invalid {
            field: "schedule",
            message,
        },
    })
}

/// A new generation token.
fn generation() -> String {
    Uuid::new_v4().simple().to_string()
}

/// Users' automations on one deployment.
#[derive(Clone)]
pub struct Automations {
    site: Site,
    max_per_user: usize,
}

impl Automations {
    /// Automations kept in `site`'s store, at most `max_per_user` a user.
    pub fn new(site: Site, max_per_user: usize) -> Self {
        Self { site, max_per_user }
    }

    /// Where they are kept.
    pub fn site(&self) -> &Site {
        &self.site
    }

    /// Makes an automation for the delegation's user; with `id` given (work that may be
    /// repeated names what it makes), an automation of that id that exists, or existed, is
    /// answered as it is and nothing is made. 400-like errors name the field at fault; an
    /// `at(…)` in the past never fires and is refused.
    pub async fn create(
        &self,
        delegation: &Delegation,
        new: NewAutomation,
        id: Option<Uuid>,
    ) -> Result<Automation, AutomationError> {
        check_name(&new.name)?;
        new.action.check()?;
        let schedule = parse_schedule(&new.schedule, &new.time_zone)?;
        let user = &delegation.user_id;
        let now = self.site.clock.now();
        let start_ms = now.wall_ms;
        if schedule
            .next_after(timestamp(start_ms.saturating_sub(1)), timestamp(start_ms))
            .is_none()
        {
            return Err(AutomationError::NeverFires(format!(
                "{} is in the past",
                schedule.expression_text()
            )));
        }
        let id = id
            .unwrap_or_else(|| jarvis_store::ids::newest_first(&now))
            .hyphenated()
            .to_string();
        let key = key(user, &id)?;
        if let Some(existing) = self.site.store.read::<Record>(&key).await? {
            return Automation::from_record(user, &id, &existing.state)
                .ok_or(AutomationError::NotFound);
        }
        if self.count(user).await? >= self.max_per_user {
            return Err(AutomationError::TooMany(self.max_per_user));
        }
        let automation = Automation {
            id: id.clone(),
            user: user.clone(),
            name: new.name,
            schedule,
            action: new.action,
            enabled: new.enabled,
            start_ms,
            generation: generation(),
            home: self.home(),
            delegation: delegation.clone(),
            created_at_ms: start_ms,
            updated_at_ms: start_ms,
        };
        let fields = automation.stored_fields();
        let replica = self.site.replica;
        let doc = self
            .site
            .store
            .update(&key, |record: &mut Record| {
                // Made by an earlier attempt of the same work: left as it is.
                if record.latest_stamp().is_some() {
                    return Record::new();
                }
                record.create(replica, now, fields.iter().cloned())
            })
            .await?;
        let automation =
            Automation::from_record(user, &id, &doc.state).ok_or(AutomationError::NotFound)?;
        // From just before its start: a rate's first run is at its start, as on AWS.
        self.index(&automation, start_ms.saturating_sub(1)).await?;
        Ok(automation)
    }

    /// This deployment's id: the home of what it makes or changes.
    fn home(&self) -> String {
        self.site.replica.to_string()
    }

    /// How many live automations `user` keeps (up to one more than allowed).
    async fn count(&self, user: &str) -> Result<usize, StoreError> {
        let page = self
            .site
            .store
            .list_documents::<Record>(
                &partition(user),
                Some(SORT_PREFIX),
                None,
                self.max_per_user + 1,
            )
            .await?;
        Ok(page.items.iter().filter(|d| d.state.is_live()).count())
    }

    /// Puts the automation's next time after `now_ms` in the index, when it fires again
    /// here.
    async fn index(&self, automation: &Automation, now_ms: u64) -> Result<(), StoreError> {
        if automation.home != self.home() {
            return Ok(());
        }
        let next = automation.next_after(now_ms).map(timestamp);
        if let Some(entry) = due::next_entry(
            &automation.user,
            &automation.id,
            &automation.generation,
            next,
        ) {
            due::put(&self.site, &entry).await?;
        }
        Ok(())
    }

    /// `user`'s automation `id`.
    pub async fn get(&self, user: &str, id: &str) -> Result<Automation, AutomationError> {
        let doc = self.site.store.read::<Record>(&key(user, id)?).await?;
        doc.and_then(|doc| Automation::from_record(user, id, &doc.state))
            .ok_or(AutomationError::NotFound)
    }

    /// A page of `user`'s automations, newest first.
    pub async fn list(
        &self,
        user: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Automation>, AutomationError> {
        Ok(self
            .site
            .store
            .list_by_id(
                &partition(user),
                SORT_PREFIX,
                cursor,
                limit,
                |id, state: &Record| Automation::from_record(user, id, state),
            )
            .await?)
    }

    /// Changes `user`'s automation `id`. The automation then acts with `delegation` (the
    /// permissions of whoever changed it last), fires here, and — its schedule or time zone
    /// changed — counts its schedule from now.
    pub async fn update(
        &self,
        delegation: &Delegation,
        id: &str,
        change: Change,
    ) -> Result<Automation, AutomationError> {
        let user = &delegation.user_id;
        let current = self.get(user, id).await?;
        if let Some(name) = &change.name {
            check_name(name)?;
        }
        if let Some(action) = &change.action {
            action.check()?;
        }
        let expression = change
            .schedule
            .clone()
            .unwrap_or_else(|| current.schedule.expression_text().to_owned());
        let time_zone = change
            .time_zone
            .clone()
            .unwrap_or_else(|| current.schedule.time_zone().to_owned());
        let schedule = parse_schedule(&expression, &time_zone)?;
        let rescheduled = schedule != current.schedule;
        let now = self.site.clock.now();
        let start_ms = if rescheduled {
            now.wall_ms
        } else {
            current.start_ms
        };
        let enabled = change.enabled.unwrap_or(current.enabled);
        if enabled
            && schedule
                .next_after(timestamp(now.wall_ms), timestamp(start_ms))
                .is_none()
            && (rescheduled || enabled != current.enabled)
        {
            return Err(AutomationError::NeverFires(format!(
                "{} is in the past",
                schedule.expression_text()
            )));
        }
        // A new schedule, a switch on or off, or a new home makes the due entries made so
        // far stale; a new name or action keeps them (they read the automation when due).
        let regenerate = rescheduled || enabled != current.enabled || current.home != self.home();
        let mut fields = vec![
            (field::ENABLED, enabled.to_string()),
            (
                field::DELEGATION,
                serde_json::to_string(delegation).unwrap_or_default(),
            ),
        ];
        if regenerate {
            fields.push((field::GENERATION, generation()));
            fields.push((field::HOME, self.home()));
            fields.push((field::START, start_ms.to_string()));
        }
        if let Some(name) = change.name {
            fields.push((field::NAME, name));
        }
        if rescheduled {
            fields.push((field::SCHEDULE, expression.trim().to_owned()));
            fields.push((field::TIME_ZONE, time_zone));
        }
        if let Some(action) = change.action {
            fields.push((field::ACTION, action.encode()));
        }
        let clock = &self.site.clock;
        let doc = self
            .site
            .store
            .update(&key(user, id)?, |record: &mut Record| {
                if !record.is_live() {
                    return Record::new();
                }
                let stamp = clock.stamp_after(record.latest_stamp());
                let mut delta = Record::new();
                for (name, value) in &fields {
                    jarvis_crdt::Crdt::join(
                        &mut delta,
                        record.set((*name).to_owned(), stamp, value.clone()),
                    );
                }
                delta
            })
            .await?;
        let automation =
            Automation::from_record(user, id, &doc.state).ok_or(AutomationError::NotFound)?;
        if regenerate {
            self.index(&automation, now.wall_ms.saturating_sub(1))
                .await?;
        }
        Ok(automation)
    }

    /// Removes `user`'s automation `id` (its runs stay, for the record; its due entry is
    /// dropped when its time comes).
    pub async fn delete(&self, user: &str, id: &str) -> Result<(), AutomationError> {
        self.get(user, id).await?;
        let clock = &self.site.clock;
        self.site
            .store
            .update(&key(user, id)?, |record: &mut Record| {
                if record.is_live() {
                    record.delete(clock.stamp_after(record.latest_stamp()))
                } else {
                    Record::new()
                }
            })
            .await?;
        Ok(())
    }

    /// Re-reads the automation behind a due entry: `None` when it is gone, disabled, changed
    /// since the entry was made, or fired by another deployment.
    pub(crate) async fn behind(&self, entry: &Entry) -> Result<Option<Automation>, StoreError> {
        let doc = self
            .site
            .store
            .read::<Record>(&key(&entry.user, &entry.automation)?)
            .await?;
        Ok(doc
            .and_then(|doc| Automation::from_record(&entry.user, &entry.automation, &doc.state))
            .filter(|a| a.enabled && a.generation == entry.generation && a.home == self.home()))
    }
}
