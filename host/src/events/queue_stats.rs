//! Queue counts served from a snapshot, so that `GET /api/v1/queues` does not wait for the store.
//!
//! Reading the counts means a trip to the store (on the embedded broker, a hop to a blocking
//! thread and back): two thread wake-ups that, on a host busy fanning events out, each wait for a
//! core. A request is served from the last snapshot of its tenant's counts instead, when the
//! snapshot is younger than [`MAX_AGE`] and no change the hub saw since (a task started, ended or
//! is retried: the events of [`changes_counts`]) makes it stale; otherwise it reads the store
//! itself. A snapshot older than [`REFRESH_AFTER`] is refreshed in the background by the request
//! that notices, one refresh at a time. Submissions and dead-letter retries through this host's
//! API make it stale too ([`EventHub::queue_counts_changed`]). So the counts lag at most
//! [`MAX_AGE`] behind changes the hub does not see (another host's submissions and work, Celery
//! ingress, start times passing), and not at all behind those it sees.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{Event, EventHub, kind};
use crate::queue::{BrokerError, QueueStats};

/// Oldest snapshot served.
pub const MAX_AGE: Duration = Duration::from_millis(500);
/// A snapshot this old is refreshed in the background when served.
pub const REFRESH_AFTER: Duration = Duration::from_millis(100);

/// True for events after which a task is counted elsewhere.
pub fn changes_counts(event: &Event) -> bool {
    matches!(
        event.event_type.as_str(),
        kind::RUN_STARTED | kind::RUN_COMPLETED | kind::RUN_FAILED | kind::RUN_CANCELLED | kind::RUN_RETRYING
    )
}

/// Snapshots of the counts, per tenant scope (`None`: every tenant).
#[derive(Default)]
pub(super) struct QueueStatsCache {
    snapshots: Mutex<HashMap<Option<String>, Snapshot>>,
    /// Bumped on every change the hub sees; a snapshot taken before is stale.
    generation: AtomicU64,
}

struct Snapshot {
    stats: Arc<Vec<QueueStats>>,
    /// When the read that produced it started.
    taken_at: Instant,
    generation: u64,
    refreshing: bool,
}

impl QueueStatsCache {
    pub(super) fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn snapshots(&self) -> MutexGuard<'_, HashMap<Option<String>, Snapshot>> {
        // Every change is one insert or one field: consistent even after a panic elsewhere.
        self.snapshots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl EventHub {
    /// Counts per queue, restricted to `tenant` when given: from a snapshot at most [`MAX_AGE`]
    /// old that no status change seen by this hub has made stale, else from the store.
    pub async fn queue_stats(&self, tenant: Option<&str>) -> Result<Vec<QueueStats>, BrokerError> {
        let cache = &self.shared.queue_stats;
        let generation = cache.generation.load(Ordering::Acquire);
        let key = tenant.map(str::to_owned);
        let now = Instant::now();
        let served = {
            let mut snapshots = cache.snapshots();
            match snapshots.get_mut(&key) {
                Some(s) if s.generation == generation && now.duration_since(s.taken_at) < MAX_AGE => {
                    let refresh = now.duration_since(s.taken_at) >= REFRESH_AFTER && !s.refreshing;
                    s.refreshing |= refresh;
                    Some((s.stats.clone(), refresh))
                }
                _ => None,
            }
        };
        match served {
            Some((stats, refresh)) => {
                if refresh {
                    let hub = self.clone();
                    let key = key.clone();
                    tokio::spawn(async move {
                        if let Err(error) = hub.read_queue_stats(key, generation).await {
                            tracing::debug!(%error, "refreshing the queue counts failed");
                        }
                    });
                }
                Ok(stats.as_ref().clone())
            }
            None => self.read_queue_stats(key, generation).await.map(|stats| stats.as_ref().clone()),
        }
    }

    /// Reads the counts from the store and keeps them as the snapshot of `key`, valid for the
    /// changes up to `generation` (read before this call).
    async fn read_queue_stats(
        &self,
        key: Option<String>,
        generation: u64,
    ) -> Result<Arc<Vec<QueueStats>>, BrokerError> {
        let taken_at = Instant::now();
        let read = self.shared.broker.queue_stats(key.as_deref()).await;
        let mut snapshots = self.shared.queue_stats.snapshots();
        match read {
            Ok(stats) => {
                let stats = Arc::new(stats);
                let newer = snapshots.get(&key).is_none_or(|s| s.taken_at <= taken_at);
                if newer {
                    let snapshot = Snapshot { stats: stats.clone(), taken_at, generation, refreshing: false };
                    snapshots.insert(key, snapshot);
                }
                Ok(stats)
            }
            Err(error) => {
                if let Some(s) = snapshots.get_mut(&key) {
                    s.refreshing = false;
                }
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_changes_make_snapshots_stale_and_other_events_do_not() {
        let event = |event_type: &str| Event {
            task_id: "t".into(),
            seq: 1,
            event_type: event_type.into(),
            data: serde_json::json!({}),
            ts: 0,
        };
        for changing in [kind::RUN_STARTED, kind::RUN_COMPLETED, kind::RUN_FAILED, kind::RUN_RETRYING] {
            assert!(changes_counts(&event(changing)), "{changing}");
        }
        for other in [kind::PROGRESS_UPDATE, kind::LOG, "metrics_update", kind::CANCEL_REQUESTED] {
            assert!(!changes_counts(&event(other)), "{other}");
        }
    }
}
