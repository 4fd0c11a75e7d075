//! Nucleotide words (k-mers) of length 8, the unit both classifiers and the search prefilter count.
//!
//! Eight is the word length of the RDP classifier (Wang et al. 2007, *Appl. Environ. Microbiol.*
//! 73:5261) and vsearch's default `--wordlength`: 4⁸ = 65,536 possible words, so a word is a
//! `u16` (two bits per base, A=0, C=1, G=2, T=3). A word that would contain an ambiguous base
//! (anything but A, C, G, T) is skipped, as both tools do.

/// Length of a word, in bases.
pub const WORD_LENGTH: usize = 8;
/// Number of distinct words, 4⁸.
pub const WORD_COUNT: usize = 1 << (2 * WORD_LENGTH);

/// The two-bit code of an unambiguous base, `None` for anything else (IUPAC ambiguity codes).
fn base_code(base: u8) -> Option<u16> {
    match base {
        b'A' => Some(0),
        b'C' => Some(1),
        b'G' => Some(2),
        b'T' => Some(3),
        _ => None,
    }
}

/// Every word of `sequence` in order of position, overlapping, skipping those with an
/// ambiguous base. `sequence` is upper case.
pub fn words(sequence: &[u8]) -> Vec<u16> {
    let mut out = Vec::with_capacity(sequence.len().saturating_sub(WORD_LENGTH - 1));
    let mut word: u32 = 0;
    let mut valid_run = 0usize;
    for &base in sequence {
        match base_code(base) {
            Some(code) => {
                word = ((word << 2) | u32::from(code)) & (WORD_COUNT as u32 - 1);
                valid_run += 1;
                if valid_run >= WORD_LENGTH {
                    out.push(word as u16);
                }
            }
            None => valid_run = 0,
        }
    }
    out
}

/// The distinct words of `sequence`, in order of first occurrence (vsearch's "unique k-mers",
/// and the word set of the RDP classifier).
pub fn distinct_words(sequence: &[u8]) -> Vec<u16> {
    let mut seen = vec![0u64; WORD_COUNT / 64];
    let mut out = Vec::new();
    for word in words(sequence) {
        let (slot, bit) = (usize::from(word) / 64, 1u64 << (word % 64));
        if seen[slot] & bit == 0 {
            seen[slot] |= bit;
            out.push(word);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_two_bits_per_base_and_skip_ambiguous_bases() {
        assert_eq!(words(b"AAAAAAAA"), vec![0]);
        assert_eq!(words(b"AAAAAAAC"), vec![1]);
        assert_eq!(words(b"TTTTTTTT"), vec![0xFFFF]);
        // 9 bases give 2 words; an N breaks every word that would span it.
        assert_eq!(words(b"AAAAAAAAC").len(), 2);
        assert!(words(b"AAAANAAAA").is_empty());
        assert_eq!(words(b"ACGTACGTNACGTACGT").len(), 2);
    }

    #[test]
    fn distinct_words_drop_repeats() {
        let repeated = b"ACGTACGTACGTACGT";
        assert_eq!(words(repeated).len(), 9);
        // Period 4: only 4 distinct 8-mers.
        assert_eq!(distinct_words(repeated).len(), 4);
    }
}
