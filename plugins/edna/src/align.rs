//! Global pairwise alignment and percent identity, as vsearch computes them.
//!
//! Both OTU clustering and the novelty search decide by the identity of a global alignment, so
//! the alignment must be the one vsearch (Rognes et al. 2016, *PeerJ* 4:e2584) would make, or
//! a sequence near a threshold would land differently. This is vsearch's model, written out:
//!
//! - Needleman-Wunsch with affine gaps (Gotoh 1982): match +2, mismatch −4; an interior gap of
//!   length L costs 20 + 2(L − 1), a terminal gap (at either end of either sequence) 2 + (L − 1)
//!   (vsearch's defaults `--match 2 --mismatch -4 --gapopen 20I/2E --gapext 2I/1E`, where the
//!   opening penalty includes the first position).
//! - Ambiguous IUPAC codes score 0 against anything and count as matches when compatible (N
//!   matches A), as vsearch does without `--n_mismatch`.
//! - Ties between equally scoring paths are broken as vsearch's backtrack does: a diagonal step
//!   over a gap, a gap in the target over a gap in the query, and a new gap over extending one
//!   unless extending scores strictly higher.
//! - Identity is vsearch's default `--iddef 2`: matching columns divided by alignment columns,
//!   not counting terminal gaps (the first and last run of the alignment, when it is a gap), so
//!   a read that covers part of a longer reference is judged on the part it covers.
//!
//! The matrix of directions is kept (one byte per cell) for the traceback: for amplicons of a
//! few hundred bases that is tens of kilobytes. It is filled in a band of diagonals first (see
//! [`Aligner::align`]), over the whole matrix only when the best path reaches the band's edge.

use crate::kmer::{WORD_COUNT, WORD_LENGTH};

/// Scores and gap penalties (positive numbers are penalties).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scoring {
    pub match_score: i32,
    pub mismatch_score: i32,
    /// Cost of an interior gap of length 1; each further position adds `interior_gap_extend`.
    pub interior_gap_open: i32,
    pub interior_gap_extend: i32,
    /// Cost of a terminal gap of length 1; each further position adds `terminal_gap_extend`.
    pub terminal_gap_open: i32,
    pub terminal_gap_extend: i32,
}

/// vsearch's defaults (`vsearch --help`: `--match 2 --mismatch -4 --gapopen 20I/2E --gapext 2I/1E`).
pub const VSEARCH_SCORING: Scoring = Scoring {
    match_score: 2,
    mismatch_score: -4,
    interior_gap_open: 20,
    interior_gap_extend: 2,
    terminal_gap_open: 2,
    terminal_gap_extend: 1,
};

/// What an alignment amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlignmentStats {
    pub score: i32,
    /// Alignment columns, terminal gaps included.
    pub columns: u32,
    pub matches: u32,
    pub mismatches: u32,
    /// Columns in the terminal gaps (the first and the last run, when they are gaps).
    pub terminal_gap_columns: u32,
    /// Gap openings that are not terminal.
    pub interior_gaps: u32,
}

impl AlignmentStats {
    /// Columns that count for identity: all but the terminal gaps.
    pub fn internal_columns(&self) -> u32 {
        self.columns - self.terminal_gap_columns
    }

    /// vsearch's `--iddef 2` identity, in percent: matches / columns excluding terminal gaps.
    /// Percent, computed as vsearch does, so that a comparison with `100 × threshold` falls the
    /// same way on both sides of a boundary such as 97/100.
    pub fn identity_percent(&self) -> f64 {
        let columns = self.internal_columns();
        if columns == 0 { 0.0 } else { 100.0 * f64::from(self.matches) / f64::from(columns) }
    }

    /// [`identity_percent`](Self::identity_percent) as a fraction.
    pub fn identity(&self) -> f64 {
        self.identity_percent() / 100.0
    }
}

/// The four-bit IUPAC code of a base (A=1, C=2, G=4, T=8, ambiguity codes their union),
/// 0 for anything that is not a nucleotide code.
pub fn iupac_bits(base: u8) -> u8 {
    match base {
        b'A' => 1,
        b'C' => 2,
        b'G' => 4,
        b'T' | b'U' => 8,
        b'M' => 3,
        b'R' => 5,
        b'W' => 9,
        b'S' => 6,
        b'Y' => 10,
        b'K' => 12,
        b'V' => 7,
        b'H' => 11,
        b'D' => 13,
        b'B' => 14,
        b'N' => 15,
        _ => 0,
    }
}

const NEG_INF: i32 = i32::MIN / 4;
/// Diagonals added on each side of the band (see [`Aligner::align`]): room for 16 net
/// insertions or deletions, each of which costs vsearch at least 20.
pub const BAND_MARGIN: i64 = 16;
/// Shortest exact match whose diagonal the band must include: 10 bases (three consecutive
/// 8-mers), which two unrelated 250-base sequences share by chance with probability ≈ 0.06.
pub const ANCHOR_LENGTH: usize = 10;
/// Direction byte: bits 0-1 where H came from (0 diagonal, 1 gap in target, 2 gap in query);
/// bit 2: the gap in the query at this cell extends one ending to its left; bit 3: the gap in
/// the target at this cell extends one ending above it.
const FROM_TARGET_GAP: u8 = 1;
const FROM_QUERY_GAP: u8 = 2;
const QUERY_GAP_EXTENDS: u8 = 4;
const TARGET_GAP_EXTENDS: u8 = 8;

/// Buffers reused from one alignment to the next.
#[derive(Default)]
pub struct Aligner {
    directions: Vec<u8>,
    h_previous: Vec<i32>,
    h_current: Vec<i32>,
    target_gap: Vec<i32>,
    query_codes: Vec<u8>,
    target_codes: Vec<u8>,
    /// Per row, the columns filled.
    row_bounds: Vec<(usize, usize)>,
    /// Where each 8-mer ends in the current target, valid where `word_stamp` equals `stamp`.
    word_stamp: Vec<u32>,
    word_end: Vec<u32>,
    stamp: u32,
}

/// Calls `f(end, word)` for each 8-mer of `sequence` without ambiguous bases, `end` being the
/// position of its last base.
fn for_each_word(sequence: &[u8], mut f: impl FnMut(usize, u16)) {
    let (mut word, mut valid) = (0u32, 0usize);
    for (position, &base) in sequence.iter().enumerate() {
        let code = match base {
            b'A' => 0,
            b'C' => 1,
            b'G' => 2,
            b'T' => 3,
            _ => {
                valid = 0;
                continue;
            }
        };
        word = ((word << 2) | code) & (WORD_COUNT as u32 - 1);
        valid += 1;
        if valid >= WORD_LENGTH {
            f(position, word as u16);
        }
    }
}

impl Aligner {
    pub fn new() -> Self {
        Aligner::default()
    }

    /// Aligns `query` to `target` (upper-case IUPAC) end to end and returns the statistics of
    /// the alignment. Both must be non-empty.
    ///
    /// The matrix is first filled in a band of diagonals: those spanned by the two ends' offsets
    /// (0 and `target.len() - query.len()`) and by every exact match of [`ANCHOR_LENGTH`] or
    /// more bases the sequences share, widened by [`BAND_MARGIN`] on each side, with row 0,
    /// column 0 and the last row and column always reachable so that terminal gaps of any
    /// length stay possible. A good alignment is made of such matches, and vsearch's high
    /// interior gap penalty keeps it close to their diagonals, so the best path lies inside;
    /// should the traced path touch the edge of the band, the alignment is redone over the full
    /// matrix. The tests check the band against the full matrix on real reference pairs.
    pub fn align(&mut self, query: &[u8], target: &[u8], scoring: &Scoring) -> AlignmentStats {
        let (n, m) = (query.len(), target.len());
        if n == 0 || m == 0 {
            return AlignmentStats::default();
        }
        let offset = m as i64 - n as i64;
        let (low, high) = self.anchor_diagonals(query, target).unwrap_or((0, 0));
        let band = (low.min(offset).min(0) - BAND_MARGIN, high.max(offset).max(0) + BAND_MARGIN);
        let banded = band.0 > -(n as i64) || band.1 < m as i64;
        if banded {
            let (stats, touched_edge) = self.fill_and_trace(query, target, scoring, Some(band));
            if !touched_edge {
                return stats;
            }
        }
        self.fill_and_trace(query, target, scoring, None).0
    }

    /// The lowest and highest diagonal (j − i) on which the two sequences share an exact match
    /// of at least [`ANCHOR_LENGTH`] bases, found through 8-mers: the segments a good
    /// alignment is built from. `None` when they share none.
    fn anchor_diagonals(&mut self, query: &[u8], target: &[u8]) -> Option<(i64, i64)> {
        if self.word_stamp.is_empty() {
            self.word_stamp = vec![0; WORD_COUNT];
            self.word_end = vec![0; WORD_COUNT];
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.word_stamp.fill(0);
            self.stamp = 1;
        }
        for_each_word(target, |end, word| {
            self.word_stamp[usize::from(word)] = self.stamp;
            self.word_end[usize::from(word)] = end as u32;
        });
        let mut range: Option<(i64, i64)> = None;
        let (mut run_diagonal, mut run_end, mut run_words) = (i64::MIN, 0usize, 0usize);
        for_each_word(query, |end, word| {
            let word = usize::from(word);
            if self.word_stamp[word] != self.stamp {
                return;
            }
            let diagonal = i64::from(self.word_end[word]) - end as i64;
            if diagonal == run_diagonal && end == run_end + 1 {
                run_words += 1;
            } else {
                run_words = 1;
            }
            (run_diagonal, run_end) = (diagonal, end);
            // `run_words` consecutive 8-mers on one diagonal are an exact match of
            // `run_words + 7` bases.
            if run_words + WORD_LENGTH > ANCHOR_LENGTH {
                range =
                    Some(range.map_or((diagonal, diagonal), |(lo, hi)| (lo.min(diagonal), hi.max(diagonal))));
            }
        });
        range
    }

    /// [`align`](Self::align) over the whole matrix, without the band: the reference the band
    /// is checked against.
    pub fn align_full(&mut self, query: &[u8], target: &[u8], scoring: &Scoring) -> AlignmentStats {
        if query.is_empty() || target.is_empty() {
            return AlignmentStats::default();
        }
        self.fill_and_trace(query, target, scoring, None).0
    }

    /// Fills the matrix, within `band` (lowest and highest diagonal j − i) if given, and traces
    /// the best path back. Also says whether the path ran along the edge of the band.
    fn fill_and_trace(
        &mut self,
        query: &[u8],
        target: &[u8],
        scoring: &Scoring,
        band: Option<(i64, i64)>,
    ) -> (AlignmentStats, bool) {
        let (n, m) = (query.len(), target.len());
        let width = m + 1;
        self.query_codes.clear();
        self.query_codes.extend(query.iter().map(|&b| iupac_bits(b)));
        self.target_codes.clear();
        self.target_codes.extend(target.iter().map(|&b| iupac_bits(b)));
        // Only cells inside the band are written, and the traceback reads only those.
        self.directions.resize((n + 1) * width, 0);
        self.row_bounds.clear();
        self.h_previous.clear();
        self.h_previous.resize(width, NEG_INF);
        self.h_current.clear();
        self.h_current.resize(width, NEG_INF);
        self.target_gap.clear();
        self.target_gap.resize(width, NEG_INF);

        let score_table = score_table(scoring);
        let (t_open, t_extend) = (scoring.terminal_gap_open, scoring.terminal_gap_extend);
        let (i_open, i_extend) = (scoring.interior_gap_open, scoring.interior_gap_extend);
        let (k_low, k_high) = band.unwrap_or((-(n as i64), m as i64));
        // Row i spans columns lo..=hi: the band, kept within 1..=m, reaching m on the last row.
        let bounds = |i: usize| -> (usize, usize) {
            let lo = (i as i64 + k_low).clamp(1, m as i64) as usize;
            let hi = if i == n { m } else { ((i as i64 + k_high).clamp(lo as i64, m as i64)) as usize };
            (lo, hi)
        };

        // Row 0: a left terminal gap in the query.
        self.h_previous[0] = 0;
        for j in 1..=m {
            self.h_previous[j] = -(t_open + (j as i32 - 1) * t_extend);
            self.directions[j] = FROM_QUERY_GAP | if j > 1 { QUERY_GAP_EXTENDS } else { 0 };
        }
        self.row_bounds.push((1, m));
        for i in 1..=n {
            let (lo, hi) = bounds(i);
            self.row_bounds.push((lo, hi));
            // Gaps in the query along this row: terminal on the last row, interior otherwise.
            let (row_open, row_extend) = if i == n { (t_open, t_extend) } else { (i_open, i_extend) };
            let scores = &score_table[usize::from(self.query_codes[i - 1] & 15)];
            let row = &mut self.directions[i * width..(i + 1) * width];
            // Column 0: a left terminal gap in the target.
            let h_left_edge = -(t_open + (i as i32 - 1) * t_extend);
            self.h_current[0] = h_left_edge;
            row[0] = FROM_TARGET_GAP | if i > 1 { TARGET_GAP_EXTENDS } else { 0 };
            // Left of the band nothing is reachable, except column 0.
            let h_left = if lo == 1 { h_left_edge } else { NEG_INF };
            self.h_current[lo - 1] = h_left;
            // The inner loop, written with plain indices and locals so that it stays quick in
            // unoptimised (test) builds too.
            let (h_previous, h_current) = (&self.h_previous, &mut self.h_current);
            let (target_gaps, target_codes) = (&mut self.target_gap, &self.target_codes);
            let (mut query_gap, mut h_left, mut h_diagonal) = (NEG_INF, h_left, h_previous[lo - 1]);
            for j in lo..=hi {
                // Gaps in the target are terminal in the last column.
                let (col_open, col_extend) = if j == m { (t_open, t_extend) } else { (i_open, i_extend) };
                let mut direction = 0u8;
                let extend = query_gap - row_extend;
                let open = h_left - row_open;
                query_gap = if extend > open {
                    direction |= QUERY_GAP_EXTENDS;
                    extend
                } else {
                    open
                };
                let h_up = h_previous[j];
                let extend = target_gaps[j] - col_extend;
                let open = h_up - col_open;
                let target_gap = if extend > open {
                    direction |= TARGET_GAP_EXTENDS;
                    extend
                } else {
                    open
                };
                target_gaps[j] = target_gap;
                let mut h = h_diagonal + scores[usize::from(target_codes[j - 1] & 15)];
                if target_gap > h {
                    h = target_gap;
                    direction |= FROM_TARGET_GAP;
                }
                if query_gap > h {
                    h = query_gap;
                    direction = (direction & !FROM_TARGET_GAP) | FROM_QUERY_GAP;
                }
                row[j] = direction;
                h_current[j] = h;
                h_diagonal = h_up;
                h_left = h;
            }
            // Right of the band nothing is reachable: clear what the next row will read there
            // (this buffer last held row i - 2, or row 0).
            if i < n {
                let next_hi = bounds(i + 1).1;
                for h in &mut self.h_current[hi + 1..=next_hi.max(hi)] {
                    *h = NEG_INF;
                }
            }
            std::mem::swap(&mut self.h_previous, &mut self.h_current);
        }
        let score = self.h_previous[m];
        let (stats, path_edge) = self.traceback(n, m, score, band.is_some().then_some((k_low, k_high)));
        (stats, path_edge)
    }

    /// Follows the direction bits from (n, m) back to (0, 0). With a band, also reports whether
    /// the path ran along one of its edges (where cells outside could have offered a better path).
    fn traceback(&self, n: usize, m: usize, score: i32, band: Option<(i64, i64)>) -> (AlignmentStats, bool) {
        let width = m + 1;
        let mut touched_edge = false;
        let mut stats = AlignmentStats { score, ..AlignmentStats::default() };
        // Runs of one operation, met from the right end: the first completed run is the
        // alignment's last one, the run still open at the end is its first.
        let mut runs = Runs::default();
        let (mut i, mut j) = (n, m);
        let mut state = State::Cell;
        while i > 0 && j > 0 {
            if let Some((k_low, k_high)) = band {
                let (lo, hi) = self.row_bounds[i];
                let diagonal = j as i64 - i as i64;
                touched_edge |=
                    (j == lo && lo > 1 && diagonal <= k_low) || (j == hi && hi < m && diagonal >= k_high);
            }
            let direction = self.directions[i * width + j];
            match state {
                State::QueryGap => {
                    runs.push(Op::QueryGap);
                    state = if direction & QUERY_GAP_EXTENDS != 0 { State::QueryGap } else { State::Cell };
                    j -= 1;
                }
                State::TargetGap => {
                    runs.push(Op::TargetGap);
                    state = if direction & TARGET_GAP_EXTENDS != 0 { State::TargetGap } else { State::Cell };
                    i -= 1;
                }
                State::Cell => match direction & 3 {
                    FROM_QUERY_GAP => state = State::QueryGap,
                    FROM_TARGET_GAP => state = State::TargetGap,
                    _ => {
                        let (q, t) = (self.query_codes[i - 1], self.target_codes[j - 1]);
                        if q & t != 0 {
                            stats.matches += 1;
                        } else {
                            stats.mismatches += 1;
                        }
                        runs.push(Op::Match);
                        i -= 1;
                        j -= 1;
                    }
                },
            }
        }
        for _ in 0..i {
            runs.push(Op::TargetGap);
        }
        for _ in 0..j {
            runs.push(Op::QueryGap);
        }
        stats.columns = runs.columns;
        let left = runs.current.filter(|(op, _)| *op != Op::Match);
        // A single run is both ends; count it once (vsearch's align_trim does the same).
        let right = runs.right_end.filter(|(op, _)| *op != Op::Match);
        let terminal: Vec<u32> = left.iter().chain(right.iter()).map(|&(_, len)| len).collect();
        stats.terminal_gap_columns = terminal.iter().sum();
        stats.interior_gaps = runs.gap_openings - terminal.len() as u32;
        (stats, touched_edge)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Cell,
    QueryGap,
    TargetGap,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Op {
    Match,
    QueryGap,
    TargetGap,
}

/// Run-length bookkeeping for the traceback.
#[derive(Default)]
struct Runs {
    current: Option<(Op, u32)>,
    right_end: Option<(Op, u32)>,
    gap_openings: u32,
    columns: u32,
}

impl Runs {
    fn push(&mut self, op: Op) {
        self.columns += 1;
        match &mut self.current {
            Some((last, len)) if *last == op => *len += 1,
            _ => {
                if let Some(done) = self.current.take()
                    && self.right_end.is_none()
                {
                    self.right_end = Some(done);
                }
                if op != Op::Match {
                    self.gap_openings += 1;
                }
                self.current = Some((op, 1));
            }
        }
    }
}

/// Score of a pair of four-bit codes: ambiguous codes score 0, as in vsearch.
fn score_table(scoring: &Scoring) -> [[i32; 16]; 16] {
    let mut table = [[0i32; 16]; 16];
    for (q, row) in table.iter_mut().enumerate() {
        for (t, cell) in row.iter_mut().enumerate() {
            let ambiguous = q.count_ones() != 1 || t.count_ones() != 1;
            *cell = if ambiguous {
                0
            } else if q == t {
                scoring.match_score
            } else {
                scoring.mismatch_score
            };
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn align(query: &[u8], target: &[u8]) -> AlignmentStats {
        let stats = Aligner::new().align(query, target, &VSEARCH_SCORING);
        assert_eq!(stats, Aligner::new().align_full(query, target, &VSEARCH_SCORING), "band and full differ");
        stats
    }

    /// 120 bases of a real 16S V4 region (the shipped reference's first sequence).
    const V4: &[u8] = b"TACGTAGGGTGCAAGCGTTGTCCGGATTTACTGGGCGTAAAGAGCTCGTAGGCGGTCTGTCGCGTCGGATGTGAAAACCCAGGGCTCAACCCTGGGCCTGCATTCGATACGGGCAGACTA";

    #[test]
    fn identical_sequences_align_without_gaps_at_full_identity() {
        let stats = align(V4, V4);
        assert_eq!((stats.matches, stats.mismatches, stats.columns), (120, 0, 120));
        assert_eq!(stats.score, 2 * 120);
        assert_eq!(stats.identity_percent(), 100.0);
    }

    #[test]
    fn one_mismatch_in_120_is_119_over_120() {
        let mut query = V4.to_vec();
        query[60] = if query[60] == b'A' { b'C' } else { b'A' };
        let stats = align(&query, V4);
        assert_eq!((stats.matches, stats.mismatches, stats.terminal_gap_columns), (119, 1, 0));
        assert_eq!(stats.score, 2 * 119 - 4);
        assert!((stats.identity() - 119.0 / 120.0).abs() < 1e-12);
    }

    #[test]
    fn terminal_gaps_are_cheap_and_do_not_count_against_identity() {
        // The query is the target without its first 5 and last 7 bases.
        let query = &V4[5..113];
        let stats = align(query, V4);
        assert_eq!(stats.terminal_gap_columns, 12);
        assert_eq!(stats.columns, 120);
        assert_eq!(stats.identity_percent(), 100.0);
        // Terminal gaps of 5 and 7 cost 2 + 4 and 2 + 6.
        assert_eq!(stats.score, 2 * 108 - 6 - 8);
        // With --iddef 2 a read covering part of a reference is 100 % identical to it.
        assert_eq!(align(V4, query).identity_percent(), 100.0);
    }

    #[test]
    fn an_interior_deletion_costs_20_plus_2_per_extra_base() {
        let mut query = V4[..50].to_vec();
        query.extend_from_slice(&V4[53..]);
        let stats = align(&query, V4);
        assert_eq!((stats.matches, stats.interior_gaps, stats.terminal_gap_columns), (117, 1, 0));
        assert_eq!(stats.score, 2 * 117 - (20 + 2 * 2));
        assert!((stats.identity() - 117.0 / 120.0).abs() < 1e-12);
    }

    #[test]
    fn an_excursion_beyond_the_band_is_aligned_over_the_full_matrix() {
        // 30 bases inserted early and 30 deleted late: same length, but the best path runs 30
        // diagonals off the main one, beyond the band of 16.
        let mut query = V4[..20].to_vec();
        query.extend_from_slice(b"GATTACAGATTACAGATTACAGATTACAGA");
        query.extend_from_slice(&V4[20..70]);
        query.extend_from_slice(&V4[100..]);
        assert_eq!(query.len(), V4.len());
        let stats = align(&query, V4);
        assert_eq!(stats.interior_gaps, 2, "{stats:?}");
        assert_eq!(stats.matches, 90);
    }

    #[test]
    fn banded_and_full_alignments_agree_on_real_reference_pairs() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/rdp_gold_v4.fasta");
        let text = std::fs::read_to_string(path).unwrap();
        let sequences: Vec<Vec<u8>> =
            text.lines().filter(|l| !l.starts_with('>')).map(|l| l.as_bytes().to_vec()).collect();
        let mut aligner = Aligner::new();
        for i in 0..150 {
            let (a, b) =
                (&sequences[(i * 37) % sequences.len()], &sequences[(i * 101 + 5) % sequences.len()]);
            let banded = aligner.align(a, b, &VSEARCH_SCORING);
            assert_eq!(banded, aligner.align_full(a, b, &VSEARCH_SCORING), "pair {i}");
        }
    }
}
