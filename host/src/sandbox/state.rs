//! The per-task store data and the host imports a plugin calls (`progress`, `emit`, `log`,
//! `cancelled`), with the limits they enforce.
//!
//! A host import never fails towards the guest: a plugin that breaks a rule (too many events, a
//! reserved event type, data that is not JSON) is stopped with a trap, and the rule it broke is
//! recorded here as `TaskState::violation` so that the outcome names it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::TaskLimits;
use super::outcome::Outcome;
use super::world::taskhost::plugin::{host, types};
use crate::events::kind;

/// What a running plugin reports, in the order it reported it. The worker stores these.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// `progress(percent, message)`, clamped and made monotone.
    Progress {
        /// 0..=100.
        percent: f32,
        /// The plugin's message.
        message: String,
    },
    /// `emit(kind, data)`, validated.
    Event {
        /// Event type.
        kind: String,
        /// JSON data.
        data: Value,
    },
    /// `log(level, message)` or a line of stdout/stderr, within the log budget.
    Log {
        /// `trace`..`error`, or `stdout`/`stderr`.
        level: &'static str,
        /// The line.
        message: String,
    },
}

/// Limits memory and tables through [`StoreLimits`] and remembers a refused memory growth, so that
/// the trap that follows is reported as `memory_limit`.
pub struct Limiter {
    inner: StoreLimits,
    /// True once a memory growth was refused.
    pub memory_refused: bool,
}

impl Limiter {
    pub(crate) fn new(limits: &TaskLimits) -> Self {
        let inner = wasmtime::StoreLimitsBuilder::new()
            .memory_size(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX))
            .table_elements(usize::try_from(limits.table_elements).unwrap_or(usize::MAX))
            .instances(limits.instances as usize)
            .tables(limits.instances as usize)
            .memories(limits.instances as usize)
            .build();
        Limiter { inner, memory_refused: false }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.memory_refused = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// A token bucket: `rate` per second sustained, `burst` at once.
#[derive(Debug)]
struct RateBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl RateBucket {
    fn new(rate: u64, burst: u64) -> Self {
        RateBucket { tokens: burst as f64, rate: rate as f64, burst: burst as f64, last: Instant::now() }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The data of one task's store.
pub struct TaskState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    limits: TaskLimits,
    reports: mpsc::Sender<Report>,
    /// Set when the task should stop (client cancel or soft deadline): `cancelled()` reads it.
    pub(crate) stop_requested: Arc<AtomicBool>,
    /// The rule the plugin broke, if a host import stopped it.
    pub(crate) violation: Option<Outcome>,
    /// The last error-level log line (a panic message, usually), quoted in trap outcomes.
    pub(crate) last_error_log: Option<String>,
    progress: f32,
    events_emitted: u64,
    events_rate: RateBucket,
    log_bytes: u64,
    log_truncated: bool,
}

impl TaskState {
    pub(crate) fn new(
        wasi: WasiCtx,
        limits: TaskLimits,
        reports: mpsc::Sender<Report>,
        stop_requested: Arc<AtomicBool>,
    ) -> Self {
        TaskState {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(&limits),
            limits,
            reports,
            stop_requested,
            violation: None,
            last_error_log: None,
            progress: 0.0,
            events_emitted: 0,
            events_rate: RateBucket::new(limits.events_per_sec, limits.events_burst),
            log_bytes: 0,
            log_truncated: false,
        }
    }

    /// Sends a report to the worker. Waits while the worker's buffer is full (backpressure on a
    /// chatty plugin); a worker that stopped listening is not the plugin's problem.
    async fn report(&mut self, report: Report) {
        let _ = self.reports.send(report).await;
    }

    fn stop_with(&mut self, violation: Outcome) -> wasmtime::Error {
        let message = violation.message();
        self.violation = Some(violation);
        wasmtime::Error::msg(message)
    }

    /// Records a log line within the log budget. Past the budget, one line says so and the rest
    /// are dropped.
    pub(crate) async fn log_line(&mut self, level: &'static str, message: String) {
        if level == "error" {
            self.last_error_log = Some(truncate(&message, 2_000));
        }
        if self.log_truncated {
            return;
        }
        let size = message.len() as u64;
        if self.log_bytes + size > self.limits.log_bytes {
            self.log_truncated = true;
            let note =
                format!("log volume limit of {} bytes reached; further lines dropped", self.limits.log_bytes);
            self.report(Report::Log { level: "warn", message: note }).await;
            return;
        }
        self.log_bytes += size;
        self.report(Report::Log { level, message }).await;
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// An event type is 1 to 64 characters of `a-z`, `0-9`, `_` and `.`, starting with a letter.
fn valid_event_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 64
        && kind.starts_with(|c: char| c.is_ascii_lowercase())
        && kind.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for TaskState {}

impl host::Host for TaskState {
    async fn progress(&mut self, percent: f32, message: String) -> wasmtime::Result<()> {
        let percent = if percent.is_nan() { self.progress } else { percent.clamp(0.0, 100.0) };
        // Progress never goes back within an attempt.
        self.progress = self.progress.max(percent);
        let message = truncate(&message, 500);
        self.report(Report::Progress { percent: self.progress, message }).await;
        Ok(())
    }

    async fn emit(&mut self, kind: String, data: String) -> wasmtime::Result<()> {
        if !valid_event_kind(&kind) {
            return Err(self.stop_with(Outcome::PluginError {
                message: format!(
                    "emit: event type {:?} is not valid (1-64 characters of a-z, 0-9, '_' and '.', starting with a letter)",
                    truncate(&kind, 80)
                ),
                retryable: false,
            }));
        }
        if kind::RESERVED.contains(&kind.as_str()) {
            return Err(self.stop_with(Outcome::PluginError {
                message: format!("emit: event type `{kind}` is reserved for the host"),
                retryable: false,
            }));
        }
        if data.len() as u64 > self.limits.event_bytes {
            return Err(self.stop_with(Outcome::EventLimit {
                message: format!(
                    "event `{kind}` has {} bytes of data, over the limit of {} bytes",
                    data.len(),
                    self.limits.event_bytes
                ),
            }));
        }
        if self.events_emitted >= self.limits.events_total {
            return Err(self.stop_with(Outcome::EventLimit {
                message: format!(
                    "the plugin emitted more than its limit of {} events",
                    self.limits.events_total
                ),
            }));
        }
        if !self.events_rate.take() {
            return Err(self.stop_with(Outcome::EventLimit {
                message: format!(
                    "the plugin emitted events faster than {} per second (burst {})",
                    self.limits.events_per_sec, self.limits.events_burst
                ),
            }));
        }
        let data: Value = match serde_json::from_str(&data) {
            Ok(v) => v,
            Err(e) => {
                return Err(self.stop_with(Outcome::PluginError {
                    message: format!("emit: data of event `{kind}` is not JSON: {e}"),
                    retryable: false,
                }));
            }
        };
        self.events_emitted += 1;
        self.report(Report::Event { kind, data }).await;
        Ok(())
    }

    async fn log(&mut self, level: types::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            types::Level::Trace => "trace",
            types::Level::Debug => "debug",
            types::Level::Info => "info",
            types::Level::Warn => "warn",
            types::Level::Error => "error",
        };
        self.log_line(level, message).await;
        Ok(())
    }

    async fn cancelled(&mut self) -> wasmtime::Result<bool> {
        Ok(self.stop_requested.load(Ordering::Relaxed))
    }
}
