//! Helpers shared by the oracle tests: the real data (fetched from Debian packages by
//! `oracle/fetch_test_data.sh`), the tools to compare with (vsearch from `oracle/apt.txt`,
//! scikit-bio in the Python of `TASKHOST_PYTHON`), and scratch folders.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use edna::fasta::{self, Unique};
use edna::reference::Reference;

/// The plugin's folder.
pub fn plugin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The folder with the test data, fetched once per test binary.
pub fn test_data() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = plugin_dir().join("oracle/fetch_test_data.sh");
        let dest = plugin_dir().join("../../target/edna-testdata");
        let output = Command::new("sh").arg(&script).arg(&dest).output().expect("running fetch_test_data.sh");
        assert!(
            output.status.success(),
            "{} failed (it downloads Debian packages with apt-get):\n{}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

pub fn read_test_file(name: &str) -> String {
    let path = test_data().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs a tool and returns its output, failing the test with its stderr if it fails.
pub fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(output.status.success(), "{command:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// `vsearch`, which `cargo xtask ci` installs from `oracle/apt.txt`.
pub fn vsearch() -> Command {
    let found =
        Command::new("vsearch").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(
        found,
        "vsearch is not installed: run `cargo xtask ci` (it installs plugins/edna/oracle/apt.txt) \
         or `apt-get install vsearch`"
    );
    let mut command = Command::new("vsearch");
    command.args(["--threads", "1", "--quiet"]);
    command
}

/// The Python with the oracle packages (`oracle/requirements.txt`).
pub fn python() -> Command {
    let python = std::env::var("TASKHOST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "TASKHOST_PYTHON is not set: run `cargo xtask ci`, or create the venv \
             (python3 -m venv target/oracle-venv && target/oracle-venv/bin/pip install -r \
             plugins/edna/oracle/requirements.txt) and export TASKHOST_PYTHON=$PWD/target/oracle-venv/bin/python"
        )
    });
    Command::new(python)
}

/// A fresh scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = plugin_dir().join("../../target/edna-scratch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The shipped reference.
pub fn shipped_reference() -> Reference {
    let text = std::fs::read_to_string(plugin_dir().join("data/rdp_gold_v4.fasta")).unwrap();
    Reference::parse(&text, 5_000).unwrap()
}

/// Distinct sequences of a FASTA file, sorted as vsearch sorts them.
pub fn uniques(path: &Path) -> Vec<Unique> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    fasta::dereplicate(&fasta::parse(&text, 5_000).unwrap())
}

/// Dereplicates a test FASTA with vsearch (`--derep_fulllength --sizeout`) into `dir`.
pub fn vsearch_dereplicated(name: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{name}.derep.fasta"));
    run(vsearch()
        .arg("--derep_fulllength")
        .arg(test_data().join(name))
        .args(["--sizein", "--sizeout", "--minseqlength", "1", "--output"])
        .arg(&out));
    out
}
