//! The worker: leases tasks, runs them in the sandbox, stores what they report, and finishes them.
//!
//! `--concurrency N` slots each run a loop: lease a task from the broker, run it, store its
//! outcome, repeat; with nothing to do, wait on the broker. While a task runs, the slot renews its
//! lease every [`WorkerSettings::lease_renewal_interval`], so a long task is never taken over
//! while its host lives; the renewal also learns of cancellation requested on another host.
//! Everything the plugin reports flows through a bounded channel to a writer that stores events
//! in batches and coalesces progress.
//!
//! Decisions after a run: success and plain failures are final; retryable outcomes (host errors,
//! errors the plugin marked retryable) are retried with exponential backoff and jitter while the
//! task's retry budget lasts, then go to the dead letters; a cancelled run ends `cancelled`.
//!
//! Draining (SIGTERM): slots stop leasing; running tasks get the grace period to finish; the rest
//! are stopped and their leases released, so that another host (or this one after a restart) runs
//! them at once instead of waiting for the lease to lapse.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::events::{EventHub, NewEvent, kind};
use crate::plugin::PluginRegistry;
use crate::queue::{
    Broker, ErrorInfo, Finish, HostInfo, Lease, LeaseState, Millis, TaskStatus, TenantPolicy, now_ms,
};
use crate::sandbox::{Outcome, Report, Sandbox, TaskIdentity, TaskRun};

/// Tunable timings of the worker, declared once.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Tasks run at once.
    pub concurrency: usize,
    /// Queues to take tasks from.
    pub queues: Vec<String>,
    /// This host's name in leases and events (unique per process).
    pub host_id: String,
    /// The machine's name.
    pub hostname: String,
    /// How long a lease lasts without renewal. A dead host's tasks come back after this.
    pub lease_duration: Duration,
    /// How often a running task's lease is renewed (well under `lease_duration`).
    pub lease_renewal_interval: Duration,
    /// Longest wait for work before polling the broker again.
    pub idle_wait: Duration,
    /// Least time between two stored `progress_update` events of one task.
    pub progress_event_interval: Duration,
    /// Wait after a broker error before trying again.
    pub broker_retry_delay: Duration,
    /// A running task that reports nothing for this long is flagged stale (after the CVD notes:
    /// a hung run looks alive to Celery).
    pub stale_after: Duration,
    /// How often the host records its heartbeat (slots, running tasks, queues).
    pub heartbeat_interval: Duration,
}

/// A host whose last heartbeat is older than this many heartbeat intervals is shown offline.
pub const OFFLINE_AFTER_HEARTBEATS: u32 = 3;
/// A host silent for this many heartbeat intervals is forgotten.
pub const FORGET_AFTER_HEARTBEATS: u32 = 120;

impl WorkerSettings {
    /// Defaults for `concurrency` slots on `queues`.
    pub fn new(concurrency: usize, queues: Vec<String>, host_id: String) -> Self {
        WorkerSettings {
            concurrency: concurrency.max(1),
            queues,
            hostname: host_id.rsplit_once('-').map_or(host_id.clone(), |(h, _)| h.to_owned()),
            host_id,
            lease_duration: Duration::from_secs(30),
            lease_renewal_interval: Duration::from_secs(10),
            idle_wait: Duration::from_secs(1),
            progress_event_interval: Duration::from_millis(250),
            broker_retry_delay: Duration::from_millis(500),
            stale_after: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(5),
        }
    }
}

/// One task running on this host.
struct RunningTask {
    cancel: CancellationToken,
    /// Milliseconds (since the Unix epoch) of the last report from the plugin.
    last_activity_ms: std::sync::atomic::AtomicI64,
    /// Flagged by the stale watchdog; cleared by the next report.
    stale: std::sync::atomic::AtomicBool,
}

/// How long a cancel request for a task not running here is remembered, in case this host has
/// just leased the task and is still starting it.
const UNMATCHED_CANCEL_MEMORY: Duration = Duration::from_secs(30);
/// Most cancel requests remembered that way (they come from every host of the fleet).
const UNMATCHED_CANCEL_LIMIT: usize = 10_000;

/// Tasks running on this host, by id: how to stop each, and when each last reported.
#[derive(Default)]
pub struct RunningTasks {
    tasks: Mutex<HashMap<String, Arc<RunningTask>>>,
    /// Cancel requests for tasks that were not running here when they came, with their time: a
    /// request that arrives between a lease and the slot's [`RunningTasks::insert`] would
    /// otherwise wait for the next lease renewal.
    unmatched: Mutex<HashMap<String, Instant>>,
}

impl RunningTasks {
    /// Stops a task running on this host; false when it is not running here (the request is
    /// then remembered for a while, for `UNMATCHED_CANCEL_MEMORY`).
    pub fn cancel(&self, task_id: &str) -> bool {
        let Ok(tasks) = self.tasks.lock() else { return false };
        if let Some(task) = tasks.get(task_id) {
            task.cancel.cancel();
            return true;
        }
        // Noted while `tasks` is still held: a slot's `insert` then either comes after the note
        // (and its `take_unmatched_cancel` finds it) or came before the look (and the look found
        // the task). Released in between, the note could land just after the slot had looked,
        // and the cancel would wait for the next renewal.
        if let Ok(mut unmatched) = self.unmatched.lock() {
            let now = Instant::now();
            if unmatched.len() >= UNMATCHED_CANCEL_LIMIT {
                unmatched.retain(|_, at| now.duration_since(*at) < UNMATCHED_CANCEL_MEMORY);
                if unmatched.len() >= UNMATCHED_CANCEL_LIMIT {
                    unmatched.clear();
                }
            }
            unmatched.insert(task_id.to_owned(), now);
        }
        false
    }

    /// True when a cancel for `task_id` came recently while it was not running here; forgets it.
    fn take_unmatched_cancel(&self, task_id: &str) -> bool {
        let Ok(mut unmatched) = self.unmatched.lock() else { return false };
        unmatched.remove(task_id).is_some_and(|at| at.elapsed() < UNMATCHED_CANCEL_MEMORY)
    }

    /// Ids of the tasks running here.
    pub fn ids(&self) -> Vec<String> {
        self.tasks.lock().map(|t| t.keys().cloned().collect()).unwrap_or_default()
    }

    /// True when the task runs here and has reported nothing for longer than the stale threshold.
    pub fn is_stale(&self, task_id: &str) -> bool {
        self.tasks
            .lock()
            .ok()
            .and_then(|t| t.get(task_id).map(|t| t.stale.load(std::sync::atomic::Ordering::Relaxed)))
            .unwrap_or(false)
    }

    fn insert(&self, id: &str, cancel: CancellationToken) -> Arc<RunningTask> {
        let task = Arc::new(RunningTask {
            cancel,
            last_activity_ms: std::sync::atomic::AtomicI64::new(now_ms()),
            stale: std::sync::atomic::AtomicBool::new(false),
        });
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.insert(id.to_owned(), task.clone());
        }
        task
    }

    fn remove(&self, id: &str) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.remove(id);
        }
    }

    /// Tasks silent for longer than `threshold` that are not flagged yet: flags them and returns
    /// their ids with the silence in milliseconds.
    fn newly_stale(&self, threshold: Duration) -> Vec<(String, i64)> {
        let now = now_ms();
        let Ok(tasks) = self.tasks.lock() else { return Vec::new() };
        tasks
            .iter()
            .filter_map(|(id, t)| {
                let silent = now - t.last_activity_ms.load(std::sync::atomic::Ordering::Relaxed);
                let stale = silent > threshold.as_millis() as i64;
                (stale && !t.stale.swap(true, std::sync::atomic::Ordering::Relaxed))
                    .then(|| (id.clone(), silent))
            })
            .collect()
    }
}

impl RunningTask {
    fn touch(&self) {
        self.last_activity_ms.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
        self.stale.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The worker pool of one host.
pub struct Worker {
    broker: Arc<dyn Broker>,
    hub: EventHub,
    sandbox: Arc<Sandbox>,
    plugins: Arc<PluginRegistry>,
    settings: WorkerSettings,
    running: Arc<RunningTasks>,
    started_at: crate::queue::Millis,
    tenants: Arc<crate::tenant::Tenants>,
}

impl Worker {
    /// A worker pool; nothing runs until [`Worker::run`].
    pub fn new(
        broker: Arc<dyn Broker>,
        hub: EventHub,
        sandbox: Arc<Sandbox>,
        plugins: Arc<PluginRegistry>,
        settings: WorkerSettings,
    ) -> Self {
        Worker {
            broker,
            hub,
            sandbox,
            plugins,
            settings,
            running: Arc::default(),
            started_at: now_ms(),
            tenants: Arc::new(crate::tenant::Tenants::open()),
        }
    }

    /// Applies the tenants' weights and quotas (`weight`, `concurrent_tasks`) to what this
    /// worker leases: [`Worker::run`] hands them to the broker, which enforces them in the lease
    /// itself, across every host.
    pub fn with_tenants(mut self, tenants: Arc<crate::tenant::Tenants>) -> Self {
        self.tenants = tenants;
        self
    }

    /// The tenants' weights and quotas, as the broker takes them.
    fn tenant_policies(&self) -> Vec<TenantPolicy> {
        self.tenants
            .weights()
            .into_iter()
            .map(|(tenant, weight)| TenantPolicy {
                concurrent_tasks: self.tenants.config(&tenant).and_then(|c| c.concurrent_tasks),
                tenant,
                weight,
            })
            .collect()
    }

    /// Hands the tenants' policies to the broker, retrying while it is unreachable (until
    /// `shutdown`).
    async fn set_tenant_policies(&self, shutdown: &CancellationToken) {
        let policies = self.tenant_policies();
        while !shutdown.is_cancelled() {
            match self.broker.set_tenant_policies(&self.settings.queues, &policies).await {
                Ok(()) => return,
                Err(error) => {
                    crate::telemetry::broker_error("set_tenant_policies");
                    tracing::warn!(%error, "cannot store the tenants' weights and quotas; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(self.settings.broker_retry_delay) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    /// The tasks running on this host.
    pub fn running(&self) -> Arc<RunningTasks> {
        self.running.clone()
    }

    /// Runs the slots until `shutdown`; then drains: running tasks get `grace` to finish, the
    /// rest are stopped and released. Returns when every slot has stopped.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken, grace: Duration) {
        // Before any slot leases: the quotas hold from the first task.
        self.set_tenant_policies(&shutdown).await;
        let limits: Vec<(String, serde_json::Value)> = self
            .plugins
            .iter()
            .filter_map(|p| Some((p.manifest.name.clone(), serde_json::to_value(p.limits).ok()?)))
            .collect();
        self.broker.record_run_started(&self.settings.host_id, &limits);
        let hard_stop = CancellationToken::new();
        let mut slots = tokio::task::JoinSet::new();
        for slot in 0..self.settings.concurrency {
            let worker = self.clone();
            let (shutdown, hard_stop) = (shutdown.clone(), hard_stop.clone());
            slots.spawn(async move { worker.slot_loop(slot, shutdown, hard_stop).await });
        }
        let watchdog =
            tokio::spawn(stale_watchdog(self.running.clone(), self.hub.clone(), self.settings.stale_after));
        let heartbeat = tokio::spawn(self.clone().heartbeat_loop());
        shutdown.cancelled().await;
        watchdog.abort();
        tracing::info!(grace_secs = grace.as_secs_f64(), running = self.running.ids().len(), "draining");
        let drained = tokio::time::timeout(grace, async { while slots.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("grace period over: stopping the remaining tasks and releasing their leases");
            hard_stop.cancel();
            while slots.join_next().await.is_some() {}
        }
        heartbeat.abort();
    }

    /// This host as its heartbeat describes it.
    pub fn host_info(&self) -> HostInfo {
        HostInfo {
            id: self.settings.host_id.clone(),
            hostname: self.settings.hostname.clone(),
            slots: self.settings.concurrency as u32,
            running: self.running.ids().len() as u32,
            queues: self.settings.queues.clone(),
            plugins: self.plugins.iter().map(|p| p.manifest.name.clone()).collect(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: self.started_at,
            last_seen: now_ms(),
            tenant_policies: TenantPolicy::fingerprint(&self.tenant_policies()),
        }
    }

    /// Sends a heartbeat every interval, and after each one looks for hosts that share a queue
    /// with this one but stored other tenant weights or quotas: they overwrite each other's (the
    /// last to start wins), so the fleet's quotas are not what this host's tenants file says.
    /// Each change in that set of hosts is logged (a warning while it is not empty) and counted
    /// in `taskhost_tenant_policy_conflicts`.
    async fn heartbeat_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.heartbeat_interval);
        let forget_after = self.settings.heartbeat_interval * FORGET_AFTER_HEARTBEATS;
        let online_within = self.settings.heartbeat_interval * OFFLINE_AFTER_HEARTBEATS;
        let mut conflicts: Vec<String> = Vec::new();
        crate::telemetry::tenant_policy_conflicts(0);
        loop {
            tick.tick().await;
            let me = self.host_info();
            if let Err(error) = self.broker.heartbeat(&me, forget_after).await {
                crate::telemetry::broker_error("heartbeat");
                tracing::warn!(%error, "heartbeat failed");
                continue;
            }
            // The hub's list, shared with the API and the `/ws/queue` streams (at most 1 s old).
            let hosts = match self.hub.hosts().await {
                Ok(hosts) => hosts,
                Err(error) => {
                    crate::telemetry::broker_error("hosts");
                    tracing::debug!(%error, "cannot read the other hosts' heartbeats");
                    continue;
                }
            };
            let now = policy_conflicts(&me, &hosts, online_within, now_ms());
            if now != conflicts {
                crate::telemetry::tenant_policy_conflicts(now.len());
                if now.is_empty() {
                    tracing::info!(
                        "the hosts sharing this host's queues now store the same tenant weights and quotas"
                    );
                } else {
                    tracing::warn!(
                        hosts = %now.join(", "),
                        mine = %me.tenant_policies,
                        "hosts sharing a queue with this one store other tenant weights and quotas (another tenants file): each host stores its own at start, so the last one started sets them for all; give every host of the fleet the same tenants file"
                    );
                }
                conflicts = now;
            }
        }
    }

    async fn slot_loop(&self, slot: usize, shutdown: CancellationToken, hard_stop: CancellationToken) {
        let worker_id = format!("{}/{}", self.settings.host_id, slot);
        while !shutdown.is_cancelled() {
            match self.broker.lease(&worker_id, &self.settings.queues, self.settings.lease_duration).await {
                Ok(Some(lease)) => self.run_leased(lease, &hard_stop).await,
                Ok(None) => {
                    tokio::select! {
                        _ = self.broker.wait_for_work(&self.settings.queues, self.settings.idle_wait) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                Err(error) => {
                    crate::telemetry::broker_error("lease");
                    tracing::warn!(%error, "lease failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(self.settings.broker_retry_delay) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    /// Runs one leased attempt to its end and stores the outcome.
    pub async fn run_leased(&self, mut lease: Lease, hard_stop: &CancellationToken) {
        // Stored with the lease by brokers that can (see `Broker::record_run_started`); taken out
        // here, published below.
        let started_stored = lease.started.take();
        // Shared, not copied: the report writer and the renewer hold it for the whole run.
        let lease = Arc::new(lease);
        let task = &lease.task;
        let Some(plugin) = self.plugins.get(&task.plugin).cloned() else {
            let error = ErrorInfo {
                kind: "unknown_plugin".into(),
                message: format!("plugin {:?} is not loaded on host {}", task.plugin, self.settings.host_id),
            };
            let event = NewEvent::new(kind::RUN_FAILED, json!({"status": "dead", "error": error}));
            self.finish(&lease, Finish::Dead(error), event).await;
            return;
        };
        let started_was_stored = started_stored.is_some();
        if let Some(stored) = started_stored {
            self.hub.publish(stored);
        }
        let started = Instant::now();
        let limits = plugin.limits.narrowed_by(&task.limits);
        // Stored before the attempt's inputs are prepared, as the Redis lease script stores it
        // with the lease: an attempt that fails there shows `run_started`, then `run_failed`, on
        // every backend.
        if !started_was_stored {
            let started_event = NewEvent::new(
                kind::RUN_STARTED,
                crate::events::run_started_data(
                    lease.attempt,
                    &self.settings.host_id,
                    &lease.worker,
                    &task.plugin,
                    json!(limits),
                ),
            );
            if let Err(error) = self.hub.append(&task.id, vec![started_event]).await {
                tracing::warn!(task = %task.id, %error, "could not store run_started");
            }
        }
        // The task's files, copied out of the file area into a read-only folder for this attempt.
        let inputs = match self.materialize_inputs(task).await {
            Ok(inputs) => inputs,
            Err(error) => {
                let event = NewEvent::new(kind::RUN_FAILED, json!({"status": "failed", "error": error}));
                self.finish(&lease, Finish::Failed(error), event).await;
                return;
            }
        };
        let mut capabilities = plugin.capabilities.clone();
        capabilities.input_dir = inputs.as_ref().map(|d| d.path().to_path_buf());

        let cancel = CancellationToken::new();
        let running = self.running.insert(&task.id, cancel.clone());
        // A cancel that came while this slot was leasing the task found nothing to stop: ask the
        // broker at once (the renewal reports a requested cancel) instead of at the next renewal.
        let check_now = self.running.take_unmatched_cancel(&task.id);
        let (reports_tx, reports_rx) = mpsc::channel(256);
        let writer = tokio::spawn(write_reports(
            self.hub.clone(),
            self.broker.clone(),
            lease.clone(),
            reports_rx,
            self.settings.progress_event_interval,
            running,
        ));
        let lost = CancellationToken::new();
        let renewer = tokio::spawn(renew_lease(
            self.broker.clone(),
            lease.clone(),
            (self.settings.lease_renewal_interval, self.settings.lease_duration),
            cancel.clone(),
            lost.clone(),
            check_now,
        ));
        let stop_for_drain = {
            let (hard_stop, cancel) = (hard_stop.clone(), cancel.clone());
            tokio::spawn(async move {
                hard_stop.cancelled().await;
                cancel.cancel();
            })
        };

        let waited_from = task.not_before.unwrap_or(task.created_at).max(task.created_at);
        crate::telemetry::task_started(
            &task.plugin,
            Duration::from_millis(now_ms().saturating_sub(waited_from).max(0) as u64),
        );
        let identity = TaskIdentity {
            id: task.id.clone(),
            name: task.task_name.clone(),
            tenant: task.tenant.clone(),
            attempt: lease.attempt,
        };
        let report = self
            .sandbox
            .run(
                &plugin.prepared,
                TaskRun { task: &identity, input: &task.input, limits, capabilities: &capabilities },
                reports_tx,
                cancel.clone(),
            )
            .await;

        renewer.abort();
        stop_for_drain.abort();
        crate::telemetry::task_stopped();
        crate::telemetry::task_finished(
            &task.plugin,
            &task.tenant,
            report.outcome.kind(),
            report.elapsed,
            report.instantiate_time,
            report.fuel_used,
        );
        self.running.remove(&task.id);
        // The sandbox dropped its sender: the writer stores what is left and ends.
        let _ = writer.await;

        if lost.is_cancelled() {
            tracing::warn!(task = %task.id, attempt = lease.attempt, "lease lost while running; outcome discarded");
            return;
        }
        if hard_stop.is_cancelled() && report.outcome == Outcome::Cancelled {
            // Drained, not cancelled by anyone: give the task back to run again at once.
            if let Err(error) = self.broker.release(&lease).await {
                tracing::warn!(task = %task.id, %error, "release failed; the lease will lapse instead");
            }
            return;
        }

        let summary = json!({
            "attempt": lease.attempt,
            "duration_ms": started.elapsed().as_millis() as u64,
            "fuel_used": report.fuel_used,
            "instantiate_us": report.instantiate_time.as_micros() as u64,
        });
        let (finish, event) = decide(&lease, &plugin.manifest.retry, report.outcome, summary);
        // A success is logged at debug only: its outcome is in the store, the events and
        // `/metrics`, and one line per task was a tenth of the host's CPU per no-op task
        // (BENCHMARKS.md, "Queue throughput"). Every other outcome stays at info.
        let status = finish.status();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if status == TaskStatus::Succeeded {
            tracing::debug!(task = %task.id, plugin = %task.plugin, attempt = lease.attempt, status = status.as_str(), elapsed_ms, "task finished");
        } else {
            tracing::info!(task = %task.id, plugin = %task.plugin, attempt = lease.attempt, status = status.as_str(), elapsed_ms, "task finished");
        }
        self.finish(&lease, finish, event).await;
    }

    /// Copies the task's files from the tenant's file area into a fresh folder; `None` when the
    /// task names no file. A file deleted since submission fails the task as `invalid_input`.
    async fn materialize_inputs(
        &self,
        task: &crate::queue::TaskRecord,
    ) -> Result<Option<tempfile::TempDir>, ErrorInfo> {
        if task.files.is_empty() {
            return Ok(None);
        }
        let host_error = |message: String| ErrorInfo { kind: "host_error".into(), message };
        let root = &self.sandbox.config().scratch_root;
        let dir = std::fs::create_dir_all(root)
            .and_then(|_| tempfile::Builder::new().prefix("input-").tempdir_in(root))
            .map_err(|e| host_error(format!("cannot create the input folder: {e}")))?;
        for name in &task.files {
            let content = self
                .broker
                .get_file(&task.tenant, name)
                .await
                .map_err(|e| host_error(format!("cannot read input file {name}: {e}")))?
                .ok_or_else(|| ErrorInfo {
                    kind: "invalid_input".into(),
                    message: format!("input file {name:?} is no longer in the file area"),
                })?;
            std::fs::write(dir.path().join(name), content)
                .map_err(|e| host_error(format!("cannot write input file {name}: {e}")))?;
        }
        Ok(Some(dir))
    }

    /// Stores an attempt's end, retrying the store a few times: if it stays unreachable the lease
    /// lapses and the task runs again (at least once, never lost).
    async fn finish(&self, lease: &Lease, finish: Finish, event: NewEvent) {
        for attempt in 0..5u32 {
            match self.broker.finish(lease, finish.clone(), event.clone()).await {
                Ok(Some(stored)) => return self.hub.publish(stored),
                Ok(None) => {
                    tracing::warn!(task = %lease.task.id, "lease lost before finish; outcome discarded");
                    return;
                }
                Err(error) => {
                    crate::telemetry::broker_error("finish");
                    tracing::warn!(task = %lease.task.id, %error, "storing the outcome failed; retrying");
                    tokio::time::sleep(self.settings.broker_retry_delay * 2u32.pow(attempt)).await;
                }
            }
        }
        tracing::error!(task = %lease.task.id, "could not store the outcome; the task will run again after its lease lapses");
    }
}

/// Turns a run's outcome into what the broker stores and the terminal (or retry) event.
fn decide(
    lease: &Lease,
    retry: &crate::plugin::RetryPolicy,
    outcome: Outcome,
    mut summary: Value,
) -> (Finish, NewEvent) {
    let error = ErrorInfo { kind: outcome.kind().to_owned(), message: outcome.message() };
    match outcome {
        Outcome::Succeeded { output } => {
            const INLINE_RESULT_LIMIT: usize = 64 << 10;
            if output.len() <= INLINE_RESULT_LIMIT
                && let Ok(result) = serde_json::from_str::<Value>(&output)
            {
                summary["result"] = result;
            }
            summary["status"] = json!("succeeded");
            (Finish::Succeeded { result: output }, NewEvent::new(kind::RUN_COMPLETED, summary))
        }
        Outcome::Cancelled => {
            summary["status"] = json!("cancelled");
            summary["error"] = json!(error);
            (Finish::Cancelled(error), NewEvent::new(kind::RUN_CANCELLED, summary))
        }
        outcome if outcome.is_retryable() => {
            let retries_used = lease.attempt.saturating_sub(1);
            let max_retries = lease.task.max_retries;
            summary["error"] = json!(error);
            if retries_used < max_retries {
                let delay = retry.backoff_ms(retries_used + 1, fastrand::f64());
                let at = now_ms() + delay as i64;
                summary["status"] = json!("retrying");
                summary["retry_in_ms"] = json!(delay);
                (Finish::Retry { error, at }, NewEvent::new(kind::RUN_RETRYING, summary))
            } else {
                let error = ErrorInfo {
                    kind: error.kind,
                    message: format!("{} (gave up after {} attempts)", error.message, lease.attempt),
                };
                summary["status"] = json!("dead");
                summary["error"] = json!(error);
                (Finish::Dead(error), NewEvent::new(kind::RUN_FAILED, summary))
            }
        }
        _ => {
            summary["status"] = json!("failed");
            summary["error"] = json!(error);
            (Finish::Failed(error), NewEvent::new(kind::RUN_FAILED, summary))
        }
    }
}

/// After a renewal that failed (the store unreachable for a moment), the wait before the next
/// try, instead of a whole renewal interval: the lease must not lapse, and a cancel may be waiting
/// to be learnt.
const RENEW_RETRY: Duration = Duration::from_millis(500);

/// Renews the lease until aborted. Cancels the run when a client asked for it (possibly on
/// another host) or when the lease was lost. A renewal that fails is tried again after
/// [`RENEW_RETRY`].
async fn renew_lease(
    broker: Arc<dyn Broker>,
    lease: Arc<Lease>,
    (renewal_interval, lease_duration): (Duration, Duration),
    cancel: CancellationToken,
    lost: CancellationToken,
    mut check_now: bool,
) {
    let mut interval = tokio::time::interval(renewal_interval);
    interval.tick().await;
    loop {
        if !std::mem::take(&mut check_now) {
            interval.tick().await;
        }
        match broker.renew(&lease, lease_duration).await {
            Ok(LeaseState::Held) => {}
            Ok(LeaseState::CancelRequested) => cancel.cancel(),
            Ok(LeaseState::Lost) => {
                lost.cancel();
                cancel.cancel();
                return;
            }
            Err(error) => {
                tracing::warn!(task = %lease.task.id, %error, "lease renewal failed; will retry");
                tokio::time::sleep(RENEW_RETRY.min(renewal_interval)).await;
                check_now = true;
            }
        }
    }
}

/// Stores a run's reports: events and logs in batches, progress coalesced to at most one
/// `progress_update` per `progress_interval` (and the last one always).
async fn write_reports(
    hub: EventHub,
    broker: Arc<dyn Broker>,
    lease: Arc<Lease>,
    mut reports: mpsc::Receiver<Report>,
    progress_interval: Duration,
    running: Arc<RunningTask>,
) {
    let task_id = lease.task.id.clone();
    let mut pending_progress: Option<(f32, String)> = None;
    let mut last_progress_write: Option<Instant> = None;
    let mut batch = Vec::new();
    loop {
        let due = last_progress_write.map(|t| t + progress_interval);
        let next = match (pending_progress.is_some(), due) {
            (true, Some(due)) => tokio::select! {
                r = reports.recv() => Some(r),
                _ = tokio::time::sleep_until(due.into()) => None,
            },
            _ => Some(reports.recv().await),
        };
        let closed = matches!(next, Some(None));
        if let Some(Some(first)) = next {
            running.touch();
            let mut take = |r: Report| match r {
                Report::Progress { percent, message } => pending_progress = Some((percent, message)),
                Report::Event { kind, data } => batch.push(NewEvent::new(kind, data)),
                Report::Log { level, message } => {
                    batch.push(NewEvent::new(kind::LOG, json!({"level": level, "message": message})))
                }
            };
            take(first);
            for _ in 0..512 {
                match reports.try_recv() {
                    Ok(r) => take(r),
                    Err(_) => break,
                }
            }
        }
        let progress_due = last_progress_write.is_none_or(|t| t.elapsed() >= progress_interval);
        if let Some((percent, message)) =
            pending_progress.as_ref().filter(|_| progress_due || closed).cloned()
        {
            pending_progress = None;
            last_progress_write = Some(Instant::now());
            batch.push(NewEvent::new(kind::PROGRESS_UPDATE, json!({"percent": percent, "message": message})));
            if let Err(error) = broker.set_progress(&lease, percent, &message).await {
                tracing::warn!(task = %task_id, %error, "storing progress failed");
            }
        }
        if !batch.is_empty() {
            let count = batch.len();
            match hub.append(&task_id, std::mem::take(&mut batch)).await {
                Ok(_) => crate::telemetry::events_stored("plugin", count),
                Err(error) => {
                    crate::telemetry::broker_error("append_events");
                    tracing::warn!(task = %task_id, %error, "storing events failed; they are lost");
                }
            }
        }
        if closed {
            return;
        }
    }
}

/// Flags running tasks that have been silent for longer than `threshold` and records a
/// `run_stale` event for each, once per silence.
async fn stale_watchdog(running: Arc<RunningTasks>, hub: EventHub, threshold: Duration) {
    let mut tick =
        tokio::time::interval((threshold / 4).clamp(Duration::from_millis(100), Duration::from_secs(30)));
    loop {
        tick.tick().await;
        for (task_id, silent_ms) in running.newly_stale(threshold) {
            tracing::warn!(task = %task_id, silent_ms, "task looks stale: no report for a while");
            let event = NewEvent::new(
                kind::RUN_STALE,
                json!({"silent_ms": silent_ms, "threshold_ms": threshold.as_millis() as u64}),
            );
            if let Err(error) = hub.append(&task_id, vec![event]).await {
                tracing::warn!(task = %task_id, %error, "could not store run_stale");
            }
        }
    }
}

/// The ids (sorted) of the hosts in `hosts`, heard from within `online_within` of `now`, that
/// consume a queue `me` consumes and report other tenant policies than `me`. Hosts that report
/// none (older builds) are left out: nothing is known of theirs.
fn policy_conflicts(me: &HostInfo, hosts: &[HostInfo], online_within: Duration, now: Millis) -> Vec<String> {
    let within = Millis::try_from(online_within.as_millis()).unwrap_or(Millis::MAX);
    let mut ids: Vec<String> = hosts
        .iter()
        .filter(|h| h.id != me.id && !h.tenant_policies.is_empty())
        .filter(|h| h.tenant_policies != me.tenant_policies)
        .filter(|h| now.saturating_sub(h.last_seen) <= within)
        .filter(|h| h.queues.iter().any(|q| me.queues.contains(q)))
        .map(|h| h.id.clone())
        .collect();
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use crate::queue::{
        BrokerError, CancelResult, FileInfo, NewTask, QueueStats, Submitted, TaskFilter, TaskRecord,
        embedded::EmbeddedBroker,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store whose lease renewals fail a given number of times, then work; everything else is
    /// the embedded broker's.
    struct FailingRenewals {
        inner: EmbeddedBroker,
        failures_left: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Broker for FailingRenewals {
        fn backend_name(&self) -> &'static str {
            "failing-renewals"
        }
        async fn submit(&self, task: NewTask) -> Result<Submitted, BrokerError> {
            self.inner.submit(task).await
        }
        async fn lease(
            &self,
            worker: &str,
            queues: &[String],
            lease_for: Duration,
        ) -> Result<Option<Lease>, BrokerError> {
            self.inner.lease(worker, queues, lease_for).await
        }
        async fn wait_for_work(&self, queues: &[String], timeout: Duration) {
            self.inner.wait_for_work(queues, timeout).await
        }
        async fn renew(&self, lease: &Lease, lease_for: Duration) -> Result<LeaseState, BrokerError> {
            if self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(BrokerError::Storage("store unreachable (test)".into()));
            }
            self.inner.renew(lease, lease_for).await
        }
        async fn release(&self, lease: &Lease) -> Result<(), BrokerError> {
            self.inner.release(lease).await
        }
        async fn finish(
            &self,
            lease: &Lease,
            finish: Finish,
            event: NewEvent,
        ) -> Result<Option<Event>, BrokerError> {
            self.inner.finish(lease, finish, event).await
        }
        async fn set_progress(&self, lease: &Lease, percent: f32, message: &str) -> Result<(), BrokerError> {
            self.inner.set_progress(lease, percent, message).await
        }
        async fn cancel(
            &self,
            tenant: Option<&str>,
            id: &str,
        ) -> Result<(CancelResult, Option<Event>), BrokerError> {
            self.inner.cancel(tenant, id).await
        }
        async fn retry_dead(&self, tenant: Option<&str>, id: &str) -> Result<TaskRecord, BrokerError> {
            self.inner.retry_dead(tenant, id).await
        }
        async fn get(&self, tenant: Option<&str>, id: &str) -> Result<Option<TaskRecord>, BrokerError> {
            self.inner.get(tenant, id).await
        }
        async fn list(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, BrokerError> {
            self.inner.list(filter).await
        }
        async fn queue_stats(&self, tenant: Option<&str>) -> Result<Vec<QueueStats>, BrokerError> {
            self.inner.queue_stats(tenant).await
        }
        async fn append_events(
            &self,
            task_id: &str,
            events: Vec<NewEvent>,
        ) -> Result<Vec<Event>, BrokerError> {
            self.inner.append_events(task_id, events).await
        }
        async fn events_since(
            &self,
            task_id: &str,
            since: u64,
            limit: usize,
        ) -> Result<Vec<Event>, BrokerError> {
            self.inner.events_since(task_id, since, limit).await
        }
        async fn ping(&self) -> Result<(), BrokerError> {
            self.inner.ping().await
        }
        async fn put_file(
            &self,
            tenant: &str,
            name: &str,
            content: Vec<u8>,
        ) -> Result<FileInfo, BrokerError> {
            self.inner.put_file(tenant, name, content).await
        }
        async fn get_file(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>, BrokerError> {
            self.inner.get_file(tenant, name).await
        }
        async fn delete_file(&self, tenant: &str, name: &str) -> Result<bool, BrokerError> {
            self.inner.delete_file(tenant, name).await
        }
        async fn list_files(&self, tenant: &str) -> Result<Vec<FileInfo>, BrokerError> {
            self.inner.list_files(tenant).await
        }
        async fn heartbeat(&self, host: &HostInfo, forget_after: Duration) -> Result<(), BrokerError> {
            self.inner.heartbeat(host, forget_after).await
        }
        async fn hosts(&self) -> Result<Vec<HostInfo>, BrokerError> {
            self.inner.hosts().await
        }
    }

    fn policy(tenant: &str, weight: u32, quota: Option<u32>) -> TenantPolicy {
        TenantPolicy { tenant: tenant.into(), weight, concurrent_tasks: quota }
    }

    #[test]
    fn the_policies_fingerprint_ignores_order_and_sees_every_weight_and_quota() {
        let base = [policy("acme", 2, Some(4)), policy("labs", 1, None)];
        let fp = TenantPolicy::fingerprint(&base);
        assert_eq!(fp.len(), 16);
        assert_eq!(fp, TenantPolicy::fingerprint(&[base[1].clone(), base[0].clone()]));
        for other in [
            vec![policy("acme", 3, Some(4)), policy("labs", 1, None)],
            vec![policy("acme", 2, Some(5)), policy("labs", 1, None)],
            vec![policy("acme", 2, None), policy("labs", 1, None)],
            vec![policy("acme", 2, Some(4))],
            vec![policy("acme", 2, Some(4)), policy("lab", 1, None)],
        ] {
            assert_ne!(TenantPolicy::fingerprint(&other), fp, "{other:?}");
        }
    }

    #[test]
    fn hosts_sharing_a_queue_online_with_other_policies_conflict_and_no_others() {
        let now = 1_000_000;
        let host = |id: &str, queues: &[&str], policies: &str, last_seen: Millis| HostInfo {
            id: id.into(),
            hostname: "h".into(),
            slots: 2,
            running: 0,
            queues: queues.iter().map(|q| (*q).to_owned()).collect(),
            plugins: vec![],
            version: "test".into(),
            started_at: 0,
            last_seen,
            tenant_policies: policies.into(),
        };
        let me = host("me", &["cvd", "dft"], "aaaa", now);
        let hosts = vec![
            me.clone(),
            host("same", &["cvd"], "aaaa", now),
            host("other-b", &["dft", "edna"], "bbbb", now - 1_000),
            host("other-a", &["cvd"], "cccc", now),
            host("elsewhere", &["edna"], "bbbb", now),
            host("gone", &["cvd"], "bbbb", now - 16_000),
            host("old-build", &["cvd"], "", now),
        ];
        assert_eq!(
            policy_conflicts(&me, &hosts, Duration::from_secs(15), now),
            ["other-a", "other-b"],
            "online, sharing a queue, other policies; sorted"
        );
        assert!(policy_conflicts(&me, &hosts[..2], Duration::from_secs(15), now).is_empty());
    }

    #[tokio::test]
    async fn a_cancel_check_that_meets_a_failing_store_is_tried_again_soon_not_an_interval_later() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(FailingRenewals {
            inner: EmbeddedBroker::open(dir.path()).unwrap(),
            failures_left: AtomicUsize::new(2),
        });
        broker.submit(crate::queue::test_task("t1")).await.unwrap();
        let lease =
            broker.lease("w1", &["default".to_owned()], Duration::from_secs(30)).await.unwrap().unwrap();
        let (requested, _) = broker.cancel(None, "t1").await.unwrap();
        assert_eq!(requested, CancelResult::Requested);
        // The slot found a cancel noted while it started the task: it asks the store at once. The
        // first two asks fail; with an hour between renewals, only a prompt retry can learn it.
        let (cancel, lost) = (CancellationToken::new(), CancellationToken::new());
        let renewer = tokio::spawn(renew_lease(
            broker.clone(),
            Arc::new(lease),
            (Duration::from_secs(3600), Duration::from_secs(30)),
            cancel.clone(),
            lost.clone(),
            true,
        ));
        tokio::time::timeout(Duration::from_secs(20), cancel.cancelled())
            .await
            .expect("the requested cancel was never learnt");
        assert_eq!(broker.failures_left.load(Ordering::SeqCst), 0, "both failures were met");
        assert!(!lost.is_cancelled(), "the lease is still held");
        renewer.abort();
    }

    #[test]
    fn a_cancel_for_a_task_not_yet_running_here_is_remembered_once() {
        let running = RunningTasks::default();
        assert!(!running.cancel("t1"), "nothing runs here yet");
        let token = CancellationToken::new();
        running.insert("t1", token.clone());
        assert!(!token.is_cancelled());
        assert!(running.take_unmatched_cancel("t1"), "the early request is reported to the slot");
        assert!(!running.take_unmatched_cancel("t1"), "and only once");
        assert!(!running.take_unmatched_cancel("t2"), "no request for another task");
        assert!(running.cancel("t1"), "a running task is stopped at once");
        assert!(token.is_cancelled());
        assert!(!running.take_unmatched_cancel("t1"), "a request that found its task is not kept");
    }

    #[test]
    fn a_cancel_racing_a_slot_that_starts_the_task_is_never_lost() {
        // The API's cancel and a slot's insert-then-look run at once, many times: every time,
        // either the cancel found the task and stopped it, or the slot found the note.
        for round in 0..2_000 {
            let running = Arc::new(RunningTasks::default());
            let id = format!("t{round}");
            let start = Arc::new(std::sync::Barrier::new(2));
            let api = {
                let (running, id, start) = (running.clone(), id.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    running.cancel(&id)
                })
            };
            start.wait();
            let token = CancellationToken::new();
            running.insert(&id, token.clone());
            let noted = running.take_unmatched_cancel(&id);
            let found = api.join().unwrap();
            assert!(
                token.is_cancelled() || noted,
                "round {round}: the cancel was lost (found {found}, noted {noted})"
            );
        }
    }

    #[test]
    fn remembered_cancels_stay_bounded() {
        let running = RunningTasks::default();
        for i in 0..UNMATCHED_CANCEL_LIMIT + 10 {
            running.cancel(&format!("t{i}"));
        }
        let kept = running.unmatched.lock().unwrap().len();
        assert!(kept <= UNMATCHED_CANCEL_LIMIT, "{kept} remembered");
        assert!(
            running.take_unmatched_cancel(&format!("t{}", UNMATCHED_CANCEL_LIMIT + 9)),
            "the newest is kept"
        );
    }
}
