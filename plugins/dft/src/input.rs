//! The task's input, and its validation into a [`JobSpec`]: every check that can be made before
//! any work, each failure naming its field.
//!
//! ```json
//! {"preset": "Si", "supercell": [2, 2, 2], "rattle_ang": 0.03, "seed": 7}
//! {"method": "rhf", "preset": "HeH+", "bond_length_bohr": 1.4632}
//! {"structure": {"lattice_ang": [[0, 2.73, 2.73], [2.73, 0, 2.73], [2.73, 2.73, 0]],
//!                "species": ["Si", "Ge"], "positions_frac": [[0, 0, 0], [0.25, 0.25, 0.25]]}}
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use taskhost_sdk::TaskError;

use crate::calibration;
use crate::rhf;
use crate::rng::SplitMix64;
use crate::scf::ScfSettings;
use crate::structure::{self, Element, Structure, Vec3};
use crate::units::BOHR_ANG;

/// Largest structure (atoms, after the supercell) of the PBE model.
pub const MAX_ATOMS_PBE: usize = 64;
/// Largest molecule of the RHF method: its finite-difference forces take 6N + 1 SCF runs, each
/// with N⁴/8 two-electron integrals (8 atoms: 5 × 10⁹ fuel, 12 atoms would take 4 × 10¹⁰).
pub const MAX_ATOMS_RHF: usize = 8;
/// Largest supercell repeat along one axis.
pub const MAX_REPEAT: u32 = 4;
/// Largest rattle (Å): beyond it bonds break and the models leave their range.
pub const MAX_RATTLE_ANG: f64 = 0.2;
/// Longest pause per SCF iteration or band line (ms).
pub const MAX_PACE_MS: u64 = 2_000;
/// Longest total of pauses a job may ask for (ms).
pub const MAX_PACED_MS: u64 = 240_000;
/// Largest SCF iteration budget.
pub const MAX_SCF: u32 = 200;

/// The method: the PBE model, or real restricted Hartree-Fock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The calibrated PBE model (mock SCF history, SW/Morse energies, tight-binding gap).
    Pbe,
    /// Restricted Hartree-Fock, STO-3G, for H/He molecules.
    Rhf,
}

/// The preset systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Preset {
    /// Diamond-structure silicon, two-atom primitive cell.
    Si,
    /// Diamond-structure germanium, two-atom primitive cell.
    Ge,
    /// The hydrogen molecule.
    H2,
    /// Water.
    H2O,
    /// The helium hydride cation (RHF only).
    #[serde(rename = "HeH+")]
    HeHPlus,
}

impl Preset {
    fn name(self) -> &'static str {
        match self {
            Preset::Si => "Si",
            Preset::Ge => "Ge",
            Preset::H2 => "H2",
            Preset::H2O => "H2O",
            Preset::HeHPlus => "HeH+",
        }
    }
}

/// A structure given in full.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomStructure {
    /// Element symbols, one per atom.
    pub species: Vec<String>,
    /// Lattice vectors as rows (Å); absent for a molecule.
    #[serde(default)]
    pub lattice_ang: Option<[Vec3; 3]>,
    /// Positions in units of the lattice vectors (crystals).
    #[serde(default)]
    pub positions_frac: Option<Vec<Vec3>>,
    /// Cartesian positions in Å.
    #[serde(default)]
    pub positions_ang: Option<Vec<Vec3>>,
    /// Cartesian positions in bohr.
    #[serde(default)]
    pub positions_bohr: Option<Vec<Vec3>>,
    /// Net charge (molecules).
    #[serde(default)]
    pub charge: i32,
}

/// The task's input.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A label echoed in the result (the source worker's job id).
    #[serde(default)]
    pub job_id: Option<String>,
    /// `pbe` (default for task `dft_job`) or `rhf` (task `rhf`).
    #[serde(default)]
    pub method: Option<Method>,
    /// A preset system: `Si`, `Ge`, `H2`, `H2O`, `HeH+`.
    #[serde(default)]
    pub preset: Option<Preset>,
    /// A structure given in full, instead of a preset.
    #[serde(default)]
    pub structure: Option<CustomStructure>,
    /// Lattice constant of the Si or Ge preset (Å); default the PBE value.
    #[serde(default)]
    pub lattice_constant_ang: Option<f64>,
    /// Bond length of the H2 or HeH+ preset (bohr).
    #[serde(default)]
    pub bond_length_bohr: Option<f64>,
    /// Repeats of a crystal's cell along its lattice vectors.
    #[serde(default)]
    pub supercell: Option<[u32; 3]>,
    /// Standard deviation of random displacements per Cartesian component (Å).
    #[serde(default)]
    pub rattle_ang: f64,
    /// Seed of everything random: the SCF history's details and the rattle.
    #[serde(default)]
    pub seed: u64,
    /// SCF convergence on |ΔE| (eV); default 1e-6 (PBE), 1e-8 (RHF).
    #[serde(default)]
    pub scf_tolerance_ev: Option<f64>,
    /// SCF iteration budget; default 60.
    #[serde(default)]
    pub max_scf: Option<u32>,
    /// Density mixing fraction; default 0.4 (PBE), 1.0 (RHF, no damping).
    #[serde(default)]
    pub mixing_beta: Option<f64>,
    /// k-points per line of the band structure (PBE crystals); default 20.
    #[serde(default)]
    pub kpoints_per_line: Option<u32>,
    /// Slater exponents ζ of the STO-3G 1s functions (RHF), by element: `{"He": 2.0925}`.
    #[serde(default)]
    pub slater_exponents: Option<BTreeMap<String, f64>>,
    /// Wall-clock pause after each SCF iteration and band line (ms), for demonstrations; does not
    /// change any result.
    #[serde(default)]
    pub pace_ms: u64,
}

/// A validated job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Echoed label.
    pub job_id: Option<String>,
    /// The method.
    pub method: Method,
    /// Where the structure came from: `preset Si`, `custom`.
    pub source: String,
    /// The structure to compute (supercell and rattle applied).
    pub structure: Structure,
    /// The cell the supercell repeats, when the supercell is an exact repeat of it (no rattle):
    /// its bands are the supercell's, unfolded, at a fraction of the cost.
    pub primitive: Option<Structure>,
    /// Supercell repeats.
    pub supercell: [u32; 3],
    /// Rattle amplitude (Å).
    pub rattle_ang: f64,
    /// The seed.
    pub seed: u64,
    /// SCF settings (tolerance in eV).
    pub scf: ScfSettings,
    /// k-points per line asked for.
    pub kpoints_per_line: usize,
    /// ζ per element (RHF).
    pub zetas: BTreeMap<Element, f64>,
    /// Pause per unit of work (ms).
    pub pace_ms: u64,
}

fn bad(field: &str, reason: impl std::fmt::Display) -> TaskError {
    TaskError::invalid_input(field, reason)
}

/// Checks the input and builds the job. `task` is the task name (`dft_job` or `rhf`).
pub fn validate(input: Input, task: &str) -> Result<JobSpec, TaskError> {
    let method = match (task, input.method) {
        ("rhf", Some(Method::Pbe)) => return Err(bad("method", "task rhf runs method \"rhf\"")),
        ("rhf", _) => Method::Rhf,
        (_, Some(m)) => m,
        (_, None) => Method::Pbe,
    };
    let (mut structure, source) = match (&input.preset, &input.structure) {
        (Some(_), Some(_)) => return Err(bad("structure", "give either preset or structure, not both")),
        (None, None) => return Err(bad("preset", "give a preset (Si, Ge, H2, H2O, HeH+) or a structure")),
        (Some(preset), None) => {
            (preset_structure(*preset, method, &input)?, format!("preset {}", preset.name()))
        }
        (None, Some(custom)) => {
            if input.lattice_constant_ang.is_some() {
                return Err(bad("lattice_constant_ang", "applies to the Si and Ge presets only"));
            }
            if input.bond_length_bohr.is_some() {
                return Err(bad("bond_length_bohr", "applies to the H2 and HeH+ presets only"));
            }
            (custom_structure(custom)?, "custom".to_string())
        }
    };
    check_method_fits(&structure, method, input.preset.is_some())?;

    let supercell = input.supercell.unwrap_or([1, 1, 1]);
    if input.supercell.is_some() {
        if !structure.is_periodic() {
            return Err(bad("supercell", "applies to crystals only; a molecule sits in vacuum"));
        }
        if supercell.iter().any(|n| *n == 0 || *n > MAX_REPEAT) {
            return Err(bad("supercell", format!("each repeat must be 1 to {MAX_REPEAT}")));
        }
    }
    let max_atoms = if method == Method::Rhf { MAX_ATOMS_RHF } else { MAX_ATOMS_PBE };
    let atoms = structure.len() * supercell.iter().product::<u32>() as usize;
    if atoms > max_atoms {
        let field = if input.supercell.is_some() { "supercell" } else { "structure.species" };
        return Err(bad(field, format!("{atoms} atoms; at most {max_atoms} with method {method:?}")));
    }
    if !(0.0..=MAX_RATTLE_ANG).contains(&input.rattle_ang) {
        return Err(bad("rattle_ang", format!("must be between 0 and {MAX_RATTLE_ANG} Å")));
    }
    let base = structure.clone();
    structure = structure.supercell(supercell);
    structure.rattle(input.rattle_ang, &mut SplitMix64::new(input.seed, 0xA7));
    let primitive = (supercell != [1, 1, 1] && input.rattle_ang == 0.0).then_some(base);

    let default_tolerance = if method == Method::Rhf { 1e-8 } else { 1e-6 };
    let tolerance_ev = input.scf_tolerance_ev.unwrap_or(default_tolerance);
    if !(1e-12..=0.1).contains(&tolerance_ev) {
        return Err(bad("scf_tolerance_ev", "must be between 1e-12 and 0.1 eV"));
    }
    let max_iterations = input.max_scf.unwrap_or(60);
    if !(1..=MAX_SCF).contains(&max_iterations) {
        return Err(bad("max_scf", format!("must be 1 to {MAX_SCF}")));
    }
    let mixing_beta = input.mixing_beta.unwrap_or(if method == Method::Rhf { 1.0 } else { 0.4 });
    if !(mixing_beta > 0.0 && mixing_beta <= 1.0) {
        return Err(bad("mixing_beta", "must be in (0, 1]"));
    }
    let kpoints_per_line = input.kpoints_per_line.unwrap_or(20);
    if input.kpoints_per_line.is_some() && !structure.is_periodic() {
        return Err(bad("kpoints_per_line", "applies to crystals only; a molecule has Γ alone"));
    }
    if !(1..=50).contains(&kpoints_per_line) {
        return Err(bad("kpoints_per_line", "must be 1 to 50"));
    }
    let mut zetas = BTreeMap::new();
    if method == Method::Rhf {
        for element in [Element::H, Element::He] {
            zetas.insert(element, rhf::standard_zeta(element).unwrap_or(1.0));
        }
    }
    if let Some(overrides) = &input.slater_exponents {
        if method != Method::Rhf {
            return Err(bad("slater_exponents", "applies to method \"rhf\" only"));
        }
        for (symbol, zeta) in overrides {
            let field = format!("slater_exponents.{symbol}");
            let element = Element::from_symbol(symbol)
                .filter(|e| zetas.contains_key(e))
                .ok_or_else(|| bad(&field, "only H and He have STO-3G functions here"))?;
            if !(0.5..=5.0).contains(zeta) {
                return Err(bad(&field, "must be between 0.5 and 5.0"));
            }
            zetas.insert(element, *zeta);
        }
    }
    if input.pace_ms > MAX_PACE_MS {
        return Err(bad("pace_ms", format!("must be at most {MAX_PACE_MS}")));
    }
    // Pauses come after each SCF iteration and each of the 13 band lines; they must leave the
    // work well inside the manifest's 300 s timeout.
    let paced_ms = input.pace_ms * (max_iterations as u64 + 13);
    if paced_ms > MAX_PACED_MS {
        return Err(bad(
            "pace_ms",
            format!(
                "{} ms × ({max_iterations} SCF iterations + 13 band lines) = {paced_ms} ms of pauses; at most {MAX_PACED_MS}",
                input.pace_ms
            ),
        ));
    }
    if let Some(id) = &input.job_id
        && id.len() > 200
    {
        return Err(bad("job_id", "must be at most 200 characters"));
    }
    Ok(JobSpec {
        job_id: input.job_id,
        method,
        source,
        structure,
        primitive,
        supercell,
        rattle_ang: input.rattle_ang,
        seed: input.seed,
        scf: ScfSettings { tolerance_ev, max_iterations, mixing_beta },
        kpoints_per_line: kpoints_per_line as usize,
        zetas,
        pace_ms: input.pace_ms,
    })
}

/// The structure of a preset: PBE geometries for `pbe`, Szabo and Ostlund's for `rhf`.
fn preset_structure(preset: Preset, method: Method, input: &Input) -> Result<Structure, TaskError> {
    let crystal = matches!(preset, Preset::Si | Preset::Ge);
    let diatomic = matches!(preset, Preset::H2 | Preset::HeHPlus);
    if input.lattice_constant_ang.is_some() && !crystal {
        return Err(bad("lattice_constant_ang", "applies to the Si and Ge presets only"));
    }
    if input.bond_length_bohr.is_some() && !diatomic {
        return Err(bad("bond_length_bohr", "applies to the H2 and HeH+ presets only"));
    }
    if let Some(r) = input.bond_length_bohr
        && !(0.5..=8.0).contains(&r)
    {
        return Err(bad("bond_length_bohr", "must be between 0.5 and 8 bohr"));
    }
    match (preset, method) {
        (Preset::Si | Preset::Ge, Method::Pbe) => {
            let element = if preset == Preset::Si { Element::Si } else { Element::Ge };
            let reference = calibration::crystal_reference(element)
                .ok_or_else(|| TaskError::failed("no reference data for the preset"))?;
            let a = input.lattice_constant_ang.unwrap_or(reference.lattice_constant_pbe_ang);
            let nominal = reference.lattice_constant_pbe_ang;
            if !(0.85 * nominal..=1.15 * nominal).contains(&a) {
                return Err(bad(
                    "lattice_constant_ang",
                    format!(
                        "must be within 15% of the PBE value {nominal} Å ({:.2} to {:.2})",
                        0.85 * nominal,
                        1.15 * nominal
                    ),
                ));
            }
            Ok(structure::diamond(element, a))
        }
        (Preset::H2, Method::Pbe) => {
            let r = input.bond_length_bohr.map(|b| b * BOHR_ANG).unwrap_or(calibration::H2_R_E_ANG);
            Ok(structure::diatomic(Element::H, Element::H, r, 0))
        }
        (Preset::H2O, Method::Pbe) => Ok(structure::water_pbe()),
        (Preset::HeHPlus, Method::Pbe) => {
            Err(bad("preset", "HeH+ has no PBE model here; use method \"rhf\" (or task rhf)"))
        }
        // Szabo and Ostlund's geometries: H2 at 1.4 bohr, HeH+ at 1.4632 bohr.
        (Preset::H2, Method::Rhf) => {
            let r = input.bond_length_bohr.unwrap_or(1.4) * BOHR_ANG;
            Ok(structure::diatomic(Element::H, Element::H, r, 0))
        }
        (Preset::HeHPlus, Method::Rhf) => {
            let r = input.bond_length_bohr.unwrap_or(1.4632) * BOHR_ANG;
            Ok(structure::diatomic(Element::He, Element::H, r, 1))
        }
        (Preset::Si | Preset::Ge | Preset::H2O, Method::Rhf) => Err(bad(
            "preset",
            format!(
                "method \"rhf\" handles molecules of H and He only (s-type Gaussians); {} is not one",
                preset.name()
            ),
        )),
    }
}

/// A custom structure, checked.
fn custom_structure(custom: &CustomStructure) -> Result<Structure, TaskError> {
    if custom.species.is_empty() {
        return Err(bad("structure.species", "list at least one atom"));
    }
    let mut species = Vec::with_capacity(custom.species.len());
    for (i, symbol) in custom.species.iter().enumerate() {
        let element = Element::from_symbol(symbol).ok_or_else(|| {
            bad(
                &format!("structure.species[{i}]"),
                format!("unknown element {symbol:?}; known: H, He, O, Si, Ge"),
            )
        })?;
        species.push(element);
    }
    let given: Vec<&str> = [
        ("positions_frac", custom.positions_frac.is_some()),
        ("positions_ang", custom.positions_ang.is_some()),
        ("positions_bohr", custom.positions_bohr.is_some()),
    ]
    .iter()
    .filter(|(_, present)| *present)
    .map(|(name, _)| *name)
    .collect();
    if given.len() != 1 {
        return Err(bad("structure", "give exactly one of positions_frac, positions_ang, positions_bohr"));
    }
    let field = format!("structure.{}", given[0]);
    let raw = custom
        .positions_frac
        .as_ref()
        .or(custom.positions_ang.as_ref())
        .or(custom.positions_bohr.as_ref())
        .ok_or_else(|| bad("structure", "positions missing"))?;
    if raw.len() != species.len() {
        return Err(bad(&field, format!("{} positions for {} species", raw.len(), species.len())));
    }
    let lattice = custom.lattice_ang;
    if let Some(l) = lattice {
        let volume = structure::dot(l[0], structure::cross(l[1], l[2]));
        if volume.abs() < 1.0 {
            return Err(bad(
                "structure.lattice_ang",
                format!("the cell volume is {volume:.3} Å³; the vectors are (nearly) coplanar"),
            ));
        }
        if l.iter().any(|v| structure::norm(*v) > 50.0) {
            return Err(bad("structure.lattice_ang", "lattice vectors longer than 50 Å are not supported"));
        }
        if custom.charge != 0 {
            return Err(bad("structure.charge", "a crystal must be neutral"));
        }
    }
    let positions: Vec<Vec3> = match (given[0], lattice) {
        ("positions_frac", Some(l)) => raw
            .iter()
            .map(|f| {
                structure::add(
                    structure::add(structure::scale(l[0], f[0]), structure::scale(l[1], f[1])),
                    structure::scale(l[2], f[2]),
                )
            })
            .collect(),
        ("positions_frac", None) => {
            return Err(bad("structure.positions_frac", "fractional positions need lattice_ang"));
        }
        ("positions_bohr", _) => raw.iter().map(|p| structure::scale(*p, BOHR_ANG)).collect(),
        _ => raw.clone(),
    };
    if positions.iter().flatten().any(|x| x.abs() > 1e3) {
        return Err(bad(&field, "coordinates beyond 1000 Å are not supported"));
    }
    let s = Structure { lattice, species, positions, charge: custom.charge };
    if s.len() > MAX_ATOMS_PBE {
        return Err(bad("structure.species", format!("{} atoms; at most {MAX_ATOMS_PBE}", s.len())));
    }
    let minimum = if s.is_periodic() { 1.0 } else { 0.3 };
    if let Some((i, j, d)) = s.closest_pair()
        && d < minimum
    {
        let what =
            if i == j { format!("atom {i} and its periodic image") } else { format!("atoms {i} and {j}") };
        return Err(bad(&field, format!("{what} are {d:.3} Å apart (at least {minimum} Å)")));
    }
    Ok(s)
}

/// The structure suits the method's model.
fn check_method_fits(s: &Structure, method: Method, preset: bool) -> Result<(), TaskError> {
    let field = if preset { "preset" } else { "structure" };
    match method {
        Method::Pbe => {
            if s.is_periodic() {
                if let Some(e) = s.species.iter().find(|e| !matches!(e, Element::Si | Element::Ge)) {
                    return Err(bad(
                        "structure.species",
                        format!(
                            "the PBE model of crystals covers Si and Ge (and their mixtures), not {}",
                            e.symbol()
                        ),
                    ));
                }
            } else {
                if s.charge != 0 {
                    return Err(bad("structure.charge", "the PBE model covers neutral H2 and H2O"));
                }
                let formula = s.formula();
                if formula != "H2" && formula != "H2O" {
                    return Err(bad(
                        "structure.species",
                        format!(
                            "the PBE model of molecules covers H2 and H2O, not {formula}; H/He molecules can use method \"rhf\""
                        ),
                    ));
                }
            }
        }
        Method::Rhf => {
            if s.is_periodic() {
                return Err(bad("structure.lattice_ang", "method \"rhf\" handles molecules only"));
            }
            if let Some(e) = s.species.iter().find(|e| !matches!(e, Element::H | Element::He)) {
                return Err(bad(
                    "structure.species",
                    format!("method \"rhf\" handles H and He only (s-type Gaussians), not {}", e.symbol()),
                ));
            }
            let electrons = s.electrons();
            if electrons <= 0 || electrons % 2 != 0 {
                return Err(bad(
                    field,
                    format!(
                        "restricted Hartree-Fock needs an even, positive number of electrons; {} has {electrons}",
                        s.formula()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Input {
        serde_json::from_str(json).unwrap()
    }

    fn error(json: &str, task: &str) -> String {
        match validate(parse(json), task) {
            Err(TaskError::InvalidInput(m)) => m,
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn presets_get_their_geometries_and_defaults() {
        let si = validate(parse(r#"{"preset": "Si"}"#), "dft_job").unwrap();
        assert_eq!(si.method, Method::Pbe);
        assert_eq!(si.structure.len(), 2);
        assert_eq!(si.scf.tolerance_ev, 1e-6);
        let heh = validate(parse(r#"{"preset": "HeH+"}"#), "rhf").unwrap();
        assert_eq!(heh.method, Method::Rhf);
        assert_eq!(heh.structure.charge, 1);
        let r = structure::norm(structure::sub(heh.structure.positions[1], heh.structure.positions[0]));
        assert!((r / BOHR_ANG - 1.4632).abs() < 1e-12);
        let h2 = validate(parse(r#"{"method": "rhf", "preset": "H2"}"#), "dft_job").unwrap();
        assert_eq!(h2.method, Method::Rhf);
    }

    #[test]
    fn a_supercell_without_rattle_remembers_its_primitive_cell() {
        let job = validate(parse(r#"{"preset": "Si", "supercell": [2, 2, 2]}"#), "dft_job").unwrap();
        assert_eq!(job.structure.len(), 16);
        assert_eq!(job.primitive.as_ref().map(|p| p.len()), Some(2));
        let rattled =
            validate(parse(r#"{"preset": "Si", "supercell": [2, 1, 1], "rattle_ang": 0.02}"#), "dft_job")
                .unwrap();
        assert!(rattled.primitive.is_none());
    }

    #[test]
    fn a_custom_cell_in_fractional_coordinates_is_built() {
        let job = validate(
            parse(
                r#"{"structure": {"lattice_ang": [[0, 2.8, 2.8], [2.8, 0, 2.8], [2.8, 2.8, 0]],
                    "species": ["Si", "Ge"], "positions_frac": [[0, 0, 0], [0.25, 0.25, 0.25]]}}"#,
            ),
            "dft_job",
        )
        .unwrap();
        assert_eq!(job.structure.formula(), "GeSi");
        assert!((job.structure.positions[1][0] - 1.4).abs() < 1e-12);
    }

    #[test]
    fn bad_inputs_name_their_field() {
        let cases = [
            (r#"{}"#, "dft_job", "preset:"),
            (
                r#"{"preset": "Si", "structure": {"species": ["H"], "positions_ang": [[0,0,0]]}}"#,
                "dft_job",
                "structure:",
            ),
            (r#"{"preset": "HeH+"}"#, "dft_job", "preset: HeH+ has no PBE model"),
            (r#"{"preset": "Si"}"#, "rhf", "preset: method \"rhf\" handles molecules"),
            (r#"{"preset": "Si", "method": "pbe"}"#, "rhf", "method:"),
            (r#"{"preset": "H2", "supercell": [2, 1, 1]}"#, "dft_job", "supercell: applies to crystals"),
            (r#"{"preset": "Si", "supercell": [5, 1, 1]}"#, "dft_job", "supercell: each repeat"),
            (r#"{"preset": "Si", "supercell": [4, 4, 4]}"#, "dft_job", "supercell: 128 atoms"),
            (r#"{"preset": "Si", "rattle_ang": 0.5}"#, "dft_job", "rattle_ang:"),
            (r#"{"preset": "Si", "scf_tolerance_ev": 0}"#, "dft_job", "scf_tolerance_ev:"),
            (r#"{"preset": "Si", "max_scf": 0}"#, "dft_job", "max_scf:"),
            (r#"{"preset": "Si", "mixing_beta": 1.5}"#, "dft_job", "mixing_beta:"),
            (
                r#"{"preset": "Si", "lattice_constant_ang": 9.0}"#,
                "dft_job",
                "lattice_constant_ang: must be within",
            ),
            (r#"{"preset": "H2O", "lattice_constant_ang": 5.0}"#, "dft_job", "lattice_constant_ang: applies"),
            (r#"{"preset": "Si", "bond_length_bohr": 1.4}"#, "dft_job", "bond_length_bohr: applies"),
            (
                r#"{"preset": "H2", "kpoints_per_line": 5}"#,
                "dft_job",
                "kpoints_per_line: applies to crystals",
            ),
            (r#"{"preset": "Si", "slater_exponents": {"He": 2.0}}"#, "dft_job", "slater_exponents: applies"),
            (r#"{"preset": "HeH+", "slater_exponents": {"O": 2.0}}"#, "rhf", "slater_exponents.O:"),
            (r#"{"preset": "HeH+", "slater_exponents": {"He": 9.0}}"#, "rhf", "slater_exponents.He: must be"),
            (r#"{"preset": "Si", "pace_ms": 5000}"#, "dft_job", "pace_ms:"),
            (
                r#"{"preset": "Si", "pace_ms": 2000, "max_scf": 200}"#,
                "dft_job",
                "pace_ms: 2000 ms × (200 SCF",
            ),
            (
                r#"{"structure": {"species": ["Xx"], "positions_ang": [[0,0,0]]}}"#,
                "dft_job",
                "structure.species[0]: unknown element",
            ),
            (
                r#"{"structure": {"species": ["H", "H"], "positions_ang": [[0,0,0]]}}"#,
                "dft_job",
                "structure.positions_ang: 1 positions for 2",
            ),
            (
                r#"{"structure": {"species": ["H", "H"], "positions_ang": [[0,0,0],[0,0,0.1]]}}"#,
                "dft_job",
                "structure.positions_ang: atoms 0 and 1 are 0.100",
            ),
            (
                r#"{"structure": {"species": ["H"], "positions_frac": [[0,0,0]]}}"#,
                "dft_job",
                "structure.positions_frac: fractional positions need",
            ),
            (
                r#"{"structure": {"species": ["H", "H"], "positions_ang": [[0,0,0],[0,0,0.7]], "positions_bohr": [[0,0,0],[0,0,1.4]]}}"#,
                "dft_job",
                "structure: give exactly one",
            ),
            (
                r#"{"structure": {"lattice_ang": [[1,0,0],[0,1,0],[1,1,0]], "species": ["Si"], "positions_frac": [[0,0,0]]}}"#,
                "dft_job",
                "structure.lattice_ang: the cell volume",
            ),
            (
                r#"{"structure": {"lattice_ang": [[3,0,0],[0,3,0],[0,0,3]], "species": ["O"], "positions_frac": [[0,0,0]]}}"#,
                "dft_job",
                "structure.species: the PBE model of crystals",
            ),
            (
                r#"{"structure": {"lattice_ang": [[0.5,0,0],[0,3,0],[0,0,3]], "species": ["Si"], "positions_frac": [[0,0,0]]}}"#,
                "dft_job",
                "atom 0 and its periodic image",
            ),
            (
                r#"{"structure": {"species": ["H", "H", "H"], "positions_bohr": [[0,0,0],[0,0,1.6],[0,1.6,0]]}}"#,
                "dft_job",
                "not H3; H/He molecules can use",
            ),
            (
                r#"{"structure": {"species": ["H", "H", "H"], "positions_bohr": [[0,0,0],[0,0,1.6],[0,1.6,0]]}}"#,
                "rhf",
                "structure: restricted Hartree-Fock needs an even",
            ),
            (
                r#"{"structure": {"species": ["H", "O"], "positions_bohr": [[0,0,0],[0,0,1.8]]}}"#,
                "rhf",
                "structure.species: method \"rhf\" handles H and He only",
            ),
        ];
        for (json, task, expected) in cases {
            let message = error(json, task);
            assert!(message.contains(expected), "{json}: {message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn unknown_fields_and_presets_are_refused_by_serde() {
        assert!(serde_json::from_str::<Input>(r#"{"preset": "C"}"#).is_err());
        assert!(serde_json::from_str::<Input>(r#"{"preset": "Si", "ecut": 500}"#).is_err());
    }
}
