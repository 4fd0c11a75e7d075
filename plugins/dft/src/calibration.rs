//! Every parameter of the PBE model, with where it comes from.
//!
//! The "mock" DFT job does not solve the Kohn-Sham equations. It reports what a PBE calculation
//! reports, from models whose parameters are fixed here:
//!
//! - **Energy scale.** Total energies are all-electron, non-relativistic PBE energies, on the
//!   scale PySCF gives with the cc-pVTZ basis: the free-atom energies below are PySCF UKS/PBE
//!   ground states. A molecule's energy is fitted to PySCF directly; a crystal's is
//!   `N × (E_atom − E_coh)` at the PBE lattice constant, with E_coh the published PBE cohesive
//!   energy.
//! - **Molecules** (H₂, H₂O): Morse bonds, a harmonic bend and (for water) the stretch-stretch
//!   and stretch-bend couplings, whose minimum, depth and curvatures are PySCF's PBE/cc-pVTZ values (`oracle/calibrate_pbe.py` derives them; the oracle tests
//!   check the model against fresh PySCF calculations at displaced geometries).
//! - **Crystals** (Si, Ge, and Si/Ge cells): the Stillinger-Weber potential, its energy scale ε
//!   set so that the diamond structure binds by the PBE cohesive energy and its length scale σ
//!   so that its minimum lies at the PBE lattice constant.
//! - **Band gaps**: the sp3s* tight-binding model of Vogl, Hjalmarson and Dow (fitted to the
//!   experimental band structures), with the conduction bands moved down by the difference
//!   between its gap and the PBE gap (an inverse scissor; see [`crate::bands`]).
//!
//! Reference values (PBE, plane-wave or all-electron, at the PBE lattice constant) are quoted to
//! the precision that different codes agree on; the sources are listed by each constant.

use crate::structure::Element;

/// Basis set of the PySCF calculations behind the molecular constants.
pub const PYSCF_BASIS: &str = "cc-pVTZ";

/// Free-atom PBE energies in hartree: PySCF 2.14, UKS/PBE/cc-pVTZ, ground-state spin (H doublet,
/// O, Si and Ge triplets), non-relativistic (`oracle/calibrate_pbe.py`). The open-shell atoms'
/// SCF may settle on orbital occupations a few µhartree apart from one run to another.
pub fn atom_energy_hartree(element: Element) -> Option<f64> {
    match element {
        Element::H => Some(-0.499_619_347_700),
        Element::O => Some(-75.004_910_498_196),
        Element::Si => Some(-289.226_576_959_662),
        Element::Ge => Some(-2_076.640_925_470_334),
        Element::He => None,
    }
}

// ---- H2: PySCF RKS/PBE/cc-pVTZ (oracle/calibrate_pbe.py) ----

/// Minimum energy of H₂ (hartree).
pub const H2_ENERGY_HARTREE: f64 = -1.166_148_147_750;
/// Bond length at the minimum (Å); experiment: 0.7414 Å (Huber and Herzberg 1979, as in NIST CCCBDB
/// and the NIST Chemistry WebBook).
pub const H2_R_E_ANG: f64 = 0.750_848_697;
/// Morse range parameter (1/Å), from the curvature at the minimum: k = 2 D a².
pub const H2_MORSE_A_PER_ANG: f64 = 1.947_119_379;
/// PBE HOMO-LUMO gap at the minimum (eV).
pub const H2_GAP_EV: f64 = 11.442_948;

/// Binding energy of H₂ relative to two free atoms (hartree): 0.1669 Eh = 4.54 eV, as Perdew,
/// Burke and Ernzerhof (Phys. Rev. Lett. 77, 3865 (1996), Table I) give for PBE: 104.6 kcal/mol
/// (the table as transcribed in ASE's `ase/data/g2_1_ref.py`: H₂ 104.6, H₂O 234.2 kcal/mol).
pub fn h2_binding_hartree() -> f64 {
    2.0 * atom_energy_hartree(Element::H).unwrap_or(0.0) - H2_ENERGY_HARTREE
}

// ---- H2O: PySCF RKS/PBE/cc-pVTZ (oracle/calibrate_pbe.py) ----

/// Minimum energy of H₂O (hartree).
pub const H2O_ENERGY_HARTREE: f64 = -76.373_101_220_335;
/// O-H bond length at the minimum (Å); experiment: 0.9578 Å (NIST CCCBDB, after Hoy and Bunker 1979).
pub const H2O_R_E_ANG: f64 = 0.969_721_258;
/// H-O-H angle at the minimum (degrees); experiment: 104.48° (NIST CCCBDB, after Hoy and Bunker 1979).
pub const H2O_THETA_E_DEG: f64 = 103.529_610_520;
/// Morse range parameter of one O-H bond (1/Å), from the curvature when one bond is stretched.
pub const H2O_MORSE_A_PER_ANG: f64 = 2.212_626_900;
/// Bending force constant (hartree/rad²): E = ½ k (θ − θₑ)².
pub const H2O_K_THETA_HARTREE: f64 = 0.157_281_982_108;
/// Stretch-stretch coupling (hartree/Å²): E += k Δr₁ Δr₂ (−0.094 mdyn/Å; valence force fields
/// of water have about −0.1).
pub const H2O_K_RR_HARTREE_PER_ANG2: f64 = -0.021_453_822_274;
/// Stretch-bend coupling (hartree/(Å·rad)): E += k (Δr₁ + Δr₂) Δθ.
pub const H2O_K_R_THETA_HARTREE_PER_ANG_RAD: f64 = 0.060_438_361_586;
/// PBE HOMO-LUMO gap at the minimum (eV).
pub const H2O_GAP_EV: f64 = 6.924_069;

/// Depth of one O-H Morse bond (hartree): half the PBE atomization energy, 0.369 Eh = 231.5
/// kcal/mol in this basis (PBE paper, Table I: 234.2 kcal/mol near the basis-set limit).
pub fn h2o_bond_depth_hartree() -> f64 {
    let atoms =
        atom_energy_hartree(Element::O).unwrap_or(0.0) + 2.0 * atom_energy_hartree(Element::H).unwrap_or(0.0);
    (atoms - H2O_ENERGY_HARTREE) / 2.0
}

/// Published PBE and experimental data of a diamond-structure crystal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrystalReference {
    /// PBE equilibrium lattice constant (Å).
    pub lattice_constant_pbe_ang: f64,
    /// PBE cohesive energy per atom (eV), relative to spin-polarised free atoms.
    pub cohesive_energy_pbe_ev: f64,
    /// PBE (Kohn-Sham) band gap at the PBE lattice constant (eV).
    pub band_gap_pbe_ev: f64,
    /// Experimental band gap at 300 K (eV).
    pub band_gap_experiment_ev: f64,
    /// Experimental lattice constant at 300 K (Å).
    pub lattice_constant_experiment_ang: f64,
}

/// Reference data of the crystals.
///
/// - PBE lattice constants and cohesive energies: Harl, Schimka and Kresse, Phys. Rev. B 81,
///   115126 (2010), PAW/VASP, as tabulated in GPAW's `HarlSchimkaKresseBulkCollection`: Si
///   5.466 Å and 4.55 eV, Ge 5.765 Å and 3.71 eV (experiment in the same data: 4.68 and
///   3.92 eV). The Materials Project's PBE relaxation of Si (mp-149) has 5.469 Å.
/// - PBE band gaps: Si 0.61 eV, indirect: Materials Project mp-149 (PBE, VASP; database build of
///   2022-10-05): 0.6105 eV, valence-band top at Γ, conduction-band minimum on Γ→X at about 0.83
///   of the way to X, direct gap 2.556 eV. Ge: no gap; pure functionals make Ge a metal (Heyd,
///   Peralta, Scuseria and Martin, J. Chem. Phys. 123, 174101 (2005), abstract).
/// - Experiment at 300 K: Ioffe Institute NSM archive (after Levinshtein, Rumyantsev and Shur,
///   *Handbook Series on Semiconductor Parameters* vol. 1 (1996)): gaps 1.12 eV (Si) and 0.66 eV
///   (Ge); lattice constants 5.431 and 5.658 Å (read in the copies the README's "Parameter
///   sources" table names).
pub fn crystal_reference(element: Element) -> Option<CrystalReference> {
    match element {
        Element::Si => Some(CrystalReference {
            lattice_constant_pbe_ang: 5.466,
            cohesive_energy_pbe_ev: 4.55,
            band_gap_pbe_ev: 0.61,
            band_gap_experiment_ev: 1.12,
            lattice_constant_experiment_ang: 5.431,
        }),
        Element::Ge => Some(CrystalReference {
            lattice_constant_pbe_ang: 5.765,
            cohesive_energy_pbe_ev: 3.71,
            band_gap_pbe_ev: 0.0,
            band_gap_experiment_ev: 0.66,
            lattice_constant_experiment_ang: 5.658,
        }),
        _ => None,
    }
}

/// Stillinger-Weber parameters of one element, as published.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StillingerWeber {
    /// Energy scale ε (eV).
    pub epsilon_ev: f64,
    /// Length scale σ (Å).
    pub sigma_ang: f64,
    /// Three-body strength λ.
    pub lambda: f64,
}

/// The parameters shared by Si and Ge (Stillinger and Weber, Phys. Rev. B 31, 5262 (1985)):
/// φ₂(r) = εA(B(σ/r)^p − (σ/r)^q) exp(σ/(r − aσ)), with the three-body factor exp(γσ/(r − aσ)).
pub mod sw_shared {
    /// A.
    pub const A: f64 = 7.049_556_277;
    /// B.
    pub const B: f64 = 0.602_224_558_4;
    /// p.
    pub const P: i32 = 4;
    /// q (0: the attractive term is the exponential alone).
    pub const Q: i32 = 0;
    /// Cut-off in units of σ.
    pub const CUTOFF: f64 = 1.80;
    /// γ.
    pub const GAMMA: f64 = 1.20;
}

/// Published Stillinger-Weber parameters: Si from Stillinger and Weber (1985); Ge from Ding and
/// Andersen, Phys. Rev. B 34, 6987 (1986).
pub fn stillinger_weber_published(element: Element) -> Option<StillingerWeber> {
    match element {
        Element::Si => Some(StillingerWeber { epsilon_ev: 2.1683, sigma_ang: 2.0951, lambda: 21.0 }),
        Element::Ge => Some(StillingerWeber { epsilon_ev: 1.93, sigma_ang: 2.181, lambda: 31.0 }),
        _ => None,
    }
}

/// The lattice constant of the diamond minimum of a Stillinger-Weber potential: the pair term is
/// lowest (−ε) at r = 2^(1/6) σ, the three-body term vanishes at tetrahedral angles, and second
/// neighbours lie beyond the cut-off, so a = (4/√3) 2^(1/6) σ.
pub fn sw_diamond_lattice_constant(sigma_ang: f64) -> f64 {
    4.0 / 3f64.sqrt() * 2f64.powf(1.0 / 6.0) * sigma_ang
}

/// Stillinger-Weber parameters recalibrated to PBE: ε = E_coh/2 (the diamond structure binds by
/// 2ε per atom) and σ scaled by a_PBE / a_SW, λ unchanged.
pub fn stillinger_weber_pbe(element: Element) -> Option<StillingerWeber> {
    let published = stillinger_weber_published(element)?;
    let reference = crystal_reference(element)?;
    let a_sw = sw_diamond_lattice_constant(published.sigma_ang);
    Some(StillingerWeber {
        epsilon_ev: reference.cohesive_energy_pbe_ev / 2.0,
        sigma_ang: published.sigma_ang * reference.lattice_constant_pbe_ang / a_sw,
        lambda: published.lambda,
    })
}

/// sp3s* tight-binding parameters of one element in the notation of Vogl, Hjalmarson and Dow,
/// J. Phys. Chem. Solids 44, 365 (1983), Table I (eV), valid at the experimental bond length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sp3sStar {
    /// On-site s energy.
    pub e_s: f64,
    /// On-site p energy.
    pub e_p: f64,
    /// On-site s* energy.
    pub e_s_star: f64,
    /// V(s,s) = 4 V_ssσ.
    pub v_ss: f64,
    /// V(x,x) = (4/3)(V_ppσ + 2V_ppπ).
    pub v_xx: f64,
    /// V(x,y) = (4/3)(V_ppσ − V_ppπ).
    pub v_xy: f64,
    /// V(sa,pc) = (4/√3) V_spσ.
    pub v_sp: f64,
    /// V(s*a,pc) = (4/√3) V_s*pσ.
    pub v_s_star_p: f64,
    /// The bond length the parameters belong to (Å): √3/4 of the experimental lattice constant.
    pub bond_length_ang: f64,
}

/// The sp3s* parameters of Si and Ge.
pub fn sp3s_star(element: Element) -> Option<Sp3sStar> {
    let d = |a: f64| a * 3f64.sqrt() / 4.0;
    match element {
        Element::Si => Some(Sp3sStar {
            e_s: -4.2000,
            e_p: 1.7150,
            e_s_star: 6.6850,
            v_ss: -8.3000,
            v_xx: 1.7150,
            v_xy: 4.5750,
            v_sp: 5.7292,
            v_s_star_p: 5.3749,
            bond_length_ang: d(5.431),
        }),
        Element::Ge => Some(Sp3sStar {
            e_s: -5.8800,
            e_p: 1.6100,
            e_s_star: 6.3900,
            v_ss: -6.7800,
            v_xx: 1.6100,
            v_xy: 4.9000,
            v_sp: 5.4649,
            v_s_star_p: 5.2191,
            bond_length_ang: d(5.658),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::HARTREE_EV;

    #[test]
    fn the_h2_binding_energy_is_the_published_pbe_value() {
        // PBE paper, Table I: 104.6 kcal/mol; 1 kcal/mol = 0.0433641 eV.
        let ev = h2_binding_hartree() * HARTREE_EV;
        assert!((ev - 104.6 * 0.043_364_1).abs() < 0.02, "{ev}");
    }

    #[test]
    fn the_water_atomization_energy_is_near_the_published_pbe_value() {
        let kcal = 2.0 * h2o_bond_depth_hartree() * HARTREE_EV / 0.043_364_1;
        assert!((kcal - 234.2).abs() < 4.0, "{kcal}");
    }

    #[test]
    fn the_published_sw_silicon_minimum_is_at_the_experimental_lattice_constant() {
        let sw = stillinger_weber_published(Element::Si).unwrap();
        assert!((sw_diamond_lattice_constant(sw.sigma_ang) - 5.431).abs() < 0.001);
        let ge = stillinger_weber_published(Element::Ge).unwrap();
        assert!((sw_diamond_lattice_constant(ge.sigma_ang) - 5.654).abs() < 0.002);
    }

    #[test]
    fn pbe_recalibration_moves_the_minimum_to_the_pbe_lattice_constant() {
        for element in [Element::Si, Element::Ge] {
            let sw = stillinger_weber_pbe(element).unwrap();
            let reference = crystal_reference(element).unwrap();
            assert!(
                (sw_diamond_lattice_constant(sw.sigma_ang) - reference.lattice_constant_pbe_ang).abs()
                    < 1e-12
            );
        }
    }
}
