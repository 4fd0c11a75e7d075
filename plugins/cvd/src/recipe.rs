//! The task's input, its validation, and the plan it resolves to.
//!
//! A run is one `recipe` or a list of `steps` (a TiN barrier then a W fill, say), deposited one on
//! top of the other. Each step names its film and temperature; the pressure and flows default to
//! the material's reference recipe; it ends after `duration_sec`, on reaching
//! `target_thickness_nm`, or at whichever comes first when both are given. Every value is checked
//! here, before any work, and a bad one is reported with its path as serde would name it
//! (`steps[1].pressure_torr: must be > 0`).
//!
//! [`plan`] turns valid input into [`StepPlan`]s: the material data with any `model` overrides
//! applied, the Grove model calibrated, the stresses computed, the thresholds resolved and the
//! step's predicted duration, which sizes the reporting interval and the progress bar.

use serde::{Deserialize, Serialize};
use taskhost_sdk::TaskError;

use crate::grove::{self, CalibrationError, Conditions, Growth, Kinetics, Reactor};
use crate::materials::{
    CarrierGas, FilmMaterial, MaterialData, ROOM_TEMPERATURE_C, SILICON_100_BIAXIAL_MODULUS,
    SILICON_THERMAL_EXPANSION,
};
use crate::stress;

/// The longest step, simulated seconds (48 h).
pub const MAX_STEP_SEC: f64 = 48.0 * 3600.0;
/// The most steps in one recipe.
pub const MAX_STEPS: usize = 20;
/// The most integration steps in one run (bounds the CPU a run may take).
pub const MAX_INTEGRATION_STEPS: f64 = 1_000_000.0;
/// The most progress samples in one run (bounds the events a run emits).
pub const MAX_SAMPLES: f64 = 300.0;

/// The task's input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The caller's name for the run (the notes' `run_id`), echoed in the result.
    #[serde(default)]
    pub run_id: Option<String>,
    /// A single-step recipe.
    #[serde(default)]
    pub recipe: Option<Step>,
    /// A multi-step recipe, deposited in order.
    #[serde(default)]
    pub steps: Option<Vec<Step>>,
    /// The wafer.
    #[serde(default)]
    pub substrate: Substrate,
    /// How the run is simulated and reported.
    #[serde(default)]
    pub simulation: Simulation,
    /// Seed of the process noise (used only when `simulation.temperature_noise_c > 0`).
    #[serde(default)]
    pub seed: u64,
}

/// The only mode modelled: thermally activated CVD (LPCVD, APCVD, MOCVD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Thermal CVD.
    #[default]
    Thermal,
}

/// One deposition step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A label for the step.
    #[serde(default)]
    pub name: Option<String>,
    /// `thermal` (the default and the only mode).
    #[serde(default)]
    pub mode: Mode,
    /// `Si3N4`, `SiO2`, `poly-Si`, `TiN` or `W`.
    pub film_material: FilmMaterial,
    /// Susceptor (wafer) temperature, °C.
    pub temperature_c: f64,
    /// Chamber pressure, Torr (default: the material's reference recipe).
    #[serde(default)]
    pub pressure_torr: Option<f64>,
    /// Precursor flow, sccm (default: reference recipe).
    #[serde(default)]
    pub precursor_flow_sccm: Option<f64>,
    /// Carrier or co-reactant flow, sccm (default: reference recipe).
    #[serde(default)]
    pub carrier_gas_flow_sccm: Option<f64>,
    /// The carrier gas (default: the material's).
    #[serde(default)]
    pub carrier_gas: Option<CarrierGas>,
    /// Deposition time, s.
    #[serde(default)]
    pub duration_sec: Option<f64>,
    /// Stop on reaching this thickness, nm.
    #[serde(default)]
    pub target_thickness_nm: Option<f64>,
    /// Warning thresholds for this step.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Model parameters that replace the material's defaults.
    #[serde(default)]
    pub model: ModelOverrides,
}

/// Warning thresholds; absent fields keep the CVD notes' values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// High compressive stress below this, MPa (default −400).
    #[serde(default)]
    pub compressive_stress_mpa: Option<f64>,
    /// High tensile stress above this, MPa (default +300).
    #[serde(default)]
    pub tensile_stress_mpa: Option<f64>,
    /// Adhesion risk when |σ| exceeds this, MPa (default 500).
    #[serde(default)]
    pub adhesion_stress_mpa: Option<f64>,
    /// Expected deposition-rate band `[low, high]`, nm/min (default: the material's).
    #[serde(default)]
    pub rate_band_nm_min: Option<[f64; 2]>,
    /// Largest deviation of the rate from the model's prediction, per cent (default 20).
    #[serde(default)]
    pub rate_tolerance_pct: Option<f64>,
}

/// Model parameters that replace the material's defaults (see the README's parameter table).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOverrides {
    /// Apparent activation energy of the surface reaction, eV.
    #[serde(default)]
    pub activation_energy_ev: Option<f64>,
    /// Rate at the material's reference recipe, nm/min, to calibrate `k0` against.
    #[serde(default)]
    pub reference_rate_nm_min: Option<f64>,
    /// `k0` itself, cm/s (skips calibration).
    #[serde(default)]
    pub pre_exponential_cm_s: Option<f64>,
    /// Intrinsic (growth) stress, MPa, positive tensile.
    #[serde(default)]
    pub intrinsic_stress_mpa: Option<f64>,
    /// Film Young's modulus, GPa.
    #[serde(default)]
    pub youngs_modulus_gpa: Option<f64>,
    /// Film Poisson's ratio.
    #[serde(default)]
    pub poisson_ratio: Option<f64>,
    /// Film thermal expansion, 10⁻⁶/K.
    #[serde(default)]
    pub thermal_expansion_ppm_k: Option<f64>,
    /// The reactor's largest diffusion length, cm (default 1).
    #[serde(default)]
    pub max_boundary_layer_cm: Option<f64>,
    /// The reactor's flow cross-section, cm² (default 500).
    #[serde(default)]
    pub reactor_cross_section_cm2: Option<f64>,
    /// Area consuming precursor, cm² (default: one side of the wafer).
    #[serde(default)]
    pub deposition_area_cm2: Option<f64>,
}

/// The wafer: (100) silicon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Substrate {
    /// µm (default 725, a 200 mm wafer).
    pub thickness_um: f64,
    /// mm (default 200).
    pub diameter_mm: f64,
}

impl Default for Substrate {
    fn default() -> Self {
        Substrate { thickness_um: 725.0, diameter_mm: 200.0 }
    }
}

/// How the run is simulated and reported.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Simulation {
    /// Simulated seconds between two `progress_update` events (default 10, as in the notes;
    /// raised when a run would report more than 300 times).
    pub report_interval_sec: f64,
    /// Integration step with process noise, s (default 1).
    pub time_step_sec: f64,
    /// Standard deviation of the furnace temperature about its set-point, °C (default 0: none).
    pub temperature_noise_c: f64,
    /// Correlation time of that noise, s (default 120).
    pub noise_correlation_sec: f64,
    /// Simulated seconds per wall-clock second; absent: as fast as possible.
    pub speedup: Option<f64>,
}

impl Default for Simulation {
    fn default() -> Self {
        Simulation {
            report_interval_sec: 10.0,
            time_step_sec: 1.0,
            temperature_noise_c: 0.0,
            noise_correlation_sec: 120.0,
            speedup: None,
        }
    }
}

/// Thresholds with defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ResolvedThresholds {
    /// MPa.
    pub compressive_stress_mpa: f64,
    /// MPa.
    pub tensile_stress_mpa: f64,
    /// MPa.
    pub adhesion_stress_mpa: f64,
    /// nm/min.
    pub rate_band_nm_min: [f64; 2],
    /// Per cent.
    pub rate_tolerance_pct: f64,
}

/// The resolved film properties that give its stress.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FilmStress {
    /// MPa.
    pub intrinsic_mpa: f64,
    /// MPa, from cooling to room temperature.
    pub thermal_mismatch_mpa: f64,
    /// MPa, at room temperature.
    pub total_mpa: f64,
    /// GPa.
    pub youngs_modulus_gpa: f64,
    /// Poisson's ratio.
    pub poisson_ratio: f64,
    /// 10⁻⁶/K.
    pub thermal_expansion_ppm_k: f64,
}

/// A step ready to simulate.
#[derive(Debug, Clone)]
pub struct StepPlan {
    /// 0-based.
    pub index: usize,
    /// The caller's label, or `step N`.
    pub name: String,
    /// The film.
    pub film: FilmMaterial,
    /// Its data, before overrides (for sources and chemistry).
    pub material: MaterialData,
    /// The carrier gas.
    pub carrier: CarrierGas,
    /// Set-point conditions.
    pub conditions: Conditions,
    /// °C.
    pub temperature_c: f64,
    /// Torr.
    pub pressure_torr: f64,
    /// sccm.
    pub precursor_flow_sccm: f64,
    /// sccm.
    pub carrier_gas_flow_sccm: f64,
    /// The step's time limit, s.
    pub duration_sec: Option<f64>,
    /// The step's thickness goal, nm.
    pub target_thickness_nm: Option<f64>,
    /// The surface reaction.
    pub kinetics: Kinetics,
    /// Whether `k0` was calibrated against a reference rate (else given).
    pub calibrated_against_nm_min: Option<f64>,
    /// Precursor molecules per cm³ of film.
    pub molecules_per_cm3: f64,
    /// The reactor.
    pub reactor: Reactor,
    /// The model at the set-point.
    pub predicted: Growth,
    /// The film's stress.
    pub stress: FilmStress,
    /// Warning thresholds.
    pub thresholds: ResolvedThresholds,
    /// How long the step should take at the predicted rate, s.
    pub planned_duration_sec: f64,
}

/// The plan of a whole run.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The steps.
    pub steps: Vec<StepPlan>,
    /// Simulated seconds between samples.
    pub sample_interval_sec: f64,
    /// Integration step, s.
    pub time_step_sec: f64,
    /// Total planned simulated time, s.
    pub planned_total_sec: f64,
}

fn positive(field: &str, value: f64) -> Result<f64, TaskError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(TaskError::invalid_input(field, format!("must be a number > 0 (got {value})")))
    }
}

fn within(field: &str, value: f64, low: f64, high: f64, unit: &str) -> Result<f64, TaskError> {
    if value.is_finite() && (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err(TaskError::invalid_input(field, format!("must be between {low} and {high}{unit} (got {value})")))
    }
}

impl Input {
    /// The steps, whichever way they were given, with the path prefix of each.
    fn steps_with_paths(&self) -> Result<Vec<(String, &Step)>, TaskError> {
        match (&self.recipe, &self.steps) {
            (Some(_), Some(_)) => {
                Err(TaskError::invalid_input("steps", "give either `recipe` or `steps`, not both"))
            }
            (None, None) => Err(TaskError::invalid_input(
                "recipe",
                "missing: give `recipe` (one step) or `steps` (a multi-step recipe)",
            )),
            (Some(step), None) => Ok(vec![("recipe".to_owned(), step)]),
            (None, Some(steps)) if steps.is_empty() => {
                Err(TaskError::invalid_input("steps", "must list at least one step"))
            }
            (None, Some(steps)) if steps.len() > MAX_STEPS => Err(TaskError::invalid_input(
                "steps",
                format!("at most {MAX_STEPS} steps (got {})", steps.len()),
            )),
            (None, Some(steps)) => {
                Ok(steps.iter().enumerate().map(|(i, s)| (format!("steps[{i}]"), s)).collect())
            }
        }
    }
}

/// Validates the input and resolves it into a plan.
pub fn plan(input: &Input) -> Result<RunPlan, TaskError> {
    if let Some(run_id) = &input.run_id
        && run_id.len() > 200
    {
        return Err(TaskError::invalid_input("run_id", "at most 200 characters"));
    }
    let substrate = &input.substrate;
    within("substrate.thickness_um", substrate.thickness_um, 100.0, 2000.0, " µm")?;
    within("substrate.diameter_mm", substrate.diameter_mm, 25.0, 450.0, " mm")?;
    let sim = &input.simulation;
    within("simulation.report_interval_sec", sim.report_interval_sec, 0.1, 86_400.0, " s")?;
    within("simulation.time_step_sec", sim.time_step_sec, 0.01, 600.0, " s")?;
    within("simulation.temperature_noise_c", sim.temperature_noise_c, 0.0, 50.0, " °C")?;
    within("simulation.noise_correlation_sec", sim.noise_correlation_sec, 0.1, 86_400.0, " s")?;
    if let Some(speedup) = sim.speedup {
        within("simulation.speedup", speedup, 0.01, 1e9, "")?;
    }

    let mut steps = Vec::new();
    for (index, (path, step)) in input.steps_with_paths()?.into_iter().enumerate() {
        steps.push(plan_step(index, &path, step, substrate)?);
    }
    let planned_total_sec: f64 = steps.iter().map(|s| s.planned_duration_sec).sum();
    let noisy = sim.temperature_noise_c > 0.0;
    if noisy && planned_total_sec / sim.time_step_sec > MAX_INTEGRATION_STEPS {
        return Err(TaskError::invalid_input(
            "simulation.time_step_sec",
            format!(
                "{:.0} s of deposition at {} s steps is more than {MAX_INTEGRATION_STEPS:.0} steps; use a longer step",
                planned_total_sec, sim.time_step_sec
            ),
        ));
    }
    let sample_interval_sec = sim.report_interval_sec.max(planned_total_sec / MAX_SAMPLES);
    Ok(RunPlan {
        steps,
        sample_interval_sec,
        // Without noise the rate is constant within a step and one step per sample is exact.
        time_step_sec: if noisy { sim.time_step_sec.min(sample_interval_sec) } else { sample_interval_sec },
        planned_total_sec,
    })
}

fn plan_step(index: usize, path: &str, step: &Step, substrate: &Substrate) -> Result<StepPlan, TaskError> {
    let field = |name: &str| format!("{path}.{name}");
    let material = step.film_material.data();
    let reference = material.reference;
    if let Some(name) = &step.name
        && name.len() > 200
    {
        return Err(TaskError::invalid_input(&field("name"), "at most 200 characters"));
    }
    let temperature_c = within(&field("temperature_c"), step.temperature_c, 100.0, 1200.0, " °C")?;
    let pressure_torr = within(
        &field("pressure_torr"),
        step.pressure_torr.unwrap_or(reference.pressure_torr),
        1e-3,
        760.0,
        " Torr",
    )?;
    let precursor_flow_sccm = within(
        &field("precursor_flow_sccm"),
        step.precursor_flow_sccm.unwrap_or(reference.precursor_flow_sccm),
        1e-3,
        1e5,
        " sccm",
    )?;
    let carrier_gas_flow_sccm = within(
        &field("carrier_gas_flow_sccm"),
        step.carrier_gas_flow_sccm.unwrap_or(reference.carrier_gas_flow_sccm),
        0.0,
        1e6,
        " sccm",
    )?;
    let duration_sec =
        step.duration_sec.map(|d| within(&field("duration_sec"), d, 1e-3, MAX_STEP_SEC, " s")).transpose()?;
    let target_thickness_nm = step
        .target_thickness_nm
        .map(|t| within(&field("target_thickness_nm"), t, 1e-3, 1e5, " nm"))
        .transpose()?;

    let o = &step.model;
    let activation_energy_ev = o
        .activation_energy_ev
        .map(|v| within(&field("model.activation_energy_ev"), v, 0.0, 5.0, " eV"))
        .transpose()?
        .unwrap_or(material.activation_energy_ev);
    let reactor = Reactor {
        plate_length_cm: substrate.diameter_mm / 10.0,
        cross_section_cm2: o
            .reactor_cross_section_cm2
            .map(|v| within(&field("model.reactor_cross_section_cm2"), v, 1.0, 1e5, " cm²"))
            .transpose()?
            .unwrap_or(500.0),
        max_boundary_layer_cm: o
            .max_boundary_layer_cm
            .map(|v| within(&field("model.max_boundary_layer_cm"), v, 1e-3, 100.0, " cm"))
            .transpose()?
            .unwrap_or(1.0),
        deposition_area_cm2: o
            .deposition_area_cm2
            .map(|v| within(&field("model.deposition_area_cm2"), v, 1e-3, 1e7, " cm²"))
            .transpose()?
            .unwrap_or(std::f64::consts::PI * (substrate.diameter_mm / 20.0).powi(2)),
    };
    let carrier = step.carrier_gas.unwrap_or(material.default_carrier);
    let molecules_per_cm3 = material.precursor_molecules_per_cm3();

    let (pre_exponential_cm_s, calibrated_against_nm_min) = match (
        o.pre_exponential_cm_s,
        o.reference_rate_nm_min,
    ) {
        (Some(_), Some(_)) => {
            return Err(TaskError::invalid_input(
                &field("model.pre_exponential_cm_s"),
                "give pre_exponential_cm_s or reference_rate_nm_min, not both",
            ));
        }
        (Some(k0), None) => (positive(&field("model.pre_exponential_cm_s"), k0)?, None),
        (None, rate) => {
            let rate = rate
                .map(|r| positive(&field("model.reference_rate_nm_min"), r))
                .transpose()?
                .unwrap_or(reference.rate_nm_min);
            let reference_conditions = Conditions::from_recipe(
                reference.temperature_c,
                reference.pressure_torr,
                reference.precursor_flow_sccm,
                reference.carrier_gas_flow_sccm,
                material.precursor,
                carrier.species(),
            );
            let k0 = grove::calibrate_pre_exponential(
                &reference_conditions,
                activation_energy_ev,
                rate,
                molecules_per_cm3,
                &reactor,
            )
            .map_err(|CalibrationError::AboveTransportLimit { limit_nm_min }| {
                TaskError::invalid_input(
                    &field(if o.reference_rate_nm_min.is_some() { "model.reference_rate_nm_min" } else { "model" }),
                    format!(
                        "a rate of {rate} nm/min at the {} reference recipe exceeds what mass transfer and feed allow \
                         there ({limit_nm_min:.3} nm/min) with this reactor geometry",
                        material.name
                    ),
                )
            })?;
            (k0, Some(rate))
        }
    };
    let kinetics = Kinetics { pre_exponential_cm_s, activation_energy_ev };
    let conditions = Conditions::from_recipe(
        temperature_c,
        pressure_torr,
        precursor_flow_sccm,
        carrier_gas_flow_sccm,
        material.precursor,
        carrier.species(),
    );
    let predicted = grove::growth(&conditions, &kinetics, molecules_per_cm3, &reactor);

    let youngs_modulus_gpa = o
        .youngs_modulus_gpa
        .map(|v| within(&field("model.youngs_modulus_gpa"), v, 1.0, 1200.0, " GPa"))
        .transpose()?
        .unwrap_or(material.youngs_modulus_gpa);
    let poisson_ratio = o
        .poisson_ratio
        .map(|v| within(&field("model.poisson_ratio"), v, 0.0, 0.49, ""))
        .transpose()?
        .unwrap_or(material.poisson_ratio);
    let thermal_expansion_ppm_k = o
        .thermal_expansion_ppm_k
        .map(|v| within(&field("model.thermal_expansion_ppm_k"), v, 0.0, 30.0, " ppm/K"))
        .transpose()?
        .unwrap_or(material.thermal_expansion_ppm_k);
    let thermal_at = |deposition_c: f64| {
        stress::thermal_mismatch_stress_pa(
            youngs_modulus_gpa * 1e9,
            poisson_ratio,
            thermal_expansion_ppm_k * 1e-6,
            SILICON_THERMAL_EXPANSION,
            deposition_c,
            ROOM_TEMPERATURE_C,
        ) / 1e6
    };
    let intrinsic_mpa = match o.intrinsic_stress_mpa {
        Some(v) => within(&field("model.intrinsic_stress_mpa"), v, -20_000.0, 20_000.0, " MPa")?,
        None => material
            .reference_total_stress_mpa
            .map_or(0.0, |total| total - thermal_at(reference.temperature_c)),
    };
    let thermal_mismatch_mpa = thermal_at(temperature_c);
    let stress = FilmStress {
        intrinsic_mpa,
        thermal_mismatch_mpa,
        total_mpa: intrinsic_mpa + thermal_mismatch_mpa,
        youngs_modulus_gpa,
        poisson_ratio,
        thermal_expansion_ppm_k,
    };

    let t = &step.thresholds;
    let (band_low, band_high) = material.typical_rate_band_nm_min;
    let thresholds = ResolvedThresholds {
        compressive_stress_mpa: t
            .compressive_stress_mpa
            .map(|v| within(&field("thresholds.compressive_stress_mpa"), v, -1e5, 0.0, " MPa"))
            .transpose()?
            .unwrap_or(-400.0),
        tensile_stress_mpa: t
            .tensile_stress_mpa
            .map(|v| within(&field("thresholds.tensile_stress_mpa"), v, 0.0, 1e5, " MPa"))
            .transpose()?
            .unwrap_or(300.0),
        adhesion_stress_mpa: t
            .adhesion_stress_mpa
            .map(|v| within(&field("thresholds.adhesion_stress_mpa"), v, 0.0, 1e5, " MPa"))
            .transpose()?
            .unwrap_or(500.0),
        rate_band_nm_min: match t.rate_band_nm_min {
            Some([low, high]) if low.is_finite() && high.is_finite() && 0.0 <= low && low < high => {
                [low, high]
            }
            Some(band) => {
                return Err(TaskError::invalid_input(
                    &field("thresholds.rate_band_nm_min"),
                    format!("must be [low, high] with 0 <= low < high (got {band:?})"),
                ));
            }
            None => [band_low, band_high],
        },
        rate_tolerance_pct: t
            .rate_tolerance_pct
            .map(|v| within(&field("thresholds.rate_tolerance_pct"), v, 0.0, 1000.0, " %"))
            .transpose()?
            .unwrap_or(20.0),
    };

    let time_to_target_sec = target_thickness_nm.map(|target| target / predicted.rate_nm_min * 60.0);
    let planned_duration_sec = match (duration_sec, time_to_target_sec) {
        (Some(d), Some(t)) => d.min(t),
        (Some(d), None) => d,
        (None, Some(t)) if t <= MAX_STEP_SEC => t,
        (None, Some(t)) => {
            return Err(TaskError::invalid_input(
                &field("target_thickness_nm"),
                format!(
                    "at the predicted {:.4} nm/min it would take {:.1} h, longer than the longest step (48 h); \
                     give duration_sec or change the recipe",
                    predicted.rate_nm_min,
                    t / 3600.0
                ),
            ));
        }
        (None, None) => {
            return Err(TaskError::invalid_input(
                &field("duration_sec"),
                "missing: give duration_sec, target_thickness_nm or both",
            ));
        }
    };

    Ok(StepPlan {
        index,
        name: step.name.clone().unwrap_or_else(|| format!("step {}", index + 1)),
        film: step.film_material,
        material,
        carrier,
        conditions,
        temperature_c,
        pressure_torr,
        precursor_flow_sccm,
        carrier_gas_flow_sccm,
        duration_sec,
        target_thickness_nm,
        kinetics,
        calibrated_against_nm_min,
        molecules_per_cm3,
        reactor,
        predicted,
        stress,
        thresholds,
        planned_duration_sec,
    })
}

/// The substrate's biaxial modulus, Pa.
pub fn substrate_biaxial_modulus_pa() -> f64 {
    SILICON_100_BIAXIAL_MODULUS
}
