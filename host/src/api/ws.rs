//! WebSocket streams. All of them feed from the host's one [`crate::events::EventHub`]: a task's
//! watchers share the task's channel, the others the host-wide channel, and every message is
//! rendered once for all the streams that send it; no watcher holds a connection to the store of
//! its own. They run on their own runtime ([`fanout_runtime`]) so that fanning an event out to
//! thousands of watchers never queues the REST API behind it.
//!
//! - `WS /ws/tasks/{id}?since=SEQ`: a task's history, then its live events, joined by sequence id,
//!   closed after the terminal event. Messages: `{"type":"event","task_id","seq","event_type",
//!   "data","ts"}`. A client that loses the connection reconnects with `since` set to the last
//!   `seq` it saw and misses nothing.
//! - `WS /ws/queue`: the tenant's queue at a glance, after the ADR queue notes: `queue_status`
//!   (`total_tasks`, `active_tasks`, `pending_tasks`, `scheduled_tasks`, `dead_tasks`,
//!   `workers_online`, per-queue counts) on connect, on every change (at most
//!   [`QUEUE_STATUS_MIN_INTERVAL`] apart) and every [`QUEUE_STATUS_REFRESH`]; `task_status`
//!   (`task_id`, `task_name`, `plugin`, `status`, `progress`, `message`) when a task starts,
//!   progresses or ends.
//! - `WS /ws/events?plugin=&event_type=`: every event of the tenant's tasks, filtered.
//!
//! A slow watcher never slows others: each has its own bounded view of the broadcast; one that
//! falls too far behind, or does not take a message within [`SEND_TIMEOUT`], is closed with code
//! [`CLOSE_LAGGED`] and a reason naming where to resume (`/ws/tasks` catches up from the store
//! when its view of the broadcast overflows, and is closed only when it does not read). Events
//! that are ready together go out in one write ([`BATCH_BYTES`]). Pings every [`PING_INTERVAL`]
//! keep idle connections alive through proxies.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};
use std::task::Poll;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use futures::SinkExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Caller;
use super::tasks::rfc3339;
use super::{ApiError, ApiPath, ApiQuery, AppState};
use crate::events::{Event, LiveEvent, TaskFollower, kind};

/// Between two pings on an idle connection.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// Longest wait for a watcher to take one message before it is closed as too slow.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer per connection. Watchers send almost nothing, and tungstenite's default (128 KiB,
/// zero-filled, so resident) made an idle watcher cost 132 KiB; 4 KiB brings it to about 9 KiB.
pub const READ_BUFFER: usize = 4 << 10;
/// Most bytes of events sent in one write: a burst of a task's events goes out together (one
/// syscall, not one per event), and the send buffer a watcher keeps stays small.
pub const BATCH_BYTES: usize = 8 << 10;
/// Close code for a watcher that fell behind: reconnect and resume.
pub const CLOSE_LAGGED: u16 = 4008;
/// Least time between two `queue_status` messages caused by changes.
pub const QUEUE_STATUS_MIN_INTERVAL: Duration = Duration::from_millis(200);
/// `queue_status` is sent at least this often, changes or not.
pub const QUEUE_STATUS_REFRESH: Duration = Duration::from_secs(5);

/// The JSON shape of an event, shared by REST and WebSocket.
pub fn event_json(e: &Event) -> Value {
    json!({
        "type": "event",
        "task_id": e.task_id,
        "seq": e.seq,
        "event_type": e.event_type,
        "data": e.data,
        "ts": rfc3339(e.ts),
    })
}

/// Query of the WebSocket endpoint.
#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    since: Option<u64>,
}

/// Upgrades after checking the task exists for the caller (404 otherwise, before any upgrade).
pub async fn task_stream(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StreamQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    state
        .broker
        .get(tenant.scope(), &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no task {id}")))?;
    let since = q.since.unwrap_or(0);
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| on_fanout_runtime(stream_task(state, id, since, socket))))
}

async fn stream_task(state: AppState, id: String, since: u64, socket: WebSocket) {
    crate::telemetry::watchers(1.0);
    stream_task_inner(state, id, since, socket).await;
    crate::telemetry::watchers(-1.0);
}

async fn stream_task_inner(state: AppState, id: String, since: u64, mut socket: WebSocket) {
    let mut follower = state.hub.follow(&id, since);
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    loop {
        tokio::select! {
            // Events first: a watcher woken by a burst sends it without polling its socket and
            // timer too; those are polled whenever no event is ready.
            biased;
            next = follower.next() => match next {
                Ok(Some(event)) => {
                    if !send_events(&mut socket, &mut follower, &event).await {
                        let reason = format!("too slow; resume with since={}", follower.last_seq());
                        close(&mut socket, CLOSE_LAGGED, reason).await;
                        return;
                    }
                }
                Ok(None) => {
                    close(&mut socket, close_code::NORMAL, "task finished".to_owned()).await;
                    return;
                }
                Err(error) => {
                    tracing::warn!(task = %id, %error, "event stream failed");
                    let reason = format!("store unavailable; resume with since={}", follower.last_seq());
                    close(&mut socket, close_code::AGAIN, reason).await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {} // pings are answered by axum; other messages are ignored
            },
            _ = ping.tick() => {
                if !within_send_timeout(socket.send(Message::Ping(Vec::new().into()))).await {
                    return;
                }
            }
        }
    }
}

/// Sends `first` and whatever else the follower has ready (up to [`BATCH_BYTES`]) in one write;
/// false when the client is gone or too slow to take them.
async fn send_events(socket: &mut WebSocket, follower: &mut TaskFollower, first: &LiveEvent) -> bool {
    let sending = async {
        let text = first.wire_text(|e| event_json(e).to_string());
        let mut queued = text.len();
        socket.feed(Message::Text(text)).await?;
        while queued < BATCH_BYTES {
            let Some(event) = follower.next_ready() else { break };
            let text = event.wire_text(|e| event_json(e).to_string());
            queued += text.len();
            socket.feed(Message::Text(text)).await?;
        }
        socket.flush().await
    };
    within_send_timeout(sending).await
}

/// Sends one JSON message; false when the client is gone or too slow to take it.
async fn send_json(socket: &mut WebSocket, value: &Value) -> bool {
    within_send_timeout(socket.send(Message::Text(value.to_string().into()))).await
}

/// Runs a send: true when it completed within [`SEND_TIMEOUT`].
async fn within_send_timeout(sending: impl Future<Output = Result<(), axum::Error>>) -> bool {
    let mut sending = std::pin::pin!(sending);
    // A client that keeps up takes the message at once: no timer for it.
    if let Poll::Ready(sent) = futures::poll!(sending.as_mut()) {
        return sent.is_ok();
    }
    matches!(tokio::time::timeout(SEND_TIMEOUT, sending).await, Ok(Ok(())))
}

async fn close(socket: &mut WebSocket, code: u16, reason: String) {
    let frame = CloseFrame { code, reason: reason.into() };
    within_send_timeout(socket.send(Message::Close(Some(frame)))).await;
}

/// Runs a WebSocket stream on the fan-out runtime ([`fanout_runtime`]), or here if it could not
/// start.
async fn on_fanout_runtime(stream: impl Future<Output = ()> + Send + 'static) {
    match fanout_runtime() {
        Some(runtime) => drop(runtime.spawn(stream)),
        None => stream.await,
    }
}

/// The fan-out threads' nice value by default; see [`set_fanout_nice`].
pub const DEFAULT_FANOUT_NICE: i32 = 0;

/// The nice value the fan-out threads take when they start.
static FANOUT_NICE: AtomicI32 = AtomicI32::new(DEFAULT_FANOUT_NICE);

/// Sets the nice value (0 to 19) of the fan-out threads; call before the first WebSocket stream
/// (`host run --ws-nice`). Above 0, the kernel runs the REST API, event storage and the tasks
/// first whenever they and the fan-out compete for a core: the fan-out is bulk work that can
/// wait a few milliseconds, a `GET` is not. The trade-off: next to other CPU-bound processes at
/// normal priority, the fan-out gets a smaller share of the cores and delivery slows.
pub fn set_fanout_nice(nice: i32) {
    FANOUT_NICE.store(nice.clamp(0, 19), Ordering::Relaxed);
}

/// The runtime every WebSocket stream runs on, apart from the one that serves REST and the one
/// that stores events and runs tasks. An event of a task with 10,000 watchers wakes 10,000
/// streams, each with a send to make: on one runtime, a REST request (or the wake-up of a store
/// call) arriving meanwhile would wait behind all of them; on its own threads it is served in
/// between, by the kernel's scheduler (sooner still with [`set_fanout_nice`]). Its sockets stay
/// registered with the I/O driver of the runtime that accepted them (the API's), which wakes them
/// only when a client sends something or a full send buffer drains. Started on first use, with
/// one worker thread per core.
fn fanout_runtime() -> Option<&'static tokio::runtime::Handle> {
    static FANOUT: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    FANOUT
        .get_or_init(|| {
            let threads = std::thread::available_parallelism().map_or(2, usize::from);
            build_fanout_runtime(threads, FANOUT_NICE.load(Ordering::Relaxed))
                .inspect_err(|error| {
                    tracing::error!(%error, "cannot start the WebSocket fan-out runtime; streams share the API's")
                })
                .ok()
        })
        .as_ref()
        .map(tokio::runtime::Runtime::handle)
}

fn build_fanout_runtime(threads: usize, nice: i32) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("ws-fanout")
        .enable_all()
        .on_thread_start(move || {
            if nice != 0
                && let Err(error) = crate::sched::set_thread_nice(nice)
            {
                tracing::warn!(%error, nice, "cannot lower the priority of a WebSocket fan-out thread");
            }
            // Started from an API thread, which asks for a short slice (`host run
            // --api-slice-us`): the fan-out is bulk work and takes the kernel's default.
            if let Err(error) = crate::sched::request_slice(std::time::Duration::ZERO) {
                tracing::debug!(%error, "cannot give a WebSocket fan-out thread the default slice");
            }
        })
        .build()
}

/// Query of `/ws/events`.
#[derive(Debug, Deserialize)]
pub struct EventsStreamQuery {
    plugin: Option<String>,
    event_type: Option<String>,
}

/// `WS /ws/events?plugin=&event_type=`.
pub async fn events_stream(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiQuery(q): ApiQuery<EventsStreamQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| on_fanout_runtime(events_stream_inner(state, tenant, q, socket)))
}

async fn events_stream_inner(
    state: AppState,
    tenant: crate::tenant::Tenant,
    q: EventsStreamQuery,
    mut socket: WebSocket,
) {
    crate::telemetry::watchers(1.0);
    let mut live = state.hub.subscribe();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(event) => {
                    if q.event_type.as_deref().is_some_and(|t| t != event.event_type) {
                        continue;
                    }
                    let Some(task) = state.hub.task_meta(&event.task_id).await else { continue };
                    if tenant.scope().is_some_and(|t| t != task.tenant) || q.plugin.as_deref().is_some_and(|p| p != task.plugin) {
                        continue;
                    }
                    // The same text for every stream that takes the event: rendered once.
                    let text = event.tagged_text(|e| {
                        let mut message = event_json(e);
                        message["plugin"] = json!(task.plugin);
                        message.to_string()
                    });
                    if !within_send_timeout(socket.send(Message::Text(text))).await {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    let reason = format!("fell {missed} events behind; reconnect, and read missed events per task with /api/v1/tasks/{{id}}/events?since=");
                    close(&mut socket, CLOSE_LAGGED, reason).await;
                    break;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if !within_send_timeout(socket.send(Message::Ping(Vec::new().into()))).await {
                    break;
                }
            }
        }
    }
    crate::telemetry::watchers(-1.0);
}

/// `WS /ws/queue`.
pub async fn queue_stream(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| on_fanout_runtime(queue_stream_inner(state, tenant, socket)))
}

async fn queue_stream_inner(state: AppState, tenant: crate::tenant::Tenant, mut socket: WebSocket) {
    crate::telemetry::watchers(1.0);
    let mut live = state.hub.subscribe();
    let mut refresh = tokio::time::interval(QUEUE_STATUS_REFRESH);
    let mut dirty = true;
    let mut last_status: Option<tokio::time::Instant> = None;
    loop {
        let status_due = last_status.map_or(tokio::time::Instant::now(), |t| t + QUEUE_STATUS_MIN_INTERVAL);
        tokio::select! {
            _ = tokio::time::sleep_until(status_due), if dirty => {
                dirty = false;
                last_status = Some(tokio::time::Instant::now());
                let Some(status) = queue_status(&state, &tenant).await else { continue };
                if !send_json(&mut socket, &status).await {
                    break;
                }
            }
            _ = refresh.tick() => dirty = true,
            received = live.recv() => match received {
                Ok(event) => {
                    let status = match event.event_type.as_str() {
                        kind::RUN_STARTED => "running",
                        kind::PROGRESS_UPDATE => "running",
                        kind::RUN_COMPLETED | kind::RUN_FAILED | kind::RUN_CANCELLED | kind::RUN_RETRYING => {
                            event.data.get("status").and_then(Value::as_str).unwrap_or("finished")
                        }
                        _ => continue,
                    };
                    let Some(task) = state.hub.task_meta(&event.task_id).await else { continue };
                    if tenant.scope().is_some_and(|t| t != task.tenant) {
                        continue;
                    }
                    if event.event_type != kind::PROGRESS_UPDATE {
                        dirty = true;
                    }
                    // The same text for every stream that takes the event: rendered once.
                    let text = event.status_text(|e| {
                        json!({
                            "type": "task_status",
                            "task_id": e.task_id,
                            "task_name": task.task_name,
                            "plugin": task.plugin,
                            "status": status,
                            "progress": e.data.get("percent"),
                            "message": e.data.get("message").or_else(|| e.data.pointer("/error/message")),
                            "ts": rfc3339(e.ts),
                        })
                        .to_string()
                    });
                    if !within_send_timeout(socket.send(Message::Text(text))).await {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => dirty = true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    crate::telemetry::watchers(-1.0);
}

async fn queue_status(state: &AppState, tenant: &crate::tenant::Tenant) -> Option<Value> {
    let stats = state.hub.queue_stats(tenant.scope()).await.ok()?;
    // From the hub's list of hosts, shared by every stream: at most a second old.
    let now = crate::queue::now_ms();
    let workers_online = match state.hub.hosts().await {
        Ok(hosts) => hosts.iter().filter(|host| super::tasks::is_online(state, host, now)).count(),
        Err(_) => 0,
    };
    let sum = |f: fn(&crate::queue::QueueStats) -> u64| stats.iter().map(f).sum::<u64>();
    let (pending, running, scheduled, dead) =
        (sum(|q| q.pending), sum(|q| q.running), sum(|q| q.scheduled), sum(|q| q.dead));
    Some(json!({
        "type": "queue_status",
        "total_tasks": pending + running + scheduled,
        "active_tasks": running,
        "pending_tasks": pending,
        "scheduled_tasks": scheduled,
        "dead_tasks": dead,
        "workers_online": workers_online,
        "slots": state.slots,
        "queues": stats,
    }))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use crate::sched::thread_nice;

    #[test]
    fn the_fanout_threads_run_at_the_nice_value_asked_for_and_nothing_else_does() {
        let own = thread_nice();
        let wanted = (own + 7).min(19);
        let runtime = super::build_fanout_runtime(2, wanted).unwrap();
        let seen = runtime.block_on(runtime_spawned_nice());
        assert_eq!(seen, wanted);
        assert_eq!(thread_nice(), own, "the caller's thread keeps its priority");
        let plain = super::build_fanout_runtime(1, 0).unwrap();
        assert_eq!(plain.block_on(runtime_spawned_nice()), own);
    }

    #[test]
    fn fanout_threads_started_from_an_api_thread_take_the_default_slice_not_its_short_one() {
        let slices = std::thread::spawn(|| {
            let default = crate::sched::thread_slice().unwrap();
            crate::sched::request_slice(std::time::Duration::from_micros(100)).unwrap();
            let runtime = super::build_fanout_runtime(1, 0).unwrap();
            let fanout = runtime.block_on(async {
                tokio::spawn(async { crate::sched::thread_slice().unwrap() }).await.unwrap()
            });
            (default, fanout)
        })
        .join()
        .unwrap();
        assert_eq!(slices.1, slices.0);
        assert_ne!(slices.1, std::time::Duration::from_micros(100));
    }

    /// The nice value of a worker thread of the current runtime.
    async fn runtime_spawned_nice() -> i32 {
        tokio::spawn(async { thread_nice() }).await.unwrap()
    }
}
