//! Seeded process noise: the temperature fluctuation of a real furnace controller.
//!
//! Off by default (`simulation.temperature_noise_c = 0`), so that a run is exactly the model. When
//! asked for, the temperature deviates from its set-point as an Ornstein–Uhlenbeck process of
//! standard deviation `σ` and correlation time `τ`, advanced with its exact discretisation
//! `x ← x e^{−Δt/τ} + σ √(1 − e^{−2Δt/τ}) ξ` (Gillespie, Phys. Rev. E 54, 2084 (1996)), with `ξ`
//! standard normal from a SplitMix64 generator (Steele, Lea & Flood, OOPSLA 2014) and the
//! Box–Muller transform. The same `seed` gives the same trace on every machine.

/// SplitMix64: a small, fast, well-mixed 64-bit generator; enough for process noise.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in the open interval (0, 1).
    pub fn next_open_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller; one of the pair is discarded for simplicity).
    pub fn next_standard_normal(&mut self) -> f64 {
        let (u1, u2) = (self.next_open_unit(), self.next_open_unit());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// An Ornstein–Uhlenbeck process with stationary standard deviation `sigma` and correlation time
/// `correlation_time`, started at 0.
#[derive(Debug, Clone)]
pub struct OrnsteinUhlenbeck {
    sigma: f64,
    correlation_time: f64,
    value: f64,
    rng: SplitMix64,
}

impl OrnsteinUhlenbeck {
    /// A process seeded with `seed`.
    pub fn new(sigma: f64, correlation_time: f64, seed: u64) -> Self {
        OrnsteinUhlenbeck { sigma, correlation_time, value: 0.0, rng: SplitMix64::new(seed) }
    }

    /// The current value.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// Advances by `dt` (same unit as the correlation time) and returns the new value.
    pub fn advance(&mut self, dt: f64) -> f64 {
        if self.sigma == 0.0 {
            return 0.0;
        }
        let decay = (-dt / self.correlation_time).exp();
        self.value =
            self.value * decay + self.sigma * (1.0 - decay * decay).sqrt() * self.rng.next_standard_normal();
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let (mut a, mut b) = (SplitMix64::new(42), SplitMix64::new(42));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        // Reference output of SplitMix64 from seed 0 (Vigna's splitmix64.c).
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn normals_have_unit_variance_and_the_process_its_sigma() {
        let mut rng = SplitMix64::new(7);
        let n = 200_000;
        let samples: Vec<f64> = (0..n).map(|_| rng.next_standard_normal()).collect();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "{mean} {var}");

        let mut process = OrnsteinUhlenbeck::new(2.0, 10.0, 3);
        let trace: Vec<f64> = (0..200_000).map(|_| process.advance(1.0)).collect();
        let var = trace.iter().map(|x| x * x).sum::<f64>() / trace.len() as f64;
        assert!((var.sqrt() / 2.0 - 1.0).abs() < 0.05, "{}", var.sqrt());
    }
}
