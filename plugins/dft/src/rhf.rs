//! Restricted Hartree-Fock in the STO-3G basis for molecules of hydrogen and helium: a real SCF,
//! following Szabo and Ostlund, *Modern Quantum Chemistry* (Dover, 1996), chapter 3.
//!
//! **Basis.** Each atom carries one 1s function, a contraction of three Gaussians fitted to a
//! Slater orbital of exponent ζ (Hehre, Stewart and Pople, J. Chem. Phys. 51, 2657 (1969)):
//! exponents α_k ζ² with α = (2.227660584, 0.405771156, 0.109817510) and contraction
//! coefficients (0.15432897, 0.53532814, 0.44463454) for normalised primitives. The standard
//! molecular exponents are ζ_H = 1.24 and ζ_He = 1.69, as in PySCF's and the Basis Set
//! Exchange's STO-3G; Szabo and Ostlund take ζ_He = 2.0925 for HeH⁺, and the input may do the same.
//! The contracted function is renormalised to one, as PySCF does.
//!
//! **Integrals** over s-type Gaussians (Szabo and Ostlund, Appendix A), with p = α + β,
//! P = (αA + βB)/p and K = exp(−αβ/p |A − B|²):
//! - overlap (A|B) = (π/p)^{3/2} K;
//! - kinetic (A|−½∇²|B) = αβ/p (3 − 2αβ/p |A − B|²) (π/p)^{3/2} K;
//! - nuclear attraction (A|−Z_C/r_C|B) = −(2π/p) Z_C K F₀(p |P − C|²);
//! - electron repulsion (AB|CD) = 2π^{5/2} / (pq √(p + q)) K_AB K_CD F₀(pq/(p + q) |P − Q|²);
//! - with the Boys function F₀(t) = ½ √(π/t) erf(√t), F₀(0) = 1.
//!
//! **SCF.** Symmetric orthogonalisation X = S^{−1/2}; the first density from the core
//! Hamiltonian (its energy is the starting point, PySCF's "init E", not an iteration); then
//! F = H + G(P), E = ½ Σ P_μν (H_μν + F_μν) + V_nn, F' = XᵀFX diagonalised, C = XC',
//! P = 2 Σ_occ C Cᵀ. Each iteration reports E, ΔE and the RMS change of P; converged
//! when |ΔE| is below the tolerance and the RMS change below its square root (PySCF's rule for
//! `conv_tol_grad`). The new density may be damped: P ← βP_new + (1 − β)P_old.
//!
//! **Forces** are central finite differences of the converged energy (h = 10⁻⁴ bohr), which
//! agree with analytic gradients to about 10⁻⁸ hartree/bohr.

use crate::linalg::{Matrix, symmetric_eigen};
use crate::structure::{Element, Vec3, norm, sub};

/// STO-3G exponents for ζ = 1 (Hehre, Stewart and Pople 1969).
const STO3G_EXPONENTS: [f64; 3] = [2.227_660_584, 0.405_771_156, 0.109_817_510];
/// STO-3G contraction coefficients for normalised primitives.
const STO3G_COEFFICIENTS: [f64; 3] = [0.154_328_97, 0.535_328_14, 0.444_634_54];

/// The standard STO-3G Slater exponent of an element (H 1.24, He 1.69), if it has one here.
pub fn standard_zeta(element: Element) -> Option<f64> {
    match element {
        Element::H => Some(1.24),
        Element::He => Some(1.69),
        _ => None,
    }
}

/// An atom of the molecule: element, position in bohr and the Slater exponent of its 1s function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Atom {
    /// H or He.
    pub element: Element,
    /// Position (bohr).
    pub position: Vec3,
    /// ζ of the STO-3G 1s function.
    pub zeta: f64,
}

/// A contracted 1s function.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Contracted {
    center: Vec3,
    exponents: [f64; 3],
    /// Coefficients including the primitives' normalisation and the contraction's.
    coefficients: [f64; 3],
}

fn contracted(atom: &Atom) -> Contracted {
    let zeta2 = atom.zeta * atom.zeta;
    let exponents = STO3G_EXPONENTS.map(|a| a * zeta2);
    let mut coefficients = [0.0; 3];
    for k in 0..3 {
        coefficients[k] = STO3G_COEFFICIENTS[k] * (2.0 * exponents[k] / std::f64::consts::PI).powf(0.75);
    }
    // Renormalise: ⟨φ|φ⟩ = Σ c_k c_l (π/(α_k + α_l))^{3/2}.
    let mut self_overlap = 0.0;
    for k in 0..3 {
        for l in 0..3 {
            self_overlap += coefficients[k]
                * coefficients[l]
                * (std::f64::consts::PI / (exponents[k] + exponents[l])).powf(1.5);
        }
    }
    let scale = 1.0 / self_overlap.sqrt();
    Contracted { center: atom.position, exponents, coefficients: coefficients.map(|c| c * scale) }
}

/// The Boys function F₀(t) = ∫₀¹ exp(−t s²) ds = ½ √(π/t) erf(√t), to about 10⁻¹⁵.
pub fn boys_f0(t: f64) -> f64 {
    if t < 1e-12 {
        return 1.0 - t / 3.0;
    }
    if t > 45.0 {
        // erf(√t) = 1 to within 10⁻²⁰.
        return 0.5 * (std::f64::consts::PI / t).sqrt();
    }
    // F₀(t) = e^{−t} Σ_k (2t)^k / (2k+1)!!: positive terms, no cancellation.
    let (mut term, mut sum, mut k) = (1.0, 1.0, 0.0);
    while term > 1e-17 * sum {
        k += 1.0;
        term *= 2.0 * t / (2.0 * k + 1.0);
        sum += term;
    }
    (-t).exp() * sum
}

fn distance2(a: Vec3, b: Vec3) -> f64 {
    let d = sub(a, b);
    d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
}

fn weighted_center(a: f64, pa: Vec3, b: f64, pb: Vec3) -> Vec3 {
    let p = a + b;
    [(a * pa[0] + b * pb[0]) / p, (a * pa[1] + b * pb[1]) / p, (a * pa[2] + b * pb[2]) / p]
}

/// One-electron integrals: overlap, kinetic and nuclear attraction matrices.
fn one_electron(basis: &[Contracted], atoms: &[Atom]) -> (Matrix, Matrix, Matrix) {
    let n = basis.len();
    let (mut s, mut t, mut v) = (Matrix::zeros(n), Matrix::zeros(n), Matrix::zeros(n));
    let pi = std::f64::consts::PI;
    for mu in 0..n {
        for nu in 0..n {
            let (a, b) = (&basis[mu], &basis[nu]);
            let ab2 = distance2(a.center, b.center);
            for k in 0..3 {
                for l in 0..3 {
                    let (alpha, beta) = (a.exponents[k], b.exponents[l]);
                    let c = a.coefficients[k] * b.coefficients[l];
                    let p = alpha + beta;
                    let reduced = alpha * beta / p;
                    let prefactor = (-reduced * ab2).exp();
                    let overlap = (pi / p).powf(1.5) * prefactor;
                    s[(mu, nu)] += c * overlap;
                    t[(mu, nu)] += c * reduced * (3.0 - 2.0 * reduced * ab2) * overlap;
                    let center = weighted_center(alpha, a.center, beta, b.center);
                    for atom in atoms {
                        let z = atom.element.atomic_number() as f64;
                        v[(mu, nu)] +=
                            c * -2.0 * pi / p * z * prefactor * boys_f0(p * distance2(center, atom.position));
                    }
                }
            }
        }
    }
    (s, t, v)
}

/// Two-electron integrals (μν|λσ), all n⁴ of them (n is small), filled using the 8-fold symmetry.
fn two_electron(basis: &[Contracted]) -> Vec<f64> {
    let n = basis.len();
    let mut eri = vec![0.0; n * n * n * n];
    let index = |i: usize, j: usize, k: usize, l: usize| ((i * n + j) * n + k) * n + l;
    let pi = std::f64::consts::PI;
    for i in 0..n {
        for j in 0..=i {
            for k in 0..n {
                for l in 0..=k {
                    if i * (i + 1) / 2 + j < k * (k + 1) / 2 + l {
                        continue;
                    }
                    let (a, b, c, d) = (&basis[i], &basis[j], &basis[k], &basis[l]);
                    let (ab2, cd2) = (distance2(a.center, b.center), distance2(c.center, d.center));
                    let mut value = 0.0;
                    for pa in 0..3 {
                        for pb in 0..3 {
                            let (alpha, beta) = (a.exponents[pa], b.exponents[pb]);
                            let p = alpha + beta;
                            let big_p = weighted_center(alpha, a.center, beta, b.center);
                            let kab = (-alpha * beta / p * ab2).exp();
                            let cab = a.coefficients[pa] * b.coefficients[pb];
                            for pc in 0..3 {
                                for pd in 0..3 {
                                    let (gamma, delta) = (c.exponents[pc], d.exponents[pd]);
                                    let q = gamma + delta;
                                    let big_q = weighted_center(gamma, c.center, delta, d.center);
                                    let kcd = (-gamma * delta / q * cd2).exp();
                                    let ccd = c.coefficients[pc] * d.coefficients[pd];
                                    value += cab * ccd * 2.0 * pi.powf(2.5) / (p * q * (p + q).sqrt())
                                        * kab
                                        * kcd
                                        * boys_f0(p * q / (p + q) * distance2(big_p, big_q));
                                }
                            }
                        }
                    }
                    for (x, y, z, w) in [
                        (i, j, k, l),
                        (j, i, k, l),
                        (i, j, l, k),
                        (j, i, l, k),
                        (k, l, i, j),
                        (l, k, i, j),
                        (k, l, j, i),
                        (l, k, j, i),
                    ] {
                        eri[index(x, y, z, w)] = value;
                    }
                }
            }
        }
    }
    eri
}

/// The nuclear repulsion energy Σ_{A<B} Z_A Z_B / R_AB (hartree).
pub fn nuclear_repulsion(atoms: &[Atom]) -> f64 {
    let mut e = 0.0;
    for a in 0..atoms.len() {
        for b in 0..a {
            let za = atoms[a].element.atomic_number() as f64;
            let zb = atoms[b].element.atomic_number() as f64;
            e += za * zb / norm(sub(atoms[a].position, atoms[b].position));
        }
    }
    e
}

/// What the SCF loop is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RhfSettings {
    /// Converged when |ΔE| falls below this (hartree) and the RMS density change below its root.
    pub tolerance_hartree: f64,
    /// Give up after this many iterations.
    pub max_iterations: u32,
    /// Fraction of the new density kept each iteration (1: plain Roothaan iterations).
    pub mixing_beta: f64,
}

/// One SCF iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RhfIteration {
    /// 1, 2, ...
    pub iteration: u32,
    /// Total energy of the density that built this iteration's Fock matrix (hartree).
    pub energy_hartree: f64,
    /// E_n − E_{n−1} (hartree); for the first iteration, relative to the energy of the
    /// core-Hamiltonian guess.
    pub delta_e_hartree: f64,
    /// RMS change of the density matrix produced by this iteration.
    pub density_rms_change: f64,
    /// True on the iteration that met both criteria.
    pub converged: bool,
}

/// A converged (or given-up) RHF calculation.
#[derive(Debug, Clone, PartialEq)]
pub struct RhfResult {
    /// E_elec + V_nn (hartree).
    pub total_energy_hartree: f64,
    /// ½ Σ P(H + F) (hartree).
    pub electronic_energy_hartree: f64,
    /// V_nn (hartree).
    pub nuclear_repulsion_hartree: f64,
    /// Orbital energies, ascending (hartree).
    pub orbital_energies_hartree: Vec<f64>,
    /// Molecular-orbital coefficients: `coefficients[μ][i]`, orbital i on basis function μ.
    pub coefficients: Vec<Vec<f64>>,
    /// Mulliken charge of each atom (e).
    pub mulliken_charges: Vec<f64>,
    /// Doubly occupied orbitals.
    pub occupied: usize,
    /// The iterations, in order.
    pub iterations: Vec<RhfIteration>,
    /// Whether the last iteration met the criteria.
    pub converged: bool,
}

/// Why an RHF calculation could not run or stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum RhfError<E> {
    /// An element without STO-3G parameters here.
    UnsupportedElement(&'static str),
    /// An odd number of electrons, or none.
    NotClosedShell(i64),
    /// The overlap matrix is (nearly) singular: two atoms (nearly) on top of each other.
    LinearDependence(f64),
    /// The SCF at a displaced geometry (for forces) did not converge.
    DisplacedNotConverged,
    /// The iteration callback asked to stop.
    Stopped(E),
}

/// Runs RHF for `atoms` with net `charge`, calling `on_iteration` after each iteration (which may
/// stop the run by returning an error).
pub fn rhf<E>(
    atoms: &[Atom],
    charge: i32,
    settings: &RhfSettings,
    on_iteration: &mut dyn FnMut(&RhfIteration) -> Result<(), E>,
) -> Result<RhfResult, RhfError<E>> {
    for atom in atoms {
        if standard_zeta(atom.element).is_none() {
            return Err(RhfError::UnsupportedElement(atom.element.symbol()));
        }
    }
    let electrons = atoms.iter().map(|a| a.element.atomic_number() as i64).sum::<i64>() - charge as i64;
    if electrons <= 0 || electrons % 2 != 0 {
        return Err(RhfError::NotClosedShell(electrons));
    }
    let occupied = (electrons / 2) as usize;
    let basis: Vec<Contracted> = atoms.iter().map(contracted).collect();
    let n = basis.len();
    if occupied > n {
        return Err(RhfError::NotClosedShell(electrons));
    }
    let (s, t, v) = one_electron(&basis, atoms);
    let eri = two_electron(&basis);
    let mut h = Matrix::zeros(n);
    for i in 0..n {
        for j in 0..n {
            h[(i, j)] = t[(i, j)] + v[(i, j)];
        }
    }
    // X = S^{-1/2} = U s^{-1/2} Uᵀ.
    let (s_values, u) = symmetric_eigen(&s);
    let smallest = s_values.first().copied().unwrap_or(1.0);
    if smallest < 1e-7 {
        return Err(RhfError::LinearDependence(smallest));
    }
    let mut x = Matrix::zeros(n);
    for i in 0..n {
        for j in 0..n {
            x[(i, j)] = (0..n).map(|k| u[(i, k)] * u[(j, k)] / s_values[k].sqrt()).sum();
        }
    }
    let v_nn = nuclear_repulsion(atoms);
    let diagonalise = |f: &Matrix| -> (Vec<f64>, Matrix) {
        let f_prime = x.transpose().mul(f).mul(&x);
        let (e, c_prime) = symmetric_eigen(&f_prime);
        (e, x.mul(&c_prime))
    };
    let density = |c: &Matrix| -> Matrix {
        let mut p = Matrix::zeros(n);
        for i in 0..n {
            for j in 0..n {
                p[(i, j)] = 2.0 * (0..occupied).map(|a| c[(i, a)] * c[(j, a)]).sum::<f64>();
            }
        }
        p
    };
    let fock = |p: &Matrix| -> Matrix {
        let mut f = h.clone();
        for i in 0..n {
            for j in 0..n {
                let mut g = 0.0;
                for k in 0..n {
                    for l in 0..n {
                        let coulomb = eri[((i * n + j) * n + k) * n + l];
                        let exchange = eri[((i * n + l) * n + k) * n + j];
                        g += p[(k, l)] * (coulomb - 0.5 * exchange);
                    }
                }
                f[(i, j)] += g;
            }
        }
        f
    };

    let (_, c_core) = diagonalise(&h);
    let mut p = density(&c_core);
    let mut previous_energy = 0.0;
    let mut iterations = Vec::new();
    let mut converged = false;
    let (mut orbital_energies, mut c) = (Vec::new(), c_core);
    let mut electronic = 0.0;
    let tolerance_density = settings.tolerance_hartree.sqrt();
    // Step 0 evaluates the core-Hamiltonian guess (PySCF's "init E"); it is not an iteration.
    for iteration in 0..=settings.max_iterations {
        let f = fock(&p);
        electronic = 0.0;
        for i in 0..n {
            for j in 0..n {
                electronic += 0.5 * p[(i, j)] * (h[(i, j)] + f[(i, j)]);
            }
        }
        let energy = electronic + v_nn;
        let (e, c_new) = diagonalise(&f);
        let p_out = density(&c_new);
        let mut change = 0.0;
        let mut p_next = Matrix::zeros(n);
        for i in 0..n {
            for j in 0..n {
                let mixed = settings.mixing_beta * p_out[(i, j)] + (1.0 - settings.mixing_beta) * p[(i, j)];
                change += (mixed - p[(i, j)]).powi(2);
                p_next[(i, j)] = mixed;
            }
        }
        let rms = (change / (n * n) as f64).sqrt();
        if iteration == 0 {
            previous_energy = energy;
            (orbital_energies, c, p) = (e, c_new, p_next);
            continue;
        }
        let delta = energy - previous_energy;
        converged = delta.abs() < settings.tolerance_hartree && rms < tolerance_density;
        let record = RhfIteration {
            iteration,
            energy_hartree: energy,
            delta_e_hartree: delta,
            density_rms_change: rms,
            converged,
        };
        iterations.push(record);
        on_iteration(&record).map_err(RhfError::Stopped)?;
        previous_energy = energy;
        orbital_energies = e;
        c = c_new;
        if converged {
            break;
        }
        p = p_next;
    }
    // Mulliken populations: q_A = Z_A − Σ_{μ on A} (PS)_μμ (one function per atom).
    let ps = p.mul(&s);
    let mulliken_charges =
        atoms.iter().enumerate().map(|(a, atom)| atom.element.atomic_number() as f64 - ps[(a, a)]).collect();
    let coefficients = (0..n).map(|mu| (0..n).map(|i| c[(mu, i)]).collect()).collect();
    Ok(RhfResult {
        total_energy_hartree: electronic + v_nn,
        electronic_energy_hartree: electronic,
        nuclear_repulsion_hartree: v_nn,
        orbital_energies_hartree: orbital_energies,
        coefficients,
        mulliken_charges,
        occupied,
        iterations,
        converged,
    })
}

/// The converged energy alone, with tight settings (for finite differences).
fn tight_energy<E>(atoms: &[Atom], charge: i32) -> Result<f64, RhfError<E>> {
    let settings = RhfSettings { tolerance_hartree: 1e-12, max_iterations: 200, mixing_beta: 1.0 };
    let result = rhf(atoms, charge, &settings, &mut |_| Ok(()))?;
    if !result.converged {
        return Err(RhfError::DisplacedNotConverged);
    }
    Ok(result.total_energy_hartree)
}

/// Forces −∂E/∂R (hartree/bohr) on each atom, by central differences with h = 10⁻⁴ bohr. Calls
/// `on_atom(done, total)` after each atom, which may stop the computation.
pub fn forces<E>(
    atoms: &[Atom],
    charge: i32,
    on_atom: &mut dyn FnMut(usize, usize) -> Result<(), E>,
) -> Result<Vec<Vec3>, RhfError<E>> {
    let h = 1e-4;
    let mut out = vec![[0.0; 3]; atoms.len()];
    for (a, force) in out.iter_mut().enumerate() {
        for (axis, component) in force.iter_mut().enumerate() {
            let mut plus = atoms.to_vec();
            plus[a].position[axis] += h;
            let mut minus = atoms.to_vec();
            minus[a].position[axis] -= h;
            let ep = tight_energy(&plus, charge)?;
            let em = tight_energy(&minus, charge)?;
            *component = -(ep - em) / (2.0 * h);
        }
        on_atom(a + 1, atoms.len()).map_err(RhfError::Stopped)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(element: Element, z: f64) -> Atom {
        Atom { element, position: [0.0, 0.0, z], zeta: standard_zeta(element).unwrap() }
    }

    fn run(atoms: &[Atom], charge: i32) -> RhfResult {
        let settings = RhfSettings { tolerance_hartree: 1e-12, max_iterations: 100, mixing_beta: 1.0 };
        rhf(atoms, charge, &settings, &mut |_| Ok::<(), ()>(())).unwrap()
    }

    #[test]
    fn the_boys_function_matches_its_closed_form_and_limits() {
        assert_eq!(boys_f0(0.0), 1.0);
        // F₀(1) = ½ √π erf(1) = 0.746 824 132 812 427 (erf(1) = 0.842 700 792 949 715).
        assert!((boys_f0(1.0) - 0.746_824_132_812_427).abs() < 3e-15, "{}", boys_f0(1.0));
        // Continuity across the asymptotic switch: the series just below it is ½√(π/t).
        let t = 44.999_999;
        let (series, asymptote) = (boys_f0(t), 0.5 * (std::f64::consts::PI / t).sqrt());
        assert!((series - asymptote).abs() < 1e-15, "{series} {asymptote}");
        // Small t: 1 − t/3 + t²/10.
        assert!((boys_f0(1e-4) - (1.0 - 1e-4 / 3.0 + 1e-8 / 10.0)).abs() < 1e-13, "{}", boys_f0(1e-4));
    }

    #[test]
    fn the_h2_integrals_are_those_of_szabo_and_ostlund() {
        // H2 at R = 1.4 bohr, ζ = 1.24, the worked example of Szabo and Ostlund ch. 3, to four
        // digits; PySCF's int1e/int2e at the same geometry give S12 = 0.659318, T11 = 0.760032,
        // T12 = 0.236455, H11 = −1.120409, H12 = −0.958380, (11|11) = 0.774606,
        // (11|22) = 0.569676, (21|11) = 0.444108, (21|21) = 0.297029.
        let atoms = [atom(Element::H, 0.0), atom(Element::H, 1.4)];
        let basis: Vec<Contracted> = atoms.iter().map(contracted).collect();
        let (s, t, v) = one_electron(&basis, &atoms);
        let eri = two_electron(&basis);
        let g = |i: usize, j: usize, k: usize, l: usize| eri[((i * 2 + j) * 2 + k) * 2 + l];
        let close = |x: f64, y: f64| (x - y).abs() < 6e-5;
        assert!(close(s[(0, 1)], 0.6593), "{}", s[(0, 1)]);
        assert!(close(t[(0, 0)], 0.7600) && close(t[(0, 1)], 0.2365));
        // H_core: H11 = −1.1204, H12 = −0.9584.
        assert!(close(t[(0, 0)] + v[(0, 0)], -1.1204) && close(t[(0, 1)] + v[(0, 1)], -0.9584));
        assert!(close(g(0, 0, 0, 0), 0.7746) && close(g(0, 0, 1, 1), 0.5697));
        assert!(close(g(1, 0, 0, 0), 0.4441) && close(g(1, 0, 1, 0), 0.2970));
    }

    #[test]
    fn h2_at_1_4_bohr_has_the_textbook_energy_and_orbitals() {
        // Szabo and Ostlund ch. 3: E = −1.1167 hartree, ε₁ = −0.578, ε₂ = +0.670 (PySCF RHF/STO-3G:
        // −1.1167143, −0.578203, +0.670268).
        let r = run(&[atom(Element::H, 0.0), atom(Element::H, 1.4)], 0);
        assert!(r.converged);
        assert!((r.total_energy_hartree - -1.116_714).abs() < 2e-6, "{}", r.total_energy_hartree);
        assert!((r.orbital_energies_hartree[0] - -0.578).abs() < 1e-3);
        assert!((r.orbital_energies_hartree[1] - 0.670).abs() < 1e-3);
        assert!(r.mulliken_charges.iter().all(|q| q.abs() < 1e-12));
        // Symmetry fixes the orbitals: converged on the second iteration.
        assert!(r.iterations.len() <= 3, "{}", r.iterations.len());
    }

    #[test]
    fn heh_plus_with_szabo_and_ostlund_exponents_has_their_energy() {
        // Szabo and Ostlund, Appendix B (the output of their HeH⁺ program): 1.4632 bohr,
        // ζ_He = 2.0925, ζ_H = 1.24, electronic energy −4.227529, total −2.860662 hartree.
        let he = Atom { element: Element::He, position: [0.0; 3], zeta: 2.0925 };
        let h = Atom { element: Element::H, position: [0.0, 0.0, 1.4632], zeta: 1.24 };
        let r = run(&[he, h], 1);
        assert!((r.total_energy_hartree - -2.860_662).abs() < 5e-6, "{}", r.total_energy_hartree);
        assert!(r.iterations.len() > 3, "a heteronuclear molecule needs real iterations");
        // Mulliken: the charge sits mostly on H.
        assert!(r.mulliken_charges[1] > r.mulliken_charges[0]);
        assert!((r.mulliken_charges.iter().sum::<f64>() - 1.0).abs() < 1e-10);
    }

    #[test]
    fn iterations_are_reported_and_energies_settle() {
        let atoms = [atom(Element::He, 0.0), atom(Element::H, 1.4632)];
        let mut seen = Vec::new();
        let settings = RhfSettings { tolerance_hartree: 1e-10, max_iterations: 100, mixing_beta: 1.0 };
        let r = rhf(&atoms, 1, &settings, &mut |it| {
            seen.push(*it);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(seen, r.iterations);
        let last = seen.last().unwrap();
        assert!(last.converged && last.delta_e_hartree.abs() < 1e-10);
        // Damping slows convergence but reaches the same energy.
        let damped = RhfSettings { mixing_beta: 0.3, ..settings };
        let d = rhf(&atoms, 1, &damped, &mut |_| Ok::<(), ()>(())).unwrap();
        assert!(d.iterations.len() > r.iterations.len());
        assert!((d.total_energy_hartree - r.total_energy_hartree).abs() < 1e-8);
    }

    #[test]
    fn a_small_iteration_budget_ends_unconverged() {
        let atoms = [atom(Element::He, 0.0), atom(Element::H, 1.4632)];
        let settings = RhfSettings { tolerance_hartree: 1e-12, max_iterations: 2, mixing_beta: 1.0 };
        let r = rhf(&atoms, 1, &settings, &mut |_| Ok::<(), ()>(())).unwrap();
        assert!(!r.converged);
        assert_eq!(r.iterations.len(), 2);
    }

    #[test]
    fn forces_vanish_at_the_minimum_point_the_right_way_and_sum_to_zero() {
        // H2/STO-3G has its minimum at R = 1.346 bohr (PySCF RHF/STO-3G: 1.345919 bohr,
        // −1.1175059 hartree).
        let at = |r: f64| {
            forces(&[atom(Element::H, 0.0), atom(Element::H, r)], 0, &mut |_, _| Ok::<(), ()>(())).unwrap()
        };
        let stretched = at(1.6);
        assert!(stretched[1][2] < 0.0, "a stretched bond pulls back: {:?}", stretched[1]);
        assert!(at(1.2)[1][2] > 0.0);
        assert!(at(1.346)[1][2].abs() < 2e-3);
        for f in [stretched, at(1.2)] {
            let net: f64 = (0..3).map(|c| (f[0][c] + f[1][c]).abs()).sum();
            assert!(net < 1e-7, "{net}");
        }
    }

    #[test]
    fn open_shells_and_other_elements_are_refused() {
        let settings = RhfSettings { tolerance_hartree: 1e-10, max_iterations: 10, mixing_beta: 1.0 };
        let h3 = [atom(Element::H, 0.0), atom(Element::H, 1.4), atom(Element::H, 2.8)];
        assert_eq!(
            rhf(&h3, 0, &settings, &mut |_| Ok::<(), ()>(())).unwrap_err(),
            RhfError::NotClosedShell(3)
        );
        let o = [Atom { element: Element::O, position: [0.0; 3], zeta: 1.0 }];
        assert_eq!(
            rhf(&o, 0, &settings, &mut |_| Ok::<(), ()>(())).unwrap_err(),
            RhfError::UnsupportedElement("O")
        );
        let clash = [atom(Element::H, 0.0), atom(Element::H, 0.0)];
        assert!(matches!(
            rhf(&clash, 0, &settings, &mut |_| Ok::<(), ()>(())),
            Err(RhfError::LinearDependence(_))
        ));
    }
}
