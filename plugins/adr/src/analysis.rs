//! Checking a folder of decision records.
//!
//! Each record is read by [`crate::parse`] and checked against its own format's rules; then the
//! links between records and the numbering of the folder are checked. Every finding is an
//! [`Issue`] with a kind, a severity, the file and a message that says what to change:
//!
//! | kind | severity | when |
//! | --- | --- | --- |
//! | `unrecognised_format` | error | neither Nygard (`# N. Title`, `## Status`) nor MADR headings |
//! | `missing_title` | error | no `#` title (Nygard: not on the first line, where adr-tools reads it) |
//! | `missing_section` | error | Nygard: `Date:`, Status, Context, Decision, Consequences; MADR: Context and Problem Statement, Considered Options, Decision Outcome |
//! | `invalid_status` | error (Nygard) / warning (MADR, whose template allows others) | a status other than proposed, accepted, rejected, deprecated, superseded (by …) |
//! | `missing_status` | error (Nygard) / warning (MADR, where it is optional metadata) | no status at all |
//! | `inconsistent_status` | warning | two statuses at once, or a superseded record still `accepted` |
//! | `invalid_date` | error | a date that is not a real `YYYY-MM-DD` |
//! | `title_number_mismatch` | warning | `# 3. …` in `0004-….md` |
//! | `broken_link` | error | a link to a record that is not in the folder (or to itself) |
//! | `one_sided_link` | warning | `Supersedes` without the matching `Superseded by`, or the reverse |
//! | `duplicate_number` | error | two files with one number |
//! | `numbering_gap` | warning | numbers missing between 1 (0 for MADR folders) and the largest |
//! | `not_indexed` | warning | a `.md` file that `adr list` skips (not `NNNN-….md`) or a record name that breaks it (white space) |
//!
//! Only the files adr-tools lists are checked as records; other files (an index, a template, an
//! image) are reported at most as `not_indexed`.
//!
//! The valid statuses are Nygard's (proposed, accepted, deprecated, superseded) and MADR 4's
//! (proposed, rejected, accepted, deprecated, superseded by ADR-NNNN), compared without case.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::naming::{leading_number, listed_by_adr_tools, next_number};
use crate::parse::{ParsedRecord, RecordFormat, reference_number, target_file_name};
use crate::request::valid_date;
use crate::toc::indexable;

/// Statuses a record may have, lower case.
pub const VALID_STATUSES: &[&str] = &["proposed", "accepted", "rejected", "deprecated", "superseded"];

/// How serious an issue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The record or folder is wrong.
    Error,
    /// Worth a look.
    Warning,
}

/// What kind of issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// Neither format.
    UnrecognisedFormat,
    /// No title.
    MissingTitle,
    /// A required section is absent.
    MissingSection,
    /// A status outside the valid ones.
    InvalidStatus,
    /// No status.
    MissingStatus,
    /// Statuses that contradict each other or the links.
    InconsistentStatus,
    /// A malformed date.
    InvalidDate,
    /// The title's number is not the file's.
    TitleNumberMismatch,
    /// A link to a record that is not there.
    BrokenLink,
    /// A supersede link without its reverse.
    OneSidedLink,
    /// One number, several files.
    DuplicateNumber,
    /// Numbers missing in the sequence.
    NumberingGap,
    /// A file adr-tools does not index.
    NotIndexed,
}

impl IssueKind {
    /// The kind's name, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            IssueKind::UnrecognisedFormat => "unrecognised_format",
            IssueKind::MissingTitle => "missing_title",
            IssueKind::MissingSection => "missing_section",
            IssueKind::InvalidStatus => "invalid_status",
            IssueKind::MissingStatus => "missing_status",
            IssueKind::InconsistentStatus => "inconsistent_status",
            IssueKind::InvalidDate => "invalid_date",
            IssueKind::TitleNumberMismatch => "title_number_mismatch",
            IssueKind::BrokenLink => "broken_link",
            IssueKind::OneSidedLink => "one_sided_link",
            IssueKind::DuplicateNumber => "duplicate_number",
            IssueKind::NumberingGap => "numbering_gap",
            IssueKind::NotIndexed => "not_indexed",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Issue {
    /// What kind.
    pub kind: IssueKind,
    /// How serious.
    pub severity: Severity,
    /// The file it is about (none for folder-wide issues such as gaps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
    /// The section, for `missing_section`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// The link target, for link issues.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Issue {
    fn about(file: &str, kind: IssueKind, severity: Severity, message: String) -> Self {
        Issue { kind, severity, file_name: Some(file.to_owned()), message, section: None, target: None }
    }
}

/// A link and where it leads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkSummary {
    /// `Supersedes`, `Superseded by`, …
    pub kind: String,
    /// The target as written.
    pub target: String,
    /// The file it leads to, when it is in the folder.
    pub resolves_to: Option<String>,
}

/// What the analysis reports about one record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordSummary {
    /// File name.
    pub file_name: String,
    /// Number from the file name.
    pub number: Option<u32>,
    /// Format.
    pub format: RecordFormat,
    /// Title (the `#` heading).
    pub title: Option<String>,
    /// Date.
    pub date: Option<String>,
    /// Statuses (not links).
    pub status: Vec<String>,
    /// Links to other records.
    pub links: Vec<LinkSummary>,
    /// Section headings present (level 2 and 3).
    pub sections: Vec<String>,
    /// Required sections missing.
    pub missing_sections: Vec<String>,
    /// Listed by `adr list`.
    pub indexed: bool,
}

/// A run of missing numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// First missing number.
    pub from: u32,
    /// Last missing number.
    pub to: u32,
}

/// Files sharing a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateNumber {
    /// The number.
    pub number: u32,
    /// The files.
    pub files: Vec<String>,
}

/// The folder's numbering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Numbering {
    /// Smallest number.
    pub first: Option<u32>,
    /// Largest number.
    pub last: Option<u32>,
    /// Runs of missing numbers.
    pub gaps: Vec<Gap>,
    /// Numbers used more than once.
    pub duplicates: Vec<DuplicateNumber>,
    /// The number `adr new` would give the next record.
    pub next: u32,
}

/// The sections each format requires, as (level, heading).
fn required_sections(format: RecordFormat) -> &'static [(usize, &'static str)] {
    match format {
        RecordFormat::Nygard | RecordFormat::Unknown => {
            &[(2, "Status"), (2, "Context"), (2, "Decision"), (2, "Consequences")]
        }
        RecordFormat::Madr => {
            &[(2, "Context and Problem Statement"), (2, "Considered Options"), (2, "Decision Outcome")]
        }
    }
}

/// Checks one record on its own: format, title, sections, date, status.
pub fn check_record(record: &ParsedRecord) -> (RecordSummary, Vec<Issue>) {
    let file = record.file_name.as_str();
    let mut issues = Vec::new();
    let number = leading_number(file);
    let indexed = indexable(file);

    if !listed_by_adr_tools(file) {
        // Not a record (an index, a template, an image): only a Markdown file is worth a word.
        if file.ends_with(".md") {
            issues.push(Issue::about(
                file,
                IssueKind::NotIndexed,
                Severity::Warning,
                "adr-tools does not list it (a record's name is NNNN-title.md); it is not checked as a record"
                    .to_owned(),
            ));
        }
    } else if !indexed {
        issues.push(Issue::about(
            file,
            IssueKind::NotIndexed,
            Severity::Warning,
            "its name has white space, which breaks `adr list` and `adr generate toc`; use dashes".to_owned(),
        ));
    }

    let missing =
        if listed_by_adr_tools(file) { check_content(record, number, &mut issues) } else { Vec::new() };

    let summary = RecordSummary {
        file_name: file.to_owned(),
        number,
        format: record.format,
        title: record.title.clone(),
        date: record.date.clone(),
        status: record.statuses.clone(),
        links: record
            .links
            .iter()
            .map(|l| LinkSummary { kind: l.kind.clone(), target: l.target.clone(), resolves_to: None })
            .collect(),
        sections: record
            .headings
            .iter()
            .filter(|h| h.level >= 2 && h.level <= 3)
            .map(|h| h.text.clone())
            .collect(),
        missing_sections: missing,
        indexed,
    };
    (summary, issues)
}

/// Checks a listed record's title, sections, date and status; returns the missing sections.
fn check_content(record: &ParsedRecord, number: Option<u32>, issues: &mut Vec<Issue>) -> Vec<String> {
    let file = record.file_name.as_str();
    let mut missing = Vec::new();
    if record.format == RecordFormat::Unknown {
        issues.push(Issue::about(
            file,
            IssueKind::UnrecognisedFormat,
            Severity::Error,
            "neither a Nygard record (# N. Title, ## Status) nor a MADR one (## Context and Problem Statement, \
             ## Considered Options, ## Decision Outcome)"
                .to_owned(),
        ));
    } else {
        check_title(record, number, issues);
        for (level, heading) in required_sections(record.format) {
            if !record.has_heading(*level, heading) {
                missing.push((*heading).to_owned());
            }
        }
        if record.format == RecordFormat::Nygard && record.date.is_none() {
            missing.insert(0, "Date".to_owned());
        }
        for section in &missing {
            let message = if section == "Date" {
                "no `Date: YYYY-MM-DD` line under the title, as adr-tools writes it".to_owned()
            } else {
                format!("no `## {section}` section")
            };
            issues.push(Issue {
                section: Some(section.clone()),
                ..Issue::about(file, IssueKind::MissingSection, Severity::Error, message)
            });
        }
        if let Some(date) = &record.date
            && !valid_date(date)
        {
            issues.push(Issue::about(
                file,
                IssueKind::InvalidDate,
                Severity::Error,
                format!("date {date:?} is not a real date as YYYY-MM-DD"),
            ));
        }
        check_status(record, issues);
    }
    missing
}

fn check_title(record: &ParsedRecord, number: Option<u32>, issues: &mut Vec<Issue>) {
    let file = record.file_name.as_str();
    match record.format {
        RecordFormat::Nygard if !record.first_line.starts_with("# ") => issues.push(Issue::about(
            file,
            IssueKind::MissingTitle,
            Severity::Error,
            "the first line is not a `# N. Title` heading, and adr-tools takes the title from the first line"
                .to_owned(),
        )),
        _ if record.title.as_deref().is_none_or(str::is_empty) => issues.push(Issue::about(
            file,
            IssueKind::MissingTitle,
            Severity::Error,
            "no `# Title` heading".to_owned(),
        )),
        RecordFormat::Nygard => {
            if let (Some(in_title), Some(in_name)) = (record.title_number, number)
                && in_title != in_name
            {
                issues.push(Issue::about(
                    file,
                    IssueKind::TitleNumberMismatch,
                    Severity::Warning,
                    format!("the title says {in_title} but the file name says {in_name}"),
                ));
            }
        }
        _ => {}
    }
}

fn check_status(record: &ParsedRecord, issues: &mut Vec<Issue>) {
    let file = record.file_name.as_str();
    let words: Vec<String> =
        record.statuses.iter().map(|s| s.trim().trim_end_matches('.').to_ascii_lowercase()).collect();
    let mut valid = Vec::new();
    for (status, word) in record.statuses.iter().zip(&words) {
        let superseded_by = record.format == RecordFormat::Madr && word.starts_with("superseded by ");
        if VALID_STATUSES.contains(&word.as_str()) || superseded_by {
            valid.push(if superseded_by { "superseded" } else { word.as_str() });
        } else {
            // MADR's template ends its list of statuses with "…"; a custom one is worth a look,
            // not an error. adr-tools knows only its own.
            let severity =
                if record.format == RecordFormat::Madr { Severity::Warning } else { Severity::Error };
            issues.push(Issue::about(
                file,
                IssueKind::InvalidStatus,
                severity,
                format!(
                    "status {status:?} is not one of proposed, accepted, rejected, deprecated, superseded{}",
                    if record.format == RecordFormat::Madr { " by ADR-NNNN" } else { "" }
                ),
            ));
        }
    }
    let has_section = record.format == RecordFormat::Madr || record.has_heading(2, "Status");
    let superseded_link = record.links.iter().any(|l| l.kind.eq_ignore_ascii_case("Superseded by"));
    if record.statuses.is_empty() && record.links.is_empty() && has_section {
        let (severity, message) = match record.format {
            RecordFormat::Madr => (Severity::Warning, "no `status` in the front matter".to_owned()),
            _ => (Severity::Error, "the Status section is empty".to_owned()),
        };
        issues.push(Issue::about(file, IssueKind::MissingStatus, severity, message));
    }
    let distinct: BTreeSet<&str> = valid.iter().copied().collect();
    if distinct.len() > 1 {
        issues.push(Issue::about(
            file,
            IssueKind::InconsistentStatus,
            Severity::Warning,
            format!(
                "it has several statuses at once: {}",
                distinct.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    } else if superseded_link && distinct.contains("accepted") {
        issues.push(Issue::about(
            file,
            IssueKind::InconsistentStatus,
            Severity::Warning,
            "it is superseded but still says accepted (`adr new -s` removes `Accepted`)".to_owned(),
        ));
    }
}

/// Resolves every link and checks that supersede links are broken neither way nor one-sided.
/// Fills `summaries[i].links[k].resolves_to`.
pub fn check_links(records: &[ParsedRecord], summaries: &mut [RecordSummary]) -> Vec<Issue> {
    let by_name: BTreeMap<&str, usize> =
        records.iter().enumerate().map(|(i, r)| (r.file_name.as_str(), i)).collect();
    let mut by_number: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        if let Some(number) = leading_number(&r.file_name).filter(|_| listed_by_adr_tools(&r.file_name)) {
            by_number.entry(number).or_insert(i);
        }
    }
    let resolve = |target: &str| -> Option<usize> {
        if let Some(&i) = by_name.get(target_file_name(target)) {
            return Some(i);
        }
        by_number.get(&reference_number(target)?).copied()
    };
    let mut issues = Vec::new();
    let mut edges: Vec<(usize, String, usize)> = Vec::new();
    for (i, record) in records.iter().enumerate() {
        // A file `adr list` skips (an index, a template) is not checked as a record: MADR's
        // `adr-template.md` says `status: "{… | superseded by ADR-0123"` as an example.
        if !listed_by_adr_tools(&record.file_name) {
            continue;
        }
        for (k, link) in record.links.iter().enumerate() {
            match resolve(&link.target) {
                Some(j) if j == i => issues.push(Issue {
                    target: Some(link.target.clone()),
                    ..Issue::about(
                        &record.file_name,
                        IssueKind::BrokenLink,
                        Severity::Error,
                        format!("its `{}` link points at itself", link.kind),
                    )
                }),
                Some(j) => {
                    summaries[i].links[k].resolves_to = Some(records[j].file_name.clone());
                    edges.push((i, link.kind.to_ascii_lowercase(), j));
                }
                None => issues.push(Issue {
                    target: Some(link.target.clone()),
                    ..Issue::about(
                        &record.file_name,
                        IssueKind::BrokenLink,
                        Severity::Error,
                        format!(
                            "its `{}` link leads to {:?}, which is not in the folder",
                            link.kind, link.target
                        ),
                    )
                }),
            }
        }
    }
    let edge_set: BTreeSet<(usize, &str, usize)> =
        edges.iter().map(|(f, k, t)| (*f, k.as_str(), *t)).collect();
    for (from, kind, to) in &edges {
        let reverse = match kind.as_str() {
            "supersedes" => "superseded by",
            "superseded by" => "supersedes",
            _ => continue,
        };
        if !edge_set.contains(&(*to, reverse, *from)) {
            let reverse_title = if reverse == "supersedes" { "Supersedes" } else { "Superseded by" };
            issues.push(Issue {
                target: Some(records[*from].file_name.clone()),
                ..Issue::about(
                    &records[*to].file_name,
                    IssueKind::OneSidedLink,
                    Severity::Warning,
                    format!(
                        "{} says `{}` it, but it has no `{reverse_title}` link back",
                        records[*from].file_name,
                        if kind == "supersedes" { "Supersedes" } else { "Superseded by" },
                    ),
                )
            });
        }
        if kind == "superseded by" {
            continue;
        }
        // `from` supersedes `to`: `to` should say so in its status (a record that links back and is
        // still accepted was reported on its own, by `check_record`).
        let old = &records[*to];
        if old.links.iter().any(|l| l.kind.eq_ignore_ascii_case("Superseded by")) {
            continue;
        }
        let still_accepted = match old.format {
            RecordFormat::Madr => {
                old.statuses.iter().any(|s| !s.to_ascii_lowercase().starts_with("superseded"))
            }
            _ => old.statuses.iter().any(|s| s.eq_ignore_ascii_case("accepted")),
        };
        if still_accepted {
            issues.push(Issue::about(
                &old.file_name,
                IssueKind::InconsistentStatus,
                Severity::Warning,
                format!(
                    "{} supersedes it, but its status is still {}",
                    records[*from].file_name,
                    old.statuses.join(", ")
                ),
            ));
        }
    }
    issues
}

/// Numbers, gaps and duplicates of the records adr-tools lists.
pub fn check_numbering<'a>(file_names: impl IntoIterator<Item = &'a str> + Clone) -> (Numbering, Vec<Issue>) {
    let mut by_number: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for name in file_names.clone() {
        if listed_by_adr_tools(name)
            && let Some(number) = leading_number(name)
        {
            by_number.entry(number).or_default().push(name.to_owned());
        }
    }
    let mut issues = Vec::new();
    let duplicates: Vec<DuplicateNumber> = by_number
        .iter()
        .filter(|(_, files)| files.len() > 1)
        .map(|(&number, files)| {
            let mut files = files.clone();
            files.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            DuplicateNumber { number, files }
        })
        .collect();
    for d in &duplicates {
        issues.push(Issue {
            kind: IssueKind::DuplicateNumber,
            severity: Severity::Error,
            file_name: None,
            message: format!("number {} is used by {}", d.number, d.files.join(", ")),
            section: None,
            target: None,
        });
    }
    let first = by_number.keys().next().copied();
    let last = by_number.keys().next_back().copied();
    let mut gaps = Vec::new();
    if let Some(first) = first {
        // adr-tools numbers from 1, MADR from 0: a folder that starts at 0 or 1 is complete there.
        let mut expected = first.min(1);
        for &number in by_number.keys() {
            if number > expected {
                gaps.push(Gap { from: expected, to: number - 1 });
            }
            expected = number.saturating_add(1);
        }
    }
    for gap in &gaps {
        let message = if gap.from == gap.to {
            format!("number {} is missing", gap.from)
        } else {
            format!("numbers {} to {} are missing", gap.from, gap.to)
        };
        issues.push(Issue {
            kind: IssueKind::NumberingGap,
            severity: Severity::Warning,
            file_name: None,
            message,
            section: None,
            target: None,
        });
    }
    let numbering = Numbering { first, last, gaps, duplicates, next: next_number(file_names) };
    (numbering, issues)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_record;

    fn nygard(number: u32, title: &str, status: &str) -> String {
        format!(
            "# {number}. {title}\n\nDate: 2024-01-02\n\n## Status\n\n{status}\n\n## Context\n\nC.\n\n## \
             Decision\n\nD.\n\n## Consequences\n\nE.\n"
        )
    }

    fn kinds(issues: &[Issue]) -> Vec<&'static str> {
        issues.iter().map(|i| i.kind.name()).collect()
    }

    #[test]
    fn a_complete_record_has_no_issues() {
        let record = parse_record("0001-a.md", &nygard(1, "A", "Accepted"));
        let (summary, issues) = check_record(&record);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(summary.sections, vec!["Status", "Context", "Decision", "Consequences"]);
    }

    #[test]
    fn missing_sections_bad_statuses_and_dates_are_reported() {
        let text = "# 1. A\n\nDate: 2024-02-30\n\n## Status\n\nApproved\n\n## Context\n\nC.\n";
        let (summary, issues) = check_record(&parse_record("0001-a.md", text));
        assert_eq!(summary.missing_sections, vec!["Decision", "Consequences"]);
        assert_eq!(
            kinds(&issues),
            vec!["missing_section", "missing_section", "invalid_date", "invalid_status"]
        );
        let text = nygard(2, "B", "Accepted\n\nProposed");
        assert_eq!(
            kinds(&check_record(&parse_record("0003-b.md", &text)).1),
            vec!["title_number_mismatch", "inconsistent_status"]
        );
    }

    #[test]
    fn links_are_resolved_and_one_sided_or_broken_ones_reported() {
        let records = vec![
            parse_record("0001-a.md", &nygard(1, "A", "Accepted")),
            parse_record("0002-b.md", &nygard(2, "B", "Accepted\n\nSupersedes [1. A](0001-a.md)")),
            parse_record("0003-c.md", &nygard(3, "C", "Accepted\n\nAmends [9. Gone](0009-gone.md)")),
        ];
        let mut summaries: Vec<RecordSummary> = records.iter().map(|r| check_record(r).0).collect();
        let issues = check_links(&records, &mut summaries);
        assert_eq!(kinds(&issues), vec!["broken_link", "one_sided_link", "inconsistent_status"]);
        assert_eq!(issues[1].file_name.as_deref(), Some("0001-a.md"));
        assert_eq!(summaries[1].links[0].resolves_to.as_deref(), Some("0001-a.md"));
    }

    #[test]
    fn links_in_files_adr_list_skips_are_not_checked() {
        let template = "---\nstatus: \"{proposed | superseded by ADR-0123\"\n---\n\n# {title}\n\n## Context and \
                        Problem Statement\n\n{context}\n\nSupersedes [ADR-0001](0001-a.md)\n";
        let records = vec![
            parse_record("0001-a.md", &nygard(1, "A", "Accepted")),
            parse_record("adr-template.md", template),
        ];
        assert_eq!(records[1].links.len(), 2, "the template's links are read");
        let mut summaries: Vec<RecordSummary> = records.iter().map(|r| check_record(r).0).collect();
        let issues = check_links(&records, &mut summaries);
        assert!(issues.is_empty(), "{issues:?}");
    }

    #[test]
    fn gaps_and_duplicates_are_found_among_listed_files() {
        let names = ["0001-a.md", "0002-b.md", "0002-c.md", "0005-d.md", "0009-e.md", "notes.txt"];
        let (numbering, issues) = check_numbering(names);
        assert_eq!(numbering.gaps, vec![Gap { from: 3, to: 4 }, Gap { from: 6, to: 8 }]);
        assert_eq!(numbering.duplicates[0].files, vec!["0002-b.md", "0002-c.md"]);
        assert_eq!((numbering.first, numbering.last, numbering.next), (Some(1), Some(9), 10));
        assert_eq!(kinds(&issues), vec!["duplicate_number", "numbering_gap", "numbering_gap"]);
        let (numbering, _) = check_numbering(["0000-use-madr.md", "0001-x.md"]);
        assert!(numbering.gaps.is_empty());
        let (numbering, _) = check_numbering(["0003-x.md"]);
        assert_eq!(numbering.gaps, vec![Gap { from: 1, to: 2 }]);
    }
}
