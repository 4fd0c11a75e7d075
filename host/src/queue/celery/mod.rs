//! Celery ingress: unmodified Celery producers, `AsyncResult`, `revoke`, `inspect` and Flower,
//! served by taskhost hosts (`host run --redis URL --celery`).
//!
//! This is a *translator*, not a second worker path. Celery messages are turned into ordinary
//! [`NewTask`](crate::queue::NewTask)s in the host's own [`Broker`] (Redis), which runs them like every other task: same
//! sandbox, limits, leases, retries, events and tenants. What the tasks report is turned back into
//! what Celery clients read. Four parts:
//!
//! - [`ingress`] consumes protocol-2 messages from kombu's Redis lists (`Q`, `Q\x06\x163`,
//!   `Q\x06\x166`, `Q\x06\x169`, served in that order). Each message is taken with an atomic
//!   `LMOVE` into a processing list of this host, so that no crash loses it, and removed from there
//!   only after it was submitted (idempotently: the task id is Celery's, so a message handled
//!   twice yields one task). A host's liveness key expires when it dies; any other host then takes
//!   over its processing lists. Malformed messages go to a dead-letter list with the reason.
//! - [`results`] follows the host's [`EventHub`] and writes `celery-task-meta-<id>` as Celery's
//!   Redis backend does (`SETEX` + `PUBLISH` in one atomic step): STARTED, PROGRESS (with the
//!   latest progress and metrics in the meta), RETRY, SUCCESS, FAILURE (an exception `get()`
//!   raises), REVOKED. On success it sends the next step of a chain and the `link` callbacks as
//!   Celery messages; on failure the `link_error` ones. A reconciler catches what the events
//!   cannot show: tasks that expired or were cancelled while waiting, or finished on a host that
//!   missed the event.
//! - [`control`] answers the pidbox (`ping`, `revoke` with `terminate`, `inspect active`,
//!   `stats`, `registered`, `enable_events`, ...) and publishes worker events, and task events
//!   while they are enabled, for Flower. As with a Celery worker (`worker_send_task_events`), task
//!   events are off until `celery control enable_events` (which Flower sends every 5 s) or
//!   `host run --celery-task-events` (Celery's `-E`); they cost a message per task and step.
//! - [`protocol`] is the wire format, pure functions.
//!
//! # How a task is known to come from Celery
//! The Broker trait is unchanged. The ingress writes a small record, `<prefix>:celery:task:<id>`
//! (the Celery name, workflow, group, reply-to), *before* it submits the task; whoever sees the
//! task's events later (this host or another) looks that record up once and caches the answer
//! (the host that submitted it hands its record to its own result writer in memory, which saves
//! that read for the tasks it runs itself). A task without the record is a native one and is left
//! alone. The id also enters
//! `<prefix>:celery:inflight`, a sorted set by next check time that the reconciler walks and that
//! the terminal result write removes it from: whoever removes it sends the follow-ups, so a chain
//! step is sent once even when two paths see the end.
//!
//! # Tenants
//! A Celery queue belongs to a tenant when the tenants file says so (`celery_queues = ["cvd"]` in
//! `[tenants.NAME]`; a queue claimed twice is refused at load). Tasks taken from it are that
//! tenant's: seen with its token only (404 for others), held to its `plugins`/`queues` (a refusal
//! is a `PermissionError` in `get()`), its `fuel`/`memory_mb`/`timeout_ms` caps (a Celery
//! `timelimit` is narrowed by them) and its `concurrent_tasks`. Its `submit_per_sec` does not
//! apply: a Celery producer is not refused, its messages wait in Redis. A follow-up (next chain
//! step, callback) without a queue of its own goes back to the queue of the task it follows, so
//! a workflow stays with its tenant. Without `--celery-queues` a host serves the claimed queues
//! too. Tasks of queues no tenant claims belong to [`DEFAULT_TENANT`], which only the admin sees
//! when a tenants file is loaded.
//!
//! # Keys
//! Besides Celery's own (`celery`, `celery-task-meta-<id>`, `<uuid>.reply.celery.pidbox`), every
//! key is `<prefix>:celery:...`, built by [`Keys`]. Celery (kombu) does not support Redis Cluster,
//! so neither does this: `--celery` needs a standalone Redis, the one named by `--redis`, which must
//! also be the Celery app's broker and result backend (same database).

pub mod control;
pub mod ingress;
pub mod protocol;
pub mod results;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::events::EventHub;
use crate::plugin::PluginRegistry;
use crate::queue::{Broker, Millis};
use crate::tenant::{DEFAULT_TENANT, Tenants};
use crate::worker::RunningTasks;

/// Celery's default queue, always served.
pub const DEFAULT_CELERY_QUEUE: &str = "celery";

/// Celery's default result expiry (`result_expires`).
pub const DEFAULT_RESULT_EXPIRES: Duration = Duration::from_secs(86_400);

/// Tunable timings and sizes of the Celery ingress, declared once.
#[derive(Debug, Clone)]
pub struct CelerySettings {
    /// Most messages taken from a queue in one step.
    pub batch: usize,
    /// How long one blocking wait (`BLMOVE`) on an idle queue's main list lasts. Messages of the
    /// lower priority lists are seen at the latest after this.
    pub idle_block: Duration,
    /// Lifetime of this host's liveness key; a host silent for this long is presumed gone and its
    /// processing lists are taken over.
    pub alive_ttl: Duration,
    /// How often the liveness key is renewed and gone hosts are looked for.
    pub alive_interval: Duration,
    /// Least time between two PROGRESS writes of one task (the last one is always written).
    pub progress_interval: Duration,
    /// A task's STARTED is written once it has run this long without another state written; a
    /// task that ends sooner goes straight to its final state (Celery itself writes STARTED only
    /// with `task_track_started`).
    pub started_after: Duration,
    /// How often the reconciler looks at tasks in flight.
    pub reconcile_interval: Duration,
    /// A task in flight is first checked by the reconciler this long after it was taken.
    pub reconcile_after: Duration,
    /// A finished task whose result was not written this long after it finished is written by
    /// the reconciler.
    pub reconcile_grace: Duration,
    /// How often `worker-heartbeat` is published (Celery's default, 2 s).
    pub heartbeat_interval: Duration,
    /// Wait after a Redis error before trying again.
    pub retry_delay: Duration,
    /// How long a revoked id is remembered, to refuse a message that arrives after its revoke.
    pub revoked_memory: Duration,
}

impl Default for CelerySettings {
    fn default() -> Self {
        CelerySettings {
            batch: 64,
            idle_block: Duration::from_millis(250),
            alive_ttl: Duration::from_secs(15),
            alive_interval: Duration::from_secs(3),
            progress_interval: Duration::from_millis(200),
            started_after: Duration::from_millis(100),
            reconcile_interval: Duration::from_secs(2),
            reconcile_after: Duration::from_secs(10),
            reconcile_grace: Duration::from_secs(3),
            heartbeat_interval: Duration::from_secs(2),
            retry_delay: Duration::from_millis(500),
            revoked_memory: Duration::from_secs(3 * 3600),
        }
    }
}

/// What `host run --celery` configures.
#[derive(Debug, Clone)]
pub struct CeleryConfig {
    /// The Redis URL (Celery's broker and result backend).
    pub redis_url: String,
    /// Prefix of taskhost's own keys (the Redis broker's prefix).
    pub key_prefix: String,
    /// Celery queues consumed.
    pub queues: Vec<String>,
    /// Seconds a result is kept (`SETEX`).
    pub result_expires: Duration,
    /// Tenant of the tasks of each Celery queue; queues not named go to [`DEFAULT_TENANT`].
    pub queue_tenants: BTreeMap<String, String>,
    /// This host's id (as in leases): `<hostname>-<pid>`.
    pub host_id: String,
    /// The machine's name.
    pub hostname: String,
    /// Worker slots, for `stats`.
    pub concurrency: usize,
    /// Send task events (for Flower) from the start, as `celery worker -E`; otherwise only once
    /// a client sends `enable_events`.
    pub task_events: bool,
    /// Largest input accepted, in bytes.
    pub max_input_bytes: usize,
    /// Timings.
    pub settings: CelerySettings,
}

impl CeleryConfig {
    /// A configuration with the defaults for everything but the essentials.
    pub fn new(redis_url: &str, queues: Vec<String>, host_id: &str, hostname: &str) -> Self {
        CeleryConfig {
            redis_url: redis_url.to_owned(),
            key_prefix: "taskhost".to_owned(),
            queues,
            result_expires: DEFAULT_RESULT_EXPIRES,
            queue_tenants: BTreeMap::new(),
            host_id: host_id.to_owned(),
            hostname: hostname.to_owned(),
            concurrency: 1,
            task_events: false,
            max_input_bytes: 1 << 20,
            settings: CelerySettings::default(),
        }
    }

    /// The Celery node name of this host, as `inspect` and Flower show it.
    pub fn nodename(&self) -> String {
        format!("taskhost@{}", self.host_id)
    }

    /// The tenant that owns tasks from `queue`.
    pub fn tenant_for(&self, queue: &str) -> String {
        self.queue_tenants.get(queue).cloned().unwrap_or_else(|| DEFAULT_TENANT.to_owned())
    }
}

/// Why the ingress could not start.
#[derive(Debug, thiserror::Error)]
pub enum CeleryError {
    /// Redis is unreachable or refused a command.
    #[error("Celery ingress: {0}")]
    Redis(String),
    /// The configuration cannot work.
    #[error("Celery ingress: {0}")]
    Config(String),
}

impl From<redis::RedisError> for CeleryError {
    fn from(e: redis::RedisError) -> Self {
        CeleryError::Redis(e.to_string())
    }
}

/// Where a Celery task name leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Plugin name.
    pub plugin: String,
    /// Task name within the plugin (its first).
    pub task_name: String,
    /// taskhost queue the task waits in (the plugin's).
    pub queue: String,
    /// Input fields that positional args map to.
    pub arg_names: Vec<String>,
    /// The plugin's retry budget.
    pub max_retries: u32,
}

/// Celery task names of the loaded plugins.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    by_name: HashMap<String, Route>,
}

impl Routes {
    /// The names in the loaded plugins' `[celery]` tables. A name claimed by two plugins goes to
    /// the first by plugin name (and is logged).
    pub fn from_plugins(plugins: &PluginRegistry) -> Self {
        let mut by_name = HashMap::new();
        for plugin in plugins.iter() {
            let Some(celery) = &plugin.manifest.celery else { continue };
            for name in &celery.names {
                if let Some(existing) = by_name.get(name) {
                    let existing: &Route = existing;
                    tracing::warn!(celery_task = %name, plugin = %plugin.manifest.name, kept = %existing.plugin, "Celery task name claimed twice");
                    continue;
                }
                by_name.insert(
                    name.clone(),
                    Route {
                        plugin: plugin.manifest.name.clone(),
                        task_name: plugin.manifest.tasks[0].clone(),
                        queue: plugin.manifest.queue.clone(),
                        arg_names: celery.args.clone(),
                        max_retries: plugin.manifest.retry.max_retries,
                    },
                );
            }
        }
        Routes { by_name }
    }

    /// Routes given directly (tests).
    pub fn from_routes(routes: impl IntoIterator<Item = (String, Route)>) -> Self {
        Routes { by_name: routes.into_iter().collect() }
    }

    /// The route of a Celery task name.
    pub fn get(&self, name: &str) -> Option<&Route> {
        self.by_name.get(name)
    }

    /// Every Celery task name served, sorted (`inspect registered`).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }

    /// True when no plugin answers to a Celery name.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// The Celery queues served by default: `celery` and the queue of every loaded plugin that has
/// Celery names.
pub fn default_queues(plugins: &PluginRegistry) -> Vec<String> {
    let mut queues = vec![DEFAULT_CELERY_QUEUE.to_owned()];
    for plugin in plugins.iter() {
        if plugin.manifest.celery.as_ref().is_some_and(|c| !c.names.is_empty()) {
            queues.push(plugin.manifest.queue.clone());
        }
    }
    queues.dedup();
    let mut seen = std::collections::HashSet::new();
    queues.retain(|q| seen.insert(q.clone()));
    queues
}

/// Every key of taskhost's own that the ingress uses.
#[derive(Debug, Clone)]
pub struct Keys {
    base: String,
}

impl Keys {
    /// Keys under `<prefix>:celery:`.
    pub fn new(prefix: &str) -> Self {
        Keys { base: format!("{prefix}:celery:") }
    }

    /// String: the Celery record of a task ([`TaskInfo`], JSON).
    pub fn task(&self, id: &str) -> String {
        format!("{}task:{id}", self.base)
    }

    /// Sorted set: Celery task ids whose terminal result is not written yet, by next check time.
    pub fn inflight(&self) -> String {
        format!("{}inflight", self.base)
    }

    /// Sorted set: revoked task ids, by revoke time.
    pub fn revoked(&self) -> String {
        format!("{}revoked", self.base)
    }

    /// String: which host acts on a revoke in the broker (one per id and kind).
    pub fn revoke_claim(&self, id: &str, terminate: bool) -> String {
        format!("{}revoke-claim:{}:{id}", self.base, u8::from(terminate))
    }

    /// Hash: host id → the Celery queues it consumes (JSON list).
    pub fn hosts(&self) -> String {
        format!("{}hosts", self.base)
    }

    /// String with a TTL: present while the host lives.
    pub fn alive(&self, host: &str) -> String {
        format!("{}alive:{host}", self.base)
    }

    /// List: messages a host took from `queue` and has not finished handling.
    pub fn processing(&self, host: &str, queue: &str) -> String {
        format!("{}processing:{host}:{queue}", self.base)
    }

    /// List: messages that could not be handled, with the reason (JSON).
    pub fn dead_letters(&self) -> String {
        format!("{}dead-letters", self.base)
    }

    /// String: held by the host reconciling, for a while.
    pub fn reconcile_lock(&self) -> String {
        format!("{}reconcile-lock", self.base)
    }
}

/// Celery's pub/sub channels and reply lists for one database.
#[derive(Debug, Clone)]
pub struct Channels {
    db: i64,
}

impl Channels {
    /// The pidbox broadcast channel: `/0.celery.pidbox`.
    pub fn pidbox(&self) -> String {
        format!("/{}.celery.pidbox", self.db)
    }

    /// An event channel: `/0.celeryev/worker.heartbeat`.
    pub fn event(&self, routing_key: &str) -> String {
        format!("/{}.celeryev/{routing_key}", self.db)
    }

    /// The list a pidbox reply goes to.
    pub fn reply_list(routing_key: &str) -> String {
        format!("{routing_key}.reply.celery.pidbox")
    }
}

/// What the ingress remembers of a Celery task, stored at [`Keys::task`] before the task is
/// submitted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Celery task name.
    pub name: String,
    /// Celery queue it came from.
    pub celery_queue: String,
    /// `argsrepr`.
    #[serde(default)]
    pub argsrepr: String,
    /// `kwargsrepr`.
    #[serde(default)]
    pub kwargsrepr: String,
    /// `link` signatures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callbacks: Vec<Value>,
    /// `link_error` signatures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errbacks: Vec<Value>,
    /// Rest of the chain, last step first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<Value>,
    /// Group id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Position in the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_index: Option<u64>,
    /// Root of the workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_id: Option<String>,
    /// Parent task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Do not store results.
    #[serde(default)]
    pub ignore_result: bool,
    /// Celery retries so far.
    #[serde(default)]
    pub retries: u32,
    /// `reply_to` of the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// 0-9.
    #[serde(default)]
    pub priority: u8,
    /// When the ingress took it.
    #[serde(default)]
    pub ingested_at: Millis,
}

/// Counters for `stats` and worker heartbeats.
#[derive(Default)]
pub struct Stats {
    /// Celery tasks finished on this host.
    pub processed: AtomicU64,
    /// Finished per Celery task name.
    pub totals: Mutex<BTreeMap<String, u64>>,
    /// Celery's logical clock, as events and replies carry it.
    pub clock: AtomicU64,
}

impl Stats {
    /// The next clock value.
    pub fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a finished task.
    pub fn finished(&self, name: &str) {
        self.processed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut totals) = self.totals.lock() {
            *totals.entry(name.to_owned()).or_default() += 1;
        }
    }
}

/// Everything the parts share.
pub struct Shared {
    /// Configuration.
    pub config: CeleryConfig,
    /// Key names.
    pub keys: Keys,
    /// Channel names.
    pub channels: Channels,
    /// Commands (reconnects by itself).
    pub conn: ConnectionManager,
    /// For connections of their own (blocking reads, pub/sub).
    pub client: Client,
    /// The host's broker.
    pub broker: Arc<dyn Broker>,
    /// The host's events.
    pub hub: EventHub,
    /// Celery names to plugins.
    pub routes: Routes,
    /// Tasks running on this host (to stop them on `revoke(terminate=True)`).
    pub running: Arc<RunningTasks>,
    /// Tenants (for quotas).
    pub tenants: Arc<Tenants>,
    /// Counters.
    pub stats: Stats,
    /// When the ingress started.
    pub started: Instant,
    /// Whether task events are sent (`enable_events` / `disable_events`).
    pub task_events: AtomicBool,
    /// Celery records of the tasks this host's ingress submitted and whose events the result
    /// writer has not seen yet: the writer takes them from here instead of reading them back from
    /// Redis. Bounded by [`INGESTED_LIMIT`] (beyond it the writer reads them from Redis).
    pub ingested: Mutex<HashMap<String, Arc<TaskInfo>>>,
}

/// Most Celery records [`Shared::ingested`] holds; when full it is emptied (tasks that ran on
/// other hosts leave their records there).
pub const INGESTED_LIMIT: usize = 65_536;

impl Shared {
    /// A connection of its own whose replies may take `patience` (for blocking commands).
    pub async fn dedicated(&self, patience: Duration) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(patience));
        self.client.get_multiplexed_async_connection_with_config(&config).await
    }

    /// This host's Celery node name.
    pub fn nodename(&self) -> String {
        self.config.nodename()
    }

    /// True while task events are sent.
    pub fn task_events(&self) -> bool {
        self.task_events.load(Ordering::Relaxed)
    }

    /// Remembers the Celery records of tasks about to be submitted, for the result writer.
    pub fn remember_ingested(&self, records: impl IntoIterator<Item = (String, Arc<TaskInfo>)>) {
        if let Ok(mut ingested) = self.ingested.lock() {
            for (id, info) in records {
                if ingested.len() >= INGESTED_LIMIT {
                    ingested.clear();
                }
                ingested.insert(id, info);
            }
        }
    }

    /// The Celery record of a task this host submitted, taken out of [`Shared::ingested`].
    pub fn take_ingested(&self, id: &str) -> Option<Arc<TaskInfo>> {
        self.ingested.lock().ok().and_then(|mut ingested| ingested.remove(id))
    }
}

/// The running ingress: stop it after the worker has drained, so that the results of tasks that
/// finish during the grace period are still written.
pub struct CeleryIngress {
    shared: Arc<Shared>,
    intake_stop: CancellationToken,
    all_stop: CancellationToken,
    intake: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

/// Starts the Celery ingress. `shutdown` stops the intake (no new messages are taken); the rest
/// runs until [`CeleryIngress::stop`].
pub async fn start(
    config: CeleryConfig,
    broker: Arc<dyn Broker>,
    hub: EventHub,
    routes: Routes,
    running: Arc<RunningTasks>,
    tenants: Arc<Tenants>,
    shutdown: CancellationToken,
) -> Result<CeleryIngress, CeleryError> {
    if config.queues.is_empty() {
        return Err(CeleryError::Config("no Celery queue to consume".into()));
    }
    let client = Client::open(config.redis_url.as_str())
        .map_err(|e| CeleryError::Config(format!("invalid Redis URL: {e}")))?;
    let db = client.get_connection_info().redis_settings().db();
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_max_delay(Duration::from_secs(2));
    let mut conn = client.get_connection_manager_with_config(manager_config).await?;
    let info: String = redis::cmd("INFO").arg("cluster").query_async(&mut conn).await?;
    if info.lines().any(|l| l.trim() == "cluster_enabled:1") {
        return Err(CeleryError::Config(
            "Celery's Redis transport does not support Redis Cluster: give --redis a standalone Redis".into(),
        ));
    }
    let shared = Arc::new(Shared {
        keys: Keys::new(&config.key_prefix),
        task_events: AtomicBool::new(config.task_events),
        channels: Channels { db },
        config,
        conn,
        client,
        broker,
        hub,
        routes,
        running,
        tenants,
        stats: Stats::default(),
        started: Instant::now(),
        ingested: Mutex::new(HashMap::new()),
    });
    let all_stop = CancellationToken::new();
    let intake_stop = shutdown.child_token();
    // Subscribe to events before anything is taken, so that no task's first events are missed.
    let events = shared.hub.subscribe();
    let mut background = vec![
        tokio::spawn(results::write_results(shared.clone(), events, all_stop.clone())),
        tokio::spawn(results::reconcile(shared.clone(), all_stop.clone())),
        tokio::spawn(control::serve_pidbox(shared.clone(), all_stop.clone())),
        tokio::spawn(control::publish_heartbeats(shared.clone(), all_stop.clone())),
    ];
    ingress::register(&shared).await?;
    background.push(tokio::spawn(ingress::keep_alive(shared.clone(), all_stop.clone())));
    let intake = shared
        .config
        .queues
        .iter()
        .map(|queue| tokio::spawn(ingress::consume(shared.clone(), queue.clone(), intake_stop.clone())))
        .collect();
    tracing::info!(
        node = %shared.nodename(),
        queues = %shared.config.queues.join(","),
        tasks = %shared.routes.names().join(","),
        result_expires_secs = shared.config.result_expires.as_secs(),
        "Celery ingress ready"
    );
    Ok(CeleryIngress { shared, intake_stop, all_stop, intake, background })
}

impl CeleryIngress {
    /// The shared state (tests).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops taking messages, lets the result writer catch up with the events already published,
    /// says `worker-offline`, and leaves the ingress's registry.
    pub async fn stop(self) {
        self.intake_stop.cancel();
        for handle in self.intake {
            let _ = handle.await;
        }
        // The writer drains what is already queued on its subscription before it stops.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.all_stop.cancel();
        for handle in self.background {
            let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
        }
        control::publish_worker_event(&self.shared, "worker-offline").await;
        ingress::unregister(&self.shared).await;
        tracing::info!("Celery ingress stopped");
    }
}

/// Milliseconds of a duration, for Redis arguments.
pub(crate) fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}
