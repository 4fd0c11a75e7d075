//! Several hosts on one Redis: cancellation across hosts, and a chaos run in which hosts are
//! killed and restarted while every accepted task still ends exactly once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use taskhost_e2e::redis::RedisServer;
use taskhost_e2e::{Host, HostOptions};

const MINUTE: Duration = Duration::from_secs(60);

async fn host_on(redis: &RedisServer, dir: &std::path::Path, name: &str, lease_secs: &str) -> Host {
    let mut options = HostOptions::new(&dir.join(name));
    options.extra = vec!["--redis".into(), redis.url(), "--lease-secs".into(), lease_secs.into()];
    Host::start_with(options).await.unwrap()
}

#[tokio::test]
async fn a_task_cancelled_through_another_host_stops_at_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // Long leases: without the published cancel, the running host would only notice at its next
    // renewal, 40 s after the task started.
    let a = host_on(&redis, dir.path(), "a", "120").await;
    // b consumes a queue nobody uses: the task can only run on a, and the cancel must travel.
    let mut options = HostOptions::new(&dir.path().join("b"));
    options.extra = vec![
        "--redis".into(),
        redis.url(),
        "--lease-secs".into(),
        "60".into(),
        "--queues".into(),
        "idle".into(),
    ];
    let b = Host::start_with(options).await.unwrap();
    // a hears cancellations once its subscription is in place, which /readyz reports.
    a.wait_until_json("/readyz", MINUTE, |r| r["cancel_subscription"] == true).await;
    let id = a.submit(json!({"plugin": "hostile", "input": {"mode": "endless_loop"}})).await;
    let running = a.wait_for(&id, MINUTE, |t| t["status"] == "running").await;
    assert_eq!(running["attempts"], 1);
    let asked = Instant::now();
    let (status, reply) = b.call(Method::POST, &format!("/api/v1/tasks/{id}/cancel"), None).await;
    assert_eq!(status, 200, "{reply}");
    let task = b.wait_finished(&id, MINUTE).await;
    let took = asked.elapsed();
    assert_eq!(task["status"], "cancelled", "{task}");
    // Generous bound for a loaded CI machine (it takes milliseconds when idle), and well below the
    // 40 s the renewal would take.
    assert!(took < Duration::from_secs(15), "cross-host cancel took {took:?}");
    let (_, workers) = a.call(Method::GET, "/api/v1/workers", None).await;
    assert_eq!(workers["online"], 2, "{workers}");
}

#[tokio::test]
async fn hosts_killed_and_restarted_at_random_lose_no_task_and_record_one_outcome_each() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let names = ["h0", "h1", "h2"];
    let mut hosts: Vec<Option<Host>> = Vec::new();
    for name in names {
        hosts.push(Some(host_on(&redis, dir.path(), name, "1.5").await));
    }
    const TASKS: usize = 30;
    let mut ids = Vec::new();
    for i in 0..TASKS {
        let h = hosts[i % 3].as_ref().unwrap();
        ids.push(h.submit(json!({"plugin": "hello", "input": {"name": format!("t{i}"), "spin_ms": 600 + (i % 5) * 150}})).await);
    }
    // Kill a host with SIGKILL while it is running tasks, then restart it; the victims follow a
    // fixed sequence rather than a random one, so a failure can be replayed.
    let mut kills = 0;
    for round in 0..5 {
        let victim = (round * 2 + 1) % 3;
        let Some(h) = hosts[victim].take() else { continue };
        let busy = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, queues) = h.call(Method::GET, "/api/v1/queues", None).await;
            if queues["running_here"].as_u64().unwrap_or(0) > 0 || Instant::now() > busy {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        h.kill();
        kills += 1;
        hosts[victim] = Some(host_on(&redis, dir.path(), names[victim], "1.5").await);
    }
    let observer = hosts.iter().flatten().next().unwrap();
    let mut outcomes: HashMap<String, Value> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    for id in &ids {
        let remaining = deadline.saturating_duration_since(Instant::now());
        outcomes.insert(id.clone(), observer.wait_finished(id, remaining.max(Duration::from_secs(1))).await);
    }
    let mut run_twice = 0;
    for (id, task) in &outcomes {
        assert_eq!(task["status"], "succeeded", "{id}: {task}");
        let (_, events) = observer.call(Method::GET, &format!("/api/v1/tasks/{id}/events"), None).await;
        let events = events["events"].as_array().unwrap().clone();
        let terminal = events
            .iter()
            .filter(|e| {
                matches!(e["event_type"].as_str(), Some("run_completed" | "run_failed" | "run_cancelled"))
            })
            .count();
        assert_eq!(terminal, 1, "{id}: exactly one recorded outcome");
        // An attempt is counted when it is leased and `run_started` is stored just after: a host
        // killed between the two leaves an attempt without its event, never an event too many.
        let starts = events.iter().filter(|e| e["event_type"] == "run_started").count() as u64;
        let attempts = task["attempts"].as_u64().unwrap();
        assert!(starts >= 1 && starts <= attempts, "{id}: {starts} run_started for {attempts} attempts");
        let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{id}: gapless");
        if attempts > 1 {
            run_twice += 1;
        }
    }
    println!(
        "chaos: {TASKS} tasks, {kills} hosts killed, {run_twice} tasks leased more than once (their host died holding them)"
    );
    // Only tasks whose host died mid-run may run again: at most the slots of the killed hosts.
    assert!(
        run_twice <= kills * 2,
        "{run_twice} tasks ran more than once with {kills} kills of 2-slot hosts"
    );
    assert!(run_twice >= 1, "the kills interrupted running tasks, which must have run again");
}

#[tokio::test]
async fn watchers_on_another_host_get_every_event_in_order_then_the_close() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let a = host_on(&redis, dir.path(), "a", "30").await;
    // b consumes a queue nobody uses: the task runs on a, and b learns of its events only from the
    // store, through the one poller it keeps for the task.
    let mut options = HostOptions::new(&dir.path().join("b"));
    options.extra = vec!["--redis".into(), redis.url(), "--queues".into(), "idle".into()];
    let b = Host::start_with(options).await.unwrap();
    let id = a.submit(json!({"plugin": "hello", "input": {"name": "far", "spin_ms": 3000}})).await;
    let url = b.ws(&format!("/ws/tasks/{id}"));
    let watchers: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { taskhost_e2e::read_task_stream(&url).await })
        })
        .collect();
    let task = a.wait_finished(&id, MINUTE).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let (_, stored) = b.call(Method::GET, &format!("/api/v1/tasks/{id}/events"), None).await;
    let stored = stored["events"].as_array().unwrap().len() as u64;
    for watcher in watchers {
        let events = watcher.await.unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=stored).collect::<Vec<_>>(), "every stored event, in order, once");
        assert_eq!(events.last().unwrap()["event_type"], "run_completed");
    }
}

/// Waits until `host`'s log has a line with every one of `parts`; returns that line.
async fn wait_for_log_line(host: &Host, parts: &[&str], deadline: Duration) -> String {
    let until = Instant::now() + deadline;
    loop {
        if let Some(line) = host.log().lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_owned();
        }
        assert!(Instant::now() < until, "no log line with {parts:?} within {deadline:?}:\n{}", host.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn hosts_of_one_queue_with_other_tenant_quotas_are_named_and_counted_until_the_other_leaves() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut hosts = Vec::new();
    let mut admins = Vec::new();
    for (name, quota) in [("a", 1), ("b", 3)] {
        let folder = dir.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        let (file, tokens) = taskhost_e2e::write_tenants_file(
            &folder,
            &[("admin", ""), ("tenants.alice", &format!("concurrent_tasks = {quota}"))],
        );
        admins.push(tokens[0].clone());
        let mut options = HostOptions::new(&folder.join("data"));
        options.extra = vec!["--redis".into(), redis.url(), "--tenants".into(), file.display().to_string()];
        hosts.push(Host::start_with(options).await.unwrap());
    }
    let b = hosts.pop().unwrap();
    let a = hosts.pop().unwrap();
    // The admin of a's tenants file (b has its own).
    let admin = admins[0].clone();
    let id_of = |host: &Host, workers: &Value| -> (String, String) {
        let me = workers["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"].as_str().unwrap().ends_with(&format!("-{}", host.pid())))
            .unwrap_or_else(|| panic!("pid {} in {workers}", host.pid()))
            .clone();
        (me["id"].as_str().unwrap().to_owned(), me["tenant_policies"].as_str().unwrap().to_owned())
    };
    // Both hosts are listed, each with the fingerprint of its own file's quotas.
    let until = Instant::now() + MINUTE;
    let workers = loop {
        let (status, workers, _) = a.call_as(Some(&admin), Method::GET, "/api/v1/workers", None).await;
        assert_eq!(status, 200, "{workers}");
        if workers["online"] == 2 {
            break workers;
        }
        assert!(Instant::now() < until, "both hosts online: {workers}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ((a_id, a_policies), (b_id, b_policies)) = (id_of(&a, &workers), id_of(&b, &workers));
    assert_eq!(a_policies.len(), 16, "{workers}");
    assert_ne!(a_policies, b_policies, "other quotas, other fingerprints: {workers}");
    // Each names the other (the first heartbeat after both are up: within 5 s).
    let warning = "store other tenant weights and quotas";
    let line = wait_for_log_line(&a, &[warning, &b_id], MINUTE).await;
    assert!(line.contains(&a_policies), "{line}");
    wait_for_log_line(&b, &[warning, &a_id], MINUTE).await;
    let metrics = |host: &Host| {
        let url = format!("{}/metrics", host.base);
        let token = admin.clone();
        async move {
            let client = reqwest::Client::new();
            client.get(url).bearer_auth(token).send().await.unwrap().text().await.unwrap()
        }
    };
    assert!(metrics(&a).await.contains("taskhost_tenant_policy_conflicts 1"), "{}", metrics(&a).await);
    // Once b is gone (offline after 3 missed heartbeats), a no longer counts a conflict.
    b.kill();
    wait_for_log_line(&a, &["now store the same tenant weights and quotas"], MINUTE).await;
    assert!(metrics(&a).await.contains("taskhost_tenant_policy_conflicts 0"), "{}", metrics(&a).await);
}
