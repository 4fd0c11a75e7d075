//! Requests shared by the integration and oracle tests.

#![allow(dead_code)]

use adr::request::{AnalyzeInput, AnalyzeRequest, GenerateInput, GenerateRequest};
use serde_json::{Value, json};

/// A realistic request: choosing the database of an order service, with a weighted matrix and
/// three personas.
pub fn database_decision() -> Value {
    json!({
        "title": "Use PostgreSQL for order persistence",
        "context": "The order service keeps orders in flat files on one host. Orders are lost when \
                    that host fails, and reporting needs ad hoc queries across orders and customers.\n\n\
                    We need a database that keeps every confirmed order (no lost writes), supports \
                    the reporting queries, and that our team of six can run.",
        "date": "2024-03-04",
        "decision_drivers": [
            {"name": "Data integrity", "weight": 3},
            {"name": "Operational cost", "weight": 2},
            "Query flexibility"
        ],
        "options": [
            {
                "name": "PostgreSQL",
                "description": "Open-source relational database with transactional DDL and JSONB.",
                "pros": ["it has ACID transactions, schema changes included", "JSONB covers the semi-structured order notes"],
                "cons": ["needs vacuum tuning under heavy update load"],
                "scores": {"Data integrity": 9, "Operational cost": 6, "Query flexibility": 9}
            },
            {
                "name": "MySQL",
                "description": "Open-source relational database, run by the hosting provider.",
                "pros": ["a managed offering is available from our provider"],
                "cons": ["schema changes are not transactional"],
                "scores": {"Data integrity": 7, "Operational cost": 8, "Query flexibility": 7}
            },
            {
                "name": "MongoDB",
                "pros": ["documents are flexible"],
                "cons": ["multi-document transactions need a replica set"],
                "neutral": ["the team has used it for logging only"],
                "scores": {"Data integrity": 5, "Operational cost": 7, "Query flexibility": 6}
            }
        ],
        "personas": [
            {"name": "Ada Lovelace", "role": "Database administrator",
             "stance": "Transactional schema changes make every migration safe to roll back.",
             "favours": "PostgreSQL", "opposes": ["MongoDB"], "concerns": ["Data integrity", "Backup and restore time"]},
            {"name": "Bob Kahn", "role": "Site reliability engineer",
             "stance": "A managed service keeps the pager quiet.",
             "favours": "MySQL", "concerns": ["Operational cost"]},
            {"name": "Chen Wei", "role": "Reporting lead",
             "stance": "Analysts need window functions and JSON queries.",
             "favours": "PostgreSQL"}
        ],
        "decision_makers": ["Architecture board"],
        "informed": ["Order team", "Reporting team"],
        "existing_files": ["0001-record-architecture-decisions.md", "0002-use-flat-files-for-orders.md"],
        "format": "nygard"
    })
}

/// The same decision in MADR.
pub fn database_decision_madr() -> Value {
    let mut input = database_decision();
    input["format"] = json!("madr");
    input["confirmation"] = json!(
        "The migration runbook is reviewed by the database administrator, \
                                   and the nightly restore test must pass before cut-over."
    );
    input["more_information"] = json!("Revisit when order volume exceeds 10,000 per minute.");
    input
}

/// A record as adr-tools' `adr new` writes it, with a body.
pub fn adr_tools_record(number: u32, title: &str, date: &str, status: &str) -> String {
    format!(
        "# {number}. {title}\n\nDate: {date}\n\n## Status\n\n{status}\n\n## Context\n\nContext of {number}.\n\n\
         ## Decision\n\nDecision {number}.\n\n## Consequences\n\nConsequences of {number}.\n"
    )
}

pub fn generate_request(input: Value) -> GenerateRequest {
    let input: GenerateInput = adr::decode(input).expect("the input decodes");
    input.validate().expect("the input is valid")
}

pub fn analyze_request(input: Value) -> AnalyzeRequest {
    let input: AnalyzeInput = adr::decode(input).expect("the input decodes");
    input.validate().expect("the input is valid")
}

/// adr-tools' `adr` command (Debian package `adr-tools`), or a failure that says how to get it.
pub fn adr_tools() -> std::path::PathBuf {
    let adr = std::path::PathBuf::from("/usr/bin/adr");
    assert!(
        adr.is_file(),
        "adr-tools is not installed: run `cargo xtask ci` (it installs plugins/adr/oracle/apt.txt) or \
         `apt-get install adr-tools`"
    );
    adr
}

/// Runs `adr ARGS` in `dir` (which holds `.adr-dir`), with a fixed date, no editor and byte-order
/// sorting; returns stdout, failing the test on a non-zero exit.
pub fn run_adr(dir: &std::path::Path, args: &[&str], date: &str) -> String {
    let output = std::process::Command::new(adr_tools())
        .current_dir(dir)
        .args(args)
        .env("ADR_DATE", date)
        .env("VISUAL", "true")
        .env("EDITOR", "true")
        .env("LC_ALL", "C")
        .output()
        .expect("running adr");
    assert!(
        output.status.success(),
        "adr {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("adr prints UTF-8")
}

/// A temporary folder set up as adr-tools expects: `.adr-dir` naming `doc/adr`, which exists.
pub fn adr_folder() -> (tempfile::TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(root.path().join(".adr-dir"), "doc/adr\n").expect("writing .adr-dir");
    let records = root.path().join("doc/adr");
    std::fs::create_dir_all(&records).expect("creating doc/adr");
    (root, records)
}

/// Every `(file name, content)` in an ADR folder, sorted by name.
pub fn read_folder(records: &std::path::Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(records)
        .expect("reading the ADR folder")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let content = std::fs::read_to_string(e.path()).expect("reading a record");
            (name, content)
        })
        .collect();
    files.sort();
    files
}

/// The `records` input of `analyze_adrs` for a folder's files.
pub fn records_json(files: &[(String, String)]) -> Value {
    Value::Array(files.iter().map(|(name, content)| json!({"file_name": name, "content": content})).collect())
}

/// MADR 4.0.0's `template/` folder, from the npm package `madr` (`oracle/package.json`): its lint
/// configuration `.markdownlint.yml`, its four `adr-template*.md`, its `README.md` and its first
/// decision record, `0000-use-markdown-architectural-decision-records.md`. Fails, saying how to get
/// it, when the package is not installed.
pub fn madr_template_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("oracle/node_modules/madr/template");
    assert!(
        dir.join(".markdownlint.yml").is_file() && dir.join("adr-template.md").is_file(),
        "MADR 4.0.0 (the npm package `madr`) is not installed in {}: run `cargo xtask ci` (it runs \
         `npm install` in plugins/adr/oracle) or `npm install` in plugins/adr/oracle",
        dir.display()
    );
    dir
}

/// A record [`madr_folder`] makes with `adr new`: title, date, and whether it comes from MADR's
/// full template (YAML front matter with status and date) or its minimal one (no front matter).
pub struct MadrFolderRecord {
    pub title: &'static str,
    pub date: &'static str,
    pub full_template: bool,
}

const fn made(title: &'static str, date: &'static str, full_template: bool) -> MadrFolderRecord {
    MadrFolderRecord { title, date, full_template }
}

/// The records 0001-0010 of [`madr_folder`], in order.
pub const MADR_FOLDER_RECORDS: &[MadrFolderRecord] = &[
    made("Use PostgreSQL for order persistence", "2024-01-08", true),
    made("Publish order events to Kafka", "2024-01-22", true),
    made("Deploy services as containers on Kubernetes", "2024-02-05", true),
    made("Trace requests with OpenTelemetry", "2024-02-19", true),
    made("Keep configuration in environment variables", "2024-03-04", true),
    made("Version the public API semantically", "2024-03-18", false),
    made("Test against real databases in containers", "2024-04-01", false),
    made("Authenticate users with OpenID Connect", "2024-04-15", false),
    made("Store uploaded files in object storage", "2024-04-29", false),
    made("Run database migrations at deploy time", "2024-05-13", false),
];

/// MADR's template `name` as an adr-tools template: the title placeholder (`# {short title, …}`)
/// becomes `TITLE`, and the front matter's `status:` and `date:` lines, when there are any,
/// `STATUS` and `DATE`, the words `adr new` substitutes. Nothing else changes.
fn madr_template_for_adr_tools(name: &str) -> String {
    let path = madr_template_dir().join(name);
    let text = std::fs::read_to_string(&path).expect("reading MADR's template");
    // adr-tools' `sed` replaces these words wherever they are; MADR's text has none of them.
    for word in ["NUMBER", "TITLE", "DATE", "STATUS"] {
        assert!(!text.contains(word), "{} contains {word}, which `adr new` would replace", path.display());
    }
    let (mut titles, mut statuses, mut dates) = (0, 0, 0);
    // The front matter is lines 1..closing, where `closing` is its closing `---` (0: none).
    let closing = if text.starts_with("---\n") {
        text.lines().skip(1).position(|l| l == "---").map_or(0, |end| end + 1)
    } else {
        0
    };
    let in_front_matter = |i: usize| i > 0 && i < closing;
    let mut out = String::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let body = line.trim_end_matches('\n');
        let replaced = if (closing == 0 || i > closing) && body.starts_with("# {") && body.ends_with('}') {
            titles += 1;
            "# TITLE"
        } else if in_front_matter(i) && body.starts_with("status:") {
            statuses += 1;
            "status: STATUS"
        } else if in_front_matter(i) && body.starts_with("date:") {
            dates += 1;
            "date: DATE"
        } else {
            out.push_str(line);
            continue;
        };
        out.push_str(replaced);
        out.push('\n');
    }
    let expected = if closing > 0 { (1, 1, 1) } else { (1, 0, 0) };
    assert_eq!((titles, statuses, dates), expected, "the placeholders of {}", path.display());
    out
}

/// A MADR decisions folder as a project that adopts MADR 4.0.0 and keeps it with adr-tools has it:
/// the files of MADR's `template/` (`cp node_modules/madr/template/* doc/adr/`: the record
/// `0000-use-markdown-architectural-decision-records.md`, `README.md` and the four
/// `adr-template*.md`), then the records [`MADR_FOLDER_RECORDS`] made by adr-tools' `adr new`
/// with MADR's `adr-template.md` or `adr-template-minimal.md` as the project template
/// (`doc/adr/templates/template.md`, see [`madr_template_for_adr_tools`]). Returns the root (with
/// `.adr-dir`) and `doc/adr`; the `templates` folder is not a file of `doc/adr` for [`read_folder`].
pub fn madr_folder() -> (tempfile::TempDir, std::path::PathBuf) {
    let (root, records) = adr_folder();
    let mut copied = 0;
    for entry in std::fs::read_dir(madr_template_dir()).expect("reading MADR's template folder") {
        let entry = entry.expect("reading MADR's template folder");
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_file() {
            std::fs::copy(entry.path(), records.join(&name)).expect("copying MADR's template folder");
            copied += 1;
        }
    }
    assert_eq!(copied, 6, "MADR 4.0.0's template/ holds a record, a README and four templates");
    std::fs::create_dir(records.join("templates")).expect("creating doc/adr/templates");
    let full = madr_template_for_adr_tools("adr-template.md");
    let minimal = madr_template_for_adr_tools("adr-template-minimal.md");
    for (i, record) in MADR_FOLDER_RECORDS.iter().enumerate() {
        let template = if record.full_template { &full } else { &minimal };
        std::fs::write(records.join("templates/template.md"), template).expect("writing the template");
        let created = run_adr(root.path(), &["new", record.title], record.date);
        assert_eq!(
            created.trim_end(),
            format!("doc/adr/{}", adr::naming::file_name(i as u32 + 1, record.title)),
            "adr new numbers the records after MADR's 0000"
        );
    }
    (root, records)
}
