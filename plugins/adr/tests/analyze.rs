//! `analyze_adrs` as a whole, without a host: a MADR folder (MADR 4.0.0's own record, README and
//! templates from the npm package `madr`, and records `adr new` makes from MADR's templates; see
//! `common::madr_folder`) and folders broken on purpose.

mod common;

use adr::analysis::Severity;
use adr::parse::RecordFormat;
use adr::request::AnalyzeInput;
use common::{MADR_FOLDER_RECORDS, adr_tools_record, analyze_request, read_folder, records_json};
use serde_json::{Value, json};
use taskhost_sdk::TaskError;

/// MADR's record 0000, the files of MADR's `template/` that are not records, and the records
/// 0001-0010 made with adr-tools, as `(file name, content)` sorted by name.
fn madr_folder() -> Vec<(String, String)> {
    let (_root, records) = common::madr_folder();
    read_folder(&records)
}

const MADR_RECORD_0000: &str = "0000-use-markdown-architectural-decision-records.md";
/// The files of MADR's `template/` that `adr list` does not list, in byte order.
const MADR_NOT_RECORDS: &[&str] = &[
    "README.md",
    "adr-template-bare-minimal.md",
    "adr-template-bare.md",
    "adr-template-minimal.md",
    "adr-template.md",
];

fn analyze(records: Value) -> adr::AnalyzeOutput {
    adr::analyze_records(&analyze_request(json!({ "records": records })))
}

fn issues_of(report: &adr::AnalyzeOutput) -> Vec<(&'static str, Option<&str>)> {
    report.issues.iter().map(|i| (i.kind.name(), i.file_name.as_deref())).collect()
}

#[test]
fn a_madr_folder_reads_as_a_complete_madr_folder() {
    let files = madr_folder();
    let report = analyze(records_json(&files));
    assert_eq!(report.record_count, 1 + MADR_FOLDER_RECORDS.len() + MADR_NOT_RECORDS.len());
    assert_eq!(report.record_count, 16);
    let records: Vec<_> = report.records.iter().filter(|r| r.indexed).collect();
    assert_eq!(records.len(), 11);
    assert_eq!(records[0].file_name, MADR_RECORD_0000);
    assert!(records.iter().all(|r| r.format == RecordFormat::Madr));
    assert!(
        records.iter().all(|r| r.missing_sections.is_empty()),
        "every record has MADR's required sections"
    );
    // The records adr-tools made read back with the title, and from the full template the date
    // and status, it was given; the minimal template has no front matter, so neither.
    for (record, made) in records[1..].iter().zip(MADR_FOLDER_RECORDS) {
        assert_eq!(record.title.as_deref(), Some(made.title));
        if made.full_template {
            assert_eq!(record.date.as_deref(), Some(made.date));
            assert_eq!(record.status, vec!["Accepted".to_owned()]);
            assert!(record.sections.iter().any(|s| s == "Pros and Cons of the Options"));
        } else {
            assert_eq!(record.date, None);
            assert!(record.status.is_empty());
        }
    }
    assert!(records[0].status.is_empty() && records[0].date.is_none());
    assert_eq!((report.numbering.first, report.numbering.last), (Some(0), Some(10)));
    assert!(report.numbering.gaps.is_empty() && report.numbering.duplicates.is_empty());
    assert_eq!(report.numbering.next, 11);
    // No errors: a MADR record without front matter has no status (a warning: MADR's record 0000
    // and those from the minimal template), and the README and templates are not records.
    let mut expected = vec![("missing_status", Some(MADR_RECORD_0000))];
    let minimal: Vec<String> = MADR_FOLDER_RECORDS
        .iter()
        .enumerate()
        .filter(|(_, made)| !made.full_template)
        .map(|(i, made)| adr::naming::file_name(i as u32 + 1, made.title))
        .collect();
    assert_eq!(minimal.len(), 5);
    expected.extend(minimal.iter().map(|name| ("missing_status", Some(name.as_str()))));
    expected.extend(MADR_NOT_RECORDS.iter().map(|name| ("not_indexed", Some(*name))));
    assert_eq!(issues_of(&report), expected);
    assert_eq!(report.errors, 0);
    assert_eq!(report.warnings, 11);
    assert_eq!(report.toc.lines().filter(|l| l.starts_with("* [")).count(), 11);
}

#[test]
fn a_madr_folder_broken_on_purpose_is_reported_record_by_record() {
    let mut files = madr_folder();
    let find = |files: &[(String, String)], prefix: &str| {
        files.iter().position(|(n, _)| n.starts_with(prefix)).unwrap()
    };
    // 0005 is superseded by a record that does not exist; 0003 gets a status of its own (MADR
    // allows that, with a warning); 0006 loses a required section; 0009 says it supersedes 0001,
    // which does not say so back; 0007 is gone; 0010 gets a twin.
    let i = find(&files, "0005");
    assert!(files[i].1.contains("\nstatus: Accepted\n"));
    files[i].1 = files[i].1.replacen("\nstatus: Accepted\n", "\nstatus: superseded by ADR-0042\n", 1);
    let i = find(&files, "0003");
    files[i].1 = files[i].1.replacen("\nstatus: Accepted\n", "\nstatus: on hold\n", 1);
    let i = find(&files, "0006");
    assert!(files[i].1.contains("\n## Considered Options\n"));
    files[i].1 = files[i].1.replace("## Considered Options", "## Options");
    let i = find(&files, "0009");
    files[i].1.push_str(
        "\nSupersedes [ADR-0001: Use PostgreSQL for order persistence](0001-use-postgresql-for-order-persistence.md)\n",
    );
    files.retain(|(n, _)| !n.starts_with("0007"));
    files.push(("0010-another-ten.md".into(), "# Another ten\n\n## Context and Problem Statement\n\nX.\n\n## \
                Considered Options\n\n* A\n\n## Decision Outcome\n\nChosen option: \"A\", because it is the only one.\n"
        .into()));
    files.sort();
    let report = analyze(records_json(&files));
    let errors: Vec<_> = report
        .issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .map(|i| (i.kind.name(), i.file_name.as_deref(), i.target.as_deref()))
        .collect();
    assert_eq!(
        errors,
        vec![
            ("missing_section", Some("0006-version-the-public-api-semantically.md"), None),
            ("broken_link", Some("0005-keep-configuration-in-environment-variables.md"), Some("ADR-0042")),
            ("duplicate_number", None, None),
        ]
    );
    let missing = report.issues.iter().find(|i| i.kind.name() == "missing_section").unwrap();
    assert_eq!(missing.section.as_deref(), Some("Considered Options"));
    let warnings = |kind: &str| -> Vec<Option<&str>> {
        report.issues.iter().filter(|i| i.kind.name() == kind).map(|i| i.file_name.as_deref()).collect()
    };
    assert_eq!(warnings("invalid_status"), vec![Some("0003-deploy-services-as-containers-on-kubernetes.md")]);
    // 0001 does not link back, and its status is still accepted.
    assert_eq!(warnings("one_sided_link"), vec![Some("0001-use-postgresql-for-order-persistence.md")]);
    assert_eq!(warnings("inconsistent_status"), vec![Some("0001-use-postgresql-for-order-persistence.md")]);
    assert_eq!(warnings("numbering_gap"), vec![None]);
    assert_eq!(report.numbering.gaps, vec![adr::analysis::Gap { from: 7, to: 7 }]);
    assert_eq!(
        report.numbering.duplicates[0].files,
        vec!["0010-another-ten.md", "0010-run-database-migrations-at-deploy-time.md"]
    );
    // The record 0005 is superseded by is not in the folder; its link is read, not resolved.
    let superseded = report.records.iter().find(|r| r.file_name.starts_with("0005")).unwrap();
    assert_eq!(superseded.status, vec!["superseded by ADR-0042".to_owned()]);
    assert_eq!(superseded.links[0].resolves_to, None);
    // The rest are the intact folder's warnings: no status in 0000, 0006, 0008, 0010 and the twin
    // (0007 is gone; 0009 has a link now, which counts as its status, as in a Nygard Status
    // section), and MADR's README and templates.
    assert_eq!(
        warnings("missing_status"),
        vec![
            Some("0000-use-markdown-architectural-decision-records.md"),
            Some("0006-version-the-public-api-semantically.md"),
            Some("0008-authenticate-users-with-openid-connect.md"),
            Some("0010-another-ten.md"),
            Some("0010-run-database-migrations-at-deploy-time.md"),
        ]
    );
    assert_eq!(warnings("not_indexed").len(), MADR_NOT_RECORDS.len());
    assert_eq!((report.errors, report.warnings), (3, 5 + 5 + 4));
}

#[test]
fn nygard_records_with_every_kind_of_fault() {
    let good = adr_tools_record(1, "Record architecture decisions", "2024-01-01", "Accepted");
    let records = json!([
        {"file_name": "0001-record-architecture-decisions.md", "content": good},
        {"file_name": "0002-no-title.md", "content": "Some text first\n\n# 2. No title\n\nDate: 2024-01-01\n\n## Status\n\nAccepted\n\n## Context\n\nx\n\n## Decision\n\nx\n\n## Consequences\n\nx\n"},
        {"file_name": "0003-empty-status.md", "content": "# 3. Empty status\n\nDate: 2024-13-01\n\n## Status\n\n## Context\n\nx\n\n## Decision\n\nx\n\n## Consequences\n\nx\n"},
        {"file_name": "0004-superseded-but-accepted.md", "content": adr_tools_record(4, "Old", "2024-01-01", "Accepted\n\nSuperseded by [5. New](0005-new.md)")},
        {"file_name": "0005-new.md", "content": adr_tools_record(5, "New", "2024-01-01", "Accepted\n\nSupersedes [4. Old](0004-superseded-but-accepted.md)")},
        {"file_name": "0006-with spaces.md", "content": adr_tools_record(6, "Spaces", "2024-01-01", "Accepted")},
        {"file_name": "notes.txt", "content": "not a record"},
        {"file_name": "just-text.md", "content": "nothing"},
        {"file_name": "0007-prose.md", "content": "Just prose, no structure.\n"},
    ]);
    let report = analyze(records);
    assert_eq!(
        issues_of(&report),
        vec![
            ("missing_title", Some("0002-no-title.md")),
            ("invalid_date", Some("0003-empty-status.md")),
            ("missing_status", Some("0003-empty-status.md")),
            ("inconsistent_status", Some("0004-superseded-but-accepted.md")),
            ("not_indexed", Some("0006-with spaces.md")),
            ("not_indexed", Some("just-text.md")),
            ("unrecognised_format", Some("0007-prose.md")),
        ]
    );
    // The spaced name breaks adr-tools' word splitting, so it stays out of the list and the TOC.
    assert!(report.issues[4].message.contains("white space"));
    assert!(!report.toc.contains("Spaces"));
    assert_eq!(report.list.len(), 6);
    assert_eq!(report.list[0], "doc/adr/0001-record-architecture-decisions.md");
}

#[test]
fn an_empty_folder_is_fine_and_bad_names_are_refused() {
    let report = analyze(json!([]));
    assert!(report.issues.is_empty());
    assert_eq!(report.toc, "# Architecture Decision Records\n\n");
    assert_eq!(report.numbering.next, 1);

    let error = |input: Value| match adr::decode::<AnalyzeInput>(input).and_then(AnalyzeInput::validate) {
        Err(TaskError::InvalidInput(message)) => message,
        other => panic!("expected invalid input, got {other:?}"),
    };
    assert!(
        error(json!({"records": [{"file_name": "a/0001-x.md", "content": ""}]}))
            .starts_with("records[0].file_name: must be a plain file name")
    );
    assert!(
        error(json!({"records": [{"file_name": "0001-x.md", "content": ""}, {"file_name": "0001-x.md", "content": ""}]}))
            .starts_with("records[1].file_name: repeats records[0]")
    );
    assert!(
        error(json!({"records": [{"file_name": "0001-x.md"}]}))
            .starts_with("records[0]: missing field `content`")
    );
    assert!(
        error(json!({"records": [], "adr_dir": "/etc"}))
            .starts_with("adr_dir: must be a relative folder path")
    );
}
