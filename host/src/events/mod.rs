//! Events: what a task reports while it runs, stored and fanned out to watchers.
//!
//! Every event has a per-task sequence id assigned by the store (1, 2, 3, ...), a time, a type
//! and JSON data. Storage belongs to the broker backend ([`crate::queue::Broker::append_events`]);
//! this room owns the event model and the in-process fan-out, so that watchers never each hold a
//! connection to the store. One [`EventHub`] per host publishes every event stored through it
//! twice:
//!
//! - on one host-wide channel ([`EventHub::subscribe`]), for the few consumers that want every
//!   task (the Celery result writer, `/ws/events`, `/ws/queue`);
//! - on the task's own channel, which exists only while somebody follows the task
//!   ([`EventHub::follow`]): created by the first follower, dropped with the last. A watcher is
//!   woken only by its own task's events, once per stored batch, and every event carries its wire
//!   text rendered once for all watchers ([`LiveEvent::wire_text`]).
//!
//! Followers join history and live events by sequence id: subscribe to the task's channel first,
//! then read the history from the store, then skip live events already seen and fill any gap (a
//! lagging subscription, events published out of order) from the store. No gap, no duplicate.
//!
//! Some events never pass through this hub: those stored by another host sharing the broker, and
//! the few the broker writes itself (a queued task expiring, a lapsed lease sent to the dead
//! letters). For those, each followed task has one poller per host, not one per watcher: after
//! [`RESYNC_AFTER_QUIET`] without an event on the task's channel it reads the store once after the
//! newest sequence id the host knows and publishes what it finds. A task streaming through this
//! host is never polled; an idle watcher costs a parked task and its ping timer.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::queue::{Broker, BrokerError, HostInfo, Millis, now_ms};

mod queue_stats;
pub use queue_stats::{MAX_AGE as QUEUE_STATS_MAX_AGE, changes_counts};

/// Event types the host itself emits. Plugins emit their own (`metrics_update`, `warning`, ...)
/// but may not use these.
pub mod kind {
    /// An attempt started.
    pub const RUN_STARTED: &str = "run_started";
    /// Progress changed (host-generated from `progress` calls, rate-limited).
    pub const PROGRESS_UPDATE: &str = "progress_update";
    /// A log line from the plugin (or its stdout/stderr).
    pub const LOG: &str = "log";
    /// Terminal: the task succeeded.
    pub const RUN_COMPLETED: &str = "run_completed";
    /// Terminal: the task failed, expired or went to the dead letters.
    pub const RUN_FAILED: &str = "run_failed";
    /// Terminal: the task was cancelled.
    pub const RUN_CANCELLED: &str = "run_cancelled";
    /// Not terminal: an attempt failed and the task will be retried.
    pub const RUN_RETRYING: &str = "run_retrying";
    /// A client asked to cancel a running task.
    pub const CANCEL_REQUESTED: &str = "cancel_requested";
    /// A running task has reported nothing for longer than the stale threshold.
    pub const RUN_STALE: &str = "run_stale";

    /// Types only the host may emit.
    pub const RESERVED: &[&str] = &[
        RUN_STARTED,
        LOG,
        RUN_COMPLETED,
        RUN_FAILED,
        RUN_CANCELLED,
        RUN_RETRYING,
        CANCEL_REQUESTED,
        RUN_STALE,
    ];

    /// True for the types that end a task's stream.
    pub fn is_terminal(kind: &str) -> bool {
        matches!(kind, RUN_COMPLETED | RUN_FAILED | RUN_CANCELLED)
    }
}

/// The data of a `run_started` event: the attempt, the host and worker running it, its plugin and
/// the limits it runs under. One definition for the worker, which appends the event, and the
/// brokers that store it in the step that starts the attempt.
pub fn run_started_data(attempt: u32, host: &str, worker: &str, plugin: &str, limits: Value) -> Value {
    serde_json::json!({"attempt": attempt, "host": host, "worker": worker, "plugin": plugin, "limits": limits})
}

/// An event before the store numbered it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Type, snake_case.
    pub event_type: String,
    /// JSON data.
    pub data: Value,
    /// When it happened.
    pub ts: Millis,
}

impl NewEvent {
    /// An event of `event_type` with `data`, stamped now.
    pub fn new(event_type: impl Into<String>, data: Value) -> Self {
        NewEvent { event_type: event_type.into(), data, ts: now_ms() }
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// The task it belongs to.
    pub task_id: String,
    /// Per-task sequence id, from 1, without gaps.
    pub seq: u64,
    /// Type.
    pub event_type: String,
    /// JSON data.
    pub data: Value,
    /// Milliseconds since the Unix epoch.
    pub ts: Millis,
}

impl Event {
    /// True when this event ends the task's stream.
    pub fn is_terminal(&self) -> bool {
        kind::is_terminal(&self.event_type)
    }
}

/// Capacity of the host-wide channel, in events. A subscriber further behind than this is told
/// it lagged.
const FANOUT_CAPACITY: usize = 4096;

/// Capacity of a task's channel, in stored batches (one per [`EventHub::append`]). A follower
/// further behind than this catches up from the store. Its slots are allocated when the first
/// follower arrives, about 40 bytes each.
const TASK_CHANNEL_CAPACITY: usize = 128;

/// A task's channel that heard nothing for this long has its store read once, for events that
/// did not pass through this hub.
pub const RESYNC_AFTER_QUIET: Duration = Duration::from_secs(2);

/// How many stored events one read fetches.
const HISTORY_PAGE: usize = 500;

/// An event as fanned out in the host: one value shared by every stream that takes it (the
/// followers of its task and the host-wide subscribers), with each of its WebSocket texts rendered
/// by the first stream that sends it.
#[derive(Debug)]
pub struct LiveEvent {
    event: Arc<Event>,
    /// As `/ws/tasks` sends it.
    wire: OnceLock<Utf8Bytes>,
    /// As `/ws/events` sends it (with the task's plugin).
    tagged: OnceLock<Utf8Bytes>,
    /// As `/ws/queue` sends it (a `task_status`).
    status: OnceLock<Utf8Bytes>,
}

impl LiveEvent {
    fn new(event: Arc<Event>) -> Self {
        LiveEvent { event, wire: OnceLock::new(), tagged: OnceLock::new(), status: OnceLock::new() }
    }

    /// The event as `/ws/events` sends it: `render` runs once, as for [`LiveEvent::wire_text`].
    /// What it renders may depend only on the event and its task, the same for every stream.
    pub fn tagged_text(&self, render: impl FnOnce(&Event) -> String) -> Utf8Bytes {
        self.tagged.get_or_init(|| Utf8Bytes::from(render(&self.event))).clone()
    }

    /// The event as `/ws/queue` sends it: `render` runs once, as for [`LiveEvent::wire_text`].
    pub fn status_text(&self, render: impl FnOnce(&Event) -> String) -> Utf8Bytes {
        self.status.get_or_init(|| Utf8Bytes::from(render(&self.event))).clone()
    }

    /// The event.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The event as a WebSocket text message: `render` runs once, for the first caller; every
    /// other caller (every other watcher of the task) gets the same bytes without a copy.
    pub fn wire_text(&self, render: impl FnOnce(&Event) -> String) -> Utf8Bytes {
        self.wire.get_or_init(|| Utf8Bytes::from(render(&self.event))).clone()
    }
}

impl std::ops::Deref for LiveEvent {
    type Target = Event;

    fn deref(&self) -> &Event {
        &self.event
    }
}

/// What a task's channel carries: the events of one store write, in sequence order.
type Batch = Arc<[Arc<LiveEvent>]>;

/// Stores events through the broker and fans them out in-process.
#[derive(Clone)]
pub struct EventHub {
    shared: Arc<HubShared>,
}

struct HubShared {
    broker: Arc<dyn Broker>,
    all: broadcast::Sender<Arc<LiveEvent>>,
    /// The channels of followed tasks. An entry lives as long as a follower holds its channel.
    tasks: Mutex<HashMap<String, Weak<TaskChannel>>>,
    queue_stats: queue_stats::QueueStatsCache,
    /// Who each task belongs to, read once per task for every stream that asks.
    meta: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Option<TaskMeta>>>>>,
    /// The hosts as last read, and when that read started.
    hosts: tokio::sync::Mutex<Option<(Instant, Arc<Vec<HostInfo>>)>>,
}

/// Oldest list of hosts [`EventHub::hosts`] serves. Hosts heartbeat every few seconds, so a list
/// this old tells the same hosts online.
pub const HOSTS_MAX_AGE: Duration = Duration::from_secs(1);

/// What a host-wide stream (`/ws/events`, `/ws/queue`) needs to know of a task to filter and
/// label its events. It never changes, so the hub reads it from the store once per task, for all
/// streams together: a task's first event would otherwise cost one store read per stream, all at
/// the same moment.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMeta {
    /// The tenant that submitted it.
    pub tenant: String,
    /// Its plugin.
    pub plugin: String,
    /// Its task name within the plugin.
    pub task_name: String,
}

/// Tasks whose [`TaskMeta`] the hub keeps; past this the cache starts again empty.
const TASK_META_CAPACITY: usize = 10_000;

impl HubShared {
    fn tasks(&self) -> MutexGuard<'_, HashMap<String, Weak<TaskChannel>>> {
        // The map stays consistent even if a holder panicked: every change is one insert or remove.
        self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl EventHub {
    /// A hub over `broker`'s event storage.
    pub fn new(broker: Arc<dyn Broker>) -> Self {
        let (all, _) = broadcast::channel(FANOUT_CAPACITY);
        let tasks = Mutex::new(HashMap::new());
        let meta = Mutex::new(HashMap::new());
        let hosts = tokio::sync::Mutex::new(None);
        EventHub {
            shared: Arc::new(HubShared { broker, all, tasks, queue_stats: Default::default(), meta, hosts }),
        }
    }

    /// The hosts the store lists, read at most once per [`HOSTS_MAX_AGE`] for every caller: each
    /// `/ws/queue` stream counts the hosts online whenever the queue changes, all at the same
    /// moment, and one read serves them all. Concurrent callers wait for the one read.
    pub async fn hosts(&self) -> Result<Arc<Vec<HostInfo>>, BrokerError> {
        self.hosts_within(HOSTS_MAX_AGE).await
    }

    async fn hosts_within(&self, max_age: Duration) -> Result<Arc<Vec<HostInfo>>, BrokerError> {
        let mut last = self.shared.hosts.lock().await;
        if let Some((taken_at, hosts)) = last.as_ref()
            && taken_at.elapsed() < max_age
        {
            return Ok(hosts.clone());
        }
        let taken_at = Instant::now();
        let hosts = Arc::new(self.shared.broker.hosts().await?);
        *last = Some((taken_at, hosts.clone()));
        Ok(hosts)
    }

    /// Who `task_id` belongs to (`None` for a task the store does not know): read from the store
    /// by the first caller, while any other caller for the same task waits for that read.
    pub async fn task_meta(&self, task_id: &str) -> Option<TaskMeta> {
        let cell = {
            let mut known = self.shared.meta.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if known.len() >= TASK_META_CAPACITY && !known.contains_key(task_id) {
                known.clear();
            }
            known.entry(task_id.to_owned()).or_default().clone()
        };
        let read = cell
            .get_or_try_init(|| async {
                let task = self.shared.broker.get(None, task_id).await?;
                Ok::<_, BrokerError>(task.map(|t| TaskMeta {
                    tenant: t.tenant,
                    plugin: t.plugin,
                    task_name: t.task_name,
                }))
            })
            .await;
        // A failed read is not kept: the next caller tries again.
        read.ok().cloned().flatten()
    }

    /// Stores events for `task_id` and publishes them.
    pub async fn append(&self, task_id: &str, events: Vec<NewEvent>) -> Result<Vec<Event>, BrokerError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let stored = self.shared.broker.append_events(task_id, events).await?;
        self.publish_batch(task_id, stored.iter().cloned().map(Arc::new).collect());
        Ok(stored)
    }

    /// Publishes an event that is already stored (e.g. the terminal event written by
    /// [`crate::queue::Broker::finish`]).
    pub fn publish(&self, event: Event) {
        let task_id = event.task_id.clone();
        self.publish_batch(&task_id, vec![Arc::new(event)]);
    }

    /// Publishes stored events of one task, in order: one message on the task's channel (if it is
    /// followed), one per event on the host-wide channel, sharing each event's rendered texts.
    fn publish_batch(&self, task_id: &str, events: Vec<Arc<Event>>) {
        self.note_count_changes(events.iter().map(|e| e.as_ref()));
        let events: Vec<Arc<LiveEvent>> = events.into_iter().map(|e| Arc::new(LiveEvent::new(e))).collect();
        if let Some(channel) = self.channel_if_followed(task_id) {
            channel.publish(events.clone());
        }
        for event in events {
            // No receivers is normal: nobody is watching.
            let _ = self.shared.all.send(event);
        }
    }

    /// Tells the hub that queue counts changed in a way no event shows (a submission, a retry
    /// from the dead letters): the next [`EventHub::queue_stats`] reads the store.
    pub fn queue_counts_changed(&self) {
        self.shared.queue_stats.changed();
    }

    fn note_count_changes<'a>(&self, events: impl IntoIterator<Item = &'a Event>) {
        if events.into_iter().any(changes_counts) {
            self.shared.queue_stats.changed();
        }
    }

    /// A subscription to every event published on this host from now on, of every task.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.shared.all.subscribe()
    }

    /// Events of `task_id` after `since`, from the store.
    pub async fn history(&self, task_id: &str, since: u64, limit: usize) -> Result<Vec<Event>, BrokerError> {
        self.shared.broker.events_since(task_id, since, limit).await
    }

    /// Follows one task: its history after `since`, then live events, in sequence order without
    /// gaps or duplicates, ending after the terminal event. Call within a Tokio runtime: the first
    /// follower of a task starts the task's poller there.
    pub fn follow(&self, task_id: &str, since: u64) -> TaskFollower {
        let channel = self.channel(task_id);
        let live = channel.live.subscribe();
        TaskFollower {
            hub: self.clone(),
            channel,
            live,
            last_seq: since,
            ready: VecDeque::new(),
            synced: false,
            done: false,
        }
    }

    /// How many tasks have followers on this host.
    pub fn followed_tasks(&self) -> usize {
        self.shared.tasks().values().filter(|c| c.strong_count() > 0).count()
    }

    fn channel_if_followed(&self, task_id: &str) -> Option<Arc<TaskChannel>> {
        self.shared.tasks().get(task_id).and_then(Weak::upgrade)
    }

    /// The task's channel, created (with its poller) if nobody follows the task yet.
    fn channel(&self, task_id: &str) -> Arc<TaskChannel> {
        let mut tasks = self.shared.tasks();
        if let Some(channel) = tasks.get(task_id).and_then(Weak::upgrade) {
            return channel;
        }
        let (live, _) = broadcast::channel(TASK_CHANNEL_CAPACITY);
        let channel = Arc::new(TaskChannel {
            task_id: task_id.to_owned(),
            live,
            known_seq: AtomicU64::new(0),
            last_heard: Mutex::new(Instant::now()),
            hub: Arc::downgrade(&self.shared),
        });
        tasks.insert(task_id.to_owned(), Arc::downgrade(&channel));
        drop(tasks);
        tokio::spawn(poll_when_quiet(self.clone(), Arc::downgrade(&channel)));
        channel
    }
}

/// The fan-out of one followed task.
struct TaskChannel {
    task_id: String,
    live: broadcast::Sender<Batch>,
    /// The newest sequence id this host has published for the task or seen in the store.
    known_seq: AtomicU64,
    /// When the channel last carried an event, or its poller last read the store.
    last_heard: Mutex<Instant>,
    hub: Weak<HubShared>,
}

impl TaskChannel {
    fn publish(&self, batch: Vec<Arc<LiveEvent>>) {
        let Some(newest) = batch.iter().map(|e| e.seq).max() else { return };
        self.known_seq.fetch_max(newest, Ordering::Relaxed);
        self.heard();
        // Every receiver belongs to a follower holding this channel; none left is fine too.
        let _ = self.live.send(batch.into());
    }

    fn heard(&self) {
        *self.last_heard.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
    }

    fn last_heard(&self) -> Instant {
        *self.last_heard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for TaskChannel {
    fn drop(&mut self) {
        let Some(hub) = self.hub.upgrade() else { return };
        let mut tasks = hub.tasks();
        // A new follower may already have put a fresh channel in this entry.
        if tasks.get(&self.task_id).is_some_and(|c| c.strong_count() == 0) {
            tasks.remove(&self.task_id);
        }
    }
}

/// The poller of one followed task: after a quiet spell, reads the store once for events that did
/// not pass through this hub and publishes them to the task's followers. Ends with the channel.
async fn poll_when_quiet(hub: EventHub, channel: Weak<TaskChannel>) {
    loop {
        let Some(due) = channel.upgrade().map(|c| c.last_heard() + RESYNC_AFTER_QUIET) else { return };
        tokio::time::sleep_until(due).await;
        let Some(task) = channel.upgrade() else { return };
        if task.last_heard() + RESYNC_AFTER_QUIET > Instant::now() {
            continue;
        }
        let since = task.known_seq.load(Ordering::Relaxed);
        match hub.history(&task.task_id, since, HISTORY_PAGE).await {
            Ok(stored) if !stored.is_empty() => {
                hub.note_count_changes(&stored);
                task.publish(stored.into_iter().map(|e| Arc::new(LiveEvent::new(Arc::new(e)))).collect());
            }
            Ok(_) => task.heard(),
            Err(error) => {
                tracing::debug!(task = %task.task_id, %error, "reading a followed task's events failed; will retry");
                task.heard();
            }
        }
    }
}

/// An ordered, gapless stream of one task's events; see [`EventHub::follow`].
pub struct TaskFollower {
    hub: EventHub,
    channel: Arc<TaskChannel>,
    live: broadcast::Receiver<Batch>,
    /// The sequence id of the last event returned.
    last_seq: u64,
    /// Events to return next, consecutive from `last_seq + 1`.
    ready: VecDeque<Arc<LiveEvent>>,
    /// False until the store has been read up to date, and again after a gap or a lag.
    synced: bool,
    done: bool,
}

impl TaskFollower {
    /// The sequence id of the last event returned.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The next event, waiting for it if need be; `None` after the terminal event.
    pub async fn next(&mut self) -> Result<Option<Arc<LiveEvent>>, BrokerError> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(event) = self.pop_ready() {
                return Ok(Some(event));
            }
            // Whatever is in the store and not yet seen comes first: on the first call this is the
            // history; later it fills gaps.
            if !self.synced {
                self.read_store().await?;
                continue;
            }
            match self.live.recv().await {
                Ok(batch) => self.take(&batch),
                Err(broadcast::error::RecvError::Lagged(_)) => self.synced = false,
                // The sender lives in the channel this follower holds; never closed while it waits.
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            }
        }
    }

    /// The next event if one is ready now, without waiting or reading the store: after
    /// [`TaskFollower::next`], the rest of a batch (to send together).
    pub fn next_ready(&mut self) -> Option<Arc<LiveEvent>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.pop_ready() {
                return Some(event);
            }
            if !self.synced {
                return None;
            }
            match self.live.try_recv() {
                Ok(batch) => self.take(&batch),
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.synced = false,
                Err(_) => return None,
            }
        }
    }

    /// The newest sequence id this follower has (returned or ready to return).
    fn newest(&self) -> u64 {
        self.ready.back().map_or(self.last_seq, |e| e.seq)
    }

    async fn read_store(&mut self) -> Result<(), BrokerError> {
        let stored = self.hub.history(&self.channel.task_id, self.newest(), HISTORY_PAGE).await?;
        // Subscribed before reading: whatever is stored after this read through this hub is in
        // the subscription, and the poller brings the rest.
        self.synced = stored.len() < HISTORY_PAGE;
        for event in stored {
            if event.seq == self.newest() + 1 {
                self.ready.push_back(Arc::new(LiveEvent::new(Arc::new(event))));
            }
        }
        self.channel.known_seq.fetch_max(self.newest(), Ordering::Relaxed);
        Ok(())
    }

    /// Takes a live batch: events already seen are skipped; a gap means the store is read next.
    fn take(&mut self, batch: &[Arc<LiveEvent>]) {
        for event in batch {
            let newest = self.newest();
            if event.seq <= newest {
                continue;
            }
            if event.seq == newest + 1 {
                self.ready.push_back(event.clone());
            } else {
                // The missing events are in the store; the rest of this batch is read with them.
                self.synced = false;
                return;
            }
        }
    }

    fn pop_ready(&mut self) -> Option<Arc<LiveEvent>> {
        let event = self.ready.pop_front()?;
        self.last_seq = event.seq;
        if event.is_terminal() {
            self.done = true;
            self.ready.clear();
        }
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::queue::embedded::EmbeddedBroker;

    /// A hub over a fresh embedded store holding one task, `t1`; the store's folder lives as long
    /// as the returned guard.
    async fn hub_with_task() -> (EventHub, Arc<dyn Broker>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::open(dir.path()).unwrap());
        submit(&broker, "t1").await;
        (EventHub::new(broker.clone()), broker, dir)
    }

    async fn submit(broker: &Arc<dyn Broker>, id: &str) {
        broker.submit(crate::queue::test_task(id)).await.unwrap();
    }

    fn events(kinds: &[&str]) -> Vec<NewEvent> {
        kinds.iter().map(|k| NewEvent::new(*k, json!({}))).collect()
    }

    /// The next event within a deadline generous for a loaded machine.
    async fn next(follower: &mut TaskFollower) -> Option<Arc<LiveEvent>> {
        tokio::time::timeout(Duration::from_secs(20), follower.next())
            .await
            .expect("no event in time")
            .unwrap()
    }

    /// Reads the store as the first `next` would, so that what follows is live.
    async fn sync(follower: &mut TaskFollower) {
        follower.read_store().await.unwrap();
        assert!(follower.synced && follower.ready.is_empty());
    }

    #[tokio::test]
    async fn a_follower_gets_history_then_live_events_in_order_and_ends_after_the_terminal_one() {
        let (hub, _broker, _dir) = hub_with_task().await;
        hub.append("t1", events(&["run_started", "log"])).await.unwrap();
        let mut follower = hub.follow("t1", 0);
        assert_eq!(next(&mut follower).await.unwrap().seq, 1);
        hub.append("t1", events(&["log", "log"])).await.unwrap();
        assert_eq!(next(&mut follower).await.unwrap().seq, 2);
        assert_eq!(next(&mut follower).await.unwrap().seq, 3);
        assert_eq!(next(&mut follower).await.unwrap().seq, 4);
        hub.append("t1", events(&[kind::RUN_COMPLETED])).await.unwrap();
        let last = next(&mut follower).await.unwrap();
        assert_eq!((last.seq, last.event_type.as_str()), (5, kind::RUN_COMPLETED));
        assert!(follower.next().await.unwrap().is_none());
        assert_eq!(follower.last_seq(), 5);
    }

    #[tokio::test]
    async fn a_follower_resumes_after_since() {
        let (hub, _broker, _dir) = hub_with_task().await;
        hub.append("t1", events(&["run_started", "log", "log"])).await.unwrap();
        let mut follower = hub.follow("t1", 2);
        assert_eq!(next(&mut follower).await.unwrap().seq, 3);
        assert!(follower.next_ready().is_none());
    }

    #[tokio::test]
    async fn a_stored_batch_is_ready_at_once_and_rendered_once_for_all_followers() {
        let (hub, _broker, _dir) = hub_with_task().await;
        let mut first = hub.follow("t1", 0);
        let mut second = hub.follow("t1", 0);
        // Both followers are up to date with the (empty) store before the batch is published.
        sync(&mut first).await;
        sync(&mut second).await;
        hub.append("t1", events(&["a", "b", "c"])).await.unwrap();
        let a = next(&mut first).await.unwrap();
        let rest: Vec<u64> = std::iter::from_fn(|| first.next_ready()).map(|e| e.seq).collect();
        assert_eq!((a.seq, rest), (1, vec![2, 3]));
        let renders = std::sync::atomic::AtomicUsize::new(0);
        let render = |e: &Event| {
            renders.fetch_add(1, Ordering::Relaxed);
            format!("event {}", e.seq)
        };
        let text = a.wire_text(render);
        let same = next(&mut second).await.unwrap();
        assert!(Arc::ptr_eq(&a, &same), "the followers share the published event");
        assert_eq!(same.wire_text(render), text);
        assert_eq!(renders.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn every_stream_shares_one_published_event_and_each_of_its_texts_is_rendered_once() {
        let (hub, _broker, _dir) = hub_with_task().await;
        let mut follower = hub.follow("t1", 0);
        sync(&mut follower).await;
        let (mut dashboard, mut other) = (hub.subscribe(), hub.subscribe());
        hub.append("t1", events(&["log"])).await.unwrap();
        let followed = next(&mut follower).await.unwrap();
        let (a, b) = (dashboard.recv().await.unwrap(), other.recv().await.unwrap());
        assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&a, &followed), "one value for every stream");
        let renders = std::sync::atomic::AtomicUsize::new(0);
        let render = |tag: &'static str| {
            let renders = &renders;
            move |e: &Event| {
                renders.fetch_add(1, Ordering::Relaxed);
                format!("{tag} {}", e.seq)
            }
        };
        assert_eq!(a.tagged_text(render("tagged")).as_str(), "tagged 1");
        assert_eq!(b.tagged_text(render("again")).as_str(), "tagged 1");
        assert_eq!(a.status_text(render("status")).as_str(), "status 1");
        assert_eq!(b.status_text(render("again")).as_str(), "status 1");
        assert_eq!(followed.wire_text(render("wire")).as_str(), "wire 1");
        assert_eq!(renders.load(Ordering::Relaxed), 3, "one render per kind of text");
    }

    #[tokio::test]
    async fn a_gap_in_the_live_events_is_filled_from_the_store() {
        let (hub, broker, _dir) = hub_with_task().await;
        hub.append("t1", events(&["run_started"])).await.unwrap();
        let mut follower = hub.follow("t1", 0);
        assert_eq!(next(&mut follower).await.unwrap().seq, 1);
        // Stored without passing through the hub, then one that does: the follower sees 3 after 1.
        broker.append_events("t1", events(&["elsewhere"])).await.unwrap();
        hub.append("t1", events(&["here"])).await.unwrap();
        let seqs = [next(&mut follower).await.unwrap().seq, next(&mut follower).await.unwrap().seq];
        assert_eq!(seqs, [2, 3]);
    }

    #[tokio::test]
    async fn events_stored_behind_the_hubs_back_reach_followers_through_the_tasks_poller() {
        let (hub, broker, _dir) = hub_with_task().await;
        let mut followers = vec![hub.follow("t1", 0), hub.follow("t1", 0)];
        for follower in &mut followers {
            sync(follower).await;
        }
        // As another host sharing the store would, or the broker expiring a queued task.
        broker.append_events("t1", events(&["run_started", kind::RUN_FAILED])).await.unwrap();
        for follower in &mut followers {
            assert_eq!(next(follower).await.unwrap().seq, 1);
            assert_eq!(next(follower).await.unwrap().seq, 2);
            assert!(follower.next().await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn a_tasks_owner_is_looked_up_once_for_every_stream_that_asks() {
        let (hub, _broker, _dir) = hub_with_task().await;
        let asks: Vec<_> = (0..20).map(|_| hub.task_meta("t1")).collect();
        let answers = futures::future::join_all(asks).await;
        let expected = TaskMeta { tenant: "acme".into(), plugin: "echo".into(), task_name: "echo".into() };
        assert!(answers.iter().all(|a| a.as_ref() == Some(&expected)), "{answers:?}");
        assert_eq!(hub.shared.meta.lock().unwrap().len(), 1);
        assert_eq!(hub.task_meta("nobody").await, None);
    }

    #[tokio::test]
    async fn the_hosts_are_read_once_for_every_caller_within_their_age() {
        let (hub, broker, _dir) = hub_with_task().await;
        let host = |id: &str| HostInfo {
            id: id.into(),
            hostname: "h".into(),
            slots: 2,
            running: 0,
            queues: vec!["default".into()],
            plugins: vec![],
            version: "test".into(),
            started_at: now_ms(),
            last_seen: now_ms(),
            tenant_policies: String::new(),
        };
        broker.heartbeat(&host("a"), Duration::from_secs(60)).await.unwrap();
        let hour = Duration::from_secs(3600);
        let asks: Vec<_> = (0..10).map(|_| hub.hosts_within(hour)).collect();
        let lists = futures::future::join_all(asks).await.into_iter().map(Result::unwrap).collect::<Vec<_>>();
        assert!(lists.iter().all(|l| Arc::ptr_eq(l, &lists[0])), "concurrent callers share one read");
        assert_eq!(lists[0].iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["a"]);
        // A host that appears is seen once the list is older than the age asked for, not before.
        broker.heartbeat(&host("b"), Duration::from_secs(60)).await.unwrap();
        assert_eq!(hub.hosts_within(hour).await.unwrap().len(), 1);
        assert_eq!(hub.hosts_within(Duration::ZERO).await.unwrap().len(), 2);
        assert_eq!(hub.hosts().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_tasks_channel_lives_while_somebody_follows_it() {
        let (hub, _broker, _dir) = hub_with_task().await;
        assert_eq!(hub.followed_tasks(), 0);
        let first = hub.follow("t1", 0);
        let second = hub.follow("t1", 0);
        assert!(Arc::ptr_eq(&first.channel, &second.channel));
        assert_eq!(hub.followed_tasks(), 1);
        drop(first);
        assert_eq!(hub.followed_tasks(), 1);
        drop(second);
        assert_eq!(hub.followed_tasks(), 0);
        assert!(hub.shared.tasks().is_empty());
        // Unfollowed tasks still reach host-wide subscribers.
        let mut all = hub.subscribe();
        hub.append("t1", events(&["log"])).await.unwrap();
        assert_eq!(all.recv().await.unwrap().seq, 1);
    }

    #[tokio::test]
    async fn queue_counts_follow_the_status_changes_the_hub_sees_at_once_and_the_others_soon() {
        let (hub, broker, _dir) = hub_with_task().await;
        let pending = |stats: Vec<crate::queue::QueueStats>| stats.iter().map(|q| q.pending).sum::<u64>();
        assert_eq!(pending(hub.queue_stats(None).await.unwrap()), 1);
        assert_eq!(pending(hub.queue_stats(Some("acme")).await.unwrap()), 1);
        assert_eq!(pending(hub.queue_stats(Some("nobody")).await.unwrap()), 0);
        // A change the hub sees (a task starting, here only its event) makes the snapshot stale.
        submit(&broker, "t2").await;
        hub.append("t1", events(&[kind::RUN_STARTED])).await.unwrap();
        assert_eq!(pending(hub.queue_stats(None).await.unwrap()), 2);
        // A submission the hub is told of shows at once.
        submit(&broker, "t4").await;
        hub.queue_counts_changed();
        assert_eq!(pending(hub.queue_stats(None).await.unwrap()), 3);
        // One it does not see shows within the snapshot's age.
        submit(&broker, "t3").await;
        let deadline = Instant::now() + QUEUE_STATS_MAX_AGE + Duration::from_secs(10);
        while pending(hub.queue_stats(None).await.unwrap()) != 4 {
            assert!(Instant::now() < deadline, "a submission never showed in the counts");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
