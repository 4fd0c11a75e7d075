"""A Python port of the `cvd` plugin's computation (plugins/cvd), for the CPU-bound half of the
Celery benchmark: the same run computed in Python under a real Celery worker and in the plugin
under taskhost.

Ported for one recipe, the one the benchmark sends (`BENCH_INPUT`): a single Si3N4 step (LPCVD
nitride from dichlorosilane in ammonia), with seeded furnace-temperature noise so that the rate is
recomputed at every integration step. Everything the plugin computes for such a run is here, with
the same equations in the same order, the same constants and the same integration steps:

- gas.rs: Chapman-Enskog binary diffusivity and viscosity (Neufeld collision integrals), Wilke's
  mixing rule, Tee-Gotoh-Stewart Lennard-Jones estimates from critical constants;
- grove.rs: the Grove growth rate with a laminar boundary layer capped by the reactor, the regime,
  and the calibration of k0 against the material's reference rate;
- materials.rs: the Si3N4 data; stress.rs: thermal mismatch, Stoney curvature and bow, the
  delamination energy;
- noise.rs: SplitMix64, Box-Muller, the exact Ornstein-Uhlenbeck update;
- recipe.rs: the plan (defaults, calibration, stress, thresholds, planned duration, sample
  interval, time step); simulate.rs: the trapezoidal integration with target interpolation,
  the warnings, the metrics sample indices, the final metrics.

The constants are those of plugins/cvd at the time of the port (after its parameter-source
review: Si3N4 calibrated to 3.5 nm/min and 900 MPa at 800 °C, 0.25 Torr); the benchmark compares
every run's result with the plugin's and stops when they disagree, so a later change to either
side shows. Input validation and the other four materials are not ported (the benchmark's input is valid and
names Si3N4). `run(input)` returns the plugin's result fields that the benchmark compares, plus
the trace's sample count and integration step count.

    python bench/celery/cvd_port.py      # prints the benchmark run's result
"""

import json
import math
import sys

# gas.rs
BOLTZMANN = 1.380649e-23
AVOGADRO = 6.02214076e23
GAS_CONSTANT = BOLTZMANN * AVOGADRO
ELECTRONVOLT = 1.602176634e-19
PA_PER_TORR = 101325.0 / 760.0
PA_PER_ATM = 101325.0
SCCM_TEMPERATURE_K = 273.15


def kelvin(celsius):
    return celsius + 273.15


class Species:
    __slots__ = ("name", "molar_mass_g_mol", "sigma_angstrom", "epsilon_k")

    def __init__(self, name, molar_mass_g_mol, sigma_angstrom, epsilon_k):
        self.name = name
        self.molar_mass_g_mol = molar_mass_g_mol
        self.sigma_angstrom = sigma_angstrom
        self.epsilon_k = epsilon_k

    @staticmethod
    def from_critical_constants(name, molar_mass_g_mol, critical_temperature_k, critical_pressure_bar, acentric):
        pc_atm = critical_pressure_bar * 1e5 / PA_PER_ATM
        sigma = (2.3551 - 0.0874 * acentric) / math.cbrt(pc_atm / critical_temperature_k)
        epsilon_k = (0.7915 + 0.1693 * acentric) * critical_temperature_k
        return Species(name, molar_mass_g_mol, sigma, epsilon_k)

    def molecular_mass_kg(self):
        return self.molar_mass_g_mol * 1e-3 / AVOGADRO

    def mean_speed_cm_s(self, temperature_k):
        return math.sqrt(8.0 * BOLTZMANN * temperature_k / (math.pi * self.molecular_mass_kg())) * 100.0

    def viscosity_pa_s(self, temperature_k):
        reduced = temperature_k / self.epsilon_k
        micropoise = 26.69 * math.sqrt(self.molar_mass_g_mol * temperature_k) / (
            self.sigma_angstrom ** 2 * viscosity_collision_integral(reduced)
        )
        return micropoise * 1e-7


def diffusion_collision_integral(t):
    return (
        1.06036 / t ** 0.15610
        + 0.19300 / math.exp(0.47635 * t)
        + 1.03587 / math.exp(1.52996 * t)
        + 1.76474 / math.exp(3.89411 * t)
    )


def viscosity_collision_integral(t):
    return 1.16145 * t ** -0.14874 + 0.52487 * math.exp(-0.77320 * t) + 2.16178 * math.exp(-2.43787 * t)


def binary_diffusivity_cm2_s(a, b, temperature_k, pressure_pa):
    sigma_ab = 0.5 * (a.sigma_angstrom + b.sigma_angstrom)
    epsilon_ab = math.sqrt(a.epsilon_k * b.epsilon_k)
    m_ab = 2.0 / (1.0 / a.molar_mass_g_mol + 1.0 / b.molar_mass_g_mol)
    pressure_bar = pressure_pa * 1e-5
    return 0.00266 * temperature_k ** 1.5 / (
        pressure_bar * math.sqrt(m_ab) * sigma_ab ** 2 * diffusion_collision_integral(temperature_k / epsilon_ab)
    )


def mixture_viscosity_pa_s(mole_fractions, temperature_k):
    total = 0.0
    for _, x in mole_fractions:
        total += x
    viscosities = [s.viscosity_pa_s(temperature_k) for s, _ in mole_fractions]
    mixture = 0.0
    for i, (si, xi) in enumerate(mole_fractions):
        if xi <= 0.0:
            continue
        denominator = 0.0
        for j, (sj, xj) in enumerate(mole_fractions):
            ratio = math.sqrt(viscosities[i] / viscosities[j]) * (sj.molar_mass_g_mol / si.molar_mass_g_mol) ** 0.25
            phi = (1.0 + ratio) ** 2 / math.sqrt(8.0 * (1.0 + si.molar_mass_g_mol / sj.molar_mass_g_mol))
            denominator += xj / total * phi
        mixture += xi / total * viscosities[i] / denominator
    return mixture


def number_concentration_cm3(mole_fraction, temperature_k, pressure_pa):
    return mole_fraction * pressure_pa / (BOLTZMANN * temperature_k) * 1e-6


def mass_density_g_cm3(molar_mass_g_mol, temperature_k, pressure_pa):
    return pressure_pa * molar_mass_g_mol / (GAS_CONSTANT * temperature_k) * 1e-6


def molecules_per_second(sccm):
    return number_concentration_cm3(1.0, SCCM_TEMPERATURE_K, PA_PER_ATM) * sccm / 60.0


DICHLOROSILANE = Species.from_critical_constants("SiH2Cl2", 101.007, 451.5, 45.99, 0.0985)
AMMONIA = Species("NH3", 17.031, 2.900, 558.3)

# grove.rs
REACTION_LIMITED_BELOW = 0.1
TRANSPORT_LIMITED_ABOVE = 10.0


class Conditions:
    __slots__ = ("temperature_k", "pressure_pa", "precursor_flow_sccm", "carrier_gas_flow_sccm", "precursor",
                 "carrier")

    def __init__(self, temperature_c, pressure_torr, precursor_flow_sccm, carrier_gas_flow_sccm, precursor, carrier):
        self.temperature_k = kelvin(temperature_c)
        self.pressure_pa = pressure_torr * PA_PER_TORR
        self.precursor_flow_sccm = precursor_flow_sccm
        self.carrier_gas_flow_sccm = carrier_gas_flow_sccm
        self.precursor = precursor
        self.carrier = carrier

    def precursor_mole_fraction(self):
        return self.precursor_flow_sccm / (self.precursor_flow_sccm + self.carrier_gas_flow_sccm)


def surface_rate_constant_cm_s(kinetics, temperature_k):
    k0, ea = kinetics
    return k0 * math.exp(-ea * ELECTRONVOLT / (BOLTZMANN * temperature_k))


def _rate_nm_min(flux_cm2_s, molecules_per_cm3):
    return flux_cm2_s / molecules_per_cm3 * 1e7 * 60.0


def mass_transfer(c, reactor):
    y = c.precursor_mole_fraction()
    t = c.temperature_k
    diffusivity = binary_diffusivity_cm2_s(c.precursor, c.carrier, t, c.pressure_pa)
    viscosity = mixture_viscosity_pa_s([(c.precursor, y), (c.carrier, 1.0 - y)], t)
    mean_molar_mass = y * c.precursor.molar_mass_g_mol + (1.0 - y) * c.carrier.molar_mass_g_mol
    density = mass_density_g_cm3(mean_molar_mass, t, c.pressure_pa)
    total_sccm = c.precursor_flow_sccm + c.carrier_gas_flow_sccm
    actual_flow_cm3_s = total_sccm / 60.0 * (PA_PER_ATM / c.pressure_pa) * (t / SCCM_TEMPERATURE_K)
    velocity = actual_flow_cm3_s / reactor["cross_section_cm2"]
    reynolds = density * velocity * reactor["plate_length_cm"] / (viscosity * 10.0)
    laminar = 2.0 * reactor["plate_length_cm"] / (3.0 * math.sqrt(reynolds))
    boundary_layer = min(laminar, reactor["max_boundary_layer_cm"])
    return diffusivity / boundary_layer, diffusivity, viscosity, reynolds, boundary_layer


def growth(c, kinetics, molecules_per_cm3, reactor):
    y = c.precursor_mole_fraction()
    concentration = number_concentration_cm3(y, c.temperature_k, c.pressure_pa)
    h_g, diffusivity, viscosity, reynolds, boundary_layer = mass_transfer(c, reactor)
    k_s = surface_rate_constant_cm_s(kinetics, c.temperature_k)
    grove_flux = concentration * k_s * h_g / (k_s + h_g)
    feed_per_area = molecules_per_second(c.precursor_flow_sccm) / reactor["deposition_area_cm2"]
    damkohler = k_s / h_g
    if grove_flux > feed_per_area:
        flux, regime = feed_per_area, "supply_limited"
    elif damkohler < REACTION_LIMITED_BELOW:
        flux, regime = grove_flux, "reaction_limited"
    elif damkohler > TRANSPORT_LIMITED_ABOVE:
        flux, regime = grove_flux, "transport_limited"
    else:
        flux, regime = grove_flux, "mixed"
    return {
        "rate_nm_min": _rate_nm_min(flux, molecules_per_cm3),
        "regime": regime,
        "damkohler_number": damkohler,
        "surface_rate_constant_cm_s": k_s,
        "mass_transfer_coefficient_cm_s": h_g,
        "diffusivity_cm2_s": diffusivity,
        "viscosity_pa_s": viscosity,
        "reynolds_number": reynolds,
        "boundary_layer_cm": boundary_layer,
        "precursor_mole_fraction": y,
        "precursor_concentration_cm3": concentration,
        "flux_cm2_s": flux,
        "reaction_probability": 4.0 * k_s / c.precursor.mean_speed_cm_s(c.temperature_k),
        "precursor_utilization": flux / feed_per_area,
    }


def calibrate_pre_exponential(reference, activation_energy_ev, rate_nm_min, molecules_per_cm3, reactor):
    concentration = number_concentration_cm3(
        reference.precursor_mole_fraction(), reference.temperature_k, reference.pressure_pa
    )
    h_g = mass_transfer(reference, reactor)[0]
    flux = rate_nm_min / (1e7 * 60.0) * molecules_per_cm3
    feed_per_area = molecules_per_second(reference.precursor_flow_sccm) / reactor["deposition_area_cm2"]
    transport_limit = min(concentration * h_g, feed_per_area)
    if flux >= 0.999 * transport_limit:
        raise ValueError("reference rate above the transport limit")
    k_s = 1.0 / (concentration / flux - 1.0 / h_g)
    return k_s * math.exp(activation_energy_ev * ELECTRONVOLT / (BOLTZMANN * reference.temperature_k))


# materials.rs (Si3N4 only)
SILICON_THERMAL_EXPANSION = 2.6e-6
SILICON_100_BIAXIAL_MODULUS = 180.5e9
ROOM_TEMPERATURE_C = 25.0
SI3N4 = {
    "name": "Si3N4",
    "precursor": DICHLOROSILANE,
    "carrier": AMMONIA,
    "precursors_per_formula_unit": 3.0,
    "density_g_cm3": 3.1,
    "formula_molar_mass_g_mol": 140.28,
    "reference": {"temperature_c": 800.0, "pressure_torr": 0.25, "precursor_flow_sccm": 30.0,
                  "carrier_gas_flow_sccm": 100.0, "rate_nm_min": 3.5},
    "activation_energy_ev": 1.8,
    "typical_rate_band_nm_min": (1.0, 8.0),
    "reference_total_stress_mpa": 900.0,
    "youngs_modulus_gpa": 222.0,
    "poisson_ratio": 0.28,
    "thermal_expansion_ppm_k": 3.3,
}


def precursor_molecules_per_cm3(material):
    return (material["density_g_cm3"] * AVOGADRO / material["formula_molar_mass_g_mol"]
            * material["precursors_per_formula_unit"])


# stress.rs
def thermal_mismatch_stress_pa(e_film, nu_film, alpha_film, alpha_substrate, deposition_c, room_c):
    return e_film / (1.0 - nu_film) * (alpha_film - alpha_substrate) * (deposition_c - room_c)


def strain_energy_release_rate_j_m2(stress_pa, thickness_m, youngs_modulus_pa, poisson):
    return (1.0 - poisson) * stress_pa ** 2 * thickness_m / youngs_modulus_pa


def wafer_shape(films, substrate_biaxial_modulus_pa, substrate_thickness_m, diameter_m):
    force = 0.0
    for s, t in films:
        force += s * t
    curvature = 6.0 * force / (substrate_biaxial_modulus_pa * substrate_thickness_m ** 2)
    total = 0.0
    for _, t in films:
        total += t
    return {
        "stress_thickness_n_m": force,
        "curvature_per_m": curvature,
        "radius_of_curvature_m": 1.0 / curvature if curvature != 0.0 else None,
        "bow_um": curvature * diameter_m ** 2 / 8.0 * 1e6,
        "film_to_substrate_ratio": total / substrate_thickness_m,
    }


# noise.rs
MASK64 = (1 << 64) - 1


class OrnsteinUhlenbeck:
    def __init__(self, sigma, correlation_time, seed):
        self.sigma = sigma
        self.correlation_time = correlation_time
        self.value = 0.0
        self.state = seed & MASK64

    def _next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def _next_open_unit(self):
        return ((self._next_u64() >> 11) + 0.5) / float(1 << 53)

    def _next_standard_normal(self):
        u1 = self._next_open_unit()
        u2 = self._next_open_unit()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def advance(self, dt):
        if self.sigma == 0.0:
            return 0.0
        decay = math.exp(-dt / self.correlation_time)
        self.value = self.value * decay + self.sigma * math.sqrt(1.0 - decay * decay) * self._next_standard_normal()
        return self.value


# recipe.rs
MAX_STEP_SEC = 48.0 * 3600.0
MAX_SAMPLES = 300.0


def plan(inp):
    step = inp["recipe"]
    assert step["film_material"] == "Si3N4", "the port covers the Si3N4 recipe only"
    material = SI3N4
    reference = material["reference"]
    substrate = {"thickness_um": 725.0, "diameter_mm": 200.0, **inp.get("substrate", {})}
    sim = {"report_interval_sec": 10.0, "time_step_sec": 1.0, "temperature_noise_c": 0.0,
           "noise_correlation_sec": 120.0, **inp.get("simulation", {})}
    temperature_c = step["temperature_c"]
    pressure_torr = step.get("pressure_torr", reference["pressure_torr"])
    precursor_flow_sccm = step.get("precursor_flow_sccm", reference["precursor_flow_sccm"])
    carrier_gas_flow_sccm = step.get("carrier_gas_flow_sccm", reference["carrier_gas_flow_sccm"])
    duration_sec = step.get("duration_sec")
    target_thickness_nm = step.get("target_thickness_nm")
    activation_energy_ev = material["activation_energy_ev"]
    reactor = {
        "plate_length_cm": substrate["diameter_mm"] / 10.0,
        "cross_section_cm2": 500.0,
        "max_boundary_layer_cm": 1.0,
        "deposition_area_cm2": math.pi * (substrate["diameter_mm"] / 20.0) ** 2,
    }
    carrier = material["carrier"]
    molecules_per_cm3 = precursor_molecules_per_cm3(material)
    reference_conditions = Conditions(reference["temperature_c"], reference["pressure_torr"],
                                      reference["precursor_flow_sccm"], reference["carrier_gas_flow_sccm"],
                                      material["precursor"], carrier)
    k0 = calibrate_pre_exponential(reference_conditions, activation_energy_ev, reference["rate_nm_min"],
                                   molecules_per_cm3, reactor)
    kinetics = (k0, activation_energy_ev)
    conditions = Conditions(temperature_c, pressure_torr, precursor_flow_sccm, carrier_gas_flow_sccm,
                            material["precursor"], carrier)
    predicted = growth(conditions, kinetics, molecules_per_cm3, reactor)
    e, nu, alpha = material["youngs_modulus_gpa"], material["poisson_ratio"], material["thermal_expansion_ppm_k"]

    def thermal_at(deposition_c):
        return thermal_mismatch_stress_pa(e * 1e9, nu, alpha * 1e-6, SILICON_THERMAL_EXPANSION, deposition_c,
                                          ROOM_TEMPERATURE_C) / 1e6

    intrinsic = material["reference_total_stress_mpa"] - thermal_at(reference["temperature_c"])
    thermal = thermal_at(temperature_c)
    stress = {"intrinsic_mpa": intrinsic, "thermal_mismatch_mpa": thermal, "total_mpa": intrinsic + thermal,
              "youngs_modulus_gpa": e, "poisson_ratio": nu, "thermal_expansion_ppm_k": alpha}
    thresholds = {"compressive_stress_mpa": -400.0, "tensile_stress_mpa": 300.0, "adhesion_stress_mpa": 500.0,
                  "rate_band_nm_min": list(material["typical_rate_band_nm_min"]), "rate_tolerance_pct": 20.0}
    time_to_target = None if target_thickness_nm is None else target_thickness_nm / predicted["rate_nm_min"] * 60.0
    if duration_sec is not None and time_to_target is not None:
        planned = min(duration_sec, time_to_target)
    else:
        planned = duration_sec if duration_sec is not None else time_to_target
    step_plan = {
        "temperature_c": temperature_c, "conditions": conditions, "kinetics": kinetics,
        "molecules_per_cm3": molecules_per_cm3, "reactor": reactor, "predicted": predicted, "stress": stress,
        "thresholds": thresholds, "duration_sec": duration_sec, "target_thickness_nm": target_thickness_nm,
        "planned_duration_sec": planned,
    }
    noisy = sim["temperature_noise_c"] > 0.0
    sample_interval = max(sim["report_interval_sec"], planned / MAX_SAMPLES)
    time_step = min(sim["time_step_sec"], sample_interval) if noisy else sample_interval
    return step_plan, sample_interval, time_step, sim, substrate


# simulate.rs
def rate_at(p, temperature_c):
    if temperature_c == p["temperature_c"]:
        return p["predicted"]["rate_nm_min"]
    base = p["conditions"]
    c = Conditions.__new__(Conditions)
    c.temperature_k = kelvin(temperature_c)
    c.pressure_pa = base.pressure_pa
    c.precursor_flow_sccm = base.precursor_flow_sccm
    c.carrier_gas_flow_sccm = base.carrier_gas_flow_sccm
    c.precursor = base.precursor
    c.carrier = base.carrier
    return growth(c, p["kinetics"], p["molecules_per_cm3"], p["reactor"])["rate_nm_min"]


def simulate_step(p, sample_interval, time_step, noise):
    eps = 1e-9
    limit = p["duration_sec"] if p["duration_sec"] is not None else MAX_STEP_SEC
    target = p["target_thickness_nm"]
    temperature = p["temperature_c"] + noise.value
    rate = rate_at(p, temperature)
    t, h = 0.0, 0.0
    samples = [(t, h, rate, temperature)]
    next_sample = sample_interval
    integration_steps = 0
    while True:
        dt = min(time_step, limit - t, next_sample - t)
        next_temperature = p["temperature_c"] + noise.advance(dt)
        next_rate = rate_at(p, next_temperature)
        integration_steps += 1
        increment = 0.5 * (rate + next_rate) * dt / 60.0
        if target is not None and h + increment >= target:
            fraction = (target - h) / increment if increment > 0.0 else 1.0
            samples.append((t + fraction * dt, target, rate + fraction * (next_rate - rate),
                            temperature + fraction * (next_temperature - temperature)))
            return samples, "target_reached", integration_steps
        t, h, rate, temperature = t + dt, h + increment, next_rate, next_temperature
        if t >= limit - eps:
            samples.append((limit, h, rate, temperature))
            return samples, "duration_elapsed", integration_steps
        if t >= next_sample - eps:
            samples.append((t, h, rate, temperature))
            next_sample += sample_interval


def step_warnings(p, samples, end):
    """The kinds of warnings the plugin raises, with the sample index of each (messages omitted)."""
    th = p["thresholds"]
    sigma = p["stress"]["total_mpa"]
    warnings = []
    first = next((i for i, s in enumerate(samples) if s[1] > 0.0), None)
    if first is not None:
        if sigma < th["compressive_stress_mpa"]:
            warnings.append((first, "high_compressive_stress", None))
        if sigma > th["tensile_stress_mpa"]:
            warnings.append((first, "high_tensile_stress", None))
        if abs(sigma) > th["adhesion_stress_mpa"]:
            final = samples[-1][1]
            energy = strain_energy_release_rate_j_m2(sigma * 1e6, final * 1e-9, p["stress"]["youngs_modulus_gpa"] * 1e9,
                                                     p["stress"]["poisson_ratio"])
            warnings.append((first, "adhesion_risk", energy))
    low, high = th["rate_band_nm_min"]
    at = next((i for i, s in enumerate(samples) if not (low <= s[2] <= high)), None)
    if at is not None:
        warnings.append((at, "rate_anomaly", None))
    predicted = p["predicted"]["rate_nm_min"]
    at = next((i for i, s in enumerate(samples) if abs(s[2] / predicted - 1.0) * 100.0 > th["rate_tolerance_pct"]),
              None)
    if at is not None:
        warnings.append((at, "rate_anomaly", None))
    if p["target_thickness_nm"] is not None and end == "duration_elapsed" and samples:
        warnings.append((len(samples) - 1, "target_not_reached", None))
    warnings.sort(key=lambda w: w[0])
    return warnings


def metrics_indices(samples):
    end = samples[-1][0] if samples else 0.0
    indices = []
    next_tenth = 1
    for i in range(1, len(samples)):
        s = samples[i][0]
        if i + 1 == len(samples):
            indices.append(i)
        elif s >= end * next_tenth / 10.0:
            indices.append(i)
            while s >= end * next_tenth / 10.0:
                next_tenth += 1
    return indices


def run(inp, progress=None):
    """The run's result (the fields the benchmark compares). `progress(percent, meta)` is called
    for each sample, as the plugin emits its `progress_update` events."""
    p, sample_interval, time_step, sim, substrate = plan(inp)
    noise = OrnsteinUhlenbeck(sim["temperature_noise_c"], sim["noise_correlation_sec"], inp.get("seed", 0))
    samples, end, integration_steps = simulate_step(p, sample_interval, time_step, noise)
    warnings = step_warnings(p, samples, end)
    metrics_at = metrics_indices(samples)
    last = samples[-1]
    duration = last[0]
    thickness = last[1]
    planned = p["planned_duration_sec"]
    if progress is not None:
        percent = 0.0
        for i, (t, h, rate, temperature) in enumerate(samples):
            within = planned if i == len(samples) - 1 else min(t, planned)
            percent = max(percent, min(100.0 * within / planned, 100.0) if planned > 0.0 else 100.0)
            progress(percent, {"progress": percent, "current_thickness_nm": h, "deposition_rate_nm_min": rate,
                               "temperature_c": temperature, "time_sec": t, "metrics": i in metrics_at})
    wafer = wafer_shape([(p["stress"]["total_mpa"] * 1e6, thickness * 1e-9)], SILICON_100_BIAXIAL_MODULUS,
                        substrate["thickness_um"] * 1e-6, substrate["diameter_mm"] * 1e-3)
    return {
        "run_id": inp.get("run_id"),
        "end_reason": end,
        "duration_sec": duration,
        "thickness_nm": thickness,
        "mean_rate_nm_min": thickness / duration * 60.0 if duration > 0.0 else 0.0,
        "predicted_rate_nm_min": p["predicted"]["rate_nm_min"],
        "regime": p["predicted"]["regime"],
        "stress_mpa": p["stress"]["total_mpa"],
        "warnings": [kind for _, kind, _ in warnings],
        "bow_um": wafer["bow_um"],
        "samples": len(samples),
        "metrics_samples": len(metrics_at),
        "integration_steps": integration_steps,
    }


def plugin_summary(result):
    """The same fields from the plugin's own result (a `run_cvd_simulation` SUCCESS)."""
    step = result["steps"][0]
    return {
        "run_id": result.get("run_id"),
        "end_reason": step["end_reason"],
        "duration_sec": step["duration_sec"],
        "thickness_nm": step["thickness_nm"],
        "mean_rate_nm_min": step["mean_rate_nm_min"],
        "predicted_rate_nm_min": step["growth"]["rate_nm_min"],
        "regime": step["growth"]["regime"],
        "stress_mpa": step["stress"]["total_mpa"],
        "warnings": [w["type"] for w in step["warnings"]],
        "bow_um": result["metrics"]["wafer"]["bow_um"],
    }


def compare(port, plugin, rel=1e-9):
    """Differences between the port's summary and the plugin's, as a list of strings (empty: they
    agree; numbers to `rel`)."""
    differences = []
    for key, expected in plugin.items():
        got = port[key]
        if isinstance(expected, float):
            if not math.isclose(got, expected, rel_tol=rel, abs_tol=1e-12):
                differences.append(f"{key}: port {got!r} vs plugin {expected!r}")
        elif got != expected:
            differences.append(f"{key}: port {got!r} vs plugin {expected!r}")
    return differences


def largest_relative_difference(port, plugin):
    """The largest relative difference over the numeric fields both report."""
    worst = 0.0
    for key, expected in plugin.items():
        if isinstance(expected, float) and expected != 0.0:
            worst = max(worst, abs(port[key] / expected - 1.0))
    return worst


# The benchmark's run: the CVD notes' nitride recipe (800 °C, 0.5 Torr, 80/500 sccm, 100 nm or an
# hour), with 2 °C of furnace noise, so that every integration step recomputes the Grove rate.
def bench_input(time_step_sec=0.1, seed=7, run_id="bench"):
    return {
        "run_id": run_id,
        "recipe": {"mode": "thermal", "film_material": "Si3N4", "temperature_c": 800.0, "pressure_torr": 0.5,
                   "precursor_flow_sccm": 80.0, "carrier_gas_flow_sccm": 500.0, "target_thickness_nm": 100.0,
                   "duration_sec": 3600.0},
        "simulation": {"temperature_noise_c": 2.0, "noise_correlation_sec": 60.0, "time_step_sec": time_step_sec},
        "seed": seed,
    }


if __name__ == "__main__":
    step = float(sys.argv[1]) if len(sys.argv) > 1 else 0.1
    print(json.dumps(run(bench_input(step)), indent=2))
