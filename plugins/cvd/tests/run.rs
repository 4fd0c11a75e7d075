//! Whole runs, natively: the notes' examples, integration, stacking, warnings, determinism and
//! input validation (everything `run` does except talking to the host).

use cvd::materials::FilmMaterial;
use cvd::recipe::{self, Input};
use cvd::simulate::{self, EndReason, RunTrace};
use serde_json::{Value, json};
use taskhost_sdk::TaskError;

fn input(value: Value) -> Input {
    serde_json::from_value(value).expect("input deserialises")
}

fn simulate(value: Value) -> RunTrace {
    let input = input(value);
    let plan = recipe::plan(&input).expect("valid input");
    simulate::simulate_run(&input, plan)
}

fn invalid(value: Value) -> String {
    match recipe::plan(&input(value)) {
        Err(TaskError::InvalidInput(message)) => message,
        other => panic!("expected invalid input, got {other:?}"),
    }
}

fn kinds(trace: &RunTrace, step: usize) -> Vec<&'static str> {
    trace.steps[step].warnings.iter().map(|(_, w)| w.kind).collect()
}

#[test]
fn the_notes_nitride_run_reaches_its_target_at_the_model_rate_with_stress_warnings() {
    let trace = simulate(json!({"run_id": "CVD_RUN_20251114_103045", "recipe": {
        "mode": "thermal", "temperature_c": 800.0, "pressure_torr": 0.5, "precursor_flow_sccm": 80.0,
        "carrier_gas_flow_sccm": 500.0, "film_material": "Si3N4", "target_thickness_nm": 100.0,
        "duration_sec": 3600.0,
    }}));
    let step = &trace.result.steps[0];
    assert_eq!(step.end_reason, EndReason::TargetReached);
    assert_eq!(step.thickness_nm, 100.0);
    // LPCVD nitride: a few nm/min, reaction-limited.
    assert!((3.0..6.0).contains(&step.growth.rate_nm_min), "{}", step.growth.rate_nm_min);
    assert_eq!(step.growth.regime.as_str(), "reaction_limited");
    let expected_time = 100.0 / step.growth.rate_nm_min * 60.0;
    assert!((step.duration_sec / expected_time - 1.0).abs() < 1e-9);
    // Stoichiometric LPCVD nitride deposited at 800 °C is tensile at 900 MPa (MEMS Exchange P3684):
    // at its calibration temperature the model returns that total; tensile warning and adhesion risk.
    assert!((step.stress.total_mpa - 900.0).abs() < 1e-9, "{}", step.stress.total_mpa);
    assert_eq!(kinds(&trace, 0), ["high_tensile_stress", "adhesion_risk"]);
    let adhesion = &step.warnings[1];
    assert!(adhesion.recommendation.is_some() && adhesion.energy_release_rate_j_m2.unwrap() > 0.0);
    // Samples every 10 simulated seconds, thickness growing, ending on the target.
    let samples = &trace.steps[0].samples;
    assert!((samples[1].time_sec - 10.0).abs() < 1e-9);
    assert!(samples.windows(2).all(|w| w[1].current_thickness_nm > w[0].current_thickness_nm));
    assert_eq!(trace.result.metrics.thickness_mean_nm, 100.0);
    assert_eq!(trace.result.run_id.as_deref(), Some("CVD_RUN_20251114_103045"));
}

#[test]
fn a_timed_step_integrates_rate_times_time_and_reports_a_missed_target() {
    let trace = simulate(json!({"recipe": {
        "film_material": "poly-Si", "temperature_c": 620.0, "duration_sec": 600.0, "target_thickness_nm": 500.0,
    }}));
    let step = &trace.result.steps[0];
    // At its reference recipe the model gives its calibration rate, the ~137 Å/min of the Stanford
    // SNF poly furnace at 620 °C and 0.5 Torr: 137 nm in 10 minutes.
    let reference = FilmMaterial::Polysilicon.data().reference.rate_nm_min;
    assert_eq!(reference, 13.7);
    assert!((step.growth.rate_nm_min - reference).abs() < 1e-9);
    assert!((step.thickness_nm - 137.0).abs() < 1e-9);
    // Undoped poly deposited at 620 °C is compressive at about 100 MPa, and expands like the
    // substrate: the total is the intrinsic stress alone.
    assert!((step.stress.total_mpa + 100.0).abs() < 1e-9, "{}", step.stress.total_mpa);
    assert!(step.stress.thermal_mismatch_mpa.abs() < 1e-9);
    assert_eq!(step.end_reason, EndReason::DurationElapsed);
    assert_eq!(step.target_reached, Some(false));
    assert_eq!(kinds(&trace, 0), ["target_not_reached"]);
}

#[test]
fn a_barrier_then_fill_recipe_stacks_films_and_bends_the_wafer_by_stoney() {
    let trace = simulate(json!({"steps": [
        {"temperature_c": 350.0, "film_material": "TiN", "target_thickness_nm": 20.0, "duration_sec": 300.0},
        {"temperature_c": 400.0, "film_material": "W", "target_thickness_nm": 200.0, "duration_sec": 1800.0},
    ]}));
    let [tin, w] = [&trace.result.steps[0], &trace.result.steps[1]];
    assert!(tin.target_reached.unwrap() && w.target_reached.unwrap());
    // The second step starts where the first ended, on top of its film.
    let first = &trace.steps[1].samples[0];
    assert!((first.time_sec - tin.duration_sec).abs() < 1e-9);
    assert!((first.stack_thickness_nm - 20.0).abs() < 1e-9);
    // Stoney for the stack: κ = 6 Σ σ t / (M_s t_s²).
    let force: f64 =
        trace.result.steps.iter().map(|s| s.stress.total_mpa * 1e6 * s.thickness_nm * 1e-9).sum();
    let kappa = 6.0 * force / (180.5e9 * 725e-6f64.powi(2));
    let wafer = trace.result.metrics.wafer;
    assert!((wafer.curvature_per_m / kappa - 1.0).abs() < 1e-12);
    assert!((wafer.bow_um - kappa * 0.2f64.powi(2) / 8.0 * 1e6).abs() < 1e-9);
    assert!(wafer.bow_um > 0.0, "tensile films bow the wafer concave");
    // W at 400 °C, its calibration temperature: the +1 GPa top of Leusink et al.'s 0.1–1 GPa.
    assert!((w.stress.total_mpa - 1000.0).abs() < 1e-9, "{}", w.stress.total_mpa);
    // TiN carries no intrinsic stress: its stress is the closed-form thermal mismatch
    // E/(1 − ν)·(α_f − α_Si)·ΔT with its data (251 GPa, 0.25, 9.35 ppm/K) over 350 − 25 °C.
    let d = FilmMaterial::TitaniumNitride.data();
    let thermal = d.youngs_modulus_gpa * 1e3 / (1.0 - d.poisson_ratio)
        * (d.thermal_expansion_ppm_k - 2.6)
        * 1e-6
        * (350.0 - 25.0);
    assert_eq!(tin.stress.intrinsic_mpa, 0.0);
    assert!((tin.stress.total_mpa / thermal - 1.0).abs() < 1e-12, "{} vs {thermal}", tin.stress.total_mpa);
    assert!((thermal - 734.2).abs() < 0.1, "{thermal}");
    // Both metal films are tensile beyond the thresholds.
    assert!(kinds(&trace, 0).contains(&"high_tensile_stress"));
    assert!(kinds(&trace, 1).contains(&"high_tensile_stress"));
}

#[test]
fn atmospheric_pressure_makes_the_same_chemistry_transport_limited() {
    let trace = simulate(json!({"recipe": {
        "film_material": "poly-Si", "temperature_c": 1100.0, "pressure_torr": 760.0,
        "precursor_flow_sccm": 500.0, "carrier_gas_flow_sccm": 20000.0, "duration_sec": 60.0,
    }}));
    let step = &trace.result.steps[0];
    assert_eq!(step.growth.regime.as_str(), "transport_limited");
    // Far above the LPCVD band: the band check flags it.
    let (_, w) = &trace.steps[0].warnings[0];
    assert_eq!((w.kind, w.reference, w.severity), ("rate_anomaly", Some("band"), "INFO"));
}

#[test]
fn noise_is_seeded_and_a_large_excursion_is_a_rate_anomaly_against_the_model() {
    let run = |seed: u64, noise: f64| {
        simulate(
            json!({"seed": seed, "simulation": {"temperature_noise_c": noise, "noise_correlation_sec": 60.0},
            "recipe": {"film_material": "Si3N4", "temperature_c": 780.0, "duration_sec": 3600.0}}),
        )
    };
    let (a, b, c) = (run(7, 3.0), run(7, 3.0), run(8, 3.0));
    let thickness = |t: &RunTrace| t.result.steps[0].thickness_nm;
    assert_eq!(thickness(&a), thickness(&b));
    assert_ne!(thickness(&a), thickness(&c));
    // 3 °C of noise at Ea = 1.8 eV moves the rate by ~6 %: within the 20 % tolerance.
    assert!(!kinds(&a, 0).contains(&"rate_anomaly"));
    // 15 °C moves it by ~30 %: a model-referenced anomaly.
    let wild = run(7, 15.0);
    let anomaly = wild.steps[0].warnings.iter().find(|(_, w)| w.kind == "rate_anomaly").expect("an anomaly");
    assert_eq!(anomaly.1.reference, Some("model"));
    // Without noise the thickness is exactly rate × time.
    let quiet = run(7, 0.0);
    assert!((thickness(&quiet) - quiet.result.steps[0].growth.rate_nm_min * 60.0).abs() < 1e-9);
}

#[test]
fn thresholds_can_be_overridden_per_step() {
    let trace = simulate(json!({"recipe": {
        "film_material": "Si3N4", "temperature_c": 780.0, "duration_sec": 60.0,
        "thresholds": {"tensile_stress_mpa": 2000.0, "adhesion_stress_mpa": 2000.0, "rate_band_nm_min": [4.0, 5.0]},
    }}));
    assert_eq!(kinds(&trace, 0), ["rate_anomaly"]);
}

#[test]
fn reports_stay_within_the_event_budget_for_the_longest_runs() {
    let steps: Vec<Value> = (0..20)
        .map(|_| json!({"film_material": "SiO2", "temperature_c": 700.0, "duration_sec": 172_800.0}))
        .collect();
    let trace = simulate(json!({"steps": steps}));
    let samples: usize = trace.steps.iter().map(|s| s.samples.len()).sum();
    let metrics: usize = trace.steps.iter().map(|s| s.metrics_at.len()).sum();
    assert!(samples <= 300 + 2 * 20, "{samples} progress samples");
    assert!(metrics <= 10 * 20, "{metrics} metrics updates");
}

#[test]
fn bad_input_is_refused_with_the_field_named() {
    let nitride = json!({"film_material": "Si3N4", "temperature_c": 780.0, "duration_sec": 60.0});
    let mut bad_pressure = nitride.clone();
    bad_pressure["pressure_torr"] = json!(-1.0);
    assert!(invalid(json!({"steps": [nitride, bad_pressure]})).starts_with("steps[1].pressure_torr: "));
    assert!(invalid(json!({})).starts_with("recipe: missing"));
    assert!(invalid(json!({"recipe": nitride, "steps": [nitride]})).starts_with("steps: "));
    assert!(
        invalid(json!({"recipe": {"film_material": "W", "temperature_c": 400.0}}))
            .starts_with("recipe.duration_sec: ")
    );
    assert!(
        invalid(json!({"recipe": {"film_material": "W", "temperature_c": 5000.0, "duration_sec": 1.0}}))
            .starts_with("recipe.temperature_c: must be between")
    );
    assert!(
        invalid(json!({"recipe": {
            "film_material": "W", "temperature_c": 400.0, "duration_sec": 1.0,
            "thresholds": {"rate_band_nm_min": [5.0, 1.0]},
        }}))
        .starts_with("recipe.thresholds.rate_band_nm_min: ")
    );
    assert!(
        invalid(json!({"recipe": {
            "film_material": "poly-Si", "temperature_c": 300.0, "target_thickness_nm": 1000.0,
        }}))
        .starts_with("recipe.target_thickness_nm: at the predicted")
    );
    assert!(
        invalid(json!({"recipe": {
            "film_material": "poly-Si", "temperature_c": 620.0, "duration_sec": 60.0,
            "model": {"reference_rate_nm_min": 1e9},
        }}))
        .starts_with("recipe.model.reference_rate_nm_min: ")
    );
    // Shape errors are serde's, with the path (the SDK adds it): an unknown film is refused there.
    let err =
        serde_json::from_value::<Input>(json!({"recipe": {"film_material": "GaN", "temperature_c": 1.0}}))
            .unwrap_err()
            .to_string();
    assert!(err.contains("unknown variant `GaN`") && err.contains("poly-Si"), "{err}");
}
