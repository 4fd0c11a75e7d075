//! `cvd`: a chemical vapour deposition run, after the CVD job-queue notes
//! (`app.tasks.cvd_orchestration.run_cvd_simulation` on queue `cvd_runs`).
//!
//! Input: one `recipe` or a list of `steps` (a TiN barrier then a W fill), each with its film
//! (`Si3N4`, `SiO2`, `poly-Si`, `TiN`, `W`), temperature, pressure, flows and a duration or target
//! thickness. For each step the plugin computes the growth rate with the Grove model (an Arrhenius
//! surface reaction in series with gas-phase mass transfer whose diffusivity falls with pressure,
//! [`grove`], [`gas`]), calibrated per material to reference rates ([`materials`]: published where
//! a source was found and checked, marked illustrative where none was); integrates the thickness
//! over time ([`simulate`]); and computes the film stress (intrinsic plus thermal mismatch with
//! silicon) and the wafer's curvature and bow by Stoney's equation ([`stress`]).
//!
//! While it runs it reports what a process dashboard draws: `progress_update` events with the
//! simulated time, thickness, target, rate and stress; `metrics_update` every tenth of a step with
//! the regime and the wafer bow; `warning` events for high stress, adhesion risk and rate anomalies
//! (thresholds from the notes, overridable per step); and `step_started` / `step_completed`. The
//! whole trace is computed first by plain functions, then emitted, paced to
//! `simulation.speedup` simulated seconds per wall-clock second when asked (a live demo), as fast
//! as possible otherwise. The README documents the model, its parameters and their sources.

pub mod gas;
pub mod grove;
pub mod materials;
pub mod noise;
pub mod recipe;
pub mod simulate;
pub mod stress;

use std::time::{Duration, Instant};

use serde::Serialize;
use taskhost_sdk::serde_json::{Value, json};
use taskhost_sdk::{Context, Level, Plugin, TaskError, export_plugin};

use recipe::Input;
use simulate::{RunResult, RunTrace, Sample, Warning};

/// The plugin.
pub struct Cvd;

/// The data of a `progress_update` event: what the dashboard's thickness chart draws.
#[derive(Debug, Clone, Serialize)]
pub struct ProgressUpdate {
    /// Per cent of the whole run (the host's own progress events use this name).
    pub percent: f64,
    /// The same, under the CVD notes' name.
    pub progress: f64,
    /// One line for people.
    pub message: String,
    /// 0-based step.
    pub step_index: usize,
    /// Steps in the run.
    pub step_count: usize,
    /// The step's film.
    pub film_material: materials::FilmMaterial,
    /// Simulated seconds since the run started.
    pub time_sec: f64,
    /// Simulated seconds since the step started.
    pub step_time_sec: f64,
    /// This step's film, nm.
    pub current_thickness_nm: f64,
    /// The step's target, nm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_thickness_nm: Option<f64>,
    /// All films so far, nm.
    pub stack_thickness_nm: f64,
    /// Instantaneous rate, nm/min.
    pub deposition_rate_nm_min: f64,
    /// This film's stress at room temperature, MPa.
    pub stress_mpa: f64,
    /// Actual temperature, °C.
    pub temperature_c: f64,
}

impl Plugin for Cvd {
    type Input = Input;
    type Output = RunResult;

    fn summary() -> &'static str {
        "CVD run: Grove growth (reaction- or transport-limited), film stress and Stoney wafer bow, live warnings"
    }

    fn input_schema() -> Value {
        input_schema()
    }

    fn run(ctx: &Context, input: Input) -> Result<RunResult, TaskError> {
        let plan = recipe::plan(&input)?;
        if let Some(speedup) = input.simulation.speedup {
            let wall_sec = plan.planned_total_sec / speedup;
            let allowed_sec = ctx.task().deadline_ms as f64 / 1000.0 * 0.8;
            if wall_sec > allowed_sec {
                return Err(TaskError::invalid_input(
                    "simulation.speedup",
                    format!(
                        "{:.0} simulated s at {speedup}x take {wall_sec:.0} s, more than the task's time allows \
                         ({allowed_sec:.0} s); use a speedup of at least {:.1}",
                        plan.planned_total_sec,
                        plan.planned_total_sec / allowed_sec
                    ),
                ));
            }
        }
        ctx.log(
            Level::Info,
            format!(
                "{} step(s), {:.0} s of deposition planned, reporting every {:.1} s",
                plan.steps.len(),
                plan.planned_total_sec,
                plan.sample_interval_sec
            ),
        );
        let trace = simulate::simulate_run(&input, plan);
        emit_trace(ctx, &input, &trace)?;
        ctx.progress(100.0, "run completed");
        Ok(trace.result)
    }
}

/// Per cent of the run done at `sample`, on the planned durations (steps that end early jump).
fn percent_at(trace: &RunTrace, sample: &Sample, step_finished: bool) -> f64 {
    let plan = &trace.plan;
    let before: f64 = plan.steps[..sample.step_index].iter().map(|s| s.planned_duration_sec).sum();
    let planned = plan.steps[sample.step_index].planned_duration_sec;
    let within = if step_finished { planned } else { sample.step_time_sec.min(planned) };
    if plan.planned_total_sec > 0.0 {
        (100.0 * (before + within) / plan.planned_total_sec).min(100.0)
    } else {
        100.0
    }
}

/// Waits until the wall clock catches up with simulated time `time_sec` at `speedup`, checking for
/// cancellation at least every 100 ms.
fn pace(ctx: &Context, started: Instant, time_sec: f64, speedup: Option<f64>) -> Result<(), TaskError> {
    ctx.check_cancelled()?;
    let Some(speedup) = speedup else { return Ok(()) };
    let due = Duration::from_secs_f64(time_sec / speedup);
    loop {
        let elapsed = started.elapsed();
        if elapsed >= due {
            return Ok(());
        }
        std::thread::sleep((due - elapsed).min(Duration::from_millis(100)));
        ctx.check_cancelled()?;
    }
}

/// Emits the run's events in simulated-time order.
fn emit_trace(ctx: &Context, input: &Input, trace: &RunTrace) -> Result<(), TaskError> {
    let started = Instant::now();
    let step_count = trace.plan.steps.len();
    let mut percent: f64 = 0.0;
    for (plan, step) in trace.plan.steps.iter().zip(&trace.steps) {
        let below = simulate::layers_below(trace, plan.index);
        ctx.emit(
            "step_started",
            &json!({
                "step_index": plan.index,
                "step_count": step_count,
                "name": plan.name,
                "film_material": plan.film,
                "temperature_c": plan.temperature_c,
                "pressure_torr": plan.pressure_torr,
                "precursor": plan.material.precursor.name,
                "carrier_gas": plan.carrier.species().name,
                "precursor_flow_sccm": plan.precursor_flow_sccm,
                "carrier_gas_flow_sccm": plan.carrier_gas_flow_sccm,
                "duration_sec": plan.duration_sec,
                "target_thickness_nm": plan.target_thickness_nm,
                "planned_duration_sec": plan.planned_duration_sec,
                "predicted_rate_nm_min": plan.predicted.rate_nm_min,
                "regime": plan.predicted.regime,
                "damkohler_number": plan.predicted.damkohler_number,
                "stress_mpa": plan.stress.total_mpa,
            }),
        );
        let last = step.samples.len().saturating_sub(1);
        for (i, sample) in step.samples.iter().enumerate() {
            pace(ctx, started, sample.time_sec, input.simulation.speedup)?;
            percent = percent.max(percent_at(trace, sample, i == last));
            let message = format!(
                "step {}/{} {}: {:.1} nm{} at {:.2} nm/min",
                plan.index + 1,
                step_count,
                plan.material.name,
                sample.current_thickness_nm,
                plan.target_thickness_nm.map(|t| format!(" of {t} nm")).unwrap_or_default(),
                sample.deposition_rate_nm_min
            );
            ctx.progress(percent as f32, &message);
            ctx.emit(
                "progress_update",
                &ProgressUpdate {
                    percent,
                    progress: percent,
                    message,
                    step_index: plan.index,
                    step_count,
                    film_material: plan.film,
                    time_sec: sample.time_sec,
                    step_time_sec: sample.step_time_sec,
                    current_thickness_nm: sample.current_thickness_nm,
                    target_thickness_nm: plan.target_thickness_nm,
                    stack_thickness_nm: sample.stack_thickness_nm,
                    deposition_rate_nm_min: sample.deposition_rate_nm_min,
                    stress_mpa: plan.stress.total_mpa,
                    temperature_c: sample.temperature_c,
                },
            );
            let raised: Vec<&Warning> =
                step.warnings.iter().filter(|(at, _)| *at == i).map(|(_, w)| w).collect();
            if !raised.is_empty() {
                for w in &raised {
                    ctx.log(Level::Warn, &w.message);
                }
                ctx.emit(
                    "warning",
                    &json!({"step_index": plan.index, "time_sec": sample.time_sec, "warnings": raised}),
                );
            }
            if step.metrics_at.contains(&i) {
                ctx.emit("metrics_update", &simulate::metrics_at(plan, sample, &below, &input.substrate));
            }
        }
        ctx.emit("step_completed", &trace.result.steps[plan.index]);
    }
    Ok(())
}

/// The JSON schema `describe` reports (documentation for clients; serde and `recipe::plan` check).
fn input_schema() -> Value {
    let number = |description: &str| json!({"type": "number", "description": description});
    let step = json!({
        "type": "object",
        "required": ["film_material", "temperature_c"],
        "additionalProperties": false,
        "properties": {
            "name": {"type": "string"},
            "mode": {"enum": ["thermal"]},
            "film_material": {"enum": ["Si3N4", "SiO2", "poly-Si", "TiN", "W"]},
            "temperature_c": number("wafer temperature, 100-1200 °C"),
            "pressure_torr": number("0.001-760 Torr; default: the material's reference recipe"),
            "precursor_flow_sccm": number("default: reference recipe"),
            "carrier_gas_flow_sccm": number("default: reference recipe"),
            "carrier_gas": {"enum": ["N2", "H2", "Ar", "He", "NH3"]},
            "duration_sec": number("deposition time; with a target, the step ends at whichever comes first"),
            "target_thickness_nm": number("stop on reaching this thickness"),
            "thresholds": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "compressive_stress_mpa": number("default -400"),
                    "tensile_stress_mpa": number("default 300"),
                    "adhesion_stress_mpa": number("default 500"),
                    "rate_band_nm_min": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
                    "rate_tolerance_pct": number("default 20")
                }
            },
            "model": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "activation_energy_ev": number("surface reaction"),
                    "reference_rate_nm_min": number("rate at the material's reference recipe, to calibrate k0"),
                    "pre_exponential_cm_s": number("k0 itself"),
                    "intrinsic_stress_mpa": number("positive tensile"),
                    "youngs_modulus_gpa": number("film"),
                    "poisson_ratio": number("film"),
                    "thermal_expansion_ppm_k": number("film"),
                    "max_boundary_layer_cm": number("default 1"),
                    "reactor_cross_section_cm2": number("default 500"),
                    "deposition_area_cm2": number("default: one side of the wafer")
                }
            }
        }
    });
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "run_id": {"type": "string"},
            "recipe": step,
            "steps": {"type": "array", "items": step, "minItems": 1, "maxItems": recipe::MAX_STEPS},
            "substrate": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "thickness_um": number("default 725"),
                    "diameter_mm": number("default 200")
                }
            },
            "simulation": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "report_interval_sec": number("simulated seconds between progress_update events, default 10"),
                    "time_step_sec": number("integration step with noise, default 1"),
                    "temperature_noise_c": number("furnace temperature noise (1 sigma), default 0"),
                    "noise_correlation_sec": number("default 120"),
                    "speedup": number("simulated seconds per wall-clock second; absent: as fast as possible")
                }
            },
            "seed": {"type": "integer", "minimum": 0}
        },
        "oneOf": [{"required": ["recipe"]}, {"required": ["steps"]}]
    })
}

export_plugin!(Cvd);
