//! Tasks through the API: success, plugin errors, hostile outcomes, retries, cancellation.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use taskhost_e2e::Host;

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_task_succeeds_with_its_result_progress_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let id = host.submit(json!({"plugin": "hello", "input": {"name": "Ada", "spin_ms": 300}})).await;
    let task = host.wait_finished(&id, MINUTE).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["result"]["greeting"], "Hello, Ada!");
    assert_eq!(task["progress"], 100.0);
    assert_eq!(task["attempts"], 1);
    assert_eq!(task["tenant"], "default");
    for field in ["created_at", "started_at", "finished_at"] {
        assert!(task[field].as_str().unwrap().ends_with('Z'), "{field}: {task}");
    }
    let (_, events) = host.call(Method::GET, &format!("/api/v1/tasks/{id}/events"), None).await;
    let events = events["events"].as_array().unwrap().clone();
    let types: Vec<&str> = events.iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"run_started"));
    assert_eq!(types.last(), Some(&"run_completed"));
    assert!(types.contains(&"progress_update") && types.contains(&"log"), "{types:?}");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "sequence ids are gapless");
    // `since` returns only what follows.
    let (_, later) = host.call(Method::GET, &format!("/api/v1/tasks/{id}/events?since=2"), None).await;
    assert_eq!(later["events"][0]["seq"], 3);
}

#[tokio::test]
async fn failures_show_their_kind_and_the_host_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let cases = [
        (json!({"plugin": "hello", "input": {"name": "x", "fail": "no reagent"}}), "plugin_error"),
        (json!({"plugin": "hello", "input": {"name": 5}}), "invalid_input"),
        (
            json!({"plugin": "hostile", "input": {"mode": "endless_loop"}, "limits": {"fuel": 100_000_000}}),
            "out_of_fuel",
        ),
        (
            json!({"plugin": "hostile", "input": {"mode": "endless_loop"}, "limits": {"timeout_ms": 300}}),
            "deadline_exceeded",
        ),
        (
            json!({"plugin": "hostile", "input": {"mode": "unbounded_alloc"}, "limits": {"memory_mb": 32}}),
            "memory_limit",
        ),
        (json!({"plugin": "hostile", "input": {"mode": "panic", "message": "boom"}}), "trapped"),
        (json!({"plugin": "hostile", "input": {"mode": "huge_output", "mb": 100}}), "output_too_large"),
        (json!({"plugin": "hostile", "input": {"mode": "event_flood", "count": 1_000_000}}), "event_limit"),
    ];
    let mut ids = Vec::new();
    for (body, _) in &cases {
        ids.push(host.submit(body.clone()).await);
    }
    for (id, (_, kind)) in ids.iter().zip(&cases) {
        let task = host.wait_finished(id, MINUTE).await;
        assert_eq!(task["status"], "failed", "{task}");
        assert_eq!(task["error"]["kind"], *kind, "{task}");
        assert!(!task["error"]["message"].as_str().unwrap().is_empty());
        assert_eq!(task["attempts"], 1, "{kind} is not retried");
    }
    let id = host.submit(json!({"plugin": "hello", "input": {"name": "after the storm"}})).await;
    assert_eq!(host.wait_finished(&id, MINUTE).await["status"], "succeeded");
}

#[tokio::test]
async fn queue_counts_show_a_submission_to_this_host_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = taskhost_e2e::HostOptions::new(&dir.path().join("data"));
    options.concurrency = 1;
    let host = Host::start_with(options).await.unwrap();
    let running = host.submit(json!({"plugin": "hostile", "input": {"mode": "endless_loop"}})).await;
    host.wait_for(&running, MINUTE, |t| t["status"] == "running").await;
    let pending = |reply: &serde_json::Value| {
        reply["queues"].as_array().unwrap().iter().map(|q| q["pending"].as_u64().unwrap()).sum::<u64>()
    };
    // The first read leaves a fresh snapshot behind; the submission must not be hidden by it.
    let (_, before) = host.call(Method::GET, "/api/v1/queues", None).await;
    host.submit(json!({"plugin": "hello", "input": {"name": "waits"}})).await;
    let (_, after) = host.call(Method::GET, "/api/v1/queues", None).await;
    assert_eq!(pending(&after), pending(&before) + 1, "{before} then {after}");
    let (status, _) = host.call(Method::POST, &format!("/api/v1/tasks/{running}/cancel"), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_running_task_is_cancelled_promptly_and_a_queued_one_never_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = taskhost_e2e::HostOptions::new(&dir.path().join("data"));
    options.concurrency = 1;
    let host = Host::start_with(options).await.unwrap();
    let running = host.submit(json!({"plugin": "hostile", "input": {"mode": "endless_loop"}})).await;
    let queued = host.submit(json!({"plugin": "hello", "input": {"name": "never"}})).await;
    host.wait_for(&running, MINUTE, |t| t["status"] == "running").await;

    let (status, reply) = host.call(Method::POST, &format!("/api/v1/tasks/{queued}/cancel"), None).await;
    assert_eq!(status, 200);
    assert_eq!(reply["cancel"], "cancelled");

    let asked = Instant::now();
    let (status, reply) = host.call(Method::POST, &format!("/api/v1/tasks/{running}/cancel"), None).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["cancel"], "requested");
    let task = host.wait_finished(&running, MINUTE).await;
    let took = asked.elapsed();
    assert_eq!(task["status"], "cancelled", "{task}");
    assert_eq!(task["error"]["kind"], "cancelled");
    // Generous bound for CI (includes HTTP polling); BENCHMARKS.md has the sandbox's own figure.
    assert!(took < Duration::from_secs(2), "cancel took {took:?}");

    let never = host.task(&queued).await;
    assert_eq!(never["status"], "cancelled");
    assert_eq!(never["attempts"], 0, "a cancelled queued task never starts");
    let (status, again) = host.call(Method::POST, &format!("/api/v1/tasks/{running}/cancel"), None).await;
    assert_eq!((status, again["cancel"].as_str()), (200, Some("already_finished")));
}

#[tokio::test]
async fn delayed_tasks_wait_and_expired_ones_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let submitted = Instant::now();
    let delayed = host.submit(json!({"plugin": "hello", "input": {"name": "later"}, "delay_ms": 700})).await;
    assert_eq!(host.task(&delayed).await["status"], "scheduled");
    let task = host.wait_finished(&delayed, MINUTE).await;
    assert_eq!(task["status"], "succeeded");
    assert!(submitted.elapsed() >= Duration::from_millis(700));

    let past = "2000-01-01T00:00:00Z";
    let expired =
        host.submit(json!({"plugin": "hello", "input": {"name": "too late"}, "expires": past})).await;
    let task = host.wait_finished(&expired, MINUTE).await;
    assert_eq!(task["status"], "expired", "{task}");
    assert_eq!(task["attempts"], 0);
}

#[tokio::test]
async fn a_silent_running_task_is_flagged_stale_with_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = taskhost_e2e::HostOptions::new(&dir.path().join("data"));
    options.extra = vec!["--stale-after".into(), "0.3".into()];
    let host = Host::start_with(options).await.unwrap();
    // `sleep` blocks in one WASI call: no progress, no events, no logs.
    let id = host.submit(json!({"plugin": "hostile", "input": {"mode": "sleep", "ms": 60_000}})).await;
    let task = host.wait_for(&id, MINUTE, |t| t["stale"] == true).await;
    assert_eq!(task["status"], "running");
    let (_, events) = host.call(Method::GET, &format!("/api/v1/tasks/{id}/events"), None).await;
    let stale = events["events"].as_array().unwrap().iter().find(|e| e["event_type"] == "run_stale").cloned();
    let stale = stale.expect("a run_stale event");
    assert!(stale["data"]["silent_ms"].as_u64().unwrap() >= 300, "{stale}");
    let (_, listed) = host.call(Method::GET, "/api/v1/tasks?status=running", None).await;
    assert_eq!(listed["tasks"][0]["stale"], true);
    host.call(Method::POST, &format!("/api/v1/tasks/{id}/cancel"), None).await;
    assert_eq!(host.wait_finished(&id, MINUTE).await["stale"], false);
}

#[tokio::test]
async fn a_task_whose_file_was_deleted_before_it_started_fails_as_invalid_input_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let http = reqwest::Client::new();
    let put =
        http.put(format!("{}/api/v1/files/samples.csv", host.base)).body("a,b\n1,2\n").send().await.unwrap();
    assert_eq!(put.status(), 201);
    // Accepted while the file is there; it starts only later.
    let id = host
        .submit(json!({"plugin": "hostile", "input": {"mode": "read_file", "path": "/input/samples.csv"},
                       "files": ["samples.csv"], "delay_ms": 1500}))
        .await;
    let deleted = http.delete(format!("{}/api/v1/files/samples.csv", host.base)).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    let (_, before) = host.call(Method::GET, &format!("/api/v1/tasks/{id}"), None).await;
    assert_eq!(before["status"], "scheduled", "the file was deleted before the task started: {before}");

    let task = host.wait_finished(&id, MINUTE).await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error"]["kind"], "invalid_input", "{task}");
    assert!(task["error"]["message"].as_str().unwrap().contains("samples.csv"), "{task}");
    // The attempt's events, as on every backend: it started, then failed.
    let (_, events) = host.call(Method::GET, &format!("/api/v1/tasks/{id}/events"), None).await;
    let kinds: Vec<&str> =
        events["events"].as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"run_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_failed"), "{kinds:?}");
    // The host goes on: the next task runs.
    let next = host.submit(json!({"plugin": "hello", "input": {"name": "after"}})).await;
    assert_eq!(host.wait_finished(&next, MINUTE).await["status"], "succeeded");
}

#[tokio::test]
async fn files_uploaded_to_the_file_area_are_read_only_under_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = taskhost_e2e::HostOptions::new(&dir.path().join("data"));
    options.extra = vec!["--max-file-bytes".into(), "2000000".into()];
    let host = Host::start_with(options).await.unwrap();
    let http = reqwest::Client::new();
    let fasta = ">seq1 Escherichia coli\nAGAGTTTGATCCTGGCTCAG\n".repeat(20_000); // 860 KB: too big for a JSON body
    let put =
        http.put(format!("{}/api/v1/files/reads.fasta", host.base)).body(fasta.clone()).send().await.unwrap();
    assert_eq!(put.status(), 201);
    let info: serde_json::Value = put.json().await.unwrap();
    assert_eq!(info["size"], fasta.len() as u64);
    let (_, listed) = host.call(Method::GET, "/api/v1/files", None).await;
    assert_eq!(listed["files"][0]["name"], "reads.fasta");
    let back = http
        .get(format!("{}/api/v1/files/reads.fasta", host.base))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(back.as_ref(), fasta.as_bytes());

    // The task names the file and reads it at /input; it cannot write there.
    let id = host
        .submit(json!({"plugin": "hostile", "input": {"mode": "read_file", "path": "/input/reads.fasta"}, "files": ["reads.fasta"]}))
        .await;
    let task = host.wait_finished(&id, MINUTE).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["files"], json!(["reads.fasta"]));
    assert_eq!(task["result"]["content"].as_str().unwrap().len(), fasta.len());
    let id = host
        .submit(json!({"plugin": "hostile", "input": {"mode": "write_file", "path": "/input/reads.fasta"}, "files": ["reads.fasta"]}))
        .await;
    assert_eq!(host.wait_finished(&id, MINUTE).await["error"]["kind"], "plugin_error");
    // Without naming it, the file is not there.
    let id = host
        .submit(json!({"plugin": "hostile", "input": {"mode": "read_file", "path": "/input/reads.fasta"}}))
        .await;
    assert_eq!(host.wait_finished(&id, MINUTE).await["error"]["kind"], "plugin_error");

    // Bad requests.
    let (status, body) = host
        .call(
            Method::POST,
            "/api/v1/tasks",
            Some(json!({"plugin": "hello", "input": {"name": "x"}, "files": ["missing.fasta"]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let too_big =
        http.put(format!("{}/api/v1/files/big.bin", host.base)).body(vec![0u8; 3_000_000]).send().await;
    // The server answers 413 as soon as the body passes the limit; the client may see that or a
    // reset while still sending. Either way nothing is stored.
    if let Ok(response) = too_big {
        assert_eq!(response.status(), 413);
    }
    let http = reqwest::Client::new(); // the refused upload may have left a broken pooled connection
    let stored = http.get(format!("{}/api/v1/files/big.bin", host.base)).send().await.unwrap();
    assert_eq!(stored.status(), 404);
    let bad_name = http.put(format!("{}/api/v1/files/..secret", host.base)).body("x").send().await.unwrap();
    assert_eq!(bad_name.status(), 400);
    let deleted = http.delete(format!("{}/api/v1/files/reads.fasta", host.base)).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    let gone = http.get(format!("{}/api/v1/files/reads.fasta", host.base)).send().await.unwrap();
    assert_eq!(gone.status(), 404);
}
