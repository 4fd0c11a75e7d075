"""Oracle for the dft plugin's tests: runs PySCF on the jobs it reads from stdin.

Input (JSON on stdin): {"jobs": [job, ...]}, each job
    {"method": "rhf" | "pbe",
     "atoms": [["H", [x, y, z]], ...], "unit": "bohr" | "angstrom", "charge": 0,
     "slater_exponents": {"He": 2.0925},   # optional, RHF only: STO-3G with these zeta
     "gradient": true}                     # optional: also the nuclear gradient
Output (JSON on stdout): {"results": [{"energy_hartree", "mo_energy_hartree",
    "homo_lumo_gap_ev", "gradient_hartree_per_bohr"?}, ...], "pyscf_version"}

RHF uses PySCF's own STO-3G basis (Basis Set Exchange data) unless exponents are given; then the
basis is built from the Hehre-Stewart-Pople zeta = 1 expansion scaled by zeta^2. PBE uses RKS with
xc = "pbe" and cc-pVTZ, as oracle/calibrate_pbe.py does.
"""

import json
import sys

import pyscf
from pyscf import dft, gto, scf

HARTREE_EV = 27.211386245988
# Hehre, Stewart and Pople (1969): STO-3G expansion of a zeta = 1 Slater 1s function.
STO3G_ZETA1 = [(2.227660584, 0.15432897), (0.405771156, 0.53532814), (0.109817510, 0.44463454)]


def build(job):
    method = job["method"]
    basis = "sto-3g" if method == "rhf" else "cc-pvtz"
    if job.get("slater_exponents"):
        basis = {}
        symbols = {a[0] for a in job["atoms"]}
        for symbol in symbols:
            zeta = job["slater_exponents"].get(symbol)
            if zeta is None:
                basis[symbol] = "sto-3g"
            else:
                basis[symbol] = [[0] + [[a * zeta * zeta, c] for a, c in STO3G_ZETA1]]
    mol = gto.M(
        atom=[[s, tuple(p)] for s, p in job["atoms"]],
        unit=job.get("unit", "bohr"),
        charge=job.get("charge", 0),
        basis=basis,
        verbose=0,
    )
    if method == "rhf":
        mf = scf.RHF(mol)
    else:
        mf = dft.RKS(mol)
        mf.xc = "pbe"
    mf.conv_tol = 1e-12
    return mol, mf


def run(job):
    mol, mf = build(job)
    energy = mf.kernel()
    if not mf.converged:
        raise RuntimeError(f"PySCF did not converge for {job}")
    nocc = mol.nelectron // 2
    result = {
        "energy_hartree": float(energy),
        "mo_energy_hartree": [float(e) for e in mf.mo_energy],
        "homo_lumo_gap_ev": float((mf.mo_energy[nocc] - mf.mo_energy[nocc - 1]) * HARTREE_EV)
        if len(mf.mo_energy) > nocc
        else None,
    }
    if job.get("gradient"):
        result["gradient_hartree_per_bohr"] = mf.nuc_grad_method().kernel().tolist()
    return result


def main():
    request = json.load(sys.stdin)
    results = [run(job) for job in request["jobs"]]
    json.dump({"results": results, "pyscf_version": pyscf.__version__}, sys.stdout)


if __name__ == "__main__":
    main()
