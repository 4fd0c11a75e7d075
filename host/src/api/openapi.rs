//! The OpenAPI document, generated from the handlers and types at compile time and served at
//! `/api/v1/openapi.json`. The types below exist to describe response shapes.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::tasks::{self, BatchRequest, SubmitRequest, TaskView};
use crate::queue::{CancelResult, ErrorInfo, Priority, QueueStats, TaskStatus};
use crate::sandbox::LimitsRequest;

/// `{"error": {"kind", "message"}}`: every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorInfo,
}

/// Reply to a submission.
#[derive(Serialize, ToSchema)]
pub struct Submitted {
    /// Task id.
    pub id: String,
    /// Its status.
    pub status: TaskStatus,
    /// False when the id already existed.
    pub created: bool,
}

/// One item of a batch's reply: the task as a single submit returns it, or why it was refused.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchItem {
    /// Accepted (or already known by its id).
    Submitted(Submitted),
    /// Refused: `{"error": {"kind", "message"}}`, as a single submit would have answered.
    Refused(ErrorBody),
}

/// Reply to `POST /tasks/batch`.
#[derive(Serialize, ToSchema)]
pub struct BatchReply {
    /// One per submitted item, in order.
    pub results: Vec<BatchItem>,
    /// Items that created a task.
    pub created: u64,
    /// Items whose id named a task that already existed (nothing new queued).
    pub existing: u64,
    /// Items refused (each result says why).
    pub failed: u64,
}

/// `GET /tasks`.
#[derive(Serialize, ToSchema)]
pub struct TaskList {
    /// Newest first.
    pub tasks: Vec<TaskView>,
}

/// Reply to a cancel request.
#[derive(Serialize, ToSchema)]
pub struct CancelReply {
    /// Task id.
    pub id: String,
    /// What the request did.
    pub cancel: CancelResult,
    /// The task's status after it.
    pub status: TaskStatus,
}

/// One event, as REST and WebSocket show it.
#[derive(Serialize, ToSchema)]
pub struct EventView {
    /// Always `event`.
    #[serde(rename = "type")]
    pub message_type: String,
    /// Task id.
    pub task_id: String,
    /// Per-task sequence id, from 1, gapless.
    pub seq: u64,
    /// `run_started`, `progress_update`, `log`, `run_completed`, or a plugin's own type.
    pub event_type: String,
    /// JSON data.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// RFC 3339 time.
    pub ts: String,
}

/// `GET /tasks/{id}/events`.
#[derive(Serialize, ToSchema)]
pub struct EventsPage {
    /// Task id.
    pub task_id: String,
    /// Oldest first.
    pub events: Vec<EventView>,
    /// Pass as `since` to read on.
    pub next_since: u64,
}

/// `GET /queues`.
#[derive(Serialize, ToSchema)]
pub struct QueuesReply {
    /// Counts per queue.
    pub queues: Vec<QueueStats>,
    /// Tasks running on the answering host.
    pub running_here: u64,
}

/// `GET /workers`.
#[derive(Serialize, ToSchema)]
pub struct WorkersReply {
    /// Hosts that sent a heartbeat recently, freshest first.
    pub workers: Vec<tasks::WorkerView>,
    /// How many of them are online.
    pub online: u64,
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "taskhost",
        description = "Runs sandboxed WebAssembly tasks from queues. Authenticate with `Authorization: Bearer TOKEN` when the host has tenants. WebSocket streams: `/ws/tasks/{id}?since=SEQ`, `/ws/queue`, `/ws/events?plugin=&event_type=` (token as `?token=` or bearer header)."
    ),
    paths(
        tasks::submit, tasks::submit_batch, tasks::get_task, tasks::list, tasks::cancel, tasks::retry, tasks::events,
        tasks::plugins, tasks::queues, tasks::workers, tasks::readyz, tasks::metrics
    ),
    components(schemas(
        SubmitRequest, BatchRequest, BatchReply, BatchItem, TaskView, ErrorBody, ErrorInfo, Submitted, TaskList, CancelReply, EventView, EventsPage,
        QueuesReply, WorkersReply, crate::queue::HostInfo, QueueStats, TaskStatus, Priority, LimitsRequest, CancelResult
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
