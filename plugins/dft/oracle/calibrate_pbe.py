"""Derives the molecular PBE parameters of the dft plugin from PySCF (PBE/cc-pVTZ, all-electron).

Run once by hand: `python calibrate_pbe.py`. It prints the constants that
`plugins/dft/src/calibration.rs` holds, so that anyone can reproduce them. The oracle tests
(`tests/oracle_pyscf.rs`) then check the plugin's molecular energies and forces against fresh PySCF
calculations at other geometries than the ones fitted here.
"""

import json

import numpy as np
from pyscf import dft, gto

BASIS = "cc-pvtz"
HARTREE_EV = 27.211386245988  # CODATA 2018


def atom_energy(symbol, spin):
    mol = gto.M(atom=f"{symbol} 0 0 0", basis=BASIS, spin=spin, verbose=0)
    mf = dft.UKS(mol)
    mf.xc = "pbe"
    mf.conv_tol = 1e-10
    return mf.kernel()


def rks(atoms, unit="angstrom"):
    mol = gto.M(atom=atoms, basis=BASIS, unit=unit, verbose=0)
    mf = dft.RKS(mol)
    mf.xc = "pbe"
    mf.conv_tol = 1e-11
    e = mf.kernel()
    nocc = mol.nelectron // 2
    gap = (mf.mo_energy[nocc] - mf.mo_energy[nocc - 1]) * HARTREE_EV
    return e, gap


def h2(r):
    return rks(f"H 0 0 0; H 0 0 {r}")


def water(r1, r2, theta_deg):
    t = np.radians(theta_deg)
    return rks(
        f"O 0 0 0; H {r1} 0 0; H {r2 * np.cos(t)} {r2 * np.sin(t)} 0"
    )


def main():
    e_h = atom_energy("H", 1)
    e_o = atom_energy("O", 2)
    e_si = atom_energy("Si", 2)
    e_ge = atom_energy("Ge", 2)

    # H2: parabola through three points, twice, for the minimum and the curvature.
    r0 = 0.75
    for h in (0.02, 0.005):
        e = [h2(r0 + d * h)[0] for d in (-1, 0, 1)]
        k = (e[0] - 2 * e[1] + e[2]) / h**2
        r0 = r0 - (e[2] - e[0]) / (2 * h) / k
    e_h2, gap_h2 = h2(r0)
    d_h2 = 2 * e_h - e_h2
    a_h2 = np.sqrt(k / (2 * d_h2))

    # H2O: Newton steps on (r, theta) with symmetric r1 = r2 = r.
    r, th = 0.97, 104.5
    for h_r, h_t in ((0.01, 1.0), (0.004, 0.4)):
        f = lambda dr, dt: water(r + dr, r + dr, th + dt)[0]
        e00 = f(0, 0)
        grad = np.array([(f(h_r, 0) - f(-h_r, 0)) / (2 * h_r), (f(0, h_t) - f(0, -h_t)) / (2 * h_t)])
        hrr = (f(h_r, 0) - 2 * e00 + f(-h_r, 0)) / h_r**2
        htt = (f(0, h_t) - 2 * e00 + f(0, -h_t)) / h_t**2
        hrt = (f(h_r, h_t) - f(h_r, -h_t) - f(-h_r, h_t) + f(-h_r, -h_t)) / (4 * h_r * h_t)
        step = np.linalg.solve(np.array([[hrr, hrt], [hrt, htt]]), grad)
        r, th = r - step[0], th - step[1]
    e_w, gap_w = water(r, r, th)
    # One bond stretched at a time: the curvature of a single O-H bond.
    h_r, h_t = 0.004, 0.4
    k_oh = (water(r + h_r, r, th)[0] - 2 * e_w + water(r - h_r, r, th)[0]) / h_r**2
    k_th = (water(r, r, th + h_t)[0] - 2 * e_w + water(r, r, th - h_t)[0]) / (np.radians(h_t)) ** 2
    # Couplings of the quadratic valence force field: stretch-stretch and stretch-bend.
    k_rr = (
        water(r + h_r, r + h_r, th)[0]
        - water(r + h_r, r - h_r, th)[0]
        - water(r - h_r, r + h_r, th)[0]
        + water(r - h_r, r - h_r, th)[0]
    ) / (4 * h_r**2)
    t = np.radians(h_t)
    k_rt = (
        water(r + h_r, r, th + h_t)[0]
        - water(r + h_r, r, th - h_t)[0]
        - water(r - h_r, r, th + h_t)[0]
        + water(r - h_r, r, th - h_t)[0]
    ) / (4 * h_r * t)
    d_oh = (e_o + 2 * e_h - e_w) / 2
    a_oh = np.sqrt(k_oh / (2 * d_oh))

    print(
        json.dumps(
            {
                "basis": BASIS,
                "atom_energy_hartree": {"H": e_h, "O": e_o, "Si": e_si, "Ge": e_ge},
                "h2": {
                    "energy_hartree": e_h2,
                    "r_e_ang": r0,
                    "d_e_hartree": d_h2,
                    "morse_a_per_ang": a_h2,
                    "homo_lumo_gap_ev": gap_h2,
                },
                "h2o": {
                    "energy_hartree": e_w,
                    "r_e_ang": r,
                    "theta_e_deg": th,
                    "d_oh_hartree": d_oh,
                    "morse_a_per_ang": a_oh,
                    "k_theta_hartree_per_rad2": k_th,
                    "k_rr_hartree_per_ang2": k_rr,
                    "k_rtheta_hartree_per_ang_rad": k_rt,
                    "homo_lumo_gap_ev": gap_w,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
