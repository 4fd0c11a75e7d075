//! The `dft` plugin through the real host and API: a Si job's steps and SCF iterations stream in
//! order over the WebSocket with the published PBE numbers in the result; the real RHF runs by its
//! task name; supercells are extensive; bad input and an SCF that does not converge fail clearly.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use taskhost_e2e::{Host, repo_root};

const MINUTE: Duration = Duration::from_secs(60);

fn require_plugin() {
    assert!(
        repo_root().join("plugins/dft/dft.wasm").is_file(),
        "plugins/dft/dft.wasm is missing: run `cargo xtask plugins` first"
    );
}

async fn stored_events(host: &Host, id: &str) -> Vec<Value> {
    let (_, events) = host.call(Method::GET, &format!("/api/v1/tasks/{id}/events"), None).await;
    events["events"].as_array().unwrap().clone()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test]
async fn a_silicon_job_streams_its_steps_and_scf_iterations_in_order() {
    require_plugin();
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    // pace_ms slows the job so that the watcher joins while it runs; results do not depend on it.
    let id = host.submit(json!({"plugin": "dft", "input": {"preset": "Si", "seed": 7, "pace_ms": 40}})).await;
    let events = taskhost_e2e::read_task_stream(&host.ws(&format!("/ws/tasks/{id}"))).await;
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gapless, in order");

    let domain: Vec<&Value> = events
        .iter()
        .filter(|e| {
            !matches!(
                e["event_type"].as_str(),
                Some("progress_update" | "log" | "run_started" | "run_completed")
            )
        })
        .collect();
    let types: Vec<&str> = domain.iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    let steps: Vec<&str> = domain
        .iter()
        .filter(|e| e["event_type"] == "step_started")
        .map(|e| e["data"]["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["setup", "scf", "bands", "forces"]);
    let position =
        |t: &str| types.iter().position(|x| *x == t).unwrap_or_else(|| panic!("no {t} in {types:?}"));
    let iterations: Vec<&&Value> = domain.iter().filter(|e| e["event_type"] == "scf_iteration").collect();
    assert!((5..=20).contains(&iterations.len()), "{} SCF iterations", iterations.len());
    let numbers: Vec<u64> = iterations.iter().map(|e| e["data"]["iteration"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>());
    for e in &iterations {
        for field in ["energy_ev", "delta_e_ev", "residual"] {
            assert!(e["data"][field].is_f64(), "{field} in {e}");
        }
    }
    assert_eq!(iterations.last().unwrap()["data"]["converged"], true);
    assert!(position("scf_converged") > types.iter().rposition(|t| *t == "scf_iteration").unwrap());
    assert!(position("band_gap") > position("scf_converged"));
    assert!(position("forces") > position("band_gap"));

    let last = events.last().unwrap();
    assert_eq!(last["event_type"], "run_completed");
    let task = host.wait_finished(&id, MINUTE).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["task"], "dft_job");
    assert_eq!(task["queue"], "simulations");
    assert_eq!(task["progress"], 100.0);
    let result = &task["result"];
    assert!((f(&result["binding_energy_per_atom_ev"]) + 4.55).abs() < 1e-5, "{result}");
    let gap = &result["band_gap"];
    assert!((f(&gap["gap_ev"]) - 0.61).abs() < 1e-9);
    assert_eq!(gap["kind"], "indirect");
    assert_eq!(gap["vbm_kpoint"]["label"], "Γ");
    assert!(f(&gap["gap_ev"]) < f(&result["reference"]["band_gap_experiment_ev"]), "PBE underestimates");
    assert!(f(&result["max_force_ev_per_ang"]) < 1e-9);
    assert_eq!(result["scf"]["iterations"].as_u64().unwrap() as usize, iterations.len());
}

#[tokio::test]
async fn the_rhf_task_reproduces_szabo_and_ostlund_and_supercells_are_extensive() {
    require_plugin();
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let heh = host
        .submit(json!({"plugin": "rhf", "input": {"preset": "HeH+", "slater_exponents": {"He": 2.0925}}}))
        .await;
    let h2 = host.submit(json!({"plugin": "dft", "input": {"method": "rhf", "preset": "H2"}})).await;
    let cell =
        host.submit(json!({"plugin": "dft", "input": {"preset": "Ge", "scf_tolerance_ev": 1e-9}})).await;
    let big = host
        .submit(json!({"plugin": "dft", "input": {"preset": "Ge", "supercell": [2, 2, 1], "scf_tolerance_ev": 1e-9}}))
        .await;
    let rattled = host
        .submit(json!({"plugin": "dft", "input": {"preset": "Si", "supercell": [2, 1, 1], "rattle_ang": 0.03, "seed": 5}}))
        .await;

    let task = host.wait_finished(&heh, MINUTE).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["task"], "rhf");
    // Szabo and Ostlund, Appendix B: −2.860662 hartree (PySCF with the same basis: −2.8606585).
    assert!((f(&task["result"]["total_energy_hartree"]) + 2.860_66).abs() < 1e-5, "{}", task["result"]);
    let events = stored_events(&host, &heh).await;
    let scf: Vec<&Value> = events.iter().filter(|e| e["event_type"] == "scf_iteration").collect();
    assert!(scf.len() >= 5 && scf.iter().all(|e| e["data"]["energy_hartree"].is_f64()));

    let task = host.wait_finished(&h2, MINUTE).await;
    assert!((f(&task["result"]["total_energy_hartree"]) + 1.116_714).abs() < 1e-5, "{task}");

    let (one, four) = (host.wait_finished(&cell, MINUTE).await, host.wait_finished(&big, MINUTE).await);
    let (e1, e4) = (f(&one["result"]["total_energy_ev"]), f(&four["result"]["total_energy_ev"]));
    assert!((e4 - 4.0 * e1).abs() < 1e-6, "{e4} vs 4 × {e1}");
    assert_eq!(four["result"]["band_gap"]["gap_ev"], 0.0, "PBE closes germanium's gap");

    let task = host.wait_finished(&rattled, MINUTE).await;
    let result = &task["result"];
    let net: f64 = result["net_force_ev_per_ang"].as_array().unwrap().iter().map(|x| f(x).abs()).sum();
    assert!(net < 1e-9 && f(&result["max_force_ev_per_ang"]) > 0.05, "{result}");
    let events = stored_events(&host, &rattled).await;
    assert!(
        events.iter().any(|e| e["event_type"] == "warning" && e["data"]["code"] == "unrelaxed_structure")
    );
}

#[tokio::test]
async fn bad_input_names_its_field_and_an_unconverged_scf_fails_clearly() {
    require_plugin();
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let cases = [
        (json!({"preset": "Si", "supercell": [9, 1, 1]}), "supercell"),
        (json!({"preset": "Si", "ratle_ang": 0.1}), "ratle_ang"),
        (json!({"preset": "H2O", "method": "rhf"}), "preset"),
        (
            json!({"structure": {"species": ["Si", "Xe"], "positions_ang": [[0, 0, 0], [2, 0, 0]]}}),
            "structure.species[1]",
        ),
    ];
    let mut ids = Vec::new();
    for (input, _) in &cases {
        ids.push(host.submit(json!({"plugin": "dft", "input": input})).await);
    }
    for (id, (input, field)) in ids.iter().zip(&cases) {
        let task = host.wait_finished(id, MINUTE).await;
        assert_eq!(task["status"], "failed", "{input}: {task}");
        assert_eq!(task["error"]["kind"], "invalid_input", "{input}: {task}");
        let message = task["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("{field}:")), "{input}: {message}");
    }

    let id = host.submit(json!({"plugin": "dft", "input": {"preset": "Si", "max_scf": 3}})).await;
    let task = host.wait_finished(&id, MINUTE).await;
    assert_eq!(task["status"], "failed");
    assert_eq!(task["error"]["kind"], "plugin_error");
    assert!(task["error"]["message"].as_str().unwrap().contains("scf_not_converged"), "{task}");
    let events = stored_events(&host, &id).await;
    let types: Vec<&str> = events.iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types.iter().filter(|t| **t == "scf_iteration").count(), 3);
    assert!(types.contains(&"scf_not_converged") && !types.contains(&"scf_converged"), "{types:?}");
}

#[tokio::test]
async fn a_paced_job_stops_promptly_when_cancelled() {
    require_plugin();
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let id = host
        .submit(
            json!({"plugin": "dft", "input": {"preset": "Si", "scf_tolerance_ev": 1e-10, "pace_ms": 1000}}),
        )
        .await;
    host.wait_for(&id, MINUTE, |t| t["progress"].as_f64().unwrap_or(0.0) >= 5.0).await;
    let asked = std::time::Instant::now();
    let (status, _) = host.call(Method::POST, &format!("/api/v1/tasks/{id}/cancel"), None).await;
    assert_eq!(status, 200);
    let task = host.wait_finished(&id, MINUTE).await;
    assert_eq!(task["status"], "cancelled", "{task}");
    assert!(asked.elapsed() < Duration::from_secs(2), "{:?}", asked.elapsed());
}
