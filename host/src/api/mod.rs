//! The HTTP API: REST under `/api/v1`, WebSocket under `/ws`, health outside both.
//!
//! Shapes follow DESIGN.md. Every error is JSON `{"error": {"kind", "message"}}` with a fitting
//! status code, including the body-size and malformed-JSON cases that axum would otherwise answer
//! in plain text. This room never touches wasmtime: it reads plugin metadata from the registry and
//! talks to the broker, the event hub and the worker's cancel registry.

mod auth;
mod dashboard;
mod error;
mod files;
pub mod openapi;
mod tasks;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use serde_json::json;

pub use auth::Caller;
pub use error::ApiError;
pub use ws::{DEFAULT_FANOUT_NICE, set_fanout_nice};

use crate::events::EventHub;
use crate::plugin::PluginRegistry;
use crate::queue::Broker;
use crate::tenant::Tenants;
use crate::worker::RunningTasks;

/// `Query<T>` whose rejection is an [`ApiError`] (400 with the error shape).
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `Path<T>` whose rejection is an [`ApiError`].
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Largest accepted task input, in bytes of JSON.
pub const DEFAULT_MAX_INPUT_BYTES: usize = 1 << 20;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The queue backend.
    pub broker: Arc<dyn Broker>,
    /// Event storage and fan-out.
    pub hub: EventHub,
    /// Loaded plugins.
    pub plugins: Arc<PluginRegistry>,
    /// Tasks running on this host (to stop them at once on cancel).
    pub running: Arc<RunningTasks>,
    /// Largest accepted input.
    pub max_input_bytes: usize,
    /// Tenants, tokens and quotas.
    pub tenants: Arc<Tenants>,
    /// Worker slots on this host.
    pub slots: usize,
    /// A host whose last heartbeat is older than this is shown offline.
    pub host_offline_after: std::time::Duration,
    /// Largest file accepted in a file area.
    pub max_file_bytes: usize,
    /// With Redis: true while this host is subscribed to cancellations published by others.
    pub cancel_subscription: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Largest file accepted in a file area by default.
pub const DEFAULT_MAX_FILE_BYTES: usize = 32 << 20;
/// Room in a tenant's file area when its quota names none.
pub const DEFAULT_FILE_AREA_BYTES: u64 = 1 << 30;

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/tasks", post(tasks::submit).get(tasks::list))
        .route(
            "/tasks/batch",
            post(tasks::submit_batch)
                // A task whose client-given id is `batch` stays readable.
                .get(|state: axum::extract::State<AppState>, caller: Caller| {
                    tasks::get_task(state, caller, ApiPath("batch".to_owned()))
                })
                .layer(DefaultBodyLimit::max(tasks::batch_body_limit(state.max_input_bytes))),
        )
        .route("/tasks/{id}", get(tasks::get_task))
        .route("/tasks/{id}/cancel", post(tasks::cancel))
        .route("/tasks/{id}/retry", post(tasks::retry))
        .route("/tasks/{id}/events", get(tasks::events))
        .route("/plugins", get(tasks::plugins))
        .route("/queues", get(tasks::queues))
        .route("/workers", get(tasks::workers))
        .route("/files", get(files::list))
        .route(
            "/files/{name}",
            axum::routing::put(files::put)
                .get(files::get)
                .delete(files::delete)
                .layer(DefaultBodyLimit::max(state.max_file_bytes)),
        )
        .route("/openapi.json", get(openapi::document))
        .fallback(|| async { ApiError::NotFound("no such API route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("method not allowed on this route".into())
        })
        // Room for the request's other fields around a maximal input; the input itself is
        // checked against `max_input_bytes` exactly.
        .layer(DefaultBodyLimit::max(state.max_input_bytes + (64 << 10)));
    Router::new()
        .nest("/api/v1", api)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("method not allowed on this route".into())
        })
        .route("/ws/tasks/{id}", get(ws::task_stream))
        .route("/ws/queue", get(ws::queue_stream))
        .route("/ws/events", get(ws::events_stream))
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/readyz", get(tasks::readyz))
        .route("/metrics", get(tasks::metrics))
        .route("/", get(dashboard::index))
        .route("/assets/{name}", get(dashboard::asset))
        .with_state(state)
}
