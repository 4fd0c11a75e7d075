//! Oracles for the Markdown: markdownlint-cli (npm, in `oracle/package.json`) with MADR 4.0.0's own
//! lint configuration (`template/.markdownlint.yml` of the npm package `madr`, also in
//! `oracle/package.json`) passes on every generated record, MADR and Nygard, and on amended
//! superseded records; PyYAML (`oracle/requirements.txt`) reads the MADR front matter back to the
//! values given.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::generate_request;
use serde_json::{Value, json};

fn oracle_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oracle")
}

fn markdownlint() -> PathBuf {
    let bin = oracle_dir().join("node_modules/.bin/markdownlint");
    assert!(
        bin.is_file(),
        "markdownlint-cli is not installed: run `cargo xtask ci` (it runs `npm install` in plugins/adr/oracle) \
         or `npm install` in plugins/adr/oracle"
    );
    bin
}

/// MADR 4.0.0's markdownlint configuration, as the npm package `madr` ships it.
fn madr_lint_config() -> PathBuf {
    common::madr_template_dir().join(".markdownlint.yml")
}

fn python() -> String {
    std::env::var("TASKHOST_PYTHON").expect(
        "TASKHOST_PYTHON is not set: run `cargo xtask ci`, or create the oracle venv \
         (python3 -m venv target/oracle-venv && target/oracle-venv/bin/pip install -r plugins/adr/oracle/requirements.txt) \
         and export TASKHOST_PYTHON=$PWD/target/oracle-venv/bin/python",
    )
}

/// Requests whose text tries to break the Markdown: tabs, trailing blanks, runs of blank lines,
/// lines that look like headings or setext underlines, a fenced block with `#` comments, `|` in a
/// table cell, and front-matter values that need YAML quoting.
fn awkward() -> Value {
    json!({
        "title": "Cache sessions in Redis",
        "context": "\n\nSessions live in process memory.\t \n\n\n\n# They are lost on restart\nEvery deploy logs users out\n===\n\n```sh\n# today\nkill -HUP $PID\n```\n\n   ## not a section\n",
        "date": "2024-02-29",
        "decision_drivers": [{"name": "Latency | p99", "weight": 2.5}, "Cost"],
        "options": [
            {"name": "Redis | managed", "description": "In-memory store.\n\n\nManaged by the provider.",
             "pros": ["sub-millisecond reads"], "cons": ["another service to run"],
             "scores": {"Latency | p99": 9, "cost": 4}},
            {"name": "Sticky sessions", "pros": ["nothing new to run"], "cons": ["deploys still log users out"],
             "scores": {"Latency | p99": 8, "Cost": 9.5}}
        ],
        "personas": [
            {"name": "O'Brien: \"Ops\"", "role": "yes", "stance": "#1 rule: no new daemons.", "favours": "Sticky sessions",
             "opposes": ["redis | MANAGED"]},
            {"name": "Dana", "role": "Security: AppSec", "stance": "Sessions must survive key rotation.", "concerns": ["Key rotation"]}
        ],
        "decision": "Redis | managed",
        "decision_details": "Sessions expire after 30 minutes.\n\n\n\nTokens are opaque.",
        "decision_makers": ["Platform team: leads", "on"],
        "informed": ["All # developers"],
        "status": "proposed",
        "number": 4
    })
}

/// Every generated record the lint and YAML checks cover, as (file name, content).
fn generated_records() -> Vec<(String, String)> {
    let mut files = Vec::new();
    let superseded_nygard = common::adr_tools_record(2, "Use MySQL Database", "2024-01-02", "Accepted");
    let superseded_madr = "---\nstatus: accepted\ndate: 2024-01-02\n---\n\n# Use MySQL\n\n## Context and Problem \
                           Statement\n\nWhy.\n\n## Considered Options\n\n* MySQL\n\n## Decision Outcome\n\nChosen \
                           option: \"MySQL\", because it is the only option considered.\n";
    for format in ["madr", "nygard"] {
        let mut inputs = vec![common::database_decision(), awkward()];
        inputs.push(json!({"title": "Minimal", "context": "Only what is required.", "options": ["Only"], "date": "2024-01-01"}));
        let mut superseding = common::database_decision();
        superseding["supersedes"] =
            json!({"file_name": "0002-use-mysql-database.md", "content": superseded_nygard});
        inputs.push(superseding);
        let mut superseding = common::database_decision();
        superseding["title"] = json!("Use PostgreSQL instead of MySQL");
        superseding["supersedes"] = json!({"file_name": "0002-use-mysql.md", "content": superseded_madr});
        inputs.push(superseding);
        for mut input in inputs {
            input["format"] = json!(format);
            let output = adr::generate_record(&generate_request(input)).output;
            files.push((format!("{format}-{}", output.record.file_name), output.record.content));
            if let Some(old) = output.superseded {
                files.push((format!("{format}-amended-{}", old.file_name), old.content.unwrap()));
            }
        }
    }
    files
}

#[test]
fn markdownlint_with_madrs_configuration_passes_on_every_generated_record() {
    let dir = tempfile::tempdir().unwrap();
    let files = generated_records();
    for (name, content) in &files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    // MADR's own record and its two templates with explanations pass too, which shows the linter
    // and configuration are MADR's setup. (Its two bare templates have runs of blank lines where
    // the text goes, which MD012 flags.)
    for name in
        ["0000-use-markdown-architectural-decision-records.md", "adr-template.md", "adr-template-minimal.md"]
    {
        std::fs::copy(common::madr_template_dir().join(name), dir.path().join(format!("madr-own-{name}")))
            .unwrap();
    }
    let output = Command::new(markdownlint())
        .arg("--config")
        .arg(madr_lint_config())
        .arg(dir.path())
        .output()
        .expect("running markdownlint");
    assert!(
        output.status.success(),
        "markdownlint found problems:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(files.len(), 14);
}

#[test]
fn markdownlint_catches_what_the_plugin_guards_against() {
    // The same linter flags an unguarded record, so a pass above means something.
    let dir = tempfile::tempdir().unwrap();
    let bad = "# Title\n\n## Context\nText\t\n\n\n# Second title\n";
    std::fs::write(dir.path().join("0001-bad.md"), bad).unwrap();
    let output = Command::new(markdownlint())
        .arg("--config")
        .arg(madr_lint_config())
        .arg(dir.path())
        .output()
        .expect("running markdownlint");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    for rule in ["MD010", "MD012", "MD022", "MD025"] {
        assert!(report.contains(rule), "{rule} missing from:\n{report}");
    }
}

#[test]
fn pyyaml_reads_the_front_matter_back_to_the_values_given() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = awkward();
    input["format"] = json!("madr");
    let output = adr::generate_record(&generate_request(input)).output;
    let path = dir.path().join(&output.record.file_name);
    std::fs::write(&path, &output.record.content).unwrap();
    let run = Command::new(python())
        .arg(oracle_dir().join("front_matter.py"))
        .arg(&path)
        .output()
        .expect("running the front matter oracle");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let parsed: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        parsed[0],
        json!({
            "status": "proposed",
            "date": "2024-02-29",
            "decision-makers": "Platform team: leads, on",
            "consulted": "O'Brien: \"Ops\" (yes), Dana (Security: AppSec)",
            "informed": "All # developers",
        })
    );
}
