//! The Redis broker: the conformance suite on a standalone Redis and on a three-master Redis
//! Cluster, then what only Redis can do wrong (connections killed, servers restarted, foreign
//! stream entries, bad URLs), each test with servers of its own.
//!
//! No assertion measures speed: deadlines are generous and only catch a hang.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use taskhost::events::{NewEvent, kind};
use taskhost::queue::redis::{RedisBroker, RedisConfig, SweepReport};
use taskhost::queue::{Broker, BrokerError, Finish, LeaseState, NewTask, Priority, TaskStatus};

use crate::broker_conformance::{Backend, QUEUE, TENANT, new_task};
use taskhost_e2e::redis::{RedisCluster, RedisServer, free_port};

/// A key prefix no other test uses.
fn unique_prefix() -> String {
    format!("test-{}", uuid::Uuid::now_v7())
}

async fn broker_on(url: &str, prefix: &str) -> Arc<RedisBroker> {
    let config = RedisConfig::new(url).expect("a valid URL").with_prefix(prefix);
    Arc::new(RedisBroker::connect(config).await.expect("connect to redis"))
}

/// A standalone server of the test's own.
struct Standalone {
    server: RedisServer,
    prefix: String,
}

#[async_trait::async_trait]
impl Backend for Standalone {
    async fn open(&self) -> Arc<dyn Broker> {
        broker_on(&self.server.url(), &self.prefix).await
    }

    async fn another_host(&self, _first: &Arc<dyn Broker>) -> Arc<dyn Broker> {
        self.open().await
    }
}

fn standalone() -> Standalone {
    Standalone { server: RedisServer::start(), prefix: unique_prefix() }
}

/// The shared cluster, with a prefix of the test's own.
struct Cluster {
    prefix: String,
}

#[async_trait::async_trait]
impl Backend for Cluster {
    async fn open(&self) -> Arc<dyn Broker> {
        let url = tokio::task::spawn_blocking(|| RedisCluster::shared().url()).await.expect("the cluster");
        let broker = broker_on(&url, &self.prefix).await;
        assert!(broker.is_cluster(), "the cluster was taken for a standalone server");
        broker
    }

    async fn another_host(&self, _first: &Arc<dyn Broker>) -> Arc<dyn Broker> {
        self.open().await
    }
}

fn cluster() -> Cluster {
    Cluster { prefix: unique_prefix() }
}

mod on_standalone_redis {
    crate::broker_conformance!(super::standalone());
}

mod on_redis_cluster {
    crate::broker_conformance!(super::cluster());
}

// ---------------------------------------------------------------------------------------------

const DEADLINE: Duration = Duration::from_secs(20);

fn queues() -> Vec<String> {
    vec![QUEUE.to_owned()]
}

fn done(result: &str) -> Finish {
    Finish::Succeeded { result: result.to_owned() }
}

fn completed() -> NewEvent {
    NewEvent::new(kind::RUN_COMPLETED, json!({}))
}

/// Retries `op` until it succeeds, tolerating the errors of an outage; panics at the deadline.
async fn eventually<T, F, Fut>(what: &str, mut op: F) -> (T, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, BrokerError>>,
{
    let started = Instant::now();
    let mut errors = 0;
    loop {
        match op().await {
            Ok(Some(value)) => return (value, errors),
            Ok(None) => {}
            Err(_) => errors += 1,
        }
        assert!(started.elapsed() < DEADLINE, "{what}: not done within {DEADLINE:?} ({errors} errors)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_lease_keeps_a_long_task_from_redelivery() {
    let server = RedisServer::start();
    let prefix = unique_prefix();
    let host_a = broker_on(&server.url(), &prefix).await;
    let host_b = broker_on(&server.url(), &prefix).await;
    host_a.submit(new_task("long")).await.expect("submit");
    let short = Duration::from_millis(300);
    let lease = host_a.lease("a/0", &queues(), short).await.expect("lease").expect("the task");

    // The task runs ten lease durations; host B keeps trying to take it.
    let started = Instant::now();
    while started.elapsed() < short * 10 {
        assert_eq!(host_a.renew(&lease, short).await.expect("renew"), LeaseState::Held);
        let stolen = host_b.lease("b/0", &queues(), short).await.expect("lease");
        assert!(stolen.is_none(), "a renewed lease was taken over: {stolen:?}");
        tokio::time::sleep(short / 3).await;
    }
    let stored = host_a.finish(&lease, done("1"), completed()).await.expect("finish");
    assert!(stored.is_some(), "the renewed lease was lost");
    let task = host_b.get(None, "long").await.expect("get").expect("the task");
    assert_eq!((task.status, task.attempts), (TaskStatus::Succeeded, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_leases_keep_lapsing_goes_dead_after_max_deliveries() {
    let server = RedisServer::start();
    let broker = broker_on(&server.url(), &unique_prefix()).await;
    broker.submit(new_task("hangs")).await.expect("submit");
    broker.submit(NewTask { priority: Priority::Low, ..new_task("next") }).await.expect("submit");
    let max = taskhost::queue::embedded::MAX_DELIVERIES;
    for attempt in 1..=max {
        let lease = broker.lease("w", &queues(), Duration::ZERO).await.expect("lease").expect("a task");
        assert_eq!((lease.task.id.as_str(), lease.attempt), ("hangs", attempt));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let lease = broker.lease("w", &queues(), DEADLINE).await.expect("lease").expect("the next task");
    assert_eq!(lease.task.id, "next");
    let hangs = broker.get(None, "hangs").await.expect("get").expect("the task");
    assert_eq!(hangs.status, TaskStatus::Dead);
    assert_eq!(hangs.error.expect("the reason").kind, "delivery_count_exceeded");
    let events = broker.events_since("hangs", 0, 0).await.expect("events");
    assert_eq!(events.last().map(|e| e.data["status"].clone()), Some(json!("dead")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_priority_gets_a_turn_while_high_priority_work_keeps_coming() {
    let server = RedisServer::start();
    let broker = broker_on(&server.url(), &unique_prefix()).await;
    for i in 0..40 {
        broker
            .submit(NewTask { priority: Priority::High, ..new_task(&format!("high-{i:02}")) })
            .await
            .unwrap();
    }
    broker.submit(NewTask { priority: Priority::Normal, ..new_task("normal") }).await.unwrap();
    broker.submit(NewTask { priority: Priority::Low, ..new_task("low") }).await.unwrap();
    let mut order = Vec::new();
    for _ in 0..32 {
        order.push(broker.lease("w", &queues(), DEADLINE).await.unwrap().expect("a task").task.id);
    }
    assert!(order.contains(&"normal".to_owned()), "normal starved: {order:?}");
    assert!(order.contains(&"low".to_owned()), "low starved: {order:?}");
    assert!(order.iter().filter(|id| id.starts_with("high")).count() >= 28, "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_of_a_queue_are_served_in_turn() {
    let server = RedisServer::start();
    let broker = broker_on(&server.url(), &unique_prefix()).await;
    for i in 0..50 {
        broker.submit(new_task(&format!("busy-{i:02}"))).await.expect("submit");
    }
    broker.submit(NewTask { tenant: "quiet".to_owned(), ..new_task("quiet-1") }).await.expect("submit");
    let mut first = Vec::new();
    for _ in 0..2 {
        first.push(broker.lease("w", &queues(), DEADLINE).await.expect("lease").expect("a task").task.id);
    }
    assert!(first.contains(&"quiet-1".to_owned()), "the quiet tenant waited behind the busy one: {first:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_entry_goes_to_the_dead_letters_and_consumption_goes_on() {
    let server = RedisServer::start();
    let broker = broker_on(&server.url(), &unique_prefix()).await;
    broker.submit(new_task("before")).await.expect("submit");
    let stream = broker.keys().stream(QUEUE, TENANT, Priority::Normal);
    server.cli(&["XADD", &stream, "*", "celery", "{not ours}"]);
    server.cli(&["XADD", &stream, "*", "task", "no-such-task"]);
    broker.submit(new_task("after")).await.expect("submit");

    let mut leased = Vec::new();
    while let Some(lease) = broker.lease("w", &queues(), DEADLINE).await.expect("lease") {
        leased.push(lease.task.id);
    }
    assert_eq!(leased, ["before", "after"]);
    let letters = broker.dead_letters(QUEUE).await.expect("dead letters");
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(letters[0].1.contains("not a task entry"), "{letters:?}");
    assert!(letters[1].1.contains("unknown task no-such-task"), "{letters:?}");
    let stats = broker.queue_stats(None).await.expect("stats");
    assert_eq!((stats[0].dead, stats[0].running, stats[0].pending), (2, 2, 0));
    let length = server.cli(&["XLEN", &stream]);
    assert_eq!(length.trim(), "2", "only the two running tasks' entries stay in the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_trims_only_what_was_delivered_and_acknowledged() {
    let server = RedisServer::start();
    let broker = broker_on(&server.url(), &unique_prefix()).await;
    let stream = broker.keys().stream(QUEUE, TENANT, Priority::Normal);
    // 250 entries: three stream nodes of at most 100 (Redis's default) would hold them.
    for i in 0..250 {
        broker.submit(new_task(&format!("t{i:03}"))).await.expect("submit");
    }
    let finish = |lease| {
        let broker = broker.clone();
        async move {
            broker
                .finish(
                    &lease,
                    Finish::Succeeded { result: "null".to_owned() },
                    NewEvent::new(kind::RUN_COMPLETED, json!({})),
                )
                .await
                .expect("finish")
                .expect("the lease is held")
        }
    };
    let mut seen = std::collections::HashSet::new();
    // The first task keeps running while 200 after it run and finish: nothing below it and
    // nothing not yet delivered may go, and entries above the first pending one are not trimmed.
    let first = broker.lease("w", &queues(), DEADLINE).await.expect("lease").expect("a task");
    assert_eq!(first.task.id, "t000");
    seen.insert(first.task.id.clone());
    for _ in 0..200 {
        let lease = broker.lease("w", &queues(), DEADLINE).await.expect("lease").expect("a task");
        assert!(seen.insert(lease.task.id.clone()), "{} delivered twice", lease.task.id);
        finish(lease).await;
    }
    assert_eq!(server.cli(&["XLEN", &stream]).trim(), "250", "an entry went while the first task ran");

    // With nothing pending, the finished entries below the last delivered one go, whole nodes
    // at once; the 49 never delivered stay.
    finish(first).await;
    let left: usize = server.cli(&["XLEN", &stream]).trim().parse().expect("a length");
    assert!((49..250).contains(&left), "{left} entries left in the stream");
    while let Some(lease) = broker.lease("w", &queues(), DEADLINE).await.expect("lease") {
        assert!(seen.insert(lease.task.id.clone()), "{} delivered twice", lease.task.id);
        finish(lease).await;
    }
    assert_eq!(seen.len(), 250, "every task ran once");
    let left: usize = server.cli(&["XLEN", &stream]).trim().parse().expect("a length");
    assert!(left <= 100, "{left} entries left after every task finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_leasing_together_take_every_task_once_across_priorities() {
    let server = RedisServer::start();
    let broker = broker_on(&server.url(), &unique_prefix()).await;
    // One tenant without a quota: a lease call reads ahead for all its slots at once, and what a
    // slot does not take (another priority's turn came first) waits to be taken first.
    for i in 0..60 {
        let mut task = new_task(&format!("t{i:02}"));
        task.priority = if i % 2 == 0 { Priority::High } else { Priority::Normal };
        broker.submit(task).await.expect("submit");
    }
    let slots = (0..8).map(|slot| {
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut taken = Vec::new();
            let worker = format!("w/{slot}");
            while let Some(lease) = broker.lease(&worker, &queues(), DEADLINE).await.expect("lease") {
                taken.push(lease.task.id.clone());
                let done = broker
                    .finish(
                        &lease,
                        Finish::Succeeded { result: "null".to_owned() },
                        NewEvent::new(kind::RUN_COMPLETED, json!({})),
                    )
                    .await
                    .expect("finish");
                assert!(done.is_some(), "{} lost its lease", lease.task.id);
            }
            taken
        })
    });
    let mut taken: Vec<String> = Vec::new();
    for slot in slots {
        taken.extend(slot.await.expect("a slot"));
    }
    taken.sort();
    let expected: Vec<String> = (0..60).map(|i| format!("t{i:02}")).collect();
    assert_eq!(taken, expected, "every task once");
    let stats = broker.queue_stats(None).await.expect("stats");
    assert_eq!((stats[0].pending, stats[0].running, stats[0].dead), (0, 0, 0));
    assert!(broker.dead_letters(QUEUE).await.expect("dead letters").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_by_the_stream_layout_stay_readable() {
    let server = RedisServer::start();
    let broker = broker_on(&server.url(), &unique_prefix()).await;
    broker.submit(new_task("old")).await.expect("submit");
    // Builds before the list layout stored a task's events in a stream, entry id = sequence id.
    let legacy = broker.keys().legacy_events(QUEUE, "old");
    server.cli(&["XADD", &legacy, "1-0", "type", "run_started", "data", r#"{"attempt":1}"#, "ts", "1000"]);
    server.cli(&["XADD", &legacy, "2-0", "type", "progress", "data", r#"{"percent":50}"#, "ts", "1001"]);
    let events = broker.events_since("old", 0, 10).await.expect("events");
    let seen: Vec<(u64, &str)> = events.iter().map(|e| (e.seq, e.event_type.as_str())).collect();
    assert_eq!(seen, [(1, "run_started"), (2, "progress")]);
    assert_eq!(events[1].data, json!({"percent": 50}));
    assert_eq!(events[1].ts, 1001);
    let later = broker.events_since("old", 1, 10).await.expect("events");
    assert_eq!(later.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_stored_event_is_a_storage_error_not_a_crash() {
    let server = RedisServer::start();
    let broker = broker_on(&server.url(), &unique_prefix()).await;
    broker.submit(new_task("t")).await.expect("submit");
    let stored =
        broker.append_events("t", vec![NewEvent::new("note", json!({"n": 1}))]).await.expect("append");
    assert_eq!(stored[0].seq, 1);
    server.cli(&["RPUSH", &broker.keys().events(QUEUE, "t"), "not an event"]);
    match broker.events_since("t", 0, 10).await {
        Err(BrokerError::Storage(message)) => assert!(message.contains("undecodable event 2"), "{message}"),
        other => panic!("expected a storage error, got {other:?}"),
    }
    // Reading from past the garbled entry still works, and appending goes on after it.
    let next = broker.append_events("t", vec![NewEvent::new("note", json!({"n": 3}))]).await.expect("append");
    assert_eq!(next[0].seq, 3);
    let tail = broker.events_since("t", 2, 10).await.expect("events");
    assert_eq!(tail.iter().map(|e| (e.seq, e.data.clone())).collect::<Vec<_>>(), [(3, json!({"n": 3}))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_reopened_and_work_goes_on() {
    let server = RedisServer::start();
    let prefix = unique_prefix();
    let broker = broker_on(&server.url(), &prefix).await;
    broker.submit(new_task("first")).await.expect("submit");
    let lease = broker.lease("w", &queues(), DEADLINE).await.expect("lease").expect("a task");

    // A waiter is blocked on the wake stream when every client connection is killed.
    let waiter = {
        let broker = Arc::clone(&broker);
        tokio::spawn(async move { broker.wait_for_work(&queues(), DEADLINE).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let killed = server.cli(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    assert!(killed.trim().parse::<u32>().unwrap_or(0) >= 2, "killed {killed}");

    let (_, errors) = eventually("finish after the kill", || async {
        broker.finish(&lease, done("1"), completed()).await.map(Some)
    })
    .await;
    eprintln!("finish after CLIENT KILL: {errors} failed tries before it went through");
    let other = broker_on(&server.url(), &prefix).await;
    let queue_list = queues();
    other.submit(new_task("second")).await.expect("submit from another host");
    tokio::time::timeout(DEADLINE, waiter).await.expect("the waiter woke").expect("the waiter");
    let (second, _) = eventually("lease after the kill", || broker.lease("w", &queue_list, DEADLINE)).await;
    assert_eq!(second.task.id, "second");
    broker.ping().await.expect("ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_is_reconnected_and_nothing_is_lost() {
    let mut server = RedisServer::start_durable();
    let broker = broker_on(&server.url(), &unique_prefix()).await;
    for id in ["running", "waiting"] {
        broker.submit(new_task(id)).await.expect("submit");
    }
    let running = broker.lease("w", &queues(), DEADLINE).await.expect("lease").expect("a task");
    assert_eq!(running.task.id, "running");

    server.stop();
    assert!(broker.ping().await.is_err(), "ping succeeded with Redis down");
    assert!(broker.lease("w", &queues(), DEADLINE).await.is_err(), "leased with Redis down");
    server.restart();

    let queue_list = queues();
    let started = Instant::now();
    let (waiting, errors) =
        eventually("lease after the restart", || broker.lease("w", &queue_list, DEADLINE)).await;
    eprintln!(
        "lease after a Redis restart: {errors} failed tries, back after {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!((waiting.task.id.as_str(), waiting.attempt), ("waiting", 1));
    let stored = broker.finish(&running, done("1"), completed()).await.expect("finish").expect("still held");
    assert_eq!(stored.seq, 1);
    broker.finish(&waiting, done("2"), completed()).await.expect("finish").expect("held");
    broker.submit(new_task("after")).await.expect("submit after the restart");
    let after = broker.lease("w", &queues(), DEADLINE).await.expect("lease").expect("the new task");
    assert_eq!(after.task.id, "after");
    broker.ping().await.expect("ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_url_or_an_unreachable_redis_is_a_clear_error() {
    let wrong = RedisConfig::new("http://127.0.0.1:6379").expect_err("not a Redis URL");
    assert!(wrong.to_string().contains("redis://"), "{wrong}");
    let garbled = RedisConfig::new("redis://127.0.0.1:notaport").expect_err("a garbled URL");
    assert!(garbled.to_string().contains("invalid Redis URL"), "{garbled}");

    let port = free_port();
    let config = RedisConfig::new(&format!("redis://127.0.0.1:{port}")).expect("a valid URL");
    let Err(unreachable) = RedisBroker::connect(config).await else { panic!("connected to nothing") };
    let message = unreachable.to_string();
    assert!(message.contains("cannot reach Redis") && message.contains(&port.to_string()), "{message}");

    let mut server = RedisServer::start();
    let broker = broker_on(&server.url(), &unique_prefix()).await;
    broker.ping().await.expect("ping");
    server.stop();
    assert!(broker.ping().await.is_err(), "ping answered with Redis gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_host_wakes_when_another_host_submits() {
    let server = RedisServer::start();
    a_waiting_host_wakes_when_another_host_submits_on(&server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_host_wakes_when_another_host_submits_on_a_cluster() {
    let url = tokio::task::spawn_blocking(|| RedisCluster::shared().url()).await.expect("the cluster");
    a_waiting_host_wakes_when_another_host_submits_on(&url).await;
}

async fn a_waiting_host_wakes_when_another_host_submits_on(url: &str) {
    let prefix = unique_prefix();
    let idle = broker_on(url, &prefix).await;
    let busy = broker_on(url, &prefix).await;
    // Let the idle host's watcher start, so the wake below is the submit's and not its first.
    idle.wait_for_work(&queues(), Duration::from_millis(300)).await;
    let waiter = {
        let idle = Arc::clone(&idle);
        tokio::spawn(async move {
            let started = Instant::now();
            idle.wait_for_work(&queues(), DEADLINE).await;
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    busy.submit(new_task("t")).await.expect("submit");
    let waited = waiter.await.expect("the waiter");
    eprintln!(
        "cross-host wake ({}): the idle host woke {} ms after it began waiting (submit at 200 ms)",
        if idle.is_cluster() { "cluster" } else { "standalone" },
        waited.as_millis()
    );
    assert!(waited < DEADLINE / 2, "the idle host slept {waited:?} after another host's submit");
    assert!(idle.lease("w", &queues(), DEADLINE).await.expect("lease").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_forgets_expired_records_and_the_consumers_of_hosts_long_gone() {
    let server = RedisServer::start();
    let mut config = RedisConfig::new(&server.url()).expect("a valid URL").with_prefix(&unique_prefix());
    config.consumer_idle_limit = Duration::ZERO;
    let broker = RedisBroker::connect(config).await.expect("connect");
    broker.submit(new_task("gone")).await.expect("submit");
    broker.submit(new_task("kept")).await.expect("submit");
    let gone = broker.lease("old-host/0", &queues(), DEADLINE).await.expect("lease").expect("a task");
    broker.finish(&gone, done("1"), completed()).await.expect("finish").expect("held");
    let _kept = broker.lease("live-host/0", &queues(), DEADLINE).await.expect("lease").expect("a task");
    // As if the finished task's retention had passed.
    server.cli(&["DEL", &broker.keys().task(QUEUE, "gone")]);

    let report = broker.sweep().await.expect("sweep");
    assert_eq!((report.forgotten, report.consumers_removed), (1, 1), "{report:?}");
    let listed = broker.list(&Default::default()).await.expect("list");
    assert_eq!(listed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["kept"]);
    let consumers = server.cli(&[
        "XINFO",
        "CONSUMERS",
        &broker.keys().stream(QUEUE, TENANT, Priority::Normal),
        "workers",
    ]);
    assert!(consumers.contains("live-host/0") && !consumers.contains("old-host/0"), "{consumers}");
    assert_eq!(broker.sweep().await.expect("sweep"), SweepReport::default(), "a second sweep finds nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_takes_back_an_entry_stranded_in_the_pending_list() {
    let server = RedisServer::start();
    let mut config = RedisConfig::new(&server.url()).expect("a valid URL").with_prefix(&unique_prefix());
    config.stranded_after = Duration::ZERO;
    let broker = RedisBroker::connect(config).await.expect("connect");
    broker.submit(new_task("running")).await.expect("submit");
    let running = broker.lease("w", &queues(), DEADLINE).await.expect("lease").expect("a task");
    // Delivered outside the lease script, as by a step that never completed: no lease is
    // recorded and the group will not deliver the entries again.
    let stream = broker.keys().stream(QUEUE, TENANT, Priority::Normal);
    broker.submit(new_task("lost")).await.expect("submit");
    server.cli(&["XREADGROUP", "GROUP", "workers", "thief", "COUNT", "1", "STREAMS", &stream, ">"]);
    server.cli(&["XADD", &stream, "*", "task", "no-such-task"]);
    server.cli(&["XREADGROUP", "GROUP", "workers", "thief", "COUNT", "1", "STREAMS", &stream, ">"]);
    assert!(
        broker.lease("w", &queues(), DEADLINE).await.expect("lease").is_none(),
        "the entries are stranded"
    );

    // Idle workers do not spin on a count that promises work no lease can get.
    let started = Instant::now();
    for _ in 0..6 {
        assert!(broker.lease("w", &queues(), DEADLINE).await.expect("lease").is_none());
        broker.wait_for_work(&queues(), Duration::from_millis(300)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(300), "waiting kept returning at once");

    let report = broker.sweep().await.expect("sweep");
    assert_eq!(report.repaired, 2, "{report:?}");
    let lost = broker.lease("w", &queues(), DEADLINE).await.expect("lease").expect("taken back");
    assert_eq!((lost.task.id.as_str(), lost.attempt), ("lost", 1));
    let letters = broker.dead_letters(QUEUE).await.expect("dead letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(letters[0].1.contains("stranded"), "{letters:?}");
    assert_eq!(
        broker.renew(&running, DEADLINE).await.expect("renew"),
        LeaseState::Held,
        "a running task is left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_task_record_goes_to_the_dead_letters_and_consumption_goes_on() {
    let server = RedisServer::start();
    let broker = broker_on(&server.url(), &unique_prefix()).await;
    broker.submit(new_task("garbled")).await.expect("submit");
    broker.submit(new_task("fine")).await.expect("submit");
    server.cli(&["HSET", &broker.keys().task(QUEUE, "garbled"), "limits", "{not json"]);

    let lease = broker.lease("w", &queues(), DEADLINE).await.expect("lease").expect("the next task");
    assert_eq!(lease.task.id, "fine");
    let reason = server.cli(&["HGET", &broker.keys().task(QUEUE, "garbled"), "error_message"]);
    assert!(reason.contains("undecodable task record") && reason.contains("limits"), "{reason}");
    assert_eq!(server.cli(&["HGET", &broker.keys().task(QUEUE, "garbled"), "status"]).trim(), "dead");
    assert_eq!(broker.queue_stats(None).await.expect("stats")[0].dead, 1);
    let error = broker.get(None, "garbled").await.expect_err("the record cannot be read");
    assert!(matches!(error, BrokerError::Storage(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_task_is_published_for_every_host() {
    use futures::StreamExt;

    let server = RedisServer::start();
    let broker = broker_on(&server.url(), &unique_prefix()).await;
    let client = redis::Client::open(server.url()).expect("a client");
    let mut pubsub = client.get_async_pubsub().await.expect("a subscription connection");
    pubsub.subscribe(broker.keys().cancel_channel()).await.expect("subscribe");
    broker.submit(new_task("t")).await.expect("submit");
    let lease = broker.lease("w", &queues(), DEADLINE).await.expect("lease").expect("the task");

    broker.cancel(None, "t").await.expect("cancel");
    let message = tokio::time::timeout(DEADLINE, pubsub.on_message().next())
        .await
        .expect("the cancel was published")
        .expect("a message");
    assert_eq!(message.get_payload::<String>().expect("a text payload"), "t");
    assert_eq!(broker.renew(&lease, DEADLINE).await.expect("renew"), LeaseState::CancelRequested);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_url_connects_over_tls() {
    let certs = tempfile::tempdir().expect("a folder for the certificate");
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let tls_port = free_port().to_string();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let _server = RedisServer::start_with(&[
        "--appendonly",
        "no",
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &cert,
        "--tls-auth-clients",
        "no",
    ]);
    // The certificate is self-signed: this test checks the transport, not the trust chain.
    let broker = broker_on(&format!("rediss://127.0.0.1:{tls_port}/#insecure"), &unique_prefix()).await;
    broker.submit(new_task("t")).await.expect("submit over TLS");
    let lease = broker.lease("w", &queues(), DEADLINE).await.expect("lease").expect("the task");
    broker.finish(&lease, done("1"), completed()).await.expect("finish").expect("held");
}

/// One host: a worker pool on a runtime of its own, so that dropping the runtime ends the host
/// the way a crash does (nothing released, nothing finished).
fn start_host(url: &str, prefix: &str, name: &str) -> tokio::runtime::Runtime {
    use taskhost::events::EventHub;
    use taskhost::plugin::PluginRegistry;
    use taskhost::worker::{Worker, WorkerSettings};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (url, prefix, name) = (url.to_owned(), prefix.to_owned(), name.to_owned());
    runtime.spawn(async move {
        let broker: Arc<dyn Broker> = broker_on(&url, &prefix).await;
        let sandbox = Arc::new(crate::support::sandbox(2));
        let dirs = [crate::support::plugin_dir("examples/hello")];
        let plugins =
            PluginRegistry::load(&sandbox, &dirs, &crate::support::cache_dir()).await.expect("plugins");
        let mut settings = WorkerSettings::new(1, queues(), name);
        settings.lease_duration = Duration::from_secs(1);
        settings.lease_renewal_interval = Duration::from_millis(250);
        settings.idle_wait = Duration::from_millis(200);
        let hub = EventHub::new(broker.clone());
        let worker = Arc::new(Worker::new(broker, hub, sandbox, Arc::new(plugins), settings));
        worker.run(tokio_util::sync::CancellationToken::new(), Duration::from_secs(5)).await;
    });
    runtime
}

#[test]
fn a_task_whose_host_dies_mid_run_is_run_again_by_another_host() {
    let server = RedisServer::start();
    let prefix = unique_prefix();
    let control = tokio::runtime::Runtime::new().expect("a runtime");
    let broker = control.block_on(broker_on(&server.url(), &prefix));
    let task = NewTask {
        plugin: "hello".to_owned(),
        task_name: "hello".to_owned(),
        input: json!({"name": "Ada", "spin_ms": 2000}).to_string(),
        ..new_task("survivor")
    };
    control.block_on(broker.submit(task)).expect("submit");
    let status = |broker: &RedisBroker| {
        control.block_on(broker.get(None, "survivor")).expect("get").expect("the task")
    };

    let doomed = start_host(&server.url(), &prefix, "doomed");
    let started = Instant::now();
    while status(&broker).status != TaskStatus::Running {
        assert!(started.elapsed() < DEADLINE, "the first host never started the task");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    doomed.shutdown_background();

    let _survivor = start_host(&server.url(), &prefix, "survivor");
    let started = Instant::now();
    loop {
        let task = status(&broker);
        if task.status == TaskStatus::Succeeded {
            assert_eq!(task.attempts, 2, "run once more, as the next attempt");
            break;
        }
        assert!(started.elapsed() < DEADLINE * 2, "the task was not run again: {task:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let events = control.block_on(broker.events_since("survivor", 0, 0)).expect("events");
    let starts: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == kind::RUN_STARTED)
        .map(|e| (e.data["attempt"].clone(), e.data["host"].clone()))
        .collect();
    assert_eq!(starts, [(json!(1), json!("doomed")), (json!(2), json!("survivor"))]);
    assert_eq!(events.last().map(|e| e.event_type.as_str()), Some(kind::RUN_COMPLETED));
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>(), "gapless across both hosts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_inputs_and_results_travel_beside_batched_calls() {
    let server = RedisServer::start();
    let broker = broker_on(&server.url(), &unique_prefix()).await;
    let big = json!({"blob": "x".repeat(200 << 10)}).to_string();
    let submits = (0..8).map(|i| {
        let broker = broker.clone();
        let input = if i == 3 { big.clone() } else { json!({"i": i}).to_string() };
        async move { broker.submit(NewTask { input, ..new_task(&format!("t{i}")) }).await.expect("submit") }
    });
    let submitted = futures::future::join_all(submits).await;
    assert!(submitted.iter().all(|s| s.created));
    let mut leases = Vec::new();
    while let Some(lease) = broker.lease("w", &queues(), DEADLINE).await.expect("lease") {
        leases.push(lease);
    }
    assert_eq!(leases.len(), 8);
    let large = leases.iter().find(|l| l.task.id == "t3").expect("the large task");
    assert_eq!(large.task.input, big);
    let finishes = leases.iter().map(|lease| {
        let result = if lease.task.id == "t3" { big.clone() } else { "1".to_owned() };
        broker.finish(lease, done(&result), completed())
    });
    for stored in futures::future::join_all(finishes).await {
        assert!(stored.expect("finish").is_some(), "a finish was lost");
    }
    let task = broker.get(None, "t3").await.expect("get").expect("the task");
    assert_eq!((task.status, task.result.as_deref()), (TaskStatus::Succeeded, Some(big.as_str())));
}

/// With [`Broker::record_run_started`], the lease stores `run_started` in the step that starts the
/// attempt, as the worker would have appended it, for tasks of the named plugins that ask for no
/// limits of their own; the others are left to the worker.
async fn the_lease_stores_run_started_for_the_plugins_named(url: &str) {
    let broker = broker_on(url, &unique_prefix()).await;
    let limits = json!({"fuel": 5_000_000_000u64, "timeout_ms": 1000, "memory_bytes": 64 << 20});
    broker.record_run_started("host-\"1\"", &[("echo".to_owned(), limits.clone())]);
    broker.submit(new_task("plain")).await.expect("submit");
    let narrowed = taskhost::sandbox::LimitsRequest { fuel: Some(10), ..Default::default() };
    broker.submit(NewTask { limits: narrowed, ..new_task("narrowed") }).await.expect("submit");
    broker.submit(NewTask { plugin: "other".to_owned(), ..new_task("other") }).await.expect("submit");
    let mut leases = Vec::new();
    while let Some(lease) = broker.lease("h/0", &queues(), DEADLINE).await.expect("lease") {
        leases.push(lease);
    }
    assert_eq!(leases.len(), 3);
    let lease_of = |id: &str| leases.iter().find(|l| l.task.id == id).expect("leased");
    let expected =
        json!({"attempt": 1, "host": "host-\"1\"", "worker": "h/0", "plugin": "echo", "limits": limits});
    let plain = lease_of("plain");
    let started = plain.started.clone().expect("run_started stored with the lease");
    assert_eq!((started.seq, started.event_type.as_str()), (1, kind::RUN_STARTED));
    assert_eq!(started.data, expected);
    assert_eq!(Some(started.ts), plain.task.started_at);
    let stored = broker.events_since("plain", 0, 10).await.expect("events");
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].seq, &stored[0].event_type, &stored[0].data), (1, &started.event_type, &expected));
    for id in ["narrowed", "other"] {
        assert!(lease_of(id).started.is_none(), "{id}: the worker appends it");
        assert!(broker.events_since(id, 0, 10).await.expect("events").is_empty(), "{id}");
    }
    // A later attempt's event follows the task's earlier events.
    broker.release(plain).await.expect("release");
    let again = broker.lease("h/1", &queues(), DEADLINE).await.expect("lease").expect("the task again");
    let started = again.started.expect("run_started stored with the lease");
    assert_eq!((started.seq, &started.data["worker"]), (2, &json!("h/1")));
    assert_eq!(broker.events_since("plain", 0, 10).await.expect("events").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_stores_run_started_for_the_plugins_named_on_standalone_redis() {
    let server = RedisServer::start();
    the_lease_stores_run_started_for_the_plugins_named(&server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_stores_run_started_for_the_plugins_named_on_a_cluster() {
    let url = tokio::task::spawn_blocking(|| RedisCluster::shared().url()).await.expect("the cluster");
    the_lease_stores_run_started_for_the_plugins_named(&url).await;
}

/// The node of the shared cluster that holds `key`: the one that does not answer `MOVED`.
async fn node_holding(key: &str) -> redis::aio::MultiplexedConnection {
    let url = tokio::task::spawn_blocking(|| RedisCluster::shared().url()).await.expect("the cluster");
    for node in url.split(',') {
        let client = redis::Client::open(node).expect("a node's URL");
        let mut conn = client.get_multiplexed_async_connection().await.expect("connect to a node");
        let owns: Result<i64, _> = redis::cmd("EXISTS").arg(key).query_async(&mut conn).await;
        if owns.is_ok() {
            return conn;
        }
    }
    panic!("no node holds {key}");
}

/// The members of a tenant's permits set: the tasks holding one.
async fn permits_held(node: &mut redis::aio::MultiplexedConnection, permits: &str) -> Vec<String> {
    redis::cmd("ZRANGE").arg(permits).arg(0).arg(-1).query_async(node).await.expect("zrange")
}

/// On a Cluster, a host counts the free permits of a tenant with a quota, leases, then takes a
/// permit per task started. When another host takes the last permit in between, the task goes
/// back at once, and that attempt leaves no event and counts no attempt.
///
/// The race is made certain: writes to the queue's node are paused (`CLIENT PAUSE ... WRITE`, which
/// lets reads through) once the host has counted the permits, another permit is added, and the
/// node resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_task_whose_permit_was_taken_meanwhile_goes_back_with_no_event_and_no_attempt() {
    use taskhost::queue::TenantPolicy;
    let backend = cluster();
    let queue_node_key = format!("{}:{{{QUEUE}}}:probe", backend.prefix);
    let mut queue_node = node_holding(&queue_node_key).await;
    let queue_node_id: String =
        redis::cmd("CLUSTER").arg("MYID").query_async(&mut queue_node).await.expect("node id");
    // A tenant whose permits live on another node than the queue's.
    let mut tenant = None;
    for candidate in (0..16).map(|i| format!("capped-{i}")) {
        let key = format!("{}:permits:{{{candidate}}}", backend.prefix);
        let mut node = node_holding(&key).await;
        let id: String = redis::cmd("CLUSTER").arg("MYID").query_async(&mut node).await.expect("node id");
        if id != queue_node_id {
            tenant = Some((candidate, key, node));
            break;
        }
    }
    let (tenant, permits, mut permits_node) = tenant.expect("a tenant on another node than the queue");

    let broker = backend.open().await;
    let limits = json!({"fuel": 1000, "timeout_ms": 1000, "memory_bytes": 1 << 20});
    broker.record_run_started("host-1", &[("echo".to_owned(), limits)]);
    let policy = TenantPolicy { tenant: tenant.clone(), weight: 1, concurrent_tasks: Some(1) };
    broker.set_tenant_policies(&queues(), &[policy]).await.expect("set the policies");
    let task = NewTask { tenant: tenant.clone(), ..new_task("raced") };
    assert!(broker.submit(task).await.expect("submit").created);

    // A lapsed permit the count removes: its going shows that the host has counted.
    let _: i64 = redis::cmd("ZADD")
        .arg(&permits)
        .arg(1)
        .arg("long-gone")
        .query_async(&mut permits_node)
        .await
        .expect("zadd");
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(10_000)
        .arg("WRITE")
        .query_async(&mut queue_node)
        .await
        .expect("pause the queue's node");
    let leasing = {
        let broker = broker.clone();
        tokio::spawn(async move { broker.lease("h/0", &queues(), DEADLINE).await })
    };
    let counted_by = Instant::now() + DEADLINE;
    loop {
        let left: Option<f64> = redis::cmd("ZSCORE")
            .arg(&permits)
            .arg("long-gone")
            .query_async(&mut permits_node)
            .await
            .expect("zscore");
        if left.is_none() {
            break;
        }
        if Instant::now() > counted_by {
            let _: Result<(), _> = redis::cmd("CLIENT").arg("UNPAUSE").query_async(&mut queue_node).await;
            panic!("the host did not count the permits");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Another host takes the one permit; then the lease goes on.
    let _: i64 = redis::cmd("ZADD")
        .arg(&permits)
        .arg(taskhost::queue::now_ms() + 60_000)
        .arg("elsewhere")
        .query_async(&mut permits_node)
        .await
        .expect("zadd");
    let _: () = redis::cmd("CLIENT").arg("UNPAUSE").query_async(&mut queue_node).await.expect("unpause");
    let leased = leasing.await.expect("the lease call").expect("lease");
    assert!(leased.is_none(), "leased without a permit: {leased:?}");

    let task = broker.get(None, "raced").await.expect("get").expect("the task");
    assert_eq!((task.status, task.attempts), (TaskStatus::Queued, 0));
    assert!(
        broker.events_since("raced", 0, 10).await.expect("events").is_empty(),
        "an attempt that never ran left events"
    );
    assert_eq!(permits_held(&mut permits_node, &permits).await, ["elsewhere"]);

    // Once the other permit is returned, the task starts as its first attempt, and its first
    // event is the `run_started` its worker appends.
    let _: i64 =
        redis::cmd("ZREM").arg(&permits).arg("elsewhere").query_async(&mut permits_node).await.expect("zrem");
    let lease =
        broker.lease("h/0", &queues(), Duration::from_secs(60)).await.expect("lease").expect("the task, now");
    assert_eq!((lease.task.id.as_str(), lease.attempt), ("raced", 1));
    assert!(lease.started.is_none(), "the worker appends run_started once the permit is held");
    assert!(broker.events_since("raced", 0, 10).await.expect("events").is_empty());
    assert_eq!(permits_held(&mut permits_node, &permits).await, ["raced"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_the_quota_permit_of_a_host_that_died_lapses_with_its_lease() {
    use taskhost::queue::TenantPolicy;
    let backend = cluster();
    let (dead, alive) = (backend.open().await, backend.open().await);
    let both = vec![QUEUE.to_owned(), "second".to_owned()];
    let capped = TenantPolicy { tenant: "capped".into(), weight: 1, concurrent_tasks: Some(1) };
    dead.set_tenant_policies(&both, &[capped]).await.expect("set the policies");
    for (i, queue) in both.iter().enumerate() {
        let task = NewTask { tenant: "capped".into(), queue: queue.clone(), ..new_task(&format!("c{i}")) };
        assert!(dead.submit(task).await.expect("submit").created);
    }
    // The first host takes the one place, with a short lease, and is never heard of again.
    let short = Duration::from_millis(500);
    let held = dead.lease("dead/0", &both, short).await.expect("lease").expect("a task");
    assert!(alive.lease("alive/0", &both, Duration::from_secs(60)).await.expect("lease").is_none());
    // Its lease lapses, and with it (a margin for the nodes' clocks later) its permit: the other
    // host starts a task, from either queue, and only one.
    let next = crate::broker_conformance::lease_from_within(
        &alive,
        "alive/0",
        &both,
        Duration::from_secs(60),
        Duration::from_secs(15),
    )
    .await
    .expect("the dead host's permit lapsed");
    assert_eq!(next.task.tenant, "capped");
    assert!(alive.lease("alive/1", &both, Duration::from_secs(60)).await.expect("lease").is_none());
    // The dead host's renewal (were it to wake up) finds its lease gone and leaves the permit,
    // now the new holder's, alone.
    assert_eq!(dead.renew(&held, short).await.expect("renew"), LeaseState::Lost);
    assert!(alive.lease("alive/1", &both, Duration::from_secs(60)).await.expect("lease").is_none());
}
