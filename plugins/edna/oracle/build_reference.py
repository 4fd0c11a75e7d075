#!/usr/bin/env python3
"""Builds the edna plugin's shipped reference from Debian's `microbiomeutil-data` package.

Source: /usr/share/microbiomeutil-data/RESOURCES/rRNA16S.gold.fasta (the ChimeraSlayer "gold"
set: 5,181 near-full-length, chimera-checked 16S rRNA genes of type strains and genomes, from the
Ribosomal Database Project, with RDP's six-rank taxonomy; Broad Institute, BSD-3-Clause).

For each sequence, the V4 region amplified by the Earth Microbiome Project primers is cut out:
515F-Y GTGYCAGCMGCCGCGGTAA (Parada et al. 2016) to 806RB GGACTACNVGGGTWTCTAAT (Apprill et al.
2015), primers excluded, as reads look after primer removal. A primer matches at the position
with the fewest IUPAC mismatches (at most 2; the leftmost on ties). Per genus (full lineage), the
sequence with the fewest ambiguous bases in that region is kept (the first in file order on ties).
Names have spaces replaced by underscores. Headers are in SINTAX format, which both the plugin
and `vsearch --sintax` read: `>ID;tax=d:...,p:...,c:...,o:...,f:...,g:...;`.

Usage:
  build_reference.py GOLD_FASTA                 print the reference (one genus per sequence)
  build_reference.py --all GOLD_FASTA           print every extractable V4 region, with
                                                `;in_reference=yes|no` after the taxonomy
"""

import re
import sys

IUPAC = {
    "A": "A", "C": "C", "G": "G", "T": "T", "R": "AG", "Y": "CT", "S": "CG", "W": "AT",
    "K": "GT", "M": "AC", "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG", "N": "ACGT",
}
COMPLEMENT = {
    "A": "T", "C": "G", "G": "C", "T": "A", "R": "Y", "Y": "R", "S": "S", "W": "W",
    "K": "M", "M": "K", "B": "V", "V": "B", "D": "H", "H": "D", "N": "N",
}
FORWARD_PRIMER = "GTGYCAGCMGCCGCGGTAA"  # 515F-Y, Parada et al. 2016
REVERSE_PRIMER = "GGACTACNVGGGTWTCTAAT"  # 806RB, Apprill et al. 2015
MAX_PRIMER_MISMATCHES = 2
RANK_LETTERS = "dpcofg"


def reverse_complement(seq):
    return "".join(COMPLEMENT[c] for c in reversed(seq))


def find_primer(seq, primer):
    """(position, mismatches) of the best match of `primer` in `seq`, or None."""
    # The leftmost exact match, if any, is the best; the scan below finds it too, slowly.
    exact = re.search("".join(f"[{IUPAC[code]}]" for code in primer), seq)
    if exact:
        return (exact.start(), 0)
    best = None
    n = len(primer)
    for i in range(len(seq) - n + 1):
        mismatches = 0
        for base, code in zip(seq[i : i + n], primer):
            if base not in IUPAC[code]:
                mismatches += 1
                if mismatches > MAX_PRIMER_MISMATCHES:
                    break
        if mismatches <= MAX_PRIMER_MISMATCHES and (best is None or mismatches < best[1]):
            best = (i, mismatches)
    return best


def read_fasta(path):
    header, chunks = None, []
    with open(path) as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith(">"):
                if header is not None:
                    yield header, "".join(chunks)
                header, chunks = line[1:], []
            else:
                chunks.append(line.strip().upper())
    if header is not None:
        yield header, "".join(chunks)


def v4_region(seq):
    forward = find_primer(seq, FORWARD_PRIMER)
    if forward is None:
        return None
    start = forward[0] + len(FORWARD_PRIMER)
    reverse = find_primer(seq[start:], reverse_complement(REVERSE_PRIMER))
    if reverse is None:
        return None
    return seq[start : start + reverse[0]]


def main(argv):
    everything = argv[1:2] == ["--all"]
    path = argv[-1]
    records = []  # (id, lineage, v4)
    for header, seq in read_fasta(path):
        fields = header.split("\t")
        lineage = tuple(name.strip().replace(" ", "_") for name in fields[-1].split(";"))
        region = v4_region(seq)
        if region:
            records.append((fields[0].split()[0], lineage, region))
    chosen = {}
    for index, (_, lineage, region) in enumerate(records):
        ambiguous = sum(1 for base in region if base not in "ACGT")
        if lineage not in chosen or ambiguous < chosen[lineage][0]:
            chosen[lineage] = (ambiguous, index)
    keep = {index for _, index in chosen.values()}
    out = sys.stdout
    for index, (ident, lineage, region) in enumerate(records):
        if index not in keep and not everything:
            continue
        tax = ",".join(f"{letter}:{name}" for letter, name in zip(RANK_LETTERS, lineage))
        extra = f"in_reference={'yes' if index in keep else 'no'};" if everything else ""
        out.write(f">{ident};tax={tax};{extra}\n{region}\n")


if __name__ == "__main__":
    main(sys.argv)
