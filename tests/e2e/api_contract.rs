//! Bad requests get typed errors; the host keeps serving.

use reqwest::Method;
use serde_json::json;
use taskhost_e2e::Host;

#[tokio::test]
async fn malformed_requests_get_typed_errors_and_the_host_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();

    let (status, body) = host.post_raw("/api/v1/tasks", b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["kind"], "invalid_json", "{body}");

    let (status, body) = host.call(Method::POST, "/api/v1/tasks", Some(json!({"input": {}}))).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("plugin"), "{body}");

    let (status, body) = host.call(Method::POST, "/api/v1/tasks", Some(json!({"plugin": "nope"}))).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["kind"], "unknown_plugin");

    let (status, body) = host
        .call(Method::POST, "/api/v1/tasks", Some(json!({"plugin": "hello", "input": {}, "frobnicate": 1})))
        .await;
    assert_eq!(status, 400, "unknown fields are refused: {body}");

    let big = "x".repeat((1 << 20) + 10);
    let (status, body) = host
        .call(Method::POST, "/api/v1/tasks", Some(json!({"plugin": "hello", "input": {"name": big}})))
        .await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["kind"], "payload_too_large");

    // An 8 MiB body is refused once it passes the limit; the server answers before the client
    // has finished sending.
    let (status, body) = declared_oversize_post(&host, 8 << 20).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["kind"], "payload_too_large", "{body}");

    for bad in [
        json!({"plugin": "hello", "id": "../../etc"}),
        json!({"plugin": "hello", "delay_ms": 5, "eta": "2030-01-01T00:00:00Z"}),
        json!({"plugin": "hello", "eta": "tomorrow"}),
        json!({"plugin": "hello", "priority": "urgent"}),
        json!({"plugin": "hello", "limits": {"fuel": 0}}),
    ] {
        let (status, body) = host.call(Method::POST, "/api/v1/tasks", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert!(body["error"]["kind"].is_string());
    }

    let (status, body) = host.call(Method::GET, "/api/v1/tasks/no-such-task", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["kind"], "not_found");
    let (status, _) = host.call(Method::GET, "/api/v1/tasks/no-such-task/events", None).await;
    assert_eq!(status, 404);
    let (status, _) = host.call(Method::POST, "/api/v1/tasks/no-such-task/cancel", None).await;
    assert_eq!(status, 404);
    let (status, body) = host.call(Method::GET, "/api/v1/tasks?status=bogus", None).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = host.call(Method::GET, "/api/v1/tasks/x/events?since=minus-one", None).await;
    assert_eq!((status, body["error"]["kind"].as_str()), (400, Some("invalid_request")), "{body}");
    let (status, body) = host.call(Method::GET, "/api/v1/tasks?limit=lots", None).await;
    assert_eq!((status, body["error"]["kind"].as_str()), (400, Some("invalid_request")), "{body}");
    let (status, body) = host.call(Method::DELETE, "/api/v1/tasks", None).await;
    assert_eq!((status, body["error"]["kind"].as_str()), (405, Some("method_not_allowed")), "{body}");
    let (status, body) = host.call(Method::GET, "/api/v1/nope", None).await;
    assert_eq!((status, body["error"]["kind"].as_str()), (404, Some("not_found")), "{body}");
    let (status, body) = host.call(Method::GET, "/nope", None).await;
    assert_eq!((status, body["error"]["kind"].as_str()), (404, Some("not_found")), "{body}");

    // Still serving.
    let id = host.submit(json!({"plugin": "hello", "input": {"name": "still here"}})).await;
    let task = host.wait_finished(&id, std::time::Duration::from_secs(60)).await;
    assert_eq!(task["status"], "succeeded", "{task}");
}

#[tokio::test]
async fn health_readiness_and_plugins_report_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let (status, body) = host.call(Method::GET, "/healthz", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = host.call(Method::GET, "/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["broker"]["backend"], "embedded");
    let (status, body) = host.call(Method::GET, "/api/v1/plugins", None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> =
        body["plugins"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"hello") && names.contains(&"hostile"), "{names:?}");
    let hello = body["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "hello").unwrap();
    assert_eq!(hello["limits"]["timeout_ms"], 60_000);
    let workers = host
        .wait_until_json("/api/v1/workers", std::time::Duration::from_secs(30), |w| w["online"] == 1)
        .await;
    let me = &workers["workers"][0];
    assert_eq!(me["slots"], 2, "{workers}");
    assert_eq!(me["online"], true);
    assert!(me["plugins"].as_array().unwrap().iter().any(|p| p == "hello"), "{workers}");
    let problems = body["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["dir"].as_str().unwrap().ends_with("mismatched")), "{problems:?}");
    assert!(problems.iter().any(|p| p["dir"].as_str().unwrap().ends_with("broken-manifest")), "{problems:?}");
}

#[tokio::test]
async fn submitting_the_same_id_twice_makes_one_task() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let body = json!({"plugin": "hello", "id": "order-42", "input": {"name": "once"}});
    let (first, a) = host.call(Method::POST, "/api/v1/tasks", Some(body.clone())).await;
    let (second, b) = host.call(Method::POST, "/api/v1/tasks", Some(body)).await;
    assert_eq!((first, second), (202, 200), "{a} {b}");
    assert_eq!(a["id"], "order-42");
    assert_eq!(b["created"], false);
    let task = host.wait_finished("order-42", std::time::Duration::from_secs(60)).await;
    assert_eq!(task["attempts"], 1);
    let (_, listed) = host.call(Method::GET, "/api/v1/tasks?plugin=hello", None).await;
    assert_eq!(listed["tasks"].as_array().unwrap().iter().filter(|t| t["id"] == "order-42").count(), 1);
}

/// Sends a POST of `length` bytes, reading the answer while still sending.
async fn declared_oversize_post(host: &Host, length: usize) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = host.base.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /api/v1/tasks HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    let sender = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 << 10];
        for _ in 0..length / chunk.len() {
            writer.write_all(&chunk).await?;
        }
        std::io::Result::Ok(())
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), reader.read_to_end(&mut response)).await;
    sender.abort();
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    // The body may be chunked; take the JSON object inside it.
    let json =
        body.find('{').and_then(|start| body.rfind('}').map(|end| &body[start..=end])).unwrap_or("null");
    (status, serde_json::from_str(json).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn metrics_count_outcomes_and_queue_depths_in_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let ok = host.submit(json!({"plugin": "hello", "input": {"name": "m"}})).await;
    let bad = host.submit(json!({"plugin": "hello", "input": {"name": 1}})).await;
    host.wait_finished(&ok, std::time::Duration::from_secs(60)).await;
    host.wait_finished(&bad, std::time::Duration::from_secs(60)).await;
    let text = reqwest::get(format!("{}/metrics", host.base)).await.unwrap().text().await.unwrap();
    let line =
        |needle: &str| text.lines().find(|l| l.starts_with(needle) && !l.starts_with('#')).map(str::to_owned);
    let succeeded = line("taskhost_tasks_finished_total{").filter(|_| text.contains("outcome=\"succeeded\""));
    assert!(succeeded.is_some(), "{text}");
    assert!(text.contains("outcome=\"invalid_input\""), "{text}");
    assert!(text.contains("taskhost_task_run_seconds_bucket"), "{text}");
    assert!(text.contains("taskhost_queue_depth{queue=\"default\",state=\"pending\"} 0"), "{text}");
    assert!(text.contains("taskhost_fuel_used_total"), "{text}");
}

#[tokio::test]
async fn the_openapi_document_describes_every_rest_route() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let (status, doc) = host.call(Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/tasks", "post"),
        ("/api/v1/tasks", "get"),
        ("/api/v1/tasks/{id}", "get"),
        ("/api/v1/tasks/{id}/cancel", "post"),
        ("/api/v1/tasks/{id}/retry", "post"),
        ("/api/v1/tasks/{id}/events", "get"),
        ("/api/v1/plugins", "get"),
        ("/api/v1/queues", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the document"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let status_enum = schemas["TaskStatus"]["enum"].as_array().unwrap();
    assert_eq!(status_enum.len(), 9, "{status_enum:?}");
    assert!(schemas["ErrorBody"]["properties"]["error"].is_object());
    assert!(schemas["SubmitRequest"]["properties"]["plugin"].is_object());
}
