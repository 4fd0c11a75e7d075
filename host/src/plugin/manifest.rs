//! `plugin.toml`: what a plugin is, what it serves, and what it may use.
//!
//! ```toml
//! name = "hello"                 # required; the component is <name>.wasm beside this file
//! version = "0.1.0"              # required
//! description = "Greets someone" # optional
//! tasks = ["hello"]              # required; task names this plugin serves (the first is the default)
//! queue = "default"              # optional; the queue its tasks wait in
//!
//! [limits]                       # optional; defaults for every task, a request may only narrow them
//! fuel = 50_000_000_000
//! timeout_ms = 300_000
//! memory_mb = 256
//! output_kb = 4096
//! events_total = 10_000
//! events_per_sec = 200
//! events_burst = 1_000
//! log_kb = 1024
//!
//! [retry]                        # optional
//! max_retries = 3                # retries after the first attempt, for retryable outcomes
//! backoff_base_ms = 1_000
//! backoff_cap_ms = 60_000
//!
//! [capabilities]                 # optional; nothing is granted by default
//! data = true                    # the folder's data/ sub-folder, read-only at /data
//! scratch = true                 # a per-task read-write folder at /scratch, removed afterwards
//!
//! [celery]                       # optional; Celery task names this plugin answers to
//! names = ["app.tasks.hello"]
//! args = ["name"]                # input fields that positional args map to, in order
//! ```

use serde::{Deserialize, Serialize};

use crate::sandbox::ManifestLimits;

/// A parsed, validated `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Plugin name: 1-64 characters of `a-z`, `0-9`, `-` and `_`.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// One line about the plugin.
    #[serde(default)]
    pub description: String,
    /// Task names served; the first is the default.
    pub tasks: Vec<String>,
    /// The queue its tasks wait in.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Default limits.
    #[serde(default)]
    pub limits: ManifestLimits,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Capabilities asked for.
    #[serde(default)]
    pub capabilities: ManifestCapabilities,
    /// Celery task names answered to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub celery: Option<CeleryNames>,
}

fn default_queue() -> String {
    "default".into()
}

/// `[retry]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff.
    pub backoff_base_ms: u64,
    /// Longest backoff.
    pub backoff_cap_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 3, backoff_base_ms: 1_000, backoff_cap_ms: 60_000 }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1 for the first), exponential with full jitter:
    /// uniformly random in `[0, min(cap, base * 2^(retry-1))]`, at least 10 ms.
    pub fn backoff_ms(&self, retry: u32, jitter: f64) -> u64 {
        let exp = self.backoff_base_ms.saturating_mul(1u64 << retry.saturating_sub(1).min(32));
        let ceiling = exp.min(self.backoff_cap_ms);
        ((ceiling as f64 * jitter.clamp(0.0, 1.0)) as u64).max(10)
    }
}

/// `[capabilities]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManifestCapabilities {
    /// Read-only access to the plugin's own `data/` folder at `/data`.
    pub data: bool,
    /// A per-task scratch folder at `/scratch`.
    pub scratch: bool,
}

/// `[celery]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeleryNames {
    /// Celery task names.
    #[serde(default)]
    pub names: Vec<String>,
    /// Input fields that positional args map to.
    #[serde(default)]
    pub args: Vec<String>,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not valid TOML, or fields of the wrong type.
    #[error("{0}")]
    Parse(String),
    /// Parsed, but a value is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

/// True for names of plugins, tasks and queues: 1-64 of `a-z`, `A-Z`, `0-9`, `-`, `_`, `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Manifest {
    /// Parses and validates manifest text.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |m: String| Err(ManifestError::Invalid(m));
        if !valid_name(&self.name) || self.name.contains('.') {
            return invalid(format!(
                "name {:?}: use 1-64 characters of a-z, A-Z, 0-9, '-' and '_'",
                self.name
            ));
        }
        if self.tasks.is_empty() {
            return invalid("tasks: list at least one task name".into());
        }
        if let Some(bad) = self.tasks.iter().find(|t| !valid_name(t)) {
            return invalid(format!("tasks: {bad:?} is not a valid task name"));
        }
        if !valid_name(&self.queue) {
            return invalid(format!("queue {:?} is not a valid queue name", self.queue));
        }
        if self.limits.timeout_ms == Some(0)
            || self.limits.fuel == Some(0)
            || self.limits.memory_mb == Some(0)
        {
            return invalid("limits: fuel, timeout_ms and memory_mb must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_manifest_parses_with_defaults() {
        let m = Manifest::parse("name = \"x\"\nversion = \"1\"\ntasks = [\"x\"]\n").unwrap();
        assert_eq!(m.queue, "default");
        assert_eq!(m.retry.max_retries, 3);
        assert!(!m.capabilities.data && !m.capabilities.scratch);
    }

    #[test]
    fn type_errors_and_unknown_fields_are_named() {
        let e = Manifest::parse("name = \"x\"\nversion = \"1\"\ntasks = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("tasks"), "{e}");
        let e = Manifest::parse("name = \"x\"\nversion = \"1\"\ntasks = [\"x\"]\nfuel = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fuel"), "{e}");
    }

    #[test]
    fn bad_names_are_refused() {
        let e =
            Manifest::parse("name = \"../x\"\nversion = \"1\"\ntasks = [\"x\"]\n").unwrap_err().to_string();
        assert!(e.contains("name"), "{e}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy { max_retries: 5, backoff_base_ms: 100, backoff_cap_ms: 1_000 };
        assert_eq!(p.backoff_ms(1, 1.0), 100);
        assert_eq!(p.backoff_ms(3, 1.0), 400);
        assert_eq!(p.backoff_ms(10, 1.0), 1_000);
        assert_eq!(p.backoff_ms(3, 0.0), 10);
    }
}
