//! SplitMix64: the small, seeded pseudo-random generator behind every "random" choice of a job
//! (the SCF history's details, the rattle of atoms).
//!
//! A job is a function of its input: the same `seed` gives the same numbers on every machine, so
//! no ambient randomness is used. SplitMix64 (Steele, Lea and Flood, "Fast splittable
//! pseudorandom number generators", OOPSLA 2014) passes BigCrush, needs one `u64` of state and is
//! a dozen lines; nothing here needs more.

/// A SplitMix64 stream.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A stream for `seed`, kept apart from other streams of the same seed by `stream` (so that,
    /// say, the rattle of atoms and the SCF history do not share numbers).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut rng = SplitMix64 { state: seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03) };
        rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream_and_streams_differ() {
        let a: Vec<u64> = (0..5).scan(SplitMix64::new(7, 1), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..5).scan(SplitMix64::new(7, 1), |r, _| Some(r.next_u64())).collect();
        let c: Vec<u64> = (0..5).scan(SplitMix64::new(7, 2), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn uniform_numbers_fill_the_unit_interval_evenly() {
        let mut rng = SplitMix64::new(42, 0);
        let n = 100_000;
        let mean = (0..n).map(|_| rng.uniform()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "{mean}");
    }
}
