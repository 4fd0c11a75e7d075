//! Oracle: adr-tools (Debian package `adr-tools`, 3.0.0) writes, reads and indexes records; the
//! plugin's file names, numbers, supersede links, amended records, `adr list` and `adr generate
//! toc` must be the ones adr-tools gives, byte for byte.

mod common;

use std::fs;

use adr::naming;
use common::{adr_folder, generate_request, read_folder, records_json, run_adr};
use serde_json::json;

/// Titles with punctuation, non-ASCII letters and runs of separators (but none of `&`, `|`, `\`
/// or the upper-case words NUMBER, TITLE, DATE, STATUS, which adr-tools' own `sed` template
/// substitution mangles).
const TITLES: &[&str] = &[
    "Use PostgreSQL (v16) for Persistence!",
    "Café au lait — naïve résumé",
    "  leading and trailing  ",
    "C++ / Rust: 50% faster?",
    "Use UTF-8 everywhere",
    "Über-fast caches",
    "Do X, then Y; maybe Z",
    "Tabs\tand spaces",
    "Record architecture decisions",
];

#[test]
fn file_names_and_numbers_are_the_ones_adr_new_gives() {
    let (root, records) = adr_folder();
    // Entries that are not records still count for the next number, as in adr-tools.
    fs::create_dir(records.join("templates")).unwrap();
    fs::write(records.join("0007-from-another-branch.md"), "# 7. Other\n").unwrap();
    fs::write(records.join("12-notes.txt"), "notes\n").unwrap();
    for title in TITLES {
        let before: Vec<String> = fs::read_dir(&records)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let number = naming::next_number(before.iter().map(String::as_str));
        let created = run_adr(root.path(), &["new", title], "2024-03-04");
        assert_eq!(
            created.trim_end(),
            format!("doc/adr/{}", naming::file_name(number, title)),
            "title {title:?}"
        );
    }
}

#[test]
fn a_generated_nygard_record_has_the_lines_adr_new_writes() {
    let (root, records) = adr_folder();
    // Titles are trimmed and their white space collapsed (adr-tools keeps it verbatim, trailing
    // blanks included); the file name is the same either way (see the test above).
    let verbatim: Vec<&str> = TITLES.iter().copied().filter(|t| adr::text::inline(t) == *t).collect();
    for (i, title) in verbatim.iter().enumerate() {
        let made = run_adr(root.path(), &["new", title], "2024-03-04");
        let skeleton = fs::read_to_string(root.path().join(made.trim_end())).unwrap();
        let generated = adr::generate_record(&generate_request(json!({
            "title": title,
            "context": "Some context.",
            "options": ["The option"],
            "date": "2024-03-04",
            "number": i + 1,
        })))
        .output;
        assert_eq!(format!("doc/adr/{}", generated.record.file_name), made.trim_end());
        // Same headings, date and status lines, in the same order; the generated record has
        // more body text, never other structure.
        let structure = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with('#') || l.starts_with("Date: ") || *l == "Accepted")
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(structure(&generated.record.content), structure(&skeleton), "title {title:?}");
        assert_eq!(
            generated.record.content.lines().take(7).collect::<Vec<_>>(),
            skeleton.lines().take(7).collect::<Vec<_>>(),
            "title, date and status read as adr-tools writes them"
        );
    }
    assert_eq!(read_folder(&records).len(), verbatim.len());
}

#[test]
fn superseding_writes_both_records_as_adr_new_dash_s_does() {
    // Two folders with the same two records made by adr-tools.
    let (tools_root, tools_records) = adr_folder();
    run_adr(tools_root.path(), &["new", "Use flat files for orders"], "2024-01-02");
    run_adr(tools_root.path(), &["new", "Use MySQL Database"], "2024-02-03");
    let (own_root, own_records) = adr_folder();
    for (name, content) in read_folder(&tools_records) {
        fs::write(own_records.join(name), content).unwrap();
    }
    let old_name = "0002-use-mysql-database.md";
    let old_content = fs::read_to_string(own_records.join(old_name)).unwrap();

    // adr-tools supersedes record 2.
    let title = "Use PostgreSQL for order persistence";
    let made = run_adr(tools_root.path(), &["new", "-s", "2", title], "2024-03-04");
    let tools_new = fs::read_to_string(tools_root.path().join(made.trim_end())).unwrap();
    let tools_old = fs::read_to_string(tools_records.join(old_name)).unwrap();

    // The plugin does, from the folder's names and the old record's text.
    let existing: Vec<String> = read_folder(&own_records).into_iter().map(|(n, _)| n).collect();
    let generated = adr::generate_record(&generate_request(json!({
        "title": title,
        "context": "Orders need transactions.",
        "options": ["PostgreSQL", "MySQL"],
        "decision": "PostgreSQL",
        "date": "2024-03-04",
        "existing_files": existing,
        "supersedes": {"file_name": old_name, "content": old_content},
    })))
    .output;
    assert_eq!(format!("doc/adr/{}", generated.record.file_name), made.trim_end());
    let amended = generated.superseded.as_ref().and_then(|s| s.content.clone()).unwrap();
    assert_eq!(amended, tools_old, "the superseded record is amended exactly as adr-tools amends it");

    // The new records' Status sections agree, as adr-tools' own `_adr_status` reads them.
    fs::write(own_records.join(old_name), &amended).unwrap();
    fs::write(own_records.join(&generated.record.file_name), &generated.record.content).unwrap();
    let status = |root: &std::path::Path, reference: &str| {
        let output = std::process::Command::new("/usr/libexec/adr-tools/_adr_status")
            .arg(reference)
            .current_dir(root)
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(status(own_root.path(), "0003"), status(tools_root.path(), "0003"));
    assert_eq!(
        status(own_root.path(), "0003"),
        "Accepted\nSupersedes [2. Use MySQL Database](0002-use-mysql-database.md)\n"
    );
    assert_eq!(status(own_root.path(), "0002"), status(tools_root.path(), "0002"));
    assert!(tools_new.contains("## Status\n\nAccepted\n\nSupersedes [2. Use MySQL Database](0002-use-mysql-database.md)\n\n## Context"));
    assert!(generated.record.content.contains(
        "## Status\n\nAccepted\n\nSupersedes [2. Use MySQL Database](0002-use-mysql-database.md)\n\n## Context"
    ));

    // adr-tools draws the same link graph over both folders.
    assert_eq!(
        run_adr(own_root.path(), &["generate", "graph"], "2024-03-04"),
        run_adr(tools_root.path(), &["generate", "graph"], "2024-03-04")
    );
}

#[test]
fn adr_list_and_the_toc_of_a_mixed_folder_match_adr_tools() {
    let (root, records) = adr_folder();
    run_adr(root.path(), &["init"], "2024-01-01");
    run_adr(root.path(), &["new", "Use MySQL Database"], "2024-02-03");
    // A generated Nygard record that supersedes 2, and a generated MADR one.
    let existing: Vec<String> = read_folder(&records).into_iter().map(|(n, _)| n).collect();
    let old = fs::read_to_string(records.join("0002-use-mysql-database.md")).unwrap();
    let mut input = common::database_decision();
    input["existing_files"] = json!(existing);
    input["supersedes"] = json!({"file_name": "0002-use-mysql-database.md", "content": old});
    let nygard = adr::generate_record(&generate_request(input)).output;
    fs::write(records.join(&nygard.record.file_name), &nygard.record.content).unwrap();
    fs::write(records.join("0002-use-mysql-database.md"), nygard.superseded.unwrap().content.unwrap())
        .unwrap();
    let mut madr = common::database_decision_madr();
    madr["title"] = json!("Use Kafka for order events");
    madr["number"] = json!(5);
    let madr = adr::generate_record(&generate_request(madr)).output;
    fs::write(records.join(&madr.record.file_name), &madr.record.content).unwrap();
    // Files adr-tools skips, or lists despite an odd ending.
    fs::write(records.join("README.md"), "# Decisions\n").unwrap();
    fs::write(records.join("0006-draft.md.orig"), "# 6. Draft\n").unwrap();
    fs::write(root.path().join("intro.md"), "Decisions of the order service.\n").unwrap();
    fs::write(root.path().join("outro.md"), "Generated by taskhost.").unwrap();

    let files = read_folder(&records);
    let analysis = adr::analyze_records(&common::analyze_request(json!({
        "records": records_json(&files),
        "toc_intro": "Decisions of the order service.\n",
        "toc_outro": "Generated by taskhost.",
        "toc_link_prefix": "decisions/",
    })));
    let listed = run_adr(root.path(), &["list"], "2024-01-01");
    assert_eq!(analysis.list.join("\n") + "\n", listed);
    assert_eq!(
        analysis.toc,
        run_adr(
            root.path(),
            &["generate", "toc", "-i", "intro.md", "-o", "outro.md", "-p", "decisions/"],
            "2024-01-01"
        )
    );
    let plain = adr::analyze_records(&common::analyze_request(json!({"records": records_json(&files)})));
    assert_eq!(plain.toc, run_adr(root.path(), &["generate", "toc"], "2024-01-01"));
    assert!(plain.toc.contains(&format!("{}\n", nygard.record.toc_entry)), "{}", plain.toc);
    assert!(plain.toc.contains(&format!("{}\n", madr.record.toc_entry)), "{}", plain.toc);
}

#[test]
fn a_folder_kept_with_adr_tools_has_no_issues_until_it_is_broken() {
    let (root, records) = adr_folder();
    run_adr(root.path(), &["init"], "2024-01-01");
    run_adr(root.path(), &["new", "Use MySQL Database"], "2024-02-03");
    run_adr(root.path(), &["new", "-s", "2", "Use PostgreSQL Database"], "2024-03-04");
    run_adr(root.path(), &["new", "-l", "3:Amends:Amended by", "Tune PostgreSQL autovacuum"], "2024-04-05");
    let files = read_folder(&records);
    let clean = adr::analyze_records(&common::analyze_request(json!({"records": records_json(&files)})));
    assert!(clean.issues.is_empty(), "{:#?}", clean.issues);
    assert_eq!(clean.records[2].links[0].resolves_to.as_deref(), Some("0002-use-mysql-database.md"));
    assert_eq!(clean.numbering.next, 5);

    // Remove record 2: a broken link from 3 and a gap; corrupt 4's status and drop a section.
    let mut broken: Vec<(String, String)> =
        files.into_iter().filter(|(n, _)| !n.starts_with("0002")).collect();
    broken[2].1 =
        broken[2].1.replace("\nAccepted\n", "\nApproved\n").replace("## Consequences", "## Outcome");
    let report = adr::analyze_records(&common::analyze_request(json!({"records": records_json(&broken)})));
    let kinds: Vec<(&str, Option<&str>)> =
        report.issues.iter().map(|i| (i.kind.name(), i.file_name.as_deref())).collect();
    assert_eq!(
        kinds,
        vec![
            ("missing_section", Some("0004-tune-postgresql-autovacuum.md")),
            ("invalid_status", Some("0004-tune-postgresql-autovacuum.md")),
            ("broken_link", Some("0003-use-postgresql-database.md")),
            ("numbering_gap", None),
        ]
    );
}

#[test]
fn adr_tools_indexes_a_madr_folder_as_the_analysis_does() {
    // MADR 4.0.0's template folder (its record 0000, README and templates) and ten records made
    // by `adr new` from MADR's templates (see `common::madr_folder`).
    let (root, records) = common::madr_folder();
    let files = read_folder(&records);
    let analysis = adr::analyze_records(&common::analyze_request(json!({"records": records_json(&files)})));
    assert_eq!(analysis.list.join("\n") + "\n", run_adr(root.path(), &["list"], "2024-01-01"));
    assert_eq!(analysis.toc, run_adr(root.path(), &["generate", "toc"], "2024-01-01"));
    assert_eq!(analysis.list.len(), 11, "MADR's record 0000 and the ten, not the README or templates");
    // adr-tools titles a record by its first line: `-` for the front matter of MADR's full
    // template, the heading for the minimal one.
    assert!(
        analysis.toc.contains("\n* [-](0001-use-postgresql-for-order-persistence.md)\n"),
        "{}",
        analysis.toc
    );
    assert!(
        analysis.toc.contains(
            "\n* [Version the public API semantically](0006-version-the-public-api-semantically.md)\n"
        ),
        "{}",
        analysis.toc
    );
    // And `adr new` numbers the next record as the analysis predicts.
    assert_eq!(analysis.numbering.next, 11);
    let made = run_adr(root.path(), &["new", "Next decision"], "2024-01-01");
    assert_eq!(
        made.trim_end(),
        format!("doc/adr/{}", naming::file_name(analysis.numbering.next, "Next decision"))
    );
}
