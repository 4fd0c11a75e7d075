//! Taking Celery messages from kombu's Redis lists and submitting them as taskhost tasks.
//!
//! Each consumed Celery queue has one loop. It moves up to [`CelerySettings::batch`] messages at
//! a time, in kombu's priority order (`Q`, then `Q\x06\x163`, `Q\x06\x166`, `Q\x06\x169`), into
//! this host's processing list for the queue with one script of `LMOVE`s (atomic: a message is
//! always in exactly one list). When all four are empty it blocks on `Q` with `BLMOVE` (into the
//! same processing list) for [`CelerySettings::idle_block`]. A message leaves the processing list
//! (`LREM`) only once it has been submitted to the broker, answered (a FAILURE for an unknown
//! task, say) or dead-lettered. Submission is idempotent by the Celery task id, so handling a
//! message again after a crash, or a message a producer sent twice, yields one task.
//!
//! Each host keeps a liveness key with a TTL ([`CelerySettings::alive_ttl`]) and lists itself and
//! its queues in a registry. Every [`CelerySettings::alive_interval`] a host looks for hosts whose
//! key expired and moves their processing lists into its own (again with `LMOVE`, so two hosts
//! doing so split them without loss or overlap), then handles those messages as new ones.
//!
//! [`CelerySettings::batch`]: super::CelerySettings::batch
//! [`CelerySettings::idle_block`]: super::CelerySettings::idle_block
//! [`CelerySettings::alive_ttl`]: super::CelerySettings::alive_ttl
//! [`CelerySettings::alive_interval`]: super::CelerySettings::alive_interval

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::Value as RedisValue;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::protocol::{self, Exception, Malformed, State, TaskMessage, priority_lists};
use super::results::{self, ResultWrite};
use super::{Route, Shared, TaskInfo, control, ms};
use crate::queue::{CancelResult, NewTask, Priority, TaskStatus, now_ms};
use crate::sandbox::LimitsRequest;
use crate::tenant::Tenant;

/// Moves up to `ARGV[1]` messages from the lists `KEYS[2..]`, in order, to the head of `KEYS[1]`.
const TAKE: &str = r"
local taken = {}
local limit = tonumber(ARGV[1])
for i = 2, #KEYS do
  while #taken < limit do
    local message = redis.call('LMOVE', KEYS[i], KEYS[1], 'RIGHT', 'LEFT')
    if not message then break end
    taken[#taken + 1] = message
  end
end
return taken
";

/// Submissions of one batch in flight at once (the broker combines concurrent submits into one
/// script call per queue).
const SUBMITS_IN_FLIGHT: usize = 64;

/// Puts this host in the ingress registry and sets its liveness key.
pub async fn register(shared: &Shared) -> Result<(), redis::RedisError> {
    let mut conn = shared.conn.clone();
    let entry = json!({"queues": shared.config.queues, "node": shared.nodename(), "started_at": now_ms()});
    redis::pipe()
        .cmd("HSET")
        .arg(shared.keys.hosts())
        .arg(&shared.config.host_id)
        .arg(entry.to_string())
        .ignore()
        .cmd("SET")
        .arg(shared.keys.alive(&shared.config.host_id))
        .arg(now_ms())
        .arg("PX")
        .arg(ms(shared.config.settings.alive_ttl))
        .ignore()
        .query_async::<()>(&mut conn)
        .await
}

/// Leaves the registry, unless a processing list still holds messages (then another host takes
/// them over once the liveness key has expired).
pub async fn unregister(shared: &Shared) {
    let mut conn = shared.conn.clone();
    let mut pipe = redis::pipe();
    for queue in &shared.config.queues {
        pipe.cmd("LLEN").arg(shared.keys.processing(&shared.config.host_id, queue));
    }
    let left: Vec<u64> = pipe.query_async(&mut conn).await.unwrap_or_default();
    if left.iter().sum::<u64>() > 0 {
        tracing::warn!(
            messages = left.iter().sum::<u64>(),
            "Celery messages left in processing; another host will take them over"
        );
        return;
    }
    let _: Result<(), _> = redis::pipe()
        .cmd("DEL")
        .arg(shared.keys.alive(&shared.config.host_id))
        .ignore()
        .cmd("HDEL")
        .arg(shared.keys.hosts())
        .arg(&shared.config.host_id)
        .ignore()
        .query_async(&mut conn)
        .await;
}

/// Renews the liveness key and takes over the processing lists of hosts that are gone, until
/// `stop`.
pub async fn keep_alive(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(shared.config.settings.alive_interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let mut conn = shared.conn.clone();
        let renewed: Result<(), _> = redis::cmd("SET")
            .arg(shared.keys.alive(&shared.config.host_id))
            .arg(now_ms())
            .arg("PX")
            .arg(ms(shared.config.settings.alive_ttl))
            .query_async(&mut conn)
            .await;
        if let Err(error) = renewed {
            tracing::warn!(%error, "Celery ingress: cannot renew the liveness key");
            continue;
        }
        if let Err(error) = take_over_gone_hosts(&shared).await {
            tracing::warn!(%error, "Celery ingress: taking over the messages of a gone host failed; will retry");
        }
    }
}

/// Moves the processing lists of hosts whose liveness key expired into this host's, and handles
/// their messages.
async fn take_over_gone_hosts(shared: &Shared) -> Result<(), redis::RedisError> {
    let mut conn = shared.conn.clone();
    let hosts: HashMap<String, String> =
        redis::cmd("HGETALL").arg(shared.keys.hosts()).query_async(&mut conn).await?;
    let others: Vec<(&String, &String)> =
        hosts.iter().filter(|(host, _)| **host != shared.config.host_id).collect();
    if others.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for (host, _) in &others {
        pipe.cmd("EXISTS").arg(shared.keys.alive(host));
    }
    let alive: Vec<bool> = pipe.query_async(&mut conn).await?;
    for ((host, entry), alive) in others.into_iter().zip(alive) {
        if alive {
            continue;
        }
        let queues: Vec<String> = serde_json::from_str::<Value>(entry)
            .ok()
            .and_then(|e| serde_json::from_value(e["queues"].clone()).ok())
            .unwrap_or_default();
        let mut moved = 0usize;
        for queue in &queues {
            let mine = shared.keys.processing(&shared.config.host_id, queue);
            loop {
                let messages: Vec<Vec<u8>> = redis::Script::new(TAKE)
                    .key(&mine)
                    .key(shared.keys.processing(host, queue))
                    .arg(shared.config.settings.batch)
                    .invoke_async(&mut conn)
                    .await?;
                if messages.is_empty() {
                    break;
                }
                moved += messages.len();
                if let Err(error) = handle_batch(shared, queue, &mine, messages).await {
                    tracing::warn!(%error, "Celery ingress: handling taken-over messages failed; they stay in this host's processing list");
                    return Ok(());
                }
            }
        }
        let _: () = redis::cmd("HDEL").arg(shared.keys.hosts()).arg(host).query_async(&mut conn).await?;
        tracing::info!(gone = %host, messages = moved, "Celery ingress: took over the messages of a gone host");
    }
    Ok(())
}

/// Consumes one Celery queue until `stop`.
pub async fn consume(shared: Arc<Shared>, queue: String, stop: CancellationToken) {
    let settings = shared.config.settings.clone();
    let lists = priority_lists(&queue);
    let processing = shared.keys.processing(&shared.config.host_id, &queue);
    let take = redis::Script::new(TAKE);
    let mut conn = shared.conn.clone();
    let mut blocking = None;
    // Messages left in this host's processing list (after a failed step) are handled first.
    let mut redo_own = true;
    while !stop.is_cancelled() {
        if redo_own {
            match redis::cmd("LRANGE")
                .arg(&processing)
                .arg(0)
                .arg(-1)
                .query_async::<Vec<Vec<u8>>>(&mut conn)
                .await
            {
                Ok(left) if left.is_empty() => redo_own = false,
                Ok(left) => {
                    match handle_batch(&shared, &queue, &processing, left.into_iter().rev().collect()).await {
                        Ok(()) => redo_own = false,
                        Err(error) => {
                            tracing::warn!(%error, queue = %queue, "Celery ingress: handling messages failed; retrying");
                            tokio::time::sleep(settings.retry_delay).await;
                            continue;
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, queue = %queue, "Celery ingress: cannot read the processing list; retrying");
                    tokio::time::sleep(settings.retry_delay).await;
                    continue;
                }
            }
        }
        let mut invocation = take.key(&processing);
        for list in &lists {
            invocation.key(list);
        }
        let taken: Vec<Vec<u8>> = match invocation.arg(settings.batch).invoke_async(&mut conn).await {
            Ok(taken) => taken,
            Err(error) => {
                tracing::warn!(%error, queue = %queue, "Celery ingress: cannot take messages; retrying");
                tokio::time::sleep(settings.retry_delay).await;
                continue;
            }
        };
        if !taken.is_empty() {
            if let Err(error) = handle_batch(&shared, &queue, &processing, taken).await {
                tracing::warn!(%error, queue = %queue, "Celery ingress: handling messages failed; retrying");
                redo_own = true;
                tokio::time::sleep(settings.retry_delay).await;
            }
            continue;
        }
        // Idle: block on the main list. The wait is not cut short by `stop`, so that a message it
        // moves is always handled.
        if blocking.is_none() {
            match shared.dedicated(settings.idle_block + Duration::from_secs(5)).await {
                Ok(c) => blocking = Some(c),
                Err(error) => {
                    tracing::warn!(%error, "Celery ingress: cannot open a blocking connection; retrying");
                    tokio::time::sleep(settings.retry_delay).await;
                    continue;
                }
            }
        }
        let Some(blocking_conn) = blocking.as_mut() else { continue };
        let moved: Result<Option<Vec<u8>>, _> = redis::cmd("BLMOVE")
            .arg(&lists[0])
            .arg(&processing)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(settings.idle_block.as_secs_f64())
            .query_async(blocking_conn)
            .await;
        match moved {
            Ok(Some(message)) => {
                if let Err(error) = handle_batch(&shared, &queue, &processing, vec![message]).await {
                    tracing::warn!(%error, queue = %queue, "Celery ingress: handling a message failed; retrying");
                    redo_own = true;
                    tokio::time::sleep(settings.retry_delay).await;
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, queue = %queue, "Celery ingress: blocking wait failed; reconnecting");
                blocking = None;
                redo_own = true;
                tokio::time::sleep(settings.retry_delay).await;
            }
        }
    }
}

/// What becomes of one message.
enum Plan {
    /// Submit it.
    Submit { task: Box<NewTask>, info: Arc<TaskInfo>, message: Box<TaskMessage> },
    /// Answer it without running it (unknown task, chord, expired, bad arguments).
    Answer { writes: Vec<ResultWrite>, event: Option<Value> },
    /// Not a usable Celery message: dead letter (and a FAILURE when the id is known).
    DeadLetter { reason: String, write: Option<ResultWrite> },
}

/// Why handling a batch failed; its messages stay in the processing list.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// Redis refused or is unreachable.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The broker refused or is unreachable.
    #[error("broker: {0}")]
    Broker(#[from] crate::queue::BrokerError),
}

/// Handles messages taken into `processing`: plans each, records the Celery ones, submits them,
/// answers or dead-letters the rest, then removes them all from `processing`.
pub async fn handle_batch(
    shared: &Shared,
    queue: &str,
    processing: &str,
    messages: Vec<Vec<u8>>,
) -> Result<(), IngressError> {
    let now = now_ms();
    let plans: Vec<Plan> = messages.iter().map(|raw| plan(shared, queue, raw, now)).collect();
    let mut conn = shared.conn.clone();
    let settings = &shared.config.settings;

    // 1. Record what is submitted (before it can run) and look for revokes that came first.
    let submit_ids: Vec<&str> = plans
        .iter()
        .filter_map(|p| match p {
            Plan::Submit { task, .. } => Some(task.id.as_str()),
            _ => None,
        })
        .collect();
    let mut revoked_before = vec![false; submit_ids.len()];
    let mut pipe = redis::pipe();
    if !submit_ids.is_empty() {
        pipe.cmd("ZMSCORE").arg(shared.keys.revoked()).arg(&submit_ids);
    }
    for (p, raw) in plans.iter().zip(&messages) {
        match p {
            Plan::Submit { task, info, .. } => {
                let wait = task.not_before.map_or(0, |t| (t - now).max(0) / 1000) as u64;
                let ttl = wait + shared.config.result_expires.as_secs() + 86_400;
                pipe.cmd("SET")
                    .arg(shared.keys.task(&task.id))
                    .arg(serde_json::to_string(info.as_ref()).unwrap_or_default())
                    .arg("EX")
                    .arg(ttl)
                    .ignore();
                pipe.cmd("ZADD")
                    .arg(shared.keys.inflight())
                    .arg(now + ms(settings.reconcile_after) + wait as i64 * 1000)
                    .arg(&task.id)
                    .ignore();
            }
            Plan::DeadLetter { reason, .. } => {
                tracing::warn!(queue = %queue, %reason, "Celery ingress: message dead-lettered");
                let record = json!({
                    "queue": queue, "reason": reason, "host": shared.config.host_id, "at": now,
                    "message": String::from_utf8_lossy(raw),
                });
                pipe.cmd("LPUSH").arg(shared.keys.dead_letters()).arg(record.to_string()).ignore();
            }
            Plan::Answer { .. } => {}
        }
    }
    if !submit_ids.is_empty() {
        let (scores,): (Vec<Option<f64>>,) = pipe.query_async(&mut conn).await?;
        revoked_before = scores.iter().map(Option::is_some).collect();
        shared.remember_ingested(plans.iter().filter_map(|p| match p {
            Plan::Submit { task, info, .. } => Some((task.id.clone(), info.clone())),
            _ => None,
        }));
    } else if plans.iter().any(|p| matches!(p, Plan::DeadLetter { .. })) {
        pipe.query_async::<()>(&mut conn).await?;
    }

    // 2. Submit, in order.
    let mut late_writes = Vec::new();
    let mut events = Vec::new();
    let mut to_submit = Vec::new();
    let mut index = 0;
    for p in &plans {
        if let Plan::Submit { task, message, info } = p {
            if revoked_before[index] {
                late_writes.push(ResultWrite::ready(
                    &task.id,
                    State::Revoked,
                    protocol::revoked_exception("revoked").to_value(),
                    !info.ignore_result,
                ));
                events.extend(control::task_event(
                    shared,
                    "task-revoked",
                    &task.id,
                    json!({"terminated": false, "signum": null, "expired": false}),
                ));
            } else {
                to_submit.push((task.as_ref().clone(), message));
            }
            index += 1;
        }
    }
    let mut submitted = Vec::with_capacity(to_submit.len());
    let mut pending = futures::stream::FuturesOrdered::new();
    for (task, message) in to_submit {
        let broker = shared.broker.clone();
        pending.push_back(async move {
            let id = task.id.clone();
            (broker.submit(task).await, id, message)
        });
        if pending.len() >= SUBMITS_IN_FLIGHT
            && let Some(done) = pending.next().await
        {
            submitted.push(done);
        }
    }
    while let Some(done) = pending.next().await {
        submitted.push(done);
    }
    let mut accepted = Vec::new();
    let mut finished_before = Vec::new();
    for (result, id, message) in submitted {
        let submitted = result?;
        if submitted.created && shared.task_events() {
            events.extend(control::task_event(
                shared,
                "task-received",
                &id,
                json!({
                    "name": message.task, "args": message.argsrepr, "kwargs": message.kwargsrepr,
                    "root_id": message.root_id, "parent_id": message.parent_id, "retries": message.retries,
                    "eta": message.eta.map(protocol::format_iso8601),
                    "expires": message.expires.map(protocol::format_iso8601),
                }),
            ));
        } else if submitted.task.status.is_terminal() {
            // A message seen again after its task ended: nothing is left to do for it.
            finished_before.push(id.clone());
        }
        accepted.push(id);
    }

    // 3. Revokes that arrived while this batch was being submitted.
    if !accepted.is_empty() {
        let scores: Vec<Option<f64>> =
            redis::cmd("ZMSCORE").arg(shared.keys.revoked()).arg(&accepted).query_async(&mut conn).await?;
        for (id, score) in accepted.iter().zip(scores) {
            if score.is_some() {
                cancel_waiting(shared, id).await;
            }
        }
    }

    // 4. Answers, events, and the end of the messages' stay in the processing list.
    let mut pipe = redis::pipe();
    for p in &plans {
        match p {
            Plan::Answer { writes, event } => {
                for write in writes {
                    results::add_write(&mut pipe, shared, write, now);
                }
                events.extend(event.clone());
            }
            Plan::DeadLetter { write: Some(write), .. } => results::add_write(&mut pipe, shared, write, now),
            _ => {}
        }
    }
    for write in &late_writes {
        results::add_write(&mut pipe, shared, write, now);
    }
    if !finished_before.is_empty() {
        pipe.cmd("ZREM").arg(shared.keys.inflight()).arg(&finished_before).ignore();
    }
    if let Some((channel, payload)) = control::task_events_message(shared, &events) {
        pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
    }
    // From the tail: the batch was pushed at the head in this order, so each is found at once.
    for raw in &messages {
        pipe.cmd("LREM").arg(processing).arg(-1).arg(raw.as_slice()).ignore();
    }
    let _: RedisValue = pipe.query_async(&mut conn).await?;
    Ok(())
}

/// Cancels a task that was revoked while it was being submitted (it has not started, or has only
/// just started on this host).
async fn cancel_waiting(shared: &Shared, id: &str) {
    match shared.broker.cancel(None, id).await {
        Ok((result, stored)) => {
            if let Some(stored) = stored {
                shared.hub.publish(stored);
            }
            if result == CancelResult::Requested {
                shared.running.cancel(id);
            }
        }
        Err(error) => tracing::warn!(task = %id, %error, "Celery ingress: cannot cancel a revoked task"),
    }
}

/// True for task ids the broker accepts: 1-128 of `A-Z a-z 0-9 - _ . :`.
fn valid_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// The input of a plugin from Celery arguments: positional args named by the manifest's
/// `[celery] args`, keyword args by name. A plugin without `args` also takes one dict as its
/// whole input.
pub fn build_input(
    arg_names: &[String],
    args: &[Value],
    kwargs: &Map<String, Value>,
) -> Result<Value, String> {
    if arg_names.is_empty() && args.len() == 1 && kwargs.is_empty() && args[0].is_object() {
        return Ok(args[0].clone());
    }
    if args.len() > arg_names.len() {
        return Err(format!(
            "takes {} positional argument{} ({}) but {} were given",
            arg_names.len(),
            if arg_names.len() == 1 { "" } else { "s" },
            arg_names.join(", "),
            args.len()
        ));
    }
    let mut input: Map<String, Value> = arg_names.iter().cloned().zip(args.iter().cloned()).collect();
    for (name, value) in kwargs {
        if input.contains_key(name) {
            return Err(format!("got multiple values for argument {name:?}"));
        }
        input.insert(name.clone(), value.clone());
    }
    Ok(Value::Object(input))
}

fn failure(id: &str, exception: Exception) -> ResultWrite {
    ResultWrite::ready(id, State::Failure, exception.to_value(), true)
}

/// Decides what becomes of one message.
fn plan(shared: &Shared, queue: &str, raw: &[u8], now: i64) -> Plan {
    let message = match protocol::decode_task(raw) {
        Ok(message) => message,
        Err(Malformed { reason, task_id }) => {
            let write = task_id.filter(|id| valid_task_id(id)).map(|id| {
                failure(
                    &id,
                    Exception {
                        exc_type: "ContentDisallowed",
                        exc_module: "kombu.exceptions",
                        message: reason.clone(),
                    },
                )
            });
            return Plan::DeadLetter { reason, write };
        }
    };
    let id = message.id.clone();
    if !valid_task_id(&id) {
        return Plan::DeadLetter {
            reason: format!(
                "task id {id:?}: taskhost takes ids of 1-128 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'"
            ),
            write: None,
        };
    }
    let refuse = |exception: Exception| {
        let event = control::task_event(
            shared,
            "task-failed",
            &id,
            json!({"exception": exception.repr(), "traceback": null}),
        );
        Plan::Answer { writes: vec![failure(&id, exception)], event }
    };
    if let Some(body) = &message.embed.chord {
        let exception = protocol::exception_for(
            "not_supported",
            "chords are not supported by taskhost's Celery ingress: run a group and combine its results in the client",
        );
        let mut writes = vec![failure(&id, exception.clone())];
        if let Some(body_id) = body.options().get("task_id").and_then(Value::as_str) {
            writes.push(failure(body_id, exception));
        }
        return Plan::Answer { writes, event: None };
    }
    let Some(route) = shared.routes.get(&message.task) else {
        return refuse(protocol::exception_for("not_registered", &message.task));
    };
    if message.expires.is_some_and(|t| t <= now) {
        let write = ResultWrite::ready(
            &id,
            State::Revoked,
            protocol::revoked_exception("expired").to_value(),
            !message.ignore_result,
        );
        let event = control::task_event(
            shared,
            "task-revoked",
            &id,
            json!({"terminated": false, "signum": null, "expired": true}),
        );
        return Plan::Answer { writes: vec![write], event };
    }
    let input = match build_input(&route.arg_names, &message.args, &message.kwargs) {
        Ok(input) => input.to_string(),
        Err(e) => return refuse(protocol::exception_for("type_error", &format!("{}() {e}", message.task))),
    };
    if input.len() > shared.config.max_input_bytes {
        return refuse(protocol::exception_for(
            "invalid_input",
            &format!(
                "the input is {} bytes, over the limit of {} bytes",
                input.len(),
                shared.config.max_input_bytes
            ),
        ));
    }
    let tenant = Tenant { name: shared.config.tenant_for(queue), admin: false };
    if let Err(reason) = shared.tenants.check_allowed(&tenant, &route.plugin, &route.queue) {
        return refuse(Exception { exc_type: "PermissionError", exc_module: "builtins", message: reason });
    }
    let timeout_secs = message.hard_time_limit.or(message.soft_time_limit);
    let limits = shared.tenants.narrow_limits(
        &tenant,
        LimitsRequest {
            timeout_ms: timeout_secs.map(|s| (s * 1000.0).ceil().max(1.0) as u64),
            ..Default::default()
        },
    );
    let task = new_task(&message, route, tenant.name, input, limits, now);
    let info = TaskInfo {
        name: message.task.clone(),
        celery_queue: queue.to_owned(),
        argsrepr: message.argsrepr.clone(),
        kwargsrepr: message.kwargsrepr.clone(),
        callbacks: message.embed.callbacks.iter().map(|s| s.to_value()).collect(),
        errbacks: message.embed.errbacks.iter().map(|s| s.to_value()).collect(),
        chain: message.embed.chain.iter().map(|s| s.to_value()).collect(),
        group: message.group.clone(),
        group_index: message.group_index,
        root_id: message.root_id.clone(),
        parent_id: message.parent_id.clone(),
        ignore_result: message.ignore_result,
        retries: message.retries,
        reply_to: message.reply_to.clone(),
        priority: message.priority,
        ingested_at: now,
    };
    Plan::Submit { task: Box::new(task), info: Arc::new(info), message: Box::new(message) }
}

/// The taskhost task of a Celery message.
fn new_task(
    message: &TaskMessage,
    route: &Route,
    tenant: String,
    input: String,
    limits: LimitsRequest,
    now: i64,
) -> NewTask {
    NewTask {
        id: message.id.clone(),
        tenant,
        plugin: route.plugin.clone(),
        task_name: route.task_name.clone(),
        queue: route.queue.clone(),
        input,
        // kombu on Redis serves priority 0 (the default) first; 3 and above are its lower lists.
        priority: if message.priority >= 3 { Priority::Low } else { Priority::Normal },
        not_before: message.eta.filter(|&t| t > now),
        expires_at: message.expires,
        max_retries: route.max_retries.saturating_sub(message.retries),
        limits,
        files: Vec::new(),
    }
}

/// Statuses in which a revoke (without `terminate`) still stops a task.
pub fn is_waiting(status: TaskStatus) -> bool {
    matches!(status, TaskStatus::Queued | TaskStatus::Scheduled | TaskStatus::Retrying)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_and_keyword_arguments_map_to_input_fields() {
        let names = vec!["run_id".to_owned(), "recipe".to_owned()];
        let kwargs: Map<String, Value> =
            [("simulation".to_owned(), json!({"speedup": 2}))].into_iter().collect();
        let input = build_input(&names, &[json!("r1"), json!({"film": "W"})], &kwargs).unwrap();
        assert_eq!(input, json!({"run_id": "r1", "recipe": {"film": "W"}, "simulation": {"speedup": 2}}));
        let e = build_input(&names, &[json!(1), json!(2), json!(3)], &Map::new()).unwrap_err();
        assert!(e.contains("takes 2 positional arguments"), "{e}");
        let twice: Map<String, Value> = [("run_id".to_owned(), json!(2))].into_iter().collect();
        assert!(build_input(&names, &[json!(1)], &twice).unwrap_err().contains("multiple values"));
        assert_eq!(build_input(&[], &[json!({"a": 1})], &Map::new()).unwrap(), json!({"a": 1}));
        assert_eq!(build_input(&[], &[], &Map::new()).unwrap(), json!({}));
    }

    #[test]
    fn task_ids_the_broker_cannot_take_are_refused() {
        assert!(valid_task_id("0b17eba5-a349-4494-bf06-950b4e971909"));
        assert!(!valid_task_id("a b"));
        assert!(!valid_task_id(""));
    }
}
