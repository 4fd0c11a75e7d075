//! Reading a decision record: its format, title, date, status and links.
//!
//! Two formats are read, each the way its own tools read it:
//!
//! - **Nygard**, as adr-tools writes and reads it: the first line is `# N. Title` (adr-tools'
//!   `_adr_title` takes the first line from its third character on), a `Date: YYYY-MM-DD` line,
//!   then the sections `## Status`, `## Context`, `## Decision`, `## Consequences`. The status is
//!   every non-blank line of the Status section up to the next line that starts with `#`
//!   (`_adr_status`); a line `Kind [text](target)` in it is a link (`_adr_links`: `Supersedes`,
//!   `Superseded by`, `Amends`, … as `adr new -s` and `-l` write them), any other line a status.
//! - **MADR 4.0.0**: optional YAML front matter (`status`, `date`, `decision-makers`, `consulted`,
//!   `informed`), a `# Title` without a number (MADR ADR-0002), the sections `## Context and
//!   Problem Statement`, `## Considered Options`, `## Decision Outcome` (required) and `## Decision
//!   Drivers`, `### Consequences`, `### Confirmation`, `## Pros and Cons of the Options`, `## More
//!   Information` (optional). The status is the front matter's; `superseded by ADR-0005` is a link
//!   by number; links to other records are lines `Kind [text](NNNN-….md)` in the body (MADR
//!   ADR-0009: "include in section More Information").
//!
//! A record with front matter is MADR; one whose first heading is `# N. …` or that has a `##
//! Status` section is Nygard; one with MADR's headings is MADR; anything else is unknown. Lines in
//! fenced code blocks are not headings or links.

use crate::text::{Fence, yaml_unquote};

/// Which format a record is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// Nygard / adr-tools.
    Nygard,
    /// MADR.
    Madr,
    /// Neither.
    Unknown,
}

/// A heading outside code blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heading {
    /// 1 for `#`, 2 for `##`, …
    pub level: usize,
    /// Its text, trimmed.
    pub text: String,
    /// 1-based line number.
    pub line: usize,
}

/// A link to another record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// `Supersedes`, `Superseded by`, `Amends`, …
    pub kind: String,
    /// The link text.
    pub text: String,
    /// The target as written: a file name (`0002-use-mysql.md`) or a number reference (`ADR-0002`).
    pub target: String,
    /// 1-based line number.
    pub line: usize,
}

/// What is known about one record after reading it.
#[derive(Debug, Clone)]
pub struct ParsedRecord {
    /// The file name.
    pub file_name: String,
    /// Its format.
    pub format: RecordFormat,
    /// Front-matter keys and (unquoted) values, in order; empty without front matter.
    pub front_matter: Vec<(String, String)>,
    /// True when the record opens with front matter.
    pub has_front_matter: bool,
    /// The first line, as adr-tools' `head -1` sees it.
    pub first_line: String,
    /// The text of the first level-1 heading.
    pub title: Option<String>,
    /// The number before `. ` in a Nygard title (`# 3. Use …` → 3).
    pub title_number: Option<u32>,
    /// The `Date:` line's value (Nygard) or the front matter's `date` (MADR).
    pub date: Option<String>,
    /// Status lines that are not links (Nygard), or the front matter's status (MADR).
    pub statuses: Vec<String>,
    /// Links to other records.
    pub links: Vec<Link>,
    /// Headings outside code blocks.
    pub headings: Vec<Heading>,
}

impl ParsedRecord {
    /// True when a heading of `level` reads `text` (case-insensitive).
    pub fn has_heading(&self, level: usize, text: &str) -> bool {
        self.headings.iter().any(|h| h.level == level && h.text.eq_ignore_ascii_case(text))
    }

    /// The record's title as another record's link names it: adr-tools' `_adr_title` (the first
    /// line from its third character) for Nygard records, `ADR-NNNN: ` and the `#` heading for
    /// MADR ones.
    pub fn link_title(&self) -> Option<String> {
        match self.format {
            RecordFormat::Nygard if self.first_line.starts_with("# ") => {
                Some(adr_tools_title(&self.first_line))
            }
            _ => {
                let title = self.title.clone()?;
                Some(match crate::naming::leading_number(&self.file_name) {
                    Some(number) => madr_link_title(number, &title),
                    None => title,
                })
            }
        }
    }
}

/// How links name a MADR record: `ADR-0005: Use Kafka` (MADR numbers records `ADR-NNNN` in its
/// template's `superseded by ADR-0123`).
pub fn madr_link_title(number: u32, title: &str) -> String {
    format!("ADR-{number:04}: {title}")
}

/// adr-tools' `_adr_title` of a file whose first line is `first_line`: `cut -c 3-`, which counts
/// bytes.
pub fn adr_tools_title(first_line: &str) -> String {
    String::from_utf8_lossy(first_line.as_bytes().get(2..).unwrap_or_default()).into_owned()
}

/// Splits `Kind [text](target)` (with an optional `* ` before and `.` after); `None` for other
/// lines. `Kind` is the text before the first ` [` (a kind has no brackets; adr-tools' greedy
/// `^(.+) \[` would take a title's own ` [` instead), the target the text of the last `](…)`.
pub fn split_link_line(line: &str) -> Option<(String, String, String)> {
    let line = line.trim();
    let line = line.strip_prefix("* ").or_else(|| line.strip_prefix("- ")).unwrap_or(line);
    let line = line.strip_suffix('.').unwrap_or(line);
    let body = line.strip_suffix(')')?;
    let open_target = body.rfind("](")?;
    let target = &body[open_target + 2..];
    let open_text = body[..open_target].find(" [")?;
    let kind = body[..open_text].trim();
    let text = &body[open_text + 2..open_target];
    if kind.is_empty() || target.is_empty() || target.contains(char::is_whitespace) {
        return None;
    }
    Some((kind.to_owned(), text.to_owned(), target.to_owned()))
}

/// The file name a link target points at: `./0002-x.md#status` → `0002-x.md`.
pub fn target_file_name(target: &str) -> &str {
    let target = target.split('#').next().unwrap_or(target);
    target.rsplit('/').next().unwrap_or(target)
}

/// True for a target that is a local decision record: a file name (after any folder) that starts
/// with digits and a dash, and is not a URL.
fn is_record_target(target: &str) -> bool {
    !target.contains("://") && crate::naming::listed_by_adr_tools(target_file_name(target))
}

/// Reads a record.
pub fn parse_record(file_name: &str, content: &str) -> ParsedRecord {
    let lines: Vec<&str> = content.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let first_line = content.split('\n').next().unwrap_or("").to_owned();

    // Front matter: `---` on the first line, up to the next `---` or `...`.
    let mut front_matter = Vec::new();
    let mut body_start = 0;
    let mut has_front_matter = false;
    if lines.first().map(|l| l.trim_end()) == Some("---")
        && let Some(end) = lines.iter().skip(1).position(|l| matches!(l.trim_end(), "---" | "..."))
    {
        has_front_matter = true;
        body_start = end + 2;
        for line in &lines[1..end + 1] {
            if line.starts_with([' ', '\t', '#', '-']) {
                continue;
            }
            if let Some((key, value)) = line.split_once(':') {
                front_matter.push((key.trim().to_owned(), yaml_unquote(value)));
            }
        }
    }

    let mut headings = Vec::new();
    let mut fence: Option<Fence> = None;
    let mut in_code = vec![false; lines.len()];
    for (i, line) in lines.iter().enumerate().skip(body_start) {
        if let Some(open) = &fence {
            in_code[i] = true;
            if open.closed_by(line) {
                fence = None;
            }
            continue;
        }
        if let Some(opened) = Fence::opened_by(line) {
            in_code[i] = true;
            fence = Some(opened);
            continue;
        }
        if let Some(heading) = atx_heading(line) {
            headings.push(Heading { level: heading.0, text: heading.1, line: i + 1 });
        }
    }

    let title = headings.iter().find(|h| h.level == 1).map(|h| h.text.clone());
    let title_number = title.as_deref().and_then(|t| {
        let (number, rest) = t.split_once(". ")?;
        (!rest.is_empty() && number.bytes().all(|b| b.is_ascii_digit())).then(|| number.parse().ok())?
    });
    let status_heading = headings.iter().find(|h| h.level == 2 && h.text == "Status").map(|h| h.line);

    let nygard_title = title_number.is_some() && headings.first().is_some_and(|h| h.level == 1);
    let madr_headings = ["Context and Problem Statement", "Considered Options", "Decision Outcome"]
        .iter()
        .any(|t| headings.iter().any(|h| h.level == 2 && h.text.eq_ignore_ascii_case(t)));
    let format = if has_front_matter {
        RecordFormat::Madr
    } else if nygard_title || status_heading.is_some() {
        RecordFormat::Nygard
    } else if madr_headings {
        RecordFormat::Madr
    } else {
        RecordFormat::Unknown
    };

    let mut statuses = Vec::new();
    let mut links = Vec::new();
    let date;
    match format {
        RecordFormat::Nygard | RecordFormat::Unknown => {
            let first_section = headings.iter().find(|h| h.level >= 2).map_or(lines.len(), |h| h.line - 1);
            date = lines[body_start..first_section]
                .iter()
                .find_map(|l| l.strip_prefix("Date:"))
                .map(|d| d.trim().to_owned());
            if let Some(start) = status_heading {
                // `_adr_status`: from `## Status` to the next line that starts with `#`.
                for (i, line) in lines.iter().enumerate().skip(start) {
                    if line.starts_with('#') {
                        break;
                    }
                    if line.trim().is_empty() {
                        continue;
                    }
                    match split_link_line(line) {
                        Some((kind, text, target)) => links.push(Link { kind, text, target, line: i + 1 }),
                        None => statuses.push(line.trim().to_owned()),
                    }
                }
            }
        }
        RecordFormat::Madr => {
            let field = |key: &str| front_matter.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            date = field("date");
            let status = field("status").or_else(|| {
                // MADR 2.x wrote metadata as list items under the title: `* Status: accepted`.
                lines[body_start..].iter().find_map(|l| {
                    l.strip_prefix("* Status:")
                        .or_else(|| l.strip_prefix("Status:"))
                        .map(|s| s.trim().to_owned())
                })
            });
            if let Some(status) = status {
                if let Some(link) = superseded_by_reference(&status) {
                    links.push(Link { line: 1, ..link });
                }
                statuses.push(status);
            }
            for (i, line) in lines.iter().enumerate().skip(body_start) {
                if in_code[i] {
                    continue;
                }
                if let Some((kind, text, target)) = split_link_line(line)
                    && is_record_target(&target)
                    && kind.len() <= 40
                    && !kind.contains(['[', ']', '(', ')', '`'])
                {
                    links.push(Link { kind, text, target, line: i + 1 });
                }
            }
        }
    }

    ParsedRecord {
        file_name: file_name.to_owned(),
        format,
        front_matter,
        has_front_matter,
        first_line,
        title,
        title_number,
        date,
        statuses,
        links,
        headings,
    }
}

/// `superseded by ADR-0005` or `superseded by [ADR-0005](0005-x.md)` in a MADR status.
fn superseded_by_reference(status: &str) -> Option<Link> {
    let lower = status.to_ascii_lowercase();
    let rest = status[lower.find("superseded by")? + "superseded by".len()..].trim();
    if let Some((_, text, target)) = split_link_line(&format!("Superseded by {rest}")) {
        return Some(Link { kind: "Superseded by".into(), text, target, line: 0 });
    }
    let reference = rest.split_whitespace().next()?.trim_end_matches(['.', ',']);
    Some(Link {
        kind: "Superseded by".into(),
        text: reference.to_owned(),
        target: reference.to_owned(),
        line: 0,
    })
}

/// The number a reference such as `ADR-0005`, `ADR 5` or `5` names.
pub fn reference_number(reference: &str) -> Option<u32> {
    let digits = reference.trim_start_matches(|c: char| !c.is_ascii_digit());
    let upto = digits.bytes().take_while(u8::is_ascii_digit).count();
    if upto == 0 || upto != digits.len() {
        return None;
    }
    digits.parse().ok()
}

/// `## Text` → `(2, "Text")`: up to three spaces, 1-6 `#`, then a space or the end; a closing run
/// of `#` is dropped.
fn atx_heading(line: &str) -> Option<(usize, String)> {
    let body = line.trim_start_matches(' ');
    if line.len() - body.len() > 3 {
        return None;
    }
    let level = body.bytes().take_while(|&b| b == b'#').count();
    if level == 0 || level > 6 {
        return None;
    }
    let rest = &body[level..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    let text = rest.trim();
    let text = match text.trim_end_matches('#') {
        "" => "",
        open if open.ends_with([' ', '\t']) => open.trim_end(),
        _ => text,
    };
    Some((level, text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NYGARD: &str = "# 2. Use MySQL Database\n\nDate: 2024-01-02\n\n## Status\n\nSuperseded by [3. Use \
                          PostgreSQL](0003-use-postgresql.md)\n\n## Context\n\nText.\n\n## Decision\n\nWe \
                          will.\n\n## Consequences\n\nSome.\n";

    #[test]
    fn a_nygard_record_is_read_as_adr_tools_reads_it() {
        let r = parse_record("0002-use-mysql-database.md", NYGARD);
        assert_eq!(r.format, RecordFormat::Nygard);
        assert_eq!(r.title.as_deref(), Some("2. Use MySQL Database"));
        assert_eq!(r.title_number, Some(2));
        assert_eq!(r.date.as_deref(), Some("2024-01-02"));
        assert!(r.statuses.is_empty());
        assert_eq!(r.links.len(), 1);
        assert_eq!(r.links[0].kind, "Superseded by");
        assert_eq!(r.links[0].target, "0003-use-postgresql.md");
        assert_eq!(r.link_title().as_deref(), Some("2. Use MySQL Database"));
        for h in ["Status", "Context", "Decision", "Consequences"] {
            assert!(r.has_heading(2, h), "{h}");
        }
    }

    #[test]
    fn a_madr_record_is_read_from_its_front_matter_and_body() {
        let text = "---\nstatus: \"superseded by ADR-0007\"\ndate: 2024-05-06\n---\n\n# Use Kafka\n\n## Context \
                    and Problem Statement\n\nWhy.\n\n```md\n# not a heading\nSupersedes [x](0001-x.md)\n```\n\n## \
                    More Information\n\nSupersedes [ADR-0001: Use files](0001-use-files.md).\n";
        let r = parse_record("0004-use-kafka.md", text);
        assert_eq!(r.format, RecordFormat::Madr);
        assert_eq!(r.title.as_deref(), Some("Use Kafka"));
        assert_eq!(r.date.as_deref(), Some("2024-05-06"));
        assert_eq!(r.statuses, vec!["superseded by ADR-0007"]);
        let links: Vec<_> = r.links.iter().map(|l| (l.kind.as_str(), l.target.as_str())).collect();
        assert_eq!(links, vec![("Superseded by", "ADR-0007"), ("Supersedes", "0001-use-files.md")]);
        assert_eq!(r.headings.iter().filter(|h| h.level == 1).count(), 1, "the fenced heading is not one");
        assert_eq!(adr_tools_title(&r.first_line), "-", "adr-tools titles a record with front matter `-`");
    }

    #[test]
    fn link_lines_split_like_adr_tools() {
        assert_eq!(
            split_link_line("Amended by [5. Use [brackets] here](0005-x.md)"),
            Some(("Amended by".into(), "5. Use [brackets] here".into(), "0005-x.md".into()))
        );
        assert_eq!(split_link_line("Accepted"), None);
        assert_eq!(reference_number("ADR-0007"), Some(7));
        assert_eq!(reference_number("ADR-7b"), None);
        assert_eq!(target_file_name("./docs/0002-x.md#status"), "0002-x.md");
    }

    #[test]
    fn headings_follow_commonmark_atx_rules() {
        assert_eq!(atx_heading("## Status"), Some((2, "Status".into())));
        assert_eq!(atx_heading("## Status ##"), Some((2, "Status".into())));
        assert_eq!(atx_heading("#hashtag"), None);
        assert_eq!(atx_heading("    # code"), None);
        assert_eq!(atx_heading("#"), Some((1, String::new())));
    }
}
