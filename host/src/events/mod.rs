//! Events: what a task reports while it runs, stored and fanned out to watchers.
//!
//! Every event has a per-task sequence id assigned by the store (1, 2, 3, ...), a time, a type
//! and JSON data. Storage belongs to the broker backend ([`crate::queue::Broker::append_events`]);
//! this room owns the event model and the in-process fan-out: one [`EventHub`] per host publishes
//! every stored event on a broadcast channel that all WebSocket watchers share, so that watchers
//! never each hold a connection to the store.
//!
//! Watchers join history and live events by sequence id ([`EventHub::follow`]): subscribe first,
//! then read the history, then skip live events already seen and fill any gap (a lagging
//! subscription, an event stored by another host) from the store. No gap, no duplicate.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::queue::{Broker, BrokerError, Millis, now_ms};

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

/// Capacity of the in-process broadcast channel. A watcher further behind than this is told it
/// lagged and catches up from the store.
const FANOUT_CAPACITY: usize = 4096;

/// Stores events through the broker and fans them out in-process.
#[derive(Clone)]
pub struct EventHub {
    broker: Arc<dyn Broker>,
    live: broadcast::Sender<Arc<Event>>,
}

impl EventHub {
    /// A hub over `broker`'s event storage.
    pub fn new(broker: Arc<dyn Broker>) -> Self {
        let (live, _) = broadcast::channel(FANOUT_CAPACITY);
        EventHub { broker, live }
    }

    /// Stores events for `task_id` and publishes them.
    pub async fn append(&self, task_id: &str, events: Vec<NewEvent>) -> Result<Vec<Event>, BrokerError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let stored = self.broker.append_events(task_id, events).await?;
        for event in &stored {
            self.publish(event.clone());
        }
        Ok(stored)
    }

    /// Publishes an event that is already stored (e.g. the terminal event written by
    /// [`crate::queue::Broker::finish`]).
    pub fn publish(&self, event: Event) {
        // No receivers is normal: nobody is watching.
        let _ = self.live.send(Arc::new(event));
    }

    /// A subscription to every event published on this host from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    /// Events of `task_id` after `since`, from the store.
    pub async fn history(&self, task_id: &str, since: u64, limit: usize) -> Result<Vec<Event>, BrokerError> {
        self.broker.events_since(task_id, since, limit).await
    }

    /// Follows one task: its history after `since`, then live events, in sequence order without
    /// gaps or duplicates, ending after the terminal event.
    pub fn follow(&self, task_id: &str, since: u64) -> TaskFollower {
        TaskFollower {
            hub: self.clone(),
            task_id: task_id.to_owned(),
            live: self.subscribe(),
            last_seq: since,
            buffered: std::collections::VecDeque::new(),
            synced: false,
            done: false,
        }
    }
}

/// A follower that heard nothing live for this long re-reads the store.
const RESYNC_AFTER_QUIET: std::time::Duration = std::time::Duration::from_secs(2);

/// How many stored events one read fetches.
const HISTORY_PAGE: usize = 500;

/// An ordered, gapless stream of one task's events; see [`EventHub::follow`].
pub struct TaskFollower {
    hub: EventHub,
    task_id: String,
    live: broadcast::Receiver<Arc<Event>>,
    last_seq: u64,
    buffered: std::collections::VecDeque<Event>,
    /// False until the store has been read up to date, and again after a gap or a lag.
    synced: bool,
    done: bool,
}

impl TaskFollower {
    /// The sequence id of the last event returned.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The next event, or `None` after the terminal event.
    pub async fn next(&mut self) -> Result<Option<Event>, BrokerError> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(event) = self.buffered.pop_front() {
                return Ok(Some(self.deliver(event)));
            }
            // Whatever is in the store and not yet seen comes first: on the first call this is the
            // history; later it fills gaps.
            if !self.synced {
                let stored = self.hub.history(&self.task_id, self.last_seq, HISTORY_PAGE).await?;
                if stored.is_empty() {
                    self.synced = true;
                } else {
                    self.buffered.extend(stored);
                }
                continue;
            }
            // Up to date with the store: wait for live events. Events stored without passing
            // through this hub (by the broker itself, or another host) are picked up by a re-read
            // of the store after a quiet spell.
            let received = match tokio::time::timeout(RESYNC_AFTER_QUIET, self.live.recv()).await {
                Ok(received) => received,
                Err(_) => {
                    self.synced = false;
                    continue;
                }
            };
            match received {
                Ok(event) => {
                    if event.task_id != self.task_id || event.seq <= self.last_seq {
                        continue;
                    }
                    if event.seq == self.last_seq + 1 {
                        return Ok(Some(self.deliver((*event).clone())));
                    }
                    // A gap: the missing events are in the store; the loop reads them next.
                    self.synced = false;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.synced = false,
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
            }
        }
    }

    fn deliver(&mut self, event: Event) -> Event {
        self.last_seq = event.seq;
        if event.is_terminal() {
            self.done = true;
        }
        event
    }
}
