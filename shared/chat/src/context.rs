//! Fitting a conversation into a model's context window.
//!
//! Tokens are counted with the model's own tokenizer where Jarvis has it in-process (a
//! [`Counter`] from the provider: OpenAI's models through tiktoken's encodings, the local
//! SmolLM2 through its vocabulary), plus [`MESSAGE_OVERHEAD`] per message for the role
//! markers. Elsewhere (Anthropic's and Google's models, whose tokenizers are not published,
//! and unknown models of OpenAI-compatible servers) they are estimated: one token per three
//! bytes of UTF-8, rounded up. Those tokenizers put about four characters of English in a
//! token and one token on a three-byte character of Chinese or Japanese, so a third of the
//! bytes is at or above the real count for both: a prompt the estimate fits, fits.
//!
//! When the history no longer fits the window less the reply's budget, the oldest turns
//! are folded into the conversation's running summary rather than dropped: [`plan`] says
//! which, the caller has them summarized, and the summary stands in for them from then on.

use crate::conversation::{ChatMessage, Speaker};

/// Tokens a message's framing (role markers, separators) may take beyond its text.
pub const MESSAGE_OVERHEAD: u64 = 4;

/// The estimated tokens of `text` (see the module documentation).
pub fn estimate(text: &str) -> u64 {
    u64::try_from(text.len().div_ceil(3)).unwrap_or(u64::MAX)
}

/// The estimated tokens of a message, framing included.
pub fn message_tokens(message: &ChatMessage) -> u64 {
    Counter::ESTIMATE.message(message)
}

/// An exact count of a text's tokens, `None` where there is none.
pub type ExactCount<'a> = dyn Fn(&str) -> Option<u64> + Sync + 'a;

/// How one model's tokens are counted: exactly where its provider can, else estimated.
#[derive(Clone, Copy)]
pub struct Counter<'a> {
    exact: Option<&'a ExactCount<'a>>,
}

impl<'a> Counter<'a> {
    /// Estimates only.
    pub const ESTIMATE: Counter<'static> = Counter { exact: None };

    /// Counts with `exact`, estimating where it answers `None`.
    pub fn exact(exact: &'a ExactCount<'a>) -> Self {
        Self { exact: Some(exact) }
    }

    /// The tokens of `text`.
    pub fn tokens(&self, text: &str) -> u64 {
        self.exact
            .and_then(|count| count(text))
            .unwrap_or_else(|| estimate(text))
    }

    /// The tokens of a message, framing and images included.
    pub fn message(&self, message: &ChatMessage) -> u64 {
        let images = message.meta.attachments.len() as u64 * crate::attachment::IMAGE_TOKENS;
        self.tokens(&message.content) + MESSAGE_OVERHEAD + images
    }
}

/// The context window of `target` (`provider:model`), in tokens, by model family.
pub fn window(target: &str) -> u64 {
    let (provider, model) = target.split_once(':').unwrap_or(("", target));
    let model = model.to_ascii_lowercase();
    match provider {
        "anthropic" => 200_000,
        "gemini" => 1_000_000,
        "openai" if model.starts_with("gpt-4.1") => 1_000_000,
        "openai" if model.starts_with("gpt-3.5") => 16_000,
        "openai" => 128_000,
        "bedrock" if model.contains("anthropic.") => 200_000,
        "bedrock" if model.contains("amazon.nova") => 300_000,
        "bedrock" => 32_000,
        // SmolLM2 was trained on 8k-token sequences; on a CPU, 2k keeps a reply quick.
        "local" => 2_048,
        // An OpenAI-compatible server of unknown models, or the scripted provider.
        _ => 8_192,
    }
}

/// What to send and what to fold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// How many of the oldest messages to fold into the summary first (0: none).
    pub fold: usize,
    /// The estimated tokens of the messages kept, the new one included.
    pub kept_tokens: u64,
}

/// Which of `history` (oldest first, the new user message last) fits in `budget` tokens.
///
/// When everything fits, nothing is folded. Otherwise the oldest messages are folded until
/// what is kept takes at most half the budget, so the next turns fit without folding again
/// at once, and a kept history starts with a user message. `None` when the newest message
/// alone does not fit.
pub fn plan(history: &[ChatMessage], budget: u64, counter: Counter<'_>) -> Option<Plan> {
    let tokens: Vec<u64> = history.iter().map(|m| counter.message(m)).collect();
    let total: u64 = tokens.iter().sum();
    if total <= budget {
        return Some(Plan {
            fold: 0,
            kept_tokens: total,
        });
    }
    let newest = *tokens.last()?;
    if newest > budget {
        return None;
    }
    let target = (budget / 2).max(newest);
    let mut kept = total;
    let mut fold = 0;
    while fold + 1 < history.len() && (kept > target || history[fold].speaker != Speaker::User) {
        kept -= tokens[fold];
        fold += 1;
    }
    Some(Plan {
        fold,
        kept_tokens: kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::MessageMeta;

    fn message(speaker: Speaker, bytes: usize) -> ChatMessage {
        ChatMessage {
            id: crate::ids::message_id(),
            speaker,
            content: "x".repeat(bytes),
            created_ms: 0,
            meta: MessageMeta::default(),
        }
    }

    fn turns(n: usize, bytes: usize) -> Vec<ChatMessage> {
        (0..n)
            .map(|i| {
                let speaker = if i % 2 == 0 {
                    Speaker::User
                } else {
                    Speaker::Assistant
                };
                message(speaker, bytes)
            })
            .collect()
    }

    #[test]
    fn the_estimate_is_a_third_of_the_bytes_rounded_up() {
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate("abcd"), 2);
        assert_eq!(estimate("日本"), 2, "six bytes");
    }

    #[test]
    fn a_history_that_fits_is_sent_whole() {
        let history = turns(5, 30);
        let plan = plan(&history, 1_000, Counter::ESTIMATE).expect("fits");
        assert_eq!(plan.fold, 0);
        assert_eq!(plan.kept_tokens, 5 * (10 + MESSAGE_OVERHEAD));
    }

    #[test]
    fn an_overflowing_history_folds_its_oldest_turns_down_to_half_the_budget() {
        let history = turns(21, 300);
        let budget = 1_000;
        let plan = plan(&history, budget, Counter::ESTIMATE).expect("fits after folding");
        assert!(plan.fold > 0);
        assert!(plan.kept_tokens <= budget / 2, "{plan:?}");
        assert_eq!(
            history[plan.fold].speaker,
            Speaker::User,
            "kept turns start with the user"
        );
        let kept: u64 = history[plan.fold..].iter().map(message_tokens).sum();
        assert_eq!(kept, plan.kept_tokens);
    }

    #[test]
    fn a_message_larger_than_the_window_cannot_be_planned() {
        let history = vec![message(Speaker::User, 4_000)];
        assert_eq!(plan(&history, 1_000, Counter::ESTIMATE), None);
    }

    #[test]
    fn an_exact_count_is_used_where_the_model_has_one() {
        let words = |text: &str| Some(text.split_whitespace().count() as u64);
        let exact = Counter::exact(&words);
        assert_eq!(exact.tokens("three short words"), 3);
        let none = |_: &str| None;
        assert_eq!(Counter::exact(&none).tokens("abcdef"), 2, "estimated");
    }

    #[test]
    fn windows_follow_the_model_family() {
        assert_eq!(window("anthropic:claude-sonnet-4-5"), 200_000);
        assert_eq!(window("openai:gpt-4o"), 128_000);
        assert_eq!(window("local:smollm2-135m-instruct"), 2_048);
        assert_eq!(window("scripted:echo"), 8_192);
    }
}
