//! The plugin's diversity indices against scikit-bio's, on real abundance tables: the OTUs and
//! the distinct reads of the MiSeq SOP mouse-gut sample, swarm's amplicon abundances, and small
//! edge cases.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;

use common::{python, uniques};
use edna::align::VSEARCH_SCORING;
use edna::cluster::cluster_by_abundance;
use edna::diversity::diversity;
use edna::search::SearchParams;
use taskhost_sdk::serde_json::{self, Value, json};

#[test]
fn diversity_matches_scikit_bio() {
    let mut samples: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mouse = uniques(&common::test_data().join("sam1F.fasta"));
    samples.insert("mouse_gut_unique_reads".into(), mouse.iter().map(|u| u.abundance).collect());
    let sequences: Vec<&[u8]> = mouse.iter().map(|u| u.sequence.as_slice()).collect();
    let params = SearchParams { identity: 0.97, max_accepts: 1, max_rejects: 32 };
    let clustering =
        cluster_by_abundance(&sequences, &params, &VSEARCH_SCORING, |_| Ok::<(), ()>(())).unwrap();
    samples.insert(
        "mouse_gut_otus".into(),
        clustering.otus.iter().map(|otu| otu.members.iter().map(|&m| mouse[m].abundance).sum()).collect(),
    );
    let swarm = edna::fasta::parse(&common::read_test_file("swarm_input.fasta"), 5_000).unwrap();
    samples.insert("swarm_amplicons".into(), swarm.iter().map(|r| r.abundance).collect());
    samples.insert("one_unit".into(), vec![7]);
    samples.insert("even".into(), vec![5, 5, 5, 5]);
    samples.insert("all_singletons".into(), vec![1; 10]);
    samples.insert("no_doubletons".into(), vec![1, 1, 1, 3, 9, 27]);

    let mut child = python()
        .arg(common::plugin_dir().join("oracle/diversity.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the oracle's Python");
    let request = json!({ "samples": samples });
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "diversity.py failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let reply: Value = serde_json::from_slice(&output.stdout).unwrap();

    for (name, counts) in &samples {
        let ours = diversity(counts).unwrap();
        let theirs = &reply["samples"][name];
        assert_eq!(ours.observed as u64, theirs["observed"].as_u64().unwrap(), "{name}");
        for (field, value) in [
            ("shannon", ours.shannon),
            ("simpson", ours.simpson),
            ("chao1", ours.chao1),
            ("goods_coverage", ours.goods_coverage),
        ] {
            let expected = theirs[field].as_f64().unwrap();
            assert!(
                (value - expected).abs() <= 1e-12 * expected.abs().max(1.0),
                "{name}.{field}: {value} vs scikit-bio {expected} ({})",
                reply["skbio"]
            );
        }
    }
}
