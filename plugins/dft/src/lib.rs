//! `dft`: a DFT job for taskhost, after the `run_simulation_job` task of the NANO-OS Celery worker.
//!
//! A job runs four steps, each with progress and events: setup, SCF, bands, forces. Two methods:
//!
//! - `pbe` (task `dft_job`, the default): a *mock* of a PBE calculation whose numbers are not
//!   random but come from calibrated models: all-electron PBE total energies (molecules fitted to
//!   PySCF, crystals from published cohesive energies), Stillinger-Weber or Morse forces that sum
//!   to zero, sp3s* tight-binding bands with PBE's gap, and a seeded SCF history with the shape of
//!   a real one. See [`calibration`], [`potential`], [`bands`], [`scf`].
//! - `rhf` (task `rhf`, or `"method": "rhf"`): a real restricted Hartree-Fock calculation in the
//!   STO-3G basis for molecules of H and He (H₂, HeH⁺, H₃⁺, ...), whose SCF iterations are the
//!   ones reported. See [`rhf`].
//!
//! The science lives in plain modules with no host calls, tested natively; [`job`] runs the
//! steps against a [`job::Monitor`], which this file implements with the host's [`Context`].

pub mod bands;
pub mod calibration;
pub mod input;
pub mod job;
pub mod linalg;
pub mod potential;
pub mod rhf;
pub mod rng;
pub mod scf;
pub mod structure;
pub mod units;

use std::time::{Duration, Instant};

use taskhost_sdk::serde_json::{Value, json};
use taskhost_sdk::{Context, Level, Plugin, TaskError, export_plugin};

use crate::input::Input;
use crate::job::{Monitor, Output};

/// The plugin.
pub struct Dft;

/// The host, seen as a [`Monitor`].
struct HostMonitor<'a>(&'a Context);

impl Monitor for HostMonitor<'_> {
    fn progress(&self, percent: f32, message: &str) {
        self.0.progress(percent, message);
    }

    fn emit(&self, kind: &str, data: Value) {
        self.0.emit(kind, &data);
    }

    fn cancelled(&self) -> bool {
        self.0.cancelled()
    }

    fn pause(&self, ms: u64) {
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until && !self.0.cancelled() {
            std::thread::sleep(Duration::from_millis(ms.min(20)));
        }
    }
}

impl Plugin for Dft {
    type Input = Input;
    type Output = Output;

    fn summary() -> &'static str {
        "DFT job (setup, SCF, bands, forces): calibrated PBE model for Si, Ge, H2, H2O and custom \
         Si/Ge cells; real RHF/STO-3G for molecules of H and He"
    }

    fn input_schema() -> Value {
        let vec3 = json!({"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3});
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "job_id": {"type": "string", "description": "label echoed in the result"},
                "method": {"enum": ["pbe", "rhf"], "default": "pbe (task dft_job), rhf (task rhf)"},
                "preset": {"enum": ["Si", "Ge", "H2", "H2O", "HeH+"]},
                "structure": {
                    "type": "object",
                    "required": ["species"],
                    "properties": {
                        "species": {"type": "array", "items": {"enum": ["H", "He", "O", "Si", "Ge"]}},
                        "lattice_ang": {"type": "array", "items": vec3, "minItems": 3, "maxItems": 3},
                        "positions_frac": {"type": "array", "items": vec3},
                        "positions_ang": {"type": "array", "items": vec3},
                        "positions_bohr": {"type": "array", "items": vec3},
                        "charge": {"type": "integer", "default": 0}
                    }
                },
                "lattice_constant_ang": {"type": "number", "description": "Si/Ge presets; default the PBE value"},
                "bond_length_bohr": {"type": "number", "minimum": 0.5, "maximum": 8.0},
                "supercell": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 4}, "minItems": 3, "maxItems": 3},
                "rattle_ang": {"type": "number", "minimum": 0, "maximum": input::MAX_RATTLE_ANG, "default": 0},
                "seed": {"type": "integer", "minimum": 0, "default": 0},
                "scf_tolerance_ev": {"type": "number", "minimum": 1e-12, "maximum": 0.1, "default": "1e-6 (pbe), 1e-8 (rhf)"},
                "max_scf": {"type": "integer", "minimum": 1, "maximum": input::MAX_SCF, "default": 60},
                "mixing_beta": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": "0.4 (pbe), 1.0 (rhf)"},
                "kpoints_per_line": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20},
                "slater_exponents": {"type": "object", "additionalProperties": {"type": "number"}},
                "pace_ms": {"type": "integer", "minimum": 0, "maximum": input::MAX_PACE_MS, "default": 0}
            }
        })
    }

    fn run(ctx: &Context, input: Input) -> Result<Output, TaskError> {
        let spec = input::validate(input, &ctx.task().name)?;
        ctx.log(
            Level::Info,
            format!(
                "{:?} job on {} ({}, {} atoms)",
                spec.method,
                spec.structure.formula(),
                spec.source,
                spec.structure.len()
            ),
        );
        job::run(&spec, &HostMonitor(ctx))
    }
}

export_plugin!(Dft);
