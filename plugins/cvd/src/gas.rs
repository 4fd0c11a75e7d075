//! Gas-phase properties: ideal-gas concentrations, and binary diffusivity and viscosity from
//! Chapman–Enskog theory with a Lennard-Jones 12-6 potential.
//!
//! Why kinetic theory rather than a fixed diffusivity: the Grove model's mass-transfer coefficient
//! is `h_g = D / δ`, and the way `D` falls with pressure (`D ∝ T^~1.7 / P`) is what moves a process
//! between the reaction-limited regime (LPCVD, a fraction of a Torr) and the transport-limited one
//! (atmospheric pressure). The expressions are the Chapman–Enskog ones of Poling, Prausnitz &
//! O'Connell, *The Properties of Gases and Liquids*, 5th ed. (2001), ch. 9 and 11 (binary
//! diffusivity `D = 0.00266 T^{3/2} / (P M_AB^{1/2} σ_AB² Ω_D)`, pure-gas viscosity
//! `μ = 26.69 (M T)^{1/2} / (σ² Ω_v)`, Wilke's mixing rule for a mixture's viscosity), with the
//! collision integrals fitted by Neufeld, Janzen & Aziz, J. Chem. Phys. 57, 1100 (1972) (the same
//! coefficients as `chemicals.lennard_jones.collision_integral_Neufeld_Janzen_Aziz`). Cantera's
//! mixture-averaged transport computes the same quantities from the same potential parameters;
//! the oracle tests compare.
//!
//! Lennard-Jones parameters come from Poling et al. (2001), Appendix B, where tabulated (SiH4, N2,
//! H2, Ar, He, NH3; NH3 is treated as non-polar, without its dipole correction); the values were
//! checked against the `Poling et al. (2001)` table of the `chemicals` library (1.5). For
//! precursors without tabulated parameters (SiH2Cl2, WF6, TEOS) they are estimated from critical
//! constants by the correlation of Tee, Gotoh & Stewart, Ind. Eng. Chem. Fundam. 5, 356 (1966):
//! `σ (Pc/Tc)^(1/3) = 2.3551 − 0.0874 ω` (Pc in atm, σ in Å) and `ε/k = (0.7915 + 0.1693 ω) Tc`.
//! TDMAT has no published critical constants; it takes TEOS's estimate (similar molar volume).

use serde::Serialize;

/// Boltzmann constant, J/K.
pub const BOLTZMANN: f64 = 1.380_649e-23;
/// Avogadro constant, 1/mol.
pub const AVOGADRO: f64 = 6.022_140_76e23;
/// Molar gas constant, J/(mol K).
pub const GAS_CONSTANT: f64 = BOLTZMANN * AVOGADRO;
/// One electronvolt, J.
pub const ELECTRONVOLT: f64 = 1.602_176_634e-19;
/// Pascals per Torr.
pub const PA_PER_TORR: f64 = 101_325.0 / 760.0;
/// Pascals per standard atmosphere.
pub const PA_PER_ATM: f64 = 101_325.0;
/// Standard conditions of a "standard cubic centimetre": 0 °C and 1 atm.
pub const SCCM_TEMPERATURE_K: f64 = 273.15;

/// Kelvin from degrees Celsius.
pub fn kelvin(celsius: f64) -> f64 {
    celsius + 273.15
}

/// A gas species as kinetic theory sees it: molar mass and Lennard-Jones 12-6 parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Species {
    /// Formula or common name, as reported in results.
    pub name: &'static str,
    /// Molar mass, g/mol.
    pub molar_mass_g_mol: f64,
    /// Collision diameter σ, Å.
    pub sigma_angstrom: f64,
    /// Well depth ε/k, K.
    pub epsilon_k: f64,
}

impl Species {
    /// A species with tabulated Lennard-Jones parameters.
    pub fn tabulated(name: &'static str, molar_mass_g_mol: f64, sigma_angstrom: f64, epsilon_k: f64) -> Self {
        Species { name, molar_mass_g_mol, sigma_angstrom, epsilon_k }
    }

    /// A species whose Lennard-Jones parameters are estimated from its critical temperature (K),
    /// critical pressure (bar) and acentric factor by Tee, Gotoh & Stewart (1966).
    pub fn from_critical_constants(
        name: &'static str,
        molar_mass_g_mol: f64,
        critical_temperature_k: f64,
        critical_pressure_bar: f64,
        acentric_factor: f64,
    ) -> Self {
        let pc_atm = critical_pressure_bar * 1e5 / PA_PER_ATM;
        let sigma_angstrom = (2.3551 - 0.0874 * acentric_factor) / (pc_atm / critical_temperature_k).cbrt();
        let epsilon_k = (0.7915 + 0.1693 * acentric_factor) * critical_temperature_k;
        Species { name, molar_mass_g_mol, sigma_angstrom, epsilon_k }
    }

    /// Mass of one molecule, kg.
    pub fn molecular_mass_kg(&self) -> f64 {
        self.molar_mass_g_mol * 1e-3 / AVOGADRO
    }

    /// Mean molecular speed `sqrt(8kT / πm)`, cm/s.
    pub fn mean_speed_cm_s(&self, temperature_k: f64) -> f64 {
        (8.0 * BOLTZMANN * temperature_k / (std::f64::consts::PI * self.molecular_mass_kg())).sqrt() * 100.0
    }

    /// Viscosity of the pure gas, Pa·s (Chapman–Enskog, Poling et al. ch. 9).
    pub fn viscosity_pa_s(&self, temperature_k: f64) -> f64 {
        let reduced = temperature_k / self.epsilon_k;
        // Chapman–Enskog in micropoise: 26.69 √(M T) / (σ² Ω_v).
        let micropoise = 26.69 * (self.molar_mass_g_mol * temperature_k).sqrt()
            / (self.sigma_angstrom.powi(2) * viscosity_collision_integral(reduced));
        micropoise * 1e-7
    }
}

/// The reduced collision integral Ω(1,1)* for diffusion (Neufeld et al. 1972).
pub fn diffusion_collision_integral(reduced_temperature: f64) -> f64 {
    let t = reduced_temperature;
    1.060_36 / t.powf(0.156_10)
        + 0.193_00 / (0.476_35 * t).exp()
        + 1.035_87 / (1.529_96 * t).exp()
        + 1.764_74 / (3.894_11 * t).exp()
}

/// The reduced collision integral Ω(2,2)* for viscosity (Neufeld et al. 1972).
pub fn viscosity_collision_integral(reduced_temperature: f64) -> f64 {
    let t = reduced_temperature;
    1.161_45 * t.powf(-0.148_74) + 0.524_87 * (-0.773_20 * t).exp() + 2.161_78 * (-2.437_87 * t).exp()
}

/// Binary diffusion coefficient of `a` in `b`, cm²/s, at `temperature_k` and `pressure_pa`
/// (Chapman–Enskog, Poling et al. ch. 11, with Lorentz–Berthelot combining rules).
/// Inversely proportional to pressure.
pub fn binary_diffusivity_cm2_s(a: &Species, b: &Species, temperature_k: f64, pressure_pa: f64) -> f64 {
    let sigma_ab = 0.5 * (a.sigma_angstrom + b.sigma_angstrom);
    let epsilon_ab = (a.epsilon_k * b.epsilon_k).sqrt();
    let m_ab = 2.0 / (1.0 / a.molar_mass_g_mol + 1.0 / b.molar_mass_g_mol);
    let pressure_bar = pressure_pa * 1e-5;
    // D = 0.00266 T^(3/2) / (P M_AB^(1/2) σ_AB² Ω_D), D in cm²/s, P in bar.
    0.002_66 * temperature_k.powf(1.5)
        / (pressure_bar
            * m_ab.sqrt()
            * sigma_ab.powi(2)
            * diffusion_collision_integral(temperature_k / epsilon_ab))
}

/// Viscosity of a mixture by Wilke's rule (Poling et al. ch. 9), Pa·s. `mole_fractions`
/// pairs each species with its mole fraction; fractions need not be normalised.
pub fn mixture_viscosity_pa_s(mole_fractions: &[(Species, f64)], temperature_k: f64) -> f64 {
    let total: f64 = mole_fractions.iter().map(|(_, x)| x).sum();
    let viscosities: Vec<f64> = mole_fractions.iter().map(|(s, _)| s.viscosity_pa_s(temperature_k)).collect();
    let mut mixture = 0.0;
    for (i, (si, xi)) in mole_fractions.iter().enumerate() {
        if *xi <= 0.0 {
            continue;
        }
        let denominator: f64 = mole_fractions
            .iter()
            .enumerate()
            .map(|(j, (sj, xj))| {
                let ratio = (viscosities[i] / viscosities[j]).sqrt()
                    * (sj.molar_mass_g_mol / si.molar_mass_g_mol).powf(0.25);
                let phi =
                    (1.0 + ratio).powi(2) / (8.0 * (1.0 + si.molar_mass_g_mol / sj.molar_mass_g_mol)).sqrt();
                xj / total * phi
            })
            .sum();
        mixture += xi / total * viscosities[i] / denominator;
    }
    mixture
}

/// Number concentration of an ideal gas (or of one component at `mole_fraction`), molecules/cm³.
pub fn number_concentration_cm3(mole_fraction: f64, temperature_k: f64, pressure_pa: f64) -> f64 {
    mole_fraction * pressure_pa / (BOLTZMANN * temperature_k) * 1e-6
}

/// Mass density of an ideal-gas mixture of mean molar mass `molar_mass_g_mol`, g/cm³.
pub fn mass_density_g_cm3(molar_mass_g_mol: f64, temperature_k: f64, pressure_pa: f64) -> f64 {
    pressure_pa * molar_mass_g_mol / (GAS_CONSTANT * temperature_k) * 1e-6
}

/// Molecules per second in a flow of `sccm` standard cubic centimetres per minute.
pub fn molecules_per_second(sccm: f64) -> f64 {
    number_concentration_cm3(1.0, SCCM_TEMPERATURE_K, PA_PER_ATM) * sccm / 60.0
}

/// The gases the plugin knows, with the sources of their parameters (module docs).
pub mod species {
    use super::Species;

    /// Silane (Poling et al. 2001, App. B).
    pub fn silane() -> Species {
        Species::tabulated("SiH4", 32.117, 4.084, 207.6)
    }
    /// Dichlorosilane: Tc 451.5 K, Pc 45.99 bar (Piña-Martinez, Privat & Jaubert, AIChE J. (2022)
    /// e17518), ω 0.0985 (Yaws), as compiled in the `chemicals` library (1.5), estimated by
    /// Tee–Gotoh–Stewart.
    pub fn dichlorosilane() -> Species {
        Species::from_critical_constants("SiH2Cl2", 101.007, 451.5, 45.99, 0.0985)
    }
    /// Tetraethyl orthosilicate, Si(OC2H5)4: Tc 592.2 K, Pc 20.5 bar (IUPAC), ω 0.6248 (PSRK), as
    /// compiled in the `chemicals` library (1.5), estimated by Tee–Gotoh–Stewart.
    pub fn teos() -> Species {
        Species::from_critical_constants("TEOS", 208.33, 592.2, 20.5, 0.6248)
    }
    /// Tetrakis(dimethylamido)titanium, Ti(N(CH3)2)4: no published critical constants; takes the
    /// Lennard-Jones estimate of TEOS, a molecule of similar size (molar volumes 237 and 223 cm³/mol).
    pub fn tdmat() -> Species {
        let teos = teos();
        Species { name: "TDMAT", molar_mass_g_mol: 224.17, ..teos }
    }
    /// Tungsten hexafluoride: Tc 444 K, Pc 43.4 bar, ω 0.163 (Yaws, as compiled in the `chemicals`
    /// library (1.5)), estimated by Tee–Gotoh–Stewart.
    pub fn tungsten_hexafluoride() -> Species {
        Species::from_critical_constants("WF6", 297.83, 444.0, 43.4, 0.163)
    }
    /// Nitrogen (Poling et al. 2001, App. B).
    pub fn nitrogen() -> Species {
        Species::tabulated("N2", 28.014, 3.798, 71.4)
    }
    /// Hydrogen (Poling et al. 2001, App. B).
    pub fn hydrogen() -> Species {
        Species::tabulated("H2", 2.016, 2.827, 59.7)
    }
    /// Argon (Poling et al. 2001, App. B).
    pub fn argon() -> Species {
        Species::tabulated("Ar", 39.948, 3.542, 93.3)
    }
    /// Helium (Poling et al. 2001, App. B).
    pub fn helium() -> Species {
        Species::tabulated("He", 4.0026, 2.551, 10.22)
    }
    /// Ammonia (Poling et al. 2001, App. B), without the Stockmayer dipole correction.
    pub fn ammonia() -> Species {
        Species::tabulated("NH3", 17.031, 2.900, 558.3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tee_gotoh_stewart_estimates_match_the_published_correlation() {
        // Values computed with `chemicals.lennard_jones.{sigma,epsilon}_Tee_Gotoh_Steward_2`
        // (chemicals 1.5) from the same critical constants.
        let dcs = species::dichlorosilane();
        assert!((dcs.sigma_angstrom - 5.046_488).abs() < 1e-5, "{}", dcs.sigma_angstrom);
        assert!((dcs.epsilon_k - 364.891_487).abs() < 1e-5, "{}", dcs.epsilon_k);
        let teos = species::teos();
        assert!((teos.sigma_angstrom - 7.089_755).abs() < 1e-5, "{}", teos.sigma_angstrom);
        assert!((teos.epsilon_k - 531.368_411).abs() < 1e-5, "{}", teos.epsilon_k);
        let wf6 = species::tungsten_hexafluoride();
        assert!((wf6.sigma_angstrom - 5.104_003).abs() < 1e-5, "{}", wf6.sigma_angstrom);
    }

    #[test]
    fn collision_integrals_match_the_lennard_jones_tables() {
        // Tabulated Lennard-Jones collision integrals (Bird, Stewart & Lightfoot, Transport
        // Phenomena, 2nd ed. (2002), Table E.2; the table was not re-read for this check, but
        // `chemicals`' Neufeld fit gives 1.4405/1.5931, 1.0754/1.1761, 0.8431/0.9259 at T* = 1, 2,
        // 5, within 0.1 % of these).
        for (t, omega_d, omega_v) in [(1.0, 1.440, 1.593), (2.0, 1.075, 1.175), (5.0, 0.8422, 0.9268)] {
            assert!((diffusion_collision_integral(t) / omega_d - 1.0).abs() < 2e-3, "Ω_D({t})");
            assert!((viscosity_collision_integral(t) / omega_v - 1.0).abs() < 2e-3, "Ω_v({t})");
        }
    }

    #[test]
    fn nitrogen_viscosity_is_close_to_the_reference_value() {
        // Reference: 17.89 µPa·s at 300 K and 1 bar, computed from the Lemmon & Jacobsen
        // correlation (Int. J. Thermophys. 25, 21 (2004), the one the NIST WebBook uses) with its
        // coefficients as CoolProp stores them (dev/fluids/Nitrogen.json: σ = 0.3656 nm,
        // ε/k = 98.94 K, b = 0.431, −0.4623, 0.08406, 0.005341, −0.00331): 17.877 µPa·s for the
        // dilute gas plus 0.013 µPa·s of density correction at 1 bar. Chapman–Enskog with
        // Poling's σ and ε/k gives 17.69 µPa·s, 1.1 % low.
        let mu = species::nitrogen().viscosity_pa_s(300.0);
        assert!((mu / 17.89e-6 - 1.0).abs() < 0.02, "{mu}");
    }

    #[test]
    fn diffusivity_is_inverse_in_pressure_and_grows_with_temperature() {
        let (a, b) = (species::silane(), species::nitrogen());
        let d1 = binary_diffusivity_cm2_s(&a, &b, 900.0, 40.0);
        let d2 = binary_diffusivity_cm2_s(&a, &b, 900.0, 80.0);
        assert!((d1 / d2 - 2.0).abs() < 1e-12);
        assert!(binary_diffusivity_cm2_s(&a, &b, 1000.0, 40.0) > d1);
        // Order of magnitude at 1 atm and 300 K: ~0.1-0.2 cm²/s, like other light gases in N2.
        let d_atm = binary_diffusivity_cm2_s(&a, &b, 300.0, PA_PER_ATM);
        assert!((0.1..0.25).contains(&d_atm), "{d_atm}");
    }

    #[test]
    fn wilke_viscosity_of_a_pure_gas_is_that_gas() {
        let n2 = species::nitrogen();
        let mixed = mixture_viscosity_pa_s(&[(n2, 1.0), (species::silane(), 0.0)], 700.0);
        assert!((mixed / n2.viscosity_pa_s(700.0) - 1.0).abs() < 1e-12);
    }
}
