//! Taxonomic classification by the RDP naive Bayesian classifier.
//!
//! Wang, Garrity, Tiedje & Cole (2007), "Naive Bayesian classifier for rapid assignment of rRNA
//! sequences into the new bacterial taxonomy", *Appl. Environ. Microbiol.* 73:5261-5267:
//!
//! - A sequence is its set W of distinct 8-mers ([`crate::kmer`]).
//! - Word prior: P(wᵢ) = (n(wᵢ) + 0.5) / (N + 1), with N reference sequences of which n(wᵢ)
//!   contain wᵢ.
//! - Per taxon G (here: each distinct lineage of the reference, the genus in RDP's training
//!   sets) with M sequences, m(wᵢ) of which contain wᵢ: P(wᵢ | G) = (m(wᵢ) + P(wᵢ)) / (M + 1).
//! - P(W | G) = Πᵢ P(wᵢ | G); the sequence is assigned to the G maximising it (equal priors).
//!   Computed in logarithms as Σ ln P(wᵢ) − |W| ln(M + 1) + Σ_{m(wᵢ)>0} [ln(m(wᵢ) + P(wᵢ)) − ln P(wᵢ)],
//!   so only words the taxon contains need visiting.
//! - Confidence by bootstrap: 100 times, |W|/8 words are drawn from W with replacement and the
//!   best taxon found again; the confidence at a rank is the fraction of draws whose best taxon
//!   agrees with the assignment at that rank (and all ranks above). RDP recommends 0.8 for
//!   full-length genes and 0.5 for reads shorter than 250 bases (Claesson et al. 2009).
//!
//! Ties between taxa go to the one that appears first in the reference. The draws come from a
//! [`SplitMix64`] stream seeded from the task's seed and the sequence, so results are
//! reproducible.

use crate::kmer::{WORD_COUNT, distinct_words};
use crate::reference::{RANKS, Reference};
use crate::rng::SplitMix64;

/// Bootstrap draws (Wang et al. 2007).
pub const DEFAULT_BOOTSTRAPS: u32 = 100;
/// One word in this many is drawn in each bootstrap (Wang et al. 2007: one eighth).
const BOOTSTRAP_FRACTION: usize = 8;

/// A trained classifier.
pub struct NaiveBayes {
    /// Per taxon: ln(M + 1).
    log_size: Vec<f64>,
    /// Per word, the range of `entry_taxon`/`entry_weight` listing the taxa that contain it.
    offsets: Vec<u32>,
    entry_taxon: Vec<u32>,
    /// ln(m + P(w)) − ln P(w).
    entry_weight: Vec<f64>,
    /// Per taxon and rank slot: an id of the lineage down to that rank, for agreement tests.
    prefix_ids: Vec<[u32; 8]>,
}

/// The classification of one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Index of the assigned lineage in the reference.
    pub lineage: usize,
    /// Bootstrap confidence per rank slot of [`RANKS`] (fraction in 0..=1).
    pub confidence: [f64; 8],
    /// Distinct words of the sequence.
    pub words: usize,
}

impl NaiveBayes {
    /// Trains on `reference`: each distinct lineage is a taxon.
    pub fn train(reference: &Reference) -> NaiveBayes {
        let taxa = reference.lineages.len();
        let total = reference.sequences.len() as f64;
        let mut taxon_size = vec![0u32; taxa];
        // word -> [(taxon, m)], built per word.
        let mut counts: Vec<Vec<(u32, u32)>> = vec![Vec::new(); WORD_COUNT];
        let mut sequences_with_word = vec![0u32; WORD_COUNT];
        for sequence in &reference.sequences {
            let taxon = sequence.lineage as u32;
            taxon_size[sequence.lineage] += 1;
            for word in distinct_words(&sequence.sequence) {
                let word = usize::from(word);
                sequences_with_word[word] += 1;
                match counts[word].last_mut() {
                    Some((last, m)) if *last == taxon => *m += 1,
                    _ => match counts[word].iter_mut().find(|(t, _)| *t == taxon) {
                        Some((_, m)) => *m += 1,
                        None => counts[word].push((taxon, 1)),
                    },
                }
            }
        }
        let mut offsets = Vec::with_capacity(WORD_COUNT + 1);
        let mut entry_taxon = Vec::new();
        let mut entry_weight = Vec::new();
        offsets.push(0);
        for (word, list) in counts.iter_mut().enumerate() {
            list.sort_unstable();
            let prior = (f64::from(sequences_with_word[word]) + 0.5) / (total + 1.0);
            for &(taxon, m) in list.iter() {
                entry_taxon.push(taxon);
                entry_weight.push((f64::from(m) + prior).ln() - prior.ln());
            }
            offsets.push(entry_taxon.len() as u32);
        }
        let log_size = taxon_size.iter().map(|&m| (f64::from(m) + 1.0).ln()).collect();
        NaiveBayes { log_size, offsets, entry_taxon, entry_weight, prefix_ids: prefix_ids(reference) }
    }

    /// Number of taxa.
    pub fn taxa(&self) -> usize {
        self.log_size.len()
    }

    /// The taxon with the highest log-probability for `words` (a multiset: a word drawn twice
    /// counts twice). `scores` is scratch space.
    fn best_taxon(&self, words: &[u16], scores: &mut Vec<f64>) -> usize {
        let count = words.len() as f64;
        scores.clear();
        scores.extend(self.log_size.iter().map(|log_size| -count * log_size));
        for &word in words {
            let (start, end) =
                (self.offsets[usize::from(word)] as usize, self.offsets[usize::from(word) + 1] as usize);
            for (&taxon, &weight) in self.entry_taxon[start..end].iter().zip(&self.entry_weight[start..end]) {
                scores[taxon as usize] += weight;
            }
        }
        let mut best = 0;
        for (taxon, &score) in scores.iter().enumerate() {
            if score > scores[best] {
                best = taxon;
            }
        }
        best
    }

    /// Classifies `sequence` with `bootstraps` draws from `rng`. `None` when the sequence has
    /// no valid 8-mer.
    pub fn classify(&self, sequence: &[u8], bootstraps: u32, rng: &mut SplitMix64) -> Option<Classification> {
        let words = distinct_words(sequence);
        if words.is_empty() {
            return None;
        }
        let mut scores = Vec::with_capacity(self.taxa());
        let assigned = self.best_taxon(&words, &mut scores);
        let draw = (words.len() / BOOTSTRAP_FRACTION).max(1);
        let mut agreeing = [0u32; 8];
        let mut sample = Vec::with_capacity(draw);
        for _ in 0..bootstraps {
            sample.clear();
            sample.extend((0..draw).map(|_| words[rng.below(words.len())]));
            let winner = self.best_taxon(&sample, &mut scores);
            for (slot, agree) in agreeing.iter_mut().enumerate() {
                if self.prefix_ids[winner][slot] == self.prefix_ids[assigned][slot] {
                    *agree += 1;
                }
            }
        }
        let mut confidence = [0.0; 8];
        for (c, agree) in confidence.iter_mut().zip(agreeing) {
            *c = f64::from(agree) / f64::from(bootstraps.max(1));
        }
        Some(Classification { lineage: assigned, confidence, words: words.len() })
    }
}

/// For each lineage and rank slot, a number that is equal for two lineages exactly when they
/// agree on every rank down to that slot.
fn prefix_ids(reference: &Reference) -> Vec<[u32; 8]> {
    let mut ids = std::collections::HashMap::new();
    reference
        .lineages
        .iter()
        .map(|lineage| {
            let mut out = [0u32; 8];
            for (slot, id) in out.iter_mut().enumerate().take(RANKS.len()) {
                let next = ids.len() as u32;
                *id = *ids.entry(&lineage[..=slot]).or_insert(next);
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two genera of one family, one of another; real V4 fragments would do, but the
    /// arithmetic is clearer with toy sequences.
    fn toy_reference() -> Reference {
        let text = "\
>a1;tax=d:B,f:F1,g:G1;\nACGTTGCAACGTAGCTAGCTAGGCTAACGTAGCATCGATCGAT\n\
>a2;tax=d:B,f:F1,g:G1;\nACGTTGCAACGTAGCTAGCTAGGCTAACGTAGCATCGATCGTT\n\
>b1;tax=d:B,f:F1,g:G2;\nTTGACCATGGCATGCAATCGGATCCGATGCATTACGGCATGCA\n\
>c1;tax=d:B,f:F2,g:G3;\nGGGCCCAAATTTGGGCCCAAATTTCCCGGGAAATTTGGGCCCA\n";
        Reference::parse(text, 1000).unwrap()
    }

    #[test]
    fn a_reference_sequence_is_assigned_to_its_own_taxon_with_full_confidence() {
        let reference = toy_reference();
        let classifier = NaiveBayes::train(&reference);
        assert_eq!(classifier.taxa(), 3);
        for sequence in &reference.sequences {
            let mut rng = SplitMix64::new(7);
            let c = classifier.classify(&sequence.sequence, 100, &mut rng).unwrap();
            assert_eq!(c.lineage, sequence.lineage, "{}", sequence.id);
            assert_eq!(c.confidence[0], 1.0, "domain of {}", sequence.id);
        }
    }

    #[test]
    fn word_probabilities_follow_wang_et_al() {
        let reference = toy_reference();
        let classifier = NaiveBayes::train(&reference);
        // The first 8-mer of a1 is in a1 and a2 (taxon G1, M = 2) and nowhere else: n = 2,
        // N = 4, so P(w) = 2.5 / 5 and the weight is ln(2 + 0.5) − ln(0.5).
        let word = distinct_words(b"ACGTTGCA")[0];
        let (start, end) = (
            classifier.offsets[usize::from(word)] as usize,
            classifier.offsets[usize::from(word) + 1] as usize,
        );
        assert_eq!(&classifier.entry_taxon[start..end], &[0]);
        let expected = (2.0f64 + 0.5).ln() - 0.5f64.ln();
        assert!((classifier.entry_weight[start] - expected).abs() < 1e-12);
        assert!((classifier.log_size[0] - 3.0f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn confidence_never_rises_down_the_ranks_and_is_reproducible() {
        let reference = toy_reference();
        let classifier = NaiveBayes::train(&reference);
        // A chimera of G1 and G2 halves: the genus is uncertain, the family is not.
        let query = b"ACGTTGCAACGTAGCTAGCTAGGCATGCAATCGGATCCGATGCATTACG";
        let first = classifier.classify(query, 100, &mut SplitMix64::for_sequence(1, query)).unwrap();
        let again = classifier.classify(query, 100, &mut SplitMix64::for_sequence(1, query)).unwrap();
        assert_eq!(first, again);
        let used = [0usize, 5, 6];
        for pair in used.windows(2) {
            assert!(first.confidence[pair[0]] >= first.confidence[pair[1]], "{:?}", first.confidence);
        }
        assert_eq!(first.confidence[5], 1.0, "{:?}", first.confidence);
        assert!(first.confidence[6] < 1.0, "{:?}", first.confidence);
    }
}
