//! The Grove model of CVD growth: a surface reaction in series with gas-phase mass transfer.
//!
//! In steady state the flux of precursor through the stagnant boundary layer,
//! `F₁ = h_g (C_g − C_s)`, equals the flux consumed by a first-order surface reaction,
//! `F₂ = k_s C_s`. Eliminating the surface concentration `C_s` gives (Grove, *Physics and
//! Technology of Semiconductor Devices* (1967); Plummer, Deal & Griffin, *Silicon VLSI Technology*
//! (2000), ch. 9):
//!
//! ```text
//! F = C_g k_s h_g / (k_s + h_g),        growth rate G = F / N_f
//! k_s = k0 exp(−Ea / kT)                (surface reaction, Arrhenius)
//! h_g = D_AB(T, P) / δ                  (mass transfer; D ∝ T^~1.7 / P, see `gas`)
//! C_g = y P / kT,  y = Q_precursor / (Q_precursor + Q_carrier)
//! ```
//!
//! `N_f` is the number of precursor molecules consumed per cm³ of film. The ratio
//! `Da = k_s / h_g` (a Damköhler number) names the regime: below 0.1 the surface reaction limits
//! (`G ≈ k_s C_g / N_f`, an Arrhenius line whose slope gives `Ea`), above 10 transport limits
//! (`G ≈ h_g C_g / N_f`, nearly independent of temperature and, since `D ∝ 1/P` and `C_g ∝ P`, of
//! pressure too), in between it is mixed.
//!
//! The boundary-layer thickness is that of laminar flow over a plate of length `L` (the wafer),
//! averaged over the plate: `δ = (2L/3) / √Re_L`, with `Re_L = ρ U L / μ` (as in Plummer et al. ch. 9),
//! the gas velocity `U` from the total flow at process temperature and pressure over the reactor's
//! cross-section, and `μ` by Wilke's rule. At LPCVD pressures `Re_L` is tiny and that formula would
//! give a layer many times larger than the reactor; `δ` is then the reactor's own diffusion length
//! (`max_boundary_layer_cm`, half the gap between wafer and wall or showerhead).
//!
//! Two bounds are reported rather than imposed: the reaction probability `γ = 4 k_s / v̄` (the
//! fraction of gas-kinetic wall collisions that react; above 1 the kinetic law has been
//! extrapolated past physics), and the utilisation, the fraction of the precursor fed that the
//! wafer consumes. When the model would consume more than is fed, the growth is capped at the feed
//! and the regime reads `supply_limited`.

use serde::Serialize;

use crate::gas::{self, BOLTZMANN, ELECTRONVOLT, PA_PER_TORR, Species};

/// Below this Damköhler number the growth is reaction-limited.
pub const REACTION_LIMITED_BELOW: f64 = 0.1;
/// Above this Damköhler number the growth is transport-limited.
pub const TRANSPORT_LIMITED_ABOVE: f64 = 10.0;

/// The reactor geometry that sets mass transfer and the area that consumes precursor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reactor {
    /// Length of the plate the flow passes over (the wafer diameter), cm.
    pub plate_length_cm: f64,
    /// Cross-section of the reactor that the gas flows through, cm².
    pub cross_section_cm2: f64,
    /// The largest diffusion length the reactor allows, cm.
    pub max_boundary_layer_cm: f64,
    /// Area consuming precursor (one side of one wafer by default), cm².
    pub deposition_area_cm2: f64,
}

/// The process conditions of a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditions {
    /// K.
    pub temperature_k: f64,
    /// Pa.
    pub pressure_pa: f64,
    /// sccm.
    pub precursor_flow_sccm: f64,
    /// sccm.
    pub carrier_gas_flow_sccm: f64,
    /// The rate-limiting precursor.
    pub precursor: Species,
    /// The carrier (or excess co-reactant) gas.
    pub carrier: Species,
}

impl Conditions {
    /// Conditions from the units of the input: °C, Torr, sccm.
    pub fn from_recipe(
        temperature_c: f64,
        pressure_torr: f64,
        precursor_flow_sccm: f64,
        carrier_gas_flow_sccm: f64,
        precursor: Species,
        carrier: Species,
    ) -> Self {
        Conditions {
            temperature_k: gas::kelvin(temperature_c),
            pressure_pa: pressure_torr * PA_PER_TORR,
            precursor_flow_sccm,
            carrier_gas_flow_sccm,
            precursor,
            carrier,
        }
    }

    /// Mole fraction of precursor in the feed.
    pub fn precursor_mole_fraction(&self) -> f64 {
        self.precursor_flow_sccm / (self.precursor_flow_sccm + self.carrier_gas_flow_sccm)
    }
}

/// The surface reaction's Arrhenius law.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Kinetics {
    /// `k0`, cm/s.
    pub pre_exponential_cm_s: f64,
    /// `Ea`, eV.
    pub activation_energy_ev: f64,
}

impl Kinetics {
    /// `k_s(T) = k0 exp(−Ea/kT)`, cm/s.
    pub fn surface_rate_constant_cm_s(&self, temperature_k: f64) -> f64 {
        self.pre_exponential_cm_s
            * (-self.activation_energy_ev * ELECTRONVOLT / (BOLTZMANN * temperature_k)).exp()
    }
}

/// Which step limits growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// `Da < 0.1`: the surface reaction.
    ReactionLimited,
    /// `0.1 ≤ Da ≤ 10`: both.
    Mixed,
    /// `Da > 10`: gas-phase mass transfer.
    TransportLimited,
    /// The wafer would consume more precursor than is fed; growth is capped at the feed.
    SupplyLimited,
}

impl Regime {
    /// As written in results and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Regime::ReactionLimited => "reaction_limited",
            Regime::Mixed => "mixed",
            Regime::TransportLimited => "transport_limited",
            Regime::SupplyLimited => "supply_limited",
        }
    }
}

/// Everything the model computes at one set of conditions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Growth {
    /// Deposition rate, nm/min.
    pub rate_nm_min: f64,
    /// Which step limits it.
    pub regime: Regime,
    /// `k_s / h_g`.
    pub damkohler_number: f64,
    /// `k_s`, cm/s.
    pub surface_rate_constant_cm_s: f64,
    /// `h_g`, cm/s.
    pub mass_transfer_coefficient_cm_s: f64,
    /// Binary diffusivity of precursor in carrier, cm²/s.
    pub diffusivity_cm2_s: f64,
    /// Mixture viscosity, Pa·s.
    pub viscosity_pa_s: f64,
    /// Reynolds number over the plate.
    pub reynolds_number: f64,
    /// `δ`, cm.
    pub boundary_layer_cm: f64,
    /// Precursor mole fraction in the feed.
    pub precursor_mole_fraction: f64,
    /// `C_g`, molecules/cm³.
    pub precursor_concentration_cm3: f64,
    /// Precursor flux into the film, molecules/(cm² s).
    pub flux_cm2_s: f64,
    /// `γ = 4 k_s / v̄`.
    pub reaction_probability: f64,
    /// Fraction of the fed precursor consumed on the deposition area.
    pub precursor_utilization: f64,
}

/// Rate in nm/min from a flux of precursor molecules (cm⁻² s⁻¹) into a film consuming
/// `molecules_per_cm3` of them.
fn rate_nm_min(flux_cm2_s: f64, molecules_per_cm3: f64) -> f64 {
    flux_cm2_s / molecules_per_cm3 * 1e7 * 60.0
}

/// The mass-transfer side of the model: `(h_g, D, μ, Re, δ)`.
fn mass_transfer(c: &Conditions, reactor: &Reactor) -> (f64, f64, f64, f64, f64) {
    let y = c.precursor_mole_fraction();
    let t = c.temperature_k;
    let diffusivity = gas::binary_diffusivity_cm2_s(&c.precursor, &c.carrier, t, c.pressure_pa);
    let viscosity = gas::mixture_viscosity_pa_s(&[(c.precursor, y), (c.carrier, 1.0 - y)], t);
    let mean_molar_mass = y * c.precursor.molar_mass_g_mol + (1.0 - y) * c.carrier.molar_mass_g_mol;
    let density = gas::mass_density_g_cm3(mean_molar_mass, t, c.pressure_pa);
    let total_sccm = c.precursor_flow_sccm + c.carrier_gas_flow_sccm;
    let actual_flow_cm3_s =
        total_sccm / 60.0 * (gas::PA_PER_ATM / c.pressure_pa) * (t / gas::SCCM_TEMPERATURE_K);
    let velocity = actual_flow_cm3_s / reactor.cross_section_cm2;
    // μ in poise (g cm⁻¹ s⁻¹) = 10 × Pa·s.
    let reynolds = density * velocity * reactor.plate_length_cm / (viscosity * 10.0);
    let laminar = 2.0 * reactor.plate_length_cm / (3.0 * reynolds.sqrt());
    let boundary_layer = laminar.min(reactor.max_boundary_layer_cm);
    (diffusivity / boundary_layer, diffusivity, viscosity, reynolds, boundary_layer)
}

/// The Grove model at one set of conditions.
pub fn growth(c: &Conditions, kinetics: &Kinetics, molecules_per_cm3: f64, reactor: &Reactor) -> Growth {
    let y = c.precursor_mole_fraction();
    let concentration = gas::number_concentration_cm3(y, c.temperature_k, c.pressure_pa);
    let (h_g, diffusivity, viscosity, reynolds, boundary_layer) = mass_transfer(c, reactor);
    let k_s = kinetics.surface_rate_constant_cm_s(c.temperature_k);
    let grove_flux = concentration * k_s * h_g / (k_s + h_g);
    let feed_per_area = gas::molecules_per_second(c.precursor_flow_sccm) / reactor.deposition_area_cm2;
    let damkohler = k_s / h_g;
    let (flux, regime) = if grove_flux > feed_per_area {
        (feed_per_area, Regime::SupplyLimited)
    } else if damkohler < REACTION_LIMITED_BELOW {
        (grove_flux, Regime::ReactionLimited)
    } else if damkohler > TRANSPORT_LIMITED_ABOVE {
        (grove_flux, Regime::TransportLimited)
    } else {
        (grove_flux, Regime::Mixed)
    };
    Growth {
        rate_nm_min: rate_nm_min(flux, molecules_per_cm3),
        regime,
        damkohler_number: damkohler,
        surface_rate_constant_cm_s: k_s,
        mass_transfer_coefficient_cm_s: h_g,
        diffusivity_cm2_s: diffusivity,
        viscosity_pa_s: viscosity,
        reynolds_number: reynolds,
        boundary_layer_cm: boundary_layer,
        precursor_mole_fraction: y,
        precursor_concentration_cm3: concentration,
        flux_cm2_s: flux,
        reaction_probability: 4.0 * k_s / c.precursor.mean_speed_cm_s(c.temperature_k),
        precursor_utilization: flux / feed_per_area,
    }
}

/// Why a reference rate cannot be reproduced.
#[derive(Debug, Clone, PartialEq)]
pub enum CalibrationError {
    /// The rate is at or above what mass transfer (or the feed) allows at the recipe, nm/min.
    AboveTransportLimit {
        /// The most the recipe can give.
        limit_nm_min: f64,
    },
}

/// The `k0` (cm/s) for which the Grove model gives `rate_nm_min` at `reference` conditions with
/// activation energy `activation_energy_ev`: `k_s = 1 / (C_g/F − 1/h_g)`, then `k0 = k_s e^{Ea/kT}`.
pub fn calibrate_pre_exponential(
    reference: &Conditions,
    activation_energy_ev: f64,
    rate_nm_min: f64,
    molecules_per_cm3: f64,
    reactor: &Reactor,
) -> Result<f64, CalibrationError> {
    let concentration = gas::number_concentration_cm3(
        reference.precursor_mole_fraction(),
        reference.temperature_k,
        reference.pressure_pa,
    );
    let (h_g, ..) = mass_transfer(reference, reactor);
    let flux = rate_nm_min / (1e7 * 60.0) * molecules_per_cm3;
    let feed_per_area =
        gas::molecules_per_second(reference.precursor_flow_sccm) / reactor.deposition_area_cm2;
    let transport_limit = (concentration * h_g).min(feed_per_area);
    // Within 0.1 % of the limit the inversion is ill-conditioned (k_s → ∞): refuse it.
    if flux >= 0.999 * transport_limit {
        return Err(CalibrationError::AboveTransportLimit {
            limit_nm_min: self::rate_nm_min(transport_limit, molecules_per_cm3),
        });
    }
    let k_s = 1.0 / (concentration / flux - 1.0 / h_g);
    Ok(k_s * (activation_energy_ev * ELECTRONVOLT / (BOLTZMANN * reference.temperature_k)).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gas::species;

    fn reactor() -> Reactor {
        Reactor {
            plate_length_cm: 20.0,
            cross_section_cm2: 500.0,
            max_boundary_layer_cm: 1.0,
            // A small coupon, so that the feed never limits these tests.
            deposition_area_cm2: 10.0,
        }
    }

    fn silane_in_nitrogen(temperature_c: f64, pressure_torr: f64) -> Conditions {
        Conditions::from_recipe(
            temperature_c,
            pressure_torr,
            50.0,
            450.0,
            species::silane(),
            species::nitrogen(),
        )
    }

    const N_SI: f64 = 4.994e22;

    // The kinetics below (Ea = 1.7 eV, 8 nm/min, k0 = 1e9 or 1e12 cm/s) are arbitrary test
    // parameters for closed-form checks of the model, not material data: the films' own values
    // and their sources are in `materials`.

    #[test]
    fn calibration_reproduces_the_reference_rate() {
        let reference = silane_in_nitrogen(620.0, 0.3);
        let k0 = calibrate_pre_exponential(&reference, 1.7, 8.0, N_SI, &reactor()).unwrap();
        let kinetics = Kinetics { pre_exponential_cm_s: k0, activation_energy_ev: 1.7 };
        let g = growth(&reference, &kinetics, N_SI, &reactor());
        assert!((g.rate_nm_min / 8.0 - 1.0).abs() < 1e-12, "{}", g.rate_nm_min);
        assert_eq!(g.regime, Regime::ReactionLimited);
    }

    #[test]
    fn reaction_limited_arrhenius_slope_recovers_the_activation_energy() {
        // Far in the reaction-limited regime G ∝ k_s C_g ∝ exp(−Ea/kT) / T, so the slope of
        // ln(G T) against 1/T is −Ea/k.
        let kinetics = Kinetics { pre_exponential_cm_s: 1e9, activation_energy_ev: 1.7 };
        let (t1, t2) = (550.0, 600.0);
        let g1 = growth(&silane_in_nitrogen(t1, 0.3), &kinetics, N_SI, &reactor());
        let g2 = growth(&silane_in_nitrogen(t2, 0.3), &kinetics, N_SI, &reactor());
        assert_eq!(g1.regime, Regime::ReactionLimited);
        assert!(g2.damkohler_number < 1e-3, "{}", g2.damkohler_number);
        let (k1, k2) = (gas::kelvin(t1), gas::kelvin(t2));
        let slope = ((g2.rate_nm_min * k2).ln() - (g1.rate_nm_min * k1).ln()) / (1.0 / k2 - 1.0 / k1);
        let ea = -slope * BOLTZMANN / ELECTRONVOLT;
        assert!((ea / 1.7 - 1.0).abs() < 1e-3, "recovered Ea = {ea} eV");
    }

    #[test]
    fn transport_limited_rate_plateaus_at_the_mass_transfer_limit_and_ignores_pressure() {
        let kinetics = Kinetics { pre_exponential_cm_s: 1e12, activation_energy_ev: 1.7 };
        let at = |t: f64, p: f64| growth(&silane_in_nitrogen(t, p), &kinetics, N_SI, &reactor());
        let hot = at(1100.0, 760.0);
        assert_eq!(hot.regime, Regime::TransportLimited);
        let plateau = rate_nm_min(hot.precursor_concentration_cm3 * hot.mass_transfer_coefficient_cm_s, N_SI);
        assert!((hot.rate_nm_min / plateau - 1.0).abs() < 1.0 / hot.damkohler_number * 1.01);
        // Apparent activation energy in the plateau: far below Ea.
        let hotter = at(1150.0, 760.0);
        let (k1, k2) = (gas::kelvin(1100.0), gas::kelvin(1150.0));
        let apparent = -((hotter.rate_nm_min).ln() - (hot.rate_nm_min).ln()) / (1.0 / k2 - 1.0 / k1)
            * BOLTZMANN
            / ELECTRONVOLT;
        assert!(apparent.abs() < 0.15, "apparent Ea {apparent} eV");
        // D ∝ 1/P and C_g ∝ P: the transport-limited flux does not depend on pressure while δ is fixed.
        let half = at(1100.0, 380.0);
        assert_eq!(half.boundary_layer_cm, hot.boundary_layer_cm);
        assert!((half.rate_nm_min / hot.rate_nm_min - 1.0).abs() < 0.02);
    }

    #[test]
    fn lowering_pressure_moves_a_process_from_transport_to_reaction_limited() {
        let kinetics = Kinetics { pre_exponential_cm_s: 1e9, activation_energy_ev: 1.7 };
        let atmospheric = growth(&silane_in_nitrogen(900.0, 760.0), &kinetics, N_SI, &reactor());
        let low = growth(&silane_in_nitrogen(900.0, 0.3), &kinetics, N_SI, &reactor());
        assert!(atmospheric.damkohler_number > 1000.0 * low.damkohler_number);
        assert_eq!(low.regime, Regime::ReactionLimited);
    }

    #[test]
    fn a_rate_above_the_transport_limit_cannot_be_calibrated() {
        let reference = silane_in_nitrogen(620.0, 760.0);
        let err = calibrate_pre_exponential(&reference, 1.7, 1e6, N_SI, &reactor()).unwrap_err();
        let CalibrationError::AboveTransportLimit { limit_nm_min } = err;
        assert!(limit_nm_min > 0.0 && limit_nm_min < 1e6);
    }

    #[test]
    fn the_feed_caps_growth() {
        let kinetics = Kinetics { pre_exponential_cm_s: 1e12, activation_energy_ev: 0.5 };
        let mut c = silane_in_nitrogen(700.0, 1.0);
        c.precursor_flow_sccm = 0.01;
        c.carrier_gas_flow_sccm = 0.0;
        let g = growth(&c, &kinetics, N_SI, &reactor());
        assert_eq!(g.regime, Regime::SupplyLimited);
        assert!((g.precursor_utilization - 1.0).abs() < 1e-12);
    }
}
