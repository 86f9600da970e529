//! What an automation does when it fires.

use jarvis_identity::Scope;
use serde::{Deserialize, Serialize};

use crate::AutomationError;

/// Longest agent goal, in characters.
pub const MAX_GOAL_CHARS: usize = 8_000;
/// Longest notification, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2_000;
/// Longest archive note title, in characters.
pub const MAX_TITLE_CHARS: usize = 512;
/// Longest archive note content, in characters.
pub const MAX_CONTENT_CHARS: usize = 64 * 1024;

/// An automation's action, as stored (JSON, tagged by `type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Start an agent run with this goal.
    Agent {
        /// What the agent is asked to do.
        goal: String,
        /// The tools it may use (all the delegation allows when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tools: Option<Vec<String>>,
        /// Its step limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_steps: Option<u32>,
        /// Its token budget.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_budget: Option<u64>,
    },
    /// Send the user a notification (to their WebSocket connections on `notifications`).
    Notify {
        /// What it says.
        message: String,
    },
    /// Add a note to the user's archive.
    ArchiveNote {
        /// Its title.
        title: String,
        /// Its content.
        content: String,
        /// Its tags.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tags: Vec<String>,
    },
}

impl Action {
    /// The action's kind: `agent`, `notify` or `archive_note`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Agent { .. } => "agent",
            Self::Notify { .. } => "notify",
            Self::ArchiveNote { .. } => "archive_note",
        }
    }

    /// The scope the action acts with, beyond keeping automations: what the delegation
    /// must carry when the automation is made and whenever it fires.
    pub fn scope(&self) -> Option<Scope> {
        match self {
            Self::Agent { .. } => Some(Scope::AgentsWrite),
            Self::ArchiveNote { .. } => Some(Scope::ArchiveWrite),
            Self::Notify { .. } => None,
        }
    }

    /// Checks the lengths every action keeps to (the functions that act check the rest).
    pub fn check(&self) -> Result<(), AutomationError> {
        let within = |field: &'static str, text: &str, max: usize| {
            let chars = text.chars().count();
            if chars == 0 || chars > max || text.contains('\0') {
                Err(AutomationError::Invalid {
                    field,
                    message: format!("must be 1 to {max} characters, without NUL"),
                })
            } else {
                Ok(())
            }
        };
        match self {
            Self::Agent { goal, .. } => within("action.goal", goal, MAX_GOAL_CHARS),
            Self::Notify { message } => within("action.message", message, MAX_MESSAGE_CHARS),
            Self::ArchiveNote { title, content, .. } => {
                within("action.title", title, MAX_TITLE_CHARS)?;
                within("action.content", content, MAX_CONTENT_CHARS)
            }
        }
    }

    /// The stored form.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The stored form read back; `None` for a form this build does not know.
    pub fn decode(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}
