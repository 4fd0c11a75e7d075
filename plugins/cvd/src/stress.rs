//! Film stress and the wafer curvature it causes.
//!
//! The stress of a film measured at room temperature is its intrinsic (growth) stress plus the
//! thermal-mismatch stress built up on cooling from the deposition temperature, for an equibiaxial
//! film on a much thicker substrate:
//!
//! ```text
//! σ_th = E_f / (1 − ν_f) · (α_f − α_s) · (T_dep − T_room)     (positive = tensile)
//! ```
//!
//! A film that expands more than silicon (W, TiN) shrinks more on cooling and ends tensile; one that
//! expands less (SiO2) ends compressive, which is why thermal oxide is compressive. The wafer bends
//! under the film's force per unit width `σ t_f`; for films much thinner than the wafer, Stoney's
//! equation (Stoney, Proc. R. Soc. Lond. A 82, 172 (1909), in its biaxial form, Freund & Suresh,
//! *Thin Film Materials* (2003), ch. 2) gives the curvature, and stresses of stacked films add:
//!
//! ```text
//! κ = 6 Σ σ_i t_i / (M_s t_s²),   M_s = E_s / (1 − ν_s) = 180.5 GPa for (100) Si
//! R = 1/κ,   bow = κ D² / 8   (centre deflection over a wafer of diameter D)
//! ```
//!
//! Positive curvature is concave on the film side (a tensile film). Stoney's approximation is
//! within 1 % of the exact bilayer solution while `t_f / t_s` stays below about 10⁻³ for stiff films
//! and degrades as the film thickens; [`bilayer_curvature_per_m`] gives the exact (Timoshenko)
//! curvature that the tests use to check that limit. The strain energy stored per unit area of a
//! film, `G = (1 − ν_f) σ² t_f / E_f`, is the energy release rate available to drive delamination
//! (Hutchinson & Suo, Adv. Appl. Mech. 29, 63 (1992)); it is reported with adhesion warnings.

use serde::Serialize;

/// Thermal-mismatch stress on cooling from `deposition_c` to `room_c`, Pa.
pub fn thermal_mismatch_stress_pa(
    film_youngs_modulus_pa: f64,
    film_poisson_ratio: f64,
    film_expansion_per_k: f64,
    substrate_expansion_per_k: f64,
    deposition_c: f64,
    room_c: f64,
) -> f64 {
    film_youngs_modulus_pa / (1.0 - film_poisson_ratio)
        * (film_expansion_per_k - substrate_expansion_per_k)
        * (deposition_c - room_c)
}

/// Stoney curvature (1/m) of a substrate of biaxial modulus `substrate_biaxial_modulus_pa` and
/// thickness `substrate_thickness_m` under films given as `(stress Pa, thickness m)`.
pub fn stoney_curvature_per_m(
    films: impl IntoIterator<Item = (f64, f64)>,
    substrate_biaxial_modulus_pa: f64,
    substrate_thickness_m: f64,
) -> f64 {
    let force_per_width: f64 = films.into_iter().map(|(stress, thickness)| stress * thickness).sum();
    6.0 * force_per_width / (substrate_biaxial_modulus_pa * substrate_thickness_m.powi(2))
}

/// Stoney's equation solved for the film stress: `σ = M_s t_s² κ / (6 t_f)`, Pa.
pub fn stoney_stress_pa(
    curvature_per_m: f64,
    film_thickness_m: f64,
    substrate_biaxial_modulus_pa: f64,
    substrate_thickness_m: f64,
) -> f64 {
    substrate_biaxial_modulus_pa * substrate_thickness_m.powi(2) * curvature_per_m / (6.0 * film_thickness_m)
}

/// Centre deflection (m) of a wafer of `diameter_m` bent to `curvature_per_m`: `κ D² / 8`.
pub fn bow_m(curvature_per_m: f64, diameter_m: f64) -> f64 {
    curvature_per_m * diameter_m.powi(2) / 8.0
}

/// Exact curvature (1/m) of a film/substrate bilayer with a biaxial misfit that, in the thin-film
/// limit, would stress the film at `film_stress_pa` (Timoshenko, J. Opt. Soc. Am. 11, 233 (1925),
/// with biaxial moduli; Freund & Suresh (2003), ch. 2). With `m = t_f/t_s`, `n = M_f/M_s`:
/// `κ = 6 ε m n (1 + m) / (t_s (1 + 4mn + 6m²n + 4m³n + m⁴n²))`, where `ε = σ / M_f` is the misfit
/// strain. Tends to Stoney's curvature as `m → 0`.
pub fn bilayer_curvature_per_m(
    film_stress_pa: f64,
    film_thickness_m: f64,
    film_biaxial_modulus_pa: f64,
    substrate_biaxial_modulus_pa: f64,
    substrate_thickness_m: f64,
) -> f64 {
    let m = film_thickness_m / substrate_thickness_m;
    let n = film_biaxial_modulus_pa / substrate_biaxial_modulus_pa;
    let misfit = film_stress_pa / film_biaxial_modulus_pa;
    6.0 * misfit * m * n * (1.0 + m)
        / (substrate_thickness_m
            * (1.0 + 4.0 * m * n + 6.0 * m * m * n + 4.0 * m.powi(3) * n + m.powi(4) * n * n))
}

/// Elastic strain energy per unit area of an equibiaxially stressed film, J/m²:
/// `G = (1 − ν) σ² t / E`, the energy release rate for delamination.
pub fn strain_energy_release_rate_j_m2(
    stress_pa: f64,
    thickness_m: f64,
    youngs_modulus_pa: f64,
    poisson: f64,
) -> f64 {
    (1.0 - poisson) * stress_pa.powi(2) * thickness_m / youngs_modulus_pa
}

/// The wafer's shape under a stack of films.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WaferShape {
    /// Σ σ_i t_i, N/m.
    pub stress_thickness_n_m: f64,
    /// κ, 1/m (positive: concave on the film side).
    pub curvature_per_m: f64,
    /// 1/κ, m (`None` for a flat wafer).
    pub radius_of_curvature_m: Option<f64>,
    /// Centre deflection, µm.
    pub bow_um: f64,
    /// Total film thickness over substrate thickness; Stoney holds while it is small.
    pub film_to_substrate_ratio: f64,
}

/// The shape of a wafer (`substrate_thickness_m`, `diameter_m`, biaxial modulus) under films given
/// as `(stress Pa, thickness m)`.
pub fn wafer_shape(
    films: &[(f64, f64)],
    substrate_biaxial_modulus_pa: f64,
    substrate_thickness_m: f64,
    diameter_m: f64,
) -> WaferShape {
    let curvature =
        stoney_curvature_per_m(films.iter().copied(), substrate_biaxial_modulus_pa, substrate_thickness_m);
    let total_thickness: f64 = films.iter().map(|(_, t)| t).sum();
    WaferShape {
        stress_thickness_n_m: films.iter().map(|(s, t)| s * t).sum(),
        curvature_per_m: curvature,
        radius_of_curvature_m: (curvature != 0.0).then(|| 1.0 / curvature),
        bow_um: bow_m(curvature, diameter_m) * 1e6,
        film_to_substrate_ratio: total_thickness / substrate_thickness_m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M_SI: f64 = 180.5e9;

    #[test]
    fn stoney_matches_its_closed_form_and_inverts() {
        // 1 GPa × 1 µm on a 725 µm wafer: κ = 6 · 1000 N/m / (180.5 GPa · (725 µm)²).
        let kappa = stoney_curvature_per_m([(1e9, 1e-6)], M_SI, 725e-6);
        let expected = 6.0 * 1e9 * 1e-6 / (M_SI * 725e-6 * 725e-6);
        assert!((kappa / expected - 1.0).abs() < 1e-14);
        assert!((kappa - 0.063_24).abs() < 1e-4, "{kappa}");
        let sigma = stoney_stress_pa(kappa, 1e-6, M_SI, 725e-6);
        assert!((sigma / 1e9 - 1.0).abs() < 1e-12);
        // Bow over 200 mm: κ D²/8 = 316 µm.
        assert!((bow_m(kappa, 0.2) * 1e6 - 316.2).abs() < 0.1);
    }

    #[test]
    fn stoney_is_the_thin_film_limit_of_the_exact_bilayer() {
        let m_film = 450e9 / 0.75;
        for (ratio, tolerance) in [(1e-4, 2e-3), (1e-3, 2e-2)] {
            let t_f = 725e-6 * ratio;
            let stoney = stoney_curvature_per_m([(1e9, t_f)], M_SI, 725e-6);
            let exact = bilayer_curvature_per_m(1e9, t_f, m_film, M_SI, 725e-6);
            assert!((stoney / exact - 1.0).abs() < tolerance, "ratio {ratio}: {stoney} vs {exact}");
        }
        // At a tenth of the substrate the approximation is off by tens of per cent.
        let thick = stoney_curvature_per_m([(1e9, 72.5e-6)], M_SI, 725e-6)
            / bilayer_curvature_per_m(1e9, 72.5e-6, m_film, M_SI, 725e-6);
        assert!(thick > 1.3, "{thick}");
    }

    #[test]
    fn thermal_mismatch_sign_follows_expansion() {
        // SiO2 (α 0.5 ppm/K) on Si after 700 °C: compressive; W (4.5 ppm/K): tensile.
        let oxide = thermal_mismatch_stress_pa(72e9, 0.17, 0.5e-6, 2.6e-6, 700.0, 25.0);
        assert!((oxide / 1e6 + 123.0).abs() < 1.0, "{}", oxide / 1e6);
        let tungsten = thermal_mismatch_stress_pa(411e9, 0.28, 4.5e-6, 2.6e-6, 400.0, 25.0);
        assert!(tungsten > 0.0);
        assert_eq!(thermal_mismatch_stress_pa(169e9, 0.22, 2.6e-6, 2.6e-6, 620.0, 25.0), 0.0);
    }

    #[test]
    fn opposite_stresses_cancel_in_a_stack() {
        let shape = wafer_shape(&[(1e9, 1e-7), (-5e8, 2e-7)], M_SI, 725e-6, 0.2);
        assert!(shape.curvature_per_m.abs() < 1e-12);
    }
}
