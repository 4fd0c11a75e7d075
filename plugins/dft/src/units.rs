//! Physical constants and unit conversions (CODATA 2018, NIST SP 961).
//!
//! Energies are computed in hartree inside the Hartree-Fock code and in eV everywhere else;
//! lengths in bohr inside Hartree-Fock and in ångström everywhere else. Field names carry their
//! unit (`energy_ev`, `positions_bohr`), so the conversions live here and nowhere else.

/// One hartree in electronvolts (CODATA 2018: 27.211 386 245 988 eV).
pub const HARTREE_EV: f64 = 27.211_386_245_988;

/// One bohr in ångström (CODATA 2018: 0.529 177 210 903 Å).
pub const BOHR_ANG: f64 = 0.529_177_210_903;

/// Hartree per bohr to eV per ångström (forces).
pub const HARTREE_PER_BOHR_EV_PER_ANG: f64 = HARTREE_EV / BOHR_ANG;
