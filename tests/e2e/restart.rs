//! Nothing accepted is lost: crashes, restarts and drains.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use taskhost_e2e::{Host, HostOptions};

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_task_running_when_the_host_is_killed_runs_again_after_restart_and_queued_ones_survive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut options = HostOptions::new(&data);
    options.concurrency = 1;
    let host = Host::start_with(options).await.unwrap();
    let long =
        host.submit(json!({"plugin": "hello", "input": {"name": "survivor", "spin_ms": 60_000}})).await;
    let queued: Vec<String> = futures::future::join_all(
        (0..3).map(|i| host.submit(json!({"plugin": "hello", "input": {"name": format!("q{i}")}}))),
    )
    .await;
    host.wait_for(&long, MINUTE, |t| t["status"] == "running" && t["progress"].as_f64().unwrap_or(0.0) > 0.0)
        .await;
    host.kill(); // SIGKILL: no drain, no goodbye

    let mut options = HostOptions::new(&data);
    options.concurrency = 2;
    let host = Host::start_with(options).await.unwrap();
    // The interrupted task runs again (attempt 2); cancel it to keep the test short once it has.
    let task = host.wait_for(&long, MINUTE, |t| t["status"] == "running" && t["attempts"] == 2).await;
    assert_eq!(task["attempts"], 2, "{task}");
    for id in &queued {
        let t = host.wait_finished(id, MINUTE).await;
        assert_eq!(t["status"], "succeeded", "{t}");
        assert_eq!(t["attempts"], 1);
    }
    host.call(Method::POST, &format!("/api/v1/tasks/{long}/cancel"), None).await;
    let t = host.wait_finished(&long, MINUTE).await;
    assert_eq!(t["status"], "cancelled");
    // The first attempt's events survived the crash.
    let (_, events) = host.call(Method::GET, &format!("/api/v1/tasks/{long}/events"), None).await;
    let started: Vec<u64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == "run_started")
        .map(|e| e["data"]["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(started, vec![1, 2]);
}

#[tokio::test]
async fn finished_tasks_and_their_results_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = Host::start_with(HostOptions::new(&data)).await.unwrap();
    let id = host.submit(json!({"plugin": "hello", "input": {"name": "kept"}})).await;
    let before = host.wait_finished(&id, MINUTE).await;
    assert!(host.terminate(Duration::from_secs(30)), "clean exit on SIGTERM");
    let host = Host::start_with(HostOptions::new(&data)).await.unwrap();
    let after = host.task(&id).await;
    assert_eq!(before, after);
}

#[tokio::test]
async fn sigterm_lets_running_tasks_finish_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = Host::start_with(HostOptions::new(&data)).await.unwrap();
    let id = host.submit(json!({"plugin": "hello", "input": {"name": "graceful", "spin_ms": 1_000}})).await;
    host.wait_for(&id, MINUTE, |t| t["status"] == "running").await;
    assert!(host.terminate(Duration::from_secs(30)), "clean exit on SIGTERM");
    let host = Host::start_with(HostOptions::new(&data)).await.unwrap();
    let task = host.task(&id).await;
    assert_eq!(task["status"], "succeeded", "finished during the grace period: {task}");
    assert_eq!(task["attempts"], 1);
}

#[tokio::test]
async fn a_task_longer_than_the_grace_period_is_handed_back_and_runs_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut options = HostOptions::new(&data);
    options.grace_secs = 0.3;
    let host = Host::start_with(options).await.unwrap();
    let id =
        host.submit(json!({"plugin": "hello", "input": {"name": "handed back", "spin_ms": 60_000}})).await;
    host.wait_for(&id, MINUTE, |t| t["status"] == "running").await;
    assert!(host.terminate(Duration::from_secs(30)), "clean exit on SIGTERM");
    let host = Host::start_with(HostOptions::new(&data)).await.unwrap();
    let task = host.wait_for(&id, MINUTE, |t| t["status"] == "running").await;
    // Released, not failed: the interrupted attempt does not count.
    assert_eq!(task["attempts"], 1, "{task}");
}

#[tokio::test]
async fn two_hosts_cannot_share_one_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _first = Host::start_with(HostOptions::new(&data)).await.unwrap();
    let second = Host::start_with(HostOptions::new(&data)).await;
    let Err(err) = second else { panic!("the second host must refuse to start") };
    let err = err.to_string();
    assert!(err.contains("taskhost.lock"), "{err}");
}
