//! Source code: which language a text is written in, from its shape (a shebang, the
//! lines that declare and import things), and the [`Code`] processor, which cuts a file at
//! its top-level definitions and keeps each one's signature as its section's heading, so a
//! chunk names the symbols it defines.

use crate::{Extracted, ProcessError, Processor, Section, SectionKind};

/// A language the code processor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Rust.
    Rust,
    /// Python.
    Python,
    /// JavaScript or TypeScript.
    JavaScript,
    /// Go.
    Go,
    /// C or C++.
    C,
    /// A shell script.
    Shell,
}

impl Language {
    /// Every language, in the order detection prefers on a tie.
    pub const ALL: [Language; 6] = [
        Self::Rust,
        Self::Go,
        Self::Python,
        Self::JavaScript,
        Self::C,
        Self::Shell,
    ];

    /// The media type [`crate::detect`] names it by.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Rust => "text/x-rust",
            Self::Python => "text/x-python",
            Self::JavaScript => "text/javascript",
            Self::Go => "text/x-go",
            Self::C => "text/x-c",
            Self::Shell => "text/x-shellscript",
        }
    }

    fn of_media_type(media_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.media_type() == media_type)
    }

    /// Whether `line` (trimmed at its start) declares, imports or otherwise marks this
    /// language.
    fn marks(self, line: &str) -> bool {
        let starts = |prefixes: &[&str]| prefixes.iter().any(|p| line.starts_with(p));
        match self {
            Self::Rust => {
                starts(&[
                    "fn ",
                    "pub fn ",
                    "pub(crate) fn ",
                    "async fn ",
                    "pub async fn ",
                    "struct ",
                    "pub struct ",
                    "enum ",
                    "pub enum ",
                    "impl ",
                    "impl<",
                    "trait ",
                    "pub trait ",
                    "mod ",
                    "pub mod ",
                    "use ",
                    "pub use ",
                    "#[",
                    "#![",
                ]) || line.starts_with("let ") && line.ends_with(';')
            }
            Self::Python => {
                (starts(&["def ", "async def ", "class "]) && line.ends_with(':'))
                    || starts(&["import ", "from "]) && !line.ends_with(';')
                    || starts(&["if __name__ ==", "elif ", "@"])
            }
            Self::JavaScript => {
                starts(&[
                    "function ",
                    "async function ",
                    "export ",
                    "const ",
                    "let ",
                    "import ",
                    "module.exports",
                    "interface ",
                    "type ",
                ]) && (line.contains('=')
                    || line.contains('{')
                    || line.contains('(')
                    || line.ends_with(';'))
            }
            Self::Go => starts(&["package ", "func ", "import (", "type "]) && !line.ends_with(';'),
            Self::C => starts(&[
                "#include ",
                "#include<",
                "#define ",
                "typedef ",
                "struct ",
                "int main(",
            ]),
            Self::Shell => starts(&["export ", "set -", "echo ", "fi", "done", "esac"]),
        }
    }

    /// Whether `line`, at the start of a line (not indented), begins a top-level
    /// definition in this language.
    fn defines(self, line: &str) -> bool {
        let starts = |prefixes: &[&str]| prefixes.iter().any(|p| line.starts_with(p));
        match self {
            Self::Rust => {
                let bare = line
                    .strip_prefix("pub(crate) ")
                    .or_else(|| line.strip_prefix("pub "))
                    .unwrap_or(line);
                let bare = bare.strip_prefix("async ").unwrap_or(bare);
                [
                    "fn ", "struct ", "enum ", "impl", "trait ", "mod ", "const ", "static ",
                    "type ",
                ]
                .iter()
                .any(|p| bare.starts_with(p))
            }
            Self::Python => starts(&["def ", "async def ", "class "]),
            Self::JavaScript => {
                starts(&[
                    "function ",
                    "async function ",
                    "class ",
                    "export function ",
                    "export async function ",
                    "export class ",
                    "export default ",
                    "interface ",
                    "export interface ",
                ]) || (starts(&["const ", "export const "]) && line.contains("=>"))
            }
            Self::Go => starts(&["func ", "type "]),
            Self::C => {
                !line.starts_with('#')
                    && !line.ends_with(';')
                    && line.contains('(')
                    && line.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            }
            Self::Shell => line.contains("()") && line.ends_with('{'),
        }
    }
}

/// The language of `text`, when it looks like source code: a shebang naming an interpreter,
/// or at least three lines (and a tenth of the non-empty ones) that mark one language.
pub fn language(text: &str) -> Option<Language> {
    let first = text.lines().next().unwrap_or_default();
    if let Some(interpreter) = first.strip_prefix("#!") {
        let interpreter = interpreter.to_ascii_lowercase();
        if interpreter.contains("python") {
            return Some(Language::Python);
        }
        if interpreter.contains("node") || interpreter.contains("deno") {
            return Some(Language::JavaScript);
        }
        if ["sh", "bash", "zsh"]
            .iter()
            .any(|shell| interpreter.trim_end().ends_with(shell))
        {
            return Some(Language::Shell);
        }
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return None;
    }
    let (best, marked) = Language::ALL
        .into_iter()
        .map(|language| {
            let marked = lines.iter().filter(|l| language.marks(l)).count();
            (language, marked)
        })
        .max_by_key(|(_, marked)| *marked)?;
    (marked >= 3 && marked * 10 >= lines.len()).then_some(best)
}

/// Source code, cut at its top-level definitions.
pub struct Code;

/// The part of a definition's first line that names it: up to its body's opening brace or
/// colon.
fn signature(line: &str) -> String {
    let cut = line
        .find(" {")
        .or_else(|| line.rfind(':').filter(|_| line.ends_with(':')))
        .unwrap_or(line.len());
    line[..cut].trim_end().to_owned()
}

impl Processor for Code {
    fn name(&self) -> &'static str {
        "code"
    }

    fn accepts(&self) -> &'static [&'static str] {
        &[
            "text/x-rust",
            "text/x-python",
            "text/javascript",
            "text/x-go",
            "text/x-c",
            "text/x-shellscript",
        ]
    }

    fn extract(&self, bytes: &[u8]) -> Result<Extracted, ProcessError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ProcessError("the file is not UTF-8 text".into()))?;
        let language = Language::of_media_type(crate::detect(bytes))
            .or_else(|| language(text))
            .ok_or_else(|| {
                ProcessError("the file is not source code of a known language".into())
            })?;
        let mut sections: Vec<Section> = Vec::new();
        let mut current = Section {
            headings: Vec::new(),
            page: None,
            text: String::new(),
            kind: SectionKind::Code,
        };
        // Comments and attributes just above a definition belong to it.
        let mut lead: Vec<&str> = Vec::new();
        for line in text.lines() {
            let top_level = !line.starts_with(char::is_whitespace);
            let trimmed = line.trim();
            let leads = top_level
                && (trimmed.starts_with("//")
                    || trimmed.starts_with("#[")
                    || trimmed.starts_with('@')
                    || (trimmed.starts_with('#') && language == Language::Python)
                    || trimmed.starts_with("/*")
                    || trimmed.starts_with("*"));
            if leads {
                lead.push(line);
                continue;
            }
            if top_level && language.defines(trimmed) {
                if !current.text.trim().is_empty() {
                    sections.push(current);
                }
                current = Section {
                    headings: vec![signature(trimmed)],
                    page: None,
                    text: String::new(),
                    kind: SectionKind::Code,
                };
            }
            for held in lead.drain(..) {
                current.text.push_str(held);
                current.text.push('\n');
            }
            // A blank line inside a definition would split it at chunking; it stays one
            // block unless it is too long for a chunk.
            if trimmed.is_empty() {
                continue;
            }
            current.text.push_str(line);
            current.text.push('\n');
        }
        for held in lead.drain(..) {
            current.text.push_str(held);
            current.text.push('\n');
        }
        if !current.text.trim().is_empty() {
            sections.push(current);
        }
        Ok(Extracted {
            title: None,
            sections,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUST: &str = "//! Parses settings.\n\nuse std::fs;\n\n/// A setting.\npub struct Setting {\n    name: String,\n}\n\nimpl Setting {\n    pub fn new(name: &str) -> Self {\n        Self { name: name.into() }\n    }\n}\n\n/// Reads the settings file.\npub fn parse_config(path: &str) -> Vec<Setting> {\n    let text = fs::read_to_string(path).unwrap_or_default();\n\n    text.lines().map(Setting::new).collect()\n}\n";

    const PYTHON: &str = "import os\nfrom pathlib import Path\n\n# Where the cache lives.\nCACHE = Path.home() / '.cache'\n\n\nclass Cache:\n    def get(self, key):\n        return None\n\n\ndef clear_cache(path):\n    \"\"\"Removes every file.\"\"\"\n    for f in os.listdir(path):\n        os.remove(f)\n";

    #[test]
    fn the_language_is_known_by_the_codes_shape_or_its_shebang() {
        assert_eq!(language(RUST), Some(Language::Rust));
        assert_eq!(language(PYTHON), Some(Language::Python));
        assert_eq!(
            language(
                "package main\n\nimport (\n\t\"fmt\"\n)\n\nfunc main() {\n\tfmt.Println(1)\n}\n"
            ),
            Some(Language::Go)
        );
        assert_eq!(
            language("import x from 'y';\nconst a = 1;\nexport function f() {\n  return a;\n}\n"),
            Some(Language::JavaScript)
        );
        assert_eq!(
            language(
                "#include <stdio.h>\n#include \"x.h\"\n#define N 3\nint main(void) {\n  return 0;\n}\n"
            ),
            Some(Language::C)
        );
        assert_eq!(
            language("#!/usr/bin/env bash\necho hi\n"),
            Some(Language::Shell)
        );
        assert_eq!(
            language("#!/usr/bin/python3\nprint(1)\n"),
            Some(Language::Python)
        );
        for prose in [
            "Dear Ann,\n\nfrom Monday I will be away. Let me know.\n\nBest, Bo",
            "# Notes\n\nImport the photos from the camera.\nUse the blue folder.\n",
            "",
        ] {
            assert_eq!(language(prose), None, "{prose:?}");
        }
    }

    #[test]
    fn code_is_cut_at_its_definitions_which_keep_their_signatures_and_comments() {
        let extracted = Code.extract(RUST.as_bytes()).expect("read");
        let headings: Vec<&str> = extracted
            .sections
            .iter()
            .map(|s| s.headings.first().map_or("", String::as_str))
            .collect();
        assert_eq!(
            headings,
            [
                "",
                "pub struct Setting",
                "impl Setting",
                "pub fn parse_config(path: &str) -> Vec<Setting>"
            ]
        );
        let parse = &extracted.sections[3];
        assert!(
            parse
                .text
                .starts_with("/// Reads the settings file.\npub fn parse_config"),
            "{}",
            parse.text
        );
        assert!(!parse.text.contains("\n\n"), "one block: {}", parse.text);
        assert!(
            extracted
                .sections
                .iter()
                .all(|s| s.kind == SectionKind::Code)
        );

        let python = Code.extract(PYTHON.as_bytes()).expect("read");
        let headings: Vec<&str> = python
            .sections
            .iter()
            .map(|s| s.headings.first().map_or("", String::as_str))
            .collect();
        assert_eq!(headings, ["", "class Cache", "def clear_cache(path)"]);
        assert!(python.sections[0].text.contains("# Where the cache lives."));
    }
}
