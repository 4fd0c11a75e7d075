//! Amending the record that a new one supersedes.
//!
//! A supersede link is written on both records. The new record's side is part of its Status
//! section (Nygard) or More Information (MADR) and is written by [`crate::render`]; this module
//! rewrites the old record:
//!
//! - **Nygard**: exactly what `adr new -s N` does to record N, transcribed from adr-tools 3.0.0.
//!   First `_adr_add_link N "Superseded by" NEW`, an awk script that, at the first `##` line after
//!   `## Status`, inserts `Superseded by [NEW's title](NEW's file)` and a blank line; then
//!   `_adr_remove_status Accepted N`, an awk script that drops the line `Accepted` from the
//!   Status section and squeezes runs of blank lines in it to one. Another status (`Proposed`)
//!   stays, as with adr-tools. One deliberate difference: when Status is the record's last
//!   section, adr-tools inserts nothing (its awk only inserts before a following heading); here
//!   the link is added at the end of the section, so that the link is never lost.
//! - **MADR**: the front matter's status becomes `superseded by ADR-NNNN`, the form of MADR's
//!   template (front matter is added when the record has none), and `Superseded by [ADR-NNNN:
//!   Title](NNNN-….md)` is added at the end of `## More Information` (created when missing), where
//!   MADR ADR-0009 puts links between records.

use crate::parse::{RecordFormat, parse_record};

/// The old record's text, amended to say that `new_file` (titled `new_link_title`, numbered
/// `new_number`) supersedes it.
pub fn amend_superseded(
    old_file: &str,
    old_content: &str,
    new_number: u32,
    new_file: &str,
    new_link_title: &str,
) -> String {
    match parse_record(old_file, old_content).format {
        RecordFormat::Madr => amend_madr(old_content, new_number, new_file, new_link_title),
        RecordFormat::Nygard | RecordFormat::Unknown => {
            let linked = add_link(old_content, "Superseded by", new_link_title, new_file);
            remove_status(&linked, "Accepted")
        }
    }
}

/// The lines of a file as awk reads them (a final newline does not make an empty last line).
fn awk_lines(content: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = content.split('\n').collect();
    if content.ends_with('\n') || content.is_empty() {
        lines.pop();
    }
    lines
}

/// awk's output: every printed line ends with a newline.
fn awk_output(lines: &[String]) -> String {
    let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// adr-tools' `_adr_add_link SOURCE TYPE TARGET`, on SOURCE's text.
pub fn add_link(content: &str, link_type: &str, target_title: &str, target_file: &str) -> String {
    let link = format!("{link_type} [{target_title}]({target_file})");
    let mut out: Vec<String> = Vec::new();
    let mut in_status_section = false;
    let mut added = false;
    for line in awk_lines(content) {
        if line.starts_with("##") {
            if in_status_section {
                out.push(link.clone());
                out.push(String::new());
                added = true;
            }
            in_status_section = false;
        }
        if line == "## Status" {
            in_status_section = true;
        }
        out.push(line.to_owned());
    }
    if in_status_section && !added {
        // Status is the last section: adr-tools would drop the link; keep it.
        if out.last().is_some_and(|l| !l.trim().is_empty()) {
            out.push(String::new());
        }
        out.push(link);
    }
    awk_output(&out)
}

/// adr-tools' `_adr_remove_status STATUS FILE`, on FILE's text.
pub fn remove_status(content: &str, status: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut in_status_section = false;
    let mut after_blank = false;
    for line in awk_lines(content) {
        if line.starts_with("##") {
            in_status_section = false;
        }
        if line == "## Status" {
            in_status_section = true;
        }
        let blank = line.chars().all(char::is_whitespace);
        if in_status_section && blank {
            if !after_blank {
                out.push(line.to_owned());
            }
            after_blank = true;
            continue;
        }
        if in_status_section && line == status {
            continue;
        }
        if in_status_section {
            after_blank = false;
        }
        out.push(line.to_owned());
    }
    awk_output(&out)
}

/// The MADR amendment: front-matter status and a More Information link.
fn amend_madr(content: &str, new_number: u32, new_file: &str, new_link_title: &str) -> String {
    let status = format!("status: superseded by ADR-{new_number:04}");
    let mut lines: Vec<String> = awk_lines(content).into_iter().map(str::to_owned).collect();
    let front_matter_end = if lines.first().map(|l| l.trim_end()) == Some("---") {
        lines.iter().skip(1).position(|l| matches!(l.trim_end(), "---" | "...")).map(|p| p + 1)
    } else {
        None
    };
    match front_matter_end {
        Some(end) => match lines[1..end].iter().position(|l| l.starts_with("status:")) {
            Some(at) => {
                // Drop the old value, including continuation lines of a multi-line scalar.
                let at = at + 1;
                let continued = lines[at + 1..end].iter().take_while(|l| l.starts_with([' ', '\t'])).count();
                lines.splice(at..at + 1 + continued, [status]);
            }
            None => lines.insert(1, status),
        },
        None => {
            lines.splice(0..0, ["---".to_owned(), status, "---".to_owned(), String::new()]);
        }
    }

    let link = format!("Superseded by [{new_link_title}]({new_file})");
    let more_information = lines.iter().position(|l| l.trim_end() == "## More Information");
    match more_information {
        Some(at) => {
            let end = lines[at + 1..]
                .iter()
                .position(|l| l.starts_with("# ") || l.starts_with("## "))
                .map_or(lines.len(), |p| at + 1 + p);
            let mut insert_at = end;
            while insert_at > at + 1 && lines[insert_at - 1].trim().is_empty() {
                insert_at -= 1;
            }
            let mut block = vec![String::new(), link];
            if end < lines.len() {
                block.push(String::new());
            }
            lines.splice(insert_at..end, block);
        }
        None => {
            while lines.last().is_some_and(|l| l.trim().is_empty()) {
                lines.pop();
            }
            lines.extend([String::new(), "## More Information".to_owned(), String::new(), link]);
        }
    }
    awk_output(&lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str =
        "# 2. Use MySQL Database\n\nDate: 2024-01-02\n\n## Status\n\nAccepted\n\n## Context\n\nText.\n";

    #[test]
    fn a_nygard_record_is_amended_as_adr_new_dash_s_does() {
        let amended = amend_superseded(
            "0002-use-mysql-database.md",
            OLD,
            3,
            "0003-use-postgresql.md",
            "3. Use PostgreSQL",
        );
        assert_eq!(
            amended,
            "# 2. Use MySQL Database\n\nDate: 2024-01-02\n\n## Status\n\nSuperseded by [3. Use \
             PostgreSQL](0003-use-postgresql.md)\n\n## Context\n\nText.\n"
        );
    }

    #[test]
    fn another_status_stays_and_a_last_status_section_still_gets_its_link() {
        let proposed = OLD.replace("Accepted", "Proposed");
        let amended = amend_superseded("0002-x.md", &proposed, 3, "0003-y.md", "3. Y");
        assert!(
            amended.contains("## Status\n\nProposed\n\nSuperseded by [3. Y](0003-y.md)\n\n## Context"),
            "{amended}"
        );
        let last = "# 2. X\n\n## Status\n\nAccepted\n";
        assert_eq!(
            amend_superseded("0002-x.md", last, 3, "0003-y.md", "3. Y"),
            "# 2. X\n\n## Status\n\nSuperseded by [3. Y](0003-y.md)\n"
        );
    }

    #[test]
    fn a_madr_record_gets_its_status_and_a_more_information_link() {
        let old = "---\nstatus: accepted\ndate: 2024-01-02\n---\n\n# Use MySQL\n\n## Context and Problem \
                   Statement\n\nWhy.\n\n## More Information\n\nSee the wiki.\n\n";
        let amended = amend_superseded(
            "0002-use-mysql.md",
            old,
            5,
            "0005-use-postgresql.md",
            "ADR-0005: Use PostgreSQL",
        );
        assert_eq!(
            amended,
            "---\nstatus: superseded by ADR-0005\ndate: 2024-01-02\n---\n\n# Use MySQL\n\n## Context and Problem \
             Statement\n\nWhy.\n\n## More Information\n\nSee the wiki.\n\nSuperseded by [ADR-0005: Use \
             PostgreSQL](0005-use-postgresql.md)\n"
        );
        let bare =
            "# Use MySQL\n\n## Context and Problem Statement\n\nWhy.\n\n## Considered Options\n\n* A\n";
        let amended = amend_superseded("0002-use-mysql.md", bare, 5, "0005-p.md", "ADR-0005: P");
        assert!(
            amended.starts_with("---\nstatus: superseded by ADR-0005\n---\n\n# Use MySQL\n"),
            "{amended}"
        );
        assert!(
            amended.ends_with("* A\n\n## More Information\n\nSuperseded by [ADR-0005: P](0005-p.md)\n"),
            "{amended}"
        );
    }
}
