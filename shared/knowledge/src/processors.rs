//! The built-in processors: plain text, Markdown, HTML, CSV, JSON and PDF.

use std::collections::BTreeMap;
use std::sync::Arc;

use html5gum::{DefaultEmitter, Token, Tokenizer};
use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};

use crate::{Extracted, ProcessError, Processor, Section, SectionKind};

/// Every built-in processor, as the registry discovers them.
pub fn builtin() -> Vec<Arc<dyn Processor>> {
    vec![
        Arc::new(PlainText),
        Arc::new(Markdown),
        Arc::new(Html),
        Arc::new(Csv),
        Arc::new(Json),
        Arc::new(Pdf),
        Arc::new(crate::code::Code),
    ]
}

fn utf8(bytes: &[u8]) -> Result<&str, ProcessError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| ProcessError(format!("the file is not UTF-8 text: {e}")))
}

/// Collapses runs of blank lines and trailing spaces: paragraphs separated by one blank line.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

/// Sections under a stack of headings, as a document is read.
#[derive(Default)]
struct Outline {
    headings: Vec<(usize, String)>,
    text: String,
    sections: Vec<Section>,
}

impl Outline {
    fn flush(&mut self, kind: SectionKind) {
        let text = tidy(&self.text);
        self.text.clear();
        if !text.is_empty() {
            self.sections.push(Section {
                headings: self.headings.iter().map(|(_, h)| h.clone()).collect(),
                page: None,
                text,
                kind,
            });
        }
    }

    fn heading(&mut self, level: usize, title: String) {
        self.flush(SectionKind::Prose);
        self.headings.retain(|(l, _)| *l < level);
        self.headings.push((level, title));
    }
}

/// Plain text: one section, paragraphs as they are.
pub struct PlainText;

impl Processor for PlainText {
    fn name(&self) -> &'static str {
        "text"
    }

    fn accepts(&self) -> &'static [&'static str] {
        &["text/plain"]
    }

    fn extract(&self, bytes: &[u8]) -> Result<Extracted, ProcessError> {
        let text = tidy(utf8(bytes)?);
        Ok(Extracted {
            title: None,
            sections: vec![Section {
                headings: Vec::new(),
                page: None,
                text,
                kind: SectionKind::Prose,
            }],
        })
    }
}

/// Markdown (CommonMark): sections under their headings, fenced code apart.
pub struct Markdown;

impl Processor for Markdown {
    fn name(&self) -> &'static str {
        "markdown"
    }

    fn accepts(&self) -> &'static [&'static str] {
        &["text/markdown"]
    }

    fn extract(&self, bytes: &[u8]) -> Result<Extracted, ProcessError> {
        let mut outline = Outline::default();
        let mut title = None;
        let mut heading: Option<(usize, String)> = None;
        let mut code = false;
        for event in Parser::new(utf8(bytes)?) {
            match event {
                Event::Start(Tag::Heading { level, .. }) => {
                    heading = Some((level_of(level), String::new()));
                }
                Event::End(TagEnd::Heading(_)) => {
                    if let Some((level, text)) = heading.take() {
                        let text = text.trim().to_owned();
                        if level == 1 && title.is_none() {
                            title = Some(text.clone());
                        }
                        outline.heading(level, text);
                    }
                }
                Event::Start(Tag::CodeBlock(_)) => {
                    outline.flush(SectionKind::Prose);
                    code = true;
                }
                Event::End(TagEnd::CodeBlock) => {
                    outline.flush(SectionKind::Code);
                    code = false;
                }
                Event::Text(text) | Event::Code(text) => match &mut heading {
                    Some((_, h)) => h.push_str(&text),
                    None => outline.text.push_str(&text),
                },
                Event::SoftBreak | Event::HardBreak => {
                    outline.text.push(if code { '\n' } else { ' ' })
                }
                Event::End(TagEnd::Paragraph | TagEnd::Item | TagEnd::BlockQuote(_)) => {
                    outline.text.push_str("\n\n");
                }
                _ => {}
            }
        }
        outline.flush(SectionKind::Prose);
        Ok(Extracted {
            title,
            sections: outline.sections,
        })
    }
}

fn level_of(level: HeadingLevel) -> usize {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// HTML: the text, under its `h1`–`h6` headings, with the `<title>` as the title; scripts,
/// styles and other non-content dropped.
pub struct Html;

/// Elements whose content is not text for a reader.
const HIDDEN: [&[u8]; 7] = [
    b"script",
    b"style",
    b"noscript",
    b"template",
    b"svg",
    b"head",
    b"iframe",
];

/// Whether an element is not text for a reader: one of [`HIDDEN`], navigation (`nav`,
/// `role="navigation"`), or marked hidden (`hidden`, `aria-hidden="true"`).
fn is_hidden(
    name: &[u8],
    attributes: &BTreeMap<html5gum::HtmlString, html5gum::Spanned<html5gum::HtmlString, ()>>,
) -> bool {
    let attribute = |key: &str| {
        attributes
            .iter()
            .find(|(k, _)| k.as_slice().eq_ignore_ascii_case(key.as_bytes()))
            .map(|(_, v)| v.value.as_slice().to_ascii_lowercase())
    };
    HIDDEN.contains(&name)
        || name == b"nav"
        || attribute("role").is_some_and(|r| r == b"navigation")
        || attribute("hidden").is_some()
        || attribute("aria-hidden").is_some_and(|v| v == b"true")
}

/// Heading levels below which definition terms sit, one level per enclosing list.
const TERM_LEVEL: usize = 6;

/// Elements that end a paragraph.
const BLOCKS: [&[u8]; 22] = [
    b"p",
    b"div",
    b"br",
    b"li",
    b"ul",
    b"ol",
    b"tr",
    b"table",
    b"section",
    b"article",
    b"header",
    b"footer",
    b"nav",
    b"aside",
    b"main",
    b"blockquote",
    b"pre",
    b"dd",
    b"dt",
    b"dl",
    b"hr",
    b"figcaption",
];

impl Processor for Html {
    fn name(&self) -> &'static str {
        "html"
    }

    fn accepts(&self) -> &'static [&'static str] {
        &["text/html"]
    }

    fn extract(&self, bytes: &[u8]) -> Result<Extracted, ProcessError> {
        let html = utf8(bytes)?;
        let mut emitter = DefaultEmitter::default();
        // Script and style contents are raw text, not markup, as a browser reads them.
        emitter.naively_switch_states(true);
        let mut outline = Outline::default();
        let (mut title, mut in_title) = (None::<String>, false);
        // The element being skipped, and how many of its name are open inside it.
        let mut hidden: Option<(Vec<u8>, usize)> = None;
        let mut heading: Option<(usize, String)> = None;
        // Definition lists open: a term (`dt`) heads what defines it, below every `h1`–`h6`,
        // so an API reference's entries (`abs(x)`, `str.strip([chars])`) become sections.
        let mut lists = 0usize;
        for token in Tokenizer::new_with_emitter(html, emitter) {
            let Ok(token) = token;
            match token {
                Token::StartTag(tag) => {
                    let name = tag.name.to_ascii_lowercase();
                    if name == b"title" {
                        in_title = true;
                        title.get_or_insert_with(String::new);
                    } else if let Some((skipped, depth)) = &mut hidden {
                        if *skipped == name && !tag.self_closing {
                            *depth += 1;
                        }
                    } else if !tag.self_closing && is_hidden(&name, &tag.attributes) {
                        hidden = Some((name, 1));
                    } else if let Some(level) = heading_level(&name) {
                        heading = Some((level, String::new()));
                    } else if name == b"dl" {
                        lists += 1;
                        outline.text.push_str("\n\n");
                    } else if name == b"dt" && lists > 0 {
                        heading = Some((TERM_LEVEL + lists, String::new()));
                    } else if BLOCKS.contains(&name.as_slice()) {
                        outline.text.push_str("\n\n");
                    }
                }
                Token::EndTag(tag) => {
                    let name = tag.name.to_ascii_lowercase();
                    if name == b"title" {
                        in_title = false;
                    } else if let Some((skipped, depth)) = &mut hidden {
                        if *skipped == name {
                            *depth -= 1;
                            if *depth == 0 {
                                hidden = None;
                            }
                        }
                    } else if name == b"dl" && lists > 0 {
                        outline.flush(SectionKind::Prose);
                        outline.headings.retain(|(l, _)| *l < TERM_LEVEL + lists);
                        lists -= 1;
                    } else if heading_level(&name).is_some() || (name == b"dt" && lists > 0) {
                        if let Some((level, text)) = heading.take() {
                            // Less the permalink sign documentation generators append.
                            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                            let text = text.trim_end_matches(['¶', ' ']).to_owned();
                            if !text.is_empty() {
                                outline.heading(level, text);
                            }
                        }
                    } else if BLOCKS.contains(&name.as_slice()) {
                        outline.text.push_str("\n\n");
                    }
                }
                Token::String(text) => {
                    let text = String::from_utf8_lossy(&text);
                    if in_title {
                        if let Some(title) = &mut title {
                            title.push_str(&text);
                        }
                    } else if hidden.is_none() {
                        match &mut heading {
                            Some((_, h)) => h.push_str(&text),
                            None => push_inline(&mut outline.text, &text),
                        }
                    }
                }
                _ => {}
            }
        }
        outline.flush(SectionKind::Prose);
        let title = title
            .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|t| !t.is_empty());
        Ok(Extracted {
            title,
            sections: outline.sections,
        })
    }
}

/// Appends inline text, its whitespace collapsed as a browser renders it.
fn push_inline(out: &mut String, text: &str) {
    let starts_with_space = text.starts_with(char::is_whitespace);
    let ends_with_space = text.ends_with(char::is_whitespace);
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        if !text.is_empty() && !out.ends_with([' ', '\n']) && !out.is_empty() {
            out.push(' ');
        }
        return;
    }
    if starts_with_space && !out.ends_with([' ', '\n']) && !out.is_empty() {
        out.push(' ');
    }
    out.push_str(&words.join(" "));
    if ends_with_space {
        out.push(' ');
    }
}

fn heading_level(name: &[u8]) -> Option<usize> {
    match name {
        [b'h', digit @ b'1'..=b'6'] => Some(usize::from(digit - b'0')),
        _ => None,
    }
}

/// CSV (comma, semicolon or tab separated, the first row naming the columns): one section
/// per row, as `column: value` lines.
pub struct Csv;

impl Processor for Csv {
    fn name(&self) -> &'static str {
        "csv"
    }

    fn accepts(&self) -> &'static [&'static str] {
        &["text/csv"]
    }

    fn extract(&self, bytes: &[u8]) -> Result<Extracted, ProcessError> {
        let text = utf8(bytes)?;
        let first = text.lines().next().unwrap_or_default();
        let delimiter = [b',', b';', b'\t']
            .into_iter()
            .max_by_key(|d| first.bytes().filter(|b| b == d).count())
            .unwrap_or(b',');
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .from_reader(text.as_bytes());
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| ProcessError(format!("the CSV header does not parse: {e}")))?
            .iter()
            .map(|c| c.trim().to_owned())
            .collect();
        let mut sections = Vec::new();
        for (index, row) in reader.records().enumerate() {
            let row =
                row.map_err(|e| ProcessError(format!("row {} does not parse: {e}", index + 2)))?;
            let text = columns
                .iter()
                .zip(row.iter())
                .filter(|(_, value)| !value.trim().is_empty())
                .map(|(column, value)| format!("{column}: {}", value.trim()))
                .collect::<Vec<_>>()
                .join("\n");
            if !text.is_empty() {
                sections.push(Section {
                    headings: vec![format!("row {}", index + 1)],
                    page: None,
                    text,
                    kind: SectionKind::Row,
                });
            }
        }
        Ok(Extracted {
            title: None,
            sections,
        })
    }
}

/// JSON: one section per element of a top-level array, or per member of a top-level object,
/// as `path: value` lines.
pub struct Json;

impl Processor for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn accepts(&self) -> &'static [&'static str] {
        &["application/json"]
    }

    fn extract(&self, bytes: &[u8]) -> Result<Extracted, ProcessError> {
        let value: serde_json::Value = serde_json::from_str(utf8(bytes)?)
            .map_err(|e| ProcessError(format!("the JSON does not parse: {e}")))?;
        let records: Vec<(String, &serde_json::Value)> = match &value {
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (format!("[{i}]"), item))
                .collect(),
            serde_json::Value::Object(members) => {
                members.iter().map(|(k, v)| (k.clone(), v)).collect()
            }
            scalar => vec![(String::new(), scalar)],
        };
        let sections = records
            .into_iter()
            .filter_map(|(name, record)| {
                let mut lines = Vec::new();
                flatten("", record, &mut lines);
                let text = lines.join("\n");
                (!text.is_empty()).then(|| Section {
                    headings: if name.is_empty() {
                        Vec::new()
                    } else {
                        vec![name]
                    },
                    page: None,
                    text,
                    kind: SectionKind::Record,
                })
            })
            .collect();
        Ok(Extracted {
            title: None,
            sections,
        })
    }
}

/// PDF: the text of each page, numbered from 1 for citations; the document's `Title`.
pub struct Pdf;

/// The decompressed content a page may take; a page over it fails the document rather
/// than exhausting memory.
const MAX_PAGE_CONTENT: usize = 64 * 1024 * 1024;

impl Processor for Pdf {
    fn name(&self) -> &'static str {
        "pdf"
    }

    fn accepts(&self) -> &'static [&'static str] {
        &["application/pdf"]
    }

    fn extract(&self, bytes: &[u8]) -> Result<Extracted, ProcessError> {
        let document = lopdf::Document::load_mem(bytes)
            .map_err(|e| ProcessError(format!("the PDF does not parse: {e}")))?;
        if document.is_encrypted() {
            return Err(ProcessError("the PDF is encrypted".to_owned()));
        }
        let mut sections = Vec::new();
        for number in document.get_pages().keys() {
            let text = document
                .extract_text_with_limit(&[*number], MAX_PAGE_CONTENT)
                .map_err(|e| ProcessError(format!("page {number} does not read: {e}")))?;
            let text = tidy(&text);
            if !text.is_empty() {
                sections.push(Section {
                    headings: Vec::new(),
                    page: Some(*number),
                    text,
                    kind: SectionKind::Prose,
                });
            }
        }
        let title = document
            .trailer
            .get(b"Info")
            .and_then(|info| document.dereference(info))
            .ok()
            .and_then(|(_, info)| info.as_dict().ok())
            .and_then(|info| info.get(b"Title").ok())
            .and_then(|title| lopdf::decode_text_string(title).ok())
            .map(|title| title.trim().to_owned())
            .filter(|title| !title.is_empty());
        Ok(Extracted { title, sections })
    }
}

fn flatten(path: &str, value: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                flatten(&join(key), member, out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), item, out);
            }
        }
        Value::Null => {}
        Value::String(text) if path.is_empty() => out.push(text.clone()),
        Value::String(text) => out.push(format!("{path}: {text}")),
        other if path.is_empty() => out.push(other.to_string()),
        other => out.push(format!("{path}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Processed, Registry};

    fn ready(bytes: &[u8]) -> (&'static str, Extracted) {
        match Registry::builtin().expect("valid").process(bytes) {
            Processed::Ready {
                processor,
                extracted,
                ..
            } => (processor, extracted),
            Processed::Failed { reason, .. } => panic!("failed: {reason}"),
        }
    }

    #[test]
    fn plain_text_keeps_its_paragraphs() {
        let (processor, extracted) = ready(b"First line\nsame paragraph.\n\n\n\nSecond one.  \n");
        assert_eq!(processor, "text");
        assert_eq!(
            extracted.sections[0].text,
            "First line\nsame paragraph.\n\nSecond one."
        );
    }

    #[test]
    fn markdown_sections_sit_under_their_headings_and_code_stays_apart() {
        let doc = "# Guide\n\nIntro *text*.\n\n## Install\n\nRun `cargo build`.\n\n```sh\ncargo run\n```\n\n### Linux\n\nUse apt.\n\n## Use\n\nCall it.\n";
        let (processor, extracted) = ready(doc.as_bytes());
        assert_eq!(processor, "markdown");
        assert_eq!(extracted.title.as_deref(), Some("Guide"));
        let view: Vec<(Vec<&str>, &str, SectionKind)> = extracted
            .sections
            .iter()
            .map(|s| {
                (
                    s.headings.iter().map(String::as_str).collect(),
                    s.text.as_str(),
                    s.kind,
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                (vec!["Guide"], "Intro text.", SectionKind::Prose),
                (
                    vec!["Guide", "Install"],
                    "Run cargo build.",
                    SectionKind::Prose
                ),
                (vec!["Guide", "Install"], "cargo run", SectionKind::Code),
                (
                    vec!["Guide", "Install", "Linux"],
                    "Use apt.",
                    SectionKind::Prose
                ),
                (vec!["Guide", "Use"], "Call it.", SectionKind::Prose),
            ]
        );
    }

    #[test]
    fn html_navigation_and_hidden_elements_are_dropped_and_permalink_signs_trimmed() {
        let page = r##"<html><body>
<div class="related" role="navigation"><div><a href="/">index</a></div><p>modules</p></div>
<div class="body"><h1>zipfile<a class="headerlink" href="#zipfile">¶</a></h1>
<p>Work with ZIP archives.</p><div hidden><p>secret</p></div>
<span aria-hidden="true">decor</span><p>After.</p></div>
<nav><ul><li>next</li></ul></nav><p>Tail.</p></body></html>"##;
        let (_, extracted) = ready(page.as_bytes());
        let all: String = extracted
            .sections
            .iter()
            .map(|s| format!("{:?}:{}", s.headings, s.text))
            .collect::<Vec<_>>()
            .join("|");
        for gone in ["index", "modules", "secret", "decor", "next"] {
            assert!(!all.contains(gone), "{gone} in {all}");
        }
        assert_eq!(extracted.sections[0].headings, ["zipfile"], "{all}");
        assert!(
            all.contains("Work with ZIP archives.")
                && all.contains("After.")
                && all.contains("Tail."),
            "{all}"
        );
    }

    #[test]
    fn html_definition_terms_head_the_text_that_defines_them() {
        let page = r##"<html><body><h1>Built-in Functions</h1><p>Intro.</p>
<dl class="py function"><dt id="abs">abs(x)<a class="headerlink" href="#abs">¶</a></dt>
<dd><p>Return the absolute value of a number.</p></dd>
<dt id="all">all(iterable)</dt><dd><p>Return True if all are true.</p>
<dl><dt>strict</dt><dd><p>A nested term.</p></dd></dl><p>Back in all.</p></dd></dl>
<p>After the list.</p></body></html>"##;
        let (_, extracted) = ready(page.as_bytes());
        let sections: Vec<(Vec<&str>, &str)> = extracted
            .sections
            .iter()
            .map(|s| {
                (
                    s.headings.iter().map(String::as_str).collect(),
                    s.text.as_str(),
                )
            })
            .collect();
        assert_eq!(
            sections,
            vec![
                (vec!["Built-in Functions"], "Intro."),
                (
                    vec!["Built-in Functions", "abs(x)"],
                    "Return the absolute value of a number."
                ),
                (
                    vec!["Built-in Functions", "all(iterable)"],
                    "Return True if all are true."
                ),
                (
                    vec!["Built-in Functions", "all(iterable)", "strict"],
                    "A nested term."
                ),
                (vec!["Built-in Functions", "all(iterable)"], "Back in all."),
                (vec!["Built-in Functions"], "After the list."),
            ]
        );
    }

    #[test]
    fn html_text_and_headings_are_kept_and_scripts_and_styles_dropped() {
        let page = r#"<!DOCTYPE html>
<html><head><title> The  Page </title><style>p { color: red }</style>
<script>if (a < b && c > d) { document.write("<h1>fake</h1>") }</script></head>
<body><nav>Home</nav><h1>Main &amp; only</h1><p>First <b>bold</b> words.</p>
<h2>Details</h2><p>Line one<br>line two</p><script>var hidden = 1;</script>
<ul><li>alpha</li><li>beta</li></ul></body></html>"#;
        let (processor, extracted) = ready(page.as_bytes());
        assert_eq!(processor, "html");
        assert_eq!(extracted.title.as_deref(), Some("The Page"));
        let all: String = extracted
            .sections
            .iter()
            .map(|s| s.text.clone())
            .collect::<Vec<_>>()
            .join("|");
        assert!(
            !all.contains("hidden") && !all.contains("color") && !all.contains("fake"),
            "{all}"
        );
        let details = extracted
            .sections
            .iter()
            .find(|s| s.headings == ["Main & only", "Details"])
            .expect("a section under both headings");
        assert_eq!(details.text, "Line one\n\nline two\n\nalpha\n\nbeta");
        let first = extracted
            .sections
            .iter()
            .find(|s| s.headings == ["Main & only"])
            .expect("first");
        assert_eq!(first.text, "First bold words.");
    }

    #[test]
    fn csv_rows_become_sections_of_column_value_lines() {
        let (processor, extracted) =
            ready(b"name,city,note\nAda,London,\"likes, commas\"\nBob,Paris,\n");
        assert_eq!(processor, "csv");
        assert_eq!(extracted.sections.len(), 2);
        assert_eq!(
            extracted.sections[0].text,
            "name: Ada\ncity: London\nnote: likes, commas"
        );
        assert_eq!(extracted.sections[1].text, "name: Bob\ncity: Paris");
        assert_eq!(extracted.sections[1].kind, SectionKind::Row);
    }

    #[test]
    fn json_records_become_sections_of_path_value_lines() {
        let (processor, extracted) =
            ready(br#"[{"name": "Ada", "tags": ["math", "code"], "born": {"year": 1815}}, {"name": "Bob"}]"#);
        assert_eq!(processor, "json");
        assert_eq!(
            extracted.sections[0].text,
            "born.year: 1815\nname: Ada\ntags[0]: math\ntags[1]: code"
        );
        assert_eq!(extracted.sections[1].headings, ["[1]"]);
    }

    /// A PDF of `pages`, one text line each, titled `title`, written by lopdf.
    fn pdf(title: &str, pages: &[&str]) -> Vec<u8> {
        let pages: Vec<String> = pages.iter().map(|p| (*p).to_owned()).collect();
        crate::testing::pdf(title, &pages)
    }

    #[test]
    fn a_pdf_is_read_page_by_page_with_page_numbers_and_its_title() {
        let bytes = pdf(
            "Field Guide",
            &["Owls hunt at night.", "", "Herons wade in water."],
        );
        let (processor, extracted) = ready(&bytes);
        assert_eq!(processor, "pdf");
        assert_eq!(extracted.title.as_deref(), Some("Field Guide"));
        let pages: Vec<(Option<u32>, &str)> = extracted
            .sections
            .iter()
            .map(|s| (s.page, s.text.as_str()))
            .collect();
        assert_eq!(
            pages,
            [
                (Some(1), "Owls hunt at night."),
                (Some(3), "Herons wade in water.")
            ],
            "an empty page is skipped; the others keep their numbers"
        );
    }

    #[test]
    fn a_corrupt_pdf_fails_with_a_reason() {
        let mut bytes = pdf("t", &["some text"]);
        bytes.truncate(bytes.len() / 2);
        match Registry::builtin().expect("valid").process(&bytes) {
            Processed::Failed { media_type, reason } => {
                assert_eq!(media_type, "application/pdf");
                assert!(!reason.is_empty());
            }
            Processed::Ready { extracted, .. } => panic!("a truncated PDF read: {extracted:?}"),
        }
    }

    #[test]
    fn a_corrupt_file_of_a_known_type_fails_with_the_processors_reason() {
        let bad_csv = b"a,b,c\n1,2,3\n4,5\n";
        // Detected as text by its uneven rows; the CSV processor itself refuses them.
        match Csv.extract(bad_csv) {
            Err(ProcessError(reason)) => assert!(reason.contains("row 3"), "{reason}"),
            Ok(extracted) => panic!("{extracted:?}"),
        }
        assert!(Json.extract(b"{\"a\": ").is_err());
        assert!(PlainText.extract(&[0xff, 0xfe, 0x00]).is_err());
    }
}
