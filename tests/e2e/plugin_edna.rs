//! The `edna` plugin through the real host: a full analysis of real mouse-gut 16S V4 reads
//! streamed over the WebSocket (stages in order, novel sequences flagged), a result whose
//! community and diversity hold together, and bad input ending as `invalid_input` naming the
//! field.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use taskhost_e2e::{Host, repo_root};

const MINUTE: Duration = Duration::from_secs(60);

/// The first `reads` reads of the MiSeq SOP mouse-gut sample that r-bioc-dada2 ships
/// (fetched from Debian by the plugin's `oracle/fetch_test_data.sh`), as FASTA text.
fn mouse_gut_reads(reads: usize) -> String {
    let root = repo_root();
    let dest = root.join("target/edna-testdata");
    let output = Command::new("sh")
        .arg(root.join("plugins/edna/oracle/fetch_test_data.sh"))
        .arg(&dest)
        .output()
        .expect("running fetch_test_data.sh");
    assert!(
        output.status.success(),
        "fetching the test data failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join("sam1F.fasta");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().take(2 * reads).map(|line| format!("{line}\n")).collect()
}

#[tokio::test]
async fn a_full_edna_analysis_streams_its_stages_and_finds_a_bacteroidetes_dominated_gut() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let fasta = mouse_gut_reads(600);
    let id = host
        .submit(json!({"plugin": "edna", "input": {"fasta": fasta, "analysis_type": "full", "seed": 1}}))
        .await;
    let events = taskhost_e2e::read_task_stream(&host.ws(&format!("/ws/tasks/{id}"))).await;
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless");
    let types: Vec<&str> = events.iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"run_started"));
    assert_eq!(types.last(), Some(&"run_completed"), "{types:?}");
    assert!(types.contains(&"progress_update"));

    // The stages, in order, each started then completed, with the novel sequences inside the
    // novelty stage.
    let stages: Vec<String> = events
        .iter()
        .filter(|e| e["event_type"].as_str().is_some_and(|t| t.starts_with("stage_")))
        .map(|e| format!("{} {}", e["event_type"].as_str().unwrap(), e["data"]["stage"].as_str().unwrap()))
        .collect();
    let expected: Vec<String> = ["dereplication", "classification", "clustering", "novelty", "diversity"]
        .iter()
        .flat_map(|s| [format!("stage_started {s}"), format!("stage_completed {s}")])
        .collect();
    assert_eq!(stages, expected);
    let position = |kind: &str, stage: &str| {
        events.iter().position(|e| e["event_type"] == kind && e["data"]["stage"] == stage).unwrap()
    };
    let novel: Vec<usize> =
        types.iter().enumerate().filter(|(_, t)| **t == "novel_sequence").map(|(i, _)| i).collect();
    assert!(!novel.is_empty(), "uncultured gut Bacteroidales are far from every type strain");
    assert!(
        novel
            .iter()
            .all(|&i| i > position("stage_started", "novelty") && i < position("stage_completed", "novelty"))
    );
    for &i in &novel {
        let data = &events[i]["data"];
        assert!(data["identity"].as_f64().unwrap() < data["identity_threshold"].as_f64().unwrap(), "{data}");
    }
    let clustering = &events[position("stage_completed", "clustering")]["data"]["summary"];
    assert!(clustering["otus"].as_u64().unwrap() > 10, "{clustering}");

    // The result.
    let task = host.wait_finished(&id, MINUTE).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["progress"], 100.0);
    let result = &task["result"];
    assert_eq!(result["dataset"]["total_abundance"], 600);
    assert_eq!(result["reference"]["name"], "rdp_gold_v4");
    assert_eq!(result["reference"]["sequences"], 1179);
    let otus = result["otus"].as_array().unwrap();
    let abundances: Vec<f64> = otus.iter().map(|o| o["abundance"].as_f64().unwrap()).collect();
    assert_eq!(abundances.iter().sum::<f64>(), 600.0);
    // Shannon (natural log) and Simpson recomputed from the OTU table.
    let shannon: f64 = abundances.iter().map(|n| n / 600.0).map(|p| -p * p.ln()).sum();
    let simpson: f64 = 1.0 - abundances.iter().map(|n| (n / 600.0).powi(2)).sum::<f64>();
    let diversity = &result["diversity"]["otus"];
    assert_eq!(diversity["observed"].as_u64().unwrap() as usize, otus.len());
    assert!((diversity["shannon"].as_f64().unwrap() - shannon).abs() < 1e-9, "{diversity}");
    assert!((diversity["simpson"].as_f64().unwrap() - simpson).abs() < 1e-9, "{diversity}");
    // The mouse gut of the MiSeq SOP is dominated by Bacteroidetes.
    let phyla = result["taxonomy"]["by_rank"]["phylum"].as_array().unwrap();
    assert_eq!(phyla[0]["taxon"], "Bacteroidetes", "{phyla:?}");
    assert!(phyla[0]["abundance"].as_u64().unwrap() > 300);
    let first = &result["sequences"][0];
    assert!(first["taxonomy"]["confidence"][0].as_f64().unwrap() >= 0.8, "{first}");
    assert!(result["novelty"]["novel_sequences"].as_u64().unwrap() as usize >= novel.len());
    let (_, stored) = host.call(Method::GET, &format!("/api/v1/tasks/{id}/events"), None).await;
    assert_eq!(stored["events"].as_array().unwrap().len(), events.len());
}

#[tokio::test]
async fn bad_edna_input_ends_as_invalid_input_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let read = "TACGGAGGATCCGAGCGTTATCCGGATTTATTGGGTTTAAAGGGAGCGTAGATGGATATTTAAGTCAGTTGTGAAAGTTTGCGG";
    let cases = [
        (json!({"fasta": ">r1\nACXT\n"}), "fasta: line 2: `X`"),
        (
            json!({"fasta": format!(">r1\n{read}\n"), "min_confidence": 1.5}),
            "min_confidence: must be a fraction",
        ),
        (
            json!({"fasta": format!(">r1\n{read}\n"), "analysis_type": "phylogeny"}),
            "analysis_type: unknown variant",
        ),
        (json!({"fasta": format!(">r1\n{read}\n"), "otu_identitty": 0.97}), "otu_identitty: unknown field"),
        (json!({"fasta": ">r1\nACGT\n"}), "fasta: no sequence of at least 32 bases"),
        (json!({"analysis_type": "full"}), "fasta: missing"),
        (json!({"fasta_file": "../secrets"}), "fasta_file:"),
        (json!({"fasta_file": "sample.fasta"}), "fasta_file: no file `sample.fasta` under /input"),
        (
            json!({"fasta": format!(">r1\n{read}\n"), "reference_fasta": ">x\nACGT\n"}),
            "reference_fasta: `x`: no taxonomy",
        ),
    ];
    let mut ids = Vec::new();
    for (input, _) in &cases {
        ids.push(host.submit(json!({"plugin": "edna", "input": input})).await);
    }
    for (id, (input, expected)) in ids.iter().zip(&cases) {
        let task = host.wait_finished(id, MINUTE).await;
        assert_eq!(task["status"], "failed", "{input}: {task}");
        assert_eq!(task["error"]["kind"], "invalid_input", "{input}: {task}");
        let message = task["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{input}: {message}");
        assert_eq!(task["attempts"], 1);
    }
}

#[tokio::test]
async fn a_fasta_uploaded_to_the_file_area_is_analysed_from_input() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let fasta = mouse_gut_reads(1_500);
    let http = reqwest::Client::new();
    let put =
        http.put(format!("{}/api/v1/files/sam1F.fasta", host.base)).body(fasta.clone()).send().await.unwrap();
    assert_eq!(put.status(), 201);
    let from_file = host
        .submit(json!({"plugin": "edna", "input": {"fasta_file": "sam1F.fasta", "analysis_type": "clustering", "seed": 1}, "files": ["sam1F.fasta"]}))
        .await;
    let inline = host
        .submit(
            json!({"plugin": "edna", "input": {"fasta": fasta, "analysis_type": "clustering", "seed": 1}}),
        )
        .await;
    let a = host.wait_finished(&from_file, Duration::from_secs(120)).await;
    let b = host.wait_finished(&inline, Duration::from_secs(120)).await;
    assert_eq!(a["status"], "succeeded", "{a}");
    assert_eq!(a["result"], b["result"], "the same reads give the same analysis, from a file or inline");
}
