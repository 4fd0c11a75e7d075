//! The embedded broker: tasks, queues and events in one SQLite file on local disk.
//!
//! This is the default backend when no Redis is named, so that `host run` works on a fresh machine
//! and loses nothing on restart. It serves one host; several hosts share work through Redis.
//!
//! # Storage
//! One file, `<data_dir>/taskhost.sqlite3`, holds two tables:
//! - `tasks`: one row per task, with its status, the latest progress, the outcome (`result`, or
//!   `error_kind` and `error_message`), the limits asked for (JSON text), and the lease: the attempt
//!   being run is `attempts`, held by `lease_owner` until `lease_expires_at`. Every call a worker
//!   makes with a [`Lease`] is *fenced*: it only changes the row while id, attempt number, owner and
//!   status `running` still match, so a worker whose lease lapsed and was taken over writes nothing.
//! - `events`: each task's event log, keyed by `(task_id, seq)`; sequence ids are assigned inside
//!   the writing transaction, so they run 1, 2, 3, ... without gaps or duplicates.
//!
//! The schema's version is kept in `PRAGMA user_version`; [`EmbeddedBroker::open`] applies the
//! migrations a file lacks and refuses a file written by a newer host.
//!
//! # Why SQLite, in WAL mode
//! SQLite is the well-kept embedded database: one file, transactions, crash safety, no server.
//! Write-ahead logging lets readers (the API listing tasks, a watcher reading history) proceed
//! while a worker commits, and makes each commit one append to the log. `synchronous = FULL`
//! makes an acknowledged submit survive a power cut, not only a crash of the process.
//!
//! SQLite calls block, so they never run on the async runtime: every call takes the one
//! connection (behind a std [`Mutex`]) on tokio's blocking pool. One connection serialises all
//! writes, which is what SQLite does anyway, and makes each lease a single step that no other
//! worker of this host can interleave with: no task is handed to two workers.
//!
//! Group commit: the calls waiting for the connection run together as one transaction, each in a
//! savepoint of its own (one that fails rolls back alone), and each caller is answered only after
//! that transaction commits. So a burst of leases, finishes and event appends pays one `fsync`,
//! not one each, and nothing is acknowledged before it is on disk; a lone call goes at once.
//!
//! # One host per data dir, and crash recovery
//! [`EmbeddedBroker::open`] takes an exclusive lock on `<data_dir>/taskhost.lock` (an OS file
//! lock, released by the OS when the process ends however it ends). A second host on the same dir
//! is refused with an error naming the locked file. Holding the lock also proves that no live
//! process runs any task of this store, so `open` immediately requeues every task a previous
//! process left `running` (it was killed or crashed): the task is runnable again at once, and its
//! next lease is a new attempt. A task already delivered [`MAX_DELIVERIES`] times without an
//! outcome goes to the dead letters instead (reason `delivery count exceeded`): it most likely
//! takes its host down. A task whose cancellation was requested while it ran ends `cancelled`.
//! Within one process, a lease that lapses (its worker hung) is taken back by the next
//! [`Broker::lease`] the same way.
//!
//! Events this backend writes on its own (expiry, dead letters by delivery count, recovery of a
//! cancelled task) are stored like any other and reach watchers through the store.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, named_params};
use serde_json::json;
use tokio::sync::{Notify, oneshot};

use super::{
    Broker, BrokerError, CancelResult, ErrorInfo, FileInfo, Finish, HostInfo, Lease, LeaseState, Millis,
    NewTask, Priority, QueueStats, Submitted, TaskFilter, TaskRecord, TaskStatus, TenantPolicy, now_ms,
};
use crate::events::{Event, NewEvent, kind};
use crate::sandbox::LimitsRequest;

/// Deliveries (leases) of one task that may end without an outcome (the worker or its host died)
/// before the task goes to the dead letters.
pub const MAX_DELIVERIES: u32 = 10;

/// The database file inside the data dir.
pub const DATABASE_FILE: &str = "taskhost.sqlite3";

/// The lock file inside the data dir.
pub const LOCK_FILE: &str = "taskhost.lock";

/// [`Broker::list`] with `limit: 0` returns at most this many tasks.
const DEFAULT_LIST_LIMIT: usize = 100;

/// [`Broker::events_since`] with `limit: 0` returns at most this many events.
const DEFAULT_EVENTS_LIMIT: usize = 1000;

/// How long a statement waits for SQLite's own file lock (only another connection, e.g. a backup
/// tool, can hold it).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The error kind and reason of a task sent to the dead letters by [`MAX_DELIVERIES`].
const DELIVERY_COUNT_EXCEEDED: &str = "delivery count exceeded";

/// Migrations, in order: the file's `user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    // 1: tasks and their events.
    "CREATE TABLE tasks (
        id               TEXT PRIMARY KEY NOT NULL,
        tenant           TEXT NOT NULL,
        plugin           TEXT NOT NULL,
        task_name        TEXT NOT NULL,
        queue            TEXT NOT NULL,
        status           TEXT NOT NULL,
        priority         INTEGER NOT NULL,
        progress         REAL NOT NULL DEFAULT 0,
        message          TEXT NOT NULL DEFAULT '',
        input            TEXT NOT NULL,
        result           TEXT,
        error_kind       TEXT,
        error_message    TEXT,
        attempts         INTEGER NOT NULL DEFAULT 0,
        max_retries      INTEGER NOT NULL,
        limits           TEXT NOT NULL,
        created_at       INTEGER NOT NULL,
        started_at       INTEGER,
        finished_at      INTEGER,
        not_before       INTEGER,
        expires_at       INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        lease_owner      TEXT,
        lease_expires_at INTEGER
    );
    CREATE INDEX tasks_by_queue_status ON tasks (queue, status, priority);
    CREATE INDEX tasks_by_status_time ON tasks (status, not_before);
    CREATE INDEX tasks_by_expiry ON tasks (expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX tasks_by_creation ON tasks (created_at);
    CREATE TABLE events (
        task_id    TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        seq        INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        data       TEXT NOT NULL,
        ts         INTEGER NOT NULL,
        PRIMARY KEY (task_id, seq)
    ) WITHOUT ROWID;",
    // 2: host heartbeats.
    "CREATE TABLE hosts (
        id         TEXT PRIMARY KEY NOT NULL,
        info       TEXT NOT NULL,
        last_seen  INTEGER NOT NULL,
        forget_at  INTEGER NOT NULL
    );",
    // 3: the tenants' file areas, and the files a task mounts.
    "ALTER TABLE tasks ADD COLUMN files TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE files (
        tenant     TEXT NOT NULL,
        name       TEXT NOT NULL,
        content    BLOB NOT NULL,
        size       INTEGER NOT NULL,
        sha256     TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, name)
    ) WITHOUT ROWID;",
    // 4: fair turns between tenants count each tenant's running tasks.
    "CREATE INDEX tasks_by_tenant_status ON tasks (tenant, status);",
    // 5: each tenant's running tasks, kept by triggers (a lease reads it instead of counting),
    // and the tenants' weights and quotas.
    "CREATE TABLE tenant_running (
        tenant  TEXT PRIMARY KEY NOT NULL,
        running INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO tenant_running (tenant, running)
        SELECT tenant, COUNT(*) FROM tasks WHERE status = 'running' GROUP BY tenant;
    CREATE TRIGGER tasks_start_running AFTER UPDATE OF status ON tasks
        WHEN new.status = 'running' AND old.status != 'running'
    BEGIN
        INSERT INTO tenant_running (tenant, running) VALUES (new.tenant, 1)
            ON CONFLICT (tenant) DO UPDATE SET running = running + 1;
    END;
    CREATE TRIGGER tasks_stop_running AFTER UPDATE OF status ON tasks
        WHEN old.status = 'running' AND new.status != 'running'
    BEGIN
        UPDATE tenant_running SET running = running - 1 WHERE tenant = old.tenant;
    END;
    CREATE TRIGGER tasks_insert_running AFTER INSERT ON tasks WHEN new.status = 'running'
    BEGIN
        INSERT INTO tenant_running (tenant, running) VALUES (new.tenant, 1)
            ON CONFLICT (tenant) DO UPDATE SET running = running + 1;
    END;
    CREATE TRIGGER tasks_delete_running AFTER DELETE ON tasks WHEN old.status = 'running'
    BEGIN
        UPDATE tenant_running SET running = running - 1 WHERE tenant = old.tenant;
    END;
    CREATE TABLE tenant_policy (
        tenant TEXT PRIMARY KEY NOT NULL,
        weight INTEGER NOT NULL,
        quota  INTEGER
    ) WITHOUT ROWID;",
    // 6: a lease finds each waiting tenant and its next task by index (see `next_candidate`)
    // instead of sorting every runnable row.
    "CREATE INDEX tasks_waiting ON tasks (queue, status, tenant, priority, COALESCE(not_before, created_at));",
];

/// The columns [`task_from_row`] reads, in a `SELECT`.
macro_rules! task_columns {
    () => {
        "id, tenant, plugin, task_name, queue, status, priority, progress, message, input, result, \
         error_kind, error_message, attempts, max_retries, limits, created_at, started_at, finished_at, \
         not_before, expires_at, cancel_requested, files"
    };
}

/// The fence of every call made with a lease: the row is still this attempt, held by this worker.
macro_rules! lease_fence {
    () => {
        "id = :id AND attempts = :attempt AND status = 'running' AND lease_owner = :worker"
    };
}

impl From<rusqlite::Error> for BrokerError {
    fn from(e: rusqlite::Error) -> Self {
        BrokerError::Storage(format!("sqlite: {e}"))
    }
}

/// The embedded backend. See the module documentation.
pub struct EmbeddedBroker {
    /// The one connection; a std mutex because it is only ever taken on the blocking pool.
    db: Arc<Mutex<Connection>>,
    /// Calls waiting for the connection; each batch of them is one transaction (group commit).
    jobs: Arc<Mutex<Vec<Job>>>,
    /// Whose turn it is to run the next batch.
    turn: tokio::sync::Mutex<()>,
    /// Wakes [`Broker::wait_for_work`] when a task may have become runnable.
    work: Arc<Notify>,
    data_dir: PathBuf,
    /// Held (open and locked) for the broker's life. Declared last so that it is released after
    /// the connection closes.
    _lock: File,
}

impl EmbeddedBroker {
    /// Opens (creating if needed) the store in `data_dir`, locks it for this process, and requeues
    /// the tasks a previous process left running. Blocking: call it at start-up, or from
    /// [`tokio::task::spawn_blocking`].
    pub fn open(data_dir: &Path) -> Result<Self, BrokerError> {
        fs::create_dir_all(data_dir).map_err(|e| {
            BrokerError::Storage(format!("cannot create the data dir {}: {e}", data_dir.display()))
        })?;
        let lock = lock_data_dir(data_dir)?;
        let mut conn = Connection::open(data_dir.join(DATABASE_FILE))?;
        configure(&conn)?;
        migrate(&mut conn)?;
        let recovered = recover_stranded_tasks(&mut conn)?;
        if recovered > 0 {
            tracing::info!(
                recovered,
                data_dir = %data_dir.display(),
                "took back tasks left running by a previous host"
            );
        }
        Ok(EmbeddedBroker {
            db: Arc::new(Mutex::new(conn)),
            jobs: Arc::new(Mutex::new(Vec::new())),
            turn: tokio::sync::Mutex::new(()),
            work: Arc::new(Notify::new()),
            data_dir: data_dir.to_owned(),
            _lock: lock,
        })
    }

    /// The folder holding the database and the lock file.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Runs `op` on the connection, on the blocking pool, in a batch with the calls waiting at
    /// that instant: one transaction, so one commit (one `fsync`) for all of them (group commit).
    /// An `op` that writes several rows does so in a savepoint (`conn.savepoint()`), which rolls
    /// back alone if the `op` fails. No answer is given before the batch is committed: what a
    /// caller is told was stored is on disk. One batch runs at a time, so batches grow by
    /// themselves under load and a lone call goes at once.
    async fn with_db<T, F>(&self, op: F) -> Result<T, BrokerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, BrokerError> + Send + 'static,
    {
        let (answer, mut answered) = oneshot::channel::<Result<T, BrokerError>>();
        let job: Job = Box::new(move |conn| {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(conn)))
                .unwrap_or_else(|_| Err(BrokerError::Storage("a database call panicked".to_owned())));
            Box::new(move |committed: Result<(), String>| {
                let _ = answer.send(committed.map_err(BrokerError::Storage).and(result));
            })
        });
        let gone = || BrokerError::Storage("database call did not complete".to_owned());
        self.jobs.lock().map_err(|_| gone())?.push(job);
        let _turn = self.turn.lock().await;
        loop {
            match answered.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => return Err(gone()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<Job> = {
                let mut jobs = self.jobs.lock().map_err(|_| gone())?;
                let n = jobs.len().min(MAX_GROUP_COMMIT);
                jobs.drain(..n).collect()
            };
            if batch.is_empty() {
                return answered.await.map_err(|_| gone())?;
            }
            let db = Arc::clone(&self.db);
            // A batch that panics drops its answers: its callers hear `gone`.
            let _ = tokio::task::spawn_blocking(move || run_batch(&db, batch)).await;
        }
    }

    /// The earliest time at which a task in `queues` becomes runnable (a start time, a retry
    /// backoff, a lease lapsing); in the past when one is runnable now. See [`earliest_due`].
    async fn next_due(&self, queues: &[String]) -> Result<Option<Millis>, BrokerError> {
        let queues = queues.to_vec();
        self.with_db(move |conn| earliest_due(conn, &queues)).await
    }
}

#[async_trait]
impl Broker for EmbeddedBroker {
    fn backend_name(&self) -> &'static str {
        "embedded"
    }

    async fn submit(&self, task: NewTask) -> Result<Submitted, BrokerError> {
        let submitted = self
            .with_db(move |conn| {
                let tx = conn.savepoint()?;
                if let Some(existing) = get_task(&tx, &task.id, None)? {
                    if existing.tenant != task.tenant {
                        return Err(BrokerError::Conflict(format!("task id {} is already taken", task.id)));
                    }
                    return Ok(Submitted { task: existing, created: false });
                }
                let now = now_ms();
                let status = if task.not_before.is_some_and(|at| at > now) {
                    TaskStatus::Scheduled
                } else {
                    TaskStatus::Queued
                };
                let limits = serde_json::to_string(&task.limits)
                    .map_err(|e| BrokerError::Storage(format!("cannot encode limits: {e}")))?;
                let files = serde_json::to_string(&task.files)
                    .map_err(|e| BrokerError::Storage(format!("cannot encode files: {e}")))?;
                tx.prepare_cached(
                    "INSERT INTO tasks (id, tenant, plugin, task_name, queue, status, priority, input,
                                        max_retries, limits, created_at, not_before, expires_at, files)
                     VALUES (:id, :tenant, :plugin, :task_name, :queue, :status, :priority, :input,
                             :max_retries, :limits, :now, :not_before, :expires_at, :files)",
                )?
                .execute(named_params! {
                    ":id": task.id,
                    ":tenant": task.tenant,
                    ":plugin": task.plugin,
                    ":task_name": task.task_name,
                    ":queue": task.queue,
                    ":status": status.as_str(),
                    ":priority": task.priority.rank(),
                    ":input": task.input,
                    ":max_retries": task.max_retries,
                    ":limits": limits,
                    ":now": now,
                    ":not_before": task.not_before,
                    ":expires_at": task.expires_at,
                    ":files": files,
                })?;
                let record = get_task(&tx, &task.id, None)?.ok_or_else(|| vanished(&task.id))?;
                tx.commit()?;
                Ok(Submitted { task: record, created: true })
            })
            .await?;
        if submitted.created {
            self.work.notify_waiters();
        }
        Ok(submitted)
    }

    async fn lease(
        &self,
        worker: &str,
        queues: &[String],
        lease_for: Duration,
    ) -> Result<Option<Lease>, BrokerError> {
        if queues.is_empty() {
            return Ok(None);
        }
        let worker = worker.to_owned();
        let queues = queues.to_vec();
        let lease_ms = duration_ms(lease_for);
        self.with_db(move |conn| {
            let tx = conn.savepoint()?;
            let now = now_ms();
            expire_stale_tasks(&tx, now)?;
            tx.prepare_cached(
                "UPDATE tasks SET status = 'queued'
                 WHERE status = 'scheduled' AND not_before IS NOT NULL AND not_before <= :now",
            )?
            .execute(named_params! {":now": now})?;
            loop {
                let Some(Candidate { id, status, attempts, cancel_requested, .. }) =
                    next_candidate(&tx, &queues, now)?
                else {
                    tx.commit()?;
                    return Ok(None);
                };
                if status == TaskStatus::Running.as_str() {
                    // Its worker is gone (or hung): decide whether it may run again.
                    if cancel_requested {
                        end_task(&tx, &id, TaskStatus::Cancelled, &cancelled_while_away(), now)?;
                        continue;
                    }
                    if attempts >= MAX_DELIVERIES {
                        end_task(&tx, &id, TaskStatus::Dead, &delivery_count_exceeded(), now)?;
                        continue;
                    }
                }
                tx.prepare_cached(
                    "UPDATE tasks
                     SET status = 'running', attempts = attempts + 1, started_at = :now,
                         lease_owner = :worker, lease_expires_at = :until, progress = 0, message = ''
                     WHERE id = :id",
                )?
                .execute(named_params! {
                    ":now": now,
                    ":worker": worker,
                    ":until": now.saturating_add(lease_ms),
                    ":id": id,
                })?;
                let task = get_task(&tx, &id, None)?.ok_or_else(|| vanished(&id))?;
                tx.commit()?;
                return Ok(Some(Lease { attempt: task.attempts, task, worker, started: None }));
            }
        })
        .await
    }

    async fn set_tenant_policies(
        &self,
        _queues: &[String],
        policies: &[TenantPolicy],
    ) -> Result<(), BrokerError> {
        // One host serves every queue of this store: the policies hold for all of them.
        let policies = policies.to_vec();
        self.with_db(move |conn| {
            let tx = conn.savepoint()?;
            tx.execute("DELETE FROM tenant_policy", [])?;
            for policy in &policies {
                tx.prepare_cached("INSERT INTO tenant_policy (tenant, weight, quota) VALUES (?1, ?2, ?3)")?
                    .execute(rusqlite::params![policy.tenant, policy.weight.max(1), policy.concurrent_tasks])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn wait_for_work(&self, queues: &[String], timeout: Duration) {
        let notified = self.work.notified();
        tokio::pin!(notified);
        // Registered before looking at the store, so that a submit in between is not missed.
        notified.as_mut().enable();
        let mut wait = timeout;
        match self.next_due(queues).await {
            Ok(Some(due)) => {
                let now = now_ms();
                if due <= now {
                    return;
                }
                wait = wait.min(Duration::from_millis(u64::try_from(due - now).unwrap_or(0)));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read when the next task is due; waiting the full timeout")
            }
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(wait) => {}
        }
    }

    async fn renew(&self, lease: &Lease, lease_for: Duration) -> Result<LeaseState, BrokerError> {
        let (id, attempt, worker) = fence_of(lease);
        let lease_ms = duration_ms(lease_for);
        self.with_db(move |conn| {
            let cancel_requested = conn
                .prepare_cached(concat!(
                    "UPDATE tasks SET lease_expires_at = :until WHERE ",
                    lease_fence!(),
                    " RETURNING cancel_requested"
                ))?
                .query_row(
                    named_params! {
                        ":until": now_ms().saturating_add(lease_ms),
                        ":id": id,
                        ":attempt": attempt,
                        ":worker": worker,
                    },
                    |row| row.get::<_, bool>(0),
                )
                .optional()?;
            Ok(match cancel_requested {
                None => LeaseState::Lost,
                Some(true) => LeaseState::CancelRequested,
                Some(false) => LeaseState::Held,
            })
        })
        .await
    }

    async fn release(&self, lease: &Lease) -> Result<(), BrokerError> {
        let (id, attempt, worker) = fence_of(lease);
        let released = self
            .with_db(move |conn| {
                let changed = conn
                    .prepare_cached(concat!(
                        "UPDATE tasks
                         SET status = 'queued', attempts = attempts - 1, not_before = NULL,
                             lease_owner = NULL, lease_expires_at = NULL
                         WHERE ",
                        lease_fence!()
                    ))?
                    .execute(named_params! {":id": id, ":attempt": attempt, ":worker": worker})?;
                Ok(changed > 0)
            })
            .await?;
        if released {
            self.work.notify_waiters();
        }
        Ok(())
    }

    async fn finish(
        &self,
        lease: &Lease,
        finish: Finish,
        event: NewEvent,
    ) -> Result<Option<Event>, BrokerError> {
        let (id, attempt, worker) = fence_of(lease);
        let is_retry = matches!(finish, Finish::Retry { .. });
        let stored = self
            .with_db(move |conn| {
                let tx = conn.savepoint()?;
                let now = now_ms();
                let status = finish.status();
                let (result, error, retry_at) = match finish {
                    Finish::Succeeded { result } => (Some(result), None, None),
                    Finish::Failed(error) | Finish::Cancelled(error) | Finish::Dead(error) => {
                        (None, Some(error), None)
                    }
                    Finish::Retry { error, at } => (None, Some(error), Some(at)),
                };
                let finished_at = status.is_terminal().then_some(now);
                let changed = tx
                    .prepare_cached(concat!(
                        "UPDATE tasks
                         SET status = :status, result = :result, error_kind = :error_kind,
                             error_message = :error_message, finished_at = :finished_at,
                             not_before = COALESCE(:retry_at, not_before),
                             lease_owner = NULL, lease_expires_at = NULL
                         WHERE ",
                        lease_fence!()
                    ))?
                    .execute(named_params! {
                        ":status": status.as_str(),
                        ":result": result,
                        ":error_kind": error.as_ref().map(|e| e.kind.as_str()),
                        ":error_message": error.as_ref().map(|e| e.message.as_str()),
                        ":finished_at": finished_at,
                        ":retry_at": retry_at,
                        ":id": id,
                        ":attempt": attempt,
                        ":worker": worker,
                    })?;
                if changed == 0 {
                    // Fenced out: dropping the transaction rolls back (nothing was written).
                    return Ok(None);
                }
                let stored = append_event(&tx, &id, &event)?;
                // A tenant at its quota has a slot free again: its waiting tasks are runnable.
                let quota_freed = tx
                    .prepare_cached(
                        "SELECT 1 FROM tenant_policy
                         WHERE tenant = (SELECT tenant FROM tasks WHERE id = ?1) AND quota IS NOT NULL",
                    )?
                    .exists([&id])?;
                tx.commit()?;
                Ok(Some((stored, quota_freed)))
            })
            .await?;
        let Some((stored, quota_freed)) = stored else { return Ok(None) };
        if is_retry || quota_freed {
            // Waiters may be sleeping until a later time than this retry's, or passed over the
            // tenant's tasks while it was at its quota.
            self.work.notify_waiters();
        }
        Ok(Some(stored))
    }

    async fn set_progress(&self, lease: &Lease, percent: f32, message: &str) -> Result<(), BrokerError> {
        let (id, attempt, worker) = fence_of(lease);
        let percent = if percent.is_nan() { 0.0 } else { f64::from(percent.clamp(0.0, 100.0)) };
        let message = message.to_owned();
        self.with_db(move |conn| {
            conn.prepare_cached(concat!(
                "UPDATE tasks SET progress = MAX(progress, :percent), message = :message WHERE ",
                lease_fence!()
            ))?
            .execute(named_params! {
                ":percent": percent,
                ":message": message,
                ":id": id,
                ":attempt": attempt,
                ":worker": worker,
            })?;
            Ok(())
        })
        .await
    }

    async fn cancel(
        &self,
        tenant: Option<&str>,
        id: &str,
    ) -> Result<(CancelResult, Option<Event>), BrokerError> {
        let tenant = tenant.map(str::to_owned);
        let id = id.to_owned();
        self.with_db(move |conn| {
            let tx = conn.savepoint()?;
            let task =
                get_task(&tx, &id, tenant.as_deref())?.ok_or_else(|| BrokerError::NotFound(id.clone()))?;
            let (outcome, event) = match task.status {
                TaskStatus::Queued | TaskStatus::Scheduled | TaskStatus::Retrying => {
                    let message = super::cancel_message(task.status);
                    tx.prepare_cached(
                        "UPDATE tasks
                         SET status = 'cancelled', finished_at = :now, error_kind = 'cancelled',
                             error_message = :message
                         WHERE id = :id",
                    )?
                    .execute(named_params! {":now": now_ms(), ":message": message, ":id": id})?;
                    (CancelResult::Cancelled, super::cancelled_event(message))
                }
                TaskStatus::Running => {
                    tx.prepare_cached("UPDATE tasks SET cancel_requested = 1 WHERE id = :id")?
                        .execute(named_params! {":id": id})?;
                    (CancelResult::Requested, super::cancel_requested_event())
                }
                _ => return Ok((CancelResult::AlreadyFinished, None)),
            };
            let stored = append_event(&tx, &id, &event)?;
            tx.commit()?;
            Ok((outcome, Some(stored)))
        })
        .await
    }

    async fn retry_dead(&self, tenant: Option<&str>, id: &str) -> Result<TaskRecord, BrokerError> {
        let tenant = tenant.map(str::to_owned);
        let id = id.to_owned();
        let record = self
            .with_db(move |conn| {
                let tx = conn.savepoint()?;
                let task = get_task(&tx, &id, tenant.as_deref())?
                    .ok_or_else(|| BrokerError::NotFound(id.clone()))?;
                if task.status != TaskStatus::Dead {
                    return Err(BrokerError::Conflict(format!(
                        "task {id} is {}, not dead: only dead tasks can be retried",
                        task.status.as_str()
                    )));
                }
                tx.prepare_cached(
                    "UPDATE tasks
                     SET status = 'queued', attempts = 0, progress = 0, message = '', result = NULL,
                         error_kind = NULL, error_message = NULL, started_at = NULL, finished_at = NULL,
                         not_before = NULL, cancel_requested = 0, lease_owner = NULL,
                         lease_expires_at = NULL
                     WHERE id = :id",
                )?
                .execute(named_params! {":id": id})?;
                let record = get_task(&tx, &id, None)?.ok_or_else(|| vanished(&id))?;
                tx.commit()?;
                Ok(record)
            })
            .await?;
        self.work.notify_waiters();
        Ok(record)
    }

    async fn get(&self, tenant: Option<&str>, id: &str) -> Result<Option<TaskRecord>, BrokerError> {
        let tenant = tenant.map(str::to_owned);
        let id = id.to_owned();
        self.with_db(move |conn| get_task(conn, &id, tenant.as_deref())).await
    }

    async fn list(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, BrokerError> {
        let filter = filter.clone();
        self.with_db(move |conn| {
            let limit = if filter.limit == 0 { DEFAULT_LIST_LIMIT } else { filter.limit };
            let mut stmt = conn.prepare_cached(concat!(
                "SELECT ",
                task_columns!(),
                " FROM tasks
                 WHERE (:tenant IS NULL OR tenant = :tenant)
                   AND (:status IS NULL OR status = :status)
                   AND (:plugin IS NULL OR plugin = :plugin)
                 ORDER BY created_at DESC, rowid DESC
                 LIMIT :limit"
            ))?;
            let rows = stmt.query_map(
                named_params! {
                    ":tenant": filter.tenant,
                    ":status": filter.status.map(TaskStatus::as_str),
                    ":plugin": filter.plugin,
                    ":limit": i64::try_from(limit).unwrap_or(i64::MAX),
                },
                task_from_row,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn queue_stats(&self, tenant: Option<&str>) -> Result<Vec<QueueStats>, BrokerError> {
        let tenant = tenant.map(str::to_owned);
        self.with_db(move |conn| {
            // Every queue that has a task (a skip scan of the queue index), each counted over
            // its waiting, running and dead rows only: finished tasks, however many are kept,
            // cost nothing here.
            let mut stmt = conn.prepare_cached(
                "WITH RECURSIVE queues (queue) AS (
                     SELECT (SELECT MIN(queue) FROM tasks)
                     UNION ALL
                     SELECT (SELECT MIN(queue) FROM tasks WHERE queue > queues.queue)
                     FROM queues WHERE queues.queue IS NOT NULL
                 )
                 SELECT q.queue,
                        (SELECT COUNT(*) FROM tasks AS t
                         WHERE t.queue = q.queue AND t.status IN ('queued', 'scheduled', 'retrying')
                           AND COALESCE(t.not_before, 0) <= :now AND (:tenant IS NULL OR t.tenant = :tenant)),
                        (SELECT COUNT(*) FROM tasks AS t
                         WHERE t.queue = q.queue AND t.status = 'running'
                           AND (:tenant IS NULL OR t.tenant = :tenant)),
                        (SELECT COUNT(*) FROM tasks AS t
                         WHERE t.queue = q.queue AND t.status IN ('queued', 'scheduled', 'retrying')
                           AND COALESCE(t.not_before, 0) > :now AND (:tenant IS NULL OR t.tenant = :tenant)),
                        (SELECT COUNT(*) FROM tasks AS t
                         WHERE t.queue = q.queue AND t.status = 'dead'
                           AND (:tenant IS NULL OR t.tenant = :tenant))
                 FROM queues AS q
                 WHERE q.queue IS NOT NULL
                   AND (:tenant IS NULL
                        OR EXISTS (SELECT 1 FROM tasks AS t WHERE t.queue = q.queue AND t.tenant = :tenant))
                 ORDER BY q.queue",
            )?;
            let count = |row: &Row<'_>, i: usize| row.get::<_, i64>(i).map(|n| u64::try_from(n).unwrap_or(0));
            let rows = stmt.query_map(named_params! {":now": now_ms(), ":tenant": tenant}, |row| {
                Ok(QueueStats {
                    queue: row.get(0)?,
                    pending: count(row, 1)?,
                    running: count(row, 2)?,
                    scheduled: count(row, 3)?,
                    dead: count(row, 4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn append_events(&self, task_id: &str, events: Vec<NewEvent>) -> Result<Vec<Event>, BrokerError> {
        let task_id = task_id.to_owned();
        self.with_db(move |conn| {
            let tx = conn.savepoint()?;
            let exists = tx
                .prepare_cached("SELECT 1 FROM tasks WHERE id = :id")?
                .exists(named_params! {":id": task_id})?;
            if !exists {
                return Err(BrokerError::NotFound(task_id));
            }
            let stored = events
                .iter()
                .map(|event| append_event(&tx, &task_id, event))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    async fn events_since(&self, task_id: &str, since: u64, limit: usize) -> Result<Vec<Event>, BrokerError> {
        let task_id = task_id.to_owned();
        let limit = if limit == 0 { DEFAULT_EVENTS_LIMIT } else { limit };
        self.with_db(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT task_id, seq, event_type, data, ts FROM events
                 WHERE task_id = :id AND seq > :since
                 ORDER BY seq
                 LIMIT :limit",
            )?;
            let rows = stmt.query_map(
                named_params! {
                    ":id": task_id,
                    ":since": i64::try_from(since).unwrap_or(i64::MAX),
                    ":limit": i64::try_from(limit).unwrap_or(i64::MAX),
                },
                event_from_row,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        self.with_db(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    async fn put_file(&self, tenant: &str, name: &str, content: Vec<u8>) -> Result<FileInfo, BrokerError> {
        use sha2::Digest;
        let info = FileInfo {
            name: name.to_owned(),
            size: content.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(&content)),
            created_at: now_ms(),
        };
        let (tenant, stored) = (tenant.to_owned(), info.clone());
        self.with_db(move |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO files (tenant, name, content, size, sha256, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    tenant,
                    stored.name,
                    content,
                    stored.size as i64,
                    stored.sha256,
                    stored.created_at
                ],
            )?;
            Ok(())
        })
        .await?;
        Ok(info)
    }

    async fn get_file(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>, BrokerError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.with_db(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT content FROM files WHERE tenant = ?1 AND name = ?2",
                    rusqlite::params![tenant, name],
                    |r| r.get::<_, Vec<u8>>(0),
                )
                .optional()?)
        })
        .await
    }

    async fn delete_file(&self, tenant: &str, name: &str) -> Result<bool, BrokerError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.with_db(move |conn| {
            Ok(conn.execute(
                "DELETE FROM files WHERE tenant = ?1 AND name = ?2",
                rusqlite::params![tenant, name],
            )? > 0)
        })
        .await
    }

    async fn list_files(&self, tenant: &str) -> Result<Vec<FileInfo>, BrokerError> {
        let tenant = tenant.to_owned();
        self.with_db(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, size, sha256, created_at FROM files WHERE tenant = ?1 ORDER BY name",
            )?;
            let rows = stmt.query_map(rusqlite::params![tenant], |r| {
                Ok(FileInfo {
                    name: r.get(0)?,
                    size: r.get::<_, i64>(1)?.max(0) as u64,
                    sha256: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn heartbeat(&self, host: &HostInfo, forget_after: Duration) -> Result<(), BrokerError> {
        let info = serde_json::to_string(host).map_err(|e| BrokerError::Storage(e.to_string()))?;
        let (id, last_seen) = (host.id.clone(), host.last_seen);
        let forget_at =
            last_seen.saturating_add(Millis::try_from(forget_after.as_millis()).unwrap_or(Millis::MAX));
        self.with_db(move |conn| {
            let tx = conn.savepoint()?;
            tx.execute(
                "INSERT INTO hosts (id, info, last_seen, forget_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET info = ?2, last_seen = ?3, forget_at = ?4",
                rusqlite::params![id, info, last_seen, forget_at],
            )?;
            tx.execute("DELETE FROM hosts WHERE forget_at < ?1", rusqlite::params![now_ms()])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn hosts(&self) -> Result<Vec<HostInfo>, BrokerError> {
        self.with_db(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT info FROM hosts WHERE forget_at >= ?1 ORDER BY last_seen DESC")?;
            let rows = stmt.query_map(rusqlite::params![now_ms()], |row| row.get::<_, String>(0))?;
            let mut hosts = Vec::new();
            for info in rows {
                if let Ok(host) = serde_json::from_str::<HostInfo>(&info?) {
                    hosts.push(host);
                }
            }
            Ok(hosts)
        })
        .await
    }
}

/// Most calls one transaction of [`EmbeddedBroker::with_db`] carries.
const MAX_GROUP_COMMIT: usize = 64;

/// What a batched call leaves to do once its batch is committed (or not): answer its caller.
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A call waiting for the connection.
type Job = Box<dyn FnOnce(&mut Connection) -> Completion + Send>;

/// Runs a batch of calls in one transaction and answers each after the commit.
fn run_batch(db: &Mutex<Connection>, batch: Vec<Job>) {
    let Ok(mut conn) = db.lock() else {
        // Poisoned by a panic outside a call: nothing can run; the callers hear `gone`.
        return;
    };
    // Without a transaction around them (BEGIN failed), each call's savepoint commits alone.
    let in_transaction = conn.execute_batch("BEGIN IMMEDIATE").is_ok();
    let completions: Vec<Completion> = batch.into_iter().map(|job| job(&mut conn)).collect();
    let committed = if in_transaction {
        conn.execute_batch("COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            format!("sqlite: commit failed: {e}")
        })
    } else {
        Ok(())
    };
    for complete in completions {
        complete(committed.clone());
    }
}

/// Opens and locks `<data_dir>/taskhost.lock`, or says who holds it.
fn lock_data_dir(data_dir: &Path) -> Result<File, BrokerError> {
    let path = data_dir.join(LOCK_FILE);
    let mut file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| {
            BrokerError::Storage(format!("cannot open the lock file {}: {e}", path.display()))
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let holder = match file.read_to_string(&mut holder) {
                Ok(_) if !holder.trim().is_empty() => format!(" (by process {})", holder.trim()),
                _ => String::new(),
            };
            return Err(BrokerError::Storage(format!(
                "{} is locked{holder}: another host is using the data dir {}, and two hosts cannot \
                 share one; stop it or choose another --data-dir",
                path.display(),
                data_dir.display()
            )));
        }
        Err(TryLockError::Error(e)) => {
            return Err(BrokerError::Storage(format!("cannot lock {}: {e}", path.display())));
        }
    }
    // Who holds the lock, for the error above; a failure here costs only that hint.
    let _ = file
        .set_len(0)
        .and_then(|()| std::io::Write::write_all(&mut file, std::process::id().to_string().as_bytes()));
    Ok(file)
}

/// Connection settings: WAL, durable commits, foreign keys.
fn configure(conn: &Connection) -> Result<(), BrokerError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(BrokerError::Storage(format!(
            "sqlite refused write-ahead logging (journal mode is {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

/// Brings the schema up to the latest version.
fn migrate(conn: &mut Connection) -> Result<(), BrokerError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let latest = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > latest {
        return Err(BrokerError::Storage(format!(
            "the database has schema version {version}, newer than this host knows ({latest}): upgrade the host"
        )));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    for (applied, migration) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", i64::try_from(applied + 1).unwrap_or(i64::MAX))?;
    }
    tx.commit()?;
    Ok(())
}

/// Takes back every task left `running` by a previous process (see the module documentation).
/// Returns how many there were.
fn recover_stranded_tasks(conn: &mut Connection) -> Result<usize, BrokerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_ms();
    let stranded = tx
        .prepare("SELECT id, attempts, cancel_requested FROM tasks WHERE status = 'running'")?
        .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, u32>(1)?, row.get::<_, bool>(2)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    for (id, attempts, cancel_requested) in &stranded {
        if *cancel_requested {
            end_task(&tx, id, TaskStatus::Cancelled, &cancelled_while_away(), now)?;
        } else if *attempts >= MAX_DELIVERIES {
            end_task(&tx, id, TaskStatus::Dead, &delivery_count_exceeded(), now)?;
        } else {
            tx.prepare_cached(
                "UPDATE tasks SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = :id",
            )?
            .execute(named_params! {":id": id})?;
        }
    }
    tx.commit()?;
    Ok(stranded.len())
}

/// A row a worker may lease, with what orders it against the others.
struct Candidate {
    id: String,
    status: String,
    attempts: u32,
    cancel_requested: bool,
    tenant: String,
    priority: i64,
    /// When it became runnable: its start time, or when its lapsed lease ran out.
    since: i64,
    rowid: i64,
}

impl Candidate {
    fn from_row(row: &rusqlite::Row) -> rusqlite::Result<Candidate> {
        Ok(Candidate {
            id: row.get("id")?,
            status: row.get("status")?,
            attempts: row.get("attempts")?,
            cancel_requested: row.get("cancel_requested")?,
            tenant: row.get("tenant")?,
            priority: row.get("priority")?,
            since: row.get("since")?,
            rowid: row.get("rowid")?,
        })
    }
}

/// The task a worker leases next in `queues`: the first by priority; within a priority, the
/// tenant with the fewest tasks running for its weight, so one tenant's backlog never holds back
/// another tenant's first task and competing tenants share in their weights; then the longest
/// runnable. A tenant at its quota starts nothing (a lapsed lease of its own is already counted
/// as running, so it may be taken over).
///
/// One query could order every runnable row so, but it sorts the whole backlog on each lease.
/// This walks the waiting tenants of each queue and status (a skip scan of `tasks_waiting`), takes
/// each one's next task from the same index ([`heads_by_priority`]), and compares those few: a
/// handful of index lookups per waiting tenant and priority, whatever the backlog, tasks that
/// start later included.
fn next_candidate(
    conn: &Connection,
    queues: &[String],
    now: Millis,
) -> Result<Option<Candidate>, BrokerError> {
    let mut candidates = Vec::new();
    for queue in queues {
        // Lapsed leases: at most the running tasks of the queue.
        let mut lapsed = conn.prepare_cached(
            "SELECT id, status, attempts, cancel_requested, tenant, priority, lease_expires_at AS since, rowid
             FROM tasks WHERE queue = :queue AND status = 'running' AND lease_expires_at < :now",
        )?;
        for row in lapsed.query_map(named_params! {":queue": queue, ":now": now}, Candidate::from_row)? {
            candidates.push(row?);
        }
        for status in WAITING_STATUSES {
            for tenant in waiting_tenants(conn, queue, status)? {
                // Its first runnable task: the head of its first priority whose head is due.
                match first_head(conn, queue, status, &tenant)? {
                    Some((head, due)) if due <= now => candidates.push(head),
                    Some(_) => {
                        let heads = heads_by_priority(conn, queue, status, &tenant)?;
                        if let Some((head, _)) = heads.into_iter().find(|(_, due)| *due <= now) {
                            candidates.push(head);
                        }
                    }
                    None => {}
                }
            }
        }
    }
    if candidates.is_empty() {
        return Ok(None);
    }
    let mut loads = TenantLoads::new(conn)?;
    let mut best: Option<((i64, f64, i64, i64), Candidate)> = None;
    for candidate in candidates {
        let load = loads.of(&candidate.tenant)?;
        if load.at_quota() && candidate.status != TaskStatus::Running.as_str() {
            continue;
        }
        let key = (
            candidate.priority,
            load.running as f64 / load.weight.max(1) as f64,
            candidate.since,
            candidate.rowid,
        );
        if best.as_ref().is_none_or(|(best_key, _)| key < *best_key) {
            best = Some((key, candidate));
        }
    }
    Ok(best.map(|(_, candidate)| candidate))
}

/// A tenant's running tasks, weight and quota, as a lease weighs them.
#[derive(Clone, Copy)]
struct TenantLoad {
    running: i64,
    weight: i64,
    quota: Option<i64>,
}

impl TenantLoad {
    /// True when the tenant may start nothing more.
    fn at_quota(self) -> bool {
        self.quota.is_some_and(|quota| self.running >= quota)
    }
}

/// Each tenant's [`TenantLoad`], read once per lease or wait.
struct TenantLoads<'c> {
    statement: rusqlite::CachedStatement<'c>,
    read: HashMap<String, TenantLoad>,
}

impl<'c> TenantLoads<'c> {
    fn new(conn: &'c Connection) -> Result<Self, BrokerError> {
        let statement = conn.prepare_cached(
            "SELECT COALESCE((SELECT running FROM tenant_running WHERE tenant = :tenant), 0),
                    COALESCE((SELECT weight FROM tenant_policy WHERE tenant = :tenant), 1),
                    (SELECT quota FROM tenant_policy WHERE tenant = :tenant)",
        )?;
        Ok(TenantLoads { statement, read: HashMap::new() })
    }

    fn of(&mut self, tenant: &str) -> Result<TenantLoad, BrokerError> {
        if let Some(load) = self.read.get(tenant) {
            return Ok(*load);
        }
        let load = self.statement.query_row(named_params! {":tenant": tenant}, |row| {
            Ok(TenantLoad { running: row.get(0)?, weight: row.get(1)?, quota: row.get(2)? })
        })?;
        self.read.insert(tenant.to_owned(), load);
        Ok(load)
    }
}

/// The statuses of a task waiting for a worker.
const WAITING_STATUSES: [&str; 3] = ["queued", "scheduled", "retrying"];

/// The tenants with a task in `queue` with `status` (a skip scan of `tasks_waiting`).
fn waiting_tenants(conn: &Connection, queue: &str, status: &str) -> Result<Vec<String>, BrokerError> {
    let tenants = conn
        .prepare_cached(
            "WITH RECURSIVE waiting (tenant) AS (
                 SELECT (SELECT MIN(tenant) FROM tasks WHERE queue = :queue AND status = :status)
                 UNION ALL
                 SELECT (SELECT MIN(tenant) FROM tasks
                         WHERE queue = :queue AND status = :status AND tenant > waiting.tenant)
                 FROM waiting WHERE waiting.tenant IS NOT NULL
             )
             SELECT tenant FROM waiting WHERE tenant IS NOT NULL",
        )?
        .query_map(named_params! {":queue": queue, ":status": status}, |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(tenants)
}

/// The columns [`head_from_row`] reads: a waiting task as a [`Candidate`], and when it is due
/// (its start time, or 0).
macro_rules! head_columns {
    () => {
        "id, status, attempts, cancel_requested, tenant, priority, \
         COALESCE(not_before, created_at) AS since, rowid, COALESCE(not_before, 0) AS due"
    };
}

fn head_from_row(row: &Row<'_>) -> rusqlite::Result<(Candidate, Millis)> {
    Ok((Candidate::from_row(row)?, row.get("due")?))
}

/// The first task `tenant` has waiting in `queue` with `status`, in the order of `tasks_waiting`
/// (priority, then start or creation time), with the time it is due: the head of its first
/// priority (see [`heads_by_priority`]). One index lookup.
fn first_head(
    conn: &Connection,
    queue: &str,
    status: &str,
    tenant: &str,
) -> Result<Option<(Candidate, Millis)>, BrokerError> {
    let head = conn
        .prepare_cached(concat!(
            "SELECT ",
            head_columns!(),
            " FROM tasks INDEXED BY tasks_waiting
                 WHERE queue = :queue AND status = :status AND tenant = :tenant
                 ORDER BY priority, COALESCE(not_before, created_at), rowid
                 LIMIT 1"
        ))?
        .query_row(named_params! {":queue": queue, ":status": status, ":tenant": tenant}, head_from_row)
        .optional()?;
    Ok(head)
}

/// The first task of each priority (lowest first) that `tenant` has waiting in `queue` with
/// `status`, in the order of `tasks_waiting` (its start time, else its creation time), each with
/// the time it is due (its start time, or 0). Two index lookups per priority, whatever the
/// backlog.
///
/// The head of a priority is due no later than any other task of it: a task with no start time
/// is due at once and sorts by its creation time, which is in the past, so before any task that
/// starts later; and tasks with a start time sort by it. So a priority whose head is not due has
/// nothing due (were the clock to step back, a task with no start time could wait until the
/// head's start time).
fn heads_by_priority(
    conn: &Connection,
    queue: &str,
    status: &str,
    tenant: &str,
) -> Result<Vec<(Candidate, Millis)>, BrokerError> {
    let priorities = conn
        .prepare_cached(
            "WITH RECURSIVE levels (priority) AS (
                 SELECT (SELECT MIN(priority) FROM tasks INDEXED BY tasks_waiting
                         WHERE queue = :queue AND status = :status AND tenant = :tenant)
                 UNION ALL
                 SELECT (SELECT MIN(priority) FROM tasks INDEXED BY tasks_waiting
                         WHERE queue = :queue AND status = :status AND tenant = :tenant
                           AND priority > levels.priority)
                 FROM levels WHERE levels.priority IS NOT NULL
             )
             SELECT priority FROM levels WHERE priority IS NOT NULL",
        )?
        .query_map(named_params! {":queue": queue, ":status": status, ":tenant": tenant}, |row| {
            row.get::<_, i64>(0)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut head = conn.prepare_cached(concat!(
        "SELECT ",
        head_columns!(),
        " FROM tasks INDEXED BY tasks_waiting
         WHERE queue = :queue AND status = :status AND tenant = :tenant AND priority = :priority
         ORDER BY COALESCE(not_before, created_at), rowid
         LIMIT 1"
    ))?;
    let mut heads = Vec::with_capacity(priorities.len());
    for priority in priorities {
        let params =
            named_params! {":queue": queue, ":status": status, ":tenant": tenant, ":priority": priority};
        if let Some(found) = head.query_row(params, head_from_row).optional()? {
            heads.push(found);
        }
    }
    Ok(heads)
}

/// The earliest time at which a task in `queues` becomes runnable: a lease lapsing, or the head
/// of a waiting tenant's priority coming due ([`heads_by_priority`]); tenants at their quota
/// start nothing, so their waiting tasks do not count. The first task found due now ends the
/// search (the answer is then "now"). A few index lookups per waiting tenant and priority: a
/// backlog of tasks that start later costs nothing here.
fn earliest_due(conn: &Connection, queues: &[String]) -> Result<Option<Millis>, BrokerError> {
    let now = now_ms();
    let mut earliest: Option<Millis> = None;
    let mut consider = |due: Millis| earliest = Some(earliest.map_or(due, |e| e.min(due)));
    let mut loads = TenantLoads::new(conn)?;
    for queue in queues {
        let lapse = conn
            .prepare_cached(
                "SELECT MIN(lease_expires_at) FROM tasks
                 WHERE queue = :queue AND status = 'running' AND lease_expires_at IS NOT NULL",
            )?
            .query_row(named_params! {":queue": queue}, |row| row.get::<_, Option<Millis>>(0))?;
        if let Some(lapse) = lapse {
            consider(lapse.saturating_add(1));
        }
        for status in WAITING_STATUSES {
            for tenant in waiting_tenants(conn, queue, status)? {
                if loads.of(&tenant)?.at_quota() {
                    continue;
                }
                match first_head(conn, queue, status, &tenant)? {
                    // Due now: nothing can be sooner than that.
                    Some((_, due)) if due <= now => return Ok(Some(due)),
                    Some(_) => {
                        for (_, due) in heads_by_priority(conn, queue, status, &tenant)? {
                            consider(due);
                        }
                    }
                    None => {}
                }
            }
        }
    }
    Ok(earliest)
}

/// Ends every waiting task whose expiry time passed before it started.
fn expire_stale_tasks(conn: &Connection, now: Millis) -> Result<(), BrokerError> {
    let stale = conn
        .prepare_cached(
            // Without the hint SQLite picks the status index and reads every waiting row on
            // each lease (1 ms per lease with 10,000 waiting); the expiry index reads only those
            // that expired.
            "SELECT id FROM tasks INDEXED BY tasks_by_expiry
             WHERE expires_at IS NOT NULL AND expires_at < :now AND status IN ('queued', 'scheduled')",
        )?
        .query_map(named_params! {":now": now}, |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let error = ErrorInfo {
        kind: "expired".to_owned(),
        message: "its expiry time passed before it started".to_owned(),
    };
    for id in &stale {
        end_task(conn, id, TaskStatus::Expired, &error, now)?;
    }
    Ok(())
}

/// Ends a task that no worker will finish (`expired`, `dead`, `cancelled`) and appends its
/// terminal event.
fn end_task(
    conn: &Connection,
    id: &str,
    status: TaskStatus,
    error: &ErrorInfo,
    now: Millis,
) -> Result<Event, BrokerError> {
    conn.prepare_cached(
        "UPDATE tasks
         SET status = :status, error_kind = :error_kind, error_message = :error_message,
             finished_at = :now, lease_owner = NULL, lease_expires_at = NULL
         WHERE id = :id",
    )?
    .execute(named_params! {
        ":status": status.as_str(),
        ":error_kind": error.kind,
        ":error_message": error.message,
        ":now": now,
        ":id": id,
    })?;
    let event_type = if status == TaskStatus::Cancelled { kind::RUN_CANCELLED } else { kind::RUN_FAILED };
    let event = NewEvent {
        event_type: event_type.to_owned(),
        data: json!({"status": status.as_str(), "error": {"kind": error.kind, "message": error.message}}),
        ts: now,
    };
    append_event(conn, id, &event)
}

fn delivery_count_exceeded() -> ErrorInfo {
    ErrorInfo { kind: "delivery_count_exceeded".to_owned(), message: DELIVERY_COUNT_EXCEEDED.to_owned() }
}

fn cancelled_while_away() -> ErrorInfo {
    ErrorInfo {
        kind: "cancelled".to_owned(),
        message: "cancelled while running; its worker stopped without reporting".to_owned(),
    }
}

/// Appends one event with the task's next sequence id. Call inside a write transaction.
fn append_event(conn: &Connection, task_id: &str, event: &NewEvent) -> Result<Event, BrokerError> {
    let seq: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE task_id = :id")?
        .query_row(named_params! {":id": task_id}, |row| row.get(0))?;
    conn.prepare_cached(
        "INSERT INTO events (task_id, seq, event_type, data, ts) VALUES (:id, :seq, :event_type, :data, :ts)",
    )?
    .execute(named_params! {
        ":id": task_id,
        ":seq": seq,
        ":event_type": event.event_type,
        ":data": event.data.to_string(),
        ":ts": event.ts,
    })?;
    Ok(Event {
        task_id: task_id.to_owned(),
        seq: u64::try_from(seq).unwrap_or(0),
        event_type: event.event_type.clone(),
        data: event.data.clone(),
        ts: event.ts,
    })
}

/// One task by id, restricted to `tenant` when given.
fn get_task(conn: &Connection, id: &str, tenant: Option<&str>) -> Result<Option<TaskRecord>, BrokerError> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE id = :id AND (:tenant IS NULL OR tenant = :tenant)"
        ))?
        .query_row(named_params! {":id": id, ":tenant": tenant}, task_from_row)
        .optional()?)
}

fn task_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    let status: String = row.get("status")?;
    let status = TaskStatus::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            5,
            Type::Text,
            format!("unknown task status {status:?}").into(),
        )
    })?;
    let limits: String = row.get("limits")?;
    let limits: LimitsRequest = serde_json::from_str(&limits)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(15, Type::Text, Box::new(e)))?;
    let error_kind: Option<String> = row.get("error_kind")?;
    let error_message: Option<String> = row.get("error_message")?;
    Ok(TaskRecord {
        id: row.get("id")?,
        tenant: row.get("tenant")?,
        plugin: row.get("plugin")?,
        task_name: row.get("task_name")?,
        queue: row.get("queue")?,
        status,
        priority: Priority::from_rank(row.get("priority")?),
        progress: row.get::<_, f64>("progress")? as f32,
        message: row.get("message")?,
        input: row.get("input")?,
        result: row.get("result")?,
        error: error_kind.map(|kind| ErrorInfo { kind, message: error_message.unwrap_or_default() }),
        attempts: row.get("attempts")?,
        max_retries: row.get("max_retries")?,
        limits,
        created_at: row.get("created_at")?,
        started_at: row.get("started_at")?,
        finished_at: row.get("finished_at")?,
        not_before: row.get("not_before")?,
        expires_at: row.get("expires_at")?,
        cancel_requested: row.get("cancel_requested")?,
        files: serde_json::from_str(&row.get::<_, String>("files")?)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(22, Type::Text, Box::new(e)))?,
    })
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let data: String = row.get("data")?;
    Ok(Event {
        task_id: row.get("task_id")?,
        seq: u64::try_from(row.get::<_, i64>("seq")?).unwrap_or(0),
        event_type: row.get("event_type")?,
        data: serde_json::from_str(&data)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, Type::Text, Box::new(e)))?,
        ts: row.get("ts")?,
    })
}

/// The owned parts of a lease's fence, for a closure on the blocking pool.
fn fence_of(lease: &Lease) -> (String, u32, String) {
    (lease.task.id.clone(), lease.attempt, lease.worker.clone())
}

fn duration_ms(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// A row read a moment ago inside the same transaction is gone: only a corrupt store does that.
fn vanished(id: &str) -> BrokerError {
    BrokerError::Storage(format!("task {id} vanished inside a transaction"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str) -> NewTask {
        crate::queue::test_task(id)
    }

    fn queues() -> Vec<String> {
        vec!["default".to_owned()]
    }

    const HOUR: Duration = Duration::from_secs(3600);

    /// Runs `sql` on the broker's connection, as a test's back door.
    fn poke(broker: &EmbeddedBroker, sql: &str) {
        broker.db.lock().unwrap().execute_batch(sql).unwrap();
    }

    #[tokio::test]
    async fn the_store_is_one_versioned_wal_file_that_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let broker = EmbeddedBroker::open(dir.path()).unwrap();
        broker.submit(task("t")).await.unwrap();
        {
            let conn = broker.db.lock().unwrap();
            let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
            assert_eq!(mode, "wal");
            let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
            assert_eq!(version, MIGRATIONS.len() as i64);
        }
        assert!(dir.path().join(DATABASE_FILE).is_file());
        assert!(dir.path().join(LOCK_FILE).is_file());
        drop(broker);

        let broker = EmbeddedBroker::open(dir.path()).unwrap();
        assert_eq!(broker.get(None, "t").await.unwrap().unwrap().status, TaskStatus::Queued);
    }

    #[tokio::test]
    async fn a_store_from_a_newer_host_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let broker = EmbeddedBroker::open(dir.path()).unwrap();
        poke(&broker, "PRAGMA user_version = 99");
        drop(broker);
        let Err(error) = EmbeddedBroker::open(dir.path()) else { panic!("opened a newer schema") };
        assert!(error.to_string().contains("schema version 99"), "{error}");
    }

    #[tokio::test]
    async fn a_second_open_names_the_locked_file() {
        let dir = tempfile::tempdir().unwrap();
        let _first = EmbeddedBroker::open(dir.path()).unwrap();
        let Err(error) = EmbeddedBroker::open(dir.path()) else { panic!("two brokers on one data dir") };
        let message = error.to_string();
        assert!(message.contains(&dir.path().join(LOCK_FILE).display().to_string()), "{message}");
        assert!(message.contains(&format!("by process {}", std::process::id())), "{message}");
    }

    #[tokio::test]
    async fn open_requeues_a_task_left_running_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let broker = EmbeddedBroker::open(dir.path()).unwrap();
        broker.submit(task("t")).await.unwrap();
        let lease = broker.lease("old", &queues(), HOUR).await.unwrap().unwrap();
        broker.set_progress(&lease, 50.0, "half").await.unwrap();
        drop(broker);

        let broker = EmbeddedBroker::open(dir.path()).unwrap();
        let task = broker.get(None, "t").await.unwrap().unwrap();
        assert_eq!((task.status, task.attempts), (TaskStatus::Queued, 1));
        // Not after the hour-long lease lapses: now.
        let again = broker.lease("new", &queues(), HOUR).await.unwrap().expect("runnable at once");
        assert_eq!(again.attempt, 2);
        assert_eq!(again.task.progress, 0.0, "a new attempt starts its progress afresh");
    }

    #[tokio::test]
    async fn open_ends_running_tasks_that_were_delivered_too_often_or_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let broker = EmbeddedBroker::open(dir.path()).unwrap();
        for id in ["crashy", "cancelled", "fine"] {
            broker.submit(task(id)).await.unwrap();
            broker.lease("old", &queues(), HOUR).await.unwrap().unwrap();
        }
        poke(&broker, &format!("UPDATE tasks SET attempts = {MAX_DELIVERIES} WHERE id = 'crashy'"));
        poke(&broker, &format!("UPDATE tasks SET attempts = {} WHERE id = 'fine'", MAX_DELIVERIES - 1));
        poke(&broker, "UPDATE tasks SET cancel_requested = 1 WHERE id = 'cancelled'");
        drop(broker);

        let broker = EmbeddedBroker::open(dir.path()).unwrap();
        let crashy = broker.get(None, "crashy").await.unwrap().unwrap();
        assert_eq!(crashy.status, TaskStatus::Dead);
        assert_eq!(crashy.error.as_ref().map(|e| e.message.as_str()), Some(DELIVERY_COUNT_EXCEEDED));
        assert!(crashy.finished_at.is_some());
        let events = broker.events_since("crashy", 0, 0).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, kind::RUN_FAILED);
        assert_eq!(events[0].data["status"], "dead");

        let cancelled = broker.get(None, "cancelled").await.unwrap().unwrap();
        assert_eq!(cancelled.status, TaskStatus::Cancelled);
        let events = broker.events_since("cancelled", 0, 0).await.unwrap();
        assert_eq!(events[0].event_type, kind::RUN_CANCELLED);

        let fine = broker.lease("new", &queues(), HOUR).await.unwrap().expect("the last delivery");
        assert_eq!((fine.task.id.as_str(), fine.attempt), ("fine", MAX_DELIVERIES));
        assert!(broker.lease("new", &queues(), HOUR).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_task_whose_leases_keep_lapsing_goes_dead() {
        let dir = tempfile::tempdir().unwrap();
        let broker = EmbeddedBroker::open(dir.path()).unwrap();
        broker.submit(task("hangs")).await.unwrap();
        broker.submit(NewTask { priority: Priority::Low, ..task("next") }).await.unwrap();
        for attempt in 1..=MAX_DELIVERIES {
            let lease = broker.lease("w", &queues(), Duration::ZERO).await.unwrap().unwrap();
            assert_eq!((lease.task.id.as_str(), lease.attempt), ("hangs", attempt));
            // The lease lapses once the clock moves past it.
            let leased_at = now_ms();
            while now_ms() <= leased_at {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let lease = broker.lease("w", &queues(), HOUR).await.unwrap().expect("the next task");
        assert_eq!(lease.task.id, "next", "the dead task is skipped in the same lease");
        let hangs = broker.get(None, "hangs").await.unwrap().unwrap();
        assert_eq!(hangs.status, TaskStatus::Dead);
        assert_eq!(hangs.attempts, MAX_DELIVERIES);
        assert_eq!(hangs.error.unwrap().message, DELIVERY_COUNT_EXCEEDED);
        assert_eq!(broker.queue_stats(None).await.unwrap()[0].dead, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_committed_together_fail_alone_and_what_was_acknowledged_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(EmbeddedBroker::open(dir.path()).unwrap());
        let calls: Vec<_> = (0..40)
            .map(|i| {
                let broker = broker.clone();
                tokio::spawn(async move {
                    if i % 10 == 5 {
                        // Writes, then fails: its write must not be committed with the others.
                        let failed = broker
                            .with_db(move |conn| {
                                let sp = conn.savepoint()?;
                                sp.execute(
                                    "INSERT INTO hosts (id, info, last_seen, forget_at) VALUES (?1, '{}', 0, 0)",
                                    [format!("ghost-{i}")],
                                )?;
                                Err::<(), _>(BrokerError::Storage("failed on purpose".to_owned()))
                            })
                            .await;
                        assert!(failed.is_err());
                    } else {
                        broker.submit(task(&format!("t{i}"))).await.unwrap();
                    }
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        let panicked = broker.with_db(|_| -> Result<(), BrokerError> { panic!("a bug in a call") }).await;
        assert!(matches!(&panicked, Err(BrokerError::Storage(m)) if m.contains("panicked")), "{panicked:?}");
        broker.submit(task("after")).await.expect("the connection serves on after a panic");
        drop(broker);

        let broker = EmbeddedBroker::open(dir.path()).unwrap();
        for i in (0..40).filter(|i| i % 10 != 5) {
            assert!(
                broker.get(None, &format!("t{i}")).await.unwrap().is_some(),
                "t{i} was acknowledged, then lost"
            );
        }
        assert!(broker.get(None, "after").await.unwrap().is_some());
        let ghosts: i64 =
            broker.db.lock().unwrap().query_row("SELECT COUNT(*) FROM hosts", [], |r| r.get(0)).unwrap();
        assert_eq!(ghosts, 0, "a failed call's write was committed");
    }

    #[tokio::test]
    async fn queue_stats_list_every_queue_but_count_only_tasks_not_finished() {
        let dir = tempfile::tempdir().unwrap();
        let broker = EmbeddedBroker::open(dir.path()).unwrap();
        broker.submit(task("done")).await.unwrap();
        broker.submit(NewTask { queue: "other".to_owned(), ..task("waiting") }).await.unwrap();
        broker
            .submit(NewTask { tenant: "globex".to_owned(), queue: "third".to_owned(), ..task("theirs") })
            .await
            .unwrap();
        let lease = broker.lease("w", &queues(), HOUR).await.unwrap().unwrap();
        let event = NewEvent::new(kind::RUN_COMPLETED, serde_json::json!({}));
        broker.finish(&lease, Finish::Succeeded { result: "null".to_owned() }, event).await.unwrap();

        let counts = |stats: Vec<QueueStats>| -> Vec<(String, u64, u64)> {
            stats.into_iter().map(|q| (q.queue, q.pending, q.running)).collect()
        };
        // A queue whose tasks all finished is still listed, with nothing in it.
        assert_eq!(
            counts(broker.queue_stats(None).await.unwrap()),
            [("default".to_owned(), 0, 0), ("other".to_owned(), 1, 0), ("third".to_owned(), 1, 0)]
        );
        // A tenant sees the queues it has tasks in, counted over its own tasks.
        let tenant = crate::queue::test_task("x").tenant;
        assert_eq!(
            counts(broker.queue_stats(Some(&tenant)).await.unwrap()),
            [("default".to_owned(), 0, 0), ("other".to_owned(), 1, 0)]
        );
        assert_eq!(counts(broker.queue_stats(Some("globex")).await.unwrap()), [("third".to_owned(), 1, 0)]);
        assert!(broker.queue_stats(Some("nobody")).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn tasks_that_start_later_neither_hide_a_due_task_nor_the_next_start_time() {
        let dir = tempfile::tempdir().unwrap();
        let broker = EmbeddedBroker::open(dir.path()).unwrap();
        let now = now_ms();
        let hour = 3_600_000;
        // A high-priority backlog that starts in an hour, and a low-priority task in a minute.
        for i in 0..300 {
            let later = NewTask {
                priority: Priority::High,
                not_before: Some(now + hour + i),
                ..task(&format!("later-{i}"))
            };
            broker.submit(later).await.unwrap();
        }
        let soon = NewTask { priority: Priority::Low, not_before: Some(now + 60_000), ..task("in-a-minute") };
        broker.submit(soon).await.unwrap();
        assert!(broker.lease("w", &queues(), HOUR).await.unwrap().is_none(), "nothing is due yet");
        assert_eq!(broker.next_due(&queues()).await.unwrap(), Some(now + 60_000));

        // A task due now, behind the backlog by priority, is due and leased at once.
        broker.submit(NewTask { priority: Priority::Low, ..task("now") }).await.unwrap();
        assert!(broker.next_due(&queues()).await.unwrap().is_some_and(|due| due <= now_ms()));
        let lease = broker.lease("w", &queues(), HOUR).await.unwrap().unwrap();
        assert_eq!(lease.task.id, "now");

        // At its quota, a tenant's waiting tasks are not due: its running task's lease is next.
        let quota = TenantPolicy { tenant: lease.task.tenant.clone(), weight: 1, concurrent_tasks: Some(1) };
        broker.set_tenant_policies(&queues(), &[quota]).await.unwrap();
        broker.submit(task("waits-for-a-slot")).await.unwrap();
        let due = broker.next_due(&queues()).await.unwrap().unwrap();
        assert!(due > now + 60_000, "due at {due}, {} ms from now", due - now_ms());
        assert!(broker.lease("w", &queues(), HOUR).await.unwrap().is_none());

        // Another tenant's task is due at once all the same.
        broker.submit(NewTask { tenant: "globex".to_owned(), ..task("theirs") }).await.unwrap();
        assert!(broker.next_due(&queues()).await.unwrap().is_some_and(|due| due <= now_ms()));
        assert_eq!(broker.lease("w", &queues(), HOUR).await.unwrap().unwrap().task.id, "theirs");
    }

    #[tokio::test]
    async fn a_due_retry_behind_a_priority_whose_retries_all_wait_is_leased() {
        let dir = tempfile::tempdir().unwrap();
        let broker = EmbeddedBroker::open(dir.path()).unwrap();
        let now = now_ms();
        broker.submit(NewTask { priority: Priority::High, ..task("backs-off") }).await.unwrap();
        broker.submit(NewTask { priority: Priority::High, ..task("backs-off-longer") }).await.unwrap();
        broker.submit(NewTask { priority: Priority::Low, ..task("due-again") }).await.unwrap();
        // Retries waiting out their backoff, as a failed attempt leaves them.
        poke(
            &broker,
            &format!(
                "UPDATE tasks SET status = 'retrying', attempts = 1, not_before = {}
                     WHERE id = 'backs-off';
                 UPDATE tasks SET status = 'retrying', attempts = 1, not_before = {}
                     WHERE id = 'backs-off-longer';
                 UPDATE tasks SET status = 'retrying', attempts = 1, not_before = {}
                     WHERE id = 'due-again';",
                now + 60_000,
                now + 120_000,
                now - 1
            ),
        );
        assert!(broker.next_due(&queues()).await.unwrap().is_some_and(|due| due <= now_ms()));
        assert_eq!(broker.lease("w", &queues(), HOUR).await.unwrap().unwrap().task.id, "due-again");
        assert!(broker.lease("w", &queues(), HOUR).await.unwrap().is_none());
        assert_eq!(broker.next_due(&queues()).await.unwrap(), Some(now + 60_000));
    }

    #[tokio::test]
    async fn a_due_scheduled_task_reads_as_queued_after_a_lease() {
        let dir = tempfile::tempdir().unwrap();
        let broker = EmbeddedBroker::open(dir.path()).unwrap();
        let submitted =
            broker.submit(NewTask { not_before: Some(now_ms() + 20), ..task("t") }).await.unwrap();
        assert_eq!(submitted.task.status, TaskStatus::Scheduled);
        poke(&broker, "UPDATE tasks SET not_before = 0");
        assert!(broker.lease("w", &["elsewhere".to_owned()], HOUR).await.unwrap().is_none());
        assert_eq!(broker.get(None, "t").await.unwrap().unwrap().status, TaskStatus::Queued);
    }

    #[tokio::test]
    async fn a_corrupt_row_is_a_storage_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let broker = EmbeddedBroker::open(dir.path()).unwrap();
        broker.submit(task("t")).await.unwrap();
        poke(&broker, "UPDATE tasks SET status = 'bogus', limits = 'not json'");
        let error = broker.get(None, "t").await.unwrap_err();
        assert!(matches!(error, BrokerError::Storage(_)), "{error:?}");
    }

    #[tokio::test]
    async fn waiting_ends_at_the_timeout_when_nothing_comes() {
        let dir = tempfile::tempdir().unwrap();
        let broker = EmbeddedBroker::open(dir.path()).unwrap();
        broker.submit(NewTask { not_before: Some(now_ms() + 60_000), ..task("later") }).await.unwrap();
        let started = std::time::Instant::now();
        broker.wait_for_work(&queues(), Duration::from_millis(50)).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(45) && waited < Duration::from_secs(5), "{waited:?}");
    }
}
