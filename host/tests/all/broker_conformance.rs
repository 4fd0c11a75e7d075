//! The broker conformance suite: the delivery guarantees every [`Broker`] backend gives.
//!
//! Each check is a plain async function over a broker (or, for restarts, over a [`Backend`] that
//! can open a broker again on the same storage), so that every backend runs the same checks
//! unchanged: a backend's module implements [`Backend`] and calls [`broker_conformance!`] once,
//! which writes one `#[tokio::test]` per check. Each test gets storage of its own.
//!
//! Waiting is done on conditions with deadlines ([`lease_within`]), never with long sleeps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use taskhost::events::{NewEvent, kind};
use taskhost::queue::{
    Broker, BrokerError, CancelResult, ErrorInfo, Finish, Lease, LeaseState, NewTask, Priority, TaskFilter,
    TaskStatus, TenantPolicy, now_ms,
};
use taskhost::sandbox::LimitsRequest;

/// How the suite gets brokers of one backend.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Opens a broker on this backend's storage. Opened again after the previous broker was
    /// dropped, it must see everything the previous one stored, as a restarted host does.
    async fn open(&self) -> Arc<dyn Broker>;

    /// A second host's broker beside `first`, on the same storage. A backend that serves one
    /// host (the embedded one) returns `first`: its hosts are its worker slots.
    async fn another_host(&self, first: &Arc<dyn Broker>) -> Arc<dyn Broker> {
        first.clone()
    }
}

/// Writes one test per conformance check for the backend that `$backend` (an expression, evaluated
/// afresh in every test) builds.
#[macro_export]
macro_rules! broker_conformance {
    ($backend:expr) => {
        $crate::broker_conformance!(@broker $backend;
            a_task_goes_from_submit_through_lease_to_finish,
            submitting_a_known_id_returns_the_existing_task,
            higher_priorities_are_leased_first_then_the_oldest,
            a_delayed_task_is_not_leased_before_its_time,
            waiting_for_work_wakes_on_submit,
            a_task_not_started_before_its_expiry_expires,
            a_lapsed_lease_is_taken_over_and_the_old_attempt_is_fenced,
            renewing_reports_a_cancel_request,
            a_cancelled_queued_task_never_runs,
            a_retried_task_waits_for_its_backoff,
            a_dead_task_can_be_retried_by_hand,
            a_released_task_is_leased_again_as_the_same_attempt,
            progress_never_goes_backwards_within_an_attempt,
            events_are_numbered_per_task_without_gaps,
            another_tenants_task_is_not_found,
            tasks_are_listed_newest_first_and_counted_per_queue,
            concurrent_workers_never_share_a_task,
            hosts_are_listed_from_their_heartbeats_and_forgotten_when_silent,
            file_areas_are_per_tenant_and_tasks_keep_their_files,
            a_tenants_backlog_does_not_hold_back_another_tenants_first_task,
            concurrent_submits_of_one_id_make_one_task,
        );
        $crate::broker_conformance!(@backend $backend;
            a_task_running_when_its_host_stops_runs_again_as_the_next_attempt,
            competing_tenants_share_the_leases_in_proportion_to_their_weights,
            a_tenants_quota_holds_across_hosts_leasing_at_once,
            a_tenants_quota_holds_across_its_queues_and_hosts,
        );
    };
    (@broker $backend:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let backend = $backend;
                $crate::broker_conformance::$check($crate::broker_conformance::Backend::open(&backend).await).await;
            }
        )*
    };
    (@backend $backend:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let backend = $backend;
                $crate::broker_conformance::$check(&backend).await;
            }
        )*
    };
}

/// The embedded (SQLite) backend, on a temporary folder per test.
mod embedded {
    use std::sync::Arc;

    use taskhost::queue::Broker;
    use taskhost::queue::embedded::EmbeddedBroker;

    use super::Backend;

    struct Embedded {
        dir: tempfile::TempDir,
    }

    #[async_trait::async_trait]
    impl Backend for Embedded {
        async fn open(&self) -> Arc<dyn Broker> {
            Arc::new(EmbeddedBroker::open(self.dir.path()).expect("open the embedded broker"))
        }
    }

    fn embedded() -> Embedded {
        Embedded { dir: tempfile::tempdir().expect("a temporary folder") }
    }

    broker_conformance!(embedded());

    #[test]
    fn a_second_host_cannot_open_the_same_data_dir() {
        let backend = embedded();
        let first = EmbeddedBroker::open(backend.dir.path()).expect("the first open");
        let Err(error) = EmbeddedBroker::open(backend.dir.path()) else {
            panic!("a second broker opened a data dir in use");
        };
        let message = error.to_string();
        assert!(message.contains("taskhost.lock") && message.contains("locked"), "unclear error: {message}");
        drop(first);
        EmbeddedBroker::open(backend.dir.path())
            .expect("the data dir opens again once the first host is gone");
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

pub const TENANT: &str = "acme";
pub const QUEUE: &str = "default";
/// A lease that does not lapse during a test.
const LONG_LEASE: Duration = Duration::from_secs(60);
/// How long a condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

fn queues() -> Vec<String> {
    vec![QUEUE.to_owned()]
}

/// A plain task in [`QUEUE`] for [`TENANT`], shared with the backend-specific suites.
pub fn new_task(id: &str) -> NewTask {
    NewTask {
        id: id.to_owned(),
        tenant: TENANT.to_owned(),
        plugin: "echo".to_owned(),
        task_name: "echo".to_owned(),
        queue: QUEUE.to_owned(),
        input: json!({"id": id}).to_string(),
        priority: Priority::Normal,
        not_before: None,
        expires_at: None,
        max_retries: 3,
        limits: LimitsRequest::default(),
        files: Vec::new(),
    }
}

async fn submit(broker: &Arc<dyn Broker>, task: NewTask) {
    let submitted = broker.submit(task).await.expect("submit");
    assert!(submitted.created);
}

async fn lease_now(broker: &Arc<dyn Broker>, worker: &str) -> Option<Lease> {
    broker.lease(worker, &queues(), LONG_LEASE).await.expect("lease")
}

/// Leases a task as soon as one is runnable, waiting for work in between; `None` at the deadline.
async fn lease_within(
    broker: &Arc<dyn Broker>,
    worker: &str,
    lease_for: Duration,
    deadline: Duration,
) -> Option<Lease> {
    lease_from_within(broker, worker, &queues(), lease_for, deadline).await
}

/// [`lease_within`] from `queues`.
pub async fn lease_from_within(
    broker: &Arc<dyn Broker>,
    worker: &str,
    queues: &[String],
    lease_for: Duration,
    deadline: Duration,
) -> Option<Lease> {
    let give_up = Instant::now() + deadline;
    loop {
        if let Some(lease) = broker.lease(worker, queues, lease_for).await.expect("lease") {
            return Some(lease);
        }
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        broker.wait_for_work(queues, left.min(Duration::from_millis(50))).await;
    }
}

async fn get(broker: &Arc<dyn Broker>, id: &str) -> taskhost::queue::TaskRecord {
    broker.get(None, id).await.expect("get").unwrap_or_else(|| panic!("task {id} is gone"))
}

fn error(kind: &str) -> ErrorInfo {
    ErrorInfo { kind: kind.to_owned(), message: format!("{kind} in a test") }
}

fn succeeded(result: &str) -> Finish {
    Finish::Succeeded { result: result.to_owned() }
}

fn event(event_type: &str) -> NewEvent {
    NewEvent::new(event_type, json!({"from": "test"}))
}

// ---------------------------------------------------------------------------------------------
// Checks on one broker

pub async fn a_task_goes_from_submit_through_lease_to_finish(broker: Arc<dyn Broker>) {
    broker.ping().await.expect("ping");
    let limits = LimitsRequest { fuel: Some(1_000), timeout_ms: Some(2_000), memory_mb: None };
    let submitted = broker.submit(NewTask { limits, ..new_task("t1") }).await.expect("submit");
    assert!(submitted.created);
    assert_eq!(submitted.task.status, TaskStatus::Queued);
    assert_eq!(submitted.task.attempts, 0);
    assert_eq!(submitted.task.limits, limits);
    assert_eq!(submitted.task.input, json!({"id": "t1"}).to_string());

    let lease = lease_now(&broker, "w1").await.expect("the task is runnable");
    assert_eq!(lease.task.id, "t1");
    assert_eq!(lease.attempt, 1);
    assert_eq!(lease.worker, "w1");
    assert_eq!(lease.task.status, TaskStatus::Running);
    assert_eq!(lease.task.attempts, 1);
    assert!(lease.task.started_at.is_some());
    assert_eq!(broker.renew(&lease, LONG_LEASE).await.expect("renew"), LeaseState::Held);
    assert!(broker.lease("w2", &queues(), LONG_LEASE).await.expect("lease").is_none(), "leased twice");

    let done = broker
        .finish(
            &lease,
            succeeded(r#"{"answer":42}"#),
            NewEvent::new(kind::RUN_COMPLETED, json!({"ok": true})),
        )
        .await
        .expect("finish")
        .expect("the lease is held");
    assert_eq!(done.seq, 1);
    assert_eq!(done.event_type, kind::RUN_COMPLETED);
    assert_eq!(done.task_id, "t1");

    let task = get(&broker, "t1").await;
    assert_eq!(task.status, TaskStatus::Succeeded);
    assert_eq!(task.result.as_deref(), Some(r#"{"answer":42}"#));
    assert_eq!(task.error, None);
    assert!(task.finished_at.is_some());
    assert_eq!(task.limits, limits);
    assert_eq!(broker.events_since("t1", 0, 10).await.expect("events"), vec![done]);
    assert!(lease_within(&broker, "w1", LONG_LEASE, Duration::from_millis(100)).await.is_none());
    assert_eq!(broker.renew(&lease, LONG_LEASE).await.expect("renew"), LeaseState::Lost);
}

pub async fn submitting_a_known_id_returns_the_existing_task(broker: Arc<dyn Broker>) {
    submit(&broker, new_task("same")).await;
    let again = broker
        .submit(NewTask {
            input: r#"{"other":true}"#.to_owned(),
            priority: Priority::High,
            ..new_task("same")
        })
        .await
        .expect("submit again");
    assert!(!again.created);
    assert_eq!(again.task.input, json!({"id": "same"}).to_string(), "the first submission wins");
    assert_eq!(again.task.priority, Priority::Normal);
    let all = broker.list(&TaskFilter::default()).await.expect("list");
    assert_eq!(all.len(), 1);

    let stolen = broker.submit(NewTask { tenant: "intruder".to_owned(), ..new_task("same") }).await;
    assert!(
        matches!(stolen, Err(BrokerError::Conflict(_))),
        "another tenant must not get someone else's task: {stolen:?}"
    );
}

pub async fn higher_priorities_are_leased_first_then_the_oldest(broker: Arc<dyn Broker>) {
    for (id, priority) in [
        ("low", Priority::Low),
        ("normal-1", Priority::Normal),
        ("high-1", Priority::High),
        ("normal-2", Priority::Normal),
        ("high-2", Priority::High),
    ] {
        submit(&broker, NewTask { priority, ..new_task(id) }).await;
    }
    let mut order = Vec::new();
    while let Some(lease) = lease_now(&broker, "w").await {
        order.push(lease.task.id);
    }
    assert_eq!(order, ["high-1", "high-2", "normal-1", "normal-2", "low"]);
}

pub async fn a_delayed_task_is_not_leased_before_its_time(broker: Arc<dyn Broker>) {
    let due = now_ms() + 300;
    let submitted =
        broker.submit(NewTask { not_before: Some(due), ..new_task("later") }).await.expect("submit");
    assert_eq!(submitted.task.status, TaskStatus::Scheduled);
    submit(&broker, new_task("now")).await;

    assert_eq!(lease_now(&broker, "w").await.expect("the undelayed task").task.id, "now");
    assert!(lease_now(&broker, "w").await.is_none(), "a delayed task was leased early");
    let stats = broker.queue_stats(None).await.expect("stats");
    assert_eq!((stats[0].pending, stats[0].running, stats[0].scheduled), (0, 1, 1));

    // Waiting wakes when the task comes due, not at the (long) timeout.
    let started = Instant::now();
    broker.wait_for_work(&queues(), DEADLINE).await;
    assert!(started.elapsed() < DEADLINE / 2, "wait_for_work slept past the task's start time");

    let lease = lease_within(&broker, "w", LONG_LEASE, DEADLINE).await.expect("leased once due");
    assert_eq!(lease.task.id, "later");
    assert!(now_ms() >= due, "leased {} ms early", due - now_ms());
    assert_eq!(lease.attempt, 1);
}

pub async fn waiting_for_work_wakes_on_submit(broker: Arc<dyn Broker>) {
    let waiter = {
        let broker = Arc::clone(&broker);
        tokio::spawn(async move {
            let started = Instant::now();
            broker.wait_for_work(&queues(), DEADLINE).await;
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    submit(&broker, new_task("wake")).await;
    let waited = waiter.await.expect("the waiter");
    assert!(waited < DEADLINE / 2, "the waiter slept {waited:?} after a submit");

    // With work already runnable, waiting returns at once.
    let started = Instant::now();
    broker.wait_for_work(&queues(), DEADLINE).await;
    assert!(started.elapsed() < DEADLINE / 2);
}

pub async fn a_task_not_started_before_its_expiry_expires(broker: Arc<dyn Broker>) {
    submit(&broker, NewTask { expires_at: Some(now_ms() - 1), ..new_task("stale") }).await;
    submit(&broker, NewTask { expires_at: Some(now_ms() + 60_000), ..new_task("fresh") }).await;

    let lease = lease_now(&broker, "w").await.expect("the fresh task");
    assert_eq!(lease.task.id, "fresh");
    assert!(lease_within(&broker, "w", LONG_LEASE, Duration::from_millis(100)).await.is_none());

    let stale = get(&broker, "stale").await;
    assert_eq!(stale.status, TaskStatus::Expired);
    assert!(stale.finished_at.is_some());
    assert_eq!(stale.attempts, 0);
    let events = broker.events_since("stale", 0, 10).await.expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, kind::RUN_FAILED);
    assert!(events[0].is_terminal());
    assert_eq!(events[0].data["status"], "expired");
    assert_eq!(events[0].data["error"]["kind"], "expired");
    assert!(events[0].data["error"]["message"].is_string());
}

pub async fn a_lapsed_lease_is_taken_over_and_the_old_attempt_is_fenced(broker: Arc<dyn Broker>) {
    submit(&broker, new_task("t")).await;
    let old =
        broker.lease("gone", &queues(), Duration::from_millis(50)).await.expect("lease").expect("a task");
    assert_eq!(old.attempt, 1);

    let new = lease_within(&broker, "alive", LONG_LEASE, DEADLINE).await.expect("taken over after the lapse");
    assert_eq!(new.task.id, "t");
    assert_eq!(new.attempt, 2);
    assert_eq!(new.worker, "alive");

    // The old worker comes back: everything it tries is fenced off.
    assert_eq!(broker.renew(&old, LONG_LEASE).await.expect("renew"), LeaseState::Lost);
    broker.set_progress(&old, 90.0, "old").await.expect("progress");
    let stale = broker
        .finish(&old, succeeded("\"old\""), NewEvent::new(kind::RUN_COMPLETED, json!({})))
        .await
        .expect("finish");
    assert!(stale.is_none(), "a lost lease finished the task");
    broker.release(&old).await.expect("release");
    let task = get(&broker, "t").await;
    assert_eq!(task.status, TaskStatus::Running);
    assert_eq!(task.attempts, 2);
    assert_eq!(task.result, None);
    assert_eq!(task.progress, 0.0);
    assert!(broker.events_since("t", 0, 10).await.expect("events").is_empty());

    let done = broker
        .finish(&new, succeeded("\"new\""), NewEvent::new(kind::RUN_COMPLETED, json!({})))
        .await
        .expect("finish")
        .expect("the new lease is held");
    assert_eq!(done.seq, 1);
    assert_eq!(get(&broker, "t").await.result.as_deref(), Some("\"new\""));
}

pub async fn renewing_reports_a_cancel_request(broker: Arc<dyn Broker>) {
    submit(&broker, new_task("t")).await;
    let lease = lease_now(&broker, "w").await.expect("a task");
    assert_eq!(broker.renew(&lease, LONG_LEASE).await.expect("renew"), LeaseState::Held);

    let (outcome, stored) = broker.cancel(Some(TENANT), "t").await.expect("cancel");
    assert_eq!(outcome, CancelResult::Requested);
    let stored = stored.expect("the cancel request is an event");
    assert_eq!((stored.seq, stored.event_type.as_str()), (1, kind::CANCEL_REQUESTED));
    let task = get(&broker, "t").await;
    assert_eq!(task.status, TaskStatus::Running);
    assert!(task.cancel_requested);

    assert_eq!(broker.renew(&lease, LONG_LEASE).await.expect("renew"), LeaseState::CancelRequested);
    let done = broker
        .finish(&lease, Finish::Cancelled(error("cancelled")), event(kind::RUN_CANCELLED))
        .await
        .expect("finish")
        .expect("held");
    assert_eq!(done.seq, 2);
    let task = get(&broker, "t").await;
    assert_eq!(task.status, TaskStatus::Cancelled);
    assert_eq!(task.error, Some(error("cancelled")));
    assert!(task.finished_at.is_some());
}

pub async fn a_cancelled_queued_task_never_runs(broker: Arc<dyn Broker>) {
    submit(&broker, new_task("t")).await;
    submit(&broker, NewTask { not_before: Some(now_ms() + 60_000), ..new_task("scheduled") }).await;

    let (outcome, stored) = broker.cancel(None, "t").await.expect("cancel");
    assert_eq!(outcome, CancelResult::Cancelled);
    let stored = stored.expect("the terminal event");
    assert_eq!((stored.seq, stored.event_type.as_str()), (1, kind::RUN_CANCELLED));
    let (outcome, _) = broker.cancel(Some(TENANT), "scheduled").await.expect("cancel");
    assert_eq!(outcome, CancelResult::Cancelled);

    let task = get(&broker, "t").await;
    assert_eq!(task.status, TaskStatus::Cancelled);
    assert!(task.finished_at.is_some());
    assert!(lease_within(&broker, "w", LONG_LEASE, Duration::from_millis(100)).await.is_none());

    let (outcome, stored) = broker.cancel(None, "t").await.expect("cancel again");
    assert_eq!(outcome, CancelResult::AlreadyFinished);
    assert!(stored.is_none());
    assert_eq!(broker.events_since("t", 0, 10).await.expect("events").len(), 1);

    let unknown = broker.cancel(None, "no-such-task").await;
    assert!(matches!(unknown, Err(BrokerError::NotFound(_))), "{unknown:?}");
}

pub async fn a_retried_task_waits_for_its_backoff(broker: Arc<dyn Broker>) {
    submit(&broker, new_task("t")).await;
    let first = lease_now(&broker, "w").await.expect("a task");
    let at = now_ms() + 300;
    let stored = broker
        .finish(&first, Finish::Retry { error: error("plugin_error"), at }, event(kind::RUN_RETRYING))
        .await
        .expect("finish")
        .expect("held");
    assert_eq!(stored.event_type, kind::RUN_RETRYING);

    let task = get(&broker, "t").await;
    assert_eq!(task.status, TaskStatus::Retrying);
    assert_eq!(task.error, Some(error("plugin_error")));
    assert_eq!(task.not_before, Some(at));
    assert_eq!(task.finished_at, None);
    assert!(lease_now(&broker, "w").await.is_none(), "leased before its backoff passed");
    let stats = broker.queue_stats(None).await.expect("stats");
    assert_eq!((stats[0].pending, stats[0].scheduled), (0, 1));

    let second = lease_within(&broker, "w", LONG_LEASE, DEADLINE).await.expect("leased after the backoff");
    assert!(now_ms() >= at, "leased {} ms early", at - now_ms());
    assert_eq!(second.attempt, 2);
    assert_eq!(second.task.status, TaskStatus::Running);
}

pub async fn a_dead_task_can_be_retried_by_hand(broker: Arc<dyn Broker>) {
    submit(&broker, new_task("t")).await;
    let lease = lease_now(&broker, "w").await.expect("a task");
    let conflict = broker.retry_dead(None, "t").await;
    assert!(
        matches!(&conflict, Err(BrokerError::Conflict(message)) if message.contains("dead")),
        "a running task was retried: {conflict:?}"
    );
    broker
        .finish(&lease, Finish::Dead(error("retries_exhausted")), event(kind::RUN_FAILED))
        .await
        .expect("finish")
        .expect("held");
    let task = get(&broker, "t").await;
    assert_eq!(task.status, TaskStatus::Dead);
    assert!(task.finished_at.is_some());
    assert_eq!(broker.queue_stats(None).await.expect("stats")[0].dead, 1);
    assert!(lease_now(&broker, "w").await.is_none(), "a dead task was leased");

    let other = broker.retry_dead(Some("intruder"), "t").await;
    assert!(matches!(other, Err(BrokerError::NotFound(_))), "{other:?}");
    let retried = broker.retry_dead(Some(TENANT), "t").await.expect("retry");
    assert_eq!(retried.status, TaskStatus::Queued);
    assert_eq!(retried.attempts, 0);
    assert_eq!(retried.error, None);
    assert_eq!(retried.finished_at, None);
    assert_eq!(broker.queue_stats(None).await.expect("stats")[0].dead, 0);

    let again = lease_within(&broker, "w", LONG_LEASE, DEADLINE).await.expect("runnable again");
    assert_eq!(again.attempt, 1);
}

pub async fn a_released_task_is_leased_again_as_the_same_attempt(broker: Arc<dyn Broker>) {
    submit(&broker, new_task("t")).await;
    let first = lease_now(&broker, "draining").await.expect("a task");
    broker.release(&first).await.expect("release");
    let task = get(&broker, "t").await;
    assert_eq!((task.status, task.attempts), (TaskStatus::Queued, 0));

    let second = lease_now(&broker, "other").await.expect("runnable again at once");
    assert_eq!(second.attempt, 1);
    assert_eq!(broker.renew(&first, LONG_LEASE).await.expect("renew"), LeaseState::Lost);
    assert!(
        broker.finish(&first, succeeded("1"), event(kind::RUN_COMPLETED)).await.expect("finish").is_none(),
        "a released lease finished the task"
    );
}

pub async fn progress_never_goes_backwards_within_an_attempt(broker: Arc<dyn Broker>) {
    submit(&broker, new_task("t")).await;
    let lease = lease_now(&broker, "w").await.expect("a task");
    broker.set_progress(&lease, 40.0, "forty").await.expect("progress");
    broker.set_progress(&lease, 30.0, "thirty").await.expect("progress");
    let task = get(&broker, "t").await;
    assert_eq!(task.progress, 40.0);
    broker.set_progress(&lease, 75.5, "most").await.expect("progress");
    let task = get(&broker, "t").await;
    assert_eq!((task.progress, task.message.as_str()), (75.5, "most"));
}

pub async fn events_are_numbered_per_task_without_gaps(broker: Arc<dyn Broker>) {
    submit(&broker, new_task("a")).await;
    submit(&broker, new_task("b")).await;
    let first = broker.append_events("a", vec![event("x"), event("y"), event("z")]).await.expect("append");
    assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(first[1].event_type, "y");
    assert_eq!(first[1].data, json!({"from": "test"}));
    let other = broker.append_events("b", vec![event("x")]).await.expect("append");
    assert_eq!(other[0].seq, 1, "sequence ids are per task");
    let second = broker.append_events("a", vec![event("u"), event("v")]).await.expect("append");
    assert_eq!(second.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);

    let since = broker.events_since("a", 2, 100).await.expect("events");
    assert_eq!(
        since.iter().map(|e| (e.seq, e.event_type.as_str())).collect::<Vec<_>>(),
        [(3, "z"), (4, "u"), (5, "v")]
    );
    assert_eq!(since[0], first[2], "the stored event reads back as it was returned");
    assert_eq!(broker.events_since("a", 0, 2).await.expect("events").len(), 2);
    assert!(broker.events_since("a", 5, 100).await.expect("events").is_empty());

    let unknown = broker.append_events("no-such-task", vec![event("x")]).await;
    assert!(matches!(unknown, Err(BrokerError::NotFound(_))), "{unknown:?}");

    // Writers racing on one task still get one gapless sequence.
    let writers = (0..8).map(|_| {
        let broker = Arc::clone(&broker);
        tokio::spawn(async move { broker.append_events("a", vec![event("p"); 5]).await.expect("append") })
    });
    let mut seqs: Vec<u64> = Vec::new();
    for writer in writers {
        seqs.extend(writer.await.expect("writer").iter().map(|e| e.seq));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (6..=45).collect::<Vec<_>>());
    let all = broker.events_since("a", 0, 1000).await.expect("events");
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=45).collect::<Vec<_>>());
}

pub async fn another_tenants_task_is_not_found(broker: Arc<dyn Broker>) {
    submit(&broker, new_task("mine")).await;
    assert!(broker.get(Some("intruder"), "mine").await.expect("get").is_none());
    assert!(broker.get(Some(TENANT), "mine").await.expect("get").is_some());
    assert!(broker.get(None, "mine").await.expect("get").is_some(), "no tenant means an admin's view");
    assert!(broker.get(None, "no-such-task").await.expect("get").is_none());

    let cancel = broker.cancel(Some("intruder"), "mine").await;
    assert!(matches!(cancel, Err(BrokerError::NotFound(_))), "{cancel:?}");
    assert_eq!(get(&broker, "mine").await.status, TaskStatus::Queued, "another tenant cancelled the task");

    let theirs = TaskFilter { tenant: Some("intruder".to_owned()), ..TaskFilter::default() };
    assert!(broker.list(&theirs).await.expect("list").is_empty());
    assert!(broker.queue_stats(Some("intruder")).await.expect("stats").iter().all(|q| q.pending == 0));
    let ours = broker.queue_stats(Some(TENANT)).await.expect("stats");
    assert_eq!(ours.iter().map(|q| q.pending).sum::<u64>(), 1);
}

pub async fn tasks_are_listed_newest_first_and_counted_per_queue(broker: Arc<dyn Broker>) {
    for i in 0..5 {
        submit(
            &broker,
            NewTask {
                plugin: if i % 2 == 0 { "even" } else { "odd" }.to_owned(),
                ..new_task(&format!("t{i}"))
            },
        )
        .await;
    }
    submit(&broker, NewTask { queue: "other".to_owned(), ..new_task("elsewhere") }).await;
    submit(&broker, NewTask { tenant: "globex".to_owned(), ..new_task("theirs") }).await;

    let all = broker.list(&TaskFilter::default()).await.expect("list");
    assert_eq!(
        all.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["theirs", "elsewhere", "t4", "t3", "t2", "t1", "t0"]
    );
    let limited = broker.list(&TaskFilter { limit: 2, ..TaskFilter::default() }).await.expect("list");
    assert_eq!(limited.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["theirs", "elsewhere"]);
    let odd = broker
        .list(&TaskFilter { plugin: Some("odd".to_owned()), ..TaskFilter::default() })
        .await
        .expect("list");
    assert_eq!(odd.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["t3", "t1"]);
    let globex =
        broker.list(&TaskFilter { tenant: Some("globex".to_owned()), ..TaskFilter::default() }).await;
    assert_eq!(globex.expect("list").len(), 1);

    let lease = lease_now(&broker, "w").await.expect("a task");
    assert_eq!(lease.task.id, "t0");
    let running = broker
        .list(&TaskFilter { status: Some(TaskStatus::Running), ..TaskFilter::default() })
        .await
        .expect("list");
    assert_eq!(running.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["t0"]);

    let stats = broker.queue_stats(None).await.expect("stats");
    let default = stats.iter().find(|q| q.queue == QUEUE).expect("the default queue");
    assert_eq!((default.pending, default.running, default.scheduled, default.dead), (5, 1, 0, 0));
    let other = stats.iter().find(|q| q.queue == "other").expect("the other queue");
    assert_eq!((other.pending, other.running), (1, 0));
    let acme = broker.queue_stats(Some(TENANT)).await.expect("stats");
    let default = acme.iter().find(|q| q.queue == QUEUE).expect("the default queue");
    assert_eq!(default.pending, 4, "globex's task is not counted for acme");
}

pub async fn concurrent_workers_never_share_a_task(broker: Arc<dyn Broker>) {
    const TASKS: usize = 200;
    const WORKERS: usize = 8;
    for i in 0..TASKS {
        submit(&broker, new_task(&format!("t{i:03}"))).await;
    }
    let finished: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let workers = (0..WORKERS).map(|w| {
        let broker = Arc::clone(&broker);
        let finished = Arc::clone(&finished);
        tokio::spawn(async move {
            let worker = format!("worker-{w}");
            // Every task was submitted before the workers started and no lease lapses: nothing to
            // lease means everything is taken.
            while let Some(lease) = broker.lease(&worker, &queues(), LONG_LEASE).await.expect("lease") {
                let stored = broker
                    .finish(&lease, succeeded(&format!("\"{worker}\"")), event(kind::RUN_COMPLETED))
                    .await
                    .expect("finish");
                assert!(stored.is_some(), "{worker} lost its lease on {}", lease.task.id);
                finished
                    .lock()
                    .expect("the tally")
                    .entry(lease.task.id.clone())
                    .or_default()
                    .push(worker.clone());
            }
        })
    });
    for worker in workers.collect::<Vec<_>>() {
        worker.await.expect("a worker");
    }
    let finished = std::mem::take(&mut *finished.lock().expect("the tally"));
    assert_eq!(finished.len(), TASKS);
    for (id, by) in finished.iter() {
        assert_eq!(by.len(), 1, "{id} was run by {by:?}");
    }
    for task in broker.list(&TaskFilter { limit: TASKS + 10, ..TaskFilter::default() }).await.expect("list") {
        assert_eq!((task.status, task.attempts), (TaskStatus::Succeeded, 1), "{}", task.id);
        assert_eq!(task.result.as_deref(), Some(format!("\"{}\"", finished[&task.id][0]).as_str()));
    }
}

// ---------------------------------------------------------------------------------------------
// Checks across a restart

pub async fn a_task_running_when_its_host_stops_runs_again_as_the_next_attempt(backend: &dyn Backend) {
    let broker = backend.open().await;
    submit(&broker, new_task("running")).await;
    submit(&broker, new_task("done")).await;
    submit(&broker, new_task("waiting")).await;
    // A backend may need the lease to lapse before another host takes the task: keep it short.
    let lease_for = Duration::from_millis(200);
    let running = broker.lease("old-host", &queues(), lease_for).await.expect("lease").expect("a task");
    assert_eq!(running.task.id, "running");
    let done = broker.lease("old-host", &queues(), lease_for).await.expect("lease").expect("a task");
    broker.finish(&done, succeeded("1"), event(kind::RUN_COMPLETED)).await.expect("finish").expect("held");
    drop(broker);

    let broker = backend.open().await;
    assert_eq!(get(&broker, "done").await.status, TaskStatus::Succeeded, "a finished task stays finished");
    let mut leased = Vec::new();
    while leased.len() < 2 {
        let lease =
            lease_within(&broker, "new-host", LONG_LEASE, DEADLINE).await.expect("both tasks run again");
        leased.push((lease.task.id.clone(), lease.attempt));
    }
    leased.sort();
    assert_eq!(leased, [("running".to_owned(), 2), ("waiting".to_owned(), 1)]);
    assert!(
        broker
            .finish(&running, succeeded("\"old\""), event(kind::RUN_COMPLETED))
            .await
            .expect("finish")
            .is_none(),
        "the attempt from before the restart is fenced off"
    );
}

pub async fn hosts_are_listed_from_their_heartbeats_and_forgotten_when_silent(broker: Arc<dyn Broker>) {
    use taskhost::queue::HostInfo;
    let host = |id: &str, last_seen| HostInfo {
        id: id.to_owned(),
        hostname: "machine".into(),
        slots: 4,
        running: 1,
        queues: vec![QUEUE.to_owned()],
        plugins: vec!["hello".into()],
        version: "test".into(),
        started_at: last_seen,
        last_seen,
        tenant_policies: "0123456789abcdef".into(),
    };
    let now = now_ms();
    broker.heartbeat(&host("old", now - 1_000), Duration::from_secs(60)).await.expect("heartbeat");
    broker.heartbeat(&host("new", now), Duration::from_secs(60)).await.expect("heartbeat");
    let listed = broker.hosts().await.expect("hosts");
    let ids: Vec<&str> = listed.iter().map(|h| h.id.as_str()).collect();
    assert!(ids.starts_with(&["new", "old"]), "{ids:?}");
    assert_eq!(listed[0], host("new", now));

    // A newer heartbeat replaces the old one; a host silent past its forget time is dropped.
    broker.heartbeat(&host("old", now + 10), Duration::from_secs(60)).await.expect("heartbeat");
    broker.heartbeat(&host("gone", now - 120_000), Duration::from_secs(60)).await.expect("heartbeat");
    let listed = broker.hosts().await.expect("hosts");
    assert_eq!(listed.iter().filter(|h| h.id == "old").count(), 1);
    assert_eq!(listed.iter().find(|h| h.id == "old").map(|h| h.last_seen), Some(now + 10));
    assert!(listed.iter().all(|h| h.id != "gone"), "{listed:?}");
}

pub async fn file_areas_are_per_tenant_and_tasks_keep_their_files(broker: Arc<dyn Broker>) {
    let fasta = b">seq1\nACGT\n".to_vec();
    let stored = broker.put_file(TENANT, "reads.fasta", fasta.clone()).await.expect("put");
    assert_eq!(stored.size, fasta.len() as u64);
    assert_eq!(stored.sha256.len(), 64);
    assert_eq!(broker.get_file(TENANT, "reads.fasta").await.expect("get"), Some(fasta));
    assert_eq!(broker.get_file("someone-else", "reads.fasta").await.expect("get"), None);
    assert!(broker.list_files("someone-else").await.expect("list").is_empty());

    // Replacing keeps one file; binary content survives unchanged.
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    broker.put_file(TENANT, "reads.fasta", binary.clone()).await.expect("replace");
    broker.put_file(TENANT, "a.csv", b"x,y\n".to_vec()).await.expect("put");
    let listed = broker.list_files(TENANT).await.expect("list");
    let names: Vec<&str> = listed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a.csv", "reads.fasta"]);
    assert_eq!(listed[1].size, 70_000);
    assert_eq!(broker.get_file(TENANT, "reads.fasta").await.expect("get"), Some(binary));

    submit(&broker, NewTask { files: vec!["reads.fasta".into()], ..new_task("t") }).await;
    assert_eq!(get(&broker, "t").await.files, ["reads.fasta"]);
    let lease = lease_now(&broker, "w").await.expect("a task");
    assert_eq!(lease.task.files, ["reads.fasta"]);

    assert!(broker.delete_file(TENANT, "a.csv").await.expect("delete"));
    assert!(!broker.delete_file(TENANT, "a.csv").await.expect("delete again"));
    assert!(!broker.delete_file("someone-else", "reads.fasta").await.expect("delete another's"));
    assert_eq!(broker.list_files(TENANT).await.expect("list").len(), 1);
}

pub async fn a_tenants_backlog_does_not_hold_back_another_tenants_first_task(broker: Arc<dyn Broker>) {
    for i in 0..30 {
        submit(&broker, NewTask { tenant: "busy".into(), ..new_task(&format!("busy-{i}")) }).await;
    }
    submit(&broker, NewTask { tenant: "quiet".into(), ..new_task("quiet-0") }).await;
    let first = lease_now(&broker, "w1").await.expect("a task");
    assert_eq!(first.task.tenant, "busy", "the oldest task goes first");
    let second = lease_now(&broker, "w2").await.expect("a task");
    assert_eq!(
        second.task.id, "quiet-0",
        "the quiet tenant's only task comes before the busy tenant's second"
    );
}

fn policy(tenant: &str, weight: u32, concurrent_tasks: Option<u32>) -> TenantPolicy {
    TenantPolicy { tenant: tenant.to_owned(), weight, concurrent_tasks }
}

pub async fn competing_tenants_share_the_leases_in_proportion_to_their_weights(backend: &dyn Backend) {
    let host_a = backend.open().await;
    let host_b = backend.another_host(&host_a).await;
    let policies = [policy("heavy", 3, None), policy("light", 1, None)];
    host_a.set_tenant_policies(&queues(), &policies).await.expect("set the policies");
    for i in 0..12 {
        submit(&host_a, NewTask { tenant: "heavy".into(), ..new_task(&format!("heavy-{i}")) }).await;
        submit(&host_b, NewTask { tenant: "light".into(), ..new_task(&format!("light-{i}")) }).await;
    }
    // Both tenants keep a backlog; the hosts lease in turn and hold every task.
    let mut leased: HashMap<String, usize> = HashMap::new();
    for n in 0..12 {
        let host = if n % 2 == 0 { &host_a } else { &host_b };
        let lease = lease_now(host, &format!("w{n}")).await.expect("a task");
        *leased.entry(lease.task.tenant).or_default() += 1;
    }
    assert_eq!(
        (leased.get("heavy").copied(), leased.get("light").copied()),
        (Some(9), Some(3)),
        "weights 3 and 1 share 12 leases 9 to 3"
    );
}

pub async fn a_tenants_quota_holds_across_hosts_leasing_at_once(backend: &dyn Backend) {
    let host_a = backend.open().await;
    let host_b = backend.another_host(&host_a).await;
    host_a.set_tenant_policies(&queues(), &[policy("capped", 1, Some(2))]).await.expect("set the policies");
    for i in 0..6 {
        submit(&host_a, NewTask { tenant: "capped".into(), ..new_task(&format!("capped-{i}")) }).await;
    }
    for i in 0..2 {
        submit(&host_b, NewTask { tenant: "free".into(), ..new_task(&format!("free-{i}")) }).await;
    }
    // Eight slots on two hosts lease at the same time until nothing is runnable.
    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..8 {
        let host = if slot % 2 == 0 { host_a.clone() } else { host_b.clone() };
        slots.spawn(async move {
            let mut leases = Vec::new();
            while let Some(lease) = lease_now(&host, &format!("host{}/{slot}", slot % 2)).await {
                leases.push(lease);
            }
            leases
        });
    }
    let mut leases = Vec::new();
    while let Some(held) = slots.join_next().await {
        leases.extend(held.expect("a slot"));
    }
    let of = |tenant: &str, leases: &[Lease]| leases.iter().filter(|l| l.task.tenant == tenant).count();
    assert_eq!(of("capped", &leases), 2, "the quota of 2 was overshot or not used");
    assert_eq!(of("free", &leases), 2, "the other tenant's tasks waited behind the capped ones");
    let stats = host_b.queue_stats(Some("capped")).await.expect("stats");
    assert_eq!((stats[0].running, stats[0].pending), (2, 4));

    // One capped task ends: exactly one more may start, on either host.
    let done = leases.iter().find(|l| l.task.tenant == "capped").expect("a capped lease");
    host_a.finish(done, succeeded("1"), event(kind::RUN_COMPLETED)).await.expect("finish").expect("held");
    let next = lease_within(&host_b, "host1/9", LONG_LEASE, DEADLINE).await.expect("the next capped task");
    assert_eq!(next.task.tenant, "capped");
    assert!(lease_now(&host_a, "host0/9").await.is_none(), "the quota is full again but a task started");
}

pub async fn a_tenants_quota_holds_across_its_queues_and_hosts(backend: &dyn Backend) {
    let host_a = backend.open().await;
    let host_b = backend.another_host(&host_a).await;
    // Two queues: on a Redis Cluster each lives on its own node.
    let both = vec![QUEUE.to_owned(), "second".to_owned()];
    host_a.set_tenant_policies(&both, &[policy("capped", 1, Some(3))]).await.expect("set the policies");
    for i in 0..8 {
        let queue = both[i % 2].clone();
        submit(&host_a, NewTask { tenant: "capped".into(), queue, ..new_task(&format!("capped-{i}")) }).await;
    }
    // Eight slots on two hosts, every one consuming both queues, lease at once until nothing
    // is runnable.
    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..8 {
        let host = if slot % 2 == 0 { host_a.clone() } else { host_b.clone() };
        let both = both.clone();
        slots.spawn(async move {
            let mut leases = Vec::new();
            let worker = format!("host{}/{slot}", slot % 2);
            while let Some(lease) = host.lease(&worker, &both, LONG_LEASE).await.expect("lease") {
                leases.push(lease);
            }
            leases
        });
    }
    let mut leases = Vec::new();
    while let Some(held) = slots.join_next().await {
        leases.extend(held.expect("a slot"));
    }
    assert_eq!(leases.len(), 3, "a quota of 3 over two queues: {:?}", ids(&leases));
    // A renewal keeps the count: still nothing may start.
    for lease in &leases {
        let host = if lease.worker.starts_with("host0") { &host_a } else { &host_b };
        assert_eq!(host.renew(lease, LONG_LEASE).await.expect("renew"), LeaseState::Held);
    }
    assert!(host_b.lease("host1/8", &both, LONG_LEASE).await.expect("lease").is_none());

    // One ends: exactly one more may start, from either queue, on either host.
    let done = &leases[0];
    let owner = if done.worker.starts_with("host0") { &host_a } else { &host_b };
    owner.finish(done, succeeded("1"), event(kind::RUN_COMPLETED)).await.expect("finish").expect("held");
    let next = lease_from_within(&host_b, "host1/9", &both, LONG_LEASE, DEADLINE)
        .await
        .expect("a capped task started after one ended");
    assert_eq!(next.task.tenant, "capped");
    assert!(
        host_a.lease("host0/9", &both, LONG_LEASE).await.expect("lease").is_none(),
        "the quota is full again"
    );
    // A release (a draining host) frees its place too.
    host_b.release(&next).await.expect("release");
    let again = lease_from_within(&host_a, "host0/10", &both, LONG_LEASE, DEADLINE)
        .await
        .expect("a capped task started after one was released");
    assert_eq!(again.task.tenant, "capped");
    assert!(
        host_b.lease("host1/10", &both, LONG_LEASE).await.expect("lease").is_none(),
        "the quota is full again"
    );
}

fn ids(leases: &[Lease]) -> Vec<(&str, &str)> {
    leases.iter().map(|l| (l.task.id.as_str(), l.task.queue.as_str())).collect()
}

pub async fn concurrent_submits_of_one_id_make_one_task(broker: Arc<dyn Broker>) {
    // Submitted at once, the calls may travel together (one batch): each id still gets one task.
    let calls = (0..40).map(|n| {
        let broker = broker.clone();
        async move { broker.submit(new_task(&format!("t{}", n % 10))).await.expect("submit") }
    });
    let submitted = futures::future::join_all(calls).await;
    assert_eq!(submitted.iter().filter(|s| s.created).count(), 10, "one creation per id");
    for s in &submitted {
        assert_eq!(s.task.status, TaskStatus::Queued);
        assert_eq!(s.task.input, json!({"id": s.task.id}).to_string());
    }
    let mut leased = Vec::new();
    while let Some(lease) = lease_now(&broker, "w").await {
        leased.push(lease.task.id);
    }
    leased.sort();
    let expected: Vec<String> = {
        let mut ids: Vec<String> = (0..10).map(|n| format!("t{n}")).collect();
        ids.sort();
        ids
    };
    assert_eq!(leased, expected, "every task runs once");
}
