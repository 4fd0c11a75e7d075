#!/bin/sh
# Fetches the real 16S data the edna tests use, from Debian packages, into DEST (default
# target/edna-testdata): the packages are downloaded and unpacked, not installed.
#
#   microbiomeutil-data  RESOURCES/rRNA16S.gold.fasta: 5,181 RDP type-strain 16S genes with
#                        taxonomy (the source of the shipped reference; BSD-3-Clause)
#   r-bioc-dada2         extdata/sam1F.fastq.gz, sam2F.fastq.gz: 1,500 V4 MiSeq reads each from
#                        mouse stool (Kozich et al. 2013 MiSeq SOP samples; LGPL), written as
#                        sam1F.fasta and sam2F.fasta (read name as label)
#   swarm                test-data/input.fasta.gz: 8,096 dereplicated V3-V4 amplicons with
#                        abundances (AGPL-3), written as swarm_input.fasta with the abundance
#                        suffix `_N` rewritten as vsearch's `;size=N`
#
# Prints DEST. Safe to run concurrently and again: a finished DEST is left alone.
set -eu
dest=${1:-$(dirname "$0")/../../../target/edna-testdata}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
if [ -f "$dest/.complete" ]; then
    echo "$dest"
    exit 0
fi
exec 9>"$dest/.lock"
flock 9
if [ -f "$dest/.complete" ]; then
    echo "$dest"
    exit 0
fi
packages="microbiomeutil-data r-bioc-dada2 swarm"
work=$(mktemp -d "$dest/.work.XXXXXX")
cd "$work"
if ! apt-get download $packages >download.log 2>&1; then
    # A machine that never ran `apt-get update` has no package lists.
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq >>download.log 2>&1 || true
    fi
    apt-get download $packages >>download.log 2>&1 || {
        cat download.log >&2
        echo "fetch_test_data.sh: could not download $packages (apt-get update as root may help)" >&2
        exit 1
    }
fi
for deb in *.deb; do
    dpkg-deb -x "$deb" root
done
cp root/usr/share/microbiomeutil-data/RESOURCES/rRNA16S.gold.fasta "$dest/"
for sample in sam1F sam2F; do
    gzip -dc root/usr/lib/R/site-library/dada2/extdata/$sample.fastq.gz |
        awk 'NR % 4 == 1 { split(substr($0, 2), f, " "); print ">" f[1] } NR % 4 == 2 { print }' >"$dest/$sample.fasta"
done
gzip -dc root/usr/share/doc/swarm/test-data/input.fasta.gz |
    sed -E 's/^>(.*)_([0-9]+)$/>\1;size=\2/' >"$dest/swarm_input.fasta"
ls *.deb >"$dest/packages.txt"
cd "$dest"
rm -rf "$work"
touch "$dest/.complete"
echo "$dest"
