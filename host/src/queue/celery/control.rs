//! Celery remote control and monitoring: the pidbox and the event channels.
//!
//! Clients broadcast control commands by publishing a kombu envelope on `/<db>.celery.pidbox`;
//! every host with the ingress subscribes and answers those addressed to it (no `destination`, or
//! one naming [`super::CeleryConfig::nodename`]) by pushing a reply envelope onto
//! `<reply routing key>.reply.celery.pidbox`, which the client pops. Answered:
//!
//! - `ping` (`{"ok": "pong"}`), `stats`, `registered` (the Celery names of the loaded plugins),
//!   `active` (Celery tasks running on this host), `reserved` and `scheduled` (always empty: the
//!   host does not prefetch), `active_queues`, `revoked`, `conf`, `clock`, `report`;
//! - `revoke`: the id is remembered in a shared set (a message that arrives later is answered
//!   REVOKED instead of run); a task still waiting in the broker is cancelled there; with
//!   `terminate=True` a running task is stopped: at once when it runs on this host (the sandbox's
//!   cancellation, within milliseconds), and through the broker's cancel flag otherwise (its
//!   host stops it at its next lease renewal, or at once if that host also runs the ingress and
//!   so got the same broadcast). Without `terminate` a running task goes on, as with Celery.
//!   One host per revoke does the broker's part (a claim key decides which); every host stops
//!   what it runs itself.
//!
//! Other commands are answered with an error, except `hello` (a Celery worker's start-up
//! greeting), which is left to Celery workers. Worker events (`worker-online`, `worker-heartbeat`
//! every 2 s, `worker-offline`) and task events (`task-received`, `task-started`,
//! `task-succeeded`, `task-failed`, `task-revoked`, `task-retried`, batched on `task.multi` as a
//! Celery worker does) go to `/<db>.celeryev/<routing key>`, so Flower lists the hosts and tasks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::protocol::{self, decode_envelope, encode_envelope};
use super::{Channels, Shared, TaskInfo, ingress};
use crate::queue::{CancelResult, now_ms};

/// Serves the pidbox until `stop`, reconnecting when the subscription breaks.
pub async fn serve_pidbox(shared: Arc<Shared>, stop: CancellationToken) {
    let channel = shared.channels.pidbox();
    while !stop.is_cancelled() {
        let mut pubsub = match shared.client.get_async_pubsub().await {
            Ok(p) => p,
            Err(error) => {
                tracing::warn!(%error, "Celery control: cannot subscribe to the pidbox; retrying");
                tokio::time::sleep(shared.config.settings.retry_delay * 4).await;
                continue;
            }
        };
        if let Err(error) = pubsub.subscribe(&channel).await {
            tracing::warn!(%error, "Celery control: cannot subscribe to the pidbox; retrying");
            tokio::time::sleep(shared.config.settings.retry_delay * 4).await;
            continue;
        }
        let mut messages = pubsub.on_message();
        loop {
            let message = tokio::select! {
                m = messages.next() => m,
                _ = stop.cancelled() => return,
            };
            let Some(message) = message else {
                tracing::warn!("Celery control: the pidbox subscription ended; resubscribing");
                break;
            };
            let payload = message.get_payload_bytes().to_vec();
            let shared = shared.clone();
            tokio::spawn(async move { handle_command(&shared, &payload).await });
        }
    }
}

/// True when a command addressed to `destination` (and `pattern`/`matcher`) is for `node`.
fn addressed_to(body: &Value, node: &str) -> bool {
    if let Some(list) = body.get("destination").and_then(Value::as_array)
        && !list.iter().any(|d| d.as_str() == Some(node))
    {
        return false;
    }
    if let Some(pattern) = body.get("pattern").and_then(Value::as_str) {
        return glob_match(pattern, node);
    }
    true
}

/// `*` and `?` wildcards (Celery's default matcher is glob).
fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

async fn handle_command(shared: &Shared, payload: &[u8]) {
    let Ok(envelope) = decode_envelope(payload) else {
        tracing::debug!("Celery control: ignoring an undecodable pidbox message");
        return;
    };
    // kombu sends `expires: 0` for commands without a reply timeout.
    if let Some(expires) = envelope.headers.get("expires").and_then(Value::as_f64)
        && expires > 0.0
        && expires * 1000.0 < now_ms() as f64
    {
        return;
    }
    let body = &envelope.body;
    let node = shared.nodename();
    if !addressed_to(body, &node) {
        return;
    }
    let method = body.get("method").and_then(Value::as_str).unwrap_or("");
    let arguments = body.get("arguments").cloned().unwrap_or(json!({}));
    let reply = match method {
        "ping" => json!({"ok": "pong"}),
        "revoke" => revoke(shared, &arguments).await,
        "stats" => stats(shared),
        "registered" => json!(shared.routes.names()),
        "active" => active(shared).await,
        "reserved" | "scheduled" | "revoked" => json!([]),
        "active_queues" => active_queues(shared),
        "clock" => json!({"clock": shared.stats.tick()}),
        "enable_events" => {
            let was = shared.task_events.swap(true, Ordering::Relaxed);
            tracing::info!("Celery control: task events enabled by remote");
            json!({"ok": if was { "task events already enabled" } else { "task events enabled" }})
        }
        "disable_events" => {
            let was = shared.task_events.swap(false, Ordering::Relaxed);
            tracing::info!("Celery control: task events disabled by remote");
            json!({"ok": if was { "task events disabled" } else { "task events already disabled" }})
        }
        "conf" => {
            json!({"worker_concurrency": shared.config.concurrency, "result_expires": shared.config.result_expires.as_secs()})
        }
        "report" => {
            json!({"ok": format!("taskhost {} (Celery ingress) on {}", env!("CARGO_PKG_VERSION"), shared.config.hostname)})
        }
        "hello" => return,
        other => {
            tracing::info!(method = %other, "Celery control: command not supported");
            json!({"error": format!("taskhost does not support the control command {other:?}")})
        }
    };
    let Some(reply_to) = body.get("reply_to") else { return };
    let (Some(exchange), Some(routing_key)) = (
        reply_to.get("exchange").and_then(Value::as_str),
        reply_to.get("routing_key").and_then(Value::as_str),
    ) else {
        return;
    };
    let ticket = body.get("ticket").cloned().unwrap_or(Value::Null);
    let mut answer = Map::new();
    answer.insert(node, reply);
    let message = encode_envelope(
        &Value::Object(answer),
        json!({"ticket": ticket, "clock": shared.stats.tick()}),
        json!({"delivery_mode": 1, "delivery_info": {"exchange": exchange, "routing_key": routing_key}}),
    );
    let list = Channels::reply_list(routing_key);
    let mut conn = shared.conn.clone();
    let sent: Result<(), _> = redis::pipe()
        .cmd("LPUSH")
        .arg(&list)
        .arg(message)
        .ignore()
        .cmd("EXPIRE")
        .arg(&list)
        .arg(300)
        .ignore()
        .query_async(&mut conn)
        .await;
    if let Err(error) = sent {
        tracing::warn!(%error, method, "Celery control: cannot send a reply");
    }
}

/// `revoke(task_id, terminate=False, signal=...)`; `task_id` may be a list.
async fn revoke(shared: &Shared, arguments: &Value) -> Value {
    let ids: Vec<String> = match arguments.get("task_id") {
        Some(Value::String(id)) => vec![id.clone()],
        Some(Value::Array(ids)) => ids.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => return json!({"error": "revoke: no task_id"}),
    };
    let terminate = arguments.get("terminate").and_then(Value::as_bool).unwrap_or(false);
    // Stop what runs here first: that is the fast path.
    if terminate {
        for id in &ids {
            if shared.running.cancel(id) {
                tracing::info!(task = %id, "Celery control: revoke(terminate=True) stopped a task running here");
            }
        }
    }
    let now = now_ms();
    let mut conn = shared.conn.clone();
    let mut pipe = redis::pipe();
    pipe.cmd("ZADD").arg(shared.keys.revoked());
    for id in &ids {
        pipe.arg(now).arg(id);
    }
    pipe.ignore();
    pipe.cmd("ZREMRANGEBYSCORE")
        .arg(shared.keys.revoked())
        .arg("-inf")
        .arg(now - super::ms(shared.config.settings.revoked_memory))
        .ignore();
    for id in &ids {
        pipe.cmd("SET")
            .arg(shared.keys.revoke_claim(id, terminate))
            .arg(&shared.config.host_id)
            .arg("NX")
            .arg("EX")
            .arg(600);
    }
    let claims: Vec<Option<String>> = match pipe.query_async(&mut conn).await {
        Ok(claims) => claims,
        Err(error) => {
            tracing::warn!(%error, "Celery control: cannot record a revoke");
            return json!({"error": format!("cannot record the revoke: {error}")});
        }
    };
    for (id, claim) in ids.iter().zip(claims) {
        if claim.is_none() {
            continue;
        }
        let status = match shared.broker.get(None, id).await {
            Ok(Some(task)) => task.status,
            // Not taken from the Celery queue yet: the ingress will find it in the revoked set.
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(task = %id, %error, "Celery control: cannot read a revoked task");
                continue;
            }
        };
        if !(ingress::is_waiting(status) || (terminate && status == crate::queue::TaskStatus::Running)) {
            continue;
        }
        match shared.broker.cancel(None, id).await {
            Ok((result, stored)) => {
                if let Some(stored) = stored {
                    shared.hub.publish(stored);
                }
                if result == CancelResult::Requested {
                    shared.running.cancel(id);
                }
            }
            Err(error) => tracing::warn!(task = %id, %error, "Celery control: cannot cancel a revoked task"),
        }
    }
    json!({"ok": format!("tasks {} flagged as revoked", ids.join(", "))})
}

fn stats(shared: &Shared) -> Value {
    let totals: Map<String, Value> = shared
        .stats
        .totals
        .lock()
        .map(|t| t.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
        .unwrap_or_default();
    let url = shared.client.get_connection_info();
    let (host, port) = match url.addr() {
        redis::ConnectionAddr::Tcp(host, port) | redis::ConnectionAddr::TcpTls { host, port, .. } => {
            (json!(host), json!(port))
        }
        _ => (Value::Null, Value::Null),
    };
    json!({
        "total": totals,
        "pid": std::process::id(),
        "clock": shared.stats.tick().to_string(),
        "uptime": shared.started.elapsed().as_secs(),
        "pool": {
            "implementation": "taskhost:WasmSandbox",
            "max-concurrency": shared.config.concurrency,
            "processes": [std::process::id()],
            "max-tasks-per-child": "N/A",
            "put-guarded-by-semaphore": false,
            "timeouts": [0, 0],
        },
        "broker": {
            "hostname": host, "port": port, "transport": "redis",
            "virtual_host": shared.channels.db.to_string(), "ssl": false,
        },
        "prefetch_count": 0,
        "rusage": rusage(),
        "sw_ident": "taskhost",
        "sw_ver": env!("CARGO_PKG_VERSION"),
    })
}

/// What `/proc` says of this process, in `getrusage`'s names.
fn rusage() -> Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    json!({
        "utime": ticks(11), "stime": ticks(12), "maxrss": field("VmHWM:"),
        "nvcsw": field("voluntary_ctxt_switches:"), "nivcsw": field("nonvoluntary_ctxt_switches:"),
    })
}

async fn active(shared: &Shared) -> Value {
    let ids = shared.running.ids();
    if ids.is_empty() {
        return json!([]);
    }
    let keys: Vec<String> = ids.iter().map(|id| shared.keys.task(id)).collect();
    let mut conn = shared.conn.clone();
    let infos: Vec<Option<String>> =
        redis::cmd("MGET").arg(&keys).query_async(&mut conn).await.unwrap_or_default();
    let node = shared.nodename();
    let tasks: Vec<Value> = ids
        .iter()
        .zip(infos)
        .filter_map(|(id, info)| {
            let info: TaskInfo = serde_json::from_str(&info?).ok()?;
            Some(json!({
                "id": id, "name": info.name, "type": info.name,
                "args": info.argsrepr, "kwargs": info.kwargsrepr,
                "hostname": node, "time_start": protocol::unix_seconds(info.ingested_at),
                "acknowledged": true, "worker_pid": std::process::id(),
                "delivery_info": {"exchange": "", "routing_key": info.celery_queue, "priority": info.priority, "redelivered": false},
            }))
        })
        .collect();
    json!(tasks)
}

fn active_queues(shared: &Shared) -> Value {
    let queues: Vec<Value> = shared
        .config
        .queues
        .iter()
        .map(|q| {
            json!({
                "name": q,
                "exchange": {"name": q, "type": "direct", "arguments": null, "durable": true, "passive": false,
                             "auto_delete": false, "delivery_mode": null, "no_declare": false},
                "routing_key": q, "queue_arguments": null, "binding_arguments": null, "consumer_arguments": null,
                "durable": true, "exclusive": false, "auto_delete": false, "no_ack": false, "alias": null,
                "bindings": [], "no_declare": null, "expires": null, "message_ttl": null, "max_length": null,
                "max_length_bytes": null, "max_priority": null,
            })
        })
        .collect();
    json!(queues)
}

fn loadavg() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// A worker event (`worker-online`, `worker-heartbeat`, `worker-offline`) as Celery sends it.
fn worker_event(shared: &Shared, event_type: &str) -> Value {
    json!({
        "hostname": shared.nodename(),
        "utcoffset": 0,
        "pid": std::process::id(),
        "clock": shared.stats.tick(),
        "freq": shared.config.settings.heartbeat_interval.as_secs_f64(),
        "active": shared.running.ids().len(),
        "processed": shared.stats.processed.load(Ordering::Relaxed),
        "loadavg": loadavg(),
        "sw_ident": "taskhost",
        "sw_ver": env!("CARGO_PKG_VERSION"),
        "sw_sys": std::env::consts::OS,
        "timestamp": protocol::unix_seconds(now_ms()),
        "type": event_type,
    })
}

fn event_envelope(shared: &Shared, body: &Value, routing_key: &str) -> String {
    encode_envelope(
        body,
        json!({"hostname": shared.nodename()}),
        json!({"delivery_mode": 1, "delivery_info": {"exchange": "celeryev", "routing_key": routing_key}}),
    )
}

/// Publishes one worker event.
pub async fn publish_worker_event(shared: &Shared, event_type: &str) {
    let routing_key = event_type.replacen('-', ".", 1);
    let message = event_envelope(shared, &worker_event(shared, event_type), &routing_key);
    let mut conn = shared.conn.clone();
    let published: Result<i64, _> = redis::cmd("PUBLISH")
        .arg(shared.channels.event(&routing_key))
        .arg(message)
        .query_async(&mut conn)
        .await;
    if let Err(error) = published {
        tracing::debug!(%error, event_type, "Celery events: cannot publish");
    }
}

/// Says `worker-online`, then `worker-heartbeat` every interval, until `stop`.
pub async fn publish_heartbeats(shared: Arc<Shared>, stop: CancellationToken) {
    publish_worker_event(&shared, "worker-online").await;
    let mut tick = tokio::time::interval(shared.config.settings.heartbeat_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => publish_worker_event(&shared, "worker-heartbeat").await,
            _ = stop.cancelled() => return,
        }
    }
}

/// A task event (`task-received`, `task-started`, ...) with `fields` added.
/// `None` while task events are off (see [`Shared::task_events`]).
pub fn task_event(shared: &Shared, event_type: &str, uuid: &str, fields: Value) -> Option<Value> {
    if !shared.task_events() {
        return None;
    }
    let mut event = json!({
        "hostname": shared.nodename(),
        "utcoffset": 0,
        "pid": std::process::id(),
        "clock": shared.stats.tick(),
        "uuid": uuid,
        "timestamp": protocol::unix_seconds(now_ms()),
        "type": event_type,
    });
    if let (Some(event), Value::Object(fields)) = (event.as_object_mut(), fields) {
        event.extend(fields);
    }
    Some(event)
}

/// The channel and envelope that carry `events` as one `task.multi` message; `None` when there
/// are none.
pub fn task_events_message(shared: &Shared, events: &[Value]) -> Option<(String, String)> {
    if events.is_empty() {
        return None;
    }
    let body = Value::Array(events.to_vec());
    Some((shared.channels.event("task.multi"), event_envelope(shared, &body, "task.multi")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_reach_the_nodes_they_name() {
        let node = "taskhost@vm-1";
        assert!(addressed_to(&json!({"destination": null}), node));
        assert!(addressed_to(&json!({"destination": ["taskhost@vm-1"]}), node));
        assert!(!addressed_to(&json!({"destination": ["celery@other"]}), node));
        assert!(addressed_to(&json!({"pattern": "taskhost@*"}), node));
        assert!(!addressed_to(&json!({"pattern": "celery@*"}), node));
    }
}
