//! The Redis broker: tasks, queues and events in Redis (standalone or Cluster), shared by any
//! number of hosts.
//!
//! # Keys
//! Every key name is built by [`Keys`], and by the Lua preamble generated from the same constants.
//! Everything about one queue lives under one Redis Cluster hash tag, `<prefix>:{<queue>}:`, so
//! that every script (each touches many keys of one queue) runs on one node (`…` below stands for
//! `<prefix>:`, `taskhost:` by default):
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `<prefix>:queues` | set | every queue that ever had a task |
//! | `<prefix>:id:<id>` | string | the queue of task `<id>`: the idempotency key (`SET NX`) and the way from an id to its keys |
//! | `…{q}:task:<id>` | hash | the task record, its lease (`lease_owner`, `lease_until`), its stream entry |
//! | `…{q}:events:<id>` | stream | a task's events as builds before the list layout kept them (entry id `<seq>-0`); read, never written |
//! | `…{q}:ev:<id>` | list | the task's events, each `<ts> <type> <data>`; the one at index n - 1 has sequence id n (a list, not a stream: a new stream costs a 4 KiB node) |
//! | `…{q}:s:<rank>:<tenant>` | stream | waiting tasks of one tenant at one priority (0 high, 1 normal, 2 low), consumer group `workers` |
//! | `…{q}:tenants` | set | tenants with a stream in this queue |
//! | `…{q}:delayed` | zset | scheduled tasks and retries, by start time |
//! | `…{q}:expiry` | zset | waiting tasks with an expiry time, by that time |
//! | `…{q}:leases` | zset | running tasks, by lease deadline: the lease clock |
//! | `…{q}:released` | zset | tasks handed back (drained, or whose lease lapsed) whose entry is still pending, by priority then time |
//! | `…{q}:dead` | zset | dead tasks (retries exhausted, delivered too often, undecodable), by time of death |
//! | `…{q}:dead-letters` | stream | foreign or malformed stream entries, with the reason |
//! | `…{q}:all` | zset | every task of the queue, by creation time in µs (listing, newest first) |
//! | `…{q}:counts` | hash | tasks per status (`queued`, `running`, ...), in all and per tenant (`queued@acme`); `turn`, the lease turn counter |
//! | `…{q}:wake` | stream | a short signal stream, appended whenever work becomes runnable; idle hosts block on it |
//! | `…{q}:weights` | hash | tenant → weight, for tenants whose weight is not 1 ([`Broker::set_tenant_policies`]) |
//! | `…{q}:quotas` | hash | tenant → most tasks running at once |
//! | `<prefix>:permits:{<tenant>}` | zset | on a Cluster: the running tasks of a tenant with a quota, in every queue, by when each one's permit lapses (its own hash tag: one node holds the tenant's count) |
//!
//! # How each guarantee is met
//! - **Atomic steps.** Every state change is one Lua script on the queue's node: submit, lease,
//!   renew, release, finish, cancel, retry of a dead task, appending events. Scripts read the clock
//!   with `TIME`, so every host measures leases and start times against one clock.
//! - **Delivery.** Submit appends an entry `task=<id>` to the tenant's stream at the task's
//!   priority. `lease` reads with `XREADGROUP ... >` *inside* the lease script (when the queue
//!   has one tenant, without a quota, one read for all the idle slots of the call; entries no
//!   slot took wait in `released`), checks the entry
//!   against the task record (the record names the entry it expects), and starts the attempt in the
//!   same step, so an entry is never delivered without its lease being recorded. The entry stays
//!   pending (unacknowledged) while the task runs; `finish` acknowledges it, then trims the
//!   stream below its first pending entry (`XTRIM MINID ~`, whole nodes at once; with nothing
//!   pending, below the group's last delivered one): every entry below that was delivered and
//!   acknowledged, and nothing unprocessed is ever trimmed. Entries of tasks that end without
//!   running (cancelled, expired) are deleted one by one (`XDEL`). Once the
//!   host named its plugins ([`Broker::record_run_started`]), the same step also appends the
//!   attempt's `run_started` event (for tasks that ask for no limits of their own, whose event
//!   shows the plugin's limits as they are), so that starting a task costs no second call.
//! - **Leases.** A lease is `lease_until` in the record and the task's score in `leases`; each
//!   call may ask for its own duration. `renew` moves both and touches the pending entry with
//!   `XCLAIM ... JUSTID` (resets its idle time, does not count a delivery). The lease script first
//!   reaps lapsed leases: a task whose deadline passed goes back to `released` (or to its end:
//!   `cancelled` when a cancel was requested, dead after [`MAX_DELIVERIES`] deliveries), and the
//!   next lease `XCLAIM`s its pending entry for the new worker, counting the delivery. The lease
//!   clock is a sorted set rather than the entry's idle time because leases of one queue may have
//!   different durations (each call to `lease` names its own).
//! - **Sweep.** Every host, every [`RedisConfig::sweep_interval`], runs [`RedisBroker::sweep`]
//!   on each queue: `XAUTOCLAIM` takes back entries pending longer than
//!   [`RedisConfig::stranded_after`] (running tasks are renewed far more often) and puts right
//!   any that no lease accounts for (the task waits again, or the entry goes to the dead
//!   letters); consumers of hosts long gone are removed; listing entries of expired records are
//!   forgotten. Nothing in normal operation strands an entry (every step is one script); the
//!   sweep is there for steps cut short by a failing script or a hand on the keys.
//! - **Fencing.** `renew`, `set_progress`, `release` and `finish` change the record only while
//!   status is `running` and attempt and worker still match.
//! - **Delays, retries, expiry.** Start times and retry backoffs wait in `delayed`; the lease
//!   script promotes due ones (whichever host gets there first) and expires waiting tasks whose
//!   time passed (`expiry`).
//! - **Idempotent submit.** `SET <prefix>:id:<id> <queue> NX` claims the id; the submit script
//!   creates the record only if it is absent, so a repeated submit returns the first task. On a
//!   standalone server the script claims the id itself (one round trip); on a Cluster the id's
//!   key lives on another node than the queue, so the host claims it first.
//! - **Cancellation.** A waiting task ends `cancelled` and its entry is deleted; a running one is
//!   flagged (read by `renew`) and its id is published on `<prefix>:cancel`.
//! - **Priorities.** High first, then normal, then low, except on weighted turns: one lease in 8
//!   looks at normal first and one in 32 at low first, so that no priority starves entirely.
//! - **Tenants.** Within a priority, tenants take turns by weight: of every sum-of-weights
//!   leases, a tenant of weight w leads w (spread out), the others following in name order when
//!   it has nothing waiting. The turn counter lives in the queue's `counts`, so every host takes
//!   the same turns. A tenant whose running tasks reached its quota is passed over inside the
//!   lease script, which also starts the attempt: however many hosts lease at once, the quota is
//!   never overshot. On a standalone server the count is the tenant's running tasks in every
//!   queue. On a Cluster a script sees only its own queue's node, so a tenant with a quota also
//!   holds a *permit* per running task, in a sorted set on its own node (`permits:{<tenant>}`,
//!   by lapse time): before a lease call the host reads how many permits are free (expired ones
//!   purged) and the script starts at most that many of the tenant's tasks; then the host takes
//!   one permit per task started, atomically against the quota. A host that loses that race
//!   (another host took the last permits in between) releases the lease at once, and since the
//!   lease stores no `run_started` for such a task (the worker appends it once the permit is
//!   held), an attempt handed back that way leaves no event and counts no attempt. Renewals
//!   extend the permit, a finish or release returns it, and a host that dies leaves permits that
//!   lapse with its leases. A permit freed in one queue is seen in another at its next wake or
//!   within the idle wait.
//!   A finish of a tenant with a quota signals `wake`, so hosts that passed over its tasks look
//!   again.
//! - **Dead letters.** Dead tasks are listed in `dead` with their reason in the record;
//!   [`Broker::retry_dead`] queues them again. A stream entry that names no known task, or a task
//!   that does not expect it, is moved to `dead-letters` with the reason, and consumption goes on.
//!   A record the host cannot decode is sent to the dead letters by the host with the decode error.
//! - **Expiry of finished tasks.** A task that reached a terminal status other than `dead` keeps
//!   its record, its events and its id for [`RedisConfig::retention`], then Redis forgets it.
//! - **Waiting.** Idle hosts block (`XREAD BLOCK`, on a connection of their own per queue) on the
//!   queue's `wake` stream, which every step that makes work runnable appends to; they also wake
//!   at the next start time or lease deadline. Blocking on the signal rather than on
//!   `XREADGROUP` keeps delivery inside the lease script: a blocking group read would hand an
//!   entry to a host before any of its workers holds a lease on it. Waiting returns at once
//!   while the queue counts waiting tasks, unless leases right after such returns kept finding
//!   nothing (a stranded entry, until the sweep): then it waits for a signal instead of spinning.
//!
//! # Batches
//! A host's concurrent calls of one kind travel together: submits, leases (one per idle slot),
//! finishes, event appends and looks at when work is due each go through a `Combiner`, which
//! sends everything waiting at that instant as one script call per queue, while the previous
//! batch is in flight. A lone call goes at once (no added latency when idle); under load the
//! batches grow by themselves, and the housekeeping of a lease (due start times, expiries,
//! lapsed leases, the tenants' policies) runs once per batch instead of once per task. A lease
//! batch only carries slots that asked, so a host never holds tasks it cannot start. Counts are
//! added up inside a batch script and written once, and a batch sends one wake signal.
//!
//! # Connections
//! Commands go through a [`ConnectionManager`] (standalone) or a cluster connection (Cluster,
//! detected from `INFO cluster`); both reconnect by themselves, and a command during an outage
//! fails with [`BrokerError::Storage`] (the worker retries). Scripts are loaded again after a
//! Redis restart (`NOSCRIPT`). Blocking reads use connections of their own, recreated with
//! backoff.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, FromRedisValue, Pipeline, RedisFuture, Script, Value};
use serde_json::Value as Json;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use super::embedded::MAX_DELIVERIES;
use super::{
    Broker, BrokerError, CancelResult, ErrorInfo, FileInfo, Finish, HostInfo, Lease, LeaseState, Millis,
    NewTask, Priority, QueueStats, Submitted, TaskFilter, TaskRecord, TaskStatus, TenantPolicy, now_ms,
};
use crate::events::{Event, NewEvent, kind};

/// The oldest Redis this backend runs on (streams with consumer groups, `XAUTOCLAIM`, exclusive
/// ranges, scripts replicated by their effects).
pub const MIN_REDIS_VERSION: (u32, u32) = (6, 2);

/// The consumer group of every queue stream.
const GROUP: &str = "workers";

/// [`Broker::list`] with `limit: 0` returns at most this many tasks.
const DEFAULT_LIST_LIMIT: usize = 100;

/// [`Broker::events_since`] with `limit: 0` returns at most this many events.
const DEFAULT_EVENTS_LIMIT: usize = 1000;

/// See `RedisBroker::futile_wakes`.
const FUTILE_WAKES_TOLERATED: u32 = 3;

/// How many id-to-queue mappings a broker remembers before it forgets them all.
const QUEUE_CACHE_LIMIT: usize = 65_536;

/// Settings of the Redis backend, with their defaults.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URLs; several (comma-separated on the command line) name seed
    /// nodes of a Cluster.
    pub urls: Vec<String>,
    /// Prefix of every key, so that several deployments (or tests) can share one Redis.
    pub prefix: String,
    /// How long a finished task's record, events and id are kept.
    pub retention: Duration,
    /// Longest wait for a reply to an ordinary command.
    pub response_timeout: Duration,
    /// Longest wait to connect.
    pub connect_timeout: Duration,
    /// How long one blocking read of a queue's wake stream lasts before it is issued again.
    pub wake_block: Duration,
    /// A stream entry pending this long without being renewed is checked by the sweep (see
    /// [`RedisBroker::sweep`]).
    pub stranded_after: Duration,
    /// How often each host sweeps the queues (see [`RedisBroker::sweep`]).
    pub sweep_interval: Duration,
    /// A consumer (worker) of a queue stream that holds nothing and was idle this long is
    /// removed from its group by the sweep: workers of hosts long gone.
    pub consumer_idle_limit: Duration,
}

impl RedisConfig {
    /// Settings for `url` (one URL, or several separated by commas), checking the URLs.
    pub fn new(url: &str) -> Result<Self, BrokerError> {
        let urls: Vec<String> =
            url.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect();
        if urls.is_empty() {
            return Err(BrokerError::Storage("no Redis URL given".to_owned()));
        }
        for url in &urls {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(BrokerError::Storage(format!(
                    "invalid Redis URL {}: it must start with redis:// or rediss://",
                    redact(url)
                )));
            }
            Client::open(url.as_str())
                .map_err(|e| BrokerError::Storage(format!("invalid Redis URL {}: {e}", redact(url))))?;
        }
        Ok(RedisConfig {
            urls,
            prefix: "taskhost".to_owned(),
            retention: Duration::from_secs(7 * 24 * 3600),
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            wake_block: Duration::from_secs(1),
            stranded_after: Duration::from_secs(3600),
            sweep_interval: Duration::from_secs(600),
            consumer_idle_limit: Duration::from_secs(3600),
        })
    }

    /// The same settings with another key prefix.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Key names

/// Builds every key name (the Lua preamble builds the per-queue ones from the same suffixes).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// Suffixes of the per-queue keys, after `<prefix>:{<queue>}:`.
mod suffix {
    pub const TASK: &str = "task:";
    pub const EVENTS: &str = "ev:";
    /// Where builds before the list layout kept a task's events (a stream); read, never written.
    pub const LEGACY_EVENTS: &str = "events:";
    pub const STREAM: &str = "s:";
    pub const TENANTS: &str = "tenants";
    pub const DELAYED: &str = "delayed";
    pub const EXPIRY: &str = "expiry";
    pub const LEASES: &str = "leases";
    pub const RELEASED: &str = "released";
    pub const DEAD: &str = "dead";
    pub const DEAD_LETTERS: &str = "dead-letters";
    pub const ALL: &str = "all";
    pub const COUNTS: &str = "counts";
    pub const WAKE: &str = "wake";
    pub const WEIGHTS: &str = "weights";
    pub const QUOTAS: &str = "quotas";
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Keys { prefix: escape(prefix) }
    }

    /// `<prefix>:{<queue>}:`: the start of every key of `queue`, with its hash tag.
    pub fn queue_base(&self, queue: &str) -> String {
        format!("{}:{{{}}}:", self.prefix, escape(queue))
    }

    /// The set of known queues.
    pub fn queues(&self) -> String {
        format!("{}:queues", self.prefix)
    }

    /// The id index of a task: its queue's name.
    pub fn index(&self, id: &str) -> String {
        format!("{}:id:{id}", self.prefix)
    }

    /// What every [`Keys::index`] starts with (scripts on a standalone server build them).
    fn index_prefix(&self) -> String {
        format!("{}:id:", self.prefix)
    }

    /// What every queue's keys start with, before the queue's hash tag.
    fn all_queues_prefix(&self) -> String {
        format!("{}:", self.prefix)
    }

    /// String: the content of one file of a tenant's file area. Tagged by tenant, so that a
    /// tenant's file keys live on one Cluster node.
    pub fn file(&self, tenant: &str, name: &str) -> String {
        format!("{}:files:{{{}}}:{}", self.prefix, escape(tenant), name)
    }

    /// Hash: file name → its [`FileInfo`] (JSON), per tenant, same tag as [`Keys::file`].
    pub fn files_meta(&self, tenant: &str) -> String {
        format!("{}:files-meta:{{{}}}", self.prefix, escape(tenant))
    }

    /// Sorted set, on a Cluster: the running tasks of one tenant with a quota, in every queue,
    /// by when each one's permit lapses. Tagged by tenant: one node holds a tenant's count.
    pub fn permits(&self, tenant: &str) -> String {
        format!("{}:permits:{{{}}}", self.prefix, escape(tenant))
    }

    /// Hash: host id → its latest heartbeat (JSON).
    pub fn hosts(&self) -> String {
        format!("{}:hosts", self.prefix)
    }

    /// Sorted set: host id, scored by when to forget it.
    pub fn hosts_seen(&self) -> String {
        format!("{}:hosts-seen", self.prefix)
    }

    /// The channel on which cancellations of running tasks are published.
    pub fn cancel_channel(&self) -> String {
        format!("{}:cancel", self.prefix)
    }

    /// A task's record.
    pub fn task(&self, queue: &str, id: &str) -> String {
        format!("{}{}{id}", self.queue_base(queue), suffix::TASK)
    }

    /// A task's events: a list, the event of sequence id n at index n - 1.
    pub fn events(&self, queue: &str, id: &str) -> String {
        format!("{}{}{id}", self.queue_base(queue), suffix::EVENTS)
    }

    /// A task's events as builds before the list layout stored them: a stream whose entry id
    /// `<seq>-0` is the sequence id.
    pub fn legacy_events(&self, queue: &str, id: &str) -> String {
        format!("{}{}{id}", self.queue_base(queue), suffix::LEGACY_EVENTS)
    }

    /// The stream of one tenant's waiting tasks of one priority.
    pub fn stream(&self, queue: &str, tenant: &str, priority: Priority) -> String {
        format!("{}{}{}:{tenant}", self.queue_base(queue), suffix::STREAM, priority.rank())
    }

    /// One of the queue's own keys (a [`suffix`] constant).
    fn of_queue(&self, queue: &str, suffix: &str) -> String {
        format!("{}{suffix}", self.queue_base(queue))
    }
}

/// Keeps `{`, `}` and `%` out of a name used inside a key, so that the hash tag is the whole
/// queue name and names cannot collide.
fn escape(name: &str) -> String {
    if !name.contains(['{', '}', '%']) {
        return name.to_owned();
    }
    name.replace('%', "%25").replace('{', "%7B").replace('}', "%7D")
}

// ---------------------------------------------------------------------------------------------
// Scripts

/// What every script starts with: key builders, the clock, counters, events, and the steps many
/// scripts share. `ARGV[1]` is the queue's key base, `ARGV[2]` the retention in ms, `ARGV[3]`
/// [`MAX_DELIVERIES`]; a script's own arguments start at `ARGV[4]`. `KEYS[1]` is the queue's
/// `counts` key (it routes the script to the queue's node).
static PREAMBLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        r#"
local base = ARGV[1]
local RETENTION_MS = tonumber(ARGV[2])
local MAX_DELIVERIES = tonumber(ARGV[3])
local GROUP = '{GROUP}'
local K_TENANTS = base .. '{tenants}'
local K_DELAYED = base .. '{delayed}'
local K_EXPIRY = base .. '{expiry}'
local K_LEASES = base .. '{leases}'
local K_RELEASED = base .. '{released}'
local K_DEAD = base .. '{dead}'
local K_DEAD_LETTERS = base .. '{dead_letters}'
local K_ALL = base .. '{all}'
local K_COUNTS = base .. '{counts}'
local K_WAKE = base .. '{wake}'
local K_WEIGHTS = base .. '{weights}'
local K_QUOTAS = base .. '{quotas}'
local SUFFIX_COUNTS = '{counts}'
local EV_CANCELLED = '{ev_cancelled}'
local EV_FAILED = '{ev_failed}'
local EV_STARTED = '{ev_started}'
local function k_task(id) return base .. '{task}' .. id end
local function k_events(id) return base .. '{events}' .. id end
local function k_stream(rank, tenant) return base .. '{stream}' .. rank .. ':' .. tenant end
local function num(x) return string.format('%.0f', x) end
local T = redis.call('TIME')
local NOW = tonumber(T[1]) * 1000 + math.floor(tonumber(T[2]) / 1000)
local NOW_US = tonumber(T[1]) * 1000000 + tonumber(T[2])

local COUNTED = {{queued = true, scheduled = true, retrying = true, running = true, dead = true}}
-- Batch scripts set this to a table: counts then add up in it and `flush_counts` writes each
-- changed field once, instead of two HINCRBYs per task.
local DEFERRED = nil
local WAKE_PENDING = false
local function count(tenant, status, by)
  if COUNTED[status] then
    if DEFERRED then
      local f = status .. '@' .. tenant
      DEFERRED[status] = (DEFERRED[status] or 0) + by
      DEFERRED[f] = (DEFERRED[f] or 0) + by
    else
      redis.call('HINCRBY', K_COUNTS, status, by)
      redis.call('HINCRBY', K_COUNTS, status .. '@' .. tenant, by)
    end
  end
end
local function flush_counts()
  if DEFERRED then
    for f, by in pairs(DEFERRED) do
      if by ~= 0 then redis.call('HINCRBY', K_COUNTS, f, by) end
    end
    DEFERRED = {{}}
  end
  if WAKE_PENDING then
    redis.call('XADD', K_WAKE, 'MAXLEN', '~', '100', '*', 'w', '1')
    WAKE_PENDING = false
  end
end
-- The same escaping as the host's `escape`: a queue name inside a key.
local function escape(name)
  return (string.gsub(string.gsub(string.gsub(name, '%%', '%%25'), '{{', '%%7B'), '}}', '%%7D'))
end
local function move(tenant, from, to)
  count(tenant, from, -1)
  count(tenant, to, 1)
end

local META = {{'status', 'tenant', 'priority', 'entry', 'attempts', 'cancel_requested', 'lease_owner',
              'expires_at', 'progress'}}
local function meta(id)
  local v = redis.call('HMGET', k_task(id), unpack(META))
  if not v[1] then return nil end
  local h = {{}}
  for i, f in ipairs(META) do h[f] = v[i] or nil end
  return h
end

local function append_event(id, etype, data, ts)
  return redis.call('RPUSH', k_events(id), ts .. ' ' .. etype .. ' ' .. data)
end

-- One signal per script: batch scripts send it with `flush_counts`.
local function wake()
  if DEFERRED then
    WAKE_PENDING = true
  else
    redis.call('XADD', K_WAKE, 'MAXLEN', '~', '100', '*', 'w', '1')
  end
end

local function released_score(rank)
  return num(tonumber(rank) * 1e14 + NOW)
end

-- Acknowledges and deletes the task's stream entry: the task no longer waits on it.
local function drop_entry(id, h)
  if h.entry and h.entry ~= '' then
    local s = k_stream(h.priority, h.tenant)
    redis.call('XACK', s, GROUP, h.entry)
    redis.call('XDEL', s, h.entry)
    redis.call('HDEL', k_task(id), 'entry')
  end
end

local function retain(id)
  redis.call('PEXPIRE', k_task(id), RETENTION_MS)
  redis.call('PEXPIRE', k_events(id), RETENTION_MS)
end

-- Ends a task no worker will finish (expired, dead, cancelled) with its terminal event.
local function end_task(id, h, status, kind, message)
  drop_entry(id, h)
  redis.call('ZREM', K_DELAYED, id)
  redis.call('ZREM', K_EXPIRY, id)
  redis.call('ZREM', K_LEASES, id)
  redis.call('ZREM', K_RELEASED, id)
  redis.call('HSET', k_task(id), 'status', status, 'error_kind', kind, 'error_message', message,
             'finished_at', num(NOW))
  redis.call('HDEL', k_task(id), 'lease_owner', 'lease_until')
  move(h.tenant, h.status, status)
  local etype = EV_FAILED
  if status == 'cancelled' then etype = EV_CANCELLED end
  local data = cjson.encode({{status = status, error = {{kind = kind, message = message}}}})
  local seq = append_event(id, etype, data, num(NOW))
  if status == 'dead' then
    redis.call('ZADD', K_DEAD, num(NOW), id)
  else
    retain(id)
  end
  return seq
end

-- Streams this script call has already registered (tenant in K_TENANTS, group created): a
-- batch registers each once. Nothing in a script call removes either.
local REGISTERED = {{}}
-- Appends task `id` to its tenant's stream of its priority; returns the entry's id, which the
-- caller writes to the record (`entry`) with its status `queued`.
local function add_entry(id, tenant, rank)
  local s = k_stream(rank, tenant)
  if not REGISTERED[s] then
    redis.call('SADD', K_TENANTS, tenant)
    if redis.call('EXISTS', s) == 0 then
      redis.call('XGROUP', 'CREATE', s, GROUP, '0', 'MKSTREAM')
    end
    REGISTERED[s] = true
  end
  local entry = redis.call('XADD', s, '*', 'task', id)
  wake()
  return entry
end
-- Appends a waiting task to its tenant's stream of its priority.
local function enqueue(id, tenant, rank)
  redis.call('HSET', k_task(id), 'status', 'queued', 'entry', add_entry(id, tenant, rank))
end

-- Moves a stream entry that no task expects to the dead letters, with the reason.
local function dead_letter(s, entry_id, fields, reason)
  redis.call('XADD', K_DEAD_LETTERS, '*', 'stream', s, 'entry', entry_id, 'reason', reason,
             'fields', cjson.encode(fields), 'at', num(NOW))
  redis.call('XACK', s, GROUP, entry_id)
  redis.call('XDEL', s, entry_id)
  redis.call('HINCRBY', K_COUNTS, 'dead_letters', 1)
end

-- The record of a lease still held by this attempt and worker, or nil.
local function fenced(id, attempt, worker)
  local h = meta(id)
  if h and h.status == 'running' and h.attempts == attempt and h.lease_owner == worker then
    return h
  end
  return nil
end
"#,
        tenants = suffix::TENANTS,
        delayed = suffix::DELAYED,
        expiry = suffix::EXPIRY,
        leases = suffix::LEASES,
        released = suffix::RELEASED,
        dead = suffix::DEAD,
        dead_letters = suffix::DEAD_LETTERS,
        all = suffix::ALL,
        counts = suffix::COUNTS,
        wake = suffix::WAKE,
        weights = suffix::WEIGHTS,
        quotas = suffix::QUOTAS,
        task = suffix::TASK,
        events = suffix::EVENTS,
        stream = suffix::STREAM,
        ev_cancelled = kind::RUN_CANCELLED,
        ev_failed = kind::RUN_FAILED,
        ev_started = kind::RUN_STARTED,
    )
});

/// Arguments per task of the submit script.
const SUBMIT_ARGS: usize = 14;

/// `ARGV[4..]`: per task, [`SUBMIT_ARGS`] arguments: id, tenant, plugin, task_name, queue,
/// input, rank, not_before, expires_at, max_retries, limits, files, then the id's index key and
/// the set of queues, or two empty strings when the host claimed the id itself (on a Cluster the
/// index lives on another node). Returns per task `{'created', created_at, status}`,
/// `{'exists', hgetall}`, or `{'elsewhere', queue}` when the id is already taken by a task of
/// another queue.
const SUBMIT: &str = r#"
-- Queues this call has added to the set of queues.
local QUEUES_ADDED = {}
local function submit(a, nth)
  local id, tenant, queue, rank, nb, ex = ARGV[a], ARGV[a + 1], ARGV[a + 4], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8]
  local index_key = ARGV[a + 12]
  if index_key ~= '' then
    if not redis.call('SET', index_key, queue, 'NX') then
      local existing = redis.call('GET', index_key)
      if existing and existing ~= queue then return {'elsewhere', existing} end
      if not existing then redis.call('SET', index_key, queue) end
    end
    if not QUEUES_ADDED[queue] then
      redis.call('SADD', ARGV[a + 13], queue)
      QUEUES_ADDED[queue] = true
    end
  end
  local t = k_task(id)
  if redis.call('EXISTS', t) == 1 then
    return {'exists', redis.call('HGETALL', t)}
  end
  local status = 'queued'
  if nb ~= '' and tonumber(nb) > NOW then status = 'scheduled' end
  local fields = {'id', id, 'tenant', tenant, 'plugin', ARGV[a + 2], 'task_name', ARGV[a + 3],
                  'queue', queue, 'input', ARGV[a + 5], 'priority', rank, 'max_retries', ARGV[a + 9],
                  'limits', ARGV[a + 10], 'files', ARGV[a + 11], 'status', status, 'progress', '0',
                  'message', '', 'attempts', '0', 'cancel_requested', '0',
                  'created_at', num(NOW), 'created_us', num(NOW_US + nth)}
  if nb ~= '' then
    table.insert(fields, 'not_before')
    table.insert(fields, nb)
  end
  if ex ~= '' then
    table.insert(fields, 'expires_at')
    table.insert(fields, ex)
    redis.call('ZADD', K_EXPIRY, ex, id)
  end
  -- Tasks of one batch keep their order in the listing.
  redis.call('ZADD', K_ALL, num(NOW_US + nth), id)
  count(tenant, status, 1)
  if status == 'scheduled' then
    redis.call('SADD', K_TENANTS, tenant)
    redis.call('ZADD', K_DELAYED, nb, id)
    wake()
  else
    -- The record is written once, with its entry.
    table.insert(fields, 'entry')
    table.insert(fields, add_entry(id, tenant, rank))
  end
  redis.call('HSET', t, unpack(fields))
  return {'created', num(NOW), status}
end

DEFERRED = {}
local out = {}
for a = 4, #ARGV, 14 do
  table.insert(out, submit(a, #out))
end
flush_counts()
return out
"#;

/// `ARGV[4..]`: lease_ms, the key prefix of every queue and the set of queues (two empty
/// strings on a Cluster, where a script sees only its own queue), the id index prefix (empty on
/// a Cluster), the caps (on a Cluster, a JSON object: tenant with a quota → most of its tasks
/// this call may start; otherwise empty), the host's id as JSON (empty: store no `run_started`
/// events), the number n of plugins whose `run_started` the script stores, then per plugin its
/// name, its name as JSON and its limits as JSON, then per idle slot its worker id and that id
/// as JSON. Leases up to one
/// task per worker, in order, and stops at the first worker for which nothing is runnable.
/// Returns `{ended, record...}`: `ended` the ids this call ended, then the record of each task
/// leased as a JSON object of strings, the n-th for the n-th worker; a record whose
/// `run_started` event the script stored has the extra field `_started_seq`, the event's
/// sequence id.
const LEASE: &str = r#"
local lease_ms = tonumber(ARGV[4])
local prefix_all, queues_key, index_prefix = ARGV[5], ARGV[6], ARGV[7]
-- On a Cluster: per tenant with a quota, how many of its tasks may start in this call (the
-- permits free on its own node); the host takes a permit for each one started.
local caps = {}
if ARGV[8] ~= '' then caps = cjson.decode(ARGV[8]) end
local started_host = ARGV[9]
local started_by_plugin = {}
local a = 11
for _ = 1, tonumber(ARGV[10]) do
  started_by_plugin[ARGV[a]] = {ARGV[a + 1], ARGV[a + 2]}
  a = a + 3
end
local workers = {}
for i = a, #ARGV, 2 do table.insert(workers, {ARGV[i], ARGV[i + 1]}) end
local ended = {}
DEFERRED = {}

-- Housekeeping, once per batch.
-- Due start times and retries become waiting tasks.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', num(NOW), 'LIMIT', 0, 100)) do
  redis.call('ZREM', K_DELAYED, id)
  local h = meta(id)
  if h and (h.status == 'scheduled' or h.status == 'retrying') then
    move(h.tenant, h.status, 'queued')
    enqueue(id, h.tenant, h.priority)
  end
end

-- Waiting tasks whose expiry passed end without running.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', '(' .. num(NOW), 'LIMIT', 0, 100)) do
  redis.call('ZREM', K_EXPIRY, id)
  local h = meta(id)
  if h and (h.status == 'queued' or h.status == 'scheduled') then
    end_task(id, h, 'expired', 'expired', 'its expiry time passed before it started')
    table.insert(ended, id)
  end
end

-- Lapsed leases: the task waits again (its entry stays pending), unless it must end.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', '(' .. num(NOW), 'LIMIT', 0, 100)) do
  redis.call('ZREM', K_LEASES, id)
  local h = meta(id)
  if h and h.status == 'running' then
    if h.cancel_requested == '1' then
      end_task(id, h, 'cancelled', 'cancelled', 'cancelled while running; its worker stopped without reporting')
      table.insert(ended, id)
    elseif tonumber(h.attempts) >= MAX_DELIVERIES then
      end_task(id, h, 'dead', 'delivery_count_exceeded', 'delivery count exceeded')
      table.insert(ended, id)
    else
      redis.call('HSET', k_task(id), 'status', 'queued')
      redis.call('HDEL', k_task(id), 'lease_owner', 'lease_until')
      move(h.tenant, 'running', 'queued')
      redis.call('ZADD', K_RELEASED, released_score(h.priority), id)
    end
  end
end

-- Tenant policies: weights give weighted turns, quotas cap the tasks running at once.
local weights, quotas = {}, {}
local wl = redis.call('HGETALL', K_WEIGHTS)
for i = 1, #wl, 2 do weights[wl[i]] = tonumber(wl[i + 1]) end
local ql = redis.call('HGETALL', K_QUOTAS)
for i = 1, #ql, 2 do quotas[ql[i]] = tonumber(ql[i + 1]) end

-- Running tasks of a tenant: in this queue, and on a standalone server in every queue.
local other_counts = nil
local function running_of(tenant)
  local field = 'running@' .. tenant
  local r = tonumber(redis.call('HGET', K_COUNTS, field) or '0') + (DEFERRED[field] or 0)
  if prefix_all ~= '' then
    if not other_counts then
      other_counts = {}
      for _, q in ipairs(redis.call('SMEMBERS', queues_key)) do
        local key = prefix_all .. '{' .. escape(q) .. '}:' .. SUFFIX_COUNTS
        if key ~= K_COUNTS then table.insert(other_counts, key) end
      end
    end
    for _, key in ipairs(other_counts) do
      r = r + tonumber(redis.call('HGET', key, field) or '0')
    end
  end
  return r
end
local started_of = {}
local function allowed(tenant)
  local cap = caps[tenant]
  if cap ~= nil and (started_of[tenant] or 0) >= cap then return false end
  local limit = quotas[tenant]
  return limit == nil or running_of(tenant) < limit
end

-- Weighted turns: tenant i leads w_i turns out of every sum(w), spread out (round r takes every
-- tenant whose weight is at least r).
local tenants = redis.call('SMEMBERS', K_TENANTS)
table.sort(tenants)
local w, most = {}, 1
for i, t in ipairs(tenants) do
  w[i] = math.max(1, math.min(100, math.floor(weights[t] or 1)))
  most = math.max(most, w[i])
end
local leads = {}
for r = 1, most do
  for i = 1, #tenants do
    if w[i] >= r then table.insert(leads, i) end
  end
end

-- A task's whole record as a table, or nil.
local function record_of(id)
  local flat = redis.call('HGETALL', k_task(id))
  if #flat == 0 then return nil end
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end

-- Starts the attempt of task `id`, whose record `h` (from `record_of`) was read in this call;
-- returns the record as it is now, as a JSON object (one string to decode, not 50).
local function start(id, h, worker)
  local until_ms = num(NOW + lease_ms)
  local attempts = num((tonumber(h.attempts) or 0) + 1)
  local set = {'status', 'running', 'started_at', num(NOW), 'lease_owner', worker[1],
               'lease_until', until_ms, 'progress', '0', 'message', '', 'attempts', attempts}
  redis.call('HSET', k_task(id), unpack(set))
  redis.call('ZADD', K_LEASES, until_ms, id)
  if h.expires_at then redis.call('ZREM', K_EXPIRY, id) end
  move(h.tenant, 'queued', 'running')
  started_of[h.tenant] = (started_of[h.tenant] or 0) + 1
  for i = 1, #set, 2 do h[set[i]] = set[i + 1] end
  -- The attempt's `run_started`, as the worker would append it, for a task of a plugin named
  -- by the host that asks for no limits of its own (the event shows the plugin's). Not for a
  -- task that must still take a quota permit (a capped tenant on a Cluster): one that finds
  -- none goes back without having run, and the worker appends the event once it holds one.
  if started_host ~= '' and caps[h.tenant] == nil then
    local started = h.plugin and started_by_plugin[h.plugin]
    if started and h.limits == '{}' then
      local data = '{"attempt":' .. attempts .. ',"host":' .. started_host .. ',"limits":' .. started[2] ..
                   ',"plugin":' .. started[1] .. ',"worker":' .. worker[2] .. '}'
      h['_started_seq'] = num(append_event(id, EV_STARTED, data, num(NOW)))
    end
  end
  return cjson.encode(h)
end

local function expired(h)
  return h.expires_at and tonumber(h.expires_at) < NOW
end

-- High first, except on weighted turns: one in 8 looks at normal first, one in 32 at low.
local function ranks(turn)
  if turn % 32 == 31 then return {2, 0, 1} end
  if turn % 8 == 7 then return {1, 0, 2} end
  return {0, 1, 2}
end

local any_released = redis.call('ZCARD', K_RELEASED) > 0
-- Streams found with nothing new for the group: nothing in this call adds to a task stream
-- after the housekeeping above, so later workers of the batch skip them.
local drained = {}
-- Entries read ahead for the workers after this one, per stream: with one tenant and no quota,
-- one XREADGROUP reads for every worker left. `ahead[s]` is {entries, next index}.
local ahead = {}
local workers_left = #workers

-- What a delivered entry asks for: the task's record when it can start now; otherwise the entry
-- is put right here (dead letter, dropped, or its task ended) and nil is returned.
local function runnable(s, entry)
  local entry_id, fields = entry[1], entry[2]
  local id = nil
  if #fields == 2 and fields[1] == 'task' then id = fields[2] end
  local h = nil
  if id then h = record_of(id) end
  if not id then
    dead_letter(s, entry_id, fields, 'not a task entry: expected one field, task')
  elseif not h then
    dead_letter(s, entry_id, fields, 'names an unknown task ' .. id)
  elseif h.entry ~= entry_id then
    dead_letter(s, entry_id, fields, 'task ' .. id .. ' (' .. h.status .. ') does not wait on this entry')
  elseif h.status ~= 'queued' then
    drop_entry(id, h)
  elseif expired(h) then
    end_task(id, h, 'expired', 'expired', 'its expiry time passed before it started')
    table.insert(ended, id)
  else
    return id, h
  end
  return nil
end

-- The next entry of stream `s` for the group, read ahead or now; nil when there is none.
local function next_entry(s, tenant)
  local buffered = ahead[s]
  if buffered and buffered[2] <= #buffered[1] then
    local entry = buffered[1][buffered[2]]
    buffered[2] = buffered[2] + 1
    return entry
  end
  local want = 1
  if #tenants == 1 and quotas[tenant] == nil then want = workers_left end
  local res = redis.pcall('XREADGROUP', 'GROUP', GROUP, workers[#workers - workers_left + 1][1], 'COUNT', want,
                          'STREAMS', s, '>')
  if type(res) == 'table' and res.err then
    -- A stream made by someone else, without our group: adopt it from its start.
    if string.find(res.err, 'NOGROUP', 1, true) and redis.call('EXISTS', s) == 1 then
      redis.call('XGROUP', 'CREATE', s, GROUP, '0')
      return next_entry(s, tenant)
    end
    drained[s] = true
    return nil
  elseif not res then
    drained[s] = true
    return nil
  end
  local entries = res[1][2]
  if #entries > 1 then ahead[s] = {entries, 2} end
  return entries[1]
end

local function pick(worker, turn)
  for _, rank in ipairs(ranks(turn)) do
    -- Tasks handed back at this priority come first: they waited longest.
    if any_released then
      local lo, hi = num(rank * 1e14), '(' .. num((rank + 1) * 1e14)
      for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_RELEASED, lo, hi, 'LIMIT', 0, 100)) do
        local h = record_of(id)
        if not h or h.status ~= 'queued' then
          redis.call('ZREM', K_RELEASED, id)
        elseif allowed(h.tenant) then
          redis.call('ZREM', K_RELEASED, id)
          if h.entry then
            -- The pending entry moves to this worker; this counts a delivery.
            redis.call('XCLAIM', k_stream(h.priority, h.tenant), GROUP, worker[1], 0, h.entry)
          end
          return start(id, h, worker)
        end
      end
    end
    if #tenants > 0 then
      local first = leads[(turn % #leads) + 1] - 1
      for i = 0, #tenants - 1 do
        local tenant = tenants[((first + i) % #tenants) + 1]
        local s = k_stream(rank, tenant)
        while not drained[s] and allowed(tenant) do
          local entry = next_entry(s, tenant)
          if entry then
            local id, h = runnable(s, entry)
            if id then return start(id, h, worker) end
          end
        end
      end
    end
  end
  return nil
end

local out = {ended}
local turn = tonumber(redis.call('HGET', K_COUNTS, 'turn') or '0')
local leased = 0
for _, worker in ipairs(workers) do
  local record = pick(worker, turn + leased)
  if not record then break end
  leased = leased + 1
  workers_left = workers_left - 1
  table.insert(out, record)
end
-- Entries read ahead that no worker took (another priority's turn came first) wait in
-- `released`, whose tasks are taken first.
for s, buffered in pairs(ahead) do
  for i = buffered[2], #buffered[1] do
    local id, h = runnable(s, buffered[1][i])
    if id then
      redis.call('ZADD', K_RELEASED, released_score(h.priority), id)
      WAKE_PENDING = true
    end
  end
end
if leased > 0 then redis.call('HINCRBY', K_COUNTS, 'turn', leased) end
flush_counts()
if index_prefix ~= '' then
  for _, id in ipairs(ended) do redis.call('PEXPIRE', index_prefix .. id, RETENTION_MS) end
end
return out
"#;

/// `ARGV[4..]`: id, attempt, worker, lease_ms. Returns `lost`, `held` or `cancel`.
const RENEW: &str = r#"
local id, worker = ARGV[4], ARGV[6]
local h = fenced(id, ARGV[5], worker)
if not h then return 'lost' end
local until_ms = num(NOW + tonumber(ARGV[7]))
redis.call('HSET', k_task(id), 'lease_until', until_ms)
redis.call('ZADD', K_LEASES, until_ms, id)
if h.entry then
  -- Resets the entry's idle time without counting a delivery.
  redis.call('XCLAIM', k_stream(h.priority, h.tenant), GROUP, worker, 0, h.entry, 'JUSTID')
end
if h.cancel_requested == '1' then return 'cancel' end
return 'held'
"#;

/// `ARGV[4..]`: id, attempt, worker. Returns 1 when released.
const RELEASE: &str = r#"
local id = ARGV[4]
local h = fenced(id, ARGV[5], ARGV[6])
if not h then return 0 end
local t = k_task(id)
redis.call('HSET', t, 'status', 'queued')
redis.call('HINCRBY', t, 'attempts', -1)
redis.call('HDEL', t, 'lease_owner', 'lease_until', 'not_before')
redis.call('ZREM', K_LEASES, id)
redis.call('ZADD', K_RELEASED, released_score(h.priority), id)
move(h.tenant, 'running', 'queued')
wake()
return 1
"#;

/// `KEYS[1]`: a tenant's permits; `ARGV[1]`: its quota. Purges lapsed permits and returns how
/// many are free.
const PERMITS_FREE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now))
return math.max(0, tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1]))
"#;

/// `KEYS[1]`: a tenant's permits; `ARGV`: task id, quota, lease ms. Takes the task's permit,
/// lapsing after the lease, when the task holds one already or one is free: 1; else 0.
const PERMIT_TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now))
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[3])), ARGV[1])
  return 1
end
return 0
"#;

/// `KEYS[1]`: a tenant's permits; `ARGV`: task id, lease ms. The task runs on: its permit
/// lapses after the new lease, even if it had lapsed (and been purged) meanwhile.
const PERMIT_RENEW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
return 1
"#;

/// `ARGV[4]`: the id index prefix (empty on a Cluster, where the host expires the index
/// itself), then 11 arguments per attempt ended: id, attempt, worker, status, result (`\0` for
/// none), error kind (empty for none), error message, retry at (empty for none), event type,
/// event data, event ts. Returns per attempt the sequence id of its event, or 0 when the lease
/// was lost (nothing changed).
const FINISH: &str = r#"
local index_prefix = ARGV[4]
DEFERRED = {}
local out = {}
local woke = false
local quotas = nil
local acked = {}
for i = 5, #ARGV, 11 do
  local id, status, result, kind, retry_at = ARGV[i], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 7]
  local h = fenced(id, ARGV[i + 1], ARGV[i + 2])
  if not h then
    table.insert(out, 0)
  else
    local t = k_task(id)
    local set, del = {'status', status}, {'lease_owner', 'lease_until'}
    if h.entry and h.entry ~= '' then
      -- Acknowledged and deleted: the task no longer waits on its entry.
      local s = k_stream(h.priority, h.tenant)
      redis.call('XACK', s, GROUP, h.entry)
      acked[s] = true
      table.insert(del, 'entry')
    end
    redis.call('ZREM', K_LEASES, id)
    if result ~= '\0' then
      table.insert(set, 'result')
      table.insert(set, result)
    else
      table.insert(del, 'result')
    end
    if kind ~= '' then
      table.insert(set, 'error_kind')
      table.insert(set, kind)
      table.insert(set, 'error_message')
      table.insert(set, ARGV[i + 6])
    else
      table.insert(del, 'error_kind')
      table.insert(del, 'error_message')
    end
    if retry_at ~= '' then
      table.insert(set, 'not_before')
      table.insert(set, retry_at)
      redis.call('ZADD', K_DELAYED, retry_at, id)
      woke = true
    else
      table.insert(set, 'finished_at')
      table.insert(set, num(NOW))
    end
    redis.call('HSET', t, unpack(set))
    redis.call('HDEL', t, unpack(del))
    move(h.tenant, 'running', status)
    -- A tenant with a quota has a slot free again: hosts that passed over its tasks look again.
    if not woke then
      quotas = quotas or redis.call('HKEYS', K_QUOTAS)
      for _, tenant in ipairs(quotas) do
        if tenant == h.tenant then woke = true end
      end
    end
    local seq = append_event(id, ARGV[i + 8], ARGV[i + 9], ARGV[i + 10])
    if status == 'dead' then
      redis.call('ZADD', K_DEAD, num(NOW), id)
    elseif retry_at == '' then
      retain(id)
      if index_prefix ~= '' then redis.call('PEXPIRE', index_prefix .. id, RETENTION_MS) end
    end
    table.insert(out, seq)
  end
end
-- Every entry below a stream's first pending one (or, with none pending, below the group's
-- last delivered one) was delivered and acknowledged: whole nodes of them go at once.
for s in pairs(acked) do
  local minid = nil
  local p = redis.call('XPENDING', s, GROUP, '-', '+', 1)
  if p[1] then
    minid = p[1][1]
  else
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
      local info = {}
      for j = 1, #g, 2 do info[g[j]] = g[j + 1] end
      if info['name'] == GROUP then minid = info['last-delivered-id'] end
    end
  end
  if minid then redis.call('XTRIM', s, 'MINID', '~', minid) end
end
if woke then wake() end
flush_counts()
return out
"#;

/// `ARGV[4..]`: id, attempt, worker, percent, message.
const PROGRESS: &str = r#"
local id = ARGV[4]
local h = fenced(id, ARGV[5], ARGV[6])
if not h then return 0 end
if tonumber(ARGV[7]) > (tonumber(h.progress) or 0) then
  redis.call('HSET', k_task(id), 'progress', ARGV[7])
end
redis.call('HSET', k_task(id), 'message', ARGV[8])
return 1
"#;

/// `ARGV[4..]`: id, tenant (empty for any), event ts, cancel channel, then type and data of the
/// event for a task cancelled before it started, of one cancelled while waiting for a retry, and
/// of a cancel request for a running one, then the two error messages. Returns `{'notfound'}`, `{'finished'}`,
/// `{'cancelled', seq, message}` or `{'requested', seq}`.
const CANCEL: &str = r#"
local id, tenant = ARGV[4], ARGV[5]
local h = meta(id)
if not h or (tenant ~= '' and h.tenant ~= tenant) then return {'notfound'} end
if h.status == 'queued' or h.status == 'scheduled' or h.status == 'retrying' then
  local message, etype, edata = ARGV[14], ARGV[8], ARGV[9]
  if h.status == 'retrying' then message, etype, edata = ARGV[15], ARGV[10], ARGV[11] end
  drop_entry(id, h)
  redis.call('ZREM', K_DELAYED, id)
  redis.call('ZREM', K_EXPIRY, id)
  redis.call('ZREM', K_RELEASED, id)
  redis.call('HSET', k_task(id), 'status', 'cancelled', 'finished_at', num(NOW), 'error_kind', 'cancelled',
             'error_message', message)
  move(h.tenant, h.status, 'cancelled')
  local seq = append_event(id, etype, edata, ARGV[6])
  retain(id)
  return {'cancelled', seq, h.status}
elseif h.status == 'running' then
  redis.call('HSET', k_task(id), 'cancel_requested', '1')
  local seq = append_event(id, ARGV[12], ARGV[13], ARGV[6])
  redis.call('PUBLISH', ARGV[7], id)
  return {'requested', seq}
end
return {'finished'}
"#;

/// `ARGV[4..]`: id, tenant (empty for any). Returns `{'notfound'}`, `{'conflict', status}` or
/// `{'ok', hgetall}`.
const RETRY_DEAD: &str = r#"
local id, tenant = ARGV[4], ARGV[5]
local h = meta(id)
if not h or (tenant ~= '' and h.tenant ~= tenant) then return {'notfound'} end
if h.status ~= 'dead' then return {'conflict', h.status} end
local t = k_task(id)
redis.call('ZREM', K_DEAD, id)
redis.call('HSET', t, 'attempts', '0', 'progress', '0', 'message', '', 'cancel_requested', '0')
redis.call('HDEL', t, 'result', 'error_kind', 'error_message', 'started_at', 'finished_at', 'not_before',
           'lease_owner', 'lease_until')
redis.call('PERSIST', t)
redis.call('PERSIST', k_events(id))
move(h.tenant, 'dead', 'queued')
enqueue(id, h.tenant, h.priority)
return {'ok', redis.call('HGETALL', t)}
"#;

/// `ARGV[4..]`: per task, its id, the number of events n, then type, data and ts of each of
/// the n events (n is at least 1). Returns per task the sequence ids of its events, or an empty
/// list when the task does not exist.
const APPEND_EVENTS: &str = r#"
local out = {}
local i = 4
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  local t = k_task(id)
  local seqs = {}
  -- -2: no such record; -1: no expiry (appending keeps the record's expiry as it is).
  local ttl = redis.call('PTTL', t)
  if ttl ~= -2 then
    for j = 0, n - 1 do
      local b = i + 2 + j * 3
      table.insert(seqs, append_event(id, ARGV[b], ARGV[b + 1], ARGV[b + 2]))
    end
    if ttl > 0 then redis.call('PEXPIRE', k_events(id), ttl) end
  end
  table.insert(out, seqs)
  i = i + 2 + n * 3
end
return out
"#;

/// Returns `{queued, now, first lease deadline or '', first start time or ''}`.
const PEEK: &str = r#"
local queued = tonumber(redis.call('HGET', K_COUNTS, 'queued') or '0')
local l = redis.call('ZRANGE', K_LEASES, 0, 0, 'WITHSCORES')
local d = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
return {queued, num(NOW), l[2] or '', d[2] or ''}
"#;

/// `ARGV[4..]`: consumer idle limit in ms, stranded-after in ms. Forgets listing entries of
/// records that expired (1000 per call, resuming where the last call stopped); takes back
/// (`XAUTOCLAIM`) stream entries pending for longer than stranded-after and puts right what no
/// task expects; removes consumers that hold nothing and have been idle past the limit. Returns
/// `{listing entries forgotten, entries put right, consumers removed}`.
const SWEEP: &str = r#"
local idle_limit, stranded_ms = tonumber(ARGV[4]), tonumber(ARGV[5])
local cursor = redis.call('HGET', K_COUNTS, 'sweep_cursor') or '-inf'
local page = redis.call('ZRANGEBYSCORE', K_ALL, '(' .. cursor, '+inf', 'WITHSCORES', 'LIMIT', 0, 1000)
local forgotten, removed = 0, 0
for i = 1, #page, 2 do
  if redis.call('EXISTS', k_task(page[i])) == 0 then
    redis.call('ZREM', K_ALL, page[i])
    forgotten = forgotten + 1
  end
end
if #page < 2000 then
  redis.call('HDEL', K_COUNTS, 'sweep_cursor')
else
  redis.call('HSET', K_COUNTS, 'sweep_cursor', page[#page])
end
local repaired = 0
-- An entry pending this long belongs to no running attempt (running ones are renewed) unless
-- its task waits in `released`; anything else was stranded (the step that delivered it did not
-- complete as one): the task waits again, or the entry goes to the dead letters.
local function repair(s, entry_id, fields)
  local id = nil
  if #fields == 2 and fields[1] == 'task' then id = fields[2] end
  local h = id and meta(id)
  if not h or h.entry ~= entry_id then
    dead_letter(s, entry_id, fields, 'stranded in the pending entries; no task waits on it')
    repaired = repaired + 1
  elseif h.status == 'queued' then
    if not redis.call('ZSCORE', K_RELEASED, id) then
      redis.call('ZADD', K_RELEASED, released_score(h.priority), id)
      wake()
      repaired = repaired + 1
    end
  elseif h.status ~= 'running' then
    drop_entry(id, h)
    repaired = repaired + 1
  end
end
for _, tenant in ipairs(redis.call('SMEMBERS', K_TENANTS)) do
  for rank = 0, 2 do
    local s = k_stream(rank, tenant)
    local start = '0-0'
    for _ = 1, 10 do
      local claimed = redis.pcall('XAUTOCLAIM', s, GROUP, 'sweeper', stranded_ms, start, 'COUNT', 100)
      if type(claimed) ~= 'table' or claimed.err then break end
      for _, entry in ipairs(claimed[2]) do
        if type(entry) == 'table' and type(entry[2]) == 'table' then repair(s, entry[1], entry[2]) end
      end
      start = claimed[1]
      if start == '0-0' then break end
    end
    local consumers = redis.pcall('XINFO', 'CONSUMERS', s, GROUP)
    if type(consumers) == 'table' and not consumers.err then
      for _, c in ipairs(consumers) do
        local info = {}
        for j = 1, #c, 2 do info[c[j]] = c[j + 1] end
        if tonumber(info['pending']) == 0 and tonumber(info['idle']) >= idle_limit then
          redis.call('XGROUP', 'DELCONSUMER', s, GROUP, info['name'])
          removed = removed + 1
        end
      end
    end
  end
end
return {forgotten, repaired, removed}
"#;

/// Every script, compiled once with the preamble.
struct Scripts {
    /// Permits of a tenant with a quota on a Cluster ([`Keys::permits`]): how many are free.
    permits_free: Script,
    /// Takes (or extends) the permit of one task, if the quota allows.
    permit_take: Script,
    /// Extends the permit of a running task (whatever the count: the task runs).
    permit_renew: Script,
    submit: Script,
    lease: Script,
    renew: Script,
    release: Script,
    finish: Script,
    progress: Script,
    cancel: Script,
    retry_dead: Script,
    append_events: Script,
    peek: Script,
    sweep: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let with_preamble = |body: &str| Script::new(&format!("{}{body}", *PREAMBLE));
    Scripts {
        permits_free: Script::new(PERMITS_FREE),
        permit_take: Script::new(PERMIT_TAKE),
        permit_renew: Script::new(PERMIT_RENEW),
        submit: with_preamble(SUBMIT),
        lease: with_preamble(LEASE),
        renew: with_preamble(RENEW),
        release: with_preamble(RELEASE),
        finish: with_preamble(FINISH),
        progress: with_preamble(PROGRESS),
        cancel: with_preamble(CANCEL),
        retry_dead: with_preamble(RETRY_DEAD),
        append_events: with_preamble(APPEND_EVENTS),
        peek: with_preamble(PEEK),
        sweep: with_preamble(SWEEP),
    }
});

// ---------------------------------------------------------------------------------------------
// Connections

/// The command connection: one standalone server or a Cluster, both reconnecting by themselves.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    /// A plain connection, for blocking reads.
    Plain(MultiplexedConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Plain(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Plain(c) => c.get_db(),
        }
    }
}

/// The arguments of a script call, each encoded as Redis encodes it.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut args: Vec<Vec<u8>> = Vec::new();
        $( args.extend(redis::ToRedisArgs::to_redis_args(&$arg)); )*
        args
    }};
}

/// Where blocking connections come from.
#[derive(Clone)]
enum Dialer {
    Single(Box<Client>),
    Cluster(Box<ClusterClient>),
}

impl Dialer {
    /// A new connection of its own, whose replies may take `patience`.
    async fn dial(&self, patience: Duration, connect_timeout: Duration) -> redis::RedisResult<Conn> {
        match self {
            Dialer::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(patience));
                let conn: MultiplexedConnection =
                    client.get_multiplexed_async_connection_with_config(&config).await?;
                Ok(Conn::Plain(conn))
            }
            Dialer::Cluster(client) => Ok(Conn::Cluster(client.get_async_connection().await?)),
        }
    }
}

/// The dialer for `urls`: a Cluster client when the server says it is one.
async fn connect(config: &RedisConfig) -> Result<(Conn, Dialer, bool), BrokerError> {
    let first = &config.urls[0];
    let client = Client::open(first.as_str())
        .map_err(|e| BrokerError::Storage(format!("invalid Redis URL {}: {e}", redact(first))))?;
    let probe_config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.response_timeout));
    let mut probe = client
        .get_multiplexed_async_connection_with_config(&probe_config)
        .await
        .map_err(|e| BrokerError::Storage(format!("cannot reach Redis at {}: {e}", redact(first))))?;
    let info: String =
        redis::cmd("INFO").arg("server").arg("cluster").query_async(&mut probe).await.map_err(|e| {
            BrokerError::Storage(format!("Redis at {} did not answer INFO: {e}", redact(first)))
        })?;
    check_version(&info)?;
    let cluster = info_field(&info, "cluster_enabled") == Some("1");
    if cluster {
        let build = |response_timeout: Duration| {
            ClusterClient::builder(config.urls.iter().map(String::as_str))
                .connection_timeout(config.connect_timeout)
                .response_timeout(response_timeout)
                .build()
                .map_err(|e| BrokerError::Storage(format!("invalid Redis Cluster settings: {e}")))
        };
        let commands = build(config.response_timeout)?;
        let conn = commands.get_async_connection().await.map_err(|e| {
            BrokerError::Storage(format!("cannot connect to the Redis Cluster at {}: {e}", redact(first)))
        })?;
        let blocking = build(config.wake_block + config.response_timeout)?;
        Ok((Conn::Cluster(conn), Dialer::Cluster(Box::new(blocking)), true))
    } else {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_max_delay(Duration::from_secs(2));
        let manager = client
            .get_connection_manager_with_config(manager_config)
            .await
            .map_err(|e| BrokerError::Storage(format!("cannot reach Redis at {}: {e}", redact(first))))?;
        Ok((Conn::Single(manager), Dialer::Single(Box::new(client)), false))
    }
}

fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| line.strip_prefix(field)?.strip_prefix(':')).map(str::trim)
}

/// Refuses a Redis older than [`MIN_REDIS_VERSION`], naming both versions.
fn check_version(info: &str) -> Result<(), BrokerError> {
    let version = info_field(info, "redis_version").unwrap_or("unknown");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_REDIS_VERSION {
        return Err(BrokerError::Storage(format!(
            "Redis {version} is too old: taskhost needs Redis {}.{} or newer (streams with consumer groups)",
            MIN_REDIS_VERSION.0, MIN_REDIS_VERSION.1
        )));
    }
    Ok(())
}

impl From<redis::RedisError> for BrokerError {
    fn from(e: redis::RedisError) -> Self {
        BrokerError::Storage(format!("redis: {e}"))
    }
}

// ---------------------------------------------------------------------------------------------
// The broker

/// The Redis backend. See the module documentation.
pub struct RedisBroker {
    conn: Conn,
    dialer: Dialer,
    config: RedisConfig,
    keys: Keys,
    cluster: bool,
    /// Counts leases, for the weighted turns of priorities and the turns of tenants and queues.
    turn: AtomicU64,
    /// Leases in a row that found nothing right after [`Broker::wait_for_work`] said work was
    /// waiting; past [`FUTILE_WAKES_TOLERATED`], waiting no longer trusts the count of waiting
    /// tasks (an entry stranded until the next sweep must not make idle workers spin).
    futile_wakes: AtomicU32,
    /// Set when waiting ended because the count said work was waiting.
    promised: AtomicBool,
    /// Task id to queue name: never changes once a task exists.
    queue_of: Arc<Mutex<HashMap<String, String>>>,
    /// What batches need of this broker.
    link: Link,
    /// Concurrent submits, one script call per queue.
    submits: Combiner<SubmitRequest, Result<Vec<Value>, String>>,
    /// Concurrent leases of this host's idle slots, sent as one script call per queue.
    leases: Combiner<LeaseRequest, Result<Option<Lease>, String>>,
    /// Concurrent finishes, one script call per queue.
    finishes: Combiner<FinishRequest, Result<Option<u64>, String>>,
    /// Concurrent appends of events, one script call per queue.
    appends: Combiner<AppendRequest, Result<Option<Vec<u64>>, String>>,
    /// Concurrent looks at when work is due, one script call per queue.
    peeks: Combiner<String, Result<Peek, String>>,
    /// Wakes local waiters when this host made work runnable.
    local_work: Notify,
    /// One blocking watcher per queue waited on.
    watchers: Mutex<HashMap<String, Arc<Notify>>>,
    /// Stops the watchers when the broker goes.
    stop: CancellationToken,
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RedisBroker {
    /// Connects, checks the server's version and whether it is a Cluster. Fails with a clear
    /// message when the URL is wrong or Redis cannot be reached.
    pub async fn connect(config: RedisConfig) -> Result<Self, BrokerError> {
        let (conn, dialer, cluster) = connect(&config).await?;
        let stop = CancellationToken::new();
        tokio::spawn(sweep_periodically(
            conn.clone(),
            Keys::new(&config.prefix),
            config.clone(),
            stop.clone(),
        ));
        let queue_of = Arc::new(Mutex::new(HashMap::new()));
        let link = Link {
            conn: conn.clone(),
            keys: Keys::new(&config.prefix),
            config: Arc::new(config.clone()),
            cluster,
            queue_of: queue_of.clone(),
            started: Arc::default(),
            quotas: Arc::default(),
        };
        Ok(RedisBroker {
            link,
            conn,
            dialer,
            keys: Keys::new(&config.prefix),
            config,
            cluster,
            turn: AtomicU64::new(0),
            futile_wakes: AtomicU32::new(0),
            promised: AtomicBool::new(false),
            queue_of,
            submits: Combiner::new(),
            leases: Combiner::new(),
            finishes: Combiner::new(),
            appends: Combiner::new(),
            peeks: Combiner::new(),
            local_work: Notify::new(),
            watchers: Mutex::new(HashMap::new()),
            stop,
        })
    }

    /// True when connected to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Calls `on_cancel(task_id)` for every cancellation of a running task that any host
    /// publishes, until the broker is dropped, so that the host running it stops it at once rather
    /// than at its next lease renewal. Resubscribes with backoff when the connection drops.
    /// (Classic pub/sub reaches every node of a Cluster, so one subscription suffices.)
    ///
    /// Returns a flag that is true while the subscription is in place (shown by `/readyz`).
    pub fn watch_cancellations(
        &self,
        on_cancel: impl Fn(&str) + Send + Sync + 'static,
    ) -> Arc<std::sync::atomic::AtomicBool> {
        use futures::StreamExt;
        use std::sync::atomic::Ordering;
        let subscribed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = subscribed.clone();
        let (url, channel, stop) =
            (self.config.urls[0].clone(), self.keys.cancel_channel(), self.stop.clone());
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            while !stop.is_cancelled() {
                let connection = async {
                    let mut pubsub = Client::open(url.as_str())?.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    redis::RedisResult::Ok(pubsub)
                }
                .await;
                match connection {
                    Ok(mut pubsub) => {
                        delay = Duration::from_millis(100);
                        flag.store(true, Ordering::Relaxed);
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                message = messages.next() => match message {
                                    Some(message) => {
                                        if let Ok(id) = message.get_payload::<String>() {
                                            on_cancel(&id);
                                        }
                                    }
                                    None => break,
                                },
                            }
                        }
                        flag.store(false, Ordering::Relaxed);
                        tracing::warn!("the cancellation subscription dropped; resubscribing");
                    }
                    Err(error) => tracing::warn!(%error, "cannot subscribe to cancellations; retrying"),
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
        subscribed
    }

    /// The key names of this broker.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The entries of `queue`'s dead-letter stream (foreign or malformed stream entries):
    /// `(entry id, reason)`, oldest first.
    pub async fn dead_letters(&self, queue: &str) -> Result<Vec<(String, String)>, BrokerError> {
        let key = self.keys.of_queue(queue, suffix::DEAD_LETTERS);
        let entries: Vec<(String, HashMap<String, String>)> =
            redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut self.conn.clone()).await?;
        Ok(entries
            .into_iter()
            .map(|(_, fields)| {
                (
                    fields.get("entry").cloned().unwrap_or_default(),
                    fields.get("reason").cloned().unwrap_or_default(),
                )
            })
            .collect())
    }

    /// Runs `script` on `queue`'s node with the common arguments first.
    async fn run<T: FromRedisValue>(
        &self,
        script: &Script,
        queue: &str,
        args: Vec<Vec<u8>>,
    ) -> Result<T, BrokerError> {
        self.link.run(script, queue, args).await
    }

    /// Sweeps every known queue once: forgets listing entries of expired records, takes back
    /// stream entries stranded in the pending lists (`XAUTOCLAIM` past
    /// [`RedisConfig::stranded_after`]) and removes the consumers of hosts long gone. Every host
    /// does this every [`RedisConfig::sweep_interval`]; several hosts at once are harmless.
    pub async fn sweep(&self) -> Result<SweepReport, BrokerError> {
        sweep(&self.conn, &self.keys, &self.config).await
    }

    /// The queue of task `id`, or `None` when no such task is known.
    async fn queue_of(&self, id: &str) -> Result<Option<String>, BrokerError> {
        if let Some(queue) = self.queue_of.lock().ok().and_then(|m| m.get(id).cloned()) {
            return Ok(Some(queue));
        }
        let queue: Option<String> =
            redis::cmd("GET").arg(self.keys.index(id)).query_async(&mut self.conn.clone()).await?;
        if let Some(queue) = &queue {
            self.remember(id, queue);
        }
        Ok(queue)
    }

    fn forget(&self, id: &str) {
        if let Ok(mut map) = self.queue_of.lock() {
            map.remove(id);
        }
    }

    fn remember(&self, id: &str, queue: &str) {
        self.link().remember(id, queue);
    }

    /// What a batch of this broker needs, owned.
    fn link(&self) -> Link {
        self.link.clone()
    }

    /// Lets the id index of finished tasks expire with their records.
    async fn retire_ids(&self, ids: &[String]) {
        let retention = duration_ms(self.config.retention);
        for id in ids {
            let result: redis::RedisResult<i64> = redis::cmd("PEXPIRE")
                .arg(self.keys.index(id))
                .arg(retention)
                .query_async(&mut self.conn.clone())
                .await;
            if let Err(error) = result {
                tracing::warn!(task = %id, %error, "could not set the expiry of a finished task's id");
            }
        }
    }

    /// Claims task id `index` for `queue` (`SET NX`) and registers the queue; returns the queue
    /// the id belongs to (an earlier submission's, when the id was taken).
    async fn claim_id(&self, index: &str, mut queue: String) -> Result<String, BrokerError> {
        let claimed: Option<String> =
            redis::cmd("SET").arg(index).arg(&queue).arg("NX").query_async(&mut self.conn.clone()).await?;
        if claimed.is_none() {
            let existing: Option<String> =
                redis::cmd("GET").arg(index).query_async(&mut self.conn.clone()).await?;
            match existing {
                Some(existing) => queue = existing,
                None => {
                    let _: Option<String> =
                        redis::cmd("SET").arg(index).arg(&queue).query_async(&mut self.conn.clone()).await?;
                }
            }
        }
        let _: i64 = redis::cmd("SADD")
            .arg(self.keys.queues())
            .arg(&queue)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(queue)
    }

    /// The known queues, sorted.
    async fn known_queues(&self) -> Result<Vec<String>, BrokerError> {
        let mut queues: Vec<String> =
            redis::cmd("SMEMBERS").arg(self.keys.queues()).query_async(&mut self.conn.clone()).await?;
        queues.sort();
        Ok(queues)
    }

    /// The notifier of `queue`'s watcher, starting the watcher if needed.
    fn watcher(&self, queue: &str) -> Arc<Notify> {
        let Ok(mut watchers) = self.watchers.lock() else {
            return Arc::new(Notify::new());
        };
        if let Some(notify) = watchers.get(queue) {
            return notify.clone();
        }
        let notify = Arc::new(Notify::new());
        watchers.insert(queue.to_owned(), notify.clone());
        tokio::spawn(watch_queue(
            self.dialer.clone(),
            self.keys.of_queue(queue, suffix::WAKE),
            self.config.clone(),
            notify.clone(),
            self.stop.clone(),
        ));
        notify
    }

    /// Milliseconds until work in `queue` may be runnable: 0 for now, `None` for not known.
    async fn due_in(&self, queue: &str) -> Result<Option<u64>, BrokerError> {
        let link = self.link();
        let (queued, now, lease, delayed) = self
            .peeks
            .call(queue.to_owned(), |queues| peek_batch(link.clone(), queues))
            .await
            .ok_or_else(abandoned)?
            .map_err(BrokerError::Storage)?;
        if queued > 0 {
            return Ok(Some(0));
        }
        let mut due: Option<i64> = None;
        for at in
            [lease.parse::<i64>().ok().map(|l| l + 1), delayed.parse::<i64>().ok()].into_iter().flatten()
        {
            due = Some(due.map_or(at, |d| d.min(at)));
        }
        Ok(due.map(|at| u64::try_from(at - now).unwrap_or(0)))
    }
}

/// Runs `script` on `queue`'s node: `KEYS[1]` routes it, the common arguments come first.
async fn invoke<T: FromRedisValue>(
    conn: &Conn,
    keys: &Keys,
    config: &RedisConfig,
    script: &Script,
    queue: &str,
    args: Vec<Vec<u8>>,
) -> Result<T, BrokerError> {
    let mut invocation = script.prepare_invoke();
    invocation
        .key(keys.of_queue(queue, suffix::COUNTS))
        .arg(keys.queue_base(queue))
        .arg(duration_ms(config.retention))
        .arg(MAX_DELIVERIES);
    for arg in &args {
        invocation.arg(arg.as_slice());
    }
    Ok(invocation.invoke_async(&mut conn.clone()).await?)
}

// ---------------------------------------------------------------------------------------------
// Batching

/// Most requests one batch carries.
const MAX_BATCH: usize = 64;

/// A submit or finish carrying more bytes than this (a large input or result) goes alone rather
/// than in a batch, so that one batch stays small enough not to hold up the others' calls.
const BATCH_ALONE_BYTES: usize = 64 << 10;

/// Coalesces concurrent calls of one kind into batches ("smart batching"): a call joins the
/// requests waiting; whoever gets the turn sends every request waiting at that instant as one
/// batch, and the callers of that batch get their answers without a turn of their own. One
/// batch is in flight at a time, so under load batches grow by themselves, while a lone call
/// goes at once. A batch runs in a task of its own: a caller that gives up does not lose the
/// answers of the others.
struct Combiner<Req, Resp> {
    waiting: Mutex<Vec<(Req, oneshot::Sender<Resp>)>>,
    turn: tokio::sync::Mutex<()>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Combiner<Req, Resp> {
    fn new() -> Self {
        Combiner { waiting: Mutex::new(Vec::new()), turn: tokio::sync::Mutex::new(()) }
    }

    /// Sends `request` in a batch made by `send` (which answers each request of a batch, in
    /// order). `None` when the batch carrying it did not complete.
    async fn call<F, Fut>(&self, request: Req, send: F) -> Option<Resp>
    where
        F: Fn(Vec<Req>) -> Fut,
        Fut: Future<Output = Vec<Resp>> + Send + 'static,
    {
        let (answer, mut answered) = oneshot::channel();
        self.waiting.lock().ok()?.push((request, answer));
        let _turn = self.turn.lock().await;
        loop {
            match answered.try_recv() {
                Ok(response) => return Some(response),
                Err(oneshot::error::TryRecvError::Closed) => return None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<_> = {
                let mut waiting = self.waiting.lock().ok()?;
                let n = waiting.len().min(MAX_BATCH);
                waiting.drain(..n).collect()
            };
            if batch.is_empty() {
                return answered.await.ok();
            }
            let (requests, answers): (Vec<Req>, Vec<oneshot::Sender<Resp>>) = batch.into_iter().unzip();
            let sent = send(requests);
            let _ = tokio::spawn(async move {
                for (answer, response) in answers.into_iter().zip(sent.await) {
                    let _ = answer.send(response);
                }
            })
            .await;
        }
    }
}

/// What a batch needs of the broker, owned, so that it can run in a task of its own.
#[derive(Clone)]
struct Link {
    conn: Conn,
    keys: Keys,
    config: Arc<RedisConfig>,
    cluster: bool,
    queue_of: Arc<Mutex<HashMap<String, String>>>,
    /// What the lease script needs to store `run_started` events ([`Broker::record_run_started`]).
    started: Arc<std::sync::RwLock<Option<Arc<StartedEvents>>>>,
    /// On a Cluster: per queue, its tenants' quotas as last read, and when ([`Link::quotas`]).
    quotas: Arc<Mutex<HashMap<String, (Instant, Quotas)>>>,
}

/// The `run_started` events the lease script stores for this host: the host's id and, per
/// plugin, the limits the event shows, as JSON text for the script and as values for the
/// [`Event`] handed to the worker.
struct StartedEvents {
    host: String,
    limits: HashMap<String, Json>,
    /// The lease script's arguments for them: host id (JSON), n, then name, name (JSON) and
    /// limits (JSON) of each plugin.
    args: Vec<Vec<u8>>,
}

impl StartedEvents {
    fn new(host: &str, plugins: &[(String, Json)]) -> Self {
        let mut args = args![Json::from(host).to_string(), plugins.len()];
        for (name, limits) in plugins {
            args.extend(args![name, Json::from(name.as_str()).to_string(), limits.to_string()]);
        }
        StartedEvents { host: host.to_owned(), limits: plugins.iter().cloned().collect(), args }
    }

    /// The event the lease script stored for `task` (leased by `worker`) with sequence id `seq`.
    fn event(&self, task: &TaskRecord, worker: &str, seq: u64) -> Option<Event> {
        let limits = self.limits.get(&task.plugin)?;
        Some(Event {
            task_id: task.id.clone(),
            seq,
            event_type: kind::RUN_STARTED.to_owned(),
            data: crate::events::run_started_data(
                task.attempts,
                &self.host,
                worker,
                &task.plugin,
                limits.clone(),
            ),
            ts: task.started_at.unwrap_or_else(now_ms),
        })
    }
}

/// Tenant → most tasks running at once, of one queue.
type Quotas = Arc<HashMap<String, u32>>;

/// How long a host trusts the quotas it read of a queue (on a Cluster) before reading them
/// again: the tenants file changes only when a host starts.
const QUOTAS_FRESH_FOR: Duration = Duration::from_secs(1);

impl Link {
    /// On a Cluster, the quotas of `queue`'s tenants (read at most every
    /// [`QUOTAS_FRESH_FOR`]); elsewhere none: the lease script counts every queue itself.
    async fn quotas(&self, queue: &str) -> Result<Quotas, BrokerError> {
        static NONE: LazyLock<Quotas> = LazyLock::new(Quotas::default);
        if !self.cluster {
            return Ok(NONE.clone());
        }
        if let Some((read, quotas)) = self.quotas.lock().ok().and_then(|m| m.get(queue).cloned())
            && read.elapsed() < QUOTAS_FRESH_FOR
        {
            return Ok(quotas);
        }
        let read: HashMap<String, u32> = redis::cmd("HGETALL")
            .arg(self.keys.of_queue(queue, suffix::QUOTAS))
            .query_async(&mut self.conn.clone())
            .await?;
        let read = Arc::new(read);
        if let Ok(mut map) = self.quotas.lock() {
            map.insert(queue.to_owned(), (Instant::now(), read.clone()));
        }
        Ok(read)
    }

    /// Forgets the quotas read (they were just changed).
    fn forget_quotas(&self) {
        if let Ok(mut map) = self.quotas.lock() {
            map.clear();
        }
    }

    /// The quota of `lease`'s tenant when its task holds a permit (on a Cluster).
    async fn permit_quota(&self, lease: &Lease) -> Result<Option<u32>, BrokerError> {
        if !self.cluster {
            return Ok(None);
        }
        Ok(self.quotas(&lease.task.queue).await?.get(&lease.task.tenant).copied())
    }

    /// Returns the permit of `lease`'s task (whose attempt has ended), if it holds one; true if
    /// it did. A permit that cannot be returned now lapses with the lease: the attempt's end is
    /// stored already, so this is logged, not failed.
    async fn drop_permit(&self, lease: &Lease) -> bool {
        let dropped = async {
            if self.permit_quota(lease).await?.is_none() {
                return Ok::<_, BrokerError>(false);
            }
            let _: i64 = redis::cmd("ZREM")
                .arg(self.keys.permits(&lease.task.tenant))
                .arg(&lease.task.id)
                .query_async(&mut self.conn.clone())
                .await?;
            Ok(true)
        };
        dropped.await.unwrap_or_else(|error| {
            tracing::warn!(%error, task = %lease.task.id, "cannot return a quota permit; it lapses with the lease");
            false
        })
    }

    /// Extends the permit of `lease`'s task, if it holds one. One that cannot be extended now
    /// is logged, not failed: the task runs on, and its permit is extended at the next renewal.
    async fn renew_permit(&self, lease: &Lease, lease_ms: Millis) {
        let renewed = async {
            if self.permit_quota(lease).await?.is_none() {
                return Ok::<_, BrokerError>(());
            }
            let _: i64 = SCRIPTS
                .permit_renew
                .key(self.keys.permits(&lease.task.tenant))
                .arg(&lease.task.id)
                .arg(lease_ms + PERMIT_MARGIN_MS)
                .invoke_async(&mut self.conn.clone())
                .await?;
            Ok(())
        };
        if let Err(error) = renewed.await {
            tracing::warn!(%error, task = %lease.task.id, "cannot extend a quota permit; trying again at the next renewal");
        }
    }

    async fn run<T: FromRedisValue>(
        &self,
        script: &Script,
        queue: &str,
        args: Vec<Vec<u8>>,
    ) -> Result<T, BrokerError> {
        invoke(&self.conn, &self.keys, &self.config, script, queue, args).await
    }

    fn remember(&self, id: &str, queue: &str) {
        if let Ok(mut map) = self.queue_of.lock() {
            if map.len() >= QUEUE_CACHE_LIMIT {
                map.clear();
            }
            map.insert(id.to_owned(), queue.to_owned());
        }
    }

    /// On a Cluster the id index lives on another node than the queue: its expiry is set here
    /// (scripts on a standalone server set it themselves).
    async fn retire_ids(&self, ids: &[String]) {
        if !self.cluster || ids.is_empty() {
            return;
        }
        let retention = duration_ms(self.config.retention);
        let expiries = ids.iter().map(|id| {
            let mut conn = self.conn.clone();
            let key = self.keys.index(id);
            async move {
                let result: redis::RedisResult<i64> =
                    redis::cmd("PEXPIRE").arg(&key).arg(retention).query_async(&mut conn).await;
                if let Err(error) = result {
                    tracing::warn!(%key, %error, "could not set the expiry of a finished task's id");
                }
            }
        });
        futures::future::join_all(expiries).await;
    }

    /// The prefix arguments by which scripts on a standalone server reach keys outside the
    /// queue (empty on a Cluster).
    fn standalone(&self, value: String) -> String {
        if self.cluster { String::new() } else { value }
    }
}

/// The next element of a script's reply as `T`; `script` names the script in the error.
fn next_reply<T: FromRedisValue>(
    reply: &mut impl Iterator<Item = Value>,
    script: &str,
) -> Result<T, BrokerError> {
    let value =
        reply.next().ok_or_else(|| BrokerError::Storage(format!("short reply from the {script} script")))?;
    T::from_redis_value(value).map_err(|e| BrokerError::Storage(format!("unexpected {script} reply: {e}")))
}

/// Indexes of a batch's requests, grouped by queue in order of first appearance: one script
/// call per group.
fn group_by_queue<'a>(queues: impl Iterator<Item = &'a str>) -> Vec<(&'a str, Vec<usize>)> {
    let mut by_queue: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, queue) in queues.enumerate() {
        match by_queue.iter_mut().find(|(q, _)| *q == queue) {
            Some((_, members)) => members.push(i),
            None => by_queue.push((queue, vec![i])),
        }
    }
    by_queue
}

/// Hands each request of a batch its own element of its group's reply, or the group's error;
/// `None` where a reply came back short.
fn scatter<T, E: std::fmt::Display>(
    by_queue: &[(&str, Vec<usize>)],
    replies: Vec<Result<Vec<T>, E>>,
    requests: usize,
) -> Vec<Option<Result<T, String>>> {
    let mut answers: Vec<Option<Result<T, String>>> = (0..requests).map(|_| None).collect();
    for ((_, members), reply) in by_queue.iter().zip(replies) {
        match reply {
            Ok(values) => {
                for (&i, value) in members.iter().zip(values) {
                    answers[i] = Some(Ok(value));
                }
            }
            Err(error) => {
                for &i in members {
                    answers[i] = Some(Err(error.to_string()));
                }
            }
        }
    }
    answers
}

/// One task to submit: the submit script's arguments for it, on `queue`.
struct SubmitRequest {
    queue: String,
    args: Vec<Vec<u8>>,
}

/// Submits a batch of tasks: one script call per queue. Each answer is the script's reply for
/// that task.
async fn submit_batch(link: Link, requests: Vec<SubmitRequest>) -> Vec<Result<Vec<Value>, String>> {
    let by_queue = group_by_queue(requests.iter().map(|r| r.queue.as_str()));
    let calls = by_queue.iter().map(|(queue, members)| {
        let args: Vec<Vec<u8>> = members.iter().flat_map(|&i| requests[i].args.iter().cloned()).collect();
        let link = &link;
        async move { link.run::<Vec<Vec<Value>>>(&SCRIPTS.submit, queue, args).await }
    });
    let replies = futures::future::join_all(calls).await;
    scatter(&by_queue, replies, requests.len())
        .into_iter()
        .map(|answer| answer.unwrap_or_else(|| Err("no reply from the submit script".to_owned())))
        .collect()
}

/// One idle slot asking for a task.
struct LeaseRequest {
    worker: String,
    queues: Vec<String>,
    lease_ms: Millis,
    first_queue: usize,
}

/// Leases for a batch of idle slots: one script call per queue tried, each leasing up to one
/// task per slot still without one.
async fn lease_batch(link: Link, requests: Vec<LeaseRequest>) -> Vec<Result<Option<Lease>, String>> {
    let mut answers: Vec<Option<Result<Option<Lease>, String>>> = requests.iter().map(|_| None).collect();
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let same = |g: &(usize, Vec<usize>)| {
            let other = &requests[g.0];
            other.queues == request.queues && other.lease_ms == request.lease_ms
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(group) => group.1.push(i),
            None => groups.push((i, vec![i])),
        }
    }
    for (lead, mut unserved) in groups {
        let LeaseRequest { queues, lease_ms, first_queue, .. } = &requests[lead];
        for queue in queues.iter().cycle().skip(*first_queue).take(queues.len()) {
            while !unserved.is_empty() {
                let workers: Vec<&str> = unserved.iter().map(|&i| requests[i].worker.as_str()).collect();
                match lease_from(&link, queue, *lease_ms, &workers).await {
                    Ok(leases) => {
                        // A slot whose record was undecodable (now dead) tries the queue again.
                        let buried = leases.iter().any(Option::is_none);
                        let mut still = Vec::new();
                        let mut leases = leases.into_iter();
                        for i in unserved.drain(..) {
                            match leases.next().flatten() {
                                Some(lease) => answers[i] = Some(Ok(Some(lease))),
                                None => still.push(i),
                            }
                        }
                        unserved = still;
                        if !buried {
                            break;
                        }
                    }
                    Err(error) => {
                        for &i in &unserved {
                            answers[i] = Some(Err(error.to_string()));
                        }
                        unserved.clear();
                    }
                }
            }
        }
    }
    answers.into_iter().map(|a| a.unwrap_or(Ok(None))).collect()
}

/// One lease script call on `queue` for `workers`: the n-th lease belongs to the n-th worker
/// (`None` for a record that could not be decoded, now in the dead letters).
async fn lease_from(
    link: &Link,
    queue: &str,
    lease_ms: Millis,
    workers: &[&str],
) -> Result<Vec<Option<Lease>>, BrokerError> {
    let started = link.started.read().ok().and_then(|s| s.clone());
    // On a Cluster, the tenants with a quota may start as many tasks as they have permits free.
    // (One call per such tenant, each on its tenant's node, all at once.)
    let quotas = link.quotas(queue).await?;
    let free = futures::future::try_join_all(quotas.iter().map(|(tenant, limit)| async move {
        let free: u32 = SCRIPTS
            .permits_free
            .key(link.keys.permits(tenant))
            .arg(*limit)
            .invoke_async(&mut link.conn.clone())
            .await?;
        Ok::<_, redis::RedisError>((tenant.clone(), Json::from(free)))
    }))
    .await?;
    let caps =
        if free.is_empty() { String::new() } else { Json::Object(free.into_iter().collect()).to_string() };
    let mut args = args![
        lease_ms,
        link.standalone(link.keys.all_queues_prefix()),
        link.standalone(link.keys.queues()),
        link.standalone(link.keys.index_prefix()),
        caps,
    ];
    match &started {
        Some(started) => args.extend(started.args.iter().cloned()),
        None => args.extend(args!["", 0]),
    }
    for worker in workers {
        args.extend(args![worker, Json::from(*worker).to_string()]);
    }
    let reply: Vec<Value> = link.run(&SCRIPTS.lease, queue, args).await?;
    let mut reply = reply.into_iter();
    let ended: Vec<String> =
        reply.next().map(FromRedisValue::from_redis_value).transpose().ok().flatten().unwrap_or_default();
    link.retire_ids(&ended).await;
    let mut leases = Vec::new();
    for (value, worker) in reply.zip(workers) {
        // The script sends each record as one JSON object of strings. Bytes that are not UTF-8
        // (written by someone else) become U+FFFD, and the record is then judged as any other.
        let bytes: Vec<u8> = FromRedisValue::from_redis_value(value)
            .map_err(|e| BrokerError::Storage(format!("unexpected lease reply: {e}")))?;
        let fields: HashMap<String, String> = match serde_json::from_str(&String::from_utf8_lossy(&bytes)) {
            Ok(fields) => fields,
            Err(error) => {
                // Not even an id to bury it by: the lease lapses, and the delivery count ends it.
                tracing::error!(%error, "undecodable record in a lease reply");
                leases.push(None);
                continue;
            }
        };
        match decode_task(&fields) {
            Ok(task) => {
                link.remember(&task.id, queue);
                let seq = fields.get("_started_seq").and_then(|seq| seq.parse::<u64>().ok());
                let started = seq.zip(started.as_ref()).and_then(|(seq, s)| s.event(&task, worker, seq));
                leases.push(Some(Lease {
                    attempt: task.attempts,
                    task,
                    worker: (*worker).to_owned(),
                    started,
                }));
            }
            Err(error) => {
                let id = fields.get("id").cloned().unwrap_or_default();
                let attempt = fields.get("attempts").cloned().unwrap_or_default();
                bury(link, queue, &id, &attempt, worker, format!("undecodable task record: {error}")).await;
                leases.push(None);
            }
        }
    }
    // Each task of a tenant with a quota takes its permit; one that finds none left (another
    // host took the last ones since they were counted) goes back at once.
    for slot in &mut leases {
        let Some(lease) = slot else { continue };
        let Some(limit) = quotas.get(&lease.task.tenant) else { continue };
        let taken: Result<i64, redis::RedisError> = SCRIPTS
            .permit_take
            .key(link.keys.permits(&lease.task.tenant))
            .arg(&lease.task.id)
            .arg(*limit)
            .arg(lease_ms + PERMIT_MARGIN_MS)
            .invoke_async(&mut link.conn.clone())
            .await;
        if !matches!(taken, Ok(1)) {
            if let Err(error) = taken {
                tracing::warn!(%error, task = %lease.task.id, "cannot take a quota permit; the task goes back");
            }
            let back: Result<i64, BrokerError> =
                link.run(&SCRIPTS.release, queue, args![lease.task.id, lease.attempt, lease.worker]).await;
            if let Err(error) = back {
                tracing::warn!(%error, task = %lease.task.id, "cannot hand back a task without a quota permit; its lease will lapse");
            }
            *slot = None;
        }
    }
    Ok(leases)
}

/// How much longer than its lease a quota permit lasts: the permit and the lease are timed by
/// the clocks of two Cluster nodes.
const PERMIT_MARGIN_MS: Millis = 1_000;

/// Sends an undecodable leased task to the dead letters, with the reason.
async fn bury(link: &Link, queue: &str, id: &str, attempt: &str, worker: &str, reason: String) {
    let error = ErrorInfo { kind: "undecodable".to_owned(), message: reason };
    let event = NewEvent::new(kind::RUN_FAILED, serde_json::json!({"status": "dead", "error": error}));
    let request = FinishRequest {
        queue: queue.to_owned(),
        id: id.to_owned(),
        attempt: attempt.to_owned(),
        worker: worker.to_owned(),
        status: TaskStatus::Dead,
        result: None,
        error: Some(error.clone()),
        retry_at: None,
        event_type: event.event_type,
        data: event.data.to_string(),
        ts: event.ts,
    };
    match finish_batch(link.clone(), vec![request]).await.pop() {
        Some(Ok(_)) => {
            tracing::warn!(task = %id, reason = %error.message, "undecodable task sent to the dead letters")
        }
        Some(Err(e)) => tracing::warn!(task = %id, error = %e, "could not bury an undecodable task"),
        None => {}
    }
}

/// One attempt's end, as the finish script takes it.
struct FinishRequest {
    queue: String,
    id: String,
    attempt: String,
    worker: String,
    status: TaskStatus,
    result: Option<String>,
    error: Option<ErrorInfo>,
    retry_at: Option<Millis>,
    event_type: String,
    data: String,
    ts: Millis,
}

/// Ends a batch of attempts: one script call per queue (the queues' calls at once). Each
/// answer is the sequence id of the stored event, or `None` when the lease was lost.
async fn finish_batch(link: Link, requests: Vec<FinishRequest>) -> Vec<Result<Option<u64>, String>> {
    let by_queue = group_by_queue(requests.iter().map(|r| r.queue.as_str()));
    let index_prefix = link.standalone(link.keys.index_prefix());
    let calls = by_queue.iter().map(|(queue, members)| {
        let mut args = args![index_prefix];
        for &i in members {
            let r = &requests[i];
            args.extend(args![
                r.id,
                r.attempt,
                r.worker,
                r.status.as_str(),
                r.result.as_deref().unwrap_or("\0"),
                r.error.as_ref().map_or("", |e| e.kind.as_str()),
                r.error.as_ref().map_or("", |e| e.message.as_str()),
                r.retry_at.map(|t| t.to_string()).unwrap_or_default(),
                r.event_type,
                r.data,
                r.ts,
            ]);
        }
        let link = &link;
        async move { link.run::<Vec<u64>>(&SCRIPTS.finish, queue, args).await }
    });
    let replies = futures::future::join_all(calls).await;
    let answers: Vec<Result<Option<u64>, String>> = scatter(&by_queue, replies, requests.len())
        .into_iter()
        .map(|answer| answer.unwrap_or(Ok(0)).map(|seq| (seq > 0).then_some(seq)))
        .collect();
    let retired: Vec<String> = requests
        .iter()
        .zip(&answers)
        .filter(|(r, answer)| {
            matches!(answer, Ok(Some(_))) && r.retry_at.is_none() && r.status != TaskStatus::Dead
        })
        .map(|(r, _)| r.id.clone())
        .collect();
    link.retire_ids(&retired).await;
    answers
}

/// An event as the scripts store it in a task's list: `<ts> <type> <data>` (a type has no
/// spaces), at index seq - 1.
fn decode_event(task_id: &str, seq: u64, stored: &str) -> Option<Event> {
    let mut parts = stored.splitn(3, ' ');
    let ts = parts.next()?.parse().ok()?;
    let event_type = parts.next()?.to_owned();
    let data = serde_json::from_str::<Json>(parts.next()?).ok()?;
    Some(Event { task_id: task_id.to_owned(), seq, event_type, data, ts })
}

/// Events to append to one task.
struct AppendRequest {
    queue: String,
    task_id: String,
    events: Vec<(String, String, Millis)>,
}

/// Appends the events of a batch of tasks: one script call per queue. Each answer is the
/// sequence ids given, or `None` when the task does not exist.
async fn append_batch(link: Link, requests: Vec<AppendRequest>) -> Vec<Result<Option<Vec<u64>>, String>> {
    let by_queue = group_by_queue(requests.iter().map(|r| r.queue.as_str()));
    let calls = by_queue.iter().map(|(queue, members)| {
        let mut args = Vec::new();
        for &i in members {
            let r = &requests[i];
            args.extend(args![r.task_id, r.events.len()]);
            for (event_type, data, ts) in &r.events {
                args.extend(args![event_type, data, ts]);
            }
        }
        let link = &link;
        async move { link.run::<Vec<Vec<u64>>>(&SCRIPTS.append_events, queue, args).await }
    });
    let replies = futures::future::join_all(calls).await;
    let answers: Vec<Result<Option<Vec<u64>>, String>> = scatter(&by_queue, replies, requests.len())
        .into_iter()
        .map(|answer| answer.unwrap_or(Ok(Vec::new())).map(|seqs| (!seqs.is_empty()).then_some(seqs)))
        .collect();
    answers
}

/// What the peek script says of a queue: waiting tasks, the server's clock, the first lease
/// deadline and the first start time.
type Peek = (i64, i64, String, String);

/// Peeks at each queue of a batch once.
async fn peek_batch(link: Link, queues: Vec<String>) -> Vec<Result<Peek, String>> {
    let mut distinct: Vec<&str> = queues.iter().map(String::as_str).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let calls = distinct.iter().map(|queue| link.run::<Peek>(&SCRIPTS.peek, queue, Vec::new()));
    let replies: Vec<Result<Peek, String>> =
        futures::future::join_all(calls).await.into_iter().map(|r| r.map_err(|e| e.to_string())).collect();
    queues
        .iter()
        .map(|q| {
            let at = distinct.binary_search(&q.as_str()).unwrap_or(0);
            replies.get(at).cloned().unwrap_or_else(|| Err("no peek reply".to_owned()))
        })
        .collect()
}

/// A batch that did not complete, as the callers of [`Combiner::call`] see it.
fn abandoned() -> BrokerError {
    BrokerError::Storage("the batch carrying this call did not complete".to_owned())
}

/// What one [`RedisBroker::sweep`] did, over every queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Listing entries of records that expired, forgotten.
    pub forgotten: u64,
    /// Stranded pending entries put right: their task waits again, the entry of a finished task
    /// is deleted, or an entry no task expects went to the dead letters.
    pub repaired: u64,
    /// Idle consumers without pending entries, removed.
    pub consumers_removed: u64,
}

/// See [`RedisBroker::sweep`].
async fn sweep(conn: &Conn, keys: &Keys, config: &RedisConfig) -> Result<SweepReport, BrokerError> {
    let mut queues: Vec<String> =
        redis::cmd("SMEMBERS").arg(keys.queues()).query_async(&mut conn.clone()).await?;
    queues.sort();
    let mut report = SweepReport::default();
    for queue in queues {
        let (forgotten, repaired, removed): (u64, u64, u64) = invoke(
            conn,
            keys,
            config,
            &SCRIPTS.sweep,
            &queue,
            args![duration_ms(config.consumer_idle_limit), duration_ms(config.stranded_after)],
        )
        .await?;
        report.forgotten += forgotten;
        report.repaired += repaired;
        report.consumers_removed += removed;
    }
    Ok(report)
}

async fn sweep_periodically(conn: Conn, keys: Keys, config: RedisConfig, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(config.sweep_interval) => {}
            () = stop.cancelled() => return,
        }
        match sweep(&conn, &keys, &config).await {
            Ok(report) if report.repaired > 0 => {
                tracing::warn!(?report, "swept the Redis queues: repaired stranded entries")
            }
            Ok(report) => tracing::debug!(?report, "swept the Redis queues"),
            Err(error) => tracing::warn!(%error, "sweeping the Redis queues failed; trying again later"),
        }
    }
}

/// Blocks on a queue's wake stream and wakes the local waiters whenever something is appended.
async fn watch_queue(
    dialer: Dialer,
    key: String,
    config: RedisConfig,
    notify: Arc<Notify>,
    stop: CancellationToken,
) {
    let block_ms = duration_ms(config.wake_block);
    let patience = config.wake_block + config.response_timeout;
    let mut backoff = Duration::from_millis(100);
    'connect: while !stop.is_cancelled() {
        let mut conn = match dialer.dial(patience, config.connect_timeout).await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot open the blocking Redis connection");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let latest: redis::RedisResult<Vec<(String, HashMap<String, String>)>> = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await;
        let mut last = match latest {
            Ok(entries) => entries.into_iter().next().map_or_else(|| "0-0".to_owned(), |(id, _)| id),
            Err(_) => continue 'connect,
        };
        backoff = Duration::from_millis(100);
        // Something may have been appended between a waiter's look and this snapshot.
        notify.notify_waiters();
        loop {
            let mut xread = redis::cmd("XREAD");
            xread.arg("BLOCK").arg(block_ms).arg("COUNT").arg(100).arg("STREAMS").arg(&key).arg(&last);
            let read = xread.query_async::<Value>(&mut conn);
            let read = tokio::select! {
                read = read => read,
                () = stop.cancelled() => return,
            };
            match read {
                Ok(Value::Nil) => {}
                Ok(value) => {
                    if let Some(id) = last_stream_id(value) {
                        last = id;
                    }
                    notify.notify_waiters();
                }
                Err(error) => {
                    tracing::warn!(%error, "blocking read of the wake stream failed; reconnecting");
                    notify.notify_waiters();
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue 'connect;
                }
            }
        }
    }
}

/// A stream entry as read: its id and fields.
type StreamEntry = (String, HashMap<String, String>);

/// The id of the last entry in an `XREAD` reply.
fn last_stream_id(value: Value) -> Option<String> {
    let streams: Vec<(String, Vec<StreamEntry>)> = match value {
        Value::Map(pairs) => pairs
            .into_iter()
            .filter_map(|(k, v)| {
                Some((String::from_redis_value(k).ok()?, FromRedisValue::from_redis_value(v).ok()?))
            })
            .collect(),
        other => FromRedisValue::from_redis_value(other).ok()?,
    };
    streams.into_iter().flat_map(|(_, entries)| entries).map(|(id, _)| id).next_back()
}

#[async_trait]
impl Broker for RedisBroker {
    fn backend_name(&self) -> &'static str {
        "redis"
    }

    async fn submit(&self, task: NewTask) -> Result<Submitted, BrokerError> {
        let index = self.keys.index(&task.id);
        let mut queue = task.queue.clone();
        // On a standalone server the script claims the id and registers the queue itself: one
        // round trip. On a Cluster the id's index lives on another node: claimed first.
        let mut claim_in_script = !self.cluster;
        if self.cluster {
            queue = self.claim_id(&index, queue).await?;
        }
        let limits = serde_json::to_string(&task.limits)
            .map_err(|e| BrokerError::Storage(format!("cannot encode limits: {e}")))?;
        let files = serde_json::to_string(&task.files)
            .map_err(|e| BrokerError::Storage(format!("cannot encode files: {e}")))?;
        let link = self.link();
        let reply = loop {
            let (index_arg, queues_arg) =
                if claim_in_script { (index.clone(), self.keys.queues()) } else { Default::default() };
            let args = args![
                task.id,
                task.tenant,
                task.plugin,
                task.task_name,
                queue,
                task.input,
                task.priority.rank(),
                task.not_before.map(|t| t.to_string()).unwrap_or_default(),
                task.expires_at.map(|t| t.to_string()).unwrap_or_default(),
                task.max_retries,
                limits,
                files,
                index_arg,
                queues_arg,
            ];
            debug_assert_eq!(args.len(), SUBMIT_ARGS);
            let request = SubmitRequest { queue: queue.clone(), args };
            let reply = if task.input.len() > BATCH_ALONE_BYTES {
                submit_batch(link.clone(), vec![request]).await.pop().ok_or_else(abandoned)?
            } else {
                self.submits
                    .call(request, |batch| submit_batch(link.clone(), batch))
                    .await
                    .ok_or_else(abandoned)?
            }
            .map_err(BrokerError::Storage)?;
            let outcome = reply.first().cloned().map(String::from_redis_value).transpose().ok().flatten();
            if outcome.as_deref() == Some("elsewhere") {
                // The id is taken by a task of another queue: it lives there.
                queue = reply
                    .get(1)
                    .cloned()
                    .map(String::from_redis_value)
                    .transpose()
                    .ok()
                    .flatten()
                    .ok_or_else(|| {
                        BrokerError::Storage("unexpected reply from the submit script".to_owned())
                    })?;
                claim_in_script = false;
                continue;
            }
            break reply;
        };
        self.remember(&task.id, &queue);
        let mut reply = reply.into_iter();
        let outcome = reply.next().map(String::from_redis_value).transpose().ok().flatten();
        let unexpected = || BrokerError::Storage("unexpected reply from the submit script".to_owned());
        match outcome.as_deref() {
            Some("exists") => {
                let fields: HashMap<String, String> = next_reply(&mut reply, "submit")?;
                let record = decode_task(&fields)?;
                if record.tenant != task.tenant {
                    return Err(BrokerError::Conflict(format!("task id {} is already taken", task.id)));
                }
                Ok(Submitted { task: record, created: false })
            }
            Some("created") => {
                let created_at: Millis = next_reply(&mut reply, "submit")?;
                let status: String = next_reply(&mut reply, "submit")?;
                let status = TaskStatus::parse(&status).ok_or_else(unexpected)?;
                self.local_work.notify_waiters();
                Ok(Submitted { task: new_record(task, queue, status, created_at), created: true })
            }
            _ => Err(unexpected()),
        }
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
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let request = LeaseRequest {
            worker: worker.to_owned(),
            queues: queues.to_vec(),
            lease_ms: duration_ms(lease_for).min(MAX_LEASE_MS),
            first_queue: usize::try_from(turn % queues.len() as u64).unwrap_or(0),
        };
        let link = self.link();
        let leased = self
            .leases
            .call(request, |batch| lease_batch(link.clone(), batch))
            .await
            .ok_or_else(abandoned)?
            .map_err(BrokerError::Storage)?;
        if leased.is_some() {
            self.futile_wakes.store(0, Ordering::Relaxed);
        } else if self.promised.swap(false, Ordering::Relaxed) {
            self.futile_wakes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(leased)
    }

    async fn set_tenant_policies(
        &self,
        queues: &[String],
        policies: &[TenantPolicy],
    ) -> Result<(), BrokerError> {
        for queue in queues {
            let (weights, quotas) =
                (self.keys.of_queue(queue, suffix::WEIGHTS), self.keys.of_queue(queue, suffix::QUOTAS));
            // Both keys carry the queue's tag: one node, one transaction.
            let mut pipe = redis::pipe();
            pipe.atomic().del(&weights).ignore().del(&quotas).ignore();
            for policy in policies {
                if policy.weight != 1 {
                    pipe.hset(&weights, &policy.tenant, policy.weight).ignore();
                }
                if let Some(limit) = policy.concurrent_tasks {
                    pipe.hset(&quotas, &policy.tenant, limit).ignore();
                }
            }
            let _: () = pipe.query_async(&mut self.conn.clone()).await?;
        }
        self.link.forget_quotas();
        Ok(())
    }

    fn record_run_started(&self, host: &str, plugins: &[(String, Json)]) {
        if let Ok(mut started) = self.link.started.write() {
            *started = Some(Arc::new(StartedEvents::new(host, plugins)));
        }
    }

    async fn wait_for_work(&self, queues: &[String], timeout: Duration) {
        let local = self.local_work.notified();
        tokio::pin!(local);
        local.as_mut().enable();
        let remote: Vec<Arc<Notify>> = queues.iter().map(|q| self.watcher(q)).collect();
        let mut remote_waits: Vec<_> = remote.iter().map(|n| Box::pin(n.notified())).collect();
        for wait in &mut remote_waits {
            wait.as_mut().enable();
        }
        let mut wait = timeout;
        for queue in queues {
            match self.due_in(queue).await {
                Ok(Some(0)) if self.futile_wakes.load(Ordering::Relaxed) < FUTILE_WAKES_TOLERATED => {
                    self.promised.store(true, Ordering::Relaxed);
                    return;
                }
                Ok(Some(0)) => {}
                Ok(Some(ms)) => wait = wait.min(Duration::from_millis(ms)),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot read when the next task is due; waiting the full timeout");
                }
            }
        }
        let remote_any = async {
            if remote_waits.is_empty() {
                std::future::pending::<()>().await;
            } else {
                futures::future::select_all(remote_waits).await;
            }
        };
        tokio::select! {
            () = &mut local => {}
            () = remote_any => {}
            () = tokio::time::sleep(wait) => {}
        }
    }

    async fn renew(&self, lease: &Lease, lease_for: Duration) -> Result<LeaseState, BrokerError> {
        let lease_ms = duration_ms(lease_for).min(MAX_LEASE_MS);
        let state: String = self
            .run(
                &SCRIPTS.renew,
                &lease.task.queue,
                args![lease.task.id, lease.attempt, lease.worker, lease_ms],
            )
            .await?;
        let state = match state.as_str() {
            "held" => LeaseState::Held,
            "cancel" => LeaseState::CancelRequested,
            _ => LeaseState::Lost,
        };
        if state != LeaseState::Lost {
            self.link.renew_permit(lease, lease_ms).await;
        }
        Ok(state)
    }

    async fn release(&self, lease: &Lease) -> Result<(), BrokerError> {
        let released: i64 = self
            .run(&SCRIPTS.release, &lease.task.queue, args![lease.task.id, lease.attempt, lease.worker])
            .await?;
        if released == 1 {
            self.link.drop_permit(lease).await;
            self.local_work.notify_waiters();
        }
        Ok(())
    }

    async fn finish(
        &self,
        lease: &Lease,
        finish: Finish,
        event: NewEvent,
    ) -> Result<Option<Event>, BrokerError> {
        let status = finish.status();
        let (result, error, retry_at) = match finish {
            Finish::Succeeded { result } => (Some(result), None, None),
            Finish::Failed(error) | Finish::Cancelled(error) | Finish::Dead(error) => {
                (None, Some(error), None)
            }
            Finish::Retry { error, at } => (None, Some(error), Some(at)),
        };
        let request = FinishRequest {
            queue: lease.task.queue.clone(),
            id: lease.task.id.clone(),
            attempt: lease.attempt.to_string(),
            worker: lease.worker.clone(),
            status,
            result,
            error,
            retry_at,
            event_type: event.event_type.clone(),
            data: event.data.to_string(),
            ts: event.ts,
        };
        let link = self.link();
        let alone = request.result.as_ref().is_some_and(|r| r.len() > BATCH_ALONE_BYTES)
            || request.data.len() > BATCH_ALONE_BYTES;
        let stored = if alone {
            finish_batch(link, vec![request]).await.pop().ok_or_else(abandoned)?
        } else {
            self.finishes
                .call(request, |batch| finish_batch(link.clone(), batch))
                .await
                .ok_or_else(abandoned)?
        }
        .map_err(BrokerError::Storage)?;
        let Some(seq) = stored else { return Ok(None) };
        if self.link.drop_permit(lease).await {
            // A slot of the tenant's quota is free: this host's idle slots look again.
            self.local_work.notify_waiters();
        }
        if retry_at.is_some() {
            self.local_work.notify_waiters();
        }
        Ok(Some(Event {
            task_id: lease.task.id.clone(),
            seq,
            event_type: event.event_type,
            data: event.data,
            ts: event.ts,
        }))
    }

    async fn set_progress(&self, lease: &Lease, percent: f32, message: &str) -> Result<(), BrokerError> {
        let percent = if percent.is_nan() { 0.0 } else { f64::from(percent.clamp(0.0, 100.0)) };
        let _: i64 = self
            .run(
                &SCRIPTS.progress,
                &lease.task.queue,
                args![lease.task.id, lease.attempt, lease.worker, percent.to_string(), message],
            )
            .await?;
        Ok(())
    }

    async fn cancel(
        &self,
        tenant: Option<&str>,
        id: &str,
    ) -> Result<(CancelResult, Option<Event>), BrokerError> {
        let Some(queue) = self.queue_of(id).await? else {
            return Err(BrokerError::NotFound(id.to_owned()));
        };
        let (before_msg, retry_msg) =
            (super::cancel_message(TaskStatus::Queued), super::cancel_message(TaskStatus::Retrying));
        let (before, retry, requested) = (
            super::cancelled_event(before_msg),
            super::cancelled_event(retry_msg),
            super::cancel_requested_event(),
        );
        let reply: Vec<Value> = self
            .run(
                &SCRIPTS.cancel,
                &queue,
                args![
                    id,
                    tenant.unwrap_or(""),
                    requested.ts,
                    self.keys.cancel_channel(),
                    before.event_type,
                    before.data.to_string(),
                    retry.event_type,
                    retry.data.to_string(),
                    requested.event_type,
                    requested.data.to_string(),
                    before_msg,
                    retry_msg
                ],
            )
            .await?;
        let outcome = reply.first().cloned().map(String::from_redis_value).transpose().ok().flatten();
        let seq = reply.get(1).cloned().map(u64::from_redis_value).transpose().ok().flatten();
        let was = reply.get(2).cloned().map(String::from_redis_value).transpose().ok().flatten();
        let stored = |seq: u64, event: &NewEvent| Event {
            task_id: id.to_owned(),
            seq,
            event_type: event.event_type.clone(),
            data: event.data.clone(),
            ts: event.ts,
        };
        match (outcome.as_deref(), seq) {
            (Some("cancelled"), Some(seq)) => {
                self.retire_ids(&[id.to_owned()]).await;
                let event = if was.as_deref() == Some("retrying") { &retry } else { &before };
                Ok((CancelResult::Cancelled, Some(stored(seq, event))))
            }
            (Some("requested"), Some(seq)) => Ok((CancelResult::Requested, Some(stored(seq, &requested)))),
            (Some("finished"), _) => Ok((CancelResult::AlreadyFinished, None)),
            (Some("notfound"), _) => Err(BrokerError::NotFound(id.to_owned())),
            _ => Err(BrokerError::Storage("unexpected reply from the cancel script".to_owned())),
        }
    }

    async fn retry_dead(&self, tenant: Option<&str>, id: &str) -> Result<TaskRecord, BrokerError> {
        let Some(queue) = self.queue_of(id).await? else {
            return Err(BrokerError::NotFound(id.to_owned()));
        };
        let reply: Vec<Value> =
            self.run(&SCRIPTS.retry_dead, &queue, args![id, tenant.unwrap_or("")]).await?;
        let mut reply = reply.into_iter();
        let outcome = reply.next().map(String::from_redis_value).transpose().ok().flatten();
        match outcome.as_deref() {
            Some("ok") => {
                let fields: HashMap<String, String> = next_reply(&mut reply, "retry")?;
                let _: i64 = redis::cmd("PERSIST")
                    .arg(self.keys.index(id))
                    .query_async(&mut self.conn.clone())
                    .await?;
                self.local_work.notify_waiters();
                decode_task(&fields)
            }
            Some("conflict") => {
                let status =
                    reply.next().map(String::from_redis_value).transpose().ok().flatten().unwrap_or_default();
                Err(BrokerError::Conflict(format!(
                    "task {id} is {status}, not dead: only dead tasks can be retried"
                )))
            }
            Some("notfound") => Err(BrokerError::NotFound(id.to_owned())),
            _ => Err(BrokerError::Storage("unexpected reply from the retry script".to_owned())),
        }
    }

    async fn get(&self, tenant: Option<&str>, id: &str) -> Result<Option<TaskRecord>, BrokerError> {
        let mut fields = HashMap::new();
        for _ in 0..2 {
            let Some(queue) = self.queue_of(id).await? else { return Ok(None) };
            fields = redis::cmd("HGETALL")
                .arg(self.keys.task(&queue, id))
                .query_async(&mut self.conn.clone())
                .await?;
            if !fields.is_empty() {
                break;
            }
            // The task expired; its id may since name a new task, perhaps in another queue.
            self.forget(id);
        }
        if fields.is_empty() {
            return Ok(None);
        }
        let task = decode_task(&fields)?;
        Ok(tenant.is_none_or(|t| t == task.tenant).then_some(task))
    }

    async fn list(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, BrokerError> {
        let limit = if filter.limit == 0 { DEFAULT_LIST_LIMIT } else { filter.limit };
        let page = limit.clamp(50, 500);
        let mut found: Vec<(i64, TaskRecord)> = Vec::new();
        for queue in self.known_queues().await? {
            let all = self.keys.of_queue(&queue, suffix::ALL);
            let mut matched = 0;
            let mut start = 0;
            while matched < limit {
                let ids: Vec<(String, f64)> = redis::cmd("ZRANGE")
                    .arg(&all)
                    .arg(start)
                    .arg(start + page - 1)
                    .arg("REV")
                    .arg("WITHSCORES")
                    .query_async(&mut self.conn.clone())
                    .await?;
                if ids.is_empty() {
                    break;
                }
                start += ids.len();
                let mut pipe = redis::pipe();
                for (id, _) in &ids {
                    pipe.cmd("HGETALL").arg(self.keys.task(&queue, id));
                }
                let records: Vec<HashMap<String, String>> = pipe.query_async(&mut self.conn.clone()).await?;
                let mut gone = Vec::new();
                for ((id, created_us), fields) in ids.iter().zip(records) {
                    if fields.is_empty() {
                        gone.push(id.clone());
                        continue;
                    }
                    let task = decode_task(&fields)?;
                    if filter.tenant.as_ref().is_some_and(|t| *t != task.tenant)
                        || filter.status.is_some_and(|s| s != task.status)
                        || filter.plugin.as_ref().is_some_and(|p| *p != task.plugin)
                    {
                        continue;
                    }
                    matched += 1;
                    found.push((*created_us as i64, task));
                    if matched >= limit {
                        break;
                    }
                }
                if !gone.is_empty() {
                    // Records that expired leave the listing too.
                    let _: i64 =
                        redis::cmd("ZREM").arg(&all).arg(&gone).query_async(&mut self.conn.clone()).await?;
                    start -= gone.len();
                }
            }
        }
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.id.cmp(&a.1.id)));
        found.truncate(limit);
        Ok(found.into_iter().map(|(_, task)| task).collect())
    }

    async fn queue_stats(&self, tenant: Option<&str>) -> Result<Vec<QueueStats>, BrokerError> {
        let mut stats = Vec::new();
        for queue in self.known_queues().await? {
            let field = |status: &str| match tenant {
                Some(t) => format!("{status}@{t}"),
                None => status.to_owned(),
            };
            let mut pipe = redis::pipe();
            pipe.cmd("HMGET")
                .arg(self.keys.of_queue(&queue, suffix::COUNTS))
                .arg(field("queued"))
                .arg(field("running"))
                .arg(field("scheduled"))
                .arg(field("retrying"))
                .arg(field("dead"))
                .arg("dead_letters");
            pipe.cmd("SISMEMBER").arg(self.keys.of_queue(&queue, suffix::TENANTS)).arg(tenant.unwrap_or(""));
            let (counts, has_tenant): (Vec<Option<i64>>, bool) =
                pipe.query_async(&mut self.conn.clone()).await?;
            if tenant.is_some() && !has_tenant {
                continue;
            }
            let n = |i: usize| u64::try_from(counts.get(i).copied().flatten().unwrap_or(0)).unwrap_or(0);
            let dead_letters = if tenant.is_none() { n(5) } else { 0 };
            stats.push(QueueStats {
                queue,
                pending: n(0),
                running: n(1),
                scheduled: n(2) + n(3),
                dead: n(4) + dead_letters,
            });
        }
        Ok(stats)
    }

    async fn append_events(&self, task_id: &str, events: Vec<NewEvent>) -> Result<Vec<Event>, BrokerError> {
        let Some(queue) = self.queue_of(task_id).await? else {
            return Err(BrokerError::NotFound(task_id.to_owned()));
        };
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let request = AppendRequest {
            queue,
            task_id: task_id.to_owned(),
            events: events.iter().map(|e| (e.event_type.clone(), e.data.to_string(), e.ts)).collect(),
        };
        let link = self.link();
        let seqs = self
            .appends
            .call(request, |batch| append_batch(link.clone(), batch))
            .await
            .ok_or_else(abandoned)?
            .map_err(BrokerError::Storage)?
            .ok_or_else(|| BrokerError::NotFound(task_id.to_owned()))?;
        if seqs.len() != events.len() {
            return Err(BrokerError::Storage("unexpected reply from the events script".to_owned()));
        }
        Ok(events
            .into_iter()
            .zip(seqs)
            .map(|(event, seq)| Event {
                task_id: task_id.to_owned(),
                seq,
                event_type: event.event_type,
                data: event.data,
                ts: event.ts,
            })
            .collect())
    }

    async fn events_since(&self, task_id: &str, since: u64, limit: usize) -> Result<Vec<Event>, BrokerError> {
        let Some(queue) = self.queue_of(task_id).await? else { return Ok(Vec::new()) };
        let limit = if limit == 0 { DEFAULT_EVENTS_LIMIT } else { limit };
        // One round trip reads both layouts; a task has events in one of them only.
        let first = since.min(i64::MAX as u64) as i64;
        let last = first.saturating_add(limit.min(i64::MAX as usize) as i64 - 1);
        let (listed, legacy): (Vec<String>, Vec<(String, HashMap<String, String>)>) = redis::pipe()
            .cmd("LRANGE")
            .arg(self.keys.events(&queue, task_id))
            .arg(first)
            .arg(last)
            .cmd("XRANGE")
            .arg(self.keys.legacy_events(&queue, task_id))
            .arg(format!("{}-0", since.saturating_add(1)))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await?;
        if legacy.is_empty() {
            return listed
                .iter()
                .zip(since.saturating_add(1)..)
                .map(|(stored, seq)| {
                    decode_event(task_id, seq, stored).ok_or_else(|| {
                        BrokerError::Storage(format!("task {task_id}: undecodable event {seq}"))
                    })
                })
                .collect();
        }
        legacy
            .into_iter()
            .map(|(id, fields)| {
                let seq = id.split('-').next().and_then(|s| s.parse().ok());
                let data = fields.get("data").and_then(|d| serde_json::from_str::<Json>(d).ok());
                let ts = fields.get("ts").and_then(|t| t.parse().ok());
                match (seq, fields.get("type"), data, ts) {
                    (Some(seq), Some(event_type), Some(data), Some(ts)) => Ok(Event {
                        task_id: task_id.to_owned(),
                        seq,
                        event_type: event_type.clone(),
                        data,
                        ts,
                    }),
                    _ => Err(BrokerError::Storage(format!("task {task_id}: undecodable event {id}"))),
                }
            })
            .collect()
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    async fn put_file(&self, tenant: &str, name: &str, content: Vec<u8>) -> Result<FileInfo, BrokerError> {
        use sha2::Digest;
        let info = FileInfo {
            name: name.to_owned(),
            size: content.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(&content)),
            created_at: now_ms(),
        };
        let meta = serde_json::to_string(&info).map_err(|e| BrokerError::Storage(e.to_string()))?;
        // Both keys carry the tenant's tag: one node, one transaction.
        let _: () = redis::pipe()
            .atomic()
            .set(self.keys.file(tenant, name), content)
            .ignore()
            .hset(self.keys.files_meta(tenant), name, meta)
            .ignore()
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(info)
    }

    async fn get_file(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>, BrokerError> {
        Ok(redis::cmd("GET").arg(self.keys.file(tenant, name)).query_async(&mut self.conn.clone()).await?)
    }

    async fn delete_file(&self, tenant: &str, name: &str) -> Result<bool, BrokerError> {
        let (deleted, _): (i64, i64) = redis::pipe()
            .atomic()
            .del(self.keys.file(tenant, name))
            .hdel(self.keys.files_meta(tenant), name)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(deleted > 0)
    }

    async fn list_files(&self, tenant: &str) -> Result<Vec<FileInfo>, BrokerError> {
        let metas: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.files_meta(tenant))
            .query_async(&mut self.conn.clone())
            .await?;
        let mut files: Vec<FileInfo> = metas.values().filter_map(|m| serde_json::from_str(m).ok()).collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    async fn heartbeat(&self, host: &HostInfo, forget_after: Duration) -> Result<(), BrokerError> {
        // One sorted set (score: when to forget) and one hash of the latest heartbeat per host,
        // both single keys: no cross-slot command on a Cluster.
        let info = serde_json::to_string(host).map_err(|e| BrokerError::Storage(e.to_string()))?;
        let forget_at = host.last_seen.saturating_add(duration_ms(forget_after));
        let mut conn = self.conn.clone();
        let _: () =
            redis::cmd("HSET").arg(self.keys.hosts()).arg(&host.id).arg(info).query_async(&mut conn).await?;
        let _: () = redis::cmd("ZADD")
            .arg(self.keys.hosts_seen())
            .arg(forget_at)
            .arg(&host.id)
            .query_async(&mut conn)
            .await?;
        let gone: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.hosts_seen())
            .arg("-inf")
            .arg(now_ms())
            .query_async(&mut conn)
            .await?;
        if !gone.is_empty() {
            let _: () = redis::cmd("HDEL").arg(self.keys.hosts()).arg(&gone).query_async(&mut conn).await?;
            let _: () =
                redis::cmd("ZREM").arg(self.keys.hosts_seen()).arg(&gone).query_async(&mut conn).await?;
        }
        Ok(())
    }

    async fn hosts(&self) -> Result<Vec<HostInfo>, BrokerError> {
        let mut conn = self.conn.clone();
        let live: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.hosts_seen())
            .arg(now_ms())
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        if live.is_empty() {
            return Ok(Vec::new());
        }
        let infos: Vec<Option<String>> =
            redis::cmd("HMGET").arg(self.keys.hosts()).arg(&live).query_async(&mut conn).await?;
        let mut hosts: Vec<HostInfo> =
            infos.into_iter().flatten().filter_map(|i| serde_json::from_str::<HostInfo>(&i).ok()).collect();
        hosts.sort_by_key(|h| std::cmp::Reverse(h.last_seen));
        Ok(hosts)
    }
}

/// The longest lease stored (about 31 years): keeps deadlines finite.
const MAX_LEASE_MS: Millis = 1_000_000_000_000;

fn duration_ms(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// The record of a task just created from `task` (what its hash holds).
fn new_record(task: NewTask, queue: String, status: TaskStatus, created_at: Millis) -> TaskRecord {
    TaskRecord {
        id: task.id,
        tenant: task.tenant,
        plugin: task.plugin,
        task_name: task.task_name,
        queue,
        status,
        priority: task.priority,
        progress: 0.0,
        message: String::new(),
        input: task.input,
        result: None,
        error: None,
        attempts: 0,
        max_retries: task.max_retries,
        limits: task.limits,
        created_at,
        started_at: None,
        finished_at: None,
        not_before: task.not_before,
        expires_at: task.expires_at,
        cancel_requested: false,
        files: task.files,
    }
}

/// A task record from its hash.
fn decode_task(fields: &HashMap<String, String>) -> Result<TaskRecord, BrokerError> {
    let id = fields.get("id").cloned().unwrap_or_default();
    let bad = |field: &str, why: String| BrokerError::Storage(format!("task {id}: field {field}: {why}"));
    let text = |field: &str| fields.get(field).cloned().ok_or_else(|| bad(field, "missing".to_owned()));
    let optional = |field: &str| -> Result<Option<Millis>, BrokerError> {
        match fields.get(field).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|e| bad(field, format!("{e}"))),
        }
    };
    let number = |field: &str| -> Result<u32, BrokerError> {
        text(field)?
            .parse::<i64>()
            .map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX))
            .map_err(|e| bad(field, format!("{e}")))
    };
    let status = text("status")?;
    let status =
        TaskStatus::parse(&status).ok_or_else(|| bad("status", format!("unknown status {status:?}")))?;
    let limits = serde_json::from_str(&text("limits")?).map_err(|e| bad("limits", format!("{e}")))?;
    let error = fields.get("error_kind").map(|kind| ErrorInfo {
        kind: kind.clone(),
        message: fields.get("error_message").cloned().unwrap_or_default(),
    });
    Ok(TaskRecord {
        tenant: text("tenant")?,
        plugin: text("plugin")?,
        task_name: text("task_name")?,
        queue: text("queue")?,
        status,
        priority: Priority::from_rank(
            text("priority")?.parse().map_err(|e| bad("priority", format!("{e}")))?,
        ),
        progress: text("progress")?.parse().map_err(|e| bad("progress", format!("{e}")))?,
        message: fields.get("message").cloned().unwrap_or_default(),
        input: text("input")?,
        result: fields.get("result").cloned(),
        error,
        attempts: number("attempts")?,
        max_retries: number("max_retries")?,
        limits,
        created_at: optional("created_at")?.ok_or_else(|| bad("created_at", "missing".to_owned()))?,
        started_at: optional("started_at")?,
        finished_at: optional("finished_at")?,
        not_before: optional("not_before")?,
        expires_at: optional("expires_at")?,
        cancel_requested: fields.get("cancel_requested").is_some_and(|v| v == "1"),
        files: match fields.get("files") {
            Some(f) => serde_json::from_str(f).map_err(|e| bad("files", format!("{e}")))?,
            None => Vec::new(),
        },
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_queue_carries_the_queue_as_its_hash_tag() {
        let keys = Keys::new("th");
        assert_eq!(keys.task("default", "t1"), "th:{default}:task:t1");
        assert_eq!(keys.stream("default", "acme", Priority::High), "th:{default}:s:0:acme");
        assert_eq!(keys.of_queue("default", suffix::COUNTS), "th:{default}:counts");
        assert_eq!(keys.index("t1"), "th:id:t1");
        // Braces in a queue name cannot end the tag early or make two queues share keys.
        assert_eq!(keys.queue_base("a}b{c%"), "th:{a%7Db%7Bc%25}:");
    }

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(redact("redis://user:secret@db:6379/0"), "redis://***@db:6379/0");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn urls_are_checked_before_connecting() {
        assert!(RedisConfig::new("redis://127.0.0.1:6379").is_ok());
        let cluster = RedisConfig::new("redis://a:1, redis://b:2").unwrap();
        assert_eq!(cluster.urls, ["redis://a:1", "redis://b:2"]);
        for bad in ["", "localhost:6379", "http://x", "redis://127.0.0.1:notaport"] {
            let error = RedisConfig::new(bad).expect_err(bad).to_string();
            assert!(error.contains("Redis URL"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_redis_too_old_is_refused_by_name() {
        let error = check_version("# Server\r\nredis_version:5.0.7\r\n").unwrap_err().to_string();
        assert!(error.contains("5.0.7") && error.contains("6.2"), "{error}");
        check_version("redis_version:6.2.0\r\n").unwrap();
        check_version("redis_version:7.0.15\r\ncluster_enabled:1\r\n").unwrap();
    }

    #[test]
    fn a_malformed_record_is_a_storage_error_naming_the_field() {
        let mut fields: HashMap<String, String> = [
            ("id", "t"),
            ("tenant", "acme"),
            ("plugin", "p"),
            ("task_name", "p"),
            ("queue", "default"),
            ("status", "queued"),
            ("priority", "1"),
            ("progress", "0"),
            ("input", "{}"),
            ("attempts", "0"),
            ("max_retries", "3"),
            ("limits", "{}"),
            ("created_at", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(decode_task(&fields).unwrap().status, TaskStatus::Queued);
        fields.insert("status".to_owned(), "bogus".to_owned());
        let error = decode_task(&fields).unwrap_err().to_string();
        assert!(error.contains("task t") && error.contains("status"), "{error}");
    }
}
