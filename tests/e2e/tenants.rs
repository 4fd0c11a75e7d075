//! Tenants and tokens: each tenant sees only its own tasks; quotas hold.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::json;
use taskhost_e2e::{Host, HostOptions, write_tenants_file};

struct Fleet {
    host: Host,
    alice: String,
    bob: String,
    admin: String,
    _dir: tempfile::TempDir,
}

async fn fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let (file, tokens) = write_tenants_file(
        dir.path(),
        &[
            ("admin", ""),
            ("tenants.alice", "weight = 2\nfuel = 200_000_000"),
            ("tenants.bob", "plugins = [\"hello\"]\nsubmit_per_sec = 0.5\nsubmit_burst = 2"),
        ],
    );
    let [admin, alice, bob] = <[String; 3]>::try_from(tokens).unwrap();
    let mut options = HostOptions::new(&dir.path().join("data"));
    options.extra = vec!["--tenants".into(), file.display().to_string()];
    let host = Host::start_with(options).await.unwrap();
    Fleet { host, alice, bob, admin, _dir: dir }
}

#[tokio::test]
async fn tenants_see_only_their_own_tasks_and_tokens_are_required() {
    let Fleet { host, alice, bob, admin, .. } = fleet().await;
    let (status, body, _) = host.call_as(None, Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["kind"], "unauthorized");
    let (status, _, _) = host.call_as(Some("th_not_a_token"), Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(status, 401);

    let submit = json!({"plugin": "hello", "input": {"name": "alice", "spin_ms": 200}});
    let (status, reply, _) = host.call_as(Some(&alice), Method::POST, "/api/v1/tasks", Some(submit)).await;
    assert_eq!(status, 202, "{reply}");
    let id = reply["id"].as_str().unwrap().to_owned();

    // Bob cannot see, watch, cancel or list Alice's task: 404, as if it did not exist.
    for (method, path) in [
        (Method::GET, format!("/api/v1/tasks/{id}")),
        (Method::GET, format!("/api/v1/tasks/{id}/events")),
        (Method::POST, format!("/api/v1/tasks/{id}/cancel")),
        (Method::POST, format!("/api/v1/tasks/{id}/retry")),
    ] {
        let (status, body, _) = host.call_as(Some(&bob), method, &path, None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    // Files: Alice's file area is invisible to Bob.
    let http = reqwest::Client::new();
    let put = http
        .put(format!("{}/api/v1/files/secret.txt", host.base))
        .bearer_auth(&alice)
        .body("alice only")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let peek =
        http.get(format!("{}/api/v1/files/secret.txt", host.base)).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(peek.status(), 404);
    let (_, bobs, _) = host.call_as(Some(&bob), Method::GET, "/api/v1/files", None).await;
    assert!(bobs["files"].as_array().unwrap().is_empty(), "{bobs}");
    let (status, body, _) = host
        .call_as(
            Some(&bob),
            Method::POST,
            "/api/v1/tasks",
            Some(json!({"plugin": "hello", "input": {"name": "b"}, "files": ["secret.txt"]})),
        )
        .await;
    assert_eq!(status, 400, "bob cannot mount alice's file: {body}");

    let ws = format!("{}?token={bob}", host.ws(&format!("/ws/tasks/{id}")));
    let Err(err) = tokio_tungstenite::connect_async(&ws).await else {
        panic!("bob must not watch alice's task")
    };
    assert!(err.to_string().contains("404"), "{err}");
    let (_, listed, _) = host.call_as(Some(&bob), Method::GET, "/api/v1/tasks", None).await;
    assert!(listed["tasks"].as_array().unwrap().is_empty(), "{listed}");

    // Alice watches her own task with a token in the query; the admin sees it too.
    let ws = format!("{}?token={alice}", host.ws(&format!("/ws/tasks/{id}")));
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), socket.next()).await.unwrap().unwrap().unwrap();
    assert!(
        first.to_text().unwrap().contains("run_started") || first.to_text().unwrap().contains("\"seq\":1")
    );
    let (status, task, _) =
        host.call_as(Some(&admin), Method::GET, &format!("/api/v1/tasks/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(task["tenant"], "alice");
}

#[tokio::test]
async fn quotas_narrow_limits_restrict_plugins_and_rate_limit_submissions() {
    let Fleet { host, alice, bob, .. } = fleet().await;
    // Alice's fuel quota (200 M) narrows the plugin's default: an endless loop runs out of fuel.
    let (status, reply, _) = host
        .call_as(
            Some(&alice),
            Method::POST,
            "/api/v1/tasks",
            Some(json!({"plugin": "hostile", "input": {"mode": "endless_loop"}})),
        )
        .await;
    assert_eq!(status, 202, "{reply}");
    let id = reply["id"].as_str().unwrap().to_owned();
    let task = loop {
        let (_, task, _) =
            host.call_as(Some(&alice), Method::GET, &format!("/api/v1/tasks/{id}"), None).await;
        if task["status"] == "failed" {
            break task;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(task["error"]["kind"], "out_of_fuel", "{task}");
    assert!(task["error"]["message"].as_str().unwrap().contains("200000000"), "{task}");

    // Bob may use hello only.
    let (status, body, _) = host
        .call_as(
            Some(&bob),
            Method::POST,
            "/api/v1/tasks",
            Some(json!({"plugin": "hostile", "input": {"mode": "environment"}})),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["kind"], "forbidden");

    // Bob's burst is 2 and the refused submission above took one of them: at most one more passes.
    let mut refused = None;
    for _ in 0..4 {
        let (status, body, retry_after) = host
            .call_as(
                Some(&bob),
                Method::POST,
                "/api/v1/tasks",
                Some(json!({"plugin": "hello", "input": {"name": "b"}})),
            )
            .await;
        if status == 429 {
            refused = Some((body, retry_after));
            break;
        }
        assert_eq!(status, 202, "{body}");
    }
    let (body, retry_after) = refused.expect("bob's submissions are rate limited");
    assert_eq!(body["error"]["kind"], "rate_limited");
    let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&seconds), "{seconds}");
}

#[tokio::test]
async fn a_tenants_concurrency_quota_holds_while_other_tenants_use_the_free_slots() {
    let dir = tempfile::tempdir().unwrap();
    let (file, tokens) =
        write_tenants_file(dir.path(), &[("tenants.alice", "concurrent_tasks = 1"), ("tenants.bob", "")]);
    let [alice, bob] = <[String; 2]>::try_from(tokens).unwrap();
    let mut options = HostOptions::new(&dir.path().join("data"));
    options.concurrency = 3;
    options.extra = vec!["--tenants".into(), file.display().to_string()];
    let host = Host::start_with(options).await.unwrap();
    let submit = |token: String, name: &'static str| {
        let host = &host;
        async move {
            let body = json!({"plugin": "hello", "input": {"name": name, "spin_ms": 600}});
            let (status, reply, _) =
                host.call_as(Some(&token), Method::POST, "/api/v1/tasks", Some(body)).await;
            assert_eq!(status, 202, "{reply}");
            reply["id"].as_str().unwrap().to_owned()
        }
    };
    let mut alices = Vec::new();
    for _ in 0..3 {
        alices.push(submit(alice.clone(), "a").await);
    }
    let bobs = vec![submit(bob.clone(), "b").await, submit(bob.clone(), "b").await];
    // Wait for everything, then compare when each task actually ran: alice's never overlap.
    let mut intervals = Vec::new();
    for (token, ids) in [(&alice, &alices), (&bob, &bobs)] {
        for id in ids {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let task = loop {
                let (_, task, _) =
                    host.call_as(Some(token), Method::GET, &format!("/api/v1/tasks/{id}"), None).await;
                if task["status"] == "succeeded" {
                    break task;
                }
                assert!(std::time::Instant::now() < deadline, "{task}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let at = |field: &str| task[field].as_str().unwrap().to_owned();
            intervals.push((
                task["tenant"].as_str().unwrap().to_owned(),
                at("started_at"),
                at("finished_at"),
            ));
        }
    }
    let overlap = |a: &(String, String, String), b: &(String, String, String)| a.1 < b.2 && b.1 < a.2;
    let alice_runs: Vec<_> = intervals.iter().filter(|i| i.0 == "alice").collect();
    for (i, a) in alice_runs.iter().enumerate() {
        for b in &alice_runs[i + 1..] {
            assert!(!overlap(a, b), "alice ran two tasks at once: {a:?} {b:?}");
        }
    }
    let bob_beside_alice =
        intervals.iter().filter(|i| i.0 == "bob").any(|b| alice_runs.iter().any(|a| overlap(a, b)));
    assert!(bob_beside_alice, "bob used the slots alice could not: {intervals:?}");
}
