//! The films the plugin deposits, each with its precursor chemistry, a reference recipe with a
//! reference deposition rate (published where checked) that calibrates the Grove model, and the
//! mechanical constants that give its stress.
//!
//! Calibration, and why it is done this way: a CVD rate constant `k_s = k0 exp(−Ea/kT)` is rarely
//! published as such; what handbooks and papers report is a deposition rate at a recipe and an
//! apparent activation energy. Each material therefore carries a reference recipe, the rate
//! reported for it and `Ea`; [`crate::grove::calibrate_pre_exponential`] inverts the Grove model
//! at that recipe to obtain `k0`. At the reference recipe the model returns the reference rate
//! exactly, and elsewhere it extrapolates with the Arrhenius law and the transport model. Stress is
//! calibrated the same way: the intrinsic stress is the reference total (room-temperature) stress
//! at the reference temperature minus the thermal-mismatch part the model computes there.
//!
//! The sources are listed per field and in the README's "Parameter sources" table, which also says
//! which values were checked against their source and which could not be. Values marked
//! *illustrative* were not found in any checkable source: they are plausible defaults chosen for
//! the model (the README says how), not measurements. Every value can be overridden per step
//! (`model` in the input).

use serde::{Deserialize, Serialize};

use crate::gas::{Species, species};

/// Linear thermal expansion of the silicon substrate near room temperature, 1/K: 2.6 × 10⁻⁶ /K at
/// 300 K (Okada & Tokumaru, J. Appl. Phys. 56, 314 (1984); the same value is in the BYU cleanroom
/// "Semiconductor constants" table).
pub const SILICON_THERMAL_EXPANSION: f64 = 2.6e-6;
/// Biaxial modulus `E/(1−ν)` of a (100) silicon wafer, Pa: `c11 + c12 − 2 c12²/c11`, 180.3 GPa
/// with c11 = 165.7 and c12 = 63.9 GPa (Brantley, J. Appl. Phys. 44, 534 (1973); Hopcroft, Nix &
/// Kenny, J. Microelectromech. Syst. 19, 229 (2010)); 180.5 GPa is used, within 0.1 %.
pub const SILICON_100_BIAXIAL_MODULUS: f64 = 180.5e9;
/// Room temperature, where the stress of a film is measured after cool-down, °C.
pub const ROOM_TEMPERATURE_C: f64 = 25.0;

/// A film material of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum FilmMaterial {
    /// Stoichiometric LPCVD silicon nitride from dichlorosilane and ammonia.
    #[serde(rename = "Si3N4")]
    SiliconNitride,
    /// LPCVD silicon dioxide from TEOS pyrolysis.
    #[serde(rename = "SiO2")]
    SiliconDioxide,
    /// LPCVD polycrystalline silicon from silane.
    #[serde(rename = "poly-Si", alias = "polysilicon", alias = "poly_si")]
    Polysilicon,
    /// Titanium nitride by MOCVD from TDMAT (a diffusion barrier).
    #[serde(rename = "TiN")]
    TitaniumNitride,
    /// Tungsten by hydrogen reduction of WF6 (contact and via fill).
    #[serde(rename = "W", alias = "tungsten")]
    Tungsten,
}

/// A carrier or co-reactant gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum CarrierGas {
    /// Nitrogen.
    N2,
    /// Hydrogen.
    H2,
    /// Argon.
    Ar,
    /// Helium.
    He,
    /// Ammonia (the nitrogen source of Si3N4, in excess).
    NH3,
}

impl CarrierGas {
    /// Its kinetic-theory parameters.
    pub fn species(self) -> Species {
        match self {
            CarrierGas::N2 => species::nitrogen(),
            CarrierGas::H2 => species::hydrogen(),
            CarrierGas::Ar => species::argon(),
            CarrierGas::He => species::helium(),
            CarrierGas::NH3 => species::ammonia(),
        }
    }
}

/// A recipe at which a deposition rate has been reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReferenceRecipe {
    /// °C.
    pub temperature_c: f64,
    /// Torr.
    pub pressure_torr: f64,
    /// sccm.
    pub precursor_flow_sccm: f64,
    /// sccm.
    pub carrier_gas_flow_sccm: f64,
    /// The deposition rate reported at this recipe, nm/min.
    pub rate_nm_min: f64,
}

/// Everything the model needs to know about one film material.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MaterialData {
    /// As written in the input (`Si3N4`, `poly-Si`, ...).
    pub name: &'static str,
    /// The overall reaction modelled.
    pub chemistry: &'static str,
    /// The precursor whose transport and reaction limit growth.
    pub precursor: Species,
    /// The default carrier (or excess co-reactant) gas.
    pub default_carrier: CarrierGas,
    /// Precursor molecules consumed per formula unit of film (3 SiH2Cl2 per Si3N4).
    pub precursors_per_formula_unit: f64,
    /// Film density, g/cm³.
    pub density_g_cm3: f64,
    /// Molar mass of one formula unit of film, g/mol.
    pub formula_molar_mass_g_mol: f64,
    /// The calibration recipe and its rate.
    pub reference: ReferenceRecipe,
    /// Apparent activation energy of the surface reaction, eV.
    pub activation_energy_ev: f64,
    /// The usual range of deposition rates of this process, nm/min; outside it, `rate_anomaly`.
    pub typical_rate_band_nm_min: (f64, f64),
    /// Total film stress at room temperature after deposition at the reference temperature, MPa
    /// (positive = tensile). `None`: no intrinsic stress is assumed (thermal mismatch only).
    pub reference_total_stress_mpa: Option<f64>,
    /// Young's modulus, GPa.
    pub youngs_modulus_gpa: f64,
    /// Poisson's ratio.
    pub poisson_ratio: f64,
    /// Linear thermal expansion coefficient, 10⁻⁶/K.
    pub thermal_expansion_ppm_k: f64,
    /// Where the numbers come from, in one line.
    pub sources: &'static str,
}

impl FilmMaterial {
    /// Every material, in the order of the issue.
    pub const ALL: [FilmMaterial; 5] = [
        FilmMaterial::SiliconNitride,
        FilmMaterial::SiliconDioxide,
        FilmMaterial::Polysilicon,
        FilmMaterial::TitaniumNitride,
        FilmMaterial::Tungsten,
    ];

    /// The material's data (see the README's parameter table for the sources in full).
    pub fn data(self) -> MaterialData {
        match self {
            // LPCVD nitride: 3 SiH2Cl2 + 4 NH3 → Si3N4 + 6 HCl + 6 H2. Rate and stress: the MEMS
            // Exchange process catalog, "Stoichiometric silicon nitride LPCVD" (P3684): 35 Å/min
            // at 800 °C, residual stress 900 MPa (tensile). Pressure: the Stanford SNF Tylan
            // nitride furnace page, about 800 °C and ~250 mTorr from DCS and NH3, ~30 to 35 Å/min.
            // E = 222 GPa, ν = 0.28 from bulge tests of LPCVD nitride (Vlassak & Nix, J. Mater.
            // Res. 7, 3242 (1992), abstract). α = 3.3 ppm/K: 3.27 ppm/K was measured
            // on PECVD SiNx (Appl. Opt. 51, 7229 (2012), abstract), inside the 2.8–3.6 ppm/K of the
            // picaros.org silicon nitride table; no LPCVD-specific value was found. Illustrative
            // (no source found): Ea, the DCS:NH3 = 30:100 sccm flows (NH3-rich, as stoichiometric
            // recipes are; Tystar's low-stress recipe is the DCS-rich opposite, ~6:1) and the
            // density.
            FilmMaterial::SiliconNitride => MaterialData {
                name: "Si3N4",
                chemistry: "3 SiH2Cl2 + 4 NH3 -> Si3N4 + 6 HCl + 6 H2",
                precursor: species::dichlorosilane(),
                default_carrier: CarrierGas::NH3,
                precursors_per_formula_unit: 3.0,
                density_g_cm3: 3.1,
                formula_molar_mass_g_mol: 140.28,
                reference: ReferenceRecipe {
                    temperature_c: 800.0,
                    pressure_torr: 0.25,
                    precursor_flow_sccm: 30.0,
                    carrier_gas_flow_sccm: 100.0,
                    rate_nm_min: 3.5,
                },
                activation_energy_ev: 1.8,
                typical_rate_band_nm_min: (1.0, 8.0),
                reference_total_stress_mpa: Some(900.0),
                youngs_modulus_gpa: 222.0,
                poisson_ratio: 0.28,
                thermal_expansion_ppm_k: 3.3,
                sources: "rate, stress: MEMS Exchange catalog P3684 (800 C, 3.5 nm/min, 900 MPa); pressure: \
                          Stanford SNF Tylan nitride (~250 mTorr); E, nu: Vlassak & Nix 1992; alpha: 3.27 \
                          ppm/K (PECVD SiNx, Appl. Opt. 2012); Ea, flows, density: illustrative, unsourced",
            },
            // LPCVD TEOS oxide: Si(OC2H5)4 → SiO2 + by-products. Adams & Capio, J. Electrochem. Soc.
            // 126, 1042 (1979), abstract: at 700 °C, 200–300 Å/min, the film stress "compressive
            // and low"; the reference rate is the middle of that range. Stress: DTU Nanolab
            // LabAdviser, "LPCVD TEOS": "compressive stress (around 100-300 MPa)"; −100 MPa is the
            // low end, matching Adams & Capio's "low". E = 72 GPa, ν = 0.17, α = 0.55 ppm/K
            // (293–593 K): fused quartz, ProSciTech "Properties of Fused Quartz" table.
            // Illustrative (no source found): Ea, the pressure and the flows.
            FilmMaterial::SiliconDioxide => MaterialData {
                name: "SiO2",
                chemistry: "Si(OC2H5)4 -> SiO2 + 4 C2H4 + 2 H2O (TEOS pyrolysis)",
                precursor: species::teos(),
                default_carrier: CarrierGas::N2,
                precursors_per_formula_unit: 1.0,
                density_g_cm3: 2.2,
                formula_molar_mass_g_mol: 60.084,
                reference: ReferenceRecipe {
                    temperature_c: 700.0,
                    pressure_torr: 0.3,
                    precursor_flow_sccm: 50.0,
                    carrier_gas_flow_sccm: 50.0,
                    rate_nm_min: 25.0,
                },
                activation_energy_ev: 1.9,
                typical_rate_band_nm_min: (5.0, 60.0),
                reference_total_stress_mpa: Some(-100.0),
                youngs_modulus_gpa: 72.0,
                poisson_ratio: 0.17,
                thermal_expansion_ppm_k: 0.55,
                sources: "rate: Adams & Capio 1979 (700 C, 20-30 nm/min, low compressive); stress: DTU \
                          LabAdviser LPCVD TEOS (100-300 MPa compressive, low end); E, nu, alpha: fused \
                          quartz (ProSciTech table); Ea, pressure, flows: illustrative, unsourced",
            },
            // LPCVD poly-Si: SiH4 → Si + 2 H2. Rate and pressure: the Stanford SNF TylanPoly page,
            // ~620 °C, ~500 mTorr of silane, ~137 Å/min on 4-inch wafers (~125 Å/min on 3-inch).
            // Flow: IBM Technical Disclosure Bulletin (Barbee, 1984, IPCOM000041537D) calls 100%
            // silane at about 100 sccm, 625 °C and 0.1–0.5 Torr the standard process.
            // Ea = 52 kcal/mol = 2.25 eV for LPCVD poly at 900–950 K (Kühne, Harnisch, Puk &
            // Lassan, "On chemical kinetics of silicon deposition from silane (III)", abstract).
            // Stress: undoped poly deposited at 620 °C is compressive at about 1e9 dyn/cm² =
            // 100 MPa ("Behavior of polysilicon thin film stress and structure under rapid thermal
            // processing conditions", MRS Proceedings, abstract). E = 169 ± 6 GPa,
            // ν = 0.22 ± 0.01 from tensile tests of MUMPs (phosphorus-doped) poly: Sharpe, Yuan,
            // Vaidyanathan & Edwards, Proc. IEEE MEMS 1997, as quoted by B. Yuan on MEMSnet. α is
            // taken equal to single-crystal Si, so the thermal part is zero.
            FilmMaterial::Polysilicon => MaterialData {
                name: "poly-Si",
                chemistry: "SiH4 -> Si + 2 H2",
                precursor: species::silane(),
                default_carrier: CarrierGas::N2,
                precursors_per_formula_unit: 1.0,
                density_g_cm3: 2.329,
                formula_molar_mass_g_mol: 28.086,
                reference: ReferenceRecipe {
                    temperature_c: 620.0,
                    pressure_torr: 0.5,
                    precursor_flow_sccm: 100.0,
                    carrier_gas_flow_sccm: 0.0,
                    rate_nm_min: 13.7,
                },
                activation_energy_ev: 2.25,
                typical_rate_band_nm_min: (2.0, 20.0),
                reference_total_stress_mpa: Some(-100.0),
                youngs_modulus_gpa: 169.0,
                poisson_ratio: 0.22,
                thermal_expansion_ppm_k: 2.6,
                sources: "rate, pressure: Stanford SNF TylanPoly (620 C, ~500 mTorr, ~137 A/min); flow: IBM \
                          TDB 1984 (100 sccm silane); Ea: Kuehne et al. (52 kcal/mol); stress: MRS Proc. \
                          (620 C, ~1e9 dyn/cm2 compressive); E, nu: Sharpe et al. 1997 (169 GPa, 0.22)",
            },
            // MOCVD TiN barrier from TDMAT, 350–450 °C, below 1 Torr. E = 251 GPa and
            // α = 9.35 ppm/K: Wikipedia, "Titanium nitride". Illustrative (no source found): the
            // reference recipe and rate, Ea, and ν = 0.25. No intrinsic stress is assumed, so the
            // stress is the thermal mismatch alone.
            FilmMaterial::TitaniumNitride => MaterialData {
                name: "TiN",
                chemistry: "Ti[N(CH3)2]4 -> TiN + organic by-products (MOCVD, TDMAT)",
                precursor: species::tdmat(),
                default_carrier: CarrierGas::He,
                precursors_per_formula_unit: 1.0,
                density_g_cm3: 5.22,
                formula_molar_mass_g_mol: 61.874,
                reference: ReferenceRecipe {
                    temperature_c: 400.0,
                    pressure_torr: 0.45,
                    precursor_flow_sccm: 20.0,
                    carrier_gas_flow_sccm: 200.0,
                    rate_nm_min: 10.0,
                },
                activation_energy_ev: 0.6,
                typical_rate_band_nm_min: (2.0, 50.0),
                reference_total_stress_mpa: None,
                youngs_modulus_gpa: 251.0,
                poisson_ratio: 0.25,
                thermal_expansion_ppm_k: 9.35,
                sources: "E, alpha: Wikipedia 'Titanium nitride' (251 GPa, 9.35 ppm/K); recipe, rate, Ea, nu: \
                          illustrative, unsourced; no intrinsic stress (thermal mismatch only)",
            },
            // Blanket CVD W: WF6 + 3 H2 → W + 6 HF. Ea = 64 kJ/mol = 0.66 eV, with orders 1/6 in
            // WF6 and 1/2 in H2 (Oosterlaken et al., J. Electrochem. Soc. 143, 1668 (1996),
            // abstract). Stress: thick CVD W films are tensile at 0.1–1 GPa, more at lower
            // temperature and higher rate (Leusink, Oosterlaken, Janssen & Radelaar, J. Appl.
            // Phys. 74, 3899 (1993), abstract); +1 GPa is the top of that range, for 400 °C.
            // E = 411 GPa, ν = 0.28, α = 4.5 ppm/K (25 °C): matmake.com tungsten table (citing the
            // CRC Handbook, 97th ed.); the single-crystal moduli K = 311.2, G = 160.2 GPa
            // (J. Appl. Phys. 138, 045902 (2025), abstract) give E = 410 GPa, ν = 0.280.
            // Illustrative (no source found): the reference recipe and rate.
            FilmMaterial::Tungsten => MaterialData {
                name: "W",
                chemistry: "WF6 + 3 H2 -> W + 6 HF",
                precursor: species::tungsten_hexafluoride(),
                default_carrier: CarrierGas::H2,
                precursors_per_formula_unit: 1.0,
                density_g_cm3: 19.25,
                formula_molar_mass_g_mol: 183.84,
                reference: ReferenceRecipe {
                    temperature_c: 400.0,
                    pressure_torr: 40.0,
                    precursor_flow_sccm: 75.0,
                    carrier_gas_flow_sccm: 750.0,
                    rate_nm_min: 200.0,
                },
                activation_energy_ev: 0.66,
                typical_rate_band_nm_min: (30.0, 600.0),
                reference_total_stress_mpa: Some(1000.0),
                youngs_modulus_gpa: 411.0,
                poisson_ratio: 0.28,
                thermal_expansion_ppm_k: 4.5,
                sources: "Ea: Oosterlaken et al. 1996 (64 kJ/mol); stress: Leusink et al. 1993 (0.1-1 GPa \
                          tensile, top of range); E, nu, alpha: CRC via matmake.com (411 GPa, 0.28, 4.5 \
                          ppm/K); recipe, rate: illustrative, unsourced",
            },
        }
    }
}

impl MaterialData {
    /// Precursor molecules consumed per cm³ of film: `ρ N_A / M × n`.
    pub fn precursor_molecules_per_cm3(&self) -> f64 {
        self.density_g_cm3 * crate::gas::AVOGADRO / self.formula_molar_mass_g_mol
            * self.precursors_per_formula_unit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_rate_lies_in_its_own_band() {
        for material in FilmMaterial::ALL {
            let d = material.data();
            let (lo, hi) = d.typical_rate_band_nm_min;
            assert!(lo < d.reference.rate_nm_min && d.reference.rate_nm_min < hi, "{}", d.name);
        }
    }

    #[test]
    fn film_atom_densities_are_those_of_the_solids() {
        // Silicon: 4.99e22 atoms/cm³; tungsten: 6.3e22.
        let si = FilmMaterial::Polysilicon.data().precursor_molecules_per_cm3();
        assert!((si / 4.99e22 - 1.0).abs() < 0.01, "{si}");
        let w = FilmMaterial::Tungsten.data().precursor_molecules_per_cm3();
        assert!((w / 6.31e22 - 1.0).abs() < 0.01, "{w}");
    }
}
