//! The knowledge base: what a file is ([`detect`]), the text and structure a processor
//! finds in it ([`Extracted`]: a title, sections under their headings, pages), the chunks it
//! is cut into ([`chunk`]), the documents and their ingestion ([`documents`],
//! [`service`]), the index of chunks by vector and keyword ([`index`]), and hybrid search
//! with answers that cite their sources ([`service::Knowledge`]).
//!
//! Processors are plugins behind one trait, [`Processor`]. The [`Registry`] follows the
//! lifecycle of the system Jarvis replaces: discovery (the built-in processors, plus any a
//! host adds), registration, validation at startup (every processor names the media types it
//! accepts, no two claim one type), execution ([`Registry::process`]). A file no processor
//! reads ends as [`Processed::Failed`] with the reason, never silently dropped.
//!
//! Owns file formats, chunking, the knowledge base's documents and its index; changes when
//! a format, the chunking rules, the index or retrieval do. The processors and chunking do
//! no I/O; the documents live in the store, files in the blob store, chunks in the index.

#![deny(missing_docs)]

#[cfg(feature = "aws")]
pub mod aws;
pub mod chunk;
pub mod code;
pub mod detect;
pub mod documents;
pub mod index;
pub mod keywords;
pub mod processors;
pub mod service;
pub mod settings;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

pub use chunk::{Chunk, ChunkRules, chunk};
pub use detect::detect;

/// What kind of text a section holds; chunking keeps rows and records whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SectionKind {
    /// Paragraphs of prose.
    Prose,
    /// One row of a table (CSV), as `column: value` lines.
    Row,
    /// One record of a JSON document.
    Record,
    /// Source code.
    Code,
}

/// One stretch of a document under its headings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    /// The headings it sits under, outermost first (empty before the first heading).
    pub headings: Vec<String>,
    /// The page it is on, for paged formats (from 1).
    pub page: Option<u32>,
    /// Its text: paragraphs separated by blank lines.
    pub text: String,
    /// What the text is.
    pub kind: SectionKind,
}

/// What a processor found in a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Extracted {
    /// The document's own title, when it names one.
    pub title: Option<String>,
    /// Its sections, in reading order.
    pub sections: Vec<Section>,
}

/// Why a processor could not read a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProcessError(pub String);

/// A file processor: which media types it reads, and how.
pub trait Processor: Send + Sync {
    /// Its name, unique in a registry (e.g. `markdown`).
    fn name(&self) -> &'static str;

    /// The media types it reads, as [`detect`] names them.
    fn accepts(&self) -> &'static [&'static str];

    /// The text and structure of `bytes`, a file of one of its types.
    fn extract(&self, bytes: &[u8]) -> Result<Extracted, ProcessError>;
}

/// Why a registry is not fit to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Two processors share a name.
    #[error("two processors are named {0:?}")]
    DuplicateName(&'static str),
    /// A processor accepts no media type.
    #[error("processor {0:?} accepts no media type")]
    AcceptsNothing(&'static str),
    /// Two processors claim one media type.
    #[error("{media_type} is claimed by both {first:?} and {second:?}")]
    Contested {
        /// The media type.
        media_type: &'static str,
        /// The processor registered first.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
}

/// What processing one file came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// Read by `processor` as `media_type`.
    Ready {
        /// The detected media type.
        media_type: &'static str,
        /// The processor that read it.
        processor: &'static str,
        /// What it found.
        extracted: Extracted,
    },
    /// Not read, and why (no processor for its type, or the processor failed).
    Failed {
        /// The detected media type.
        media_type: &'static str,
        /// Why, for the user.
        reason: String,
    },
}

/// The processors of a host, validated.
pub struct Registry {
    processors: Vec<Arc<dyn Processor>>,
    by_type: BTreeMap<&'static str, usize>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.by_type
                    .iter()
                    .map(|(t, i)| (t, self.processors[*i].name())),
            )
            .finish()
    }
}

impl Registry {
    /// The built-in processors, discovered and validated.
    pub fn builtin() -> Result<Self, RegistryError> {
        Self::new(processors::builtin())
    }

    /// A registry of `processors`, validated: unique names, each accepting at least one media
    /// type, no media type claimed twice.
    pub fn new(processors: Vec<Arc<dyn Processor>>) -> Result<Self, RegistryError> {
        let mut by_type = BTreeMap::new();
        let mut names = std::collections::BTreeSet::new();
        for (index, processor) in processors.iter().enumerate() {
            let name = processor.name();
            if !names.insert(name) {
                return Err(RegistryError::DuplicateName(name));
            }
            if processor.accepts().is_empty() {
                return Err(RegistryError::AcceptsNothing(name));
            }
            for media_type in processor.accepts() {
                if let Some(first) = by_type.insert(*media_type, index) {
                    return Err(RegistryError::Contested {
                        media_type,
                        first: processors[first].name(),
                        second: name,
                    });
                }
            }
        }
        Ok(Self {
            processors,
            by_type,
        })
    }

    /// The processor of `media_type`, if one is registered.
    pub fn for_type(&self, media_type: &str) -> Option<&dyn Processor> {
        self.by_type
            .get(media_type)
            .map(|index| self.processors[*index].as_ref())
    }

    /// The media types the registry reads.
    pub fn media_types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_type.keys().copied()
    }

    /// Detects what `bytes` are and has the processor of that type read them.
    pub fn process(&self, bytes: &[u8]) -> Processed {
        let media_type = detect(bytes);
        let Some(processor) = self.for_type(media_type) else {
            return Processed::Failed {
                media_type,
                reason: format!("no processor reads {media_type}"),
            };
        };
        match processor.extract(bytes) {
            Ok(extracted) if extracted.sections.iter().all(|s| s.text.trim().is_empty()) => {
                Processed::Failed {
                    media_type,
                    reason: "the file holds no text".to_owned(),
                }
            }
            Ok(extracted) => Processed::Ready {
                media_type,
                processor: processor.name(),
                extracted,
            },
            Err(err) => Processed::Failed {
                media_type,
                reason: err.0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(&'static str, &'static [&'static str]);

    impl Processor for Fake {
        fn name(&self) -> &'static str {
            self.0
        }

        fn accepts(&self) -> &'static [&'static str] {
            self.1
        }

        fn extract(&self, _bytes: &[u8]) -> Result<Extracted, ProcessError> {
            Err(ProcessError("fake".into()))
        }
    }

    #[test]
    fn the_builtin_processors_validate_and_cover_the_text_formats() {
        let registry = Registry::builtin().expect("valid");
        let types: Vec<&str> = registry.media_types().collect();
        for wanted in [
            "text/plain",
            "text/markdown",
            "text/html",
            "text/csv",
            "application/json",
        ] {
            assert!(types.contains(&wanted), "{wanted} in {types:?}");
        }
    }

    #[test]
    fn validation_refuses_shared_names_empty_claims_and_contested_types() {
        let fake = |name, types| Arc::new(Fake(name, types)) as Arc<dyn Processor>;
        assert_eq!(
            Registry::new(vec![fake("a", &["x/a"]), fake("a", &["x/b"])]).map(|_| ()),
            Err(RegistryError::DuplicateName("a"))
        );
        assert_eq!(
            Registry::new(vec![fake("a", &[])]).map(|_| ()),
            Err(RegistryError::AcceptsNothing("a"))
        );
        assert_eq!(
            Registry::new(vec![fake("a", &["x/a"]), fake("b", &["x/a"])]).map(|_| ()),
            Err(RegistryError::Contested {
                media_type: "x/a",
                first: "a",
                second: "b"
            })
        );
    }

    #[test]
    fn a_file_no_processor_reads_fails_with_the_reason_and_is_not_dropped() {
        let registry = Registry::builtin().expect("valid");
        let png = [
            0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 0, 0, 13,
        ];
        match registry.process(&png) {
            Processed::Failed { media_type, reason } => {
                assert_eq!(media_type, "image/png");
                assert!(reason.contains("image/png"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        match registry.process(b"   \n\n  ") {
            Processed::Failed { reason, .. } => assert!(reason.contains("no text"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
