//! Prometheus metrics: every metric name declared once, here, with what it measures.
//!
//! Rooms record through the functions below; `GET /metrics` renders the registry in Prometheus
//! text format. Queue depths are read from the broker at scrape time, so they are exact rather
//! than sampled.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Tasks finished, by `plugin`, `tenant` and `outcome` (`succeeded`, `out_of_fuel`, ...).
pub const TASKS_FINISHED: &str = "taskhost_tasks_finished_total";
/// Wall-clock seconds of one attempt, by `plugin`.
pub const RUN_SECONDS: &str = "taskhost_task_run_seconds";
/// Seconds from a task becoming runnable to its attempt starting, by `plugin`.
pub const QUEUE_WAIT_SECONDS: &str = "taskhost_task_queue_wait_seconds";
/// Fuel consumed, by `plugin` and `tenant`.
pub const FUEL_USED: &str = "taskhost_fuel_used_total";
/// Seconds to create a store and instantiate a plugin.
pub const INSTANTIATE_SECONDS: &str = "taskhost_instantiate_seconds";
/// Tasks running on this host.
pub const TASKS_RUNNING: &str = "taskhost_tasks_running";
/// Events stored, by `origin` (`plugin` or `host`). `rate()` of it is events per second.
pub const EVENTS: &str = "taskhost_events_total";
/// Open WebSocket watchers.
pub const WS_WATCHERS: &str = "taskhost_websocket_watchers";
/// Tasks per queue and `state` (`pending`, `running`, `scheduled`, `dead`).
pub const QUEUE_DEPTH: &str = "taskhost_queue_depth";
/// Broker calls that failed, by `op`.
pub const BROKER_ERRORS: &str = "taskhost_broker_errors_total";
/// Broker reconnections.
pub const BROKER_RECONNECTS: &str = "taskhost_broker_reconnects_total";
/// Online hosts sharing a queue with this one that store other tenant weights and quotas.
pub const TENANT_POLICY_CONFLICTS: &str = "taskhost_tenant_policy_conflicts";

/// Histogram buckets, in seconds: from 100 µs to 6 hours (tasks run for hours).
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
    21600.0,
];

/// Installs the process-wide recorder once and returns the handle that renders it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .map(|b| b.build_recorder())
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Fails only if another recorder is installed (tests embedding the host): then this
        // handle renders an empty registry rather than taking the process down.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(TASKS_FINISHED, "Tasks finished, by plugin, tenant and outcome");
    metrics::describe_histogram!(RUN_SECONDS, metrics::Unit::Seconds, "Wall-clock time of one attempt");
    metrics::describe_histogram!(QUEUE_WAIT_SECONDS, metrics::Unit::Seconds, "Time from runnable to started");
    metrics::describe_counter!(FUEL_USED, "Fuel consumed by tasks");
    metrics::describe_histogram!(
        INSTANTIATE_SECONDS,
        metrics::Unit::Seconds,
        "Store creation and instantiation"
    );
    metrics::describe_gauge!(TASKS_RUNNING, "Tasks running on this host");
    metrics::describe_counter!(EVENTS, "Events stored");
    metrics::describe_gauge!(WS_WATCHERS, "Open WebSocket watchers");
    metrics::describe_gauge!(QUEUE_DEPTH, "Tasks per queue and state");
    metrics::describe_counter!(BROKER_ERRORS, "Failed broker calls");
    metrics::describe_counter!(BROKER_RECONNECTS, "Broker reconnections");
    metrics::describe_gauge!(
        TENANT_POLICY_CONFLICTS,
        "Online hosts sharing a queue with this one that store other tenant weights and quotas"
    );
}

/// Records a finished attempt.
pub fn task_finished(
    plugin: &str,
    tenant: &str,
    outcome: &str,
    run: Duration,
    instantiate: Duration,
    fuel: u64,
) {
    let labels = [("plugin", plugin.to_owned()), ("tenant", tenant.to_owned())];
    counter!(TASKS_FINISHED, "plugin" => plugin.to_owned(), "tenant" => tenant.to_owned(), "outcome" => outcome.to_owned())
        .increment(1);
    histogram!(RUN_SECONDS, "plugin" => plugin.to_owned()).record(run.as_secs_f64());
    histogram!(INSTANTIATE_SECONDS).record(instantiate.as_secs_f64());
    counter!(FUEL_USED, &labels).increment(fuel);
}

/// Records how long a task waited before its attempt started.
pub fn task_started(plugin: &str, waited: Duration) {
    histogram!(QUEUE_WAIT_SECONDS, "plugin" => plugin.to_owned()).record(waited.as_secs_f64());
    gauge!(TASKS_RUNNING).increment(1.0);
}

/// Records the end of a running attempt on this host.
pub fn task_stopped() {
    gauge!(TASKS_RUNNING).decrement(1.0);
}

/// Records stored events.
pub fn events_stored(origin: &'static str, count: usize) {
    counter!(EVENTS, "origin" => origin).increment(count as u64);
}

/// A WebSocket watcher connected (+1) or left (-1).
pub fn watchers(delta: f64) {
    gauge!(WS_WATCHERS).increment(delta);
}

/// A broker call failed.
pub fn broker_error(op: &'static str) {
    counter!(BROKER_ERRORS, "op" => op).increment(1);
}

/// The broker reconnected.
pub fn broker_reconnected() {
    counter!(BROKER_RECONNECTS).increment(1);
}

/// How many online hosts sharing a queue with this one store other tenant weights and quotas.
pub fn tenant_policy_conflicts(hosts: usize) {
    gauge!(TENANT_POLICY_CONFLICTS).set(hosts as f64);
}

/// Sets the depth gauges of one queue.
pub fn queue_depth(queue: &str, pending: u64, running: u64, scheduled: u64, dead: u64) {
    for (state, value) in
        [("pending", pending), ("running", running), ("scheduled", scheduled), ("dead", dead)]
    {
        gauge!(QUEUE_DEPTH, "queue" => queue.to_owned(), "state" => state).set(value as f64);
    }
}
