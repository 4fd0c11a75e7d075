//! REST handlers for tasks, plugins, queues and readiness.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

use super::Caller;
use super::{ApiError, ApiPath, ApiQuery, AppState};
use crate::plugin::manifest::valid_name;
use crate::queue::{
    CancelResult, ErrorInfo, FileInfo, Millis, NewTask, Priority, Submitted, TaskFilter, TaskRecord,
    TaskStatus, now_ms,
};
use crate::sandbox::LimitsRequest;
use crate::tenant::Tenant;

/// `POST /api/v1/tasks` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// Plugin name (or a task name one plugin serves).
    pub plugin: String,
    /// The task's input; `{}` when absent.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub input: Option<Value>,
    /// Queue; the plugin's own by default.
    #[serde(default)]
    pub queue: Option<String>,
    /// `high`, `normal` (default) or `low`.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Client-chosen id, for idempotent submission.
    #[serde(default)]
    pub id: Option<String>,
    /// Start no sooner than this many milliseconds from now.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Start no sooner than this time (RFC 3339).
    #[serde(default)]
    pub eta: Option<String>,
    /// Do not start after this time (RFC 3339); the task ends `expired`.
    #[serde(default)]
    pub expires: Option<String>,
    /// Retries after the first attempt (the plugin's default otherwise).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Narrower limits than the plugin's defaults.
    #[serde(default)]
    pub limits: Option<LimitsRequest>,
    /// Files of the tenant's file area the task sees read-only under `/input`.
    #[serde(default)]
    pub files: Vec<String>,
}

/// A task as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskView {
    id: String,
    plugin: String,
    task: String,
    tenant: String,
    queue: String,
    status: TaskStatus,
    priority: Priority,
    progress: f32,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorInfo>,
    attempts: u32,
    max_retries: u32,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    cancel_requested: bool,
    /// Files mounted read-only under `/input`.
    files: Vec<String>,
    /// Running, but silent for longer than the host's stale threshold.
    stale: bool,
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: Millis) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn parse_time(field: &str, text: &str) -> Result<Millis, ApiError> {
    let t = humantime::parse_rfc3339_weak(text)
        .map_err(|e| ApiError::InvalidRequest(format!("{field}: {text:?} is not an RFC 3339 time: {e}")))?;
    Ok(t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0))
}

impl TaskView {
    /// The API view of a stored task.
    pub fn from_record(t: TaskRecord, with_result: bool) -> Self {
        TaskView {
            result: if with_result {
                t.result.as_deref().and_then(|r| serde_json::from_str(r).ok())
            } else {
                None
            },
            id: t.id,
            plugin: t.plugin,
            task: t.task_name,
            tenant: t.tenant,
            queue: t.queue,
            status: t.status,
            priority: t.priority,
            progress: t.progress,
            message: t.message,
            error: t.error,
            attempts: t.attempts,
            max_retries: t.max_retries,
            created_at: rfc3339(t.created_at),
            started_at: t.started_at.map(rfc3339),
            finished_at: t.finished_at.map(rfc3339),
            not_before: t.not_before.map(rfc3339),
            expires_at: t.expires_at.map(rfc3339),
            cancel_requested: t.cancel_requested,
            files: t.files,
            stale: false,
        }
    }
}

fn valid_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// `POST /api/v1/tasks`.
#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks", request_body = SubmitRequest,
    responses((status = 202, description = "Accepted", body = super::openapi::Submitted),
              (status = 200, description = "A task with this id already exists", body = super::openapi::Submitted),
              (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody),
              (status = 403, body = super::openapi::ErrorBody), (status = 404, description = "Unknown plugin", body = super::openapi::ErrorBody),
              (status = 413, body = super::openapi::ErrorBody), (status = 429, body = super::openapi::ErrorBody)))]
pub async fn submit(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    take_submit(&state, &tenant)?;
    let body = read_body(body, state.max_input_bytes)?;
    let request: SubmitRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidJson(format!("invalid request body: {e}")))?;
    let mut files = None;
    let task = prepare(&state, &tenant, request, &mut files).await?;
    let submitted = state.broker.submit(task).await?;
    if submitted.created {
        // This host's own submissions show in `GET /queues` at once, not after a snapshot's age.
        state.hub.queue_counts_changed();
    }
    let status = if submitted.created { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, Json(submitted_json(&submitted))))
}

/// `{id, status, created}`: a submission's reply, alone or as an item of a batch.
fn submitted_json(submitted: &Submitted) -> Value {
    json!({"id": submitted.task.id, "status": submitted.task.status, "created": submitted.created})
}

/// Takes one submission from the tenant's submit rate.
fn take_submit(state: &AppState, tenant: &Tenant) -> Result<(), ApiError> {
    state.tenants.take_submit(tenant).map_err(|wait| ApiError::RateLimited {
        message: format!("tenant {} is over its submit rate; retry in {wait:.2} s", tenant.name),
        retry_after_secs: wait.ceil().max(1.0) as u64,
    })
}

/// The request body, or the error for one over `limit` bytes or unreadable.
fn read_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("the request body is over the limit of {limit} bytes"))
        } else {
            ApiError::InvalidJson(format!("cannot read the request body: {rejection}"))
        }
    })
}

/// Validates and authorises one submission for `tenant`: the task to hand to the broker.
/// `files` caches the tenant's file area across the items of a batch.
async fn prepare(
    state: &AppState,
    tenant: &Tenant,
    request: SubmitRequest,
    files: &mut Option<Vec<FileInfo>>,
) -> Result<NewTask, ApiError> {
    let (plugin, task_name) = state.plugins.resolve(&request.plugin).ok_or_else(|| {
        ApiError::UnknownPlugin(format!("no plugin or task named {:?} is loaded", request.plugin))
    })?;
    let input = match request.input {
        Some(input) => input.to_string(),
        None => "{}".to_owned(),
    };
    if input.len() > state.max_input_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "the input is {} bytes, over the limit of {} bytes",
            input.len(),
            state.max_input_bytes
        )));
    }
    let queue = request.queue.unwrap_or_else(|| plugin.manifest.queue.clone());
    if !valid_name(&queue) {
        return Err(ApiError::InvalidRequest(format!(
            "queue {queue:?}: use 1-64 characters of a-z, A-Z, 0-9, '-', '_', '.'"
        )));
    }
    state.tenants.check_allowed(tenant, &plugin.manifest.name, &queue).map_err(ApiError::Forbidden)?;
    let id = match request.id {
        Some(id) if valid_task_id(&id) => id,
        Some(id) => {
            return Err(ApiError::InvalidRequest(format!(
                "id {id:?}: use 1-128 characters of a-z, A-Z, 0-9, '-', '_', '.', ':'"
            )));
        }
        None => uuid::Uuid::now_v7().to_string(),
    };
    let now = now_ms();
    let not_before = match (request.delay_ms, request.eta.as_deref()) {
        (Some(_), Some(_)) => return Err(ApiError::InvalidRequest("give delay_ms or eta, not both".into())),
        (Some(delay), None) => Some(now.saturating_add(delay.min(365 * 24 * 3600 * 1000) as Millis)),
        (None, Some(eta)) => Some(parse_time("eta", eta)?),
        (None, None) => None,
    };
    let expires_at = request.expires.as_deref().map(|e| parse_time("expires", e)).transpose()?;
    let max_retries = request.max_retries.unwrap_or(plugin.manifest.retry.max_retries);
    if max_retries > 100 {
        return Err(ApiError::InvalidRequest("max_retries: at most 100".into()));
    }
    let limits = state.tenants.narrow_limits(tenant, request.limits.unwrap_or_default());
    if limits.fuel == Some(0) || limits.timeout_ms == Some(0) || limits.memory_mb == Some(0) {
        return Err(ApiError::InvalidRequest(
            "limits: fuel, timeout_ms and memory_mb must be positive".into(),
        ));
    }
    if request.files.len() > 64 {
        return Err(ApiError::InvalidRequest("files: at most 64 files per task".into()));
    }
    if !request.files.is_empty() {
        let known = match files {
            Some(known) => known,
            None => files.insert(state.broker.list_files(&tenant.name).await?),
        };
        for name in &request.files {
            if !known.iter().any(|f| &f.name == name) {
                return Err(ApiError::InvalidRequest(format!(
                    "files: {name:?} is not in the file area (upload it with PUT /api/v1/files/{{name}})"
                )));
            }
        }
    }
    Ok(NewTask {
        id,
        tenant: tenant.name.clone(),
        plugin: plugin.manifest.name.clone(),
        task_name,
        queue,
        input,
        priority: request.priority.unwrap_or_default(),
        not_before,
        expires_at,
        max_retries,
        limits,
        files: request.files,
    })
}

/// Most tasks in one `POST /api/v1/tasks/batch`.
pub const MAX_BATCH_TASKS: usize = 1000;

/// Largest body of a `POST /api/v1/tasks/batch` (each task's input is still held to the host's
/// input limit), unless one task's limit is larger.
pub const MAX_BATCH_BODY_BYTES: usize = 16 << 20;

/// The body limit of `POST /api/v1/tasks/batch` on a host whose input limit is `max_input_bytes`.
pub fn batch_body_limit(max_input_bytes: usize) -> usize {
    MAX_BATCH_BODY_BYTES.max(max_input_bytes + (64 << 10))
}

/// `POST /api/v1/tasks/batch` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// At most 1,000 tasks, each the body of `POST /api/v1/tasks`.
    #[schema(value_type = Vec<SubmitRequest>)]
    pub tasks: Vec<Value>,
}

/// `POST /api/v1/tasks/batch`: many submissions in one request.
///
/// Each item is validated, authorised, rate-counted and submitted exactly as `POST
/// /api/v1/tasks` would; the reply lists one result per item, in order: `{id, status, created}`
/// or `{error: {kind, message}}`. The status is 200 whenever the batch itself was readable, with
/// `created`, `existing` and `failed` counts beside the results, so a partial failure shows in
/// `failed`. Items past the tenant's submit rate fail with `rate_limited` (a prefix of the batch
/// passes) and the reply carries `Retry-After`; when not even the first item passes, the whole
/// request is refused with 429, as a single submit would be. More than [`MAX_BATCH_TASKS`]
/// items: 413, nothing submitted.
#[utoipa::path(post, path = "/api/v1/tasks/batch", tag = "tasks", request_body = BatchRequest,
    responses((status = 200, description = "One result per item, in order; `failed` counts the items refused", body = super::openapi::BatchReply),
              (status = 400, description = "The body is not `{\"tasks\": [...]}`", body = super::openapi::ErrorBody),
              (status = 401, body = super::openapi::ErrorBody),
              (status = 413, description = "More than 1,000 tasks, or the body is over its limit", body = super::openapi::ErrorBody),
              (status = 429, description = "Over the tenant's submit rate from the first item on", body = super::openapi::ErrorBody)))]
pub async fn submit_batch(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    let body = read_body(body, batch_body_limit(state.max_input_bytes))?;
    let request: BatchRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidJson(format!("invalid request body: {e}")))?;
    drop(body);
    if request.tasks.len() > MAX_BATCH_TASKS {
        return Err(ApiError::PayloadTooLarge(format!(
            "{} tasks in one batch, over the limit of {MAX_BATCH_TASKS}",
            request.tasks.len()
        )));
    }
    let count = request.tasks.len();
    let mut results: Vec<Option<Result<Submitted, ApiError>>> = (0..count).map(|_| None).collect();
    let mut tasks: Vec<(usize, NewTask)> = Vec::with_capacity(count);
    let mut retry_after = None;
    let mut files = None;
    for (i, item) in request.tasks.into_iter().enumerate() {
        let prepared = match take_submit(&state, &tenant) {
            Err(error) => {
                if let ApiError::RateLimited { retry_after_secs, .. } = &error {
                    if i == 0 {
                        return Err(error);
                    }
                    retry_after.get_or_insert(*retry_after_secs);
                }
                Err(error)
            }
            Ok(()) => match SubmitRequest::deserialize(item) {
                Err(e) => Err(ApiError::InvalidJson(format!("invalid task: {e}"))),
                Ok(request) => prepare(&state, &tenant, request, &mut files).await,
            },
        };
        match prepared {
            Ok(task) => tasks.push((i, task)),
            Err(error) => results[i] = Some(Err(error)),
        }
    }
    // Every task goes to the broker at once, so that its batching combines them; a task whose id
    // an earlier one of this batch already carries waits for the round after, so that it finds
    // that task stored and answers as a repeated single submit would.
    while !tasks.is_empty() {
        let mut ids = std::collections::HashSet::with_capacity(tasks.len());
        let (round, later): (Vec<_>, Vec<_>) = tasks.into_iter().partition(|(_, t)| ids.insert(t.id.clone()));
        tasks = later;
        let submits = round.into_iter().map(|(i, task)| {
            let broker = &state.broker;
            async move { (i, broker.submit(task).await) }
        });
        for (i, submitted) in futures::future::join_all(submits).await {
            results[i] = Some(submitted.map_err(ApiError::from));
        }
    }
    let (mut created, mut existing, mut failed) = (0, 0, 0);
    let results: Vec<Value> = results
        .into_iter()
        .map(|result| match result {
            Some(Ok(submitted)) => {
                if submitted.created {
                    created += 1;
                } else {
                    existing += 1;
                }
                submitted_json(&submitted)
            }
            Some(Err(error)) => {
                failed += 1;
                error.body()
            }
            None => {
                failed += 1;
                json!({"error": {"kind": "unavailable", "message": "the task was not submitted"}})
            }
        })
        .collect();
    if created > 0 {
        state.hub.queue_counts_changed();
    }
    let body = Json(json!({"results": results, "created": created, "existing": existing, "failed": failed}));
    let mut response = (StatusCode::OK, body).into_response();
    if let Some(secs) = retry_after {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
    }
    Ok(response)
}

/// `GET /api/v1/tasks/{id}`.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks", params(("id" = String, Path, description = "Task id")),
    responses((status = 200, body = TaskView), (status = 404, body = super::openapi::ErrorBody)))]
pub async fn get_task(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TaskView>, ApiError> {
    let task = state
        .broker
        .get(tenant.scope(), &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no task {id}")))?;
    let mut view = TaskView::from_record(task, true);
    view.stale = view.status == TaskStatus::Running && state.running.is_stale(&view.id);
    Ok(Json(view))
}

/// Query of `GET /api/v1/tasks`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tasks in this status.
    status: Option<String>,
    /// Only this plugin's tasks.
    plugin: Option<String>,
    /// At most this many (1-1000, default 100).
    limit: Option<usize>,
}

/// `GET /api/v1/tasks?status=&plugin=&limit=`.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(ListQuery),
    responses((status = 200, body = super::openapi::TaskList), (status = 400, body = super::openapi::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match q.status.as_deref() {
        Some(s) => Some(
            TaskStatus::parse(s)
                .ok_or_else(|| ApiError::InvalidRequest(format!("status {s:?} is not a task status")))?,
        ),
        None => None,
    };
    let filter = TaskFilter {
        tenant: tenant.scope().map(str::to_owned),
        status,
        plugin: q.plugin,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let tasks: Vec<TaskView> = state
        .broker
        .list(&filter)
        .await?
        .into_iter()
        .map(|t| {
            let mut view = TaskView::from_record(t, false);
            view.stale = view.status == TaskStatus::Running && state.running.is_stale(&view.id);
            view
        })
        .collect();
    Ok(Json(json!({"tasks": tasks})))
}

/// `POST /api/v1/tasks/{id}/cancel`.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks", params(("id" = String, Path, description = "Task id")),
    responses((status = 200, body = super::openapi::CancelReply), (status = 404, body = super::openapi::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let (result, stored) = state.broker.cancel(tenant.scope(), &id).await?;
    if let Some(stored) = stored {
        state.hub.publish(stored);
    }
    if result == CancelResult::Requested {
        // Running here: stop it now rather than at the next lease renewal.
        state.running.cancel(&id);
    }
    let task = state
        .broker
        .get(tenant.scope(), &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no task {id}")))?;
    Ok(Json(json!({"id": id, "cancel": result, "status": task.status})))
}

/// `POST /api/v1/tasks/{id}/retry`: requeue a dead task.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/retry", tag = "tasks", params(("id" = String, Path, description = "Task id")),
    responses((status = 202, body = super::openapi::Submitted), (status = 404, body = super::openapi::ErrorBody),
              (status = 409, description = "The task is not dead", body = super::openapi::ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let task = state.broker.retry_dead(tenant.scope(), &id).await?;
    state.hub.queue_counts_changed();
    Ok((StatusCode::ACCEPTED, Json(json!({"id": task.id, "status": task.status}))))
}

/// Query of the events endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events with a larger sequence id.
    since: Option<u64>,
    /// At most this many (1-10000, default 1000).
    limit: Option<usize>,
}

/// `GET /api/v1/tasks/{id}/events?since=SEQ&limit=N`.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/events", tag = "tasks", params(("id" = String, Path, description = "Task id"), EventsQuery),
    responses((status = 200, body = super::openapi::EventsPage), (status = 400, body = super::openapi::ErrorBody), (status = 404, body = super::openapi::ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    state
        .broker
        .get(tenant.scope(), &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no task {id}")))?;
    let since = q.since.unwrap_or(0);
    let events = state.hub.history(&id, since, q.limit.unwrap_or(1000).clamp(1, 10_000)).await?;
    let next_since = events.last().map_or(since, |e| e.seq);
    let events: Vec<Value> = events.into_iter().map(|e| super::ws::event_json(&e)).collect();
    Ok(Json(json!({"task_id": id, "events": events, "next_since": next_since})))
}

/// `GET /api/v1/plugins`.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", responses((status = 200, description = "Loaded plugins with their limits, and skipped plugin folders with the reason", body = Object)))]
pub async fn plugins(State(state): State<AppState>, Caller(_tenant): Caller) -> Json<Value> {
    let plugins: Vec<Value> = state
        .plugins
        .iter()
        .map(|p| {
            json!({
                "name": p.manifest.name,
                "version": p.manifest.version,
                "description": p.manifest.description,
                "tasks": p.manifest.tasks,
                "queue": p.manifest.queue,
                "limits": p.limits,
                "retry": p.manifest.retry,
                "capabilities": {"data": p.capabilities.data_dir.is_some(), "scratch": p.capabilities.scratch},
                "describe": p.description,
                "sha256": p.wasm_sha256,
            })
        })
        .collect();
    let problems: Vec<Value> = state
        .plugins
        .problems()
        .iter()
        .map(|p| json!({"dir": p.dir.display().to_string(), "error": p.error}))
        .collect();
    Json(json!({"plugins": plugins, "problems": problems}))
}

/// `GET /api/v1/queues`: counts per queue from the host's snapshot, at most 0.5 s old and never
/// older than a task start or end seen by this host or a submission through its API, so that the
/// answer never waits for the store.
#[utoipa::path(get, path = "/api/v1/queues", tag = "queues", responses((status = 200, body = super::openapi::QueuesReply)))]
pub async fn queues(State(state): State<AppState>, Caller(tenant): Caller) -> Result<Json<Value>, ApiError> {
    let stats = state.hub.queue_stats(tenant.scope()).await?;
    Ok(Json(json!({"queues": stats, "running_here": state.running.ids().len()})))
}

/// A host in `GET /workers`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkerView {
    #[serde(flatten)]
    host: crate::queue::HostInfo,
    /// Heartbeat recent enough.
    pub online: bool,
    /// Running tasks per slot, 0 to 1.
    load: f64,
    /// Seconds since the last heartbeat.
    heartbeat_age_secs: f64,
}

/// Hosts that sent a heartbeat recently, with whether each is online.
pub async fn worker_views(state: &AppState) -> Result<Vec<WorkerView>, ApiError> {
    let now = now_ms();
    Ok(state
        .broker
        .hosts()
        .await?
        .into_iter()
        .map(|host| {
            let age = heartbeat_age(&host, now);
            WorkerView {
                online: age <= state.host_offline_after,
                load: f64::from(host.running) / f64::from(host.slots.max(1)),
                heartbeat_age_secs: age.as_secs_f64(),
                host,
            }
        })
        .collect())
}

/// How long before `now` the host's last heartbeat came.
fn heartbeat_age(host: &crate::queue::HostInfo, now: crate::queue::Millis) -> Duration {
    Duration::from_millis(now.saturating_sub(host.last_seen).max(0) as u64)
}

/// True when `host` sent a heartbeat within the host's offline threshold, as of `now`.
pub fn is_online(state: &AppState, host: &crate::queue::HostInfo, now: crate::queue::Millis) -> bool {
    heartbeat_age(host, now) <= state.host_offline_after
}

/// `GET /api/v1/workers`.
#[utoipa::path(get, path = "/api/v1/workers", tag = "queues", responses((status = 200, body = super::openapi::WorkersReply)))]
pub async fn workers(
    State(state): State<AppState>,
    Caller(_tenant): Caller,
) -> Result<Json<Value>, ApiError> {
    let workers = worker_views(&state).await?;
    let online = workers.iter().filter(|w| w.online).count();
    Ok(Json(json!({"workers": workers, "online": online})))
}

/// `GET /readyz`: 200 when the broker answers and at least one plugin is loaded.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "Ready", body = Object), (status = 503, description = "Not ready", body = Object)))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let broker = state.broker.ping().await;
    let subscribed = state.cancel_subscription.as_ref().map(|s| s.load(std::sync::atomic::Ordering::Relaxed));
    let ready = broker.is_ok() && !state.plugins.is_empty() && subscribed != Some(false);
    let body = json!({
        "ready": ready,
        "cancel_subscription": subscribed,
        "broker": {"backend": state.broker.backend_name(), "ok": broker.is_ok(), "error": broker.err().map(|e| e.to_string())},
        "plugins": {"loaded": state.plugins.len(), "problems": state.plugins.problems().len()},
    });
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

/// `GET /metrics`: Prometheus text. Queue depths are read from the broker now.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match state.broker.queue_stats(None).await {
        Ok(stats) => {
            for q in stats {
                crate::telemetry::queue_depth(&q.queue, q.pending, q.running, q.scheduled, q.dead);
            }
        }
        Err(_) => crate::telemetry::broker_error("queue_stats"),
    }
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::telemetry::handle().render(),
    )
}
