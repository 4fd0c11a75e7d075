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
//!
//! Callers that find the snapshot stale share one read of the store: a run's start or end makes
//! it stale for every `/ws/queue` watcher at the same moment, and each used to read the store
//! itself (a hundred reads at once, queued with the workers' event writes). A caller joins a
//! read in flight that started after the last change it knows of, and starts one otherwise.

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
    /// The read of each scope's counts in flight, shared by the callers that wait for it.
    reads: Mutex<HashMap<Option<String>, Arc<SharedRead>>>,
}

/// One read of the store for every caller that needs it.
struct SharedRead {
    /// The generation known when the read was asked for: it sees every change up to it.
    generation: u64,
    result: tokio::sync::OnceCell<Result<Arc<Vec<QueueStats>>, BrokerError>>,
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

    fn reads(&self) -> MutexGuard<'_, HashMap<Option<String>, Arc<SharedRead>>> {
        // Every change is one insert or one remove.
        self.reads.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The result of `read` for `key`, run with the generation it must see: the result of a read
    /// in flight that sees every change up to `generation`, if there is one, else of a new read
    /// that later callers can join.
    async fn shared<F, Fut>(
        &self,
        key: Option<String>,
        generation: u64,
        read: F,
    ) -> Result<Arc<Vec<QueueStats>>, BrokerError>
    where
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<Arc<Vec<QueueStats>>, BrokerError>>,
    {
        let shared = {
            let mut reads = self.reads();
            match reads.get(&key) {
                Some(shared) if shared.generation >= generation => shared.clone(),
                _ => {
                    let shared = Arc::new(SharedRead { generation, result: tokio::sync::OnceCell::new() });
                    reads.insert(key.clone(), shared.clone());
                    shared
                }
            }
        };
        // If the caller running the read goes away, a waiting one runs its own instead.
        let result = shared.result.get_or_init(|| read(shared.generation)).await.clone();
        let mut reads = self.reads();
        if reads.get(&key).is_some_and(|r| Arc::ptr_eq(r, &shared)) {
            reads.remove(&key);
        }
        result
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
            None => {
                // Stale: one store read for every caller that needs the same one.
                let read_key = key.clone();
                let read = move |generation| self.read_queue_stats(read_key, generation);
                let stats = cache.shared(key, generation, read).await?;
                Ok(stats.as_ref().clone())
            }
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
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn callers_that_find_the_counts_stale_share_one_read_unless_it_began_before_their_change() {
        let cache = Arc::new(QueueStatsCache::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let caller = |generation: u64| {
            let (cache, reads, release) = (cache.clone(), reads.clone(), release.clone());
            tokio::spawn(async move {
                let read = |generation: u64| async move {
                    reads.fetch_add(1, Ordering::SeqCst);
                    let _held = release.acquire().await.map_err(|e| BrokerError::Storage(e.to_string()))?;
                    Ok(Arc::new(vec![QueueStats {
                        queue: format!("seen {generation}"),
                        ..Default::default()
                    }]))
                };
                cache.shared(None, generation, read).await.map(|stats| stats[0].queue.clone())
            })
        };
        let wait_for_reads = |n: usize| {
            let reads = reads.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(20);
                while reads.load(Ordering::SeqCst) < n {
                    assert!(Instant::now() < deadline, "{n} reads never started");
                    tokio::task::yield_now().await;
                }
            }
        };
        // Twenty callers at generation 0: one read, which they all wait for.
        let first: Vec<_> = (0..20).map(|_| caller(0)).collect();
        wait_for_reads(1).await;
        // A caller that knows of a later change cannot take a read that began before it.
        let later = caller(1);
        wait_for_reads(2).await;
        release.add_permits(100);
        for answer in futures::future::join_all(first).await {
            assert_eq!(answer.unwrap().unwrap(), "seen 0");
        }
        assert_eq!(later.await.unwrap().unwrap(), "seen 1");
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // Once it is done the read is not served again: the next stale caller reads anew.
        assert_eq!(caller(1).await.unwrap().unwrap(), "seen 1");
        assert_eq!(reads.load(Ordering::SeqCst), 3);
        assert!(cache.reads().is_empty());
    }

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
