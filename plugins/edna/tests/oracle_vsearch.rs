//! The plugin's clustering and reference search against vsearch itself (Debian's `vsearch`),
//! on real amplicons: the MiSeq SOP mouse-gut V4 reads and swarm's V3-V4 test set.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{run, scratch, shipped_reference, uniques, vsearch, vsearch_dereplicated};
use edna::align::VSEARCH_SCORING;
use edna::cluster::cluster_by_abundance;
use edna::search::{SearchParams, WordIndex};

/// vsearch's `--uc` as label → (centroid label, identity in percent or None for a centroid).
fn read_uc(path: &Path) -> HashMap<String, (String, Option<f64>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f[0] {
            "S" => {
                out.insert(f[8].to_owned(), (f[8].to_owned(), None));
            }
            "H" => {
                out.insert(f[8].to_owned(), (f[9].to_owned(), Some(f[3].parse().unwrap())));
            }
            _ => {}
        }
    }
    out
}

/// Clusters `fasta` (dereplicated, with `;size=`) with vsearch and with the plugin and checks
/// that every sequence lands in the OTU of the same centroid at the same identity.
fn compare_clustering(fasta: &Path, identity: f64, dir: &Path) -> (usize, usize) {
    let uc = dir.join(format!("clusters_{identity}.uc"));
    run(vsearch()
        .arg("--cluster_size")
        .arg(fasta)
        .args(["--sizein", "--id", &identity.to_string(), "--uc"])
        .arg(&uc));
    let expected = read_uc(&uc);

    let uniques = uniques(fasta);
    let sequences: Vec<&[u8]> = uniques.iter().map(|u| u.sequence.as_slice()).collect();
    let params = SearchParams { identity, max_accepts: 1, max_rejects: 32 };
    let clustering =
        cluster_by_abundance(&sequences, &params, &VSEARCH_SCORING, |_| Ok::<(), ()>(())).unwrap();
    assert_eq!(expected.len(), uniques.len());
    let mut centroids = 0;
    for (number, unique) in uniques.iter().enumerate() {
        let (otu, found_identity) = clustering.assignment[number];
        let centroid = &uniques[clustering.otus[otu].centroid].label;
        let (expected_centroid, expected_identity) = &expected[&unique.label];
        assert_eq!(centroid, expected_centroid, "OTU of {}", unique.label);
        match expected_identity {
            None => {
                centroids += 1;
                assert_eq!(found_identity, 1.0);
            }
            // vsearch prints one decimal.
            Some(percent) => assert!(
                (100.0 * found_identity - percent).abs() <= 0.05 + 1e-9,
                "{}: identity {} vs vsearch {percent}",
                unique.label,
                100.0 * found_identity
            ),
        }
    }
    assert_eq!(centroids, clustering.otus.len());
    (uniques.len(), clustering.otus.len())
}

#[test]
fn otus_of_mouse_gut_v4_reads_match_vsearch_cluster_size() {
    let dir = scratch("cluster_mouse_gut");
    let fasta = vsearch_dereplicated("sam1F.fasta", &dir);
    let (sequences, otus) = compare_clustering(&fasta, 0.97, &dir);
    assert_eq!((sequences, otus), (896, 263), "the MiSeq SOP sample F3D0 subset");
    let (_, otus_99) = compare_clustering(&fasta, 0.99, &dir);
    assert!(otus_99 > otus);
}

#[test]
fn otus_of_swarm_v3_v4_amplicons_match_vsearch_cluster_size() {
    // The 3,000 most abundant of swarm's 8,096 amplicons (about 425 bases): longer reads, with
    // real indels, in less time than the whole set takes in a debug build.
    let dir = scratch("cluster_swarm");
    let all = common::read_test_file("swarm_input.fasta");
    let mut records = edna::fasta::parse(&all, 5_000).unwrap();
    records.sort_by(|a, b| b.abundance.cmp(&a.abundance).then_with(|| a.label.cmp(&b.label)));
    let subset: String = records
        .iter()
        .take(3_000)
        .map(|r| format!(">{}\n{}\n", r.label, String::from_utf8_lossy(&r.sequence)))
        .collect();
    let fasta = dir.join("swarm_top3000.fasta");
    std::fs::write(&fasta, subset).unwrap();
    let (sequences, otus) = compare_clustering(&fasta, 0.97, &dir);
    assert_eq!(sequences, 3_000);
    assert!(otus > 50, "{otus}");
}

/// vsearch `--usearch_global` output as query → (target, identity percent), `*` for no hit.
fn read_userout(path: &Path) -> HashMap<String, Option<(String, f64)>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let hit = (f[1] != "*").then(|| (f[1].to_owned(), f[2].parse().unwrap()));
            (f[0].to_owned(), hit)
        })
        .collect()
}

#[test]
fn the_novelty_search_matches_vsearch_usearch_global_against_the_shipped_reference() {
    let dir = scratch("usearch_global");
    let queries = vsearch_dereplicated("sam1F.fasta", &dir);
    let reference_path = common::plugin_dir().join("data/rdp_gold_v4.fasta");
    let reference = shipped_reference();
    let mut index = WordIndex::new();
    for sequence in &reference.sequences {
        index.add(&sequence.sequence);
    }
    // The 500 most abundant of the 896 distinct reads keep a debug build under 15 s; all of
    // them agree as well.
    let uniques: Vec<_> = uniques(&queries).into_iter().take(500).collect();

    // vsearch's defaults (--maxaccepts 1 --maxrejects 32) at the novelty threshold: the same
    // hits, so the same sequences are novel.
    let out = dir.join("default.tsv");
    run(vsearch()
        .arg("--usearch_global")
        .arg(&queries)
        .arg("--db")
        .arg(&reference_path)
        .args(["--id", "0.97", "--output_no_hits", "--userfields", "query+target+id", "--userout"])
        .arg(&out));
    let expected = read_userout(&out);
    assert_eq!(expected.len(), 896);
    let params = SearchParams { identity: 0.97, max_accepts: 1, max_rejects: 32 };
    let results: Vec<_> =
        uniques.iter().map(|u| index.search(&u.sequence, &params, &VSEARCH_SCORING)).collect();
    let mut novel = 0;
    for (unique, found) in uniques.iter().zip(&results) {
        let ours =
            found.best_accepted.map(|hit| (reference.sequences[hit.target].id.clone(), hit.identity()));
        match (&expected[&unique.label], ours) {
            (None, None) => novel += 1,
            (Some((target, percent)), Some((ours_target, identity))) => {
                assert_eq!(target.split(';').next().unwrap(), ours_target, "{}", unique.label);
                assert!((100.0 * identity - percent).abs() <= 0.05 + 1e-9, "{}", unique.label);
            }
            (theirs, ours) => panic!("{}: vsearch {theirs:?}, plugin {ours:?}", unique.label),
        }
    }
    // Mouse-gut Bacteroidales are mostly uncultured: most reads are far from any type strain.
    assert!(novel > uniques.len() / 2, "{novel} of {}", uniques.len());

    // An exhaustive search (every target aligned) gives each query's true closest reference:
    // the plugin's best identity, from at most 32 candidates, is never above it and matches it
    // for nearly every query.
    let out = dir.join("exhaustive.tsv");
    run(vsearch()
        .arg("--usearch_global")
        .arg(&queries)
        .arg("--db")
        .arg(&reference_path)
        .args(["--id", "0.5", "--maxaccepts", "0", "--maxrejects", "0", "--maxhits", "1"])
        .args(["--output_no_hits", "--userfields", "query+target+id", "--userout"])
        .arg(&out));
    let exhaustive = read_userout(&out);
    let (mut equal, mut compared) = (0, 0);
    for (unique, found) in uniques.iter().zip(&results) {
        let Some(best) = found.best_accepted.or(found.best_aligned) else { continue };
        let Some((_, percent)) = &exhaustive[&unique.label] else { continue };
        compared += 1;
        let ours = 100.0 * best.identity();
        assert!(ours <= percent + 0.05 + 1e-9, "{}: {ours} above the exhaustive {percent}", unique.label);
        if (ours - percent).abs() <= 0.05 + 1e-9 {
            equal += 1;
        }
    }
    let share = equal as f64 / compared as f64;
    assert!(share >= 0.95, "best identity equal to the exhaustive search for {equal} of {compared}");
    eprintln!("best identity equal to the exhaustive search for {equal} of {compared} ({share:.3})");
}
