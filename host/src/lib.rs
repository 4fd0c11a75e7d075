//! taskhost: runs scientific and engineering tasks as sandboxed WebAssembly components, fed from
//! queues, and streams their progress.
//!
//! The crate is organised in rooms, each with one job (see DESIGN.md):
//! - [`sandbox`]: the wasmtime engine, per-task limits and the host imports plugins call;
//! - [`plugin`]: plugin discovery, manifests and the on-disk compile cache;
//! - [`queue`]: the [`queue::Broker`] trait and its backends;
//! - [`worker`]: leases tasks, runs them in the sandbox, acknowledges, retries, cancels;
//! - [`events`]: the event model and the in-process fan-out to watchers;
//! - [`api`]: REST and WebSocket;
//! - [`tenant`]: tenants, tokens and quotas;
//! - [`telemetry`]: Prometheus metrics, each name declared once;
//! - [`cli`]: the `host` command line.
//!
//! `api` never touches wasmtime; `sandbox` never touches storage; `worker` joins them.

pub mod api;
pub mod cli;
pub mod events;
pub mod plugin;
pub mod queue;
pub mod sandbox;
pub mod sched;
pub mod telemetry;
pub mod tenant;
pub mod worker;
