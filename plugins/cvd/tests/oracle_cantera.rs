//! Oracle: the plugin's gas transport, surface kinetics and Grove growth rate against Cantera.
//!
//! For every film at its reference recipe and away from it (100 °C colder, 300 °C hotter, and at
//! atmospheric pressure, where the same chemistry becomes transport-limited), the plugin's plan is
//! handed to `oracle/cantera_grove.py`, which rebuilds the gas and an `Interface` with the same
//! Lennard-Jones parameters and Arrhenius law in Cantera and recomputes diffusivity, viscosity,
//! concentration, the surface reaction flux, and the Grove rate from them.
//!
//! Needs a Python with Cantera: `cargo xtask ci` provides it in `TASKHOST_PYTHON`; locally,
//! `python3 -m venv target/oracle-venv && target/oracle-venv/bin/pip install -r
//! plugins/cvd/oracle/requirements.txt` and export `TASKHOST_PYTHON` to its interpreter.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cvd::gas::{BOLTZMANN, ELECTRONVOLT};
use cvd::materials::{CarrierGas, FilmMaterial};
use cvd::recipe::{self, StepPlan};
use serde_json::{Value, json};

fn python() -> PathBuf {
    match std::env::var_os("TASKHOST_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "TASKHOST_PYTHON is not set: run `cargo xtask ci`, or create a venv with \
             `pip install -r plugins/cvd/oracle/requirements.txt` and set TASKHOST_PYTHON to its python"
        ),
    }
}

fn run_oracle(cases: &Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("oracle/cantera_grove.py");
    let mut child = Command::new(python())
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the Cantera oracle");
    child.stdin.take().unwrap().write_all(cases.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the Cantera oracle failed (is cantera installed in TASKHOST_PYTHON?):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("oracle output is JSON")
}

/// Elemental composition and geometry of each gas, for Cantera.
fn cantera_species(name: &str) -> (Value, &'static str) {
    match name {
        "SiH4" => (json!({"Si": 1, "H": 4}), "nonlinear"),
        "SiH2Cl2" => (json!({"Si": 1, "H": 2, "Cl": 2}), "nonlinear"),
        "TEOS" => (json!({"Si": 1, "O": 4, "C": 8, "H": 20}), "nonlinear"),
        "TDMAT" => (json!({"Ti": 1, "N": 4, "C": 8, "H": 24}), "nonlinear"),
        "WF6" => (json!({"W": 1, "F": 6}), "nonlinear"),
        "N2" => (json!({"N": 2}), "linear"),
        "H2" => (json!({"H": 2}), "linear"),
        "Ar" => (json!({"Ar": 1}), "atom"),
        "He" => (json!({"He": 1}), "atom"),
        "NH3" => (json!({"N": 1, "H": 3}), "nonlinear"),
        other => panic!("no Cantera composition for {other}"),
    }
}

fn species_json(s: &cvd::gas::Species) -> Value {
    let (composition, geometry) = cantera_species(s.name);
    json!({
        "name": s.name,
        "composition": composition,
        "geometry": geometry,
        "sigma_angstrom": s.sigma_angstrom,
        "epsilon_k": s.epsilon_k,
    })
}

fn plan_of(step: Value) -> StepPlan {
    let input: recipe::Input = serde_json::from_value(json!({"recipe": step})).unwrap();
    recipe::plan(&input).unwrap().steps.remove(0)
}

/// The plans compared: each film at its reference recipe, 100 °C colder, 300 °C hotter, and the
/// hotter one at atmospheric pressure; plus silane in other carriers.
fn plans() -> Vec<StepPlan> {
    let mut plans = Vec::new();
    for material in FilmMaterial::ALL {
        let reference = material.data().reference;
        for (dt, pressure) in [(0.0, None), (-100.0, None), (300.0, None), (300.0, Some(760.0))] {
            let mut step = json!({
                "film_material": material,
                "temperature_c": reference.temperature_c + dt,
                "duration_sec": 60.0,
            });
            if let Some(p) = pressure {
                step["pressure_torr"] = json!(p);
                // Atmospheric reactors run slm flows; keep the feed from limiting.
                step["precursor_flow_sccm"] = json!(200.0);
                step["carrier_gas_flow_sccm"] = json!(10_000.0);
            }
            plans.push(plan_of(step));
        }
    }
    for carrier in [CarrierGas::H2, CarrierGas::He, CarrierGas::Ar] {
        plans.push(plan_of(json!({
            "film_material": "poly-Si", "temperature_c": 650.0, "carrier_gas": carrier,
            "carrier_gas_flow_sccm": 400.0, "duration_sec": 60.0,
        })));
    }
    plans
}

fn case_json(plan: &StepPlan) -> Value {
    let c = &plan.conditions;
    json!({
        "precursor": species_json(&c.precursor),
        "carrier": species_json(&c.carrier),
        "temperature_k": c.temperature_k,
        "pressure_pa": c.pressure_pa,
        "precursor_mole_fraction": c.precursor_mole_fraction(),
        "precursor_flow_sccm": c.precursor_flow_sccm,
        "carrier_gas_flow_sccm": c.carrier_gas_flow_sccm,
        "pre_exponential_cm_s": plan.kinetics.pre_exponential_cm_s,
        "activation_energy_ev": plan.kinetics.activation_energy_ev,
        "reaction_probability": plan.predicted.reaction_probability,
        "molecules_per_cm3": plan.molecules_per_cm3,
        "plate_length_cm": plan.reactor.plate_length_cm,
        "cross_section_cm2": plan.reactor.cross_section_cm2,
        "max_boundary_layer_cm": plan.reactor.max_boundary_layer_cm,
        "deposition_area_cm2": plan.reactor.deposition_area_cm2,
    })
}

fn relative(ours: f64, theirs: f64) -> f64 {
    (ours / theirs - 1.0).abs()
}

#[test]
fn transport_kinetics_and_growth_rate_agree_with_cantera() {
    let plans = plans();
    let cases: Vec<Value> = plans.iter().map(case_json).collect();
    let oracle = run_oracle(&json!(cases));
    let results = oracle["results"].as_array().unwrap();
    assert_eq!(results.len(), plans.len());

    let mut worst = [0.0f64; 6];
    let mut regimes_seen = std::collections::BTreeSet::new();
    for (plan, cantera) in plans.iter().zip(results) {
        let g = &plan.predicted;
        let label = format!(
            "{} in {} at {:.0} °C, {} Torr",
            plan.material.name, plan.conditions.carrier.name, plan.temperature_c, plan.pressure_torr
        );
        let get = |key: &str| cantera[key].as_f64().unwrap_or_else(|| panic!("{key} missing: {cantera}"));
        let checks = [
            ("diffusivity", g.diffusivity_cm2_s, get("diffusivity_cm2_s"), 0.005),
            ("viscosity", g.viscosity_pa_s, get("viscosity_pa_s"), 0.01),
            ("concentration", g.precursor_concentration_cm3, get("precursor_concentration_cm3"), 1e-6),
            ("k_s", g.surface_rate_constant_cm_s, get("surface_rate_constant_cm_s"), 1e-6),
            (
                "sticking flux",
                g.surface_rate_constant_cm_s * g.precursor_concentration_cm3,
                get("sticking_flux_cm2_s"),
                1e-3,
            ),
            ("growth rate", g.rate_nm_min, get("rate_nm_min"), 0.005),
        ];
        for (k, (name, ours, theirs, tolerance)) in checks.into_iter().enumerate() {
            let error = relative(ours, theirs);
            worst[k] = worst[k].max(error);
            assert!(
                error < tolerance,
                "{label}: {name} {ours:e} vs Cantera {theirs:e} ({:.3} %)",
                error * 100.0
            );
        }
        // The regime the plugin names matches the Damköhler number from Cantera's quantities.
        let h_g = get("diffusivity_cm2_s") / get("boundary_layer_cm");
        let da = get("surface_rate_constant_cm_s") / h_g;
        let expected = if cantera["supply_limited"].as_bool().unwrap() {
            "supply_limited"
        } else if da < 0.1 {
            "reaction_limited"
        } else if da > 10.0 {
            "transport_limited"
        } else {
            "mixed"
        };
        assert_eq!(g.regime.as_str(), expected, "{label}: Da {da}");
        regimes_seen.insert(expected);
        if expected == "transport_limited" {
            let plateau = get("transport_limited_rate_nm_min");
            assert!(relative(g.rate_nm_min, plateau) < 1.0 / da + 0.02, "{label}: plateau {plateau}");
        }
    }
    assert!(
        regimes_seen.contains("reaction_limited") && regimes_seen.contains("transport_limited"),
        "{regimes_seen:?}"
    );
    println!(
        "Cantera {}: {} cases; worst relative deviations: D {:.3} %, mu {:.3} %, C {:.1e}, k_s {:.1e}, \
         sticking flux {:.1e}, rate {:.3} %",
        oracle["cantera_version"],
        plans.len(),
        worst[0] * 100.0,
        worst[1] * 100.0,
        worst[2],
        worst[3],
        worst[4],
        worst[5] * 100.0
    );
}

#[test]
fn cantera_arrhenius_slope_in_the_reaction_limited_limit_is_the_activation_energy() {
    // Silicon nitride at 700 and 760 °C and poly-Si at 560 and 600 °C, at LPCVD pressure: deep in
    // the reaction-limited regime, so ln(G·T) against 1/T, with G from Cantera's surface kinetics,
    // must have slope −Ea/k, with the film's own Ea (1.8 eV, illustrative, for the nitride; the
    // published 52 kcal/mol = 2.25 eV for poly-Si).
    for (film, material, temperatures) in [
        ("Si3N4", FilmMaterial::SiliconNitride, [700.0, 760.0]),
        ("poly-Si", FilmMaterial::Polysilicon, [560.0, 600.0]),
    ] {
        let plans: Vec<StepPlan> = temperatures
            .map(|t| plan_of(json!({"film_material": film, "temperature_c": t, "duration_sec": 60.0})))
            .into();
        let oracle = run_oracle(&json!(plans.iter().map(case_json).collect::<Vec<_>>()));
        let results = oracle["results"].as_array().unwrap();
        let point = |i: usize| {
            let rate = results[i]["rate_nm_min"].as_f64().unwrap();
            (1.0 / plans[i].conditions.temperature_k, (rate * plans[i].conditions.temperature_k).ln())
        };
        let ((x1, y1), (x2, y2)) = (point(0), point(1));
        let ea = -(y2 - y1) / (x2 - x1) * BOLTZMANN / ELECTRONVOLT;
        let expected = material.data().activation_energy_ev;
        assert!(plans.iter().all(|p| p.predicted.damkohler_number < 1e-3), "{film}");
        assert!(
            relative(ea, expected) < 1e-3,
            "{film}: Cantera-based slope gives Ea = {ea} eV, expected {expected}"
        );
        println!("{film}: Ea from Cantera rates {ea:.5} eV (set {expected} eV)");
    }
}
