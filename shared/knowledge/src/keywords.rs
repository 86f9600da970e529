//! Keyword search outside SQLite: the words of a chunk as BM25 counts them, and BM25
//! itself, for an index that keeps posting lists in a key-value store (DynamoDB on AWS).
//!
//! A word is what FTS5's `porter unicode61` tokenizer makes of a text: a run of letters and
//! digits, lowercased and stemmed (here by Snowball's English stemmer, the successor of the
//! Porter stemmer FTS5 uses, so a few words stem apart). The score is FTS5's `bm25()` with
//! its constants, over a chunk's text and section taken together as FTS5 takes a row's
//! columns together: the same corpus ranks the same way on both hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use rust_stemmers::{Algorithm, Stemmer};

use crate::index::query_words;

/// BM25's term-frequency saturation, FTS5's.
pub const K1: f64 = 1.2;
/// BM25's length normalisation, FTS5's.
pub const B: f64 = 0.75;
/// Longest word stemmed and kept whole, in bytes (FTS5's Porter stemmer stops at 64 too);
/// a longer one is kept unstemmed and cut there, which bounds the keys it becomes.
pub const MAX_WORD_BYTES: usize = 64;

static ENGLISH: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

/// The indexed form of one lowercased word.
fn term(word: &str) -> String {
    if word.len() <= MAX_WORD_BYTES {
        return ENGLISH.stem(word).into_owned();
    }
    let mut end = MAX_WORD_BYTES;
    while !word.is_char_boundary(end) {
        end -= 1;
    }
    word[..end].to_owned()
}

/// The terms of `text`, in order, repeats included.
pub fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| term(&w.to_lowercase()))
}

/// The distinct terms a keyword search for `query` looks for, in the query's order.
pub fn query_terms(query: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    query_words(query)
        .iter()
        .map(|w| term(w))
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

/// What BM25 needs of one chunk: its length in terms and how often each occurs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Terms in the chunk's text and section.
    pub length: u32,
    /// Each distinct term and its occurrences.
    pub frequencies: BTreeMap<String, u32>,
}

/// The counts of a chunk of `text` under `section`.
pub fn counts(text: &str, section: Option<&str>) -> Counts {
    let mut counts = Counts::default();
    for t in terms(text).chain(section.into_iter().flat_map(terms)) {
        counts.length = counts.length.saturating_add(1);
        *counts.frequencies.entry(t).or_insert(0) += 1;
    }
    counts
}

/// The size of the corpus a search ranks in: every chunk of the user's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Corpus {
    /// Chunks.
    pub chunks: u64,
    /// Terms in all of them.
    pub terms: u64,
}

/// One chunk holding a term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence<K> {
    /// The chunk.
    pub chunk: K,
    /// How often the term occurs in it.
    pub frequency: u32,
    /// The chunk's length in terms.
    pub length: u32,
    /// Whether the chunk may be a result (the search's filter holds for it). Every
    /// occurrence counts toward how rare the term is, as in FTS5, where a filter applies
    /// after the match.
    pub wanted: bool,
}

/// The `k` best chunks by BM25 and their scores (higher is better; FTS5's `bm25()` is the
/// negation), given for each term of the query every chunk of `corpus` that holds it.
/// Ties go to the smaller key.
pub fn rank<K: Ord + Clone>(
    corpus: Corpus,
    hits: &[Vec<Occurrence<K>>],
    k: usize,
) -> Vec<(K, f64)> {
    if corpus.chunks == 0 || k == 0 {
        return Vec::new();
    }
    let rows = corpus.chunks as f64;
    let average = (corpus.terms as f64 / rows).max(f64::MIN_POSITIVE);
    let mut scores: BTreeMap<K, f64> = BTreeMap::new();
    for occurrences in hits {
        let holding = occurrences.len() as f64;
        // FTS5 floors a term in more than half the rows at a tiny positive weight.
        let idf = ((rows - holding + 0.5) / (holding + 0.5)).ln();
        let idf = if idf <= 0.0 { 1e-6 } else { idf };
        for o in occurrences.iter().filter(|o| o.wanted) {
            let tf = f64::from(o.frequency);
            let norm = K1 * (1.0 - B + B * f64::from(o.length) / average);
            *scores.entry(o.chunk.clone()).or_insert(0.0) += idf * tf * (K1 + 1.0) / (tf + norm);
        }
    }
    let mut ranked: Vec<(K, f64)> = scores.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(k);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_are_lowercased_stemmed_runs_of_letters_and_digits() {
        let got: Vec<String> = terms("Indexing the INDEXED, re-index 3.11!").collect();
        assert_eq!(got, ["index", "the", "index", "re", "index", "3", "11"]);
        let long = "x".repeat(100);
        assert_eq!(terms(&long).next().map(|t| t.len()), Some(MAX_WORD_BYTES));
        let accented = "é".repeat(40);
        assert!(terms(&accented).all(|t| t.len() <= MAX_WORD_BYTES));
    }

    #[test]
    fn a_query_looks_for_its_telling_words_once_each() {
        assert_eq!(
            query_terms("How do I boil the kettles? Boiling kettle!"),
            ["boil", "kettl"]
        );
        assert_eq!(query_terms("what is it"), ["what", "is", "it"]);
        assert!(query_terms(" -- ").is_empty());
    }

    #[test]
    fn a_chunk_counts_its_section_with_its_text() {
        let c = counts("Boil water. Boil it.", Some("Kettle"));
        assert_eq!(c.length, 5);
        assert_eq!(c.frequencies.get("boil"), Some(&2));
        assert_eq!(c.frequencies.get("kettl"), Some(&1));
    }

    fn hit(chunk: u32, frequency: u32, length: u32) -> Occurrence<u32> {
        Occurrence {
            chunk,
            frequency,
            length,
            wanted: true,
        }
    }

    #[test]
    fn rarer_terms_and_denser_chunks_rank_first() {
        let corpus = Corpus {
            chunks: 10,
            terms: 100,
        };
        // "rare" in chunk 1 only, "common" in chunks 1–6.
        let rare = vec![hit(1, 1, 10)];
        let common: Vec<_> = (1..=6)
            .map(|c| hit(c, if c == 2 { 3 } else { 1 }, 10))
            .collect();
        let ranked = rank(corpus, &[rare, common.clone()], 3);
        assert_eq!(ranked.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);
        // A term in more than half the chunks still ranks, by frequency.
        let only_common = rank(corpus, &[common], 2);
        assert_eq!(only_common[0].0, 2);
        assert!(only_common[0].1 > 0.0);
    }

    #[test]
    fn an_unwanted_chunk_counts_toward_rarity_but_is_never_a_result() {
        let corpus = Corpus {
            chunks: 4,
            terms: 40,
        };
        let mut hidden = hit(1, 5, 10);
        hidden.wanted = false;
        let ranked = rank(corpus, &[vec![hidden, hit(2, 1, 10)]], 5);
        assert_eq!(ranked.len(), 1);
        assert_eq!(ranked[0].0, 2);
        let alone = rank(corpus, &[vec![hit(2, 1, 10)]], 5);
        assert!(
            ranked[0].1 < alone[0].1,
            "two holders make the term less rare"
        );
        assert!(rank(Corpus::default(), &[vec![hit(2, 1, 10)]], 5).is_empty());
    }
}
