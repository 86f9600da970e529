//! The topics a connection may subscribe to. Every topic is the connection's own user's:
//! `archive` is that user's archive, `crdt:<name>` their CRDT objects of that name.

use jarvis_http::{ApiError, validate};
use jarvis_identity::Scope;
use uuid::Uuid;

/// One of a user's topics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Archive entries created, changed or deleted.
    Archive,
    /// The CRDT objects (counter, set, register, OR-set) of one name changed.
    Crdt(String),
    /// Progress of agent runs.
    Agents,
    /// Orders, fills and trading state.
    Trading,
    /// Notifications automations send.
    Notifications,
    /// Replies started in one conversation.
    Chat(Uuid),
}

/// The topic names accepted, for error messages.
pub const TOPIC_FORMS: &str =
    "archive, crdt:<name>, agents, trading, notifications, chat:<conversation id>";

impl Topic {
    /// Parses a topic name; a 400 naming `field` for anything else.
    pub fn parse(field: &'static str, name: &str) -> Result<Self, ApiError> {
        let unknown = || {
            ApiError::invalid_field(
                field,
                format!("unknown topic {name:?}; topics are {TOPIC_FORMS}"),
            )
        };
        match name.split_once(':') {
            None => match name {
                "archive" => Ok(Self::Archive),
                "agents" => Ok(Self::Agents),
                "trading" => Ok(Self::Trading),
                "notifications" => Ok(Self::Notifications),
                _ => Err(unknown()),
            },
            Some(("crdt", object)) => {
                validate::name(field, object)?;
                Ok(Self::Crdt(object.to_owned()))
            }
            Some(("chat", conversation)) => Ok(Self::Chat(validate::uuid(field, conversation)?)),
            Some(_) => Err(unknown()),
        }
    }

    /// The topic's name, as subscribed to and as messages carry it.
    pub fn name(&self) -> String {
        match self {
            Self::Archive => "archive".to_owned(),
            Self::Crdt(object) => format!("crdt:{object}"),
            Self::Agents => "agents".to_owned(),
            Self::Trading => "trading".to_owned(),
            Self::Notifications => "notifications".to_owned(),
            Self::Chat(conversation) => format!("chat:{}", conversation.hyphenated()),
        }
    }

    /// The scope a connection needs to listen: reading what the topic tells about.
    pub fn scope(&self) -> Scope {
        match self {
            Self::Archive => Scope::ArchiveRead,
            Self::Crdt(_) => Scope::CrdtRead,
            Self::Agents => Scope::AgentsRead,
            Self::Trading => Scope::TradingRead,
            Self::Notifications => Scope::AutomationsRead,
            Self::Chat(_) => Scope::ChatRead,
        }
    }
}

/// `archive.changed`: one of the user's archive entries was `created`, `updated` or
/// `deleted`.
pub fn archive_changed(change: &str, id: &str) -> (Topic, serde_json::Value) {
    let message = serde_json::json!({
        "type": "archive.changed",
        "topic": "archive",
        "change": change,
        "id": id,
    });
    (Topic::Archive, message)
}

/// `crdt.changed`: the user's CRDT object `name` of `kind` (`counter`, `set`, `register`,
/// `orset`) changed.
pub fn crdt_changed(kind: &str, name: &str) -> (Topic, serde_json::Value) {
    let topic = Topic::Crdt(name.to_owned());
    let message = serde_json::json!({
        "type": "crdt.changed",
        "topic": topic.name(),
        "kind": kind,
        "name": name,
    });
    (topic, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_form_parses_and_names_itself_back() {
        let conversation = "0190f0aa-0000-7000-8000-000000000001";
        for name in [
            "archive".to_owned(),
            "agents".to_owned(),
            "trading".to_owned(),
            "notifications".to_owned(),
            "crdt:groceries.list".to_owned(),
            format!("chat:{conversation}"),
        ] {
            let topic = Topic::parse("topics", &name).expect(&name);
            assert_eq!(topic.name(), name);
        }
    }

    #[test]
    fn unknown_and_malformed_topics_are_a_400_naming_the_field() {
        for name in [
            "",
            "archives",
            "crdt:",
            "crdt:.hidden",
            "chat:nope",
            "fills:x",
            "Archive",
        ] {
            let err = Topic::parse("topics", name).expect_err(name);
            assert!(
                matches!(&err, ApiError::BadRequest { field: Some(field), .. } if field == "topics"),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn listening_takes_the_scope_that_reads_what_the_topic_tells() {
        assert_eq!(Topic::Archive.scope(), Scope::ArchiveRead);
        assert_eq!(Topic::Crdt("x".into()).scope(), Scope::CrdtRead);
        assert_eq!(Topic::Chat(Uuid::nil()).scope(), Scope::ChatRead);
        assert_eq!(Topic::Agents.scope(), Scope::AgentsRead);
        assert_eq!(Topic::Trading.scope(), Scope::TradingRead);
        assert_eq!(Topic::Notifications.scope(), Scope::AutomationsRead);
    }
}
