//! `POST /api/v1/tasks/batch`: many submissions in one request, each item validated, authorised,
//! rate-counted and submitted as a single submit would be; on the embedded broker, standalone
//! Redis and a Redis Cluster.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use taskhost_e2e::redis::{RedisCluster, RedisServer};
use taskhost_e2e::{Host, HostOptions, is_finished, write_tenants_file};

const MINUTE: Duration = Duration::from_secs(60);

struct Fleet {
    host: Host,
    alice: String,
    bob: String,
    carol: String,
    _dir: tempfile::TempDir,
}

/// A host with three tenants: alice may use every plugin, bob only `hello`, carol submits at most
/// 3 tasks at once and then one every 10 s. `extra` names the broker (nothing: embedded).
async fn fleet(extra: &[String]) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let (file, tokens) = write_tenants_file(
        dir.path(),
        &[
            ("tenants.alice", ""),
            ("tenants.bob", "plugins = [\"hello\"]"),
            ("tenants.carol", "submit_per_sec = 0.1\nsubmit_burst = 3"),
        ],
    );
    let [alice, bob, carol] = <[String; 3]>::try_from(tokens).unwrap();
    let mut options = HostOptions::new(&dir.path().join("data"));
    options.concurrency = 4;
    options.extra = vec!["--tenants".into(), file.display().to_string()];
    options.extra.extend(extra.iter().cloned());
    let host = Host::start_with(options).await.unwrap();
    Fleet { host, alice, bob, carol, _dir: dir }
}

async fn batch(host: &Host, token: &str, tasks: Vec<Value>) -> (u16, Value, Option<String>) {
    host.call_as(Some(token), Method::POST, "/api/v1/tasks/batch", Some(json!({"tasks": tasks}))).await
}

/// Waits until every task in `ids` has finished (as `token` sees it); returns them in order.
async fn wait_all_finished(host: &Host, token: &str, ids: &[String]) -> Vec<Value> {
    let mut finished = Vec::with_capacity(ids.len());
    for id in ids {
        finished.push(host.wait_for_as(Some(token), id, MINUTE * 2, is_finished).await);
    }
    finished
}

fn ids_of(reply: &Value) -> Vec<String> {
    reply["results"].as_array().unwrap().iter().filter_map(|r| r["id"].as_str().map(str::to_owned)).collect()
}

/// Every valid task of a batch runs, the others are refused item by item with the error a single
/// submit would give, and a repeated id yields one task, inside a batch and across batches.
async fn a_batch_runs_its_valid_tasks_and_refuses_the_others_item_by_item(extra: &[String]) {
    let Fleet { host, alice, bob, .. } = fleet(extra).await;
    // Ids of this run alone (the Cluster is shared by the tests of this process).
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dup = format!("dup-{run}");

    // 150 valid tasks: more than the broker sends in one script call.
    let tasks: Vec<Value> =
        (0..150).map(|i| json!({"plugin": "kernels", "input": {}, "id": format!("k-{run}-{i}")})).collect();
    let (status, reply, _) = batch(&host, &alice, tasks).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!((reply["created"].as_u64(), reply["failed"].as_u64()), (Some(150), Some(0)), "{reply}");
    let ids = ids_of(&reply);
    assert_eq!(ids, (0..150).map(|i| format!("k-{run}-{i}")).collect::<Vec<_>>(), "results in order");
    for task in wait_all_finished(&host, &alice, &ids).await {
        assert_eq!(task["status"], "succeeded", "{task}");
        assert_eq!(task["tenant"], "alice");
    }

    let mixed = vec![
        json!({"plugin": "hello", "input": {"name": "a"}}),
        json!({"plugin": "no-such-plugin", "input": {}}),
        json!({"plugin": "hello", "input": {"name": "b"}, "delay_ms": "soon"}),
        json!({"plugin": "hostile", "input": {"mode": "environment"}}),
        json!({"plugin": "hello", "input": {"name": "c"}, "id": "not an id!"}),
        json!({"plugin": "hello", "input": {"name": "first"}, "id": dup}),
        json!({"plugin": "hello", "input": {"name": "second"}, "id": dup}),
        json!({"plugin": "hello", "input": {"name": "f"}, "priority": "urgent"}),
        json!("not an object"),
        json!({"plugin": "hello", "input": {"name": "g"}, "delay_ms": 5, "eta": "2030-01-01T00:00:00Z"}),
    ];
    let (status, reply, retry_after) = batch(&host, &bob, mixed).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(retry_after, None);
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), 10, "{reply}");
    let kind = |i: usize| results[i]["error"]["kind"].as_str().unwrap_or("").to_owned();
    assert_eq!(results[0]["created"], true, "{reply}");
    assert_eq!(kind(1), "unknown_plugin");
    assert_eq!(kind(2), "invalid_json");
    assert_eq!(kind(3), "forbidden", "bob may use hello only: {reply}");
    assert_eq!(kind(4), "invalid_request");
    assert_eq!((&results[5]["id"], &results[5]["created"]), (&json!(dup), &json!(true)), "{reply}");
    assert_eq!((&results[6]["id"], &results[6]["created"]), (&json!(dup), &json!(false)), "{reply}");
    assert_eq!(kind(7), "invalid_json");
    assert_eq!(kind(8), "invalid_json");
    assert_eq!(kind(9), "invalid_request");
    for i in [1, 2, 3, 4, 7, 8, 9] {
        assert!(results[i].get("id").is_none(), "a refused item names no task: {}", results[i]);
        assert!(!results[i]["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        (reply["created"].as_u64(), reply["existing"].as_u64(), reply["failed"].as_u64()),
        (Some(2), Some(1), Some(7)),
        "{reply}"
    );
    let first = results[0]["id"].as_str().unwrap().to_owned();

    // The id again, in another batch: still one task; another tenant cannot take it.
    let (status, reply, _) =
        batch(&host, &bob, vec![json!({"plugin": "hello", "input": {"name": "h"}, "id": dup})]).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!((reply["created"].as_u64(), reply["existing"].as_u64()), (Some(0), Some(1)), "{reply}");
    let (status, reply, _) =
        batch(&host, &alice, vec![json!({"plugin": "hello", "input": {"name": "i"}, "id": dup})]).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["results"][0]["error"]["kind"], "conflict", "{reply}");

    let done = wait_all_finished(&host, &bob, &[first, dup.clone()]).await;
    for task in &done {
        assert_eq!(task["status"], "succeeded", "{task}");
        assert_eq!(task["tenant"], "bob");
    }
    assert_eq!(
        done[1]["result"]["greeting"], "Hello, first!",
        "the first submission of the id ran: {}",
        done[1]
    );
    let (_, listed, _) = host.call_as(Some(&bob), Method::GET, "/api/v1/tasks", None).await;
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 2, "bob has two tasks: {listed}");
}

#[tokio::test]
async fn a_batch_on_the_embedded_broker_runs_its_valid_tasks_and_refuses_the_others() {
    a_batch_runs_its_valid_tasks_and_refuses_the_others_item_by_item(&[]).await;
}

#[tokio::test]
async fn a_batch_on_redis_runs_its_valid_tasks_and_refuses_the_others() {
    let redis = RedisServer::start();
    a_batch_runs_its_valid_tasks_and_refuses_the_others_item_by_item(&["--redis".into(), redis.url()]).await;
}

#[tokio::test]
async fn a_batch_on_a_redis_cluster_runs_its_valid_tasks_and_refuses_the_others() {
    let url = tokio::task::spawn_blocking(|| RedisCluster::shared().url()).await.unwrap();
    a_batch_runs_its_valid_tasks_and_refuses_the_others_item_by_item(&["--redis".into(), url]).await;
}

#[tokio::test]
async fn a_batch_is_refused_whole_when_unauthenticated_malformed_too_large_or_over_the_rate() {
    let Fleet { host, alice, carol, .. } = fleet(&[]).await;
    let one = || json!({"plugin": "kernels", "input": {}});

    for token in [None, Some("th_not_a_token")] {
        let (status, body, _) =
            host.call_as(token, Method::POST, "/api/v1/tasks/batch", Some(json!({"tasks": [one()]}))).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["kind"], "unauthorized");
    }

    let http = reqwest::Client::new();
    for body in ["not json", "{\"tasks\": {}}", "{\"task\": []}", "[]", "{\"tasks\": [], \"extra\": 1}"] {
        let response = http
            .post(format!("{}/api/v1/tasks/batch", host.base))
            .bearer_auth(&alice)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let reply: Value = response.json().await.unwrap();
        assert_eq!(reply["error"]["kind"], "invalid_json", "{body}: {reply}");
    }

    let (status, reply, _) = batch(&host, &alice, (0..1001).map(|_| one()).collect()).await;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["error"]["kind"], "payload_too_large");
    let (_, listed, _) = host.call_as(Some(&alice), Method::GET, "/api/v1/tasks", None).await;
    assert!(listed["tasks"].as_array().unwrap().is_empty(), "nothing was submitted: {listed}");

    // An empty batch is a valid, empty request.
    let (status, reply, _) = batch(&host, &alice, Vec::new()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply, json!({"results": [], "created": 0, "existing": 0, "failed": 0}));

    // Carol's burst is 3 tasks: each item counts, the rest are refused with `rate_limited`.
    let (status, reply, retry_after) = batch(&host, &carol, (0..5).map(|_| one()).collect()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!((reply["created"].as_u64(), reply["failed"].as_u64()), (Some(3), Some(2)), "{reply}");
    for i in 3..5 {
        assert_eq!(reply["results"][i]["error"]["kind"], "rate_limited", "{reply}");
    }
    let seconds: u64 = retry_after.expect("Retry-After on a partly refused batch").parse().unwrap();
    assert!((1..=10).contains(&seconds), "{seconds}");
    // Nothing left: the whole next batch is refused, as a single submit would be.
    let (status, reply, retry_after) = batch(&host, &carol, vec![one(), one()]).await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(reply["error"]["kind"], "rate_limited");
    let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=10).contains(&seconds), "{seconds}");
    let (status, reply, _) = host.call_as(Some(&carol), Method::POST, "/api/v1/tasks", Some(one())).await;
    assert_eq!(status, 429, "single submits share the same rate: {reply}");

    // A task whose client-given id is `batch` stays reachable beside the batch route.
    let (status, reply, _) = host
        .call_as(
            Some(&alice),
            Method::POST,
            "/api/v1/tasks",
            Some(json!({"plugin": "kernels", "input": {}, "id": "batch"})),
        )
        .await;
    assert_eq!(status, 202, "{reply}");
    for path in ["/api/v1/tasks/batch", "/api/v1/tasks/batch/events"] {
        let (status, body, _) = host.call_as(Some(&alice), Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, task, _) = host.call_as(Some(&alice), Method::GET, "/api/v1/tasks/batch", None).await;
    assert_eq!(task["id"], "batch", "{task}");

    // The batch route is in the OpenAPI document.
    let (status, doc, _) = host.call_as(Some(&alice), Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/api/v1/tasks/batch"]["post"].is_object(), "{}", doc["paths"]);
    assert!(doc["components"]["schemas"]["BatchReply"].is_object());
}
