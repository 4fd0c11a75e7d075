//! The task's input: its fields, their defaults, and the checks that turn it into [`Settings`].
//!
//! Every tunable can be given at the top level or, as the Celery task `run_analysis(dataset_path,
//! analysis_type, parameters)` passed them, inside a `parameters` object; giving one in both
//! places is an error. Checks name the field at fault, as serde would.

use serde::{Deserialize, Serialize};
use taskhost_sdk::TaskError;

use crate::classify::DEFAULT_BOOTSTRAPS;
use crate::search::{DEFAULT_MAX_ACCEPTS, DEFAULT_MAX_REJECTS};

/// The name of the shipped reference, read from `/data/<name>.fasta`.
pub const BUILTIN_REFERENCE: &str = "rdp_gold_v4";
/// Default bootstrap confidence below which a rank is left unassigned (the source notes'
/// `min_confidence`; RDP's recommendation for full-length sequences, Wang et al. 2007).
pub const DEFAULT_MIN_CONFIDENCE: f64 = 0.8;
/// Default OTU identity: 97 % (Stackebrandt & Goebel 1994).
pub const DEFAULT_OTU_IDENTITY: f64 = 0.97;
/// Default identity to the closest reference below which a sequence is flagged as novel.
pub const DEFAULT_NOVELTY_IDENTITY: f64 = 0.97;
/// Sequences shorter than this are set aside (vsearch's `--minseqlength` default for
/// clustering, searching and classifying).
pub const MIN_SEQUENCE_LENGTH: usize = 32;
/// Longest sequence accepted, in bases: a full-length 16S or 18S gene fits comfortably, and
/// an alignment matrix stays under 10 MB.
pub const MAX_SEQUENCE_LENGTH: usize = 3_000;
/// Most distinct sequences (after dereplication) per task; the manifest's limits are sized
/// for this many amplicons of a few hundred bases.
pub const MAX_UNIQUE_SEQUENCES: usize = 5_000;
/// Most sequences in a reference given inline.
pub const MAX_REFERENCE_SEQUENCES: usize = 20_000;
/// Most bootstrap draws.
pub const MAX_BOOTSTRAPS: u32 = 1_000;

/// What to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisType {
    /// Classification, with diversity over unique sequences.
    Taxonomic,
    /// Best reference hit and novelty flags, with diversity over unique sequences.
    Novelty,
    /// OTU clustering, with diversity over OTUs.
    Clustering,
    /// All of the above.
    #[default]
    Full,
}

impl AnalysisType {
    pub fn classifies(self) -> bool {
        matches!(self, AnalysisType::Taxonomic | AnalysisType::Full)
    }
    pub fn clusters(self) -> bool {
        matches!(self, AnalysisType::Clustering | AnalysisType::Full)
    }
    pub fn searches_novelty(self) -> bool {
        matches!(self, AnalysisType::Novelty | AnalysisType::Full)
    }
    pub fn needs_reference(self) -> bool {
        self.classifies() || self.searches_novelty()
    }
}

/// Tunables, accepted at the top level and inside `parameters`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tunables {
    pub min_confidence: Option<f64>,
    pub otu_identity: Option<f64>,
    pub novelty_identity: Option<f64>,
    pub bootstrap_iterations: Option<u32>,
    pub seed: Option<u64>,
    pub max_accepts: Option<u32>,
    pub max_rejects: Option<u32>,
}

/// The task's input (see the README for the schema).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// FASTA text.
    #[serde(default)]
    pub fasta: Option<String>,
    /// A file under `/input` holding the FASTA (the host's file area).
    #[serde(default)]
    pub fasta_file: Option<String>,
    #[serde(default)]
    pub analysis_type: AnalysisType,
    /// The name of a shipped reference (default `rdp_gold_v4`).
    #[serde(default)]
    pub reference: Option<String>,
    /// A reference given inline: FASTA with taxonomy in the headers.
    #[serde(default)]
    pub reference_fasta: Option<String>,
    #[serde(default)]
    pub min_confidence: Option<f64>,
    #[serde(default)]
    pub otu_identity: Option<f64>,
    #[serde(default)]
    pub novelty_identity: Option<f64>,
    #[serde(default)]
    pub bootstrap_iterations: Option<u32>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub max_accepts: Option<u32>,
    #[serde(default)]
    pub max_rejects: Option<u32>,
    /// The same tunables, as the Celery task's `parameters` dict.
    #[serde(default)]
    pub parameters: Option<Tunables>,
}

/// Where the sequences come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastaSource {
    Inline(String),
    /// A relative path under `/input`.
    File(String),
}

/// Where the reference comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceSource {
    Builtin(String),
    Inline(String),
}

/// Checked settings of one analysis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub analysis_type: AnalysisType,
    pub min_confidence: f64,
    pub otu_identity: f64,
    pub novelty_identity: f64,
    pub bootstrap_iterations: u32,
    pub seed: u64,
    pub max_accepts: u32,
    pub max_rejects: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            analysis_type: AnalysisType::Full,
            min_confidence: DEFAULT_MIN_CONFIDENCE,
            otu_identity: DEFAULT_OTU_IDENTITY,
            novelty_identity: DEFAULT_NOVELTY_IDENTITY,
            bootstrap_iterations: DEFAULT_BOOTSTRAPS,
            seed: 0,
            max_accepts: DEFAULT_MAX_ACCEPTS as u32,
            max_rejects: DEFAULT_MAX_REJECTS as u32,
        }
    }
}

/// Picks a tunable from the top level or `parameters`, refusing both.
fn pick<T: Copy>(top: Option<T>, nested: Option<T>, field: &str) -> Result<Option<T>, TaskError> {
    match (top, nested) {
        (Some(_), Some(_)) => Err(TaskError::invalid_input(
            &format!("parameters.{field}"),
            format!("`{field}` is also given at the top level"),
        )),
        (value, None) | (None, value) => Ok(value),
    }
}

fn fraction(value: Option<f64>, field: &str, default: f64, low_exclusive: bool) -> Result<f64, TaskError> {
    let value = value.unwrap_or(default);
    let in_range =
        value.is_finite() && value <= 1.0 && if low_exclusive { value > 0.0 } else { value >= 0.0 };
    if in_range {
        Ok(value)
    } else {
        let range = if low_exclusive { "in (0, 1]" } else { "in [0, 1]" };
        Err(TaskError::invalid_input(field, format!("must be a fraction {range}, got {value}")))
    }
}

impl Input {
    /// Checks every field and returns the settings and the sources to read.
    pub fn validate(&self) -> Result<(Settings, FastaSource, Option<ReferenceSource>), TaskError> {
        let nested = self.parameters.clone().unwrap_or_default();
        let min_confidence = pick(self.min_confidence, nested.min_confidence, "min_confidence")?;
        let otu_identity = pick(self.otu_identity, nested.otu_identity, "otu_identity")?;
        let novelty_identity = pick(self.novelty_identity, nested.novelty_identity, "novelty_identity")?;
        let bootstraps =
            pick(self.bootstrap_iterations, nested.bootstrap_iterations, "bootstrap_iterations")?;
        let seed = pick(self.seed, nested.seed, "seed")?;
        let max_accepts = pick(self.max_accepts, nested.max_accepts, "max_accepts")?;
        let max_rejects = pick(self.max_rejects, nested.max_rejects, "max_rejects")?;

        let bootstrap_iterations = bootstraps.unwrap_or(DEFAULT_BOOTSTRAPS);
        if !(1..=MAX_BOOTSTRAPS).contains(&bootstrap_iterations) {
            return Err(TaskError::invalid_input(
                "bootstrap_iterations",
                format!("must be from 1 to {MAX_BOOTSTRAPS}, got {bootstrap_iterations}"),
            ));
        }
        let settings = Settings {
            analysis_type: self.analysis_type,
            min_confidence: fraction(min_confidence, "min_confidence", DEFAULT_MIN_CONFIDENCE, false)?,
            otu_identity: fraction(otu_identity, "otu_identity", DEFAULT_OTU_IDENTITY, true)?,
            novelty_identity: fraction(novelty_identity, "novelty_identity", DEFAULT_NOVELTY_IDENTITY, true)?,
            bootstrap_iterations,
            seed: seed.unwrap_or(0),
            max_accepts: max_accepts.unwrap_or(DEFAULT_MAX_ACCEPTS as u32),
            max_rejects: max_rejects.unwrap_or(DEFAULT_MAX_REJECTS as u32),
        };

        let fasta = match (&self.fasta, &self.fasta_file) {
            (Some(_), Some(_)) => {
                return Err(TaskError::invalid_input(
                    "fasta_file",
                    "give either `fasta` or `fasta_file`, not both",
                ));
            }
            (None, None) => {
                return Err(TaskError::invalid_input(
                    "fasta",
                    "missing: give `fasta` (FASTA text) or `fasta_file` (a file under /input)",
                ));
            }
            (Some(text), None) => FastaSource::Inline(text.clone()),
            (None, Some(name)) => FastaSource::File(check_file_name(name)?),
        };

        let reference = match (&self.reference, &self.reference_fasta) {
            (Some(_), Some(_)) => {
                return Err(TaskError::invalid_input(
                    "reference_fasta",
                    "give either `reference` (a shipped reference) or `reference_fasta`, not both",
                ));
            }
            (Some(name), None) if name != BUILTIN_REFERENCE => {
                return Err(TaskError::invalid_input(
                    "reference",
                    format!("unknown reference `{name}`; shipped: `{BUILTIN_REFERENCE}`"),
                ));
            }
            (_, Some(text)) => Some(ReferenceSource::Inline(text.clone())),
            (_, None) => Some(ReferenceSource::Builtin(BUILTIN_REFERENCE.to_owned())),
        };
        let reference = if settings.analysis_type.needs_reference() { reference } else { None };
        Ok((settings, fasta, reference))
    }
}

/// A file name under `/input`: relative, without `..`, `.` or empty components.
fn check_file_name(name: &str) -> Result<String, TaskError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.split('/').any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(TaskError::invalid_input(
            "fasta_file",
            format!("`{name}` is not a file name under /input (relative, without `.` or `..`)"),
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> Input {
        taskhost_sdk::serde_json::from_str(json).unwrap()
    }

    fn error(json: &str) -> String {
        match input(json).validate() {
            Err(TaskError::InvalidInput(message)) => message,
            other => panic!("{json}: expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let (settings, fasta, reference) = input(r#"{"fasta": ">a\nACGT"}"#).validate().unwrap();
        assert_eq!(settings, Settings::default());
        assert_eq!(settings.min_confidence, 0.8);
        assert_eq!(settings.otu_identity, 0.97);
        assert_eq!(fasta, FastaSource::Inline(">a\nACGT".into()));
        assert_eq!(reference, Some(ReferenceSource::Builtin("rdp_gold_v4".into())));
        let (settings, _, reference) =
            input(r#"{"fasta": ">a\nACGT", "analysis_type": "clustering"}"#).validate().unwrap();
        assert_eq!(settings.analysis_type, AnalysisType::Clustering);
        assert_eq!(reference, None, "clustering needs no reference");
    }

    #[test]
    fn parameters_may_come_nested_as_the_celery_task_passed_them() {
        let (settings, _, _) =
            input(r#"{"fasta_file": "s.fasta", "parameters": {"min_confidence": 0.5}}"#).validate().unwrap();
        assert_eq!(settings.min_confidence, 0.5);
        assert!(
            error(r#"{"fasta": "", "min_confidence": 0.5, "parameters": {"min_confidence": 0.6}}"#)
                .starts_with("parameters.min_confidence:")
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (r#"{}"#, "fasta: missing"),
            (r#"{"fasta": "", "fasta_file": "x"}"#, "fasta_file: give either"),
            (r#"{"fasta_file": "../etc/passwd"}"#, "fasta_file: `../etc/passwd`"),
            (r#"{"fasta_file": "/abs"}"#, "fasta_file:"),
            (r#"{"fasta": "", "min_confidence": 1.5}"#, "min_confidence: must be a fraction in [0, 1]"),
            (r#"{"fasta": "", "otu_identity": 0}"#, "otu_identity: must be a fraction in (0, 1]"),
            (r#"{"fasta": "", "novelty_identity": -0.1}"#, "novelty_identity:"),
            (r#"{"fasta": "", "bootstrap_iterations": 0}"#, "bootstrap_iterations: must be from 1"),
            (r#"{"fasta": "", "reference": "silva"}"#, "reference: unknown reference `silva`"),
            (
                r#"{"fasta": "", "reference": "rdp_gold_v4", "reference_fasta": ">a"}"#,
                "reference_fasta: give either",
            ),
        ];
        for (json, expected) in cases {
            let message = error(json);
            assert!(message.starts_with(expected), "{json}: {message}");
        }
    }
}
