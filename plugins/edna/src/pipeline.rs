//! One analysis from sequences to report: dereplication, then classification, clustering and
//! the novelty search as the analysis type asks, then diversity.
//!
//! The stages report through an [`Observer`] (progress, events, cancellation), so that the
//! whole analysis runs in native tests with a recording observer, and in the plugin with the
//! host's [`taskhost_sdk::Context`]. Events, at most a few hundred per task whatever its size:
//!
//! | event | when | data |
//! | --- | --- | --- |
//! | `stage_started` | a stage begins | `stage`, `index`, `stages` |
//! | `stage_completed` | a stage ends | `stage`, `index`, `stages`, `summary` (the stage's results) |
//! | `novel_sequence` | a sequence's closest reference is below `novelty_identity` (the first [`MAX_NOVEL_EVENTS`], most abundant first) | `id`, `abundance`, `identity`, `best_hit`, `best_hit_taxonomy` |
//! | `warning` | sequences set aside, mostly unclassified reads, novel sequences beyond the event cap | `code`, `message`, and figures |

use std::collections::BTreeMap;

use serde::Serialize;
use taskhost_sdk::TaskError;
use taskhost_sdk::serde_json::{Value, json};

use crate::align::VSEARCH_SCORING;
use crate::classify::{Classification, NaiveBayes};
use crate::cluster::{Clustering, cluster_by_abundance};
use crate::diversity::{Diversity, diversity};
use crate::fasta::{Record, Unique, dereplicate};
use crate::kmer::WORD_LENGTH;
use crate::reference::{RANKS, Reference};
use crate::rng::SplitMix64;
use crate::search::{SearchParams, WordIndex};
use crate::settings::{AnalysisType, MAX_UNIQUE_SEQUENCES, MIN_SEQUENCE_LENGTH, Settings};

/// `novel_sequence` events per task; further novel sequences are in the result and counted in
/// one `warning`.
pub const MAX_NOVEL_EVENTS: usize = 100;
/// Share of the reads that, left unclassified at the top rank, draws a warning.
const UNCLASSIFIED_WARNING_SHARE: f64 = 0.5;
/// vsearch's identity definition, as the report states it.
pub const IDENTITY_DEFINITION: &str =
    "vsearch --iddef 2: matching columns / alignment columns, terminal gaps excluded";

/// What the analysis reports to while it runs.
pub trait Observer {
    fn progress(&mut self, percent: f64, message: &str);
    fn event(&mut self, kind: &str, data: Value);
    /// `Err(TaskError::Cancelled)` once the task should stop.
    fn check_cancelled(&mut self) -> Result<(), TaskError>;
}

/// The stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Dereplication,
    Classification,
    Clustering,
    Novelty,
    Diversity,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Dereplication => "dereplication",
            Stage::Classification => "classification",
            Stage::Clustering => "clustering",
            Stage::Novelty => "novelty",
            Stage::Diversity => "diversity",
        }
    }

    /// Relative cost, for the progress bar.
    fn weight(self) -> f64 {
        match self {
            Stage::Dereplication | Stage::Diversity => 1.0,
            Stage::Classification => 25.0,
            Stage::Clustering | Stage::Novelty => 35.0,
        }
    }
}

/// The stages an analysis type runs.
pub fn stages(analysis: AnalysisType) -> Vec<Stage> {
    let mut stages = vec![Stage::Dereplication];
    if analysis.classifies() {
        stages.push(Stage::Classification);
    }
    if analysis.clusters() {
        stages.push(Stage::Clustering);
    }
    if analysis.searches_novelty() {
        stages.push(Stage::Novelty);
    }
    stages.push(Stage::Diversity);
    stages
}

/// The reference as the analysis uses it.
pub struct ReferenceSet<'a> {
    pub name: &'a str,
    pub reference: &'a Reference,
}

// ---------------------------------------------------------------------------------------------
// The report.

/// The task's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub analysis_type: AnalysisType,
    pub parameters: ParametersUsed,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<ReferenceSummary>,
    pub dataset: DatasetSummary,
    /// One entry per distinct sequence, most abundant first.
    pub sequences: Vec<SequenceResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taxonomy: Option<TaxonomySummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otus: Option<Vec<OtuResult>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub novelty: Option<NoveltySummary>,
    pub diversity: DiversityReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParametersUsed {
    #[serde(flatten)]
    pub settings: Settings,
    pub word_length: usize,
    pub min_sequence_length: usize,
    pub identity_definition: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReferenceSummary {
    pub name: String,
    pub sequences: usize,
    pub taxa: usize,
    /// The ranks the reference names, top down: the order of `lineage` and `confidence` in
    /// each sequence's taxonomy.
    pub ranks: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetSummary {
    pub sequences: usize,
    pub total_abundance: u64,
    pub unique_sequences: usize,
    /// Sequences shorter than `min_sequence_length`, set aside.
    pub short_sequences_excluded: usize,
    pub short_abundance_excluded: u64,
    pub length_min: usize,
    pub length_max: usize,
    pub length_mean: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SequenceResult {
    pub id: String,
    pub abundance: u64,
    pub length: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taxonomy: Option<TaxonomyResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otu: Option<usize>,
    /// Identity to the OTU's centroid (1 for the centroid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otu_identity: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_hit: Option<BestHit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub novel: Option<bool>,
}

/// A classification: the best lineage with a bootstrap confidence per rank, and the part of it
/// that reaches `min_confidence`.
#[derive(Debug, Clone, Serialize)]
pub struct TaxonomyResult {
    /// Names of the best lineage at the reference's ranks (`null` where it names none).
    pub lineage: Vec<Option<String>>,
    /// Bootstrap confidence at each of those ranks.
    pub confidence: Vec<f64>,
    /// The deepest rank whose confidence reaches `min_confidence`; `null`: unclassified.
    pub classified_to: Option<&'static str>,
    /// The taxon at that rank.
    pub taxon: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BestHit {
    /// The closest reference sequence found, `null` when no reference shares enough 8-mers.
    pub reference_id: Option<String>,
    /// Its identity (fraction, vsearch `--iddef 2`), `null` without a hit.
    pub identity: Option<f64>,
    /// Its lineage, `d:...,p:...,...`.
    pub taxonomy: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OtuResult {
    pub otu: usize,
    pub centroid: String,
    pub abundance: u64,
    pub unique_sequences: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classified_to: Option<Option<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taxon: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub novel: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaxonCount {
    pub taxon: String,
    /// The lineage down to this rank, `d:...,p:...`.
    pub lineage: String,
    pub unique_sequences: usize,
    pub abundance: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaxonomySummary {
    /// Sequences and reads not classified even at the top rank.
    pub unclassified_sequences: usize,
    pub unclassified_abundance: u64,
    /// Per rank, the taxa that sequences were classified to at that rank or deeper, most
    /// abundant first.
    pub by_rank: BTreeMap<&'static str, Vec<TaxonCount>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoveltySummary {
    pub identity_threshold: f64,
    pub sequences_checked: usize,
    pub novel_sequences: usize,
    pub novel_abundance: u64,
    /// Share of the reads in novel sequences.
    pub novel_abundance_fraction: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiversityReport {
    /// Over distinct sequences.
    pub unique_sequences: Diversity,
    /// Over OTUs, when clustered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otus: Option<Diversity>,
    pub shannon_log_base: &'static str,
}

// ---------------------------------------------------------------------------------------------
// Running it.

/// Progress bookkeeping across stages.
struct Stages<'o, O: Observer> {
    observer: &'o mut O,
    list: Vec<Stage>,
    done_weight: f64,
    total_weight: f64,
    current: usize,
}

impl<O: Observer> Stages<'_, O> {
    fn start(&mut self, stage: Stage) {
        self.current = self.list.iter().position(|&s| s == stage).unwrap_or(0);
        self.observer.event(
            "stage_started",
            json!({"stage": stage.name(), "index": self.current + 1, "stages": self.list.len()}),
        );
        self.report(stage, 0.0, &format!("{}: starting", stage.name()));
    }

    fn report(&mut self, stage: Stage, fraction: f64, message: &str) {
        let percent =
            100.0 * (self.done_weight + stage.weight() * fraction.clamp(0.0, 1.0)) / self.total_weight;
        self.observer.progress(percent, message);
    }

    /// Per unit of work: cancellation check every time, progress at each percent.
    fn tick(&mut self, stage: Stage, done: usize, total: usize) -> Result<(), TaskError> {
        self.observer.check_cancelled()?;
        let step = (total / 100).max(1);
        if done.is_multiple_of(step) || done == total {
            let message = format!("{}: {done} of {total} sequences", stage.name());
            self.report(stage, done as f64 / total.max(1) as f64, &message);
        }
        Ok(())
    }

    fn complete(&mut self, stage: Stage, summary: Value) {
        self.done_weight += stage.weight();
        self.observer.event(
            "stage_completed",
            json!({"stage": stage.name(), "index": self.current + 1, "stages": self.list.len(), "summary": summary}),
        );
        self.report(stage, 0.0, &format!("{}: done", stage.name()));
    }

    fn warn(&mut self, code: &str, message: String, mut figures: Value) {
        if let Some(map) = figures.as_object_mut() {
            map.insert("code".into(), json!(code));
            map.insert("message".into(), json!(message));
        }
        self.observer.event("warning", figures);
    }
}

/// Runs the analysis of `records` against `reference` (needed when the analysis type
/// classifies or searches for novelty).
pub fn analyse<O: Observer>(
    records: &[Record],
    reference: Option<ReferenceSet<'_>>,
    settings: &Settings,
    observer: &mut O,
) -> Result<Report, TaskError> {
    let list = stages(settings.analysis_type);
    let total_weight = list.iter().map(|s| s.weight()).sum();
    let mut stages = Stages { observer, list, done_weight: 0.0, total_weight, current: 0 };

    // Dereplication.
    stages.start(Stage::Dereplication);
    let (kept, short): (Vec<&Record>, Vec<&Record>) =
        records.iter().partition(|r| r.sequence.len() >= MIN_SEQUENCE_LENGTH);
    if kept.is_empty() {
        return Err(TaskError::invalid_input(
            "fasta",
            format!("no sequence of at least {MIN_SEQUENCE_LENGTH} bases"),
        ));
    }
    let kept_records: Vec<Record> = kept.into_iter().cloned().collect();
    let uniques = dereplicate(&kept_records);
    if uniques.len() > MAX_UNIQUE_SEQUENCES {
        return Err(TaskError::invalid_input(
            "fasta",
            format!(
                "{} distinct sequences; at most {MAX_UNIQUE_SEQUENCES} per task (split the sample, or dereplicate and drop singletons first)",
                uniques.len()
            ),
        ));
    }
    let lengths: Vec<usize> = kept_records.iter().map(|r| r.sequence.len()).collect();
    let dataset = DatasetSummary {
        sequences: records.len(),
        total_abundance: kept_records.iter().map(|r| r.abundance).sum(),
        unique_sequences: uniques.len(),
        short_sequences_excluded: short.len(),
        short_abundance_excluded: short.iter().map(|r| r.abundance).sum(),
        length_min: lengths.iter().copied().min().unwrap_or(0),
        length_max: lengths.iter().copied().max().unwrap_or(0),
        length_mean: lengths.iter().sum::<usize>() as f64 / lengths.len() as f64,
    };
    if !short.is_empty() {
        stages.warn(
            "short_sequences_excluded",
            format!(
                "{} sequences shorter than {MIN_SEQUENCE_LENGTH} bases were set aside, as vsearch does",
                short.len()
            ),
            json!({"sequences": short.len(), "abundance": dataset.short_abundance_excluded}),
        );
    }
    stages.complete(Stage::Dereplication, serde_json_value(&dataset));

    let mut results: Vec<SequenceResult> = uniques
        .iter()
        .map(|u| SequenceResult {
            id: u.id.clone(),
            abundance: u.abundance,
            length: u.sequence.len(),
            taxonomy: None,
            otu: None,
            otu_identity: None,
            best_hit: None,
            novel: None,
        })
        .collect();

    let needs_reference = settings.analysis_type.needs_reference();
    let reference = match (needs_reference, reference) {
        (true, Some(reference)) => Some(reference),
        (true, None) => return Err(TaskError::failed("this analysis needs a reference")),
        (false, _) => None,
    };
    let rank_slots: Vec<usize> = reference.as_ref().map(|r| r.reference.ranks.clone()).unwrap_or_default();

    // Classification.
    let mut taxonomy = None;
    if let (true, Some(set)) = (settings.analysis_type.classifies(), reference.as_ref()) {
        stages.start(Stage::Classification);
        let classifier = NaiveBayes::train(set.reference);
        for (number, unique) in uniques.iter().enumerate() {
            let mut rng = SplitMix64::for_sequence(settings.seed, &unique.sequence);
            let classification =
                classifier.classify(&unique.sequence, settings.bootstrap_iterations, &mut rng);
            results[number].taxonomy = Some(taxonomy_result(
                classification.as_ref(),
                set.reference,
                &rank_slots,
                settings.min_confidence,
            ));
            stages.tick(Stage::Classification, number + 1, uniques.len())?;
        }
        let summary = taxonomy_summary(&results, &rank_slots, &uniques);
        let unclassified_share = summary.unclassified_abundance as f64 / dataset.total_abundance as f64;
        if unclassified_share > UNCLASSIFIED_WARNING_SHARE {
            stages.warn(
                "mostly_unclassified",
                format!(
                    "{:.0} % of the reads are not classified even at the top rank: the reference may not cover this marker or region",
                    100.0 * unclassified_share
                ),
                json!({"unclassified_abundance": summary.unclassified_abundance, "share": unclassified_share}),
            );
        }
        stages.complete(Stage::Classification, classification_summary(&summary, &results));
        taxonomy = Some(summary);
    }

    // Clustering.
    let mut otus = None;
    let mut clustering: Option<Clustering> = None;
    if settings.analysis_type.clusters() {
        stages.start(Stage::Clustering);
        let sequences: Vec<&[u8]> = uniques.iter().map(|u| u.sequence.as_slice()).collect();
        let params = SearchParams {
            identity: settings.otu_identity,
            max_accepts: settings.max_accepts as usize,
            max_rejects: settings.max_rejects as usize,
        };
        let total = sequences.len();
        let found = cluster_by_abundance(&sequences, &params, &VSEARCH_SCORING, |done| {
            stages.tick(Stage::Clustering, done, total)
        })?;
        for (number, &(otu, identity)) in found.assignment.iter().enumerate() {
            results[number].otu = Some(otu + 1);
            results[number].otu_identity = Some(round(identity, 4));
        }
        let table: Vec<OtuResult> = found
            .otus
            .iter()
            .enumerate()
            .map(|(index, otu)| OtuResult {
                otu: index + 1,
                centroid: uniques[otu.centroid].id.clone(),
                abundance: otu.members.iter().map(|&m| uniques[m].abundance).sum(),
                unique_sequences: otu.members.len(),
                classified_to: None,
                taxon: None,
                novel: None,
            })
            .collect();
        let abundances: Vec<u64> = table.iter().map(|o| o.abundance).collect();
        let singletons = table.iter().filter(|o| o.abundance == 1).count();
        stages.complete(
            Stage::Clustering,
            json!({
                "otus": table.len(),
                "identity": settings.otu_identity,
                "singleton_otus": singletons,
                "largest_otu_abundance": abundances.iter().max(),
                "unique_sequences": total,
            }),
        );
        otus = Some(table);
        clustering = Some(found);
    }

    // Novelty.
    let mut novelty = None;
    if let (true, Some(set)) = (settings.analysis_type.searches_novelty(), reference.as_ref()) {
        stages.start(Stage::Novelty);
        let mut index = WordIndex::new();
        for sequence in &set.reference.sequences {
            index.add(&sequence.sequence);
        }
        let params = SearchParams {
            identity: settings.novelty_identity,
            max_accepts: settings.max_accepts as usize,
            max_rejects: settings.max_rejects as usize,
        };
        let (mut novel_sequences, mut novel_abundance, mut novel_events) = (0usize, 0u64, 0usize);
        for (number, unique) in uniques.iter().enumerate() {
            let found = index.search(&unique.sequence, &params, &VSEARCH_SCORING);
            let hit = found.best_accepted.or(found.best_aligned);
            let best_hit = BestHit {
                reference_id: hit.map(|h| set.reference.sequences[h.target].id.clone()),
                identity: hit.map(|h| round(h.identity(), 4)),
                taxonomy: hit.map(|h| {
                    set.reference.lineage_text(set.reference.sequences[h.target].lineage, RANKS.len())
                }),
            };
            let novel = found.best_accepted.is_none();
            if novel {
                novel_sequences += 1;
                novel_abundance += unique.abundance;
                if novel_events < MAX_NOVEL_EVENTS {
                    novel_events += 1;
                    stages.observer.event(
                        "novel_sequence",
                        json!({
                            "id": unique.id,
                            "abundance": unique.abundance,
                            "identity": best_hit.identity,
                            "identity_threshold": settings.novelty_identity,
                            "best_hit": best_hit.reference_id,
                            "best_hit_taxonomy": best_hit.taxonomy,
                        }),
                    );
                }
            }
            results[number].best_hit = Some(best_hit);
            results[number].novel = Some(novel);
            stages.tick(Stage::Novelty, number + 1, uniques.len())?;
        }
        if novel_sequences > novel_events {
            stages.warn(
                "novel_events_capped",
                format!(
                    "{novel_sequences} novel sequences; the {} beyond the first {MAX_NOVEL_EVENTS} are in the result only",
                    novel_sequences - novel_events
                ),
                json!({"novel_sequences": novel_sequences, "reported": novel_events}),
            );
        }
        let summary = NoveltySummary {
            identity_threshold: settings.novelty_identity,
            sequences_checked: uniques.len(),
            novel_sequences,
            novel_abundance,
            novel_abundance_fraction: novel_abundance as f64 / dataset.total_abundance as f64,
        };
        stages.complete(Stage::Novelty, serde_json_value(&summary));
        novelty = Some(summary);
    }

    // OTUs take the classification and novelty of their centroid.
    if let (Some(table), Some(found)) = (otus.as_mut(), clustering.as_ref()) {
        for (entry, otu) in table.iter_mut().zip(&found.otus) {
            let centroid = &results[otu.centroid];
            if let Some(t) = &centroid.taxonomy {
                entry.classified_to = Some(t.classified_to);
                entry.taxon = Some(t.taxon.clone());
            }
            entry.novel = centroid.novel;
        }
    }

    // Diversity.
    stages.start(Stage::Diversity);
    let unique_abundances: Vec<u64> = uniques.iter().map(|u| u.abundance).collect();
    let over_uniques = diversity(&unique_abundances).ok_or_else(|| TaskError::failed("empty sample"))?;
    let over_otus =
        otus.as_ref().and_then(|table| diversity(&table.iter().map(|o| o.abundance).collect::<Vec<_>>()));
    let report = DiversityReport { unique_sequences: over_uniques, otus: over_otus, shannon_log_base: "e" };
    stages.complete(Stage::Diversity, serde_json_value(&report));

    Ok(Report {
        analysis_type: settings.analysis_type,
        parameters: ParametersUsed {
            settings: settings.clone(),
            word_length: WORD_LENGTH,
            min_sequence_length: MIN_SEQUENCE_LENGTH,
            identity_definition: IDENTITY_DEFINITION,
        },
        reference: reference.as_ref().map(|set| ReferenceSummary {
            name: set.name.to_owned(),
            sequences: set.reference.sequences.len(),
            taxa: set.reference.lineages.len(),
            ranks: rank_slots.iter().map(|&slot| RANKS[slot].1).collect(),
        }),
        dataset,
        sequences: results,
        taxonomy,
        otus,
        novelty,
        diversity: report,
    })
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn serde_json_value<T: Serialize>(value: &T) -> Value {
    taskhost_sdk::serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The classification of one sequence as reported.
fn taxonomy_result(
    classification: Option<&Classification>,
    reference: &Reference,
    rank_slots: &[usize],
    min_confidence: f64,
) -> TaxonomyResult {
    let Some(c) = classification else {
        return TaxonomyResult {
            lineage: Vec::new(),
            confidence: Vec::new(),
            classified_to: None,
            taxon: None,
        };
    };
    let lineage = &reference.lineages[c.lineage];
    let mut classified_to = None;
    let mut taxon = None;
    for &slot in rank_slots {
        if c.confidence[slot] < min_confidence {
            break;
        }
        if let Some(name) = &lineage[slot] {
            classified_to = Some(RANKS[slot].1);
            taxon = Some(name.clone());
        }
    }
    TaxonomyResult {
        lineage: rank_slots.iter().map(|&slot| lineage[slot].clone()).collect(),
        confidence: rank_slots.iter().map(|&slot| round(c.confidence[slot], 4)).collect(),
        classified_to,
        taxon,
    }
}

/// Per rank, the taxa that sequences were confidently classified to.
fn taxonomy_summary(results: &[SequenceResult], rank_slots: &[usize], uniques: &[Unique]) -> TaxonomySummary {
    let mut by_rank: BTreeMap<&'static str, BTreeMap<String, TaxonCount>> = BTreeMap::new();
    let (mut unclassified_sequences, mut unclassified_abundance) = (0, 0);
    for (result, unique) in results.iter().zip(uniques) {
        let Some(t) = &result.taxonomy else { continue };
        if t.classified_to.is_none() {
            unclassified_sequences += 1;
            unclassified_abundance += unique.abundance;
            continue;
        }
        let mut path = Vec::new();
        for (position, &slot) in rank_slots.iter().enumerate() {
            let Some(name) = t.lineage.get(position).cloned().flatten() else { continue };
            path.push(format!("{}:{name}", RANKS[slot].0));
            let deepest = t.classified_to == Some(RANKS[slot].1);
            let lineage = path.join(",");
            let entry = by_rank
                .entry(RANKS[slot].1)
                .or_default()
                .entry(lineage.clone())
                .or_insert(TaxonCount { taxon: name, lineage, unique_sequences: 0, abundance: 0 });
            entry.unique_sequences += 1;
            entry.abundance += unique.abundance;
            if deepest {
                break;
            }
        }
    }
    let by_rank = by_rank
        .into_iter()
        .map(|(rank, taxa)| {
            let mut list: Vec<TaxonCount> = taxa.into_values().collect();
            list.sort_by(|a, b| b.abundance.cmp(&a.abundance).then_with(|| a.lineage.cmp(&b.lineage)));
            (rank, list)
        })
        .collect();
    TaxonomySummary { unclassified_sequences, unclassified_abundance, by_rank }
}

/// The `stage_completed` summary of classification: counts per rank and the leading taxa.
fn classification_summary(summary: &TaxonomySummary, results: &[SequenceResult]) -> Value {
    let mut classified_to: BTreeMap<&str, usize> = BTreeMap::new();
    for result in results {
        if let Some(t) = &result.taxonomy {
            *classified_to.entry(t.classified_to.unwrap_or("unclassified")).or_default() += 1;
        }
    }
    let leading: BTreeMap<&str, Vec<Value>> = summary
        .by_rank
        .iter()
        .map(|(rank, taxa)| {
            (
                *rank,
                taxa.iter().take(5).map(|t| json!({"taxon": t.taxon, "abundance": t.abundance})).collect(),
            )
        })
        .collect();
    json!({
        "sequences_by_deepest_rank": classified_to,
        "unclassified_sequences": summary.unclassified_sequences,
        "unclassified_abundance": summary.unclassified_abundance,
        "leading_taxa": leading,
    })
}
