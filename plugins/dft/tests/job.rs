//! Whole jobs run natively against a recording monitor: steps and events in order, progress
//! from 0 to 100, the physics of the results, determinism, failure and cancellation.

use std::cell::RefCell;

use dft::calibration;
use dft::input::{self, Input};
use dft::job::{self, Monitor, Output};
use dft::units::HARTREE_EV;
use serde_json::{Value, json};
use taskhost_sdk::TaskError;

#[derive(Default)]
struct Recorder {
    events: RefCell<Vec<(String, Value)>>,
    progress: RefCell<Vec<f32>>,
    /// Report `cancelled()` once this many events were emitted.
    cancel_after: Option<usize>,
}

impl Monitor for Recorder {
    fn progress(&self, percent: f32, _message: &str) {
        self.progress.borrow_mut().push(percent);
    }
    fn emit(&self, kind: &str, data: Value) {
        self.events.borrow_mut().push((kind.to_owned(), data));
    }
    fn cancelled(&self) -> bool {
        self.cancel_after.is_some_and(|n| self.events.borrow().len() >= n)
    }
    fn pause(&self, _ms: u64) {}
}

impl Recorder {
    fn kinds(&self) -> Vec<String> {
        self.events.borrow().iter().map(|(k, _)| k.clone()).collect()
    }
    fn of_kind(&self, kind: &str) -> Vec<Value> {
        self.events.borrow().iter().filter(|(k, _)| k == kind).map(|(_, d)| d.clone()).collect()
    }
}

fn run_as(task: &str, input: Value) -> (Result<Value, TaskError>, Recorder) {
    let recorder = Recorder::default();
    let input: Input = serde_json::from_value(input).unwrap();
    let result = input::validate(input, task)
        .and_then(|spec| job::run(&spec, &recorder))
        .map(|o: Output| serde_json::to_value(o).unwrap());
    (result, recorder)
}

fn run(input: Value) -> (Value, Recorder) {
    let (result, recorder) = run_as("dft_job", input);
    (result.unwrap(), recorder)
}

fn net_force(out: &Value) -> f64 {
    out["net_force_ev_per_ang"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap().abs()).sum()
}

#[test]
fn a_silicon_job_runs_its_four_steps_in_order_with_rising_progress() {
    let (out, rec) = run(json!({"preset": "Si", "seed": 1}));
    let kinds = rec.kinds();
    let iterations = rec.of_kind("scf_iteration").len();
    let mut expected = vec!["step_started", "step_completed", "step_started"];
    expected.extend(std::iter::repeat_n("scf_iteration", iterations));
    expected.extend(["scf_converged", "step_completed", "step_started", "band_gap", "step_completed"]);
    expected.extend(["step_started", "forces", "step_completed"]);
    assert_eq!(kinds, expected);
    let steps: Vec<Value> = rec.of_kind("step_started").iter().map(|d| d["step"].clone()).collect();
    assert_eq!(steps, [json!("setup"), json!("scf"), json!("bands"), json!("forces")]);
    let progress = rec.progress.borrow();
    assert_eq!(progress.first(), Some(&0.0));
    assert_eq!(progress.last(), Some(&100.0));
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!((5..=20).contains(&iterations), "{iterations}");
    // The history in the result is the events'.
    assert_eq!(out["scf"]["history"].as_array().unwrap().len(), iterations);
}

#[test]
fn silicon_has_the_pbe_energy_gap_and_zero_forces() {
    let (out, _) = run(json!({"preset": "Si"}));
    let atom = calibration::atom_energy_hartree(dft::structure::Element::Si).unwrap() * HARTREE_EV;
    let per_atom = out["energy_per_atom_ev"].as_f64().unwrap();
    assert!((per_atom - (atom - 4.55)).abs() < 1e-6, "{per_atom}");
    assert!((out["binding_energy_per_atom_ev"].as_f64().unwrap() + 4.55).abs() < 1e-6);
    let gap = &out["band_gap"];
    assert!((gap["gap_ev"].as_f64().unwrap() - 0.61).abs() < 1e-9);
    assert_eq!(gap["kind"], "indirect");
    assert_eq!(gap["vbm_kpoint"]["label"], "Γ");
    assert!(gap["cbm_kpoint"]["label"].as_str().unwrap().ends_with("Γ→X"), "{}", gap["cbm_kpoint"]);
    assert!(
        gap["gap_ev"].as_f64().unwrap() < out["reference"]["band_gap_experiment_ev"].as_f64().unwrap() - 0.4
    );
    assert!(out["max_force_ev_per_ang"].as_f64().unwrap() < 1e-12);
}

#[test]
fn energy_is_extensive_under_supercells_and_the_gap_is_not() {
    let (one, _) = run(json!({"preset": "Si", "scf_tolerance_ev": 1e-9}));
    let (eight, _) = run(json!({"preset": "Si", "supercell": [2, 2, 2], "scf_tolerance_ev": 1e-9}));
    let (e1, e8) = (one["total_energy_ev"].as_f64().unwrap(), eight["total_energy_ev"].as_f64().unwrap());
    assert!((e8 - 8.0 * e1).abs() < 1e-7, "{e8} vs 8 × {e1}");
    assert!(
        (eight["energy_per_atom_ev"].as_f64().unwrap() - one["energy_per_atom_ev"].as_f64().unwrap()).abs()
            < 1e-9
    );
    assert_eq!(eight["band_gap"]["gap_ev"], one["band_gap"]["gap_ev"]);
    assert_eq!(eight["band_gap"]["bands_cell"], "primitive");
    assert_eq!(eight["structure"]["atoms"], 16);
}

#[test]
fn a_rattled_supercell_has_forces_that_sum_to_zero_and_a_warning() {
    let (out, rec) = run(json!({"preset": "Si", "supercell": [2, 1, 1], "rattle_ang": 0.03, "seed": 3}));
    assert!(out["max_force_ev_per_ang"].as_f64().unwrap() > 0.1);
    assert!(net_force(&out) < 1e-10, "{}", net_force(&out));
    let warnings = rec.of_kind("warning");
    assert!(warnings.iter().any(|w| w["code"] == "unrelaxed_structure"), "{warnings:?}");
    assert_eq!(out["band_gap"]["bands_cell"], "cell");
    // Disorder narrows the gap; it stays open.
    let gap = out["band_gap"]["gap_ev"].as_f64().unwrap();
    assert!(gap > 0.1 && gap < 0.61, "{gap}");
}

#[test]
fn a_job_is_a_function_of_its_seed() {
    let input = json!({"preset": "Ge", "supercell": [1, 1, 2], "rattle_ang": 0.03, "seed": 11});
    let (a, _) = run(input.clone());
    let (b, _) = run(input);
    assert_eq!(a, b);
    let (c, _) = run(json!({"preset": "Ge", "supercell": [1, 1, 2], "rattle_ang": 0.03, "seed": 12}));
    assert_ne!(a["scf"]["history"], c["scf"]["history"]);
    assert_ne!(a["forces_ev_per_ang"], c["forces_ev_per_ang"]);
}

#[test]
fn germanium_has_no_pbe_gap_and_says_so() {
    let (out, rec) = run(json!({"preset": "Ge"}));
    assert_eq!(out["band_gap"]["gap_ev"], 0.0);
    assert_eq!(out["band_gap"]["kind"], "none");
    assert!(rec.of_kind("warning").iter().any(|w| w["code"] == "no_band_gap"));
    assert!((out["binding_energy_per_atom_ev"].as_f64().unwrap() + 3.71).abs() < 1e-6);
}

#[test]
fn water_has_the_pyscf_energy_and_gap() {
    let (out, rec) = run(json!({"preset": "H2O"}));
    assert!((out["total_energy_hartree"].as_f64().unwrap() - calibration::H2O_ENERGY_HARTREE).abs() < 1e-7);
    assert_eq!(out["band_gap"]["kind"], "homo_lumo");
    assert!((out["band_gap"]["gap_ev"].as_f64().unwrap() - calibration::H2O_GAP_EV).abs() < 1e-12);
    assert_eq!(rec.of_kind("band_gap")[0]["kpoints"], 1);
    // Atomization energy: 2 D_OH.
    let atomization = -out["binding_energy_ev"].as_f64().unwrap();
    assert!((atomization - 2.0 * calibration::h2o_bond_depth_hartree() * HARTREE_EV).abs() < 1e-6);
}

#[test]
fn a_custom_sige_cell_lies_between_its_elements() {
    let a: f64 = (5.466 + 5.765) / 2.0; // Vegard's law between the PBE Si and Ge lattice constants
    let h = a / 2.0;
    let (out, _) = run(json!({"structure": {
        "lattice_ang": [[0, h, h], [h, 0, h], [h, h, 0]],
        "species": ["Si", "Ge"],
        "positions_frac": [[0, 0, 0], [0.25, 0.25, 0.25]]}}));
    let binding = out["binding_energy_per_atom_ev"].as_f64().unwrap();
    assert!(binding < -3.71 && binding > -4.55, "{binding}");
    let gap = out["band_gap"]["gap_ev"].as_f64().unwrap();
    assert!((0.0..0.61).contains(&gap), "{gap}");
    assert!(out["reference"].is_null());
}

#[test]
fn a_short_scf_budget_fails_clearly() {
    let (result, rec) = run_as("dft_job", json!({"preset": "Si", "max_scf": 3}));
    let Err(TaskError::Failed(message)) = result else { panic!("{result:?}") };
    assert!(message.starts_with("scf_not_converged: no convergence in 3 iterations"), "{message}");
    assert_eq!(rec.of_kind("scf_iteration").len(), 3);
    assert_eq!(rec.of_kind("scf_not_converged").len(), 1);
    assert!(rec.of_kind("scf_converged").is_empty());
}

#[test]
fn rhf_h2_and_heh_plus_report_real_iterations() {
    let (result, rec) = run_as("rhf", json!({"preset": "H2"}));
    let h2 = result.unwrap();
    assert!((h2["total_energy_hartree"].as_f64().unwrap() - -1.116_714).abs() < 2e-6);
    assert_eq!(h2["basis"], "STO-3G");
    assert!(rec.of_kind("scf_iteration").iter().all(|e| e["energy_hartree"].is_f64()));

    let (result, rec) =
        run_as("dft_job", json!({"method": "rhf", "preset": "HeH+", "slater_exponents": {"He": 2.0925}}));
    let heh = result.unwrap();
    assert!((heh["total_energy_hartree"].as_f64().unwrap() - -2.860_662).abs() < 5e-6);
    let iterations = rec.of_kind("scf_iteration");
    assert!(iterations.len() >= 5, "{}", iterations.len());
    assert_eq!(iterations.last().unwrap()["converged"], true);
    assert!(net_force(&heh) < 1e-6);
    // The bond is not at the STO-3G minimum: there is a force along it.
    assert!(heh["max_force_ev_per_ang"].as_f64().unwrap() > 1e-3);
    assert!(heh["band_gap"]["gap_ev"].as_f64().unwrap() > 10.0);
}

#[test]
fn a_cancelled_job_stops_with_cancelled() {
    let recorder = Recorder { cancel_after: Some(6), ..Recorder::default() };
    let input: Input = serde_json::from_value(json!({"preset": "Si", "scf_tolerance_ev": 1e-10})).unwrap();
    let spec = input::validate(input, "dft_job").unwrap();
    let result = job::run(&spec, &recorder);
    assert!(matches!(result, Err(TaskError::Cancelled)), "{result:?}");
    assert!(recorder.events.borrow().len() <= 7);
}

#[test]
fn the_largest_job_stays_within_the_event_and_size_limits() {
    let started = std::time::Instant::now();
    let (out, rec) =
        run(json!({"preset": "Si", "supercell": [4, 4, 2], "rattle_ang": 0.02, "scf_tolerance_ev": 1e-12}));
    assert_eq!(out["structure"]["atoms"], 64);
    assert!(rec.events.borrow().len() < 200);
    assert!(rec.events.borrow().iter().all(|(_, d)| d.to_string().len() < 64 * 1024));
    assert!(out.to_string().len() < 4 * 1024 * 1024);
    assert!(rec.of_kind("warning").iter().any(|w| w["code"] == "coarse_kpoints"));
    eprintln!("64-atom job: {:?}", started.elapsed());
}
