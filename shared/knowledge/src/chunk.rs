//! Cutting a document into chunks that follow its structure: a chunk never spans two
//! sections (so never two headings or pages), packs whole paragraphs up to the token budget,
//! splits a longer paragraph at sentence ends and then at words, and starts with the last
//! words of the chunk before it in the same section (the overlap). Rows and records are
//! kept whole unless one alone is over the budget.

use serde::Serialize;

use crate::{Extracted, SectionKind};

/// How to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRules {
    /// Tokens a chunk holds at most (its overlap included).
    pub budget: usize,
    /// Tokens of the previous chunk of the same section a chunk starts with.
    pub overlap: usize,
}

impl Default for ChunkRules {
    fn default() -> Self {
        Self {
            budget: 256,
            overlap: 32,
        }
    }
}

/// One chunk of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chunk {
    /// Its position in the document, from 0.
    pub index: usize,
    /// The headings of its section, outermost first.
    pub headings: Vec<String>,
    /// The page of its section.
    pub page: Option<u32>,
    /// Its text.
    pub text: String,
    /// What the text is.
    pub kind: SectionKind,
    /// Its tokens, as counted.
    pub tokens: usize,
}

/// The chunks of `document` under `rules`, tokens counted by `count`.
pub fn chunk(document: &Extracted, rules: ChunkRules, count: &dyn Fn(&str) -> usize) -> Vec<Chunk> {
    let budget = rules.budget.max(8);
    let overlap = rules.overlap.min(budget / 2);
    let mut chunks = Vec::new();
    for section in &document.sections {
        let pieces = pieces(&section.text, section.kind, budget, count);
        let mut current: Vec<String> = Vec::new();
        let mut tokens = 0;
        let mut emit = |current: &mut Vec<String>, tokens: &mut usize, carry: bool| {
            if current.is_empty() {
                return;
            }
            let separator = if section.kind == SectionKind::Prose {
                "\n\n"
            } else {
                "\n"
            };
            let text = current.join(separator);
            chunks.push(Chunk {
                index: 0,
                headings: section.headings.clone(),
                page: section.page,
                tokens: count(&text),
                text,
                kind: section.kind,
            });
            let tail = if carry && overlap > 0 && section.kind == SectionKind::Prose {
                tail_words(current.last().map_or("", String::as_str), overlap, count)
            } else {
                String::new()
            };
            current.clear();
            *tokens = 0;
            if !tail.is_empty() {
                *tokens = count(&tail);
                current.push(tail);
            }
        };
        for piece in pieces {
            let size = count(&piece);
            if tokens + size > budget && !current.is_empty() {
                emit(&mut current, &mut tokens, true);
                // The overlap never pushes a piece over the budget: drop it if it would.
                if tokens + size > budget {
                    current.clear();
                    tokens = 0;
                }
            }
            tokens += size;
            current.push(piece);
        }
        emit(&mut current, &mut tokens, false);
    }
    for (index, chunk) in chunks.iter_mut().enumerate() {
        chunk.index = index;
    }
    chunks
}

/// A section's text as pieces of at most `budget` tokens: paragraphs (or lines, for rows and
/// records), longer ones split at sentence ends, then at words.
fn pieces(
    text: &str,
    kind: SectionKind,
    budget: usize,
    count: &dyn Fn(&str) -> usize,
) -> Vec<String> {
    let units: Vec<&str> = match kind {
        SectionKind::Prose => text.split("\n\n").collect(),
        SectionKind::Code => text.split("\n\n").collect(),
        SectionKind::Row | SectionKind::Record => {
            if count(text) <= budget {
                vec![text]
            } else {
                text.lines().collect()
            }
        }
    };
    let mut out = Vec::new();
    for unit in units.into_iter().map(str::trim).filter(|u| !u.is_empty()) {
        if count(unit) <= budget {
            out.push(unit.to_owned());
            continue;
        }
        let mut sentence = String::new();
        for part in sentences(unit) {
            if count(part) > budget {
                if !sentence.is_empty() {
                    out.push(std::mem::take(&mut sentence));
                }
                out.extend(by_words(part, budget, count));
                continue;
            }
            let joined = if sentence.is_empty() {
                part.to_owned()
            } else {
                format!("{sentence} {part}")
            };
            if count(&joined) > budget {
                out.push(std::mem::replace(&mut sentence, part.to_owned()));
            } else {
                sentence = joined;
            }
        }
        if !sentence.is_empty() {
            out.push(sentence);
        }
    }
    out
}

/// Sentences of a paragraph: split after `.`, `!` or `?` followed by whitespace.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if matches!(b, b'.' | b'!' | b'?') && bytes.get(i + 1).is_some_and(u8::is_ascii_whitespace)
        {
            out.push(text[start..=i].trim());
            start = i + 1;
        }
    }
    if start < text.len() {
        out.push(text[start..].trim());
    }
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

fn by_words(text: &str, budget: usize, count: &dyn Fn(&str) -> usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let joined = if current.is_empty() {
            word.to_owned()
        } else {
            format!("{current} {word}")
        };
        if count(&joined) > budget && !current.is_empty() {
            out.push(std::mem::replace(&mut current, word.to_owned()));
        } else {
            current = joined;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The last words of `text` that fit in `tokens`.
fn tail_words(text: &str, tokens: usize, count: &dyn Fn(&str) -> usize) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut start = words.len();
    while start > 0 && count(&words[start - 1..].join(" ")) <= tokens {
        start -= 1;
    }
    words[start..].join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Section;

    /// One token per word: easy to reason about.
    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    fn section(headings: &[&str], page: Option<u32>, text: &str, kind: SectionKind) -> Section {
        Section {
            headings: headings.iter().map(|h| (*h).to_owned()).collect(),
            page,
            text: text.to_owned(),
            kind,
        }
    }

    #[test]
    fn chunks_never_span_two_sections_and_carry_their_headings_and_pages() {
        let document = Extracted {
            title: None,
            sections: vec![
                section(&["A"], Some(1), "one two three", SectionKind::Prose),
                section(&["A", "B"], Some(2), "four five", SectionKind::Prose),
            ],
        };
        let chunks = chunk(
            &document,
            ChunkRules {
                budget: 100,
                overlap: 10,
            },
            &words,
        );
        assert_eq!(chunks.len(), 2);
        assert_eq!(
            (chunks[0].text.as_str(), chunks[0].page),
            ("one two three", Some(1))
        );
        assert_eq!(
            (chunks[1].headings.clone(), chunks[1].page),
            (vec!["A".to_owned(), "B".to_owned()], Some(2))
        );
        assert_eq!(chunks[1].index, 1);
    }

    #[test]
    fn paragraphs_are_packed_whole_up_to_the_budget_with_the_overlap_carried_over() {
        let text = (0..6)
            .map(|p| {
                (0..10)
                    .map(|w| format!("p{p}w{w}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n\n");
        let document = Extracted {
            title: None,
            sections: vec![section(&[], None, &text, SectionKind::Prose)],
        };
        let chunks = chunk(
            &document,
            ChunkRules {
                budget: 25,
                overlap: 3,
            },
            &words,
        );
        for chunk in &chunks {
            assert!(chunk.tokens <= 25, "{chunk:?}");
        }
        assert!(
            chunks[0].text.starts_with("p0w0") && chunks[0].text.ends_with("p1w9"),
            "{}",
            chunks[0].text
        );
        assert!(
            chunks[1].text.starts_with("p1w7 p1w8 p1w9\n\np2w0"),
            "{}",
            chunks[1].text
        );
        let covered: std::collections::BTreeSet<&str> = chunks
            .iter()
            .flat_map(|c| c.text.split_whitespace())
            .collect();
        assert_eq!(covered.len(), 60, "every word is in some chunk");
    }

    #[test]
    fn a_paragraph_over_the_budget_is_split_at_sentences_then_words() {
        let long = "Alpha beta gamma. Delta epsilon zeta eta. ".repeat(5)
            + &(0..40)
                .map(|i| format!("x{i}"))
                .collect::<Vec<_>>()
                .join(" ");
        let document = Extracted {
            title: None,
            sections: vec![section(&[], None, &long, SectionKind::Prose)],
        };
        let chunks = chunk(
            &document,
            ChunkRules {
                budget: 12,
                overlap: 0,
            },
            &words,
        );
        assert!(chunks.iter().all(|c| c.tokens <= 12), "{chunks:?}");
        assert!(
            chunks[0].text.ends_with('.'),
            "sentences stay whole: {}",
            chunks[0].text
        );
        let total: usize = chunks.iter().map(|c| c.tokens).sum();
        assert_eq!(
            total,
            words(&long),
            "nothing lost or doubled without overlap"
        );
    }

    #[test]
    fn rows_are_kept_whole_and_never_overlap() {
        let rows: Vec<Section> = (0..5)
            .map(|i| {
                section(
                    &[&format!("row {i}")],
                    None,
                    &format!("name: n{i}\ncity: c{i}"),
                    SectionKind::Row,
                )
            })
            .collect();
        let document = Extracted {
            title: None,
            sections: rows,
        };
        let chunks = chunk(&document, ChunkRules::default(), &words);
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks[3].text, "name: n3\ncity: c3");
    }
}
