//! `edna`: eDNA amplicon analysis, after the `run_analysis` Celery task of the eDNA platform's
//! `analysis` queue.
//!
//! Input: sequences as FASTA (inline `fasta`, or `fasta_file` naming a file under `/input`),
//! an `analysis_type` (`taxonomic`, `novelty`, `clustering` or `full`), `min_confidence` and a
//! reference with taxonomy (the shipped `rdp_gold_v4`, or `reference_fasta`). Output: per
//! sequence its classification with bootstrap confidences, OTU and closest reference; per OTU
//! its abundance and taxonomy; a taxonomy summary; novelty flags; alpha diversity. See the
//! README for the model, its sources and the full schema.
//!
//! The science lives in plain modules that native tests exercise (and compare with vsearch
//! and scikit-bio); this file only reads the inputs and hands the host's [`Context`] to
//! [`pipeline::analyse`] as its observer.
//!
//! | module | what |
//! | --- | --- |
//! | [`fasta`] | FASTA reading, `;size=` abundances, dereplication |
//! | [`kmer`] | 8-mers |
//! | [`align`] | vsearch's global alignment and `--iddef 2` identity |
//! | [`search`] | vsearch's k-mer-ranked search with max accepts/rejects |
//! | [`cluster`] | `--cluster_size` greedy centroid OTUs |
//! | [`reference`] | reference sets with SINTAX or lineage headers |
//! | [`classify`] | the RDP naive Bayesian classifier with bootstrap confidence |
//! | [`diversity`] | richness, Shannon, Simpson, Chao1, Good's coverage |
//! | [`rng`] | SplitMix64 for reproducible bootstraps |
//! | [`settings`] | the input, its defaults and checks |
//! | [`pipeline`] | the stages, their events and the report |

pub mod align;
pub mod classify;
pub mod cluster;
pub mod diversity;
pub mod fasta;
pub mod kmer;
pub mod pipeline;
pub mod reference;
pub mod rng;
pub mod search;
pub mod settings;

use std::io::ErrorKind;

use taskhost_sdk::serde_json::{Value, json};
use taskhost_sdk::{Context, Level, Plugin, TaskError, export_plugin};

use crate::pipeline::{Observer, ReferenceSet, Report};
use crate::reference::Reference;
use crate::settings::{
    BUILTIN_REFERENCE, FastaSource, Input, MAX_REFERENCE_SEQUENCES, MAX_SEQUENCE_LENGTH, ReferenceSource,
};

/// Largest FASTA file read from `/input`, in bytes.
const MAX_FASTA_FILE_BYTES: u64 = 64 << 20;

/// The plugin.
pub struct Edna;

impl Plugin for Edna {
    type Input = Input;
    type Output = Report;

    fn summary() -> &'static str {
        "eDNA amplicon analysis: RDP naive Bayes taxonomy, vsearch-style OTU clustering, novelty against a reference, alpha diversity"
    }

    fn input_schema() -> Value {
        let fraction =
            |default: f64| json!({"type": "number", "minimum": 0, "maximum": 1, "default": default});
        let tunables = json!({
            "min_confidence": fraction(settings::DEFAULT_MIN_CONFIDENCE),
            "otu_identity": fraction(settings::DEFAULT_OTU_IDENTITY),
            "novelty_identity": fraction(settings::DEFAULT_NOVELTY_IDENTITY),
            "bootstrap_iterations": {"type": "integer", "minimum": 1, "maximum": settings::MAX_BOOTSTRAPS, "default": classify::DEFAULT_BOOTSTRAPS},
            "seed": {"type": "integer", "minimum": 0, "default": 0},
            "max_accepts": {"type": "integer", "minimum": 0, "default": search::DEFAULT_MAX_ACCEPTS},
            "max_rejects": {"type": "integer", "minimum": 0, "default": search::DEFAULT_MAX_REJECTS}
        });
        let mut properties = json!({
            "fasta": {"type": "string", "description": "FASTA text; `;size=N` in a label gives its abundance"},
            "fasta_file": {"type": "string", "description": "a FASTA file under /input (the host's file area)"},
            "analysis_type": {"enum": ["taxonomic", "novelty", "clustering", "full"], "default": "full"},
            "reference": {"enum": [BUILTIN_REFERENCE], "default": BUILTIN_REFERENCE},
            "reference_fasta": {"type": "string", "description": "reference FASTA with `;tax=d:..,g:..;` or lineage headers"},
            "parameters": {"type": "object", "properties": tunables.clone(), "additionalProperties": false}
        });
        if let (Some(map), Some(extra)) = (properties.as_object_mut(), tunables.as_object()) {
            map.extend(extra.clone());
        }
        json!({"type": "object", "properties": properties, "additionalProperties": false})
    }

    fn run(ctx: &Context, input: Input) -> Result<Report, TaskError> {
        let (settings, fasta_source, reference_source) = input.validate()?;
        let (text, field) = match fasta_source {
            FastaSource::Inline(text) => (text, "fasta"),
            FastaSource::File(name) => (read_input_file(&name)?, "fasta_file"),
        };
        let records =
            fasta::parse(&text, MAX_SEQUENCE_LENGTH).map_err(|e| TaskError::invalid_input(field, e))?;
        if records.is_empty() {
            return Err(TaskError::invalid_input(field, "no FASTA records"));
        }
        drop(text);
        let reference = match &reference_source {
            None => None,
            Some(source) => Some(load_reference(source)?),
        };
        let reference_name = match &reference_source {
            Some(ReferenceSource::Builtin(name)) => name.as_str(),
            _ => "inline",
        };
        ctx.log(
            Level::Info,
            format!(
                "{:?} analysis of {} records against {} ({} sequences)",
                settings.analysis_type,
                records.len(),
                reference_name,
                reference.as_ref().map_or(0, |r| r.sequences.len())
            ),
        );
        let set = reference.as_ref().map(|reference| ReferenceSet { name: reference_name, reference });
        pipeline::analyse(&records, set, &settings, &mut HostObserver(ctx))
    }
}

/// The host's context as the pipeline's observer.
struct HostObserver<'a>(&'a Context);

impl Observer for HostObserver<'_> {
    fn progress(&mut self, percent: f64, message: &str) {
        self.0.progress(percent as f32, message);
    }

    fn event(&mut self, kind: &str, data: Value) {
        self.0.emit(kind, &data);
    }

    fn check_cancelled(&mut self) -> Result<(), TaskError> {
        self.0.check_cancelled()
    }
}

/// Reads `/input/<name>`, the host's file area as the sandbox sees it.
fn read_input_file(name: &str) -> Result<String, TaskError> {
    let path = format!("/input/{name}");
    let metadata = std::fs::metadata(&path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => TaskError::invalid_input(
            "fasta_file",
            format!("no file `{name}` under /input (upload it to the file area and name it in the task)"),
        ),
        _ => TaskError::invalid_input("fasta_file", format!("{path}: {e}")),
    })?;
    if metadata.len() > MAX_FASTA_FILE_BYTES {
        return Err(TaskError::invalid_input(
            "fasta_file",
            format!("{} bytes; at most {MAX_FASTA_FILE_BYTES}", metadata.len()),
        ));
    }
    std::fs::read_to_string(&path).map_err(|e| TaskError::invalid_input("fasta_file", format!("{path}: {e}")))
}

/// Reads the shipped reference from `/data`, or parses the inline one.
fn load_reference(source: &ReferenceSource) -> Result<Reference, TaskError> {
    let reference = match source {
        ReferenceSource::Builtin(name) => {
            let path = format!("/data/{name}.fasta");
            let text =
                std::fs::read_to_string(&path).map_err(|e| TaskError::failed(format!("{path}: {e}")))?;
            Reference::parse(&text, MAX_SEQUENCE_LENGTH)
                .map_err(|e| TaskError::failed(format!("shipped reference {path}: {e}")))?
        }
        ReferenceSource::Inline(text) => Reference::parse(text, MAX_SEQUENCE_LENGTH)
            .map_err(|e| TaskError::invalid_input("reference_fasta", e))?,
    };
    if reference.sequences.len() > MAX_REFERENCE_SEQUENCES {
        return Err(TaskError::invalid_input(
            "reference_fasta",
            format!("{} sequences; at most {MAX_REFERENCE_SEQUENCES}", reference.sequences.len()),
        ));
    }
    Ok(reference)
}

export_plugin!(Edna);
