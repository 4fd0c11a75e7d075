//! Whole analyses, natively, with an observer that records what the host would receive:
//! stages and their events in order, progress, cancellation, determinism, and the report's
//! bookkeeping on real mouse-gut V4 reads.

mod common;

use edna::fasta::{self, Record};
use edna::pipeline::{MAX_NOVEL_EVENTS, Observer, ReferenceSet, Report, analyse};
use edna::reference::Reference;
use edna::settings::{AnalysisType, Settings};
use taskhost_sdk::TaskError;
use taskhost_sdk::serde_json::{self, Value};

/// Records progress and events; cancels after `cancel_after` checks if set.
#[derive(Default)]
struct Recorder {
    progress: Vec<f64>,
    events: Vec<(String, Value)>,
    checks: usize,
    cancel_after: Option<usize>,
}

impl Observer for Recorder {
    fn progress(&mut self, percent: f64, _message: &str) {
        self.progress.push(percent);
    }
    fn event(&mut self, kind: &str, data: Value) {
        self.events.push((kind.to_owned(), data));
    }
    fn check_cancelled(&mut self) -> Result<(), TaskError> {
        self.checks += 1;
        match self.cancel_after {
            Some(limit) if self.checks > limit => Err(TaskError::Cancelled),
            _ => Ok(()),
        }
    }
}

/// The first `n` reads of the MiSeq SOP mouse-gut sample.
fn mouse_reads(n: usize) -> Vec<Record> {
    let mut records = fasta::parse(&common::read_test_file("sam1F.fasta"), 5_000).unwrap();
    records.truncate(n);
    records
}

fn run(
    records: &[Record],
    reference: &Reference,
    settings: &Settings,
    recorder: &mut Recorder,
) -> Result<Report, TaskError> {
    let set = ReferenceSet { name: "rdp_gold_v4", reference };
    analyse(records, Some(set), settings, recorder)
}

#[test]
fn a_full_analysis_reports_each_stage_in_order_with_consistent_results() {
    let reference = common::shipped_reference();
    let records = mouse_reads(400);
    let mut recorder = Recorder::default();
    let report = run(&records, &reference, &Settings::default(), &mut recorder).unwrap();

    // Stages, in order, each started then completed; novel sequences inside the novelty stage.
    let stages: Vec<(String, String)> = recorder
        .events
        .iter()
        .filter(|(kind, _)| kind.starts_with("stage_"))
        .map(|(kind, data)| (kind.clone(), data["stage"].as_str().unwrap().to_owned()))
        .collect();
    let expected: Vec<(String, String)> =
        ["dereplication", "classification", "clustering", "novelty", "diversity"]
            .iter()
            .flat_map(|s| {
                [("stage_started".to_owned(), s.to_string()), ("stage_completed".to_owned(), s.to_string())]
            })
            .collect();
    assert_eq!(stages, expected);
    let kinds: Vec<&str> = recorder.events.iter().map(|(k, _)| k.as_str()).collect();
    let novelty_start =
        recorder.events.iter().position(|(k, d)| k == "stage_started" && d["stage"] == "novelty").unwrap();
    let novel_positions: Vec<usize> =
        kinds.iter().enumerate().filter(|(_, k)| **k == "novel_sequence").map(|(i, _)| i).collect();
    let novelty = report.novelty.as_ref().unwrap();
    assert_eq!(novel_positions.len(), novelty.novel_sequences.min(MAX_NOVEL_EVENTS));
    assert!(novel_positions.iter().all(|&i| i > novelty_start));
    for (_, data) in recorder.events.iter().filter(|(k, _)| k == "novel_sequence") {
        assert!(data["identity"].as_f64().unwrap() < 0.97, "{data}");
    }

    // Progress runs from 0 to 100 and never goes back.
    assert!(recorder.progress.windows(2).all(|w| w[1] >= w[0] - 1e-9), "{:?}", recorder.progress);
    assert!(recorder.progress[0] < 1.0);
    assert!((recorder.progress.last().unwrap() - 100.0).abs() < 1e-9);
    assert!(recorder.events.len() < 200, "{} events", recorder.events.len());

    // Bookkeeping: every read is in one sequence, every sequence in one OTU.
    let total: u64 = report.sequences.iter().map(|s| s.abundance).sum();
    assert_eq!(total, 400);
    assert_eq!(report.dataset.total_abundance, 400);
    let otus = report.otus.as_ref().unwrap();
    assert_eq!(otus.iter().map(|o| o.abundance).sum::<u64>(), 400);
    assert_eq!(otus.iter().map(|o| o.unique_sequences).sum::<usize>(), report.sequences.len());
    assert!(report.sequences.iter().all(|s| s.otu.is_some() && s.taxonomy.is_some() && s.novel.is_some()));
    let diversity = report.diversity.otus.unwrap();
    assert_eq!(diversity.observed, otus.len());
    assert_eq!(report.diversity.unique_sequences.observed, report.sequences.len());
    assert!(diversity.shannon <= report.diversity.unique_sequences.shannon + 1e-12, "merging lowers entropy");

    // The mouse gut of the MiSeq SOP is dominated by Bacteroidetes (Kozich et al. 2013;
    // Schloss et al. 2012): the leading phylum, confidently assigned.
    let taxonomy = report.taxonomy.as_ref().unwrap();
    let phyla = &taxonomy.by_rank["phylum"];
    assert_eq!(phyla[0].taxon, "Bacteroidetes", "{phyla:?}");
    assert!(phyla[0].abundance > 200, "{phyla:?}");
    assert_eq!(taxonomy.by_rank["domain"][0].taxon, "Bacteria");
    // Confidences never rise down the ranks.
    for sequence in &report.sequences {
        let confidence = &sequence.taxonomy.as_ref().unwrap().confidence;
        assert!(confidence.windows(2).all(|w| w[1] <= w[0]), "{confidence:?}");
    }
}

#[test]
fn the_same_seed_gives_the_same_report() {
    let reference = common::shipped_reference();
    let records = mouse_reads(150);
    let settings = Settings { analysis_type: AnalysisType::Taxonomic, seed: 42, ..Settings::default() };
    let first = run(&records, &reference, &settings, &mut Recorder::default()).unwrap();
    let again = run(&records, &reference, &settings, &mut Recorder::default()).unwrap();
    assert_eq!(serde_json::to_string(&first).unwrap(), serde_json::to_string(&again).unwrap());
    // Another seed draws other bootstrap samples; the assignments themselves do not depend on it.
    let other = Settings { seed: 7, ..settings };
    let third = run(&records, &reference, &other, &mut Recorder::default()).unwrap();
    for (a, b) in first.sequences.iter().zip(&third.sequences) {
        assert_eq!(a.taxonomy.as_ref().unwrap().lineage, b.taxonomy.as_ref().unwrap().lineage);
    }
}

#[test]
fn a_cancelled_analysis_stops_at_once() {
    let reference = common::shipped_reference();
    let records = mouse_reads(300);
    let mut recorder = Recorder { cancel_after: Some(50), ..Recorder::default() };
    let outcome = run(&records, &reference, &Settings::default(), &mut recorder);
    assert_eq!(outcome.unwrap_err(), TaskError::Cancelled);
    assert_eq!(recorder.checks, 51, "no work after the check that said stop");
    let last = recorder.events.last().unwrap();
    assert_eq!((last.0.as_str(), last.1["stage"].as_str()), ("stage_started", Some("classification")));
}

#[test]
fn each_analysis_type_reports_only_its_parts() {
    let reference = common::shipped_reference();
    let records = mouse_reads(100);
    let cases = [
        (AnalysisType::Taxonomic, vec!["taxonomy"], vec!["otus", "novelty"]),
        (AnalysisType::Clustering, vec!["otus"], vec!["taxonomy", "novelty", "reference"]),
        (AnalysisType::Novelty, vec!["novelty", "reference"], vec!["taxonomy", "otus"]),
    ];
    for (analysis_type, present, absent) in cases {
        let settings = Settings { analysis_type, ..Settings::default() };
        let set = analysis_type
            .needs_reference()
            .then_some(ReferenceSet { name: "rdp_gold_v4", reference: &reference });
        let report = analyse(&records, set, &settings, &mut Recorder::default()).unwrap();
        let json = serde_json::to_value(&report).unwrap();
        for field in present {
            assert!(!json[field].is_null(), "{analysis_type:?} lacks {field}");
        }
        for field in absent {
            assert!(json[field].is_null(), "{analysis_type:?} has {field}");
        }
        assert!(json["diversity"]["unique_sequences"]["shannon"].is_f64());
    }
}

#[test]
fn short_sequences_are_set_aside_with_a_warning_and_too_many_distinct_ones_are_refused() {
    let reference = common::shipped_reference();
    let mut records = mouse_reads(20);
    records.push(Record {
        label: "short".into(),
        id: "short".into(),
        sequence: b"TACGGAGGATCC".to_vec(),
        abundance: 3,
    });
    let settings = Settings { analysis_type: AnalysisType::Clustering, ..Settings::default() };
    let mut recorder = Recorder::default();
    let report = run(&records, &reference, &settings, &mut recorder).unwrap();
    assert_eq!((report.dataset.short_sequences_excluded, report.dataset.short_abundance_excluded), (1, 3));
    let warning = recorder.events.iter().find(|(k, _)| k == "warning").unwrap();
    assert_eq!(warning.1["code"], "short_sequences_excluded");

    let only_short = vec![records.pop().unwrap()];
    let error = run(&only_short, &reference, &settings, &mut Recorder::default()).unwrap_err();
    assert!(
        matches!(&error, TaskError::InvalidInput(m) if m.starts_with("fasta: no sequence of at least 32")),
        "{error:?}"
    );

    // 5,001 distinct sequences: one real read with each of 5,001 different 7-base tails.
    let read = &mouse_reads(1)[0].sequence;
    let many: Vec<Record> = (0..5_001u32)
        .map(|i| {
            let mut sequence = read.clone();
            sequence.extend((0..7).map(|k| b"ACGT"[((i >> (2 * k)) & 3) as usize]));
            Record { label: format!("v{i}"), id: format!("v{i}"), sequence, abundance: 1 }
        })
        .collect();
    let error = run(&many, &reference, &settings, &mut Recorder::default()).unwrap_err();
    assert!(
        matches!(&error, TaskError::InvalidInput(m) if m.contains("5001 distinct sequences")),
        "{error:?}"
    );
}
