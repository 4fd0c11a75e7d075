//! Atomic structures: the presets, custom cells, supercells, rattling, and the neighbour lists
//! the energy and band models walk.
//!
//! A structure is a list of atoms with Cartesian positions in ångström and, for a crystal, three
//! lattice vectors (the rows of `lattice`). A molecule has no lattice and sits in vacuum. The
//! presets use the PBE equilibrium geometries that the energy model is calibrated to (see
//! [`crate::calibration`]), so that a preset job reports the published PBE numbers and zero
//! forces; rattling or a custom cell moves away from them.

use crate::calibration;
use crate::rng::SplitMix64;

/// A 3-vector.
pub type Vec3 = [f64; 3];

/// The elements the plugin has parameters for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    /// Hydrogen.
    H,
    /// Helium.
    He,
    /// Oxygen.
    O,
    /// Silicon.
    Si,
    /// Germanium.
    Ge,
}

impl Element {
    /// All of them, in the order of [`Element::symbol`] listings.
    pub const ALL: [Element; 5] = [Element::H, Element::He, Element::O, Element::Si, Element::Ge];

    /// The chemical symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Element::H => "H",
            Element::He => "He",
            Element::O => "O",
            Element::Si => "Si",
            Element::Ge => "Ge",
        }
    }

    /// The element with this symbol.
    pub fn from_symbol(symbol: &str) -> Option<Element> {
        Element::ALL.into_iter().find(|e| e.symbol() == symbol)
    }

    /// The atomic number, which is also the number of electrons of the neutral atom.
    pub fn atomic_number(self) -> u32 {
        match self {
            Element::H => 1,
            Element::He => 2,
            Element::O => 8,
            Element::Si => 14,
            Element::Ge => 32,
        }
    }
}

/// An atomic structure: a molecule (`lattice` is `None`) or a periodic crystal.
#[derive(Debug, Clone, PartialEq)]
pub struct Structure {
    /// The lattice vectors as rows, in Å.
    pub lattice: Option<[Vec3; 3]>,
    /// The element of each atom.
    pub species: Vec<Element>,
    /// Cartesian positions in Å.
    pub positions: Vec<Vec3>,
    /// Net charge in units of e (molecules only; crystals are neutral).
    pub charge: i32,
}

/// One entry of a neighbour list: atom `j` (or one of its periodic images) seen from atom `i`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// The central atom.
    pub i: usize,
    /// The neighbour (an index into the cell; the image is implied by `vector`).
    pub j: usize,
    /// `r_j + R - r_i`, in Å.
    pub vector: Vec3,
    /// Its length, in Å.
    pub distance: f64,
    /// The lattice translation R of the image, in lattice-vector units.
    pub image: [i32; 3],
}

pub fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub fn cross(a: Vec3, b: Vec3) -> Vec3 {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

pub fn norm(a: Vec3) -> f64 {
    dot(a, a).sqrt()
}

pub fn add(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

pub fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

pub fn scale(a: Vec3, s: f64) -> Vec3 {
    [a[0] * s, a[1] * s, a[2] * s]
}

/// The diamond structure in its two-atom face-centred-cubic primitive cell, lattice constant `a`.
pub fn diamond(element: Element, a: f64) -> Structure {
    let h = a / 2.0;
    Structure {
        lattice: Some([[0.0, h, h], [h, 0.0, h], [h, h, 0.0]]),
        species: vec![element, element],
        positions: vec![[0.0, 0.0, 0.0], [a / 4.0, a / 4.0, a / 4.0]],
        charge: 0,
    }
}

/// A diatomic molecule along z, bond length `r` in Å, centred at the origin.
pub fn diatomic(a: Element, b: Element, r: f64, charge: i32) -> Structure {
    Structure {
        lattice: None,
        species: vec![a, b],
        positions: vec![[0.0, 0.0, -r / 2.0], [0.0, 0.0, r / 2.0]],
        charge,
    }
}

/// Water in the xy plane, O at the origin, bond length `r` (Å) and angle `theta_deg`.
pub fn water(r: f64, theta_deg: f64) -> Structure {
    let half = theta_deg.to_radians() / 2.0;
    Structure {
        lattice: None,
        species: vec![Element::O, Element::H, Element::H],
        positions: vec![
            [0.0, 0.0, 0.0],
            [r * half.sin(), r * half.cos(), 0.0],
            [-r * half.sin(), r * half.cos(), 0.0],
        ],
        charge: 0,
    }
}

/// The PBE water molecule the energy model is calibrated to.
pub fn water_pbe() -> Structure {
    water(calibration::H2O_R_E_ANG, calibration::H2O_THETA_E_DEG)
}

impl Structure {
    /// Number of atoms.
    pub fn len(&self) -> usize {
        self.species.len()
    }

    /// True for a structure without atoms.
    pub fn is_empty(&self) -> bool {
        self.species.is_empty()
    }

    /// True for a crystal.
    pub fn is_periodic(&self) -> bool {
        self.lattice.is_some()
    }

    /// The cell volume in Å³ (crystals).
    pub fn volume(&self) -> Option<f64> {
        self.lattice.map(|l| dot(l[0], cross(l[1], l[2])).abs())
    }

    /// The number of electrons (all-electron count, minus the charge).
    pub fn electrons(&self) -> i64 {
        self.species.iter().map(|e| e.atomic_number() as i64).sum::<i64>() - self.charge as i64
    }

    /// The formula in Hill order (alphabetical, as no element here is carbon), with the charge:
    /// `H2O`, `Si16`, `HHe+`.
    pub fn formula(&self) -> String {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for e in &self.species {
            match counts.iter_mut().find(|(s, _)| *s == e.symbol()) {
                Some((_, n)) => *n += 1,
                None => counts.push((e.symbol(), 1)),
            }
        }
        counts.sort_by(|a, b| a.0.cmp(b.0));
        let mut text: String =
            counts.iter().map(|(s, n)| if *n == 1 { s.to_string() } else { format!("{s}{n}") }).collect();
        match self.charge {
            0 => {}
            1 => text.push('+'),
            -1 => text.push('-'),
            q if q > 0 => text.push_str(&format!("{q}+")),
            q => text.push_str(&format!("{}-", -q)),
        }
        text
    }

    /// The reciprocal lattice vectors b_i (with the 2π), as rows, in 1/Å.
    pub fn reciprocal(&self) -> Option<[Vec3; 3]> {
        let l = self.lattice?;
        let v = dot(l[0], cross(l[1], l[2]));
        let f = 2.0 * std::f64::consts::PI / v;
        Some([scale(cross(l[1], l[2]), f), scale(cross(l[2], l[0]), f), scale(cross(l[0], l[1]), f)])
    }

    /// The cell repeated n₁×n₂×n₃ times (a crystal; a molecule is returned as it is).
    pub fn supercell(&self, n: [u32; 3]) -> Structure {
        let Some(l) = self.lattice else { return self.clone() };
        let mut species = Vec::new();
        let mut positions = Vec::new();
        for i in 0..n[0] {
            for j in 0..n[1] {
                for k in 0..n[2] {
                    let shift = add(add(scale(l[0], i as f64), scale(l[1], j as f64)), scale(l[2], k as f64));
                    for (e, p) in self.species.iter().zip(&self.positions) {
                        species.push(*e);
                        positions.push(add(*p, shift));
                    }
                }
            }
        }
        Structure {
            lattice: Some([scale(l[0], n[0] as f64), scale(l[1], n[1] as f64), scale(l[2], n[2] as f64)]),
            species,
            positions,
            charge: self.charge,
        }
    }

    /// Displaces every atom by a normal deviate of standard deviation `sigma` Å per Cartesian
    /// component (as ASE's `rattle`), then removes the mean displacement so that the centre of
    /// the structure stays put.
    pub fn rattle(&mut self, sigma: f64, rng: &mut SplitMix64) {
        if sigma == 0.0 || self.is_empty() {
            return;
        }
        let mut shifts: Vec<Vec3> = Vec::with_capacity(self.len());
        for _ in 0..self.len() {
            let mut d = [0.0; 3];
            for x in &mut d {
                // Box-Muller; 1 - u keeps the logarithm finite.
                let (u1, u2) = (1.0 - rng.uniform(), rng.uniform());
                *x = sigma * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            }
            shifts.push(d);
        }
        let mean = scale(shifts.iter().fold([0.0; 3], |acc, d| add(acc, *d)), 1.0 / self.len() as f64);
        for (p, d) in self.positions.iter_mut().zip(&shifts) {
            *p = add(*p, sub(*d, mean));
        }
    }

    /// Every (atom, neighbour image) pair closer than `cutoff` Å, both ways round; for a
    /// crystal, over all periodic images (enough of them for cells thinner than the cutoff).
    pub fn neighbors(&self, cutoff: f64) -> Vec<Neighbor> {
        let mut list = Vec::new();
        let images = self.image_range(cutoff);
        let l = self.lattice.unwrap_or([[0.0; 3]; 3]);
        for i in 0..self.len() {
            for j in 0..self.len() {
                for a in -images[0]..=images[0] {
                    for b in -images[1]..=images[1] {
                        for c in -images[2]..=images[2] {
                            if i == j && a == 0 && b == 0 && c == 0 {
                                continue;
                            }
                            let shift =
                                add(add(scale(l[0], a as f64), scale(l[1], b as f64)), scale(l[2], c as f64));
                            let vector = sub(add(self.positions[j], shift), self.positions[i]);
                            let distance = norm(vector);
                            if distance < cutoff {
                                list.push(Neighbor { i, j, vector, distance, image: [a, b, c] });
                            }
                        }
                    }
                }
            }
        }
        list
    }

    /// How many images along each lattice vector can lie within `cutoff` of an atom of the cell.
    fn image_range(&self, cutoff: f64) -> [i32; 3] {
        let Some(l) = self.lattice else { return [0; 3] };
        let volume = dot(l[0], cross(l[1], l[2])).abs();
        let mut range = [0; 3];
        for (axis, r) in range.iter_mut().enumerate() {
            // The spacing of lattice planes along this axis: V / |a_j × a_k|.
            let height = volume / norm(cross(l[(axis + 1) % 3], l[(axis + 2) % 3]));
            *r = (cutoff / height).ceil() as i32 + 1;
        }
        range
    }

    /// The shortest distance between two atoms (images included), and the pair.
    pub fn closest_pair(&self) -> Option<(usize, usize, f64)> {
        let reach = match self.lattice {
            Some(l) => l.iter().map(|v| norm(*v)).fold(0.0, f64::max) * 2.0,
            None => f64::INFINITY,
        };
        let cutoff = if reach.is_finite() { reach } else { 1e9 };
        self.neighbors(cutoff).into_iter().map(|n| (n.i, n.j, n.distance)).min_by(|a, b| a.2.total_cmp(&b.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diamond_has_four_nearest_neighbours_at_a_sqrt3_over_4() {
        let si = diamond(Element::Si, 5.431);
        let d = 5.431 * 3f64.sqrt() / 4.0;
        let list = si.neighbors(d * 1.1);
        assert_eq!(list.len(), 8, "4 neighbours for each of 2 atoms");
        assert!(list.iter().all(|n| (n.distance - d).abs() < 1e-12));
        assert!((si.volume().unwrap() - 5.431f64.powi(3) / 4.0).abs() < 1e-9);
        // Second neighbours: 12 at a/√2.
        let second = si.neighbors(5.431 / 2f64.sqrt() * 1.01).len() - 8;
        assert_eq!(second, 24);
    }

    #[test]
    fn a_supercell_multiplies_atoms_and_volume() {
        let si = diamond(Element::Si, 5.431).supercell([2, 3, 1]);
        assert_eq!(si.len(), 12);
        assert!((si.volume().unwrap() - 6.0 * 5.431f64.powi(3) / 4.0).abs() < 1e-8);
        assert_eq!(si.formula(), "Si12");
    }

    #[test]
    fn reciprocal_vectors_are_dual_to_the_lattice() {
        let si = diamond(Element::Si, 5.431);
        let (l, b) = (si.lattice.unwrap(), si.reciprocal().unwrap());
        for (i, a) in l.iter().enumerate() {
            for (j, g) in b.iter().enumerate() {
                let expected = if i == j { 2.0 * std::f64::consts::PI } else { 0.0 };
                assert!((dot(*a, *g) - expected).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn rattling_is_seeded_and_keeps_the_centre() {
        let mut a = diamond(Element::Si, 5.431).supercell([2, 2, 2]);
        let mut b = a.clone();
        let centre = |s: &Structure| s.positions.iter().fold([0.0; 3], |acc, p| add(acc, *p));
        let before = centre(&a);
        a.rattle(0.05, &mut SplitMix64::new(9, 0));
        b.rattle(0.05, &mut SplitMix64::new(9, 0));
        assert_eq!(a, b);
        let after = centre(&a);
        assert!(norm(sub(after, before)) < 1e-12);
    }

    #[test]
    fn formulas_and_electron_counts() {
        let w = water(0.97, 104.0);
        assert_eq!(w.formula(), "H2O");
        assert_eq!(w.electrons(), 10);
        let heh = diatomic(Element::He, Element::H, 0.77, 1);
        assert_eq!(heh.formula(), "HHe+");
        assert_eq!(heh.electrons(), 2);
    }
}
