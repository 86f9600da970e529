//! What a file is, from its bytes: never from its name, which a user or a browser may have
//! got wrong. Binary formats by their signatures; text by its shape (JSON that parses, an
//! HTML document, source code's declarations, Markdown's headings and fences, delimited
//! rows of one width).

/// The media type of `bytes`.
pub fn detect(bytes: &[u8]) -> &'static str {
    if let Some(binary) = signature(bytes) {
        return binary;
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let Ok(text) = std::str::from_utf8(bytes) else {
        return "application/octet-stream";
    };
    if text.contains('\0') {
        return "application/octet-stream";
    }
    let start = text.trim_start();
    if (start.starts_with('{') || start.starts_with('['))
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
    {
        return "application/json";
    }
    if is_html(start) {
        return "text/html";
    }
    // Before Markdown: a Python or shell comment looks like a heading.
    if let Some(language) = crate::code::language(text) {
        return language.media_type();
    }
    if is_markdown(text) {
        return "text/markdown";
    }
    if is_delimited(text) {
        return "text/csv";
    }
    "text/plain"
}

fn signature(bytes: &[u8]) -> Option<&'static str> {
    let riff = |kind: &[u8]| bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == kind;
    Some(match bytes {
        [b'%', b'P', b'D', b'F', b'-', ..] => "application/pdf",
        [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', ..] => "image/png",
        [0xFF, 0xD8, 0xFF, ..] => "image/jpeg",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        _ if riff(b"WEBP") => "image/webp",
        _ if riff(b"WAVE") => "audio/wav",
        [b'I', b'D', b'3', ..] | [0xFF, 0xFB | 0xF3 | 0xF2, ..] => "audio/mpeg",
        [b'f', b'L', b'a', b'C', ..] => "audio/flac",
        [b'O', b'g', b'g', b'S', ..] => "audio/ogg",
        [b'P', b'K', 3, 4, ..] => "application/zip",
        [0x1F, 0x8B, ..] => "application/gzip",
        _ => return None,
    })
}

fn is_html(start: &str) -> bool {
    let head: String = start
        .chars()
        .take(512)
        .collect::<String>()
        .to_ascii_lowercase();
    head.starts_with("<!doctype html")
        || head.starts_with("<html")
        || ((head.starts_with("<head") || head.starts_with("<body") || head.starts_with("<!--"))
            && head.contains('>'))
        || (head.starts_with('<') && (head.contains("<body") || head.contains("<head")))
}

fn is_markdown(text: &str) -> bool {
    let mut previous_text = false;
    for line in text.lines().take(400) {
        let trimmed = line.trim_end();
        let atx = trimmed.trim_start_matches('#');
        let hashes = trimmed.len() - atx.len();
        if (1..=6).contains(&hashes) && atx.starts_with(' ') && !atx.trim().is_empty() {
            return true;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            return true;
        }
        let setext = !trimmed.is_empty()
            && trimmed.len() >= 3
            && (trimmed.chars().all(|c| c == '=') || trimmed.chars().all(|c| c == '-'));
        if setext && previous_text {
            return true;
        }
        previous_text = !trimmed.trim().is_empty();
    }
    false
}

/// Rows of one width on every one of the first lines: three or more rows of two or more
/// columns, or two of three or more (two lines of prose with a comma each are not a table).
fn is_delimited(text: &str) -> bool {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(50)
        .collect();
    let joined = lines.join("\n");
    [b',', b';', b'\t'].into_iter().any(|delimiter| {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(joined.as_bytes());
        let widths: Vec<usize> = reader.records().map(|r| r.map_or(0, |r| r.len())).collect();
        let width = widths.first().copied().unwrap_or(0);
        let enough = (widths.len() >= 3 && width >= 2) || (widths.len() == 2 && width >= 3);
        enough && widths.iter().all(|w| *w == width)
    })
}

/// Whether `media_type` is one of the image types [`detect`] names.
pub fn is_image(media_type: &str) -> bool {
    media_type.starts_with("image/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_formats_are_known_by_their_signatures() {
        assert_eq!(detect(b"%PDF-1.7\n%\xe2\xe3"), "application/pdf");
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n\0\0"), "image/png");
        assert_eq!(detect(b"RIFF\x24\0\0\0WAVEfmt "), "audio/wav");
        assert_eq!(detect(b"RIFF\x24\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(detect(b"\xff\xd8\xff\xe0"), "image/jpeg");
        assert_eq!(detect(b"PK\x03\x04rest"), "application/zip");
        assert_eq!(
            detect(&[0xC3, 0x28, 0xA0, 0xA1]),
            "application/octet-stream"
        );
    }

    #[test]
    fn text_is_known_by_its_shape_not_its_name() {
        assert_eq!(detect(br#"  {"a": [1, 2]}"#), "application/json");
        assert_eq!(detect(b"[1, 2, 3]"), "application/json");
        assert_eq!(detect(b"[not json"), "text/plain");
        assert_eq!(
            detect(b"<!DOCTYPE html><html><body>x</body></html>"),
            "text/html"
        );
        assert_eq!(detect(b"\xEF\xBB\xBF<html lang=en><p>x"), "text/html");
        assert_eq!(detect(b"# Title\n\nSome *prose*."), "text/markdown");
        assert_eq!(detect(b"Title\n=====\n\ntext"), "text/markdown");
        assert_eq!(
            detect(b"intro\n\n```rust\nfn main() {}\n```\n"),
            "text/markdown"
        );
        assert_eq!(detect(b"name,age\nada,36\nbob,41\n"), "text/csv");
        assert_eq!(detect(b"a;b;c\n1;2;3\n"), "text/csv");
        assert_eq!(detect(b"a\tb\n1\t2\n3\t4\n"), "text/csv");
        assert_eq!(detect(b"Dear Ada, thanks.\nSee you, Bob."), "text/plain");
        assert_eq!(detect(b"#hashtag without a space\nplain"), "text/plain");
    }
}
