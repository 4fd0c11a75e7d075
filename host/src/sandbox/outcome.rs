//! Every way a task run can end, as one typed value.

use serde::Serialize;

/// How one run of a task ended. The variant name in snake_case is the `error.kind` clients see.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The plugin returned a result (JSON text).
    Succeeded {
        /// The result, checked to be JSON within the output limit.
        output: String,
    },
    /// The plugin rejected its input.
    InvalidInput {
        /// Which field and why.
        message: String,
    },
    /// The plugin returned an error.
    PluginError {
        /// The plugin's message.
        message: String,
        /// The plugin marked it worth retrying.
        retryable: bool,
    },
    /// The guest trapped (a panic, an `unreachable`, a stack overflow, a bad memory access).
    Trapped {
        /// The trap and, when the plugin logged one, its panic message.
        message: String,
    },
    /// The fuel budget ran out.
    OutOfFuel {
        /// The budget that was spent.
        fuel: u64,
    },
    /// The wall-clock deadline passed.
    DeadlineExceeded {
        /// The budget in milliseconds.
        timeout_ms: u64,
    },
    /// The guest tried to grow memory beyond its limit.
    MemoryLimit {
        /// The limit in bytes.
        limit_bytes: u64,
    },
    /// The result was larger than allowed.
    OutputTooLarge {
        /// The result's size.
        bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },
    /// The plugin emitted too many events, too fast, or too large.
    EventLimit {
        /// Which limit.
        message: String,
    },
    /// A client cancelled the task, or the plugin stopped after seeing `cancelled()`.
    Cancelled,
    /// Something failed on the host's side (not the plugin's fault). Retried.
    HostError {
        /// What failed.
        message: String,
    },
}

impl Outcome {
    /// The outcome's stable name (`error.kind` in the API).
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Succeeded { .. } => "succeeded",
            Outcome::InvalidInput { .. } => "invalid_input",
            Outcome::PluginError { .. } => "plugin_error",
            Outcome::Trapped { .. } => "trapped",
            Outcome::OutOfFuel { .. } => "out_of_fuel",
            Outcome::DeadlineExceeded { .. } => "deadline_exceeded",
            Outcome::MemoryLimit { .. } => "memory_limit",
            Outcome::OutputTooLarge { .. } => "output_too_large",
            Outcome::EventLimit { .. } => "event_limit",
            Outcome::Cancelled => "cancelled",
            Outcome::HostError { .. } => "host_error",
        }
    }

    /// A human explanation.
    pub fn message(&self) -> String {
        match self {
            Outcome::Succeeded { .. } => "succeeded".into(),
            Outcome::InvalidInput { message } => format!("invalid input: {message}"),
            Outcome::PluginError { message, .. } => message.clone(),
            Outcome::Trapped { message } => format!("the plugin trapped: {message}"),
            Outcome::OutOfFuel { fuel } => format!("the plugin used all of its {fuel} fuel units"),
            Outcome::DeadlineExceeded { timeout_ms } => {
                format!("the run exceeded its deadline of {timeout_ms} ms")
            }
            Outcome::MemoryLimit { limit_bytes } => {
                format!("the plugin tried to use more than its memory limit of {} MiB", limit_bytes >> 20)
            }
            Outcome::OutputTooLarge { bytes, limit_bytes } => {
                format!("the result is {bytes} bytes, over the limit of {limit_bytes} bytes")
            }
            Outcome::EventLimit { message } => message.clone(),
            Outcome::Cancelled => "the task was cancelled".into(),
            Outcome::HostError { message } => format!("host error: {message}"),
        }
    }

    /// True when running the task again may succeed: host errors and errors the plugin marked
    /// retryable. Never for invalid input, limits or traps.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Outcome::HostError { .. } | Outcome::PluginError { retryable: true, .. })
    }
}
