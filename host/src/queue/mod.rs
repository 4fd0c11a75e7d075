//! Queues: where accepted tasks wait, and the records of what became of them.
//!
//! [`Broker`] is one trait shaped for Redis semantics, so that every backend offers the same
//! delivery guarantees: a worker *leases* a task for a while, *renews* the lease while it runs, and
//! *finishes* it (success, failure, retry later, dead letter) in one step that also stores the
//! outcome and the terminal event. A lease that lapses (its worker died) makes the task available
//! again with the next attempt number; a finish carries the attempt it belongs to, so a worker that
//! lost its lease cannot overwrite the outcome of the attempt that replaced it (fencing).
//!
//! Backends: [`embedded`] (SQLite on local disk, the default when no Redis is named) and
//! [`redis`] (Redis Streams, standalone or Cluster: the multi-host path). The conformance tests in
//! `host/tests/all/broker_conformance.rs` run unchanged on each.
//!
//! This room owns task records, queues and the event log's storage. It knows nothing of wasmtime,
//! HTTP or how a task is run.

pub mod celery;
pub mod embedded;
pub mod redis;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::events::{Event, NewEvent};
use crate::sandbox::LimitsRequest;

/// Milliseconds since the Unix epoch: the one time format stored by every backend.
pub type Millis = i64;

/// Now, in [`Millis`].
pub fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
}

/// Where a task stands. Serialised in snake_case, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for a worker.
    Queued,
    /// Waiting for its start time (`delay_ms` or `eta`).
    Scheduled,
    /// Leased by a worker and running.
    Running,
    /// Failed in a way that will be retried; waiting for its backoff to pass.
    Retrying,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error that is not retried.
    Failed,
    /// Cancelled by a client before or while running.
    Cancelled,
    /// Its `expires` time passed before it started.
    Expired,
    /// Gave up on: retries exhausted, undecodable, or delivered too often. Can be retried by hand.
    Dead,
}

impl TaskStatus {
    /// The name used in the API and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Scheduled => "scheduled",
            TaskStatus::Running => "running",
            TaskStatus::Retrying => "retrying",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Expired => "expired",
            TaskStatus::Dead => "dead",
        }
    }

    /// Parses a name from [`TaskStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => TaskStatus::Queued,
            "scheduled" => TaskStatus::Scheduled,
            "running" => TaskStatus::Running,
            "retrying" => TaskStatus::Retrying,
            "succeeded" => TaskStatus::Succeeded,
            "failed" => TaskStatus::Failed,
            "cancelled" => TaskStatus::Cancelled,
            "expired" => TaskStatus::Expired,
            "dead" => TaskStatus::Dead,
            _ => return None,
        })
    }

    /// True once nothing more will happen to the task (short of a manual retry of a dead one).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded
                | TaskStatus::Failed
                | TaskStatus::Cancelled
                | TaskStatus::Expired
                | TaskStatus::Dead
        )
    }
}

/// Task priority. Higher priorities are leased first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    Default,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Before everything else.
    High,
    /// The default.
    #[default]
    Normal,
    /// After everything else.
    Low,
}

impl Priority {
    /// 0 for high, 1 for normal, 2 for low: the sort key backends use.
    pub fn rank(self) -> i64 {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
        }
    }

    /// The inverse of [`Priority::rank`]; unknown ranks read as normal.
    pub fn from_rank(rank: i64) -> Self {
        match rank {
            0 => Priority::High,
            2 => Priority::Low,
            _ => Priority::Normal,
        }
    }
}

/// `error` of a finished task: `kind` names the outcome (`invalid_input`, `out_of_fuel`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorInfo {
    /// The outcome's name, stable for clients to match on.
    pub kind: String,
    /// A human explanation.
    pub message: String,
}

/// A normal-priority task of tenant `acme` for plugin `echo` in queue `default`: the tests' fixture.
#[cfg(test)]
pub(crate) fn test_task(id: &str) -> NewTask {
    NewTask {
        id: id.to_owned(),
        tenant: "acme".to_owned(),
        plugin: "echo".to_owned(),
        task_name: "echo".to_owned(),
        queue: "default".to_owned(),
        input: "{}".to_owned(),
        priority: Priority::Normal,
        not_before: None,
        expires_at: None,
        max_retries: 0,
        limits: LimitsRequest::default(),
        files: Vec::new(),
    }
}

/// A task as submitted, after the API validated it.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Client-chosen id for idempotent submission; a fresh UUID otherwise.
    pub id: String,
    /// The tenant that owns it.
    pub tenant: String,
    /// The plugin that runs it.
    pub plugin: String,
    /// The task name within the plugin.
    pub task_name: String,
    /// The queue it waits in.
    pub queue: String,
    /// The input, as JSON text.
    pub input: String,
    /// Priority within the queue.
    pub priority: Priority,
    /// Not before this time (delay/eta); `None` for now.
    pub not_before: Option<Millis>,
    /// Ends as `expired` if not started by then.
    pub expires_at: Option<Millis>,
    /// Retries allowed after the first attempt.
    pub max_retries: u32,
    /// Limits the submitter asked for (narrowing the plugin's defaults).
    pub limits: LimitsRequest,
    /// Names of files in the tenant's file area that the sandbox sees read-only under `/input`.
    pub files: Vec<String>,
}

/// Everything stored about a task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRecord {
    /// The task's id.
    pub id: String,
    /// Owner.
    pub tenant: String,
    /// Plugin name.
    pub plugin: String,
    /// Task name within the plugin.
    pub task_name: String,
    /// Queue name.
    pub queue: String,
    /// Where it stands.
    pub status: TaskStatus,
    /// Priority.
    pub priority: Priority,
    /// Latest progress, 0 to 100.
    pub progress: f32,
    /// Latest progress message.
    pub message: String,
    /// The input JSON text.
    #[serde(skip)]
    pub input: String,
    /// The result JSON text, once succeeded.
    #[serde(skip)]
    pub result: Option<String>,
    /// The error, once failed (or while retrying: the last attempt's error).
    pub error: Option<ErrorInfo>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Retries allowed after the first attempt.
    pub max_retries: u32,
    /// Limits the submitter asked for.
    pub limits: LimitsRequest,
    /// When it was accepted.
    pub created_at: Millis,
    /// When its latest attempt started.
    pub started_at: Option<Millis>,
    /// When it reached a terminal status.
    pub finished_at: Option<Millis>,
    /// Not before this time.
    pub not_before: Option<Millis>,
    /// Expiry time.
    pub expires_at: Option<Millis>,
    /// A client asked to cancel it while it ran.
    pub cancel_requested: bool,
    /// Files of the tenant's file area mounted read-only under `/input`.
    pub files: Vec<String>,
}

/// A worker's hold on one attempt of a task.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The task as it was when leased (status `running`, `attempts` counting this one).
    pub task: TaskRecord,
    /// This attempt's number (1 for the first run). Fences every later call.
    pub attempt: u32,
    /// The worker holding it.
    pub worker: String,
    /// The attempt's `run_started` event, when the broker stored it in the step that started the
    /// attempt (see [`Broker::record_run_started`]); `None`: the worker appends it.
    pub started: Option<Event>,
}

/// What [`Broker::renew`] learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Still ours, extended.
    Held,
    /// Still ours, but a client asked to cancel the task: stop it.
    CancelRequested,
    /// No longer ours (lapsed and taken by another attempt, or finished elsewhere): stop without
    /// writing anything.
    Lost,
}

/// How an attempt ended, as the broker stores it.
#[derive(Debug, Clone)]
pub enum Finish {
    /// Succeeded with this result (JSON text).
    Succeeded {
        /// The result.
        result: String,
    },
    /// Failed for good.
    Failed(ErrorInfo),
    /// Stopped because a client cancelled it.
    Cancelled(ErrorInfo),
    /// Failed; run again at `at`.
    Retry {
        /// Why this attempt failed.
        error: ErrorInfo,
        /// When to run again.
        at: Millis,
    },
    /// Failed; give up and keep it in the dead-letter list.
    Dead(ErrorInfo),
}

impl Finish {
    /// The status the task takes.
    pub fn status(&self) -> TaskStatus {
        match self {
            Finish::Succeeded { .. } => TaskStatus::Succeeded,
            Finish::Failed(_) => TaskStatus::Failed,
            Finish::Cancelled(_) => TaskStatus::Cancelled,
            Finish::Retry { .. } => TaskStatus::Retrying,
            Finish::Dead(_) => TaskStatus::Dead,
        }
    }
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelResult {
    /// It had not started: it is now cancelled and will never run.
    Cancelled,
    /// It is running: the worker holding it was asked to stop.
    Requested,
    /// It had already finished; nothing changed.
    AlreadyFinished,
}

/// Result of [`Broker::submit`].
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The stored task (the existing one when the id was already known).
    pub task: TaskRecord,
    /// False when a task with this id already existed and nothing new was queued.
    pub created: bool,
}

/// Filter for [`Broker::list`].
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only this tenant's tasks.
    pub tenant: Option<String>,
    /// Only tasks in this status.
    pub status: Option<TaskStatus>,
    /// Only this plugin's tasks.
    pub plugin: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// Counts per queue.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Ready to run now.
    pub pending: u64,
    /// Running.
    pub running: u64,
    /// Waiting for a start time or a retry backoff.
    pub scheduled: u64,
    /// In the dead-letter list.
    pub dead: u64,
}

/// A host as it reports itself in its heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostInfo {
    /// Unique per process: `<hostname>-<pid>`.
    pub id: String,
    /// The machine's name.
    pub hostname: String,
    /// Worker slots.
    pub slots: u32,
    /// Tasks running now.
    pub running: u32,
    /// Queues consumed.
    pub queues: Vec<String>,
    /// Plugins loaded.
    pub plugins: Vec<String>,
    /// taskhost version.
    pub version: String,
    /// When the process started.
    pub started_at: Millis,
    /// When this heartbeat was sent.
    pub last_seen: Millis,
    /// Fingerprint of the tenants' weights and quotas this host stored for its queues
    /// ([`TenantPolicy::fingerprint`]). Hosts sharing a queue must agree: each stores its own at
    /// start, so the last one to start sets them for all. Empty from hosts that predate it.
    #[serde(default)]
    pub tenant_policies: String,
}

/// A file in a tenant's file area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileInfo {
    /// File name (1-128 of `a-z`, `A-Z`, `0-9`, `-`, `_`, `.`; not starting with `.`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// When it was stored.
    pub created_at: Millis,
}

/// True for acceptable file names: no paths, no hidden files.
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// How a broker shares its workers between the tenants of a queue (from the tenants file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPolicy {
    /// The tenant.
    pub tenant: String,
    /// Its share of leases when tenants compete (1 or more; 1 for tenants not named).
    pub weight: u32,
    /// Most tasks running at once across every host, or `None` for no limit.
    pub concurrent_tasks: Option<u32>,
}

impl TenantPolicy {
    /// A short fingerprint of `policies` (16 hex digits of a SHA-256), the same for the same
    /// weights and quotas in any order: what hosts compare to find out that they disagree.
    pub fn fingerprint(policies: &[TenantPolicy]) -> String {
        use sha2::Digest;
        let mut sorted: Vec<&TenantPolicy> = policies.iter().collect();
        sorted.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        let mut hash = sha2::Sha256::new();
        for policy in sorted {
            let quota = policy.concurrent_tasks.map_or_else(|| "-".to_owned(), |q| q.to_string());
            // Tenant names cannot hold a newline; the length prefix keeps fields apart anyway.
            hash.update(format!("{}:{}\t{}\t{quota}\n", policy.tenant.len(), policy.tenant, policy.weight));
        }
        hex::encode(&hash.finalize()[..8])
    }
}

/// Why a broker call failed. These are infrastructure failures; a task that fails is not one.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The storage is unreachable or refused the operation.
    #[error("broker storage error: {0}")]
    Storage(String),
    /// No task with this id (for this tenant).
    #[error("no task {0}")]
    NotFound(String),
    /// The request conflicts with the task's state (e.g. retrying a task that is not dead).
    #[error("{0}")]
    Conflict(String),
}

/// The terminal event of a task cancelled before it ran; `message` says when.
pub fn cancelled_event(message: &str) -> NewEvent {
    NewEvent::new(
        crate::events::kind::RUN_CANCELLED,
        serde_json::json!({"status": "cancelled", "error": {"kind": "cancelled", "message": message}}),
    )
}

/// The event recorded when a client asks to cancel a running task.
pub fn cancel_requested_event() -> NewEvent {
    NewEvent::new(crate::events::kind::CANCEL_REQUESTED, serde_json::json!({}))
}

/// Why a waiting task was cancelled, as its error message says.
pub fn cancel_message(status: TaskStatus) -> &'static str {
    if status == TaskStatus::Retrying {
        "cancelled while waiting to be retried"
    } else {
        "cancelled before it started"
    }
}

/// The queue backend. See the module documentation for the guarantees every backend gives.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// A short name for logs and `/readyz` (`embedded`, `redis`).
    fn backend_name(&self) -> &'static str;

    /// Accepts a task. A known id returns the existing task with `created: false` (idempotent).
    async fn submit(&self, task: NewTask) -> Result<Submitted, BrokerError>;

    /// Leases the next runnable task from `queues` (highest priority, then oldest), for
    /// `lease_for`. Promotes due delayed tasks, expires stale ones, and takes back tasks whose
    /// lease lapsed. Returns at once; `None` when nothing is runnable.
    ///
    /// Within a priority, tenants take turns in proportion to their weights, and a tenant that
    /// already runs its quota of tasks (see [`Broker::set_tenant_policies`]) is passed over: the
    /// quota is checked in the same atomic step that starts the attempt, so hosts leasing at the
    /// same instant cannot overshoot it.
    async fn lease(
        &self,
        worker: &str,
        queues: &[String],
        lease_for: Duration,
    ) -> Result<Option<Lease>, BrokerError>;

    /// Sets the tenants' weights and concurrency quotas that [`Broker::lease`] applies to
    /// `queues`, replacing those set before (by any host: hosts of one fleet share one tenants
    /// file). Tenants not named have weight 1 and no quota. Backends without tenant policies
    /// ignore it.
    async fn set_tenant_policies(
        &self,
        queues: &[String],
        policies: &[TenantPolicy],
    ) -> Result<(), BrokerError> {
        let _ = (queues, policies);
        Ok(())
    }

    /// Lets [`Broker::lease`] store each attempt's `run_started` event in the same step that
    /// starts the attempt (one call to the storage fewer per task) and hand it over in
    /// [`Lease::started`]: for tasks of the named plugins (name, and the limits the event shows)
    /// that ask for no limits of their own, with the event's data
    /// `{attempt, host, limits, plugin, worker}` as the worker would build it. `host` is this
    /// host's id. Backends without it ignore the call; the worker appends the event itself for
    /// any lease that does not carry it.
    fn record_run_started(&self, host: &str, plugins: &[(String, serde_json::Value)]) {
        let _ = (host, plugins);
    }

    /// Waits until a task may have become runnable in `queues`, or `timeout` passes.
    async fn wait_for_work(&self, queues: &[String], timeout: Duration);

    /// Extends a lease and reports whether the task was cancelled meanwhile.
    async fn renew(&self, lease: &Lease, lease_for: Duration) -> Result<LeaseState, BrokerError>;

    /// Gives a lease back without counting the attempt (the host is draining): the task is
    /// runnable again at once.
    async fn release(&self, lease: &Lease) -> Result<(), BrokerError>;

    /// Ends an attempt: stores the outcome and appends `terminal` (when the finish is terminal or a
    /// retry) to the task's events in one step. Fenced: returns `None` and changes nothing when the
    /// lease was lost.
    async fn finish(
        &self,
        lease: &Lease,
        finish: Finish,
        event: NewEvent,
    ) -> Result<Option<Event>, BrokerError>;

    /// Updates the latest progress of a running attempt (fenced by attempt).
    async fn set_progress(&self, lease: &Lease, percent: f32, message: &str) -> Result<(), BrokerError>;

    /// Cancels a task, deciding by its status at that instant: a waiting one (queued, scheduled,
    /// retrying) ends `cancelled` with a terminal [`cancelled_event`] and never starts; a running
    /// one is flagged for its worker and gets a [`cancel_requested_event`]. `tenant` restricts to
    /// that tenant's tasks. Returns what happened and the stored event.
    async fn cancel(
        &self,
        tenant: Option<&str>,
        id: &str,
    ) -> Result<(CancelResult, Option<Event>), BrokerError>;

    /// Requeues a dead task as a fresh attempt series.
    async fn retry_dead(&self, tenant: Option<&str>, id: &str) -> Result<TaskRecord, BrokerError>;

    /// One task, if it exists (and belongs to `tenant` when given).
    async fn get(&self, tenant: Option<&str>, id: &str) -> Result<Option<TaskRecord>, BrokerError>;

    /// Tasks matching `filter`, newest first.
    async fn list(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, BrokerError>;

    /// Counts per queue (for `tenant` when given).
    async fn queue_stats(&self, tenant: Option<&str>) -> Result<Vec<QueueStats>, BrokerError>;

    /// Appends events to a task's log, assigning sequence ids (1, 2, ... per task).
    async fn append_events(&self, task_id: &str, events: Vec<NewEvent>) -> Result<Vec<Event>, BrokerError>;

    /// A task's events with `seq > since`, oldest first, at most `limit`.
    async fn events_since(&self, task_id: &str, since: u64, limit: usize) -> Result<Vec<Event>, BrokerError>;

    /// Checks the storage is reachable.
    async fn ping(&self) -> Result<(), BrokerError>;

    /// Stores a file in a tenant's file area, replacing one of the same name.
    async fn put_file(&self, tenant: &str, name: &str, content: Vec<u8>) -> Result<FileInfo, BrokerError>;

    /// A file's content, if the tenant has it.
    async fn get_file(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>, BrokerError>;

    /// Deletes a file; false when the tenant had none of that name.
    async fn delete_file(&self, tenant: &str, name: &str) -> Result<bool, BrokerError>;

    /// The tenant's files, by name.
    async fn list_files(&self, tenant: &str) -> Result<Vec<FileInfo>, BrokerError>;

    /// Records a host's heartbeat; entries older than `forget_after` are dropped.
    async fn heartbeat(&self, host: &HostInfo, forget_after: Duration) -> Result<(), BrokerError>;

    /// The hosts that sent a heartbeat recently (within the `forget_after` of their last one),
    /// freshest first. Whether each is online is the caller's call, from `last_seen`.
    async fn hosts(&self) -> Result<Vec<HostInfo>, BrokerError>;
}
