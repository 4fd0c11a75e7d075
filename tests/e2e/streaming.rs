//! WebSocket streams: history then live, no gap, no duplicate, resumable, closed at the end.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use taskhost_e2e::Host;
use tokio_tungstenite::tungstenite::Message;

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn a_late_watcher_gets_history_then_live_events_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let id = host.submit(json!({"plugin": "hello", "input": {"name": "stream", "spin_ms": 1500}})).await;
    // Join mid-run: some events are history, the rest arrive live.
    host.wait_for(&id, Duration::from_secs(60), |t| t["progress"].as_f64().unwrap_or(0.0) >= 20.0).await;
    let events = taskhost_e2e::read_task_stream(&host.ws(&format!("/ws/tasks/{id}"))).await;
    assert_eq!(seqs(&events), (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(events[0]["event_type"], "run_started");
    let last = events.last().unwrap();
    assert_eq!(last["event_type"], "run_completed");
    assert_eq!(last["data"]["result"]["greeting"], "Hello, stream!");
    for e in &events {
        assert_eq!(e["type"], "event");
        assert_eq!(e["task_id"], id.as_str());
        assert!(e["ts"].is_string());
    }
    // The stored log agrees with what was streamed.
    let (_, stored) = host.call(reqwest::Method::GET, &format!("/api/v1/tasks/{id}/events"), None).await;
    assert_eq!(stored["events"].as_array().unwrap().len(), events.len());
}

#[tokio::test]
async fn a_watcher_resumes_from_its_last_sequence_id() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let id = host.submit(json!({"plugin": "hello", "input": {"name": "resume", "spin_ms": 1000}})).await;
    // First connection: read a few events, then drop the connection.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(host.ws(&format!("/ws/tasks/{id}"))).await.unwrap();
    let mut first = Vec::new();
    while first.len() < 2 {
        if let Some(Ok(Message::Text(text))) = socket.next().await {
            first.push(serde_json::from_str::<Value>(&text).unwrap());
        }
    }
    drop(socket);
    let last_seen = first.last().unwrap()["seq"].as_u64().unwrap();
    let rest = taskhost_e2e::read_task_stream(&host.ws(&format!("/ws/tasks/{id}?since={last_seen}"))).await;
    let mut all = seqs(&first);
    all.extend(seqs(&rest));
    assert_eq!(all, (1..=all.len() as u64).collect::<Vec<_>>(), "resumed without gap or duplicate");
    assert_eq!(rest.last().unwrap()["event_type"], "run_completed");
}

#[tokio::test]
async fn many_watchers_of_one_task_see_the_same_events() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let id = host.submit(json!({"plugin": "hello", "input": {"name": "crowd", "spin_ms": 800}})).await;
    let url = host.ws(&format!("/ws/tasks/{id}"));
    let watchers: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn({
                let url = url.clone();
                async move { taskhost_e2e::read_task_stream(&url).await }
            })
        })
        .collect();
    let mut seen = Vec::new();
    for w in watchers {
        seen.push(seqs(&w.await.unwrap()));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "every watcher saw the same sequence");
    assert_eq!(seen[0], (1..=seen[0].len() as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_stream_of_a_finished_task_replays_and_closes_and_an_unknown_task_is_404() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let id = host.submit(json!({"plugin": "hello", "input": {"name": "done"}})).await;
    host.wait_finished(&id, Duration::from_secs(60)).await;
    let events = taskhost_e2e::read_task_stream(&host.ws(&format!("/ws/tasks/{id}"))).await;
    assert_eq!(events.last().unwrap()["event_type"], "run_completed");
    let Err(err) = tokio_tungstenite::connect_async(host.ws("/ws/tasks/nope")).await else {
        panic!("a stream of an unknown task must be refused");
    };
    assert!(err.to_string().contains("404"), "{err}");
}

#[tokio::test]
async fn a_live_stream_ends_with_a_normal_close_right_after_the_terminal_event() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let id = host.submit(json!({"plugin": "hello", "input": {"name": "close", "spin_ms": 500}})).await;
    let (texts, frame) = taskhost_e2e::read_task_stream_to_close(&host.ws(&format!("/ws/tasks/{id}"))).await;
    let frame = frame.expect("the stream closes with a close frame");
    assert_eq!(u16::from(frame.code), 1000);
    assert_eq!(frame.reason.as_str(), "task finished");
    assert_eq!(texts.last().unwrap()["event_type"], "run_completed");
    assert_eq!(seqs(&texts), (1..=texts.len() as u64).collect::<Vec<_>>());
}

/// Reads text messages until `done` accepts one or the deadline passes; returns all read.
async fn read_until(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    deadline: Duration,
    done: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut seen = Vec::new();
    let reading = async {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(text) = message {
                let v: Value = serde_json::from_str(&text).unwrap();
                let stop = done(&v);
                seen.push(v);
                if stop {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(deadline, reading).await;
    seen
}

#[tokio::test]
async fn the_queue_stream_reports_queue_status_and_task_status() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let (mut socket, _) = tokio_tungstenite::connect_async(host.ws("/ws/queue")).await.unwrap();
    let first = read_until(&mut socket, Duration::from_secs(10), |_| true).await;
    assert_eq!(first[0]["type"], "queue_status", "{first:?}");
    for field in ["total_tasks", "active_tasks", "pending_tasks", "workers_online"] {
        assert!(first[0][field].is_u64(), "{field}: {}", first[0]);
    }
    let id = host.submit(json!({"plugin": "hello", "input": {"name": "queue", "spin_ms": 300}})).await;
    let seen = read_until(&mut socket, Duration::from_secs(60), |m| {
        m["type"] == "task_status" && m["status"] == "succeeded"
    })
    .await;
    let statuses: Vec<&str> = seen
        .iter()
        .filter(|m| m["type"] == "task_status" && m["task_id"] == id.as_str())
        .map(|m| m["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.first(), Some(&"running"), "{seen:?}");
    assert_eq!(statuses.last(), Some(&"succeeded"), "{seen:?}");
    assert!(seen.iter().any(|m| m["type"] == "queue_status" && m["active_tasks"] == 1), "{seen:?}");
    assert!(seen.iter().any(|m| m["type"] == "task_status" && m["progress"].is_number()), "{seen:?}");
}

#[tokio::test]
async fn the_events_stream_filters_by_plugin_and_event_type() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path()).await.unwrap();
    let url = host.ws("/ws/events?plugin=hello&event_type=run_completed");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // The server answers pings from inside its stream loop, which subscribes first: once the
    // pong is back, the subscription exists.
    socket.send(Message::Ping(b"sync".to_vec().into())).await.unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Pong(_)) {
                return true;
            }
        }
        false
    });
    assert!(pong.await.unwrap_or(false), "no pong");
    let other = host.submit(json!({"plugin": "hostile", "input": {"mode": "echo", "value": 1}})).await;
    host.wait_finished(&other, Duration::from_secs(60)).await;
    let id = host.submit(json!({"plugin": "hello", "input": {"name": "filtered"}})).await;
    let seen = read_until(&mut socket, Duration::from_secs(60), |m| m["event_type"] == "run_completed").await;
    assert!(!seen.is_empty());
    for m in &seen {
        assert_eq!(m["event_type"], "run_completed", "{m}");
        assert_eq!(m["plugin"], "hello", "{m}");
    }
    assert_eq!(seen.last().unwrap()["task_id"], id.as_str());
}
