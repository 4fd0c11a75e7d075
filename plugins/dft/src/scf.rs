//! The SCF history of the PBE model: a deterministic, seeded imitation of a Kohn-Sham
//! self-consistency loop with density mixing that ends at the model's energy.
//!
//! The PBE model knows its converged energy in advance; what a watcher of a DFT job sees is the
//! road there. This module draws that road with the features of real Pulay/Broyden-mixed SCF
//! runs (VASP, Quantum ESPRESSO):
//!
//! - The first iteration starts from a superposition of atomic densities, a few tenths of an eV to
//!   two eV per atom off the converged energy, with either sign.
//! - Once in the linear regime the error falls by one to two orders of magnitude per iteration
//!   (a rate drawn per iteration), and its sign may flip (the energy overshoots).
//! - The first iterations may go the wrong way ("charge sloshing"): with probability 0.35 the
//!   second iteration's error grows 1.5-4 fold, and with probability 0.15 the third as well.
//! - The density residual ‖ρ_out − ρ_in‖ falls half as fast as the energy error, because the
//!   Kohn-Sham energy is variational: its error is second order in the density error.
//! - Mixing: with β below 0.3 each iteration gains proportionally less; above 0.7 each iteration
//!   loses (β − 0.7)/0.3 × (0.8 to 2.2) orders to overshooting, so that β = 1 stagnates and
//!   often fails, as over-mixing does.
//! - Convergence as VASP's EDIFF: |E_n − E_{n−1}| below the tolerance. Without it after `max_scf`
//!   iterations, the history says so and the job fails.
//!
//! With the default tolerance (10⁻⁶ eV) and β = 0.4 this gives 6 to 11 iterations; tighter
//! tolerances and small β give up to 20 and more.

use crate::rng::SplitMix64;

/// What the SCF loop is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScfSettings {
    /// Converged when |ΔE| between two iterations falls below this (eV).
    pub tolerance_ev: f64,
    /// Give up after this many iterations.
    pub max_iterations: u32,
    /// Linear mixing fraction of the output density, 0 < β ≤ 1.
    pub mixing_beta: f64,
}

/// One SCF iteration.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ScfIteration {
    /// 1, 2, ...
    pub iteration: u32,
    /// Total energy at this iteration (eV).
    pub energy_ev: f64,
    /// E_n − E_{n−1} (eV); for the first iteration, relative to the initial guess's energy.
    pub delta_e_ev: f64,
    /// Density residual ‖ρ_out − ρ_in‖ per electron (dimensionless).
    pub residual: f64,
    /// True on the iteration that met the tolerance.
    pub converged: bool,
}

/// A whole SCF history.
#[derive(Debug, Clone, PartialEq)]
pub struct ScfHistory {
    /// The iterations, in order.
    pub iterations: Vec<ScfIteration>,
    /// Whether the last iteration met the tolerance.
    pub converged: bool,
}

impl ScfHistory {
    /// The last iteration's energy (eV).
    pub fn final_energy_ev(&self) -> f64 {
        self.iterations.last().map(|i| i.energy_ev).unwrap_or(f64::NAN)
    }
}

/// The SCF history of a system of `atoms` atoms and `electrons` electrons whose converged total
/// energy is `converged_energy_ev`, for `seed`.
pub fn mock_history(
    converged_energy_ev: f64,
    atoms: usize,
    electrons: f64,
    settings: &ScfSettings,
    seed: u64,
) -> ScfHistory {
    let mut rng = SplitMix64::new(seed, 0x5CF);
    let atoms = atoms.max(1) as f64;
    let beta = settings.mixing_beta;
    // Under-mixing slows every iteration in proportion; 0.3 and above is full speed.
    let speed = (beta / 0.3).clamp(0.05, 1.0);
    let over_mixing = ((beta - 0.7) / 0.3).max(0.0);

    let sign = if rng.chance(0.5) { 1.0 } else { -1.0 };
    let mut error = sign * atoms * rng.range(0.3, 2.0);
    // The energy of the initial guess, which the first ΔE is measured from.
    let guess_error = error * rng.range(3.0, 10.0);
    let mut previous = converged_energy_ev + guess_error;
    // Residual ∝ √|error per atom|, with a system-dependent prefactor.
    let residual_scale = rng.range(0.02, 0.06) * (atoms / electrons.max(1.0)).sqrt();

    let mut iterations = Vec::new();
    for n in 1..=settings.max_iterations {
        if n > 1 {
            let sloshing = (n == 2 && rng.chance(0.35)) || (n == 3 && rng.chance(0.15));
            if sloshing {
                error *= rng.range(1.5, 4.0);
            } else {
                let orders = rng.range(1.0, 2.0) * speed - over_mixing * rng.range(0.8, 2.2);
                error *= 10f64.powf(-orders);
            }
            if rng.chance(0.3) {
                error = -error;
            }
        }
        let energy = converged_energy_ev + error;
        let delta = energy - previous;
        let converged = n > 1 && delta.abs() < settings.tolerance_ev;
        let residual = residual_scale * (error.abs() / atoms).sqrt() * rng.range(0.8, 1.25);
        iterations.push(ScfIteration {
            iteration: n,
            energy_ev: energy,
            delta_e_ev: delta,
            residual,
            converged,
        });
        previous = energy;
        if converged {
            return ScfHistory { iterations, converged: true };
        }
    }
    ScfHistory { iterations, converged: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: ScfSettings = ScfSettings { tolerance_ev: 1e-6, max_iterations: 60, mixing_beta: 0.4 };

    #[test]
    fn the_same_seed_gives_the_same_history_and_seeds_differ() {
        let a = mock_history(-100.0, 2, 28.0, &DEFAULTS, 7);
        assert_eq!(a, mock_history(-100.0, 2, 28.0, &DEFAULTS, 7));
        assert_ne!(a, mock_history(-100.0, 2, 28.0, &DEFAULTS, 8));
    }

    #[test]
    fn default_runs_take_5_to_20_iterations_and_end_within_the_tolerance() {
        for seed in 0..500 {
            for (atoms, electrons) in [(2, 28.0), (3, 10.0), (16, 224.0)] {
                let h = mock_history(-500.0, atoms, electrons, &DEFAULTS, seed);
                assert!(h.converged);
                let n = h.iterations.len();
                assert!((5..=20).contains(&n), "seed {seed}: {n} iterations");
                assert!((h.final_energy_ev() + 500.0).abs() < DEFAULTS.tolerance_ev, "seed {seed}");
                assert!(h.iterations.iter().rev().skip(1).all(|i| !i.converged));
            }
        }
    }

    #[test]
    fn the_error_falls_one_to_two_orders_per_iteration_once_linear() {
        for seed in 0..200 {
            let h = mock_history(0.0, 2, 28.0, &DEFAULTS, seed);
            let errors: Vec<f64> = h.iterations.iter().map(|i| i.energy_ev.abs()).collect();
            // From the fourth iteration on, no sloshing is left.
            for w in errors.windows(2).skip(2) {
                let orders = (w[0] / w[1]).log10();
                assert!((1.0 - 1e-9..=2.0 + 1e-9).contains(&orders), "seed {seed}: {orders}");
            }
        }
    }

    #[test]
    fn some_histories_are_not_monotone_at_first() {
        let rising = (0..200)
            .filter(|&seed| {
                let h = mock_history(0.0, 2, 28.0, &DEFAULTS, seed);
                h.iterations[1].energy_ev.abs() > h.iterations[0].energy_ev.abs()
            })
            .count();
        assert!((40..=110).contains(&rising), "{rising} of 200");
    }

    #[test]
    fn the_residual_falls_about_half_as_many_orders_as_the_energy_error() {
        let h = mock_history(0.0, 2, 28.0, &DEFAULTS, 11);
        let (first, last) = (h.iterations[0], h.iterations[h.iterations.len() - 1]);
        let energy_orders = (first.energy_ev.abs() / last.energy_ev.abs()).log10();
        let residual_orders = (first.residual / last.residual).log10();
        assert!((residual_orders / energy_orders - 0.5).abs() < 0.1, "{residual_orders} / {energy_orders}");
    }

    #[test]
    fn under_mixing_is_slower_and_a_small_budget_fails() {
        let mean = |beta: f64| {
            let s = ScfSettings { mixing_beta: beta, ..DEFAULTS };
            (0..100).map(|seed| mock_history(0.0, 2, 28.0, &s, seed).iterations.len()).sum::<usize>() as f64
                / 100.0
        };
        assert!(mean(0.1) > 1.8 * mean(0.4), "{} vs {}", mean(0.1), mean(0.4));
        let short = ScfSettings { max_iterations: 3, ..DEFAULTS };
        let h = mock_history(0.0, 2, 28.0, &short, 1);
        assert!(!h.converged);
        assert_eq!(h.iterations.len(), 3);
    }

    #[test]
    fn over_mixing_often_fails_to_converge() {
        let s = ScfSettings { mixing_beta: 1.0, ..DEFAULTS };
        let failures = (0..100).filter(|&seed| !mock_history(0.0, 8, 112.0, &s, seed).converged).count();
        assert!(failures > 30, "{failures}");
    }
}
