"""Cantera oracle for the cvd plugin's Grove model.

Reads a JSON list of cases on stdin and writes, for each, what Cantera computes for the same gas
and surface chemistry:

- the binary diffusion coefficient of precursor in carrier (Cantera's mixture-averaged transport:
  Chapman-Enskog with its own fits of the Lennard-Jones collision integrals to the Monchick-Mason
  tables), and the mixture viscosity (Cantera: Wilke's rule over pure-gas Chapman-Enskog values);
- the precursor concentration and gas density (Cantera's ideal gas);
- the surface reaction flux of a Cantera `Interface` whose reaction
  `P + X(s) => X(s) + P(B)` has the case's Arrhenius rate constant `k0 exp(-Ea/kT)` (given per site:
  A = k0 / site density), i.e. the reaction-limited flux `k_s C_g`;
- the flux of the same reaction written with a sticking coefficient equal to the plugin's reaction
  probability (Cantera: `gamma sqrt(RT / 2 pi W) C_g`);
- the Grove growth rate assembled from those Cantera quantities with the formulas of the plugin's
  README (boundary layer `2L / (3 sqrt(Re))` capped at the reactor's diffusion length), and its
  transport-limited plateau `h_g C_g / N_f`; the flux is capped by the precursor feed over the
  deposition area, as in the plugin.

The Rust test `tests/oracle_cantera.rs` builds the cases from the plugin's own tables and compares.
"""

import json
import math
import sys

import cantera as ct

SITE_DENSITY_MOL_CM2 = 1.0e-9


def species_yaml(s, phase_kind):
    comp = ", ".join(f"{k}: {v}" for k, v in s["composition"].items())
    text = f"- name: {s['name']}\n  composition: {{{comp}}}\n"
    text += "  thermo: {model: NASA7, temperature-ranges: [200.0, 6000.0], data: [[3.5, 0, 0, 0, 0, 0, 0]]}\n"
    if phase_kind == "gas":
        text += (
            f"  transport: {{model: gas, geometry: {s['geometry']}, "
            f"diameter: {s['sigma_angstrom']}, well-depth: {s['epsilon_k']}}}\n"
        )
    return text


def mechanism(case, rate_block):
    p, c = case["precursor"], case["carrier"]
    bulk = {"name": "P(B)", "composition": p["composition"]}
    elements = sorted(set(p["composition"]) | set(c["composition"]))
    text = "units: {length: cm, quantity: mol, activation-energy: eV}\n"
    text += "phases:\n"
    text += f"- name: gas\n  thermo: ideal-gas\n  elements: [{', '.join(elements)}]\n"
    text += f"  species: [{p['name']}, {c['name']}]\n  transport: mixture-averaged\n"
    text += "  state: {T: 300.0, P: 1 atm}\n"
    text += f"- name: bulk\n  thermo: fixed-stoichiometry\n  elements: [{', '.join(elements)}]\n  species: [P(B)]\n"
    text += f"- name: surf\n  thermo: ideal-surface\n  adjacent-phases: [gas, bulk]\n  elements: [{', '.join(elements)}]\n"
    text += f"  species: [X(s)]\n  kinetics: surface\n  reactions: all\n  site-density: {SITE_DENSITY_MOL_CM2}\n"
    text += "species:\n"
    text += species_yaml(p, "gas") + species_yaml(c, "gas")
    text += species_yaml(bulk, "bulk").rstrip("\n") + "\n  equation-of-state: {model: constant-volume, molar-volume: 10.0 cm^3/mol}\n"
    text += species_yaml({"name": "X(s)", "composition": {}}, "surface")
    text += "reactions:\n"
    text += f"- equation: {p['name']} + X(s) => X(s) + P(B)\n  {rate_block}\n"
    return text


def surface_flux(case, rate_block):
    """Precursor consumption flux (molecules / cm^2 / s) of the Interface, and the gas phase."""
    text = mechanism(case, rate_block)
    gas = ct.Solution(yaml=text, name="gas")
    bulk = ct.Solution(yaml=text, name="bulk")
    surf = ct.Interface(yaml=text, name="surf", adjacent=[gas, bulk])
    y = case["precursor_mole_fraction"]
    gas.TPX = case["temperature_k"], case["pressure_pa"], {case["precursor"]["name"]: y, case["carrier"]["name"]: 1 - y}
    surf.TP = gas.T, gas.P
    surf.coverages = [1.0]
    rates = dict(zip(surf.kinetics_species_names, surf.net_production_rates))  # kmol / m^2 / s
    # ct.avogadro is per kmol: kmol/m^2/s -> molecules/m^2/s -> molecules/cm^2/s.
    flux = -rates[case["precursor"]["name"]] * ct.avogadro / 1e4
    return flux, gas


def evaluate(case):
    t, p_pa = case["temperature_k"], case["pressure_pa"]
    k0, ea = case["pre_exponential_cm_s"], case["activation_energy_ev"]
    # A per site: rate = A [P] [X(s)] with [X(s)] = site density, so k_s = A * site density.
    arrhenius = f"rate-constant: {{A: {k0 / SITE_DENSITY_MOL_CM2!r}, b: 0.0, Ea: {ea!r}}}"
    kinetic_flux, gas = surface_flux(case, arrhenius)
    sticking = f"sticking-coefficient: {{A: {case['reaction_probability']!r}, b: 0.0, Ea: 0.0}}"
    sticking_flux, _ = surface_flux(case, sticking)

    names = gas.species_names
    i, j = names.index(case["precursor"]["name"]), names.index(case["carrier"]["name"])
    diffusivity = gas.binary_diff_coeffs[i, j] * 1e4  # m^2/s -> cm^2/s
    viscosity = gas.viscosity  # Pa s
    concentration = gas.concentrations[i] * ct.avogadro / 1e6  # kmol/m^3 -> molecules/cm^3
    density = gas.density * 1e-3  # kg/m^3 -> g/cm^3

    k_s = kinetic_flux / concentration
    total_sccm = case["precursor_flow_sccm"] + case["carrier_gas_flow_sccm"]
    velocity = total_sccm / 60.0 * (ct.one_atm / p_pa) * (t / 273.15) / case["cross_section_cm2"]
    reynolds = density * velocity * case["plate_length_cm"] / (viscosity * 10.0)
    delta = min(2.0 * case["plate_length_cm"] / (3.0 * math.sqrt(reynolds)), case["max_boundary_layer_cm"])
    h_g = diffusivity / delta
    n_f = case["molecules_per_cm3"]
    grove_flux = concentration * k_s * h_g / (k_s + h_g)
    # The feed caps the flux: molecules per second in the precursor flow (standard cm^3 at 0 C and
    # 1 atm, Cantera's ideal gas) over the deposition area.
    standard = ct.Solution(yaml=mechanism(case, arrhenius), name="gas")
    standard.TPX = 273.15, ct.one_atm, {case["precursor"]["name"]: 1.0}
    feed_per_area = (
        case["precursor_flow_sccm"] / 60.0 * standard.density_mole * ct.avogadro / 1e6 / case["deposition_area_cm2"]
    )
    supply_limited = bool(grove_flux > feed_per_area)
    flux = float(min(grove_flux, feed_per_area))
    per_nm_min = 1e7 * 60.0 / n_f
    return {
        "diffusivity_cm2_s": diffusivity,
        "viscosity_pa_s": viscosity,
        "precursor_concentration_cm3": concentration,
        "surface_rate_constant_cm_s": k_s,
        "reaction_limited_flux_cm2_s": kinetic_flux,
        "sticking_flux_cm2_s": sticking_flux,
        "reynolds_number": reynolds,
        "boundary_layer_cm": delta,
        "rate_nm_min": flux * per_nm_min,
        "supply_limited": supply_limited,
        "transport_limited_rate_nm_min": concentration * h_g * per_nm_min,
    }


def main():
    cases = json.load(sys.stdin)
    json.dump({"cantera_version": ct.__version__, "results": [evaluate(c) for c in cases]}, sys.stdout)


if __name__ == "__main__":
    main()
