//! Per-task limits: declared once here, with their defaults.
//!
//! A task's effective limits come from three layers, each of which may only narrow the one
//! before: the host's ceilings ([`TaskLimits::ceiling`]), the plugin manifest's `[limits]`
//! (defaults for its tasks), and the submit request's `limits` ([`LimitsRequest`]). A request
//! can never widen what the manifest grants.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The limits one task runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TaskLimits {
    /// Fuel units (about one per WebAssembly instruction): a deterministic CPU budget.
    pub fuel: u64,
    /// Wall-clock budget of one attempt. `cancelled()` turns true at the soft deadline
    /// ([`TaskLimits::soft_deadline`]); the run is stopped at this one.
    pub timeout_ms: u64,
    /// Bytes of linear memory per memory of the instance.
    pub memory_bytes: u64,
    /// Elements per table.
    pub table_elements: u64,
    /// Core and component instances the plugin may create.
    pub instances: u64,
    /// Bytes of the JSON result.
    pub output_bytes: u64,
    /// Events (`emit`) per task.
    pub events_total: u64,
    /// Sustained events per second; bursts up to [`TaskLimits::events_burst`] pass.
    pub events_per_sec: u64,
    /// Events allowed in a burst above the sustained rate.
    pub events_burst: u64,
    /// Bytes of log lines (`log`, stdout, stderr); further lines are dropped.
    pub log_bytes: u64,
    /// Bytes of one event's data.
    pub event_bytes: u64,
}

impl Default for TaskLimits {
    /// The defaults a plugin gets when its manifest names no limit.
    fn default() -> Self {
        TaskLimits {
            fuel: 50_000_000_000,
            timeout_ms: 5 * 60 * 1000,
            memory_bytes: 256 << 20,
            table_elements: 100_000,
            instances: 32,
            output_bytes: 4 << 20,
            events_total: 10_000,
            events_per_sec: 200,
            events_burst: 1_000,
            log_bytes: 1 << 20,
            event_bytes: 64 << 10,
        }
    }
}

impl TaskLimits {
    /// The most any manifest may grant on this host.
    pub fn ceiling() -> Self {
        TaskLimits {
            fuel: u64::MAX / 2,
            timeout_ms: 7 * 24 * 3600 * 1000,
            memory_bytes: 4 << 30,
            table_elements: 10_000_000,
            instances: 128,
            output_bytes: 64 << 20,
            events_total: 10_000_000,
            events_per_sec: 100_000,
            events_burst: 100_000,
            log_bytes: 64 << 20,
            event_bytes: 1 << 20,
        }
    }

    /// Applies a manifest's `[limits]` (clamped to the ceiling).
    pub fn with_manifest(self, m: &ManifestLimits) -> Self {
        let ceiling = TaskLimits::ceiling();
        let pick = |given: Option<u64>, default: u64, max: u64| given.unwrap_or(default).min(max);
        TaskLimits {
            fuel: pick(m.fuel, self.fuel, ceiling.fuel),
            timeout_ms: pick(m.timeout_ms, self.timeout_ms, ceiling.timeout_ms),
            memory_bytes: pick(m.memory_mb.map(|mb| mb << 20), self.memory_bytes, ceiling.memory_bytes),
            table_elements: self.table_elements,
            instances: self.instances,
            output_bytes: pick(m.output_kb.map(|kb| kb << 10), self.output_bytes, ceiling.output_bytes),
            events_total: pick(m.events_total, self.events_total, ceiling.events_total),
            events_per_sec: pick(m.events_per_sec, self.events_per_sec, ceiling.events_per_sec),
            events_burst: pick(m.events_burst, self.events_burst, ceiling.events_burst),
            log_bytes: pick(m.log_kb.map(|kb| kb << 10), self.log_bytes, ceiling.log_bytes),
            event_bytes: self.event_bytes,
        }
    }

    /// Narrows by a request: each limit the request names becomes the smaller of the two.
    pub fn narrowed_by(self, r: &LimitsRequest) -> Self {
        let narrow = |current: u64, asked: Option<u64>| asked.map_or(current, |a| a.min(current));
        TaskLimits {
            fuel: narrow(self.fuel, r.fuel),
            timeout_ms: narrow(self.timeout_ms, r.timeout_ms),
            memory_bytes: narrow(self.memory_bytes, r.memory_mb.map(|mb| mb.saturating_mul(1 << 20))),
            ..self
        }
    }

    /// The hard wall-clock deadline.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// When `cancelled()` turns true: a tenth of the budget before the hard deadline, but at
    /// most 5 s and at least 0.
    pub fn soft_deadline(&self) -> Duration {
        let margin = (self.timeout_ms / 10).min(5_000);
        Duration::from_millis(self.timeout_ms - margin)
    }
}

/// A manifest's `[limits]` table. Every field is optional; absent ones keep the host default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestLimits {
    /// Fuel units per task.
    pub fuel: Option<u64>,
    /// Wall-clock milliseconds per attempt.
    pub timeout_ms: Option<u64>,
    /// Memory in MiB.
    pub memory_mb: Option<u64>,
    /// Output size in KiB.
    pub output_kb: Option<u64>,
    /// Events per task.
    pub events_total: Option<u64>,
    /// Sustained events per second.
    pub events_per_sec: Option<u64>,
    /// Burst allowance above the sustained rate.
    pub events_burst: Option<u64>,
    /// Log volume in KiB.
    pub log_kb: Option<u64>,
}

/// The `limits` object of a submit request: the submitter may narrow fuel, time and memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    /// Fuel units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Wall-clock milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_narrows_but_never_widens() {
        let base = TaskLimits::default().with_manifest(&ManifestLimits {
            fuel: Some(1_000),
            timeout_ms: Some(10_000),
            ..Default::default()
        });
        let narrowed =
            base.narrowed_by(&LimitsRequest { fuel: Some(10), timeout_ms: Some(99_999), memory_mb: Some(1) });
        assert_eq!(narrowed.fuel, 10);
        assert_eq!(narrowed.timeout_ms, 10_000, "a request cannot lengthen the manifest's timeout");
        assert_eq!(narrowed.memory_bytes, 1 << 20);
    }

    #[test]
    fn a_manifest_cannot_exceed_the_ceiling() {
        let l = TaskLimits::default()
            .with_manifest(&ManifestLimits { memory_mb: Some(1 << 30), ..Default::default() });
        assert_eq!(l.memory_bytes, TaskLimits::ceiling().memory_bytes);
    }

    #[test]
    fn the_soft_deadline_comes_before_the_hard_one() {
        let l = TaskLimits { timeout_ms: 1_000, ..TaskLimits::default() };
        assert_eq!(l.soft_deadline(), Duration::from_millis(900));
        let long = TaskLimits { timeout_ms: 600_000, ..TaskLimits::default() };
        assert_eq!(long.soft_deadline(), Duration::from_millis(595_000));
    }
}
