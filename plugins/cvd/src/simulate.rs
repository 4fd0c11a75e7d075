//! The run itself: thickness integrated over time, step after step, and what is reported.
//!
//! Each step integrates `dh/dt = G(T(t))` from zero thickness, with the temperature at its
//! set-point plus the optional seeded noise ([`crate::noise`]), by the trapezoidal rule. Without
//! noise the rate is constant in a step and one integration step per report sample is exact; with
//! noise the step is `simulation.time_step_sec`. A step ends when its duration has elapsed or, when
//! it has a target, on reaching it (the crossing time is interpolated within the integration step).
//!
//! Everything here is plain computation: [`simulate_run`] returns the whole trace (samples,
//! warnings, metrics and the result), and the plugin's `run` only paces and emits it. That keeps the
//! science testable natively and the events reproducible from the input alone.
//!
//! Warnings follow the CVD notes: high compressive stress (σ < −400 MPa), high tensile stress
//! (σ > +300 MPa), adhesion risk (|σ| > 500 MPa, with a recommendation and the stored elastic energy
//! that drives delamination), a rate outside the material's usual band or away from the model's
//! own prediction (which only process noise can cause), and a target not reached. Each kind is
//! raised at most once per step, at the first sample where it holds.

use serde::Serialize;

use crate::grove::{self, Regime};
use crate::materials::{FilmMaterial, ROOM_TEMPERATURE_C};
use crate::noise::OrnsteinUhlenbeck;
use crate::recipe::{self, FilmStress, MAX_STEP_SEC, ResolvedThresholds, RunPlan, StepPlan};
use crate::stress::{self, WaferShape};

/// One point of the thickness-versus-time trace.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// 0-based step.
    pub step_index: usize,
    /// Simulated seconds since the run started.
    pub time_sec: f64,
    /// Simulated seconds since the step started.
    pub step_time_sec: f64,
    /// Thickness of this step's film, nm.
    pub current_thickness_nm: f64,
    /// Thickness of all films deposited so far, nm.
    pub stack_thickness_nm: f64,
    /// Instantaneous deposition rate, nm/min.
    pub deposition_rate_nm_min: f64,
    /// Actual temperature (set-point plus noise), °C.
    pub temperature_c: f64,
}

/// Why a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The film reached `target_thickness_nm`.
    TargetReached,
    /// `duration_sec` elapsed.
    DurationElapsed,
}

/// A risk or anomaly, in the shape of the CVD notes' example warning.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    /// `high_compressive_stress`, `high_tensile_stress`, `adhesion_risk`, `rate_anomaly`,
    /// `target_not_reached`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `WARNING` or `INFO`.
    pub severity: &'static str,
    /// One line for people.
    pub message: String,
    /// The value that crossed the threshold.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
    /// The threshold crossed (`[low, high]` for a band).
    pub threshold: serde_json::Value,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<String>,
    /// For `rate_anomaly`: `band` (the material's usual range) or `model` (the prediction).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<&'static str>,
    /// For `adhesion_risk`: `(1 − ν) σ² t / E` at the time of the warning, J/m².
    #[serde(skip_serializing_if = "Option::is_none")]
    pub energy_release_rate_j_m2: Option<f64>,
    /// 0-based step.
    pub step_index: usize,
    /// The step's film.
    pub film_material: FilmMaterial,
    /// Simulated seconds since the run started.
    pub time_sec: f64,
    /// This step's film thickness then, nm.
    pub thickness_nm: f64,
}

/// The data of a `metrics_update` event and of the result's final metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    /// 0-based step.
    pub step_index: usize,
    /// The step's film.
    pub film_material: FilmMaterial,
    /// Simulated seconds since the run started.
    pub time_sec: f64,
    /// This step's film, nm.
    pub current_thickness_nm: f64,
    /// The step's target, nm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_thickness_nm: Option<f64>,
    /// All films so far, nm.
    pub stack_thickness_nm: f64,
    /// Instantaneous rate, nm/min.
    pub deposition_rate_nm_min: f64,
    /// The model's rate at the set-point, nm/min.
    pub predicted_rate_nm_min: f64,
    /// This film's stress at room temperature, MPa.
    pub stress_mpa: f64,
    /// Its intrinsic part, MPa.
    pub intrinsic_stress_mpa: f64,
    /// Its thermal-mismatch part, MPa.
    pub thermal_stress_mpa: f64,
    /// The growth regime.
    pub regime: Regime,
    /// `k_s / h_g`.
    pub damkohler_number: f64,
    /// The wafer under the whole stack (Stoney).
    pub wafer: WaferShape,
}

/// One step's trace and outcome.
#[derive(Debug, Clone)]
pub struct StepTrace {
    /// The samples, the first at the step's start and the last at its end.
    pub samples: Vec<Sample>,
    /// Warnings with the index of the sample at which each was raised.
    pub warnings: Vec<(usize, Warning)>,
    /// Indices of samples that also carry a `metrics_update` (every tenth of the step and the end).
    pub metrics_at: Vec<usize>,
    /// Why it ended.
    pub end_reason: EndReason,
    /// Simulated seconds.
    pub duration_sec: f64,
    /// Final film thickness, nm.
    pub thickness_nm: f64,
}

/// A step in the result.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// 0-based.
    pub index: usize,
    /// Label.
    pub name: String,
    /// The film.
    pub film_material: FilmMaterial,
    /// The reaction modelled.
    pub chemistry: &'static str,
    /// The rate-limiting precursor.
    pub precursor: &'static str,
    /// The carrier gas.
    pub carrier_gas: &'static str,
    /// °C.
    pub temperature_c: f64,
    /// Torr.
    pub pressure_torr: f64,
    /// sccm.
    pub precursor_flow_sccm: f64,
    /// sccm.
    pub carrier_gas_flow_sccm: f64,
    /// The step's target, nm.
    pub target_thickness_nm: Option<f64>,
    /// Whether it was reached.
    pub target_reached: Option<bool>,
    /// Why the step ended.
    pub end_reason: EndReason,
    /// Simulated seconds the step lasted.
    pub duration_sec: f64,
    /// Final thickness, nm.
    pub thickness_nm: f64,
    /// Thickness over duration, nm/min.
    pub mean_rate_nm_min: f64,
    /// The Grove model at the set-point.
    pub growth: grove::Growth,
    /// The surface reaction.
    pub kinetics: grove::Kinetics,
    /// The reference rate `k0` was calibrated against, nm/min (absent when `k0` was given).
    pub calibrated_against_rate_nm_min: Option<f64>,
    /// The film's stress.
    pub stress: FilmStress,
    /// The thresholds applied.
    pub thresholds: ResolvedThresholds,
    /// Warnings raised in this step.
    pub warnings: Vec<Warning>,
    /// Sources of the material parameters.
    pub sources: &'static str,
}

/// The task's result.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The caller's run id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// `completed`.
    pub status: &'static str,
    /// The noise seed.
    pub seed: u64,
    /// The steps.
    pub steps: Vec<StepResult>,
    /// The final stack.
    pub metrics: FinalMetrics,
    /// Which model computed this.
    pub model: ModelInfo,
}

/// The final stack in the result.
#[derive(Debug, Clone, Serialize)]
pub struct FinalMetrics {
    /// The stack thickness (the model has no across-wafer variation, so mean = point value), nm.
    pub thickness_mean_nm: f64,
    /// Same, nm.
    pub total_thickness_nm: f64,
    /// Simulated seconds.
    pub total_time_sec: f64,
    /// The wafer under the final stack, at room temperature.
    pub wafer: WaferShape,
    /// Warnings over all steps.
    pub warning_count: usize,
}

/// Names the model and its fixed constants.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// `grove`.
    pub growth: &'static str,
    /// `intrinsic + thermal mismatch; Stoney`.
    pub stress: &'static str,
    /// Si (100) biaxial modulus, GPa.
    pub substrate_biaxial_modulus_gpa: f64,
    /// Si thermal expansion, 10⁻⁶/K.
    pub substrate_thermal_expansion_ppm_k: f64,
    /// °C.
    pub room_temperature_c: f64,
    /// µm.
    pub substrate_thickness_um: f64,
    /// mm.
    pub substrate_diameter_mm: f64,
}

/// A whole simulated run.
#[derive(Debug, Clone)]
pub struct RunTrace {
    /// The plan it followed.
    pub plan: RunPlan,
    /// One trace per step.
    pub steps: Vec<StepTrace>,
    /// The result.
    pub result: RunResult,
}

/// Rate at `temperature_c` for the step's other conditions.
fn rate_at(plan: &StepPlan, temperature_c: f64) -> f64 {
    if temperature_c == plan.temperature_c {
        return plan.predicted.rate_nm_min;
    }
    let mut conditions = plan.conditions;
    conditions.temperature_k = crate::gas::kelvin(temperature_c);
    grove::growth(&conditions, &plan.kinetics, plan.molecules_per_cm3, &plan.reactor).rate_nm_min
}

/// Integrates one step. `start_sec` is the run time at its start, `stack_below_nm` the thickness
/// already deposited.
pub fn simulate_step(
    plan: &StepPlan,
    start_sec: f64,
    stack_below_nm: f64,
    sample_interval_sec: f64,
    time_step_sec: f64,
    noise: &mut OrnsteinUhlenbeck,
) -> (Vec<Sample>, EndReason) {
    const EPS: f64 = 1e-9;
    let limit = plan.duration_sec.unwrap_or(MAX_STEP_SEC);
    let sample = |t: f64, h: f64, rate: f64, temperature: f64| Sample {
        step_index: plan.index,
        time_sec: start_sec + t,
        step_time_sec: t,
        current_thickness_nm: h,
        stack_thickness_nm: stack_below_nm + h,
        deposition_rate_nm_min: rate,
        temperature_c: temperature,
    };
    let mut temperature = plan.temperature_c + noise.value();
    let mut rate = rate_at(plan, temperature);
    let (mut t, mut h) = (0.0, 0.0);
    let mut samples = vec![sample(t, h, rate, temperature)];
    let mut next_sample = sample_interval_sec;
    loop {
        let dt = time_step_sec.min(limit - t).min(next_sample - t);
        let next_temperature = plan.temperature_c + noise.advance(dt);
        let next_rate = rate_at(plan, next_temperature);
        let increment = 0.5 * (rate + next_rate) * dt / 60.0;
        if let Some(target) = plan.target_thickness_nm
            && h + increment >= target
        {
            let fraction = if increment > 0.0 { (target - h) / increment } else { 1.0 };
            let rate_then = rate + fraction * (next_rate - rate);
            let temperature_then = temperature + fraction * (next_temperature - temperature);
            samples.push(sample(t + fraction * dt, target, rate_then, temperature_then));
            return (samples, EndReason::TargetReached);
        }
        (t, h, rate, temperature) = (t + dt, h + increment, next_rate, next_temperature);
        if t >= limit - EPS {
            samples.push(sample(limit, h, rate, temperature));
            return (samples, EndReason::DurationElapsed);
        }
        if t >= next_sample - EPS {
            samples.push(sample(t, h, rate, temperature));
            next_sample += sample_interval_sec;
        }
    }
}

/// The warnings of a step, each with the index of the sample that raised it.
pub fn step_warnings(plan: &StepPlan, samples: &[Sample], end: EndReason) -> Vec<(usize, Warning)> {
    let th = &plan.thresholds;
    let sigma = plan.stress.total_mpa;
    let warning = |kind, severity, message: String, value, unit, threshold, at: &Sample| Warning {
        kind,
        severity,
        message,
        value,
        unit,
        threshold,
        recommendation: None,
        reference: None,
        energy_release_rate_j_m2: None,
        step_index: plan.index,
        film_material: plan.film,
        time_sec: at.time_sec,
        thickness_nm: at.current_thickness_nm,
    };
    let mut warnings = Vec::new();

    // Stress: known from the start, raised at the first sample with film on the wafer.
    if let Some((i, at)) = samples.iter().enumerate().find(|(_, s)| s.current_thickness_nm > 0.0) {
        if sigma < th.compressive_stress_mpa {
            let mut w = warning(
                "high_compressive_stress",
                "WARNING",
                format!("High compressive stress detected: {sigma:.1} MPa"),
                sigma,
                "MPa",
                th.compressive_stress_mpa.into(),
                at,
            );
            w.recommendation = Some("Consider stress relief anneal or reduce deposition rate".into());
            warnings.push((i, w));
        }
        if sigma > th.tensile_stress_mpa {
            let mut w = warning(
                "high_tensile_stress",
                "WARNING",
                format!("High tensile stress detected: {sigma:.1} MPa"),
                sigma,
                "MPa",
                th.tensile_stress_mpa.into(),
                at,
            );
            w.recommendation = Some(
                "Tensile films crack above a critical thickness: consider a stress-relief anneal, a lower-stress \
                 recipe (e.g. silicon-rich nitride, higher deposition temperature), thinner layers or a \
                 compensating compressive layer"
                    .into(),
            );
            warnings.push((i, w));
        }
        if sigma.abs() > th.adhesion_stress_mpa {
            // The energy available for delamination grows with thickness: report it at the end.
            let final_thickness = samples.last().map_or(0.0, |s| s.current_thickness_nm);
            let energy = stress::strain_energy_release_rate_j_m2(
                sigma * 1e6,
                final_thickness * 1e-9,
                plan.stress.youngs_modulus_gpa * 1e9,
                plan.stress.poisson_ratio,
            );
            let mut w = warning(
                "adhesion_risk",
                "WARNING",
                format!(
                    "Adhesion risk: |stress| {:.1} MPa exceeds {:.0} MPa; stored elastic energy {energy:.3} J/m² at \
                     {final_thickness:.1} nm",
                    sigma.abs(),
                    th.adhesion_stress_mpa
                ),
                sigma,
                "MPa",
                th.adhesion_stress_mpa.into(),
                at,
            );
            w.recommendation = Some(
                "Improve adhesion (adhesion or glue layer, pre-deposition clean, surface treatment) or lower the \
                 stress-thickness product: the energy driving delamination grows as stress squared times thickness"
                    .into(),
            );
            w.energy_release_rate_j_m2 = Some(energy);
            warnings.push((i, w));
        }
    }

    // Rate outside the material's usual band.
    let [low, high] = th.rate_band_nm_min;
    if let Some((i, at)) =
        samples.iter().enumerate().find(|(_, s)| !(low..=high).contains(&s.deposition_rate_nm_min))
    {
        let rate = at.deposition_rate_nm_min;
        let side = if rate < low { "below" } else { "above" };
        let mut w = warning(
            "rate_anomaly",
            "INFO",
            format!(
                "Deposition rate {rate:.2} nm/min is {side} the expected {low}-{high} nm/min for {}",
                plan.material.name
            ),
            rate,
            "nm/min",
            serde_json::json!([low, high]),
            at,
        );
        w.reference = Some("band");
        w.recommendation = Some(format!(
            "Check the recipe against the {} process window (temperature, pressure, flows)",
            plan.material.name
        ));
        warnings.push((i, w));
    }

    // Rate away from the model's own prediction (only process noise moves it).
    let predicted = plan.predicted.rate_nm_min;
    let tolerance = th.rate_tolerance_pct;
    if let Some((i, at)) = samples
        .iter()
        .enumerate()
        .find(|(_, s)| (s.deposition_rate_nm_min / predicted - 1.0).abs() * 100.0 > tolerance)
    {
        let deviation = (at.deposition_rate_nm_min / predicted - 1.0) * 100.0;
        let mut w = warning(
            "rate_anomaly",
            "WARNING",
            format!(
                "Deposition rate {:.2} nm/min deviates {deviation:+.1} % from the predicted {predicted:.2} nm/min \
                 (temperature {:.1} °C)",
                at.deposition_rate_nm_min, at.temperature_c
            ),
            at.deposition_rate_nm_min,
            "nm/min",
            tolerance.into(),
            at,
        );
        w.reference = Some("model");
        w.recommendation = Some("Check the temperature controller and the mass-flow controllers".into());
        warnings.push((i, w));
    }

    if let (Some(target), EndReason::DurationElapsed, Some(last)) =
        (plan.target_thickness_nm, end, samples.last())
    {
        let reached = last.current_thickness_nm;
        let mean_rate = reached / last.step_time_sec.max(1e-9) * 60.0;
        let mut w = warning(
            "target_not_reached",
            "WARNING",
            format!("Target {target} nm not reached: {reached:.1} nm after {:.0} s", last.step_time_sec),
            reached,
            "nm",
            target.into(),
            last,
        );
        if mean_rate > 0.0 {
            w.recommendation = Some(format!(
                "At the observed {mean_rate:.2} nm/min the target needs about {:.0} s: extend duration_sec",
                target / mean_rate * 60.0
            ));
        }
        warnings.push((samples.len() - 1, w));
    }
    warnings.sort_by_key(|(i, _)| *i);
    warnings
}

/// Indices of the samples that carry a `metrics_update`: the first sample past each tenth of the
/// step, and the last.
fn metrics_indices(samples: &[Sample]) -> Vec<usize> {
    let end = samples.last().map_or(0.0, |s| s.step_time_sec);
    let mut indices = Vec::new();
    let mut next_tenth = 1;
    for (i, s) in samples.iter().enumerate().skip(1) {
        if i + 1 == samples.len() {
            indices.push(i);
        } else if s.step_time_sec >= end * next_tenth as f64 / 10.0 {
            indices.push(i);
            while s.step_time_sec >= end * next_tenth as f64 / 10.0 {
                next_tenth += 1;
            }
        }
    }
    indices
}

/// `(stress Pa, thickness m)` of the finished layers.
fn layers(steps: &[StepPlan], traces: &[StepTrace]) -> Vec<(f64, f64)> {
    steps.iter().zip(traces).map(|(p, t)| (p.stress.total_mpa * 1e6, t.thickness_nm * 1e-9)).collect()
}

/// The metrics at `sample` of step `plan`, over finished layers `below`.
pub fn metrics_at(
    plan: &StepPlan,
    sample: &Sample,
    below: &[(f64, f64)],
    substrate: &recipe::Substrate,
) -> Metrics {
    let mut stack = below.to_vec();
    stack.push((plan.stress.total_mpa * 1e6, sample.current_thickness_nm * 1e-9));
    Metrics {
        step_index: plan.index,
        film_material: plan.film,
        time_sec: sample.time_sec,
        current_thickness_nm: sample.current_thickness_nm,
        target_thickness_nm: plan.target_thickness_nm,
        stack_thickness_nm: sample.stack_thickness_nm,
        deposition_rate_nm_min: sample.deposition_rate_nm_min,
        predicted_rate_nm_min: plan.predicted.rate_nm_min,
        stress_mpa: plan.stress.total_mpa,
        intrinsic_stress_mpa: plan.stress.intrinsic_mpa,
        thermal_stress_mpa: plan.stress.thermal_mismatch_mpa,
        regime: plan.predicted.regime,
        damkohler_number: plan.predicted.damkohler_number,
        wafer: stress::wafer_shape(
            &stack,
            recipe::substrate_biaxial_modulus_pa(),
            substrate.thickness_um * 1e-6,
            substrate.diameter_mm * 1e-3,
        ),
    }
}

/// Simulates a validated input from start to end.
pub fn simulate_run(input: &recipe::Input, plan: RunPlan) -> RunTrace {
    let sim = &input.simulation;
    let mut noise = OrnsteinUhlenbeck::new(sim.temperature_noise_c, sim.noise_correlation_sec, input.seed);
    let mut traces: Vec<StepTrace> = Vec::new();
    let mut results = Vec::new();
    let (mut clock, mut stack) = (0.0, 0.0);
    for step in &plan.steps {
        let (samples, end_reason) =
            simulate_step(step, clock, stack, plan.sample_interval_sec, plan.time_step_sec, &mut noise);
        let warnings = step_warnings(step, &samples, end_reason);
        let last = samples.last().copied().unwrap_or(Sample {
            step_index: step.index,
            time_sec: clock,
            step_time_sec: 0.0,
            current_thickness_nm: 0.0,
            stack_thickness_nm: stack,
            deposition_rate_nm_min: step.predicted.rate_nm_min,
            temperature_c: step.temperature_c,
        });
        let duration = last.step_time_sec;
        results.push(StepResult {
            index: step.index,
            name: step.name.clone(),
            film_material: step.film,
            chemistry: step.material.chemistry,
            precursor: step.material.precursor.name,
            carrier_gas: step.carrier.species().name,
            temperature_c: step.temperature_c,
            pressure_torr: step.pressure_torr,
            precursor_flow_sccm: step.precursor_flow_sccm,
            carrier_gas_flow_sccm: step.carrier_gas_flow_sccm,
            target_thickness_nm: step.target_thickness_nm,
            target_reached: step.target_thickness_nm.map(|_| end_reason == EndReason::TargetReached),
            end_reason,
            duration_sec: duration,
            thickness_nm: last.current_thickness_nm,
            mean_rate_nm_min: if duration > 0.0 { last.current_thickness_nm / duration * 60.0 } else { 0.0 },
            growth: step.predicted,
            kinetics: step.kinetics,
            calibrated_against_rate_nm_min: step.calibrated_against_nm_min,
            stress: step.stress,
            thresholds: step.thresholds,
            warnings: warnings.iter().map(|(_, w)| w.clone()).collect(),
            sources: step.material.sources,
        });
        clock += duration;
        stack += last.current_thickness_nm;
        traces.push(StepTrace {
            metrics_at: metrics_indices(&samples),
            samples,
            warnings,
            end_reason,
            duration_sec: duration,
            thickness_nm: last.current_thickness_nm,
        });
    }
    let substrate = &input.substrate;
    let wafer = stress::wafer_shape(
        &layers(&plan.steps, &traces),
        recipe::substrate_biaxial_modulus_pa(),
        substrate.thickness_um * 1e-6,
        substrate.diameter_mm * 1e-3,
    );
    let warning_count = traces.iter().map(|t| t.warnings.len()).sum();
    let result = RunResult {
        run_id: input.run_id.clone(),
        status: "completed",
        seed: input.seed,
        steps: results,
        metrics: FinalMetrics {
            thickness_mean_nm: stack,
            total_thickness_nm: stack,
            total_time_sec: clock,
            wafer,
            warning_count,
        },
        model: ModelInfo {
            growth: "grove: Arrhenius surface reaction in series with boundary-layer mass transfer",
            stress: "intrinsic + thermal mismatch with Si; wafer curvature by Stoney",
            substrate_biaxial_modulus_gpa: recipe::substrate_biaxial_modulus_pa() / 1e9,
            substrate_thermal_expansion_ppm_k: crate::materials::SILICON_THERMAL_EXPANSION * 1e6,
            room_temperature_c: ROOM_TEMPERATURE_C,
            substrate_thickness_um: substrate.thickness_um,
            substrate_diameter_mm: substrate.diameter_mm,
        },
    };
    RunTrace { plan, steps: traces, result }
}

/// `(stress Pa, thickness m)` of the layers finished before step `index`.
pub fn layers_below(trace: &RunTrace, index: usize) -> Vec<(f64, f64)> {
    layers(&trace.plan.steps[..index], &trace.steps[..index])
}
