//! The `cvd` plugin through the real host: a paced nitride run streamed over the WebSocket, a
//! barrier-then-fill recipe through REST, and bad input ending as `invalid_input` naming the field.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use taskhost_e2e::Host;

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_nitride_run_streams_thickness_and_stress_warnings_and_returns_grove_physics() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    // The CVD notes' example recipe, paced at 1000 simulated seconds per second (~1.4 s).
    let id = host
        .submit(json!({"plugin": "cvd", "input": {
            "run_id": "CVD_RUN_20251114_103045",
            "recipe": {
                "mode": "thermal", "temperature_c": 800.0, "pressure_torr": 0.5,
                "precursor_flow_sccm": 80.0, "carrier_gas_flow_sccm": 500.0,
                "film_material": "Si3N4", "target_thickness_nm": 100.0, "duration_sec": 3600.0,
            },
            "simulation": {"speedup": 1000.0},
        }}))
        .await;
    let events = taskhost_e2e::read_task_stream(&host.ws(&format!("/ws/tasks/{id}"))).await;
    let types: Vec<&str> = events.iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"run_started"));
    assert_eq!(types.last(), Some(&"run_completed"), "{types:?}");

    // The domain events come in simulated-time order: step_started, then samples with warnings and
    // metrics among them, then step_completed.
    let position = |kind: &str| types.iter().position(|t| *t == kind).unwrap_or_else(|| panic!("no {kind}"));
    assert!(position("step_started") < position("warning"));
    assert!(position("warning") < position("metrics_update"));
    assert!(position("metrics_update") < position("step_completed"));
    // Our progress_update events (the host's own carry only percent and message) draw the chart.
    let samples: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "progress_update" && e["data"].get("current_thickness_nm").is_some())
        .map(|e| &e["data"])
        .collect();
    assert!(samples.len() > 100, "one sample every 10 simulated seconds: {}", samples.len());
    for pair in samples.windows(2) {
        assert!(pair[1]["time_sec"].as_f64() > pair[0]["time_sec"].as_f64());
        assert!(pair[1]["current_thickness_nm"].as_f64() > pair[0]["current_thickness_nm"].as_f64());
    }
    let last = samples.last().unwrap();
    assert_eq!(last["current_thickness_nm"], 100.0);
    assert_eq!(last["target_thickness_nm"], 100.0);
    assert_eq!(last["step_index"], 0);
    assert!((last["stress_mpa"].as_f64().unwrap() - 900.0).abs() < 1e-6, "{last}");
    let warning = &events[position("warning")]["data"]["warnings"];
    let kinds: Vec<&str> = warning.as_array().unwrap().iter().map(|w| w["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["high_tensile_stress", "adhesion_risk"]);
    assert!(warning[1]["recommendation"].is_string());

    // The result: LPCVD nitride is reaction-limited at a few nm/min and strongly tensile.
    let task = host.wait_finished(&id, MINUTE).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["queue"], "cvd_runs");
    assert_eq!(task["progress"], 100.0);
    let result = &task["result"];
    assert_eq!(result["run_id"], "CVD_RUN_20251114_103045");
    assert_eq!(result["metrics"]["thickness_mean_nm"], 100.0);
    let step = &result["steps"][0];
    assert_eq!(step["growth"]["regime"], "reaction_limited");
    let rate = step["growth"]["rate_nm_min"].as_f64().unwrap();
    assert!((3.0..6.0).contains(&rate), "{rate}");
    // Deposited at 800 °C, its calibration temperature: the 900 MPa of MEMS Exchange's
    // stoichiometric LPCVD nitride (process P3684).
    let stress = step["stress"]["total_mpa"].as_f64().unwrap();
    assert!((stress - 900.0).abs() < 1e-6, "{stress}");
    let duration = step["duration_sec"].as_f64().unwrap();
    assert!((duration - 100.0 / rate * 60.0).abs() < 1e-6, "{duration}");
    assert!(result["metrics"]["wafer"]["bow_um"].as_f64().unwrap() > 0.0);
    assert_eq!(events.last().unwrap()["data"]["result"], *result);
}

#[tokio::test]
async fn a_barrier_then_fill_recipe_runs_and_bad_input_names_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let (_, plugins) = host.call(Method::GET, "/api/v1/plugins", None).await;
    let cvd = plugins["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "cvd").expect("cvd loaded");
    assert_eq!(cvd["queue"], "cvd_runs", "{cvd}");

    let good = host
        .submit(json!({"plugin": "cvd", "input": {"steps": [
            {"temperature_c": 350.0, "film_material": "TiN", "target_thickness_nm": 20.0, "duration_sec": 300.0},
            {"temperature_c": 400.0, "film_material": "W", "target_thickness_nm": 200.0, "duration_sec": 1800.0},
        ]}}))
        .await;
    let bad = host
        .submit(json!({"plugin": "cvd", "input": {"steps": [
            {"temperature_c": 350.0, "film_material": "TiN", "duration_sec": 300.0},
            {"temperature_c": 400.0, "film_material": "W", "duration_sec": 60.0, "pressure_torr": -3.0},
        ]}}))
        .await;
    let unknown = host
        .submit(
            json!({"plugin": "cvd", "input": {"recipe": {"film_material": "GaN", "temperature_c": 900.0}}}),
        )
        .await;

    let task = host.wait_finished(&good, MINUTE).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let steps = task["result"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert!(steps.iter().all(|s| s["target_reached"] == true));
    assert_eq!(task["result"]["metrics"]["total_thickness_nm"], 220.0);
    // W at 400 °C, its calibration temperature: +1 GPa tensile, the top of the 0.1–1 GPa that
    // Leusink et al. (1993) report for thick CVD W; TiN has thermal-mismatch stress only.
    let w_stress = steps[1]["stress"]["total_mpa"].as_f64().unwrap();
    assert!((w_stress - 1000.0).abs() < 1e-6, "{w_stress}");
    assert_eq!(steps[0]["stress"]["intrinsic_mpa"], 0.0);
    let (_, events) = host.call(Method::GET, &format!("/api/v1/tasks/{good}/events"), None).await;
    let step_indices: Vec<u64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == "step_completed")
        .map(|e| e["data"]["index"].as_u64().unwrap())
        .collect();
    assert_eq!(step_indices, [0, 1]);

    for (id, field) in [(&bad, "steps[1].pressure_torr"), (&unknown, "recipe.film_material")] {
        let task = host.wait_finished(id, MINUTE).await;
        assert_eq!(task["status"], "failed", "{task}");
        assert_eq!(task["error"]["kind"], "invalid_input", "{task}");
        let message = task["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
    }
}

#[tokio::test]
async fn a_paced_run_is_cancelled_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    // 1414 simulated seconds at 20x: about 70 s if left alone.
    let id = host
        .submit(json!({"plugin": "cvd", "input": {
            "recipe": {"film_material": "Si3N4", "temperature_c": 800.0, "pressure_torr": 0.5,
                       "precursor_flow_sccm": 80.0, "carrier_gas_flow_sccm": 500.0, "target_thickness_nm": 100.0},
            "simulation": {"speedup": 20.0},
        }}))
        .await;
    host.wait_for(&id, MINUTE, |t| t["progress"].as_f64().unwrap_or(0.0) > 0.0).await;
    let asked = std::time::Instant::now();
    let (status, _) = host.call(Method::POST, &format!("/api/v1/tasks/{id}/cancel"), None).await;
    assert!(status == 200 || status == 202, "cancel answered {status}");
    let task = host.wait_finished(&id, MINUTE).await;
    assert_eq!(task["status"], "cancelled", "{task}");
    assert!(asked.elapsed() < Duration::from_secs(5), "stopped after {:?}", asked.elapsed());
    assert!(task["progress"].as_f64().unwrap() < 50.0);
}
