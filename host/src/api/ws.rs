//! `WS /ws/tasks/{id}?since=SEQ`: a task's history, then its live events, joined by sequence id,
//! closed after the terminal event.
//!
//! Messages: `{"type":"event","task_id","seq","event_type","data","ts"}`. A client that loses the
//! connection reconnects with `since` set to the last `seq` it saw and misses nothing. Pings every
//! [`PING_INTERVAL`] keep idle connections alive through proxies.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Caller;
use super::tasks::rfc3339;
use super::{ApiError, AppState};
use crate::events::Event;

const PING_INTERVAL: Duration = Duration::from_secs(20);

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
    Path(id): Path<String>,
    Query(q): Query<StreamQuery>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    state
        .broker
        .get(tenant.scope(), &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no task {id}")))?;
    let since = q.since.unwrap_or(0);
    Ok(upgrade.on_upgrade(move |socket| stream_task(state, id, since, socket)))
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
            next = follower.next() => match next {
                Ok(Some(event)) => {
                    let text = event_json(&event).to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return; // the client went away
                    }
                }
                Ok(None) => {
                    let _ = socket.send(Message::Close(Some(CloseFrame { code: close_code::NORMAL, reason: "task finished".into() }))).await;
                    return;
                }
                Err(error) => {
                    tracing::warn!(task = %id, %error, "event stream failed");
                    let reason = format!("store unavailable; resume with since={}", follower.last_seq());
                    let _ = socket.send(Message::Close(Some(CloseFrame { code: close_code::AGAIN, reason: reason.into() }))).await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {} // pings are answered by axum; other messages are ignored
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}
