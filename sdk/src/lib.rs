#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

extern crate self as taskhost_sdk;

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use serde;
pub use serde_json;

/// Bindings generated from the WIT contract in `wit/`. Plugin authors do not need them: the
/// [`Plugin`] trait and [`export_plugin!`] cover the whole contract.
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "task-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_task_plugin",
        default_bindings_module: "taskhost_sdk::bindings",
        runtime_path: "taskhost_sdk::__private::wit_bindgen::rt",
    });
}

use bindings::taskhost::plugin::{host, types};

/// What the host tells a plugin about the task it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The task's id, as clients see it.
    pub id: String,
    /// The task name the client asked for (one of the names in the plugin's manifest).
    pub name: String,
    /// The tenant that submitted the task.
    pub tenant: String,
    /// 1 for the first run, 2 for the first retry, and so on.
    pub attempt: u32,
    /// Wall-clock milliseconds this run may take in all.
    pub deadline_ms: u64,
}

/// How a run fails, from the plugin's side.
///
/// Panics, running out of fuel or memory and overrunning the deadline need no variant: the host
/// observes them and reports them with their own outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskError {
    /// The input is not acceptable; the message names the field and the reason. Never retried.
    InvalidInput(String),
    /// The task failed; running it again would not help.
    Failed(String),
    /// The task failed for a reason that may pass; the host retries it while its budget lasts.
    Retryable(String),
    /// The plugin saw [`Context::cancelled`] and stopped early.
    Cancelled,
}

impl TaskError {
    /// An [`TaskError::InvalidInput`] naming a field: `invalid_input("pressure_torr", "must be > 0")`
    /// reads `pressure_torr: must be > 0`.
    pub fn invalid_input(field: &str, reason: impl fmt::Display) -> Self {
        TaskError::InvalidInput(format!("{field}: {reason}"))
    }

    /// A [`TaskError::Failed`] with the given message.
    pub fn failed(message: impl fmt::Display) -> Self {
        TaskError::Failed(message.to_string())
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            TaskError::Failed(m) => write!(f, "failed: {m}"),
            TaskError::Retryable(m) => write!(f, "failed (retryable): {m}"),
            TaskError::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl std::error::Error for TaskError {}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something looks wrong but the task goes on.
    Warn,
    /// Something failed.
    Error,
}

/// The plugin's handle on the host while a task runs: progress, events, logs and cancellation.
#[derive(Debug)]
pub struct Context {
    task: TaskInfo,
}

impl Context {
    /// The task being run.
    pub fn task(&self) -> &TaskInfo {
        &self.task
    }

    /// Report progress: `percent` in 0..=100 (clamped; never goes back within an attempt) and a
    /// short human message. Cheap: call it as often as useful.
    pub fn progress(&self, percent: f32, message: impl AsRef<str>) {
        host::progress(percent, message.as_ref());
    }

    /// Record a domain event of type `kind` (snake_case, e.g. `metrics_update`) whose data is
    /// `data` serialised to JSON. Each call is one stored, streamed event and counts against the
    /// task's event limits, so emit per meaningful step, not per inner loop.
    pub fn emit<T: Serialize + ?Sized>(&self, kind: &str, data: &T) {
        let json = match serde_json::to_string(data) {
            Ok(json) => json,
            Err(e) => {
                self.log(Level::Error, format!("event {kind} not serialisable: {e}"));
                return;
            }
        };
        host::emit(kind, &json);
    }

    /// Write a log line, stored with the task's events as type `log`.
    pub fn log(&self, level: Level, message: impl AsRef<str>) {
        let level = match level {
            Level::Trace => types::Level::Trace,
            Level::Debug => types::Level::Debug,
            Level::Info => types::Level::Info,
            Level::Warn => types::Level::Warn,
            Level::Error => types::Level::Error,
        };
        host::log(level, message.as_ref());
    }

    /// True once the task should stop (cancelled by a client, or its soft deadline passed).
    pub fn cancelled(&self) -> bool {
        host::cancelled()
    }

    /// `Err(TaskError::Cancelled)` once the task should stop, for use with `?` between units of
    /// work.
    pub fn check_cancelled(&self) -> Result<(), TaskError> {
        if self.cancelled() { Err(TaskError::Cancelled) } else { Ok(()) }
    }
}

/// A taskhost plugin: its input and output types and the function that runs a task.
///
/// Export it with [`export_plugin!`]. The input arrives as JSON and is deserialised into
/// [`Plugin::Input`]; a body that does not fit ends the task as `invalid_input` with serde's message
/// and the path of the offending field, before [`Plugin::run`] is called.
pub trait Plugin {
    /// The task's input, deserialised from the submitted JSON.
    type Input: DeserializeOwned;
    /// The task's result, serialised to JSON.
    type Output: Serialize;

    /// Run one task.
    fn run(ctx: &Context, input: Self::Input) -> Result<Self::Output, TaskError>;

    /// A JSON Schema (or any JSON description) of the input, reported by `describe`.
    fn input_schema() -> serde_json::Value {
        serde_json::Value::Null
    }

    /// A one-line description of what the plugin does.
    fn summary() -> &'static str {
        ""
    }
}

/// Exports a [`Plugin`] implementation as the component's `describe` and `run` functions.
///
/// Use it once per plugin crate, at the crate root: `taskhost_sdk::export_plugin!(MyPlugin);`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __TaskhostExport;

        impl $crate::bindings::Guest for __TaskhostExport {
            fn describe() -> ::std::string::String {
                $crate::__private::describe::<$plugin>(
                    env!("CARGO_PKG_NAME"),
                    env!("CARGO_PKG_VERSION"),
                )
            }

            fn run(
                task: $crate::bindings::taskhost::plugin::types::TaskInfo,
                input: ::std::string::String,
            ) -> ::std::result::Result<
                ::std::string::String,
                $crate::bindings::taskhost::plugin::types::TaskError,
            > {
                $crate::__private::run::<$plugin>(task, input)
            }
        }

        $crate::bindings::__export_task_plugin!(__TaskhostExport with_types_in $crate::bindings);
    };
}

/// Support for [`export_plugin!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    use super::*;
    pub use wit_bindgen;

    pub fn describe<P: Plugin>(name: &str, version: &str) -> String {
        serde_json::json!({
            "name": name,
            "version": version,
            "summary": P::summary(),
            "input_schema": P::input_schema(),
            "sdk": concat!("taskhost-sdk ", env!("CARGO_PKG_VERSION")),
        })
        .to_string()
    }

    pub fn run<P: Plugin>(task: types::TaskInfo, input: String) -> Result<String, types::TaskError> {
        install_panic_hook();
        let ctx = Context {
            task: TaskInfo {
                id: task.id,
                name: task.name,
                tenant: task.tenant,
                attempt: task.attempt,
                deadline_ms: task.deadline_ms,
            },
        };
        let result = decode_input::<P::Input>(&input).and_then(|input| P::run(&ctx, input));
        match result {
            Ok(output) => serde_json::to_string(&output).map_err(|e| {
                types::TaskError::Failed(format!("the plugin's output is not serialisable: {e}"))
            }),
            Err(TaskError::InvalidInput(m)) => Err(types::TaskError::InvalidInput(m)),
            Err(TaskError::Failed(m)) => Err(types::TaskError::Failed(m)),
            Err(TaskError::Retryable(m)) => Err(types::TaskError::Retryable(m)),
            Err(TaskError::Cancelled) => Err(types::TaskError::Cancelled),
        }
    }

    /// Deserialises the input, naming the path of the field at fault (`steps[1].pressure_torr:
    /// invalid type: string "x", expected f64`).
    pub fn decode_input<T: DeserializeOwned>(input: &str) -> Result<T, TaskError> {
        let de = &mut serde_json::Deserializer::from_str(input);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                TaskError::InvalidInput(inner.to_string())
            } else {
                TaskError::InvalidInput(format!("{path}: {inner}"))
            }
        })
    }

    /// A panic in a plugin aborts the instance (a trap the host reports as `trapped`); before it
    /// does, this hook sends the panic message to the host log so that the outcome can say why.
    fn install_panic_hook() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                host::log(types::Level::Error, &format!("panic: {info}"));
            }));
        });
    }
}
