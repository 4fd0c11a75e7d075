//! Finding the sequences most similar to a query, the way vsearch's search core does.
//!
//! Aligning a query to every target is too slow, so vsearch ranks targets by the number of
//! distinct 8-mers they share with the query and aligns them in that order, stopping at the
//! first `max_accepts` targets whose identity reaches the threshold or after `max_rejects`
//! that do not (defaults 1 and 32). Targets sharing fewer than
//! `min(12, distinct words of the query)` words are not candidates (vsearch's
//! `--minwordmatches` default for 8-mers). Candidates are ranked by shared words (more first),
//! then length (shorter first), then the order in which they were added. The best hit is the
//! accepted one of highest identity, the earliest added on ties. Clustering
//! (`--cluster_size`) and the novelty search (`--usearch_global`) both use this.

use crate::align::{Aligner, AlignmentStats, Scoring};
use crate::kmer::{WORD_COUNT, distinct_words};

/// vsearch's `--minwordmatches` default for 8-mers.
pub const MIN_WORD_MATCHES: usize = 12;

/// How far to search and what to accept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchParams {
    /// Accept a target at or above this identity (fraction, `--iddef 2`).
    pub identity: f64,
    /// Stop after this many accepted targets; 0 for no limit.
    pub max_accepts: usize,
    /// Stop after this many rejected targets; 0 for no limit.
    pub max_rejects: usize,
}

/// vsearch's defaults: `--maxaccepts 1 --maxrejects 32`.
pub const DEFAULT_MAX_ACCEPTS: usize = 1;
pub const DEFAULT_MAX_REJECTS: usize = 32;

/// A target that was aligned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub target: usize,
    pub shared_words: usize,
    pub stats: AlignmentStats,
    pub accepted: bool,
}

impl Hit {
    pub fn identity(&self) -> f64 {
        self.stats.identity()
    }
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchResult {
    /// The accepted hit of highest identity, if any target was accepted.
    pub best_accepted: Option<Hit>,
    /// The hit of highest identity among all aligned targets, accepted or not.
    pub best_aligned: Option<Hit>,
    /// How many targets were aligned.
    pub aligned: usize,
}

/// Targets indexed by their distinct 8-mers. Targets can be added while searching (clustering
/// adds each new centroid).
pub struct WordIndex {
    postings: Vec<Vec<u32>>,
    sequences: Vec<Vec<u8>>,
    /// Per target: shared-word counter, reset after each query.
    counts: Vec<u32>,
    touched: Vec<u32>,
    aligner: Aligner,
}

impl Default for WordIndex {
    fn default() -> Self {
        WordIndex::new()
    }
}

impl WordIndex {
    pub fn new() -> Self {
        WordIndex {
            postings: vec![Vec::new(); WORD_COUNT],
            sequences: Vec::new(),
            counts: Vec::new(),
            touched: Vec::new(),
            aligner: Aligner::new(),
        }
    }

    /// Adds a target; returns its number (0, 1, ...).
    pub fn add(&mut self, sequence: &[u8]) -> usize {
        let number = self.sequences.len();
        for word in distinct_words(sequence) {
            self.postings[usize::from(word)].push(number as u32);
        }
        self.sequences.push(sequence.to_vec());
        self.counts.push(0);
        number
    }

    pub fn len(&self) -> usize {
        self.sequences.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sequences.is_empty()
    }

    pub fn sequence(&self, target: usize) -> &[u8] {
        &self.sequences[target]
    }

    /// Candidates for `query`, best first: (target, shared distinct words), at most `limit`.
    pub fn candidates(&mut self, query_words: &[u16], limit: usize) -> Vec<(usize, usize)> {
        for &word in query_words {
            for &target in &self.postings[usize::from(word)] {
                let count = &mut self.counts[target as usize];
                if *count == 0 {
                    self.touched.push(target);
                }
                *count += 1;
            }
        }
        let min_matches = MIN_WORD_MATCHES.min(query_words.len());
        let mut found: Vec<(usize, usize)> = Vec::new();
        for &target in &self.touched {
            let count = self.counts[target as usize] as usize;
            if count >= min_matches && count > 0 {
                found.push((target as usize, count));
            }
            self.counts[target as usize] = 0;
        }
        self.touched.clear();
        let order = |a: &(usize, usize), b: &(usize, usize)| {
            b.1.cmp(&a.1)
                .then_with(|| self.sequences[a.0].len().cmp(&self.sequences[b.0].len()))
                .then_with(|| a.0.cmp(&b.0))
        };
        if found.len() > limit && limit > 0 {
            found.select_nth_unstable_by(limit - 1, order);
            found.truncate(limit);
        }
        found.sort_unstable_by(order);
        found
    }

    /// Searches for `query` as vsearch does (see the module doc).
    pub fn search(&mut self, query: &[u8], params: &SearchParams, scoring: &Scoring) -> SearchResult {
        let words = distinct_words(query);
        let unlimited = |n: usize| if n == 0 { usize::MAX } else { n };
        let (max_accepts, max_rejects) = (unlimited(params.max_accepts), unlimited(params.max_rejects));
        let limit = max_accepts.saturating_add(max_rejects).saturating_sub(1).min(self.len());
        let candidates = self.candidates(&words, limit);
        let threshold_percent = 100.0 * params.identity;
        let mut result = SearchResult::default();
        let (mut accepts, mut rejects) = (0, 0);
        for (target, shared_words) in candidates {
            if accepts >= max_accepts || rejects >= max_rejects {
                break;
            }
            let stats = self.aligner.align(query, &self.sequences[target], scoring);
            let accepted = stats.identity_percent() >= threshold_percent;
            let hit = Hit { target, shared_words, stats, accepted };
            result.aligned += 1;
            if accepted {
                accepts += 1;
                if result.best_accepted.is_none_or(|best| better(&hit, &best)) {
                    result.best_accepted = Some(hit);
                }
            } else {
                rejects += 1;
            }
            if result.best_aligned.is_none_or(|best| better(&hit, &best)) {
                result.best_aligned = Some(hit);
            }
        }
        result
    }
}

/// vsearch's order of hits: higher identity, then the earlier target.
fn better(a: &Hit, b: &Hit) -> bool {
    let (ia, ib) = (a.stats.identity_percent(), b.stats.identity_percent());
    ia > ib || (ia == ib && a.target < b.target)
}
