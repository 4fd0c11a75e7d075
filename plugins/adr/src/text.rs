//! Putting people's text into a record safely.
//!
//! The text of a request (context, pros and cons, viewpoints) goes into Markdown that two kinds
//! of reader parse: adr-tools, whose awk scripts treat any line that starts with `#` as a section
//! heading, and markdownlint with MADR's configuration. These helpers keep both readers right
//! without rewriting what people wrote:
//!
//! - [`block`] for paragraphs: line ends normalised, tabs to four spaces (MD010), trailing blanks
//!   dropped (MD009), runs of blank lines collapsed (MD012), and a backslash before a `#` that
//!   starts a line (which would otherwise open a section that adr-tools and readers see) or before
//!   a line of `=` or `-` under text (a setext heading underline, MD003);
//! - [`inline`] for list items and names: all whitespace, newlines included, collapsed to one
//!   space;
//! - [`yaml_scalar`] for MADR's front matter: plain when that is unambiguous, double-quoted
//!   otherwise;
//! - [`table_cell`] for the decision matrix: inline, with `|` escaped.

/// A paragraph block: normalised and escaped as the module doc describes. Empty when `text` is
/// blank.
pub fn block(text: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut previous_blank = true;
    let mut fence: Option<Fence> = None;
    for raw in text.replace("\r\n", "\n").replace('\r', "\n").split('\n') {
        let line = raw.replace('\t', "    ");
        let line = line.trim_end();
        if let Some(open) = &fence {
            if open.closed_by(line) {
                fence = None;
            }
            lines.push(line.to_owned());
            previous_blank = line.is_empty();
            continue;
        }
        if let Some(opened) = Fence::opened_by(line) {
            fence = Some(opened);
            lines.push(line.to_owned());
            previous_blank = false;
            continue;
        }
        if line.is_empty() {
            if !previous_blank {
                lines.push(String::new());
            }
            previous_blank = true;
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let body = line.trim_start();
        let opens_heading = indent <= 3 && body.starts_with('#');
        let underlines = !previous_blank && indent <= 3 && is_setext_underline(body);
        if opens_heading || underlines {
            lines.push(format!("{}\\{}", &line[..indent], body));
        } else {
            lines.push(line.to_owned());
        }
        previous_blank = false;
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines.join("\n")
}

/// An open fenced code block: its marker character and length.
pub(crate) struct Fence {
    marker: u8,
    length: usize,
}

impl Fence {
    /// The fence a line opens: up to three spaces, then at least three backticks or tildes.
    pub(crate) fn opened_by(line: &str) -> Option<Fence> {
        let body = line.trim_start_matches(' ');
        if line.len() - body.len() > 3 {
            return None;
        }
        let marker = *body.as_bytes().first()?;
        if marker != b'`' && marker != b'~' {
            return None;
        }
        let length = body.bytes().take_while(|&b| b == marker).count();
        (length >= 3).then_some(Fence { marker, length })
    }

    /// True when `line` closes this fence (the same marker, at least as long, nothing after it).
    pub(crate) fn closed_by(&self, line: &str) -> bool {
        let body = line.trim_start_matches(' ');
        let length = body.bytes().take_while(|&b| b == self.marker).count();
        line.len() - body.len() <= 3 && length >= self.length && body[length..].trim().is_empty()
    }
}

fn is_setext_underline(body: &str) -> bool {
    let body = body.trim_end();
    !body.is_empty() && (body.bytes().all(|b| b == b'=') || body.bytes().all(|b| b == b'-'))
}

/// One line of text: whitespace runs (newlines included) collapsed to a space, ends trimmed.
pub fn inline(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A table cell: [`inline`] text with `|` escaped.
pub fn table_cell(text: &str) -> String {
    inline(text).replace('|', "\\|")
}

/// A YAML scalar for a front-matter value: plain (`accepted`, `Ada Lovelace, Grace Hopper`) when
/// it is made of letters, digits, spaces and `,.()'-` and starts with a letter that does not make
/// it a YAML 1.1 boolean or null; double-quoted with escapes otherwise.
pub fn yaml_scalar(value: &str) -> String {
    const KEYWORDS: &[&str] = &["y", "n", "yes", "no", "true", "false", "on", "off", "null", "~"];
    let plain_safe = value.chars().next().is_some_and(|c| c.is_alphabetic())
        && value == value.trim()
        && value.chars().all(|c| c.is_alphanumeric() || " ,.()'-".contains(c))
        && !KEYWORDS.contains(&value.to_ascii_lowercase().as_str());
    if plain_safe {
        return value.to_owned();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Reads back a front-matter value written by [`yaml_scalar`] or by hand: a double-quoted
/// string (with the common escapes), a single-quoted one (`''` for a quote), or a plain one.
pub fn yaml_unquote(value: &str) -> String {
    let value = value.trim();
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        let inner = &value[1..value.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        }
        return out;
    }
    if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
        return value[1..value.len() - 1].replace("''", "'");
    }
    // A plain scalar ends at a comment.
    match value.find(" #") {
        Some(comment) => value[..comment].trim_end().to_owned(),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_normalised_and_headings_escaped() {
        let text = "\n\nFirst line.\t \r\n\r\n\r\n# not a heading\nText\n---\n\n  ## Status\n\n\n";
        assert_eq!(block(text), "First line.\n\n\\# not a heading\nText\n\\---\n\n  \\## Status");
        assert_eq!(block("   \n\t\n"), "");
        // A thematic break after a blank line and a code-indented `#` stay as written.
        assert_eq!(block("a\n\n---\n\n    # code"), "a\n\n---\n\n    # code");
        // Nor does a comment inside a fenced code block.
        assert_eq!(block("```sh\n# install\n\n\n```\n# x"), "```sh\n# install\n\n\n```\n\\# x");
    }

    #[test]
    fn inline_text_is_one_line() {
        assert_eq!(inline("  two\nlines\t here "), "two lines here");
        assert_eq!(table_cell("a | b"), "a \\| b");
    }

    #[test]
    fn yaml_scalars_are_plain_only_when_unambiguous() {
        assert_eq!(yaml_scalar("accepted"), "accepted");
        assert_eq!(yaml_scalar("Ada Lovelace (DBA), Bob"), "Ada Lovelace (DBA), Bob");
        assert_eq!(yaml_scalar("superseded by ADR-0005"), "superseded by ADR-0005");
        assert_eq!(yaml_scalar("yes"), "\"yes\"");
        assert_eq!(yaml_scalar("a: b"), "\"a: b\"");
        assert_eq!(yaml_scalar("#1 \"fan\"\\"), "\"#1 \\\"fan\\\"\\\\\"");
        for value in ["accepted", "a: b", "#1 \"fan\"\\", "it's", "line\nbreak"] {
            assert_eq!(yaml_unquote(&yaml_scalar(value)), value);
        }
        assert_eq!(yaml_unquote("'it''s'"), "it's");
        assert_eq!(yaml_unquote("accepted # for now"), "accepted");
    }
}
