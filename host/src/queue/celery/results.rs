//! Celery results: what Celery-originated tasks report, written where `AsyncResult` reads it, and
//! the workflow steps that follow a task sent on as Celery messages.
//!
//! The writer follows the host's [`EventHub`](crate::events::EventHub) (every event stored on
//! this host) and keeps only the events of tasks that have a Celery record ([`TaskInfo`]; looked
//! up once per task, batched, and cached). It works in batches: whatever events are waiting are
//! taken at once, each task's last state in the batch wins (a PROGRESS and the SUCCESS after it in
//! one batch write SUCCESS only), and the writes of a batch go out in one script call.
//!
//! | event | Celery state | meta (`result`) |
//! | --- | --- | --- |
//! | `run_started` | STARTED, once the task has run [`CelerySettings::started_after`] without another state written | `{"pid", "hostname"}` |
//! | `progress_update`, `metrics_update` | PROGRESS | `{"progress": percent, ...}` with the fields of the latest of each, at most every [`CelerySettings::progress_interval`] per task |
//! | `run_retrying` | RETRY | the exception |
//! | `run_completed` | SUCCESS | the result |
//! | `run_failed` | FAILURE (REVOKED when expired) | `{"exc_type", "exc_message", "exc_module"}` |
//! | `run_cancelled` | REVOKED | `TaskRevokedError('terminated' or 'revoked')` |
//!
//! STARTED is held back for a short while: Celery writes it only with `task_track_started`, and a
//! task that ends sooner goes straight to its final state, which saves a result write (and a
//! message to every waiting client) per short task. A task that runs longer shows STARTED as
//! before.
//!
//! Each write is, atomically: `GET` (a SUCCESS is never overwritten, and a finished task never
//! goes back to PROGRESS), `SETEX`, `PUBLISH`, and for a final state `ZREM` from the in-flight set.
//! That is Celery's `GET` + `MULTI(SETEX, PUBLISH)` without the gap between them, and the `ZREM`
//! decides who sends the follow-ups (a chain's next step, `link` callbacks on success, `link_error`
//! errbacks on failure): only the writer that removed the id does. The writer does the writes of
//! a batch in one script call ([`write_batch`]), up to [`WRITES_PER_CALL`] at a time.
//!
//! The reconciler covers what no event shows on a host running the ingress: a task that expired
//! or was cancelled while it waited, one that ended on a host without `--celery`, events lost by a
//! writer that fell behind. One host at a time (a lock with a TTL) walks the in-flight ids that
//! are due, reads each task's record, writes the final state of those that ended a while ago, and
//! checks the others again later.
//!
//! [`CelerySettings::progress_interval`]: super::CelerySettings::progress_interval
//! [`CelerySettings::started_after`]: super::CelerySettings::started_after

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use redis::Pipeline;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio_util::sync::CancellationToken;

use super::protocol::{self, OutgoingTask, Signature, State};
use super::{DEFAULT_CELERY_QUEUE, Shared, TaskInfo, control, ms};
use crate::events::{LiveEvent, kind};
use crate::queue::{Millis, TaskRecord, TaskStatus, now_ms};

/// Writes a result the way Celery's Redis backend does, atomically. KEYS: result key, in-flight
/// set. ARGV: meta JSON, expiry seconds, task id, '1' for a final state, '1' to store (not
/// `ignore_result`). Returns 1 when this write took the id out of the in-flight set.
const WRITE_RESULT: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' then
    if meta['status'] == 'SUCCESS' then
      if ARGV[4] == '1' then redis.call('ZREM', KEYS[2], ARGV[3]) end
      return 0
    end
    if ARGV[4] ~= '1' and (meta['status'] == 'FAILURE' or meta['status'] == 'REVOKED') then
      return 0
    end
  end
end
local claimed = 1
if ARGV[4] == '1' then claimed = redis.call('ZREM', KEYS[2], ARGV[3]) end
if ARGV[5] == '1' then
  redis.call('SETEX', KEYS[1], ARGV[2], ARGV[1])
  redis.call('PUBLISH', KEYS[1], ARGV[1])
end
return claimed
";

/// [`WRITE_RESULT`] for many writes at once. KEYS: the in-flight set, then one result key per
/// write. ARGV: expiry seconds, then per write: meta JSON, task id, '1' for a final state, '1' to
/// store. Returns per write 1 when it took the id out of the in-flight set.
const WRITE_RESULTS: &str = r"
local claimed = {}
for i = 2, #KEYS do
  local a = (i - 2) * 4 + 2
  local meta, id, final, store = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local result = nil
  local current = redis.call('GET', KEYS[i])
  if current then
    local ok, m = pcall(cjson.decode, current)
    if ok and type(m) == 'table' then
      if m['status'] == 'SUCCESS' then
        if final == '1' then redis.call('ZREM', KEYS[1], id) end
        result = 0
      elseif final ~= '1' and (m['status'] == 'FAILURE' or m['status'] == 'REVOKED') then
        result = 0
      end
    end
  end
  if result == nil then
    result = 1
    if final == '1' then result = redis.call('ZREM', KEYS[1], id) end
    if store == '1' then
      redis.call('SETEX', KEYS[i], ARGV[1], meta)
      redis.call('PUBLISH', KEYS[i], meta)
    end
  end
  claimed[#claimed + 1] = result
end
return claimed
";

static WRITE_RESULTS_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(WRITE_RESULTS));

/// Most writes in one call of the batch script (a call blocks Redis while it runs).
pub const WRITES_PER_CALL: usize = 128;

/// Most events handled in one batch.
const BATCH_EVENTS: usize = 1024;

/// Most in-flight ids the reconciler looks at per round.
const RECONCILE_BATCH: isize = 200;

/// One write of a task's Celery state.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultWrite {
    /// Task id.
    pub task_id: String,
    /// State.
    pub state: State,
    /// The meta's `result`.
    pub result: Value,
    /// The meta's `traceback`.
    pub traceback: Option<String>,
    /// False for `ignore_result` tasks (the write then only settles the in-flight entry).
    pub store: bool,
}

impl ResultWrite {
    /// A write of `state` with `result`.
    pub fn ready(task_id: &str, state: State, result: Value, store: bool) -> Self {
        ResultWrite { task_id: task_id.to_owned(), state, result, traceback: None, store }
    }
}

impl ResultWrite {
    /// The result record Celery keeps for this write, as of `now`.
    fn meta(&self, now: Millis) -> String {
        protocol::result_meta(self.state, &self.task_id, self.result.clone(), self.traceback.as_deref(), now)
    }
}

/// Adds the script of one write to `pipe`; its reply is 1 when the write settled the task.
pub fn add_write(pipe: &mut Pipeline, shared: &Shared, write: &ResultWrite, now: Millis) {
    let meta = write.meta(now);
    pipe.cmd("EVAL")
        .arg(WRITE_RESULT)
        .arg(2)
        .arg(protocol::result_key(&write.task_id))
        .arg(shared.keys.inflight())
        .arg(meta)
        .arg(shared.config.result_expires.as_secs().max(1))
        .arg(&write.task_id)
        .arg(u8::from(write.state.is_ready()))
        .arg(u8::from(write.store));
}

/// Does `writes` with `WRITE_RESULTS`, `WRITES_PER_CALL` per call; returns for each write
/// whether it settled the task (took it out of the in-flight set).
pub async fn write_batch(
    shared: &Shared,
    writes: &[ResultWrite],
    now: Millis,
) -> redis::RedisResult<Vec<bool>> {
    let mut conn = shared.conn.clone();
    let mut claimed = Vec::with_capacity(writes.len());
    for chunk in writes.chunks(WRITES_PER_CALL) {
        let mut invocation = WRITE_RESULTS_SCRIPT.key(shared.keys.inflight());
        invocation.arg(shared.config.result_expires.as_secs().max(1));
        for write in chunk {
            let meta = write.meta(now);
            invocation
                .key(protocol::result_key(&write.task_id))
                .arg(meta)
                .arg(&write.task_id)
                .arg(u8::from(write.state.is_ready()))
                .arg(u8::from(write.store));
        }
        let replies: Vec<i64> = invocation.invoke_async(&mut conn).await?;
        claimed.extend(replies.into_iter().map(|c| c == 1));
    }
    Ok(claimed)
}

/// How a task ended, for its follow-ups.
#[derive(Debug, Clone)]
enum Ending {
    /// With this result: the chain goes on and callbacks run.
    Success(Value),
    /// With an error: errbacks run.
    Failure,
    /// Revoked: nothing follows.
    Revoked,
}

/// A task the writer is following.
struct Tracked {
    info: Arc<TaskInfo>,
    /// PROGRESS meta: `progress` and the latest fields of progress and metrics events.
    meta: Map<String, Value>,
    last_progress_write: Option<Instant>,
    dirty: bool,
    started: bool,
    /// When it started, while its STARTED is held back (cleared once any state is written).
    started_pending: Option<Instant>,
    /// Its last event here (a task that ended on another host is forgotten after a while).
    last_event: Instant,
}

/// The writer's state between batches.
#[derive(Default)]
struct Writer {
    /// Celery record per task id (`None`: not a Celery task).
    known: HashMap<String, Option<Arc<TaskInfo>>>,
    tracked: HashMap<String, Tracked>,
}

/// Most task ids the writer remembers the origin of before it forgets them all.
const KNOWN_LIMIT: usize = 100_000;

/// A followed task silent for this long (it ended elsewhere, or its end was missed and is left to
/// the reconciler) is forgotten.
const FORGET_SILENT_AFTER: Duration = Duration::from_secs(3600);

fn relevant(event_type: &str) -> bool {
    matches!(
        event_type,
        kind::RUN_STARTED
            | kind::PROGRESS_UPDATE
            | "metrics_update"
            | kind::RUN_RETRYING
            | kind::RUN_COMPLETED
            | kind::RUN_FAILED
            | kind::RUN_CANCELLED
    )
}

/// Follows `events` and writes Celery results until `stop`; then handles what is already waiting.
pub async fn write_results(
    shared: Arc<Shared>,
    mut events: broadcast::Receiver<Arc<LiveEvent>>,
    stop: CancellationToken,
) {
    let mut writer = Writer::default();
    let settings = &shared.config.settings;
    let mut tick = tokio::time::interval(
        settings.progress_interval.min(settings.started_after / 2).max(Duration::from_millis(10)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut batch = Vec::new();
        let stopping = tokio::select! {
            received = events.recv() => {
                match received {
                    Ok(event) => batch.push(event),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "Celery results: fell behind the events; the reconciler will write what was missed");
                    }
                    Err(RecvError::Closed) => return,
                }
                false
            }
            _ = tick.tick() => false,
            _ = stop.cancelled() => true,
        };
        while batch.len() < BATCH_EVENTS {
            match events.try_recv() {
                Ok(event) => batch.push(event),
                Err(TryRecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "Celery results: fell behind the events; the reconciler will write what was missed"
                    );
                }
                Err(_) => break,
            }
        }
        batch.retain(|e| relevant(&e.event_type));
        if let Err(error) = writer.handle(&shared, batch).await {
            tracing::warn!(%error, "Celery results: writing failed; the reconciler will retry the final states");
        }
        if stopping {
            return;
        }
    }
}

impl Writer {
    /// Looks up the Celery records of ids not seen before.
    async fn learn(&mut self, shared: &Shared, batch: &[Arc<LiveEvent>]) -> redis::RedisResult<()> {
        let mut unknown: Vec<&str> =
            batch.iter().map(|e| e.task_id.as_str()).filter(|id| !self.known.contains_key(*id)).collect();
        unknown.sort_unstable();
        unknown.dedup();
        if unknown.is_empty() {
            return Ok(());
        }
        if self.known.len() + unknown.len() > KNOWN_LIMIT {
            self.known.retain(|id, _| self.tracked.contains_key(id));
        }
        // Tasks this host's ingress submitted: their records are at hand.
        unknown.retain(|id| match shared.take_ingested(id) {
            Some(info) => {
                self.known.insert((*id).to_owned(), Some(info));
                false
            }
            None => true,
        });
        if unknown.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = unknown.iter().map(|id| shared.keys.task(id)).collect();
        let mut conn = shared.conn.clone();
        let records: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        for (id, record) in unknown.into_iter().zip(records) {
            let info = record.and_then(|r| serde_json::from_str::<TaskInfo>(&r).ok()).map(Arc::new);
            self.known.insert(id.to_owned(), info);
        }
        Ok(())
    }

    async fn handle(&mut self, shared: &Shared, batch: Vec<Arc<LiveEvent>>) -> redis::RedisResult<()> {
        self.learn(shared, &batch).await?;
        let now = now_ms();
        let interval = shared.config.settings.progress_interval;
        // Each task's last write in this batch, in order of first appearance.
        let mut writes: Vec<ResultWrite> = Vec::new();
        let mut slot: HashMap<String, usize> = HashMap::new();
        let mut endings: HashMap<String, (Arc<TaskInfo>, Ending)> = HashMap::new();
        let mut flower = Vec::new();
        let mut put = |write: ResultWrite, writes: &mut Vec<ResultWrite>| match slot.get(&write.task_id) {
            Some(&i) => writes[i] = write,
            None => {
                slot.insert(write.task_id.clone(), writes.len());
                writes.push(write);
            }
        };
        for event in &batch {
            let Some(Some(info)) = self.known.get(&event.task_id).cloned() else { continue };
            let id = event.task_id.as_str();
            let store = !info.ignore_result;
            let tracked = self.tracked.entry(id.to_owned()).or_insert_with(|| Tracked {
                info: info.clone(),
                meta: Map::new(),
                last_progress_write: None,
                dirty: false,
                started: false,
                started_pending: None,
                last_event: Instant::now(),
            });
            tracked.last_event = Instant::now();
            match event.event_type.as_str() {
                kind::RUN_STARTED => {
                    tracked.started = true;
                    tracked.started_pending = Some(Instant::now());
                    flower.extend(control::task_event(shared, "task-started", id, json!({})));
                }
                kind::PROGRESS_UPDATE | "metrics_update" => {
                    if let Value::Object(data) = &event.data {
                        for (k, v) in data {
                            tracked.meta.insert(k.clone(), v.clone());
                        }
                        if event.event_type == kind::PROGRESS_UPDATE
                            && !data.contains_key("progress")
                            && let Some(percent) = data.get("percent")
                        {
                            tracked.meta.insert("progress".into(), percent.clone());
                        }
                    }
                    tracked.dirty = true;
                    if tracked.last_progress_write.is_none_or(|t| t.elapsed() >= interval) {
                        tracked.dirty = false;
                        tracked.started_pending = None;
                        tracked.last_progress_write = Some(Instant::now());
                        let meta = Value::Object(tracked.meta.clone());
                        put(ResultWrite::ready(id, State::Progress, meta, store), &mut writes);
                    }
                }
                kind::RUN_RETRYING => {
                    let (exception, traceback) = exception_of(&event.data);
                    flower.extend(control::task_event(
                        shared,
                        "task-retried",
                        id,
                        json!({"exception": exception.repr(), "traceback": traceback}),
                    ));
                    let mut write = ResultWrite::ready(id, State::Retry, exception.to_value(), store);
                    write.traceback = Some(traceback);
                    tracked.started_pending = None;
                    put(write, &mut writes);
                }
                _ => {
                    let started = tracked.started;
                    self.tracked.remove(id);
                    let (mut write, ending, flower_event) = match event.event_type.as_str() {
                        kind::RUN_COMPLETED => {
                            let result = match event.data.get("result") {
                                Some(result) => result.clone(),
                                // Results over the inline limit are only in the record.
                                None => stored_result(shared, id).await,
                            };
                            let runtime =
                                event.data.get("duration_ms").and_then(Value::as_f64).unwrap_or(0.0) / 1000.0;
                            let flower_event = if shared.task_events() {
                                json!({"result": truncate(result.to_string(), 1024), "runtime": runtime})
                            } else {
                                Value::Null
                            };
                            (
                                ResultWrite::ready(id, State::Success, result.clone(), store),
                                Ending::Success(result),
                                flower_event,
                            )
                        }
                        kind::RUN_CANCELLED => {
                            revoked(id, if started { "terminated" } else { "revoked" }, store)
                        }
                        _ if is_expiry(&event.data) => revoked(id, "expired", store),
                        _ => {
                            let (exception, traceback) = exception_of(&event.data);
                            let flower_event = json!({"exception": exception.repr(), "traceback": traceback});
                            let mut write =
                                ResultWrite::ready(id, State::Failure, exception.to_value(), store);
                            write.traceback = Some(traceback);
                            (write, Ending::Failure, flower_event)
                        }
                    };
                    let event_type = match ending {
                        Ending::Success(_) => "task-succeeded",
                        Ending::Failure => "task-failed",
                        Ending::Revoked => "task-revoked",
                    };
                    flower.extend(control::task_event(shared, event_type, id, flower_event));
                    write.store = store;
                    put(write, &mut writes);
                    endings.insert(id.to_owned(), (info, ending));
                }
            }
        }
        if self.tracked.len() > 1000 {
            self.tracked.retain(|_, t| t.last_event.elapsed() < FORGET_SILENT_AFTER);
        }
        // PROGRESS held back by the interval, and STARTED held back, now due.
        let started_after = shared.config.settings.started_after;
        for (id, tracked) in &mut self.tracked {
            if tracked.started_pending.is_some_and(|t| t.elapsed() >= started_after) {
                tracked.started_pending = None;
                let meta = json!({"pid": std::process::id(), "hostname": shared.nodename()});
                put(ResultWrite::ready(id, State::Started, meta, !tracked.info.ignore_result), &mut writes);
            }
            if tracked.dirty && tracked.last_progress_write.is_none_or(|t| t.elapsed() >= interval) {
                tracked.dirty = false;
                tracked.started_pending = None;
                tracked.last_progress_write = Some(Instant::now());
                let meta = Value::Object(tracked.meta.clone());
                put(ResultWrite::ready(id, State::Progress, meta, !tracked.info.ignore_result), &mut writes);
            }
        }
        if writes.is_empty() && flower.is_empty() {
            return Ok(());
        }
        let claimed = write_batch(shared, &writes, now).await?;
        let mut conn = shared.conn.clone();
        let mut pipe = redis::pipe();
        let mut follow = false;
        for (write, claimed) in writes.iter().zip(claimed) {
            let Some((info, ending)) = endings.get(&write.task_id) else { continue };
            shared.stats.finished(&info.name);
            if claimed {
                for (list, message) in follow_ups(shared, &write.task_id, info, ending) {
                    pipe.cmd("LPUSH").arg(list).arg(message).ignore();
                    follow = true;
                }
            }
        }
        if let Some((channel, payload)) = control::task_events_message(shared, &flower) {
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
            follow = true;
        }
        if follow {
            pipe.query_async::<()>(&mut conn).await?;
        }
        Ok(())
    }
}

fn revoked(id: &str, reason: &str, store: bool) -> (ResultWrite, Ending, Value) {
    (
        ResultWrite::ready(id, State::Revoked, protocol::revoked_exception(reason).to_value(), store),
        Ending::Revoked,
        json!({"terminated": reason == "terminated", "signum": null, "expired": reason == "expired"}),
    )
}

fn is_expiry(data: &Value) -> bool {
    data["status"] == "expired" || data["error"]["kind"] == "expired"
}

/// The exception and traceback text of a failure event's `error`.
fn exception_of(data: &Value) -> (protocol::Exception, String) {
    let kind = data["error"]["kind"].as_str().unwrap_or("host_error");
    let message = data["error"]["message"].as_str().unwrap_or("the task failed");
    let exception = protocol::exception_for(kind, message);
    let traceback = format!("taskhost: the task ended with {kind}: {message}");
    (exception, traceback)
}

fn truncate(mut s: String, limit: usize) -> String {
    if s.len() > limit {
        let mut cut = limit;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// A finished task's result from its record (for results too large to ride in the event).
async fn stored_result(shared: &Shared, id: &str) -> Value {
    match shared.broker.get(None, id).await {
        Ok(Some(record)) => {
            record.result.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or(Value::Null)
        }
        _ => Value::Null,
    }
}

/// The Celery queue a follow-up goes to when its signature names none: the queue it came from
/// when a tenant owns that queue and it is consumed (a workflow stays with its tenant), else the queue of the plugin
/// that answers to it when that queue is consumed, else `celery`.
fn default_queue_for(shared: &Shared, task: &str, from_queue: &str) -> String {
    if shared.config.queue_tenants.contains_key(from_queue)
        && shared.config.queues.iter().any(|q| q == from_queue)
    {
        return from_queue.to_owned();
    }
    shared
        .routes
        .get(task)
        .map(|r| r.queue.clone())
        .filter(|q| shared.config.queues.contains(q))
        .unwrap_or_else(|| DEFAULT_CELERY_QUEUE.to_owned())
}

/// The messages that follow a task's end: on success the chain's next step (carrying the rest of
/// the chain) and the callbacks, with the result as first argument; on failure the errbacks, with
/// the task id as argument (as Celery calls a `link_error` task).
fn follow_ups(shared: &Shared, id: &str, info: &TaskInfo, ending: &Ending) -> Vec<(String, String)> {
    let root = info.root_id.clone().unwrap_or_else(|| id.to_owned());
    let origin = shared.nodename();
    let now = now_ms();
    let send = |sig: &Signature, leading: Vec<Value>| -> Vec<OutgoingTask> {
        expand(sig)
            .into_iter()
            .map(|(sig, chain)| {
                let queue = default_queue_for(shared, sig.task(), &info.celery_queue);
                let mut out = OutgoingTask::from_signature(
                    &sig,
                    leading.clone(),
                    &queue,
                    Some(id),
                    &root,
                    &origin,
                    now,
                );
                if !chain.is_empty() {
                    out.chain = chain;
                }
                out
            })
            .collect()
    };
    let mut out = Vec::new();
    match ending {
        Ending::Success(result) => {
            let mut chain: Vec<Signature> = info.chain.iter().filter_map(Signature::from_value).collect();
            if let Some(next) = chain.pop() {
                for mut step in send(&next, vec![result.clone()]) {
                    if step.chain.is_empty() {
                        step.chain = chain.clone();
                    }
                    out.push(step);
                }
            }
            for callback in info.callbacks.iter().filter_map(Signature::from_value) {
                out.extend(send(&callback, vec![result.clone()]));
            }
        }
        Ending::Failure => {
            for errback in info.errbacks.iter().filter_map(Signature::from_value) {
                out.extend(send(&errback, vec![json!(id)]));
            }
        }
        Ending::Revoked => {}
    }
    out.iter().map(OutgoingTask::encode).collect()
}

/// A signature as the plain task signatures to send: a group's members, a chain's first step
/// (with the rest of the chain, last first), or itself.
fn expand(sig: &Signature) -> Vec<(Signature, Vec<Signature>)> {
    let members = || -> Vec<Signature> {
        sig.kwargs()
            .get("tasks")
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(Signature::from_value).collect())
            .unwrap_or_default()
    };
    match sig.subtask_type() {
        Some("group") => members().into_iter().map(|m| (m, Vec::new())).collect(),
        Some("chain") => {
            let mut steps = members();
            if steps.is_empty() {
                return Vec::new();
            }
            let first = steps.remove(0);
            steps.reverse();
            vec![(first, steps)]
        }
        _ => vec![(sig.clone(), Vec::new())],
    }
}

/// The final Celery state of a finished task, from its record.
fn final_state(record: &TaskRecord, store: bool) -> Option<(ResultWrite, Ending)> {
    let id = record.id.as_str();
    let failure = || {
        let (kind, message) = record
            .error
            .as_ref()
            .map_or(("host_error", "the task failed"), |e| (e.kind.as_str(), e.message.as_str()));
        let mut write =
            ResultWrite::ready(id, State::Failure, protocol::exception_for(kind, message).to_value(), store);
        write.traceback = Some(format!("taskhost: the task ended with {kind}: {message}"));
        (write, Ending::Failure)
    };
    Some(match record.status {
        TaskStatus::Succeeded => {
            let result =
                record.result.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or(Value::Null);
            (ResultWrite::ready(id, State::Success, result.clone(), store), Ending::Success(result))
        }
        TaskStatus::Failed | TaskStatus::Dead => failure(),
        TaskStatus::Cancelled => {
            let reason = if record.started_at.is_some() { "terminated" } else { "revoked" };
            let (write, ending, _) = revoked(id, reason, store);
            (write, ending)
        }
        TaskStatus::Expired => {
            let (write, ending, _) = revoked(id, "expired", store);
            (write, ending)
        }
        _ => return None,
    })
}

/// Releases the reconcile lock if this host still holds it.
const RELEASE_LOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Walks the in-flight ids that are due, until `stop`.
pub async fn reconcile(shared: Arc<Shared>, stop: CancellationToken) {
    let settings = shared.config.settings.clone();
    let mut tick = tokio::time::interval(settings.reconcile_interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let mut conn = shared.conn.clone();
        let locked: Result<Option<String>, _> = redis::cmd("SET")
            .arg(shared.keys.reconcile_lock())
            .arg(&shared.config.host_id)
            .arg("NX")
            .arg("PX")
            .arg(ms(settings.reconcile_interval * 5))
            .query_async(&mut conn)
            .await;
        if !matches!(locked, Ok(Some(_))) {
            continue;
        }
        if let Err(error) = reconcile_once(&shared).await {
            tracing::warn!(%error, "Celery results: reconciling failed; will retry");
        }
        let _: Result<i64, _> = redis::Script::new(RELEASE_LOCK)
            .key(shared.keys.reconcile_lock())
            .arg(&shared.config.host_id)
            .invoke_async(&mut conn)
            .await;
    }
}

/// One round of the reconciler.
async fn reconcile_once(shared: &Shared) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let settings = &shared.config.settings;
    let mut conn = shared.conn.clone();
    let now = now_ms();
    let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
        .arg(shared.keys.inflight())
        .arg("-inf")
        .arg(now)
        .arg("LIMIT")
        .arg(0)
        .arg(RECONCILE_BATCH)
        .query_async(&mut conn)
        .await?;
    if due.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = due.iter().map(|id| shared.keys.task(id)).collect();
    let infos: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
    let mut pipe = redis::pipe();
    let mut writes = Vec::new();
    for (id, info) in due.iter().zip(infos) {
        let Some(info) = info.and_then(|i| serde_json::from_str::<TaskInfo>(&i).ok()) else {
            pipe.cmd("ZREM").arg(shared.keys.inflight()).arg(id).ignore();
            continue;
        };
        let record = shared.broker.get(None, id).await?;
        let age = now - info.ingested_at;
        let recheck = now + age.clamp(ms(settings.reconcile_after), 60_000);
        match record {
            None if age > ms(shared.config.result_expires) => {
                pipe.cmd("ZREM").arg(shared.keys.inflight()).arg(id).ignore();
            }
            Some(record)
                if record.status.is_terminal()
                    && record.finished_at.is_some_and(|f| now - f >= ms(settings.reconcile_grace)) =>
            {
                if let Some((write, ending)) = final_state(&record, !info.ignore_result) {
                    writes.push((write, info, ending));
                }
            }
            _ => {
                pipe.cmd("ZADD").arg(shared.keys.inflight()).arg("XX").arg(recheck).arg(id).ignore();
            }
        }
    }
    for (write, _, _) in &writes {
        add_write(&mut pipe, shared, write, now);
    }
    let claimed: Vec<i64> = pipe.query_async(&mut conn).await?;
    let mut follow = redis::pipe();
    let mut any = false;
    for ((write, info, ending), claimed) in writes.iter().zip(claimed) {
        if claimed == 1 {
            tracing::info!(task = %write.task_id, state = write.state.as_str(), "Celery results: final state written by the reconciler");
            for (list, message) in follow_ups(shared, &write.task_id, info, ending) {
                follow.cmd("LPUSH").arg(list).arg(message).ignore();
                any = true;
            }
        }
    }
    if any {
        follow.query_async::<()>(&mut conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_callback_expands_to_its_members_and_a_chain_to_its_first_step() {
        let group = Signature::from_value(&json!({"task": "celery.group", "subtask_type": "group",
            "kwargs": {"tasks": [{"task": "a"}, {"task": "b"}]}}))
        .unwrap();
        let tasks: Vec<String> = expand(&group).iter().map(|(s, _)| s.task().to_owned()).collect();
        assert_eq!(tasks, ["a", "b"]);
        let chain = Signature::from_value(&json!({"task": "celery.chain", "subtask_type": "chain",
            "kwargs": {"tasks": [{"task": "a"}, {"task": "b"}, {"task": "c"}]}}))
        .unwrap();
        let expanded = expand(&chain);
        assert_eq!(expanded[0].0.task(), "a");
        let rest: Vec<&str> = expanded[0].1.iter().map(Signature::task).collect();
        assert_eq!(rest, ["c", "b"]);
    }

    #[test]
    fn failure_events_carry_the_exception_get_raises() {
        let (e, tb) =
            exception_of(&json!({"error": {"kind": "invalid_input", "message": "invalid input: bad"}}));
        assert_eq!((e.exc_type, e.message.as_str()), ("ValueError", "bad"));
        assert!(tb.contains("invalid_input"));
        assert!(is_expiry(&json!({"status": "expired"})));
    }
}
