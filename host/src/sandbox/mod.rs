//! The sandbox: one wasmtime engine per host and a fresh, limited store per task.
//!
//! # Design
//! - One [`Engine`] with the component model, the pooling allocator (instances come from
//!   pre-reserved slots: no mmap per task) and fuel metering. Each plugin is compiled once and
//!   kept as a [`PreparedPlugin`] (an `InstancePre`); each task gets a new `Store`, instance and
//!   WASI context, dropped when the task ends. Nothing survives between tasks.
//! - Limits come from [`TaskLimits`]: fuel (a deterministic CPU budget), memory, tables and
//!   instances (a [`wasmtime::ResourceLimiter`]), output size, events and log volume (the host
//!   imports in [`state`]), and a wall-clock deadline.
//! - **Stopping a guest.** The guest yields to the async runtime every
//!   [`SandboxConfig::fuel_yield_interval`] units of fuel (about 80 µs of work here). At each
//!   yield, the future that drives the call is polled against the cancellation token and the
//!   deadlines; dropping it stops the guest for good. Deadlines, cancellation and fair sharing
//!   of the runtime's threads all rest on those yields. The benchmark (BENCHMARKS.md) compared this
//!   with epoch interruption: epoch checks cost more on call-heavy code (+32% against +20% for
//!   fuel on recursive Fibonacci) and about the same on memory-heavy code, need a ticker thread and
//!   cancel more slowly, so epochs are available ([`Interruption`]) but not the default.
//! - At the soft deadline (see [`TaskLimits::soft_deadline`]) the guest's `cancelled()` turns
//!   true; at the hard deadline the run is stopped.
//! - WASI preview 2 with nothing ambient: no arguments, no environment, no preopened folders, no
//!   sockets or name lookups, stdin closed, stdout and stderr captured as log lines. A manifest
//!   may ask for its own `data/` folder (read-only, at `/data`) and a scratch folder (read-write,
//!   at `/scratch`, created per task and removed after it); a task that names files of its
//!   tenant's file area sees them read-only at `/input`.
//!
//! This room knows nothing of queues, storage or HTTP: a run's reports go out on a channel.

mod capture;
pub mod limits;
pub mod outcome;
pub mod state;
mod world;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

pub use limits::{LimitsRequest, ManifestLimits, TaskLimits};
pub use outcome::Outcome;
pub use state::Report;

use capture::OutputCapture;
use state::TaskState;
use world::{TaskPlugin, TaskPluginPre};

/// The WIT package version this host implements.
pub const WIT_PACKAGE: &str = "taskhost:plugin@0.1.0";

/// How a running guest is made to give the thread back (and so become stoppable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    /// Yield every [`SandboxConfig::fuel_yield_interval`] fuel units (the default).
    FuelYield,
    /// Yield at every epoch tick ([`SandboxConfig::epoch_tick`]), fuel still metered.
    FuelAndEpoch,
    /// Epoch ticks only; fuel is not metered (so fuel limits do not apply). For comparison.
    EpochOnly,
}

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Tasks that may run at once; sizes the instance pool.
    pub slots: u32,
    /// Use the pooling instance allocator.
    pub pooling: bool,
    /// How guests are interrupted.
    pub interruption: Interruption,
    /// Fuel units between two yields.
    pub fuel_yield_interval: u64,
    /// Epoch tick, for the epoch modes.
    pub epoch_tick: Duration,
    /// Where per-task scratch folders are created.
    pub scratch_root: PathBuf,
}

impl SandboxConfig {
    /// Defaults for `slots` concurrent tasks.
    pub fn new(slots: u32, scratch_root: PathBuf) -> Self {
        SandboxConfig {
            slots: slots.max(1),
            pooling: true,
            interruption: Interruption::FuelYield,
            fuel_yield_interval: 1_000_000,
            epoch_tick: Duration::from_millis(1),
            scratch_root,
        }
    }
}

/// Why the engine or a plugin could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The engine configuration was refused.
    #[error("cannot create the wasmtime engine: {0}")]
    Engine(String),
    /// The bytes are not a valid component (or not one this engine can compile).
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// The component does not match the `task-plugin` world.
    #[error("the component does not match the {WIT_PACKAGE} world: {0}")]
    WorldMismatch(String),
    /// Calling `describe` failed.
    #[error("describe failed: {0}")]
    Describe(String),
}

/// What the host grants a task beyond computing.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// A host folder the guest sees read-only at `/data`.
    pub data_dir: Option<PathBuf>,
    /// Give the task a fresh read-write folder at `/scratch`, removed afterwards.
    pub scratch: bool,
    /// A host folder holding the task's input files, seen read-only at `/input`.
    pub input_dir: Option<PathBuf>,
}

/// Identity of the task, as the plugin sees it.
#[derive(Debug, Clone)]
pub struct TaskIdentity {
    /// Task id.
    pub id: String,
    /// Task name within the plugin.
    pub name: String,
    /// Tenant.
    pub tenant: String,
    /// Attempt number, from 1.
    pub attempt: u32,
}

/// One task to run: who it is, its input, its limits and what it is granted.
#[derive(Debug, Clone, Copy)]
pub struct TaskRun<'a> {
    /// The task as the plugin sees it.
    pub task: &'a TaskIdentity,
    /// The input JSON text.
    pub input: &'a str,
    /// The limits it runs under.
    pub limits: TaskLimits,
    /// What it may use beyond computing.
    pub capabilities: &'a Capabilities,
}

/// A component ready to instantiate.
#[derive(Clone)]
pub struct PreparedPlugin {
    pre: TaskPluginPre<TaskState>,
}

/// What one run produced besides its reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Fuel consumed (0 when fuel is not metered).
    pub fuel_used: u64,
    /// Time to create the store and instantiate.
    pub instantiate_time: Duration,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
}

/// The engine, the linker with the host imports, and the epoch ticker if any.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<TaskState>,
    config: SandboxConfig,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Sandbox {
    /// Creates the engine and linker.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true);
        wasm.consume_fuel(config.interruption != Interruption::EpochOnly);
        wasm.epoch_interruption(config.interruption != Interruption::FuelYield);
        if config.pooling {
            let slots = config.slots + 2; // + describe calls at load time
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(slots)
                .total_core_instances(slots * 16)
                .total_memories(slots * 4)
                .total_tables(slots * 8)
                .total_stacks(slots)
                .max_core_instances_per_component(16)
                .max_memories_per_component(4)
                .max_tables_per_component(8)
                .max_memory_size(TaskLimits::ceiling().memory_bytes as usize)
                .table_elements(TaskLimits::ceiling().table_elements as usize)
                .max_component_instance_size(1 << 20)
                .max_core_instance_size(1 << 20);
            // Reusing a slot: keep its first MiB mapped and reset only the pages the last task
            // dirtied (PAGEMAP_SCAN, Linux 6.7+) instead of unmapping the lot: a third of the
            // per-task cost (BENCHMARKS.md). Without PAGEMAP_SCAN, keeping memory resident means
            // zeroing it on every reuse, which is slower than unmapping, so only then.
            if PoolingAllocationConfig::is_pagemap_scan_available() {
                pool.linear_memory_keep_resident(1 << 20)
                    .table_keep_resident(64 << 10)
                    .pagemap_scan(wasmtime::Enabled::Yes);
            }
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::<TaskState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        TaskPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        if config.interruption != Interruption::FuelYield {
            let weak = engine.weak();
            let stop = stop_ticker.clone();
            let tick = config.epoch_tick;
            std::thread::Builder::new()
                .name("taskhost-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        match weak.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => break,
                        }
                    }
                })
                .map_err(|e| SandboxError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        }
        Ok(Sandbox { engine, linker, config, stop_ticker })
    }

    /// The engine's settings.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// A string that changes whenever this engine's compiled code would (wasmtime version,
    /// target, settings): part of the compile cache key.
    pub fn compatibility_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// Compiles a component to this engine's native code, as bytes for the disk cache. Returns a
    /// closure so that the CPU-heavy compilation can run on a blocking thread.
    pub fn precompile(
        &self,
        wasm: Vec<u8>,
    ) -> impl FnOnce() -> Result<Vec<u8>, SandboxError> + Send + 'static {
        let engine = self.engine.clone();
        move || engine.precompile_component(&wasm).map_err(|e| SandboxError::Compile(format!("{e:#}")))
    }

    /// Loads a precompiled artifact written by [`Sandbox::precompile`] of an engine with the same
    /// [`Sandbox::compatibility_key`].
    ///
    /// # Trust
    /// The artifact is native code: only files this host wrote into its own data folder may be
    /// passed here. The compile cache guarantees that (see `plugin::cache`).
    #[allow(unsafe_code)]
    pub fn load_precompiled(&self, path: &Path) -> Result<Component, SandboxError> {
        // Read into memory rather than map the file: a mapped file that someone truncates later
        // would crash the host with SIGBUS.
        let bytes = std::fs::read(path)
            .map_err(|e| SandboxError::Compile(format!("cannot read {}: {e}", path.display())))?;
        // SAFETY: the caller passes only artifacts produced by `precompile` on a compatible
        // engine, stored in the host's own cache folder; wasmtime also checks the header and the
        // engine compatibility before using them.
        unsafe { Component::deserialize(&self.engine, &bytes) }
            .map_err(|e| SandboxError::Compile(format!("{e:#}")))
    }

    /// Checks a component against the world and pre-instantiates it.
    pub fn prepare(&self, component: &Component) -> Result<PreparedPlugin, SandboxError> {
        check_world(&self.engine, component)?;
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| SandboxError::WorldMismatch(format!("{e:#}")))?;
        let pre = TaskPluginPre::new(pre).map_err(|e| SandboxError::WorldMismatch(format!("{e:#}")))?;
        Ok(PreparedPlugin { pre })
    }

    /// Calls the plugin's `describe` in a throwaway instance with small limits.
    pub async fn describe(&self, plugin: &PreparedPlugin) -> Result<String, SandboxError> {
        let limits = TaskLimits {
            fuel: 2_000_000_000,
            timeout_ms: 10_000,
            memory_bytes: 64 << 20,
            ..TaskLimits::default()
        };
        let (reports, _rx) = mpsc::channel(64);
        let stop = Arc::new(AtomicBool::new(false));
        let wasi = WasiCtxBuilder::new().build();
        let mut store = self
            .new_store(TaskState::new(wasi, limits, reports, stop), &limits)
            .map_err(|e| SandboxError::Describe(format!("{e:#}")))?;
        let call = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            instance.call_describe(&mut store).await
        };
        let text = tokio::time::timeout(limits.timeout(), call)
            .await
            .map_err(|_| SandboxError::Describe("describe did not return within 10 s".into()))?
            .map_err(|e| SandboxError::Describe(format!("{e:#}")))?;
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| SandboxError::Describe(format!("describe returned text that is not JSON: {e}")))?;
        Ok(text)
    }

    fn new_store(&self, state: TaskState, limits: &TaskLimits) -> wasmtime::Result<Store<TaskState>> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        if self.config.interruption != Interruption::EpochOnly {
            store.set_fuel(limits.fuel)?;
        }
        match self.config.interruption {
            Interruption::FuelYield => {
                store.fuel_async_yield_interval(Some(self.config.fuel_yield_interval))?
            }
            Interruption::FuelAndEpoch | Interruption::EpochOnly => {
                store.set_epoch_deadline(1);
                store.epoch_deadline_async_yield_and_update(1);
            }
        }
        Ok(store)
    }

    /// Runs one task to its end. Reports (progress, events, logs) go to `reports` as they come;
    /// `cancel` stops the run at the guest's next yield.
    pub async fn run(
        &self,
        plugin: &PreparedPlugin,
        run: TaskRun<'_>,
        reports: mpsc::Sender<Report>,
        cancel: CancellationToken,
    ) -> RunReport {
        let TaskRun { task, input, limits, capabilities } = run;
        let started = Instant::now();
        let fail = |message: String| RunReport {
            outcome: Outcome::HostError { message },
            fuel_used: 0,
            instantiate_time: Duration::ZERO,
            elapsed: started.elapsed(),
        };

        // WASI: nothing ambient. The scratch folder lives until the end of this function.
        let log_budget = limits.log_bytes as usize;
        let stdout = OutputCapture::new(log_budget);
        let stderr = OutputCapture::new(log_budget);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(data) = &capabilities.data_dir
            && let Err(e) = wasi.preopened_dir(data, "/data", FsPerms::ReadOnly)
        {
            return fail(format!("cannot open the plugin's data folder {}: {e:#}", data.display()));
        }
        if let Some(input) = &capabilities.input_dir
            && let Err(e) = wasi.preopened_dir(input, "/input", FsPerms::ReadOnly)
        {
            return fail(format!("cannot open the task's input folder {}: {e:#}", input.display()));
        }
        let scratch = if capabilities.scratch {
            let made = std::fs::create_dir_all(&self.config.scratch_root)
                .and_then(|_| tempfile::Builder::new().prefix("task-").tempdir_in(&self.config.scratch_root));
            match made {
                Ok(dir) => {
                    if let Err(e) = wasi.preopened_dir(dir.path(), "/scratch", FsPerms::ReadWrite) {
                        return fail(format!("cannot open the scratch folder: {e:#}"));
                    }
                    Some(dir)
                }
                Err(e) => return fail(format!("cannot create a scratch folder: {e}")),
            }
        } else {
            None
        };

        let stop_requested = Arc::new(AtomicBool::new(false));
        let state = TaskState::new(wasi.build(), limits, reports, stop_requested.clone());
        let mut store = match self.new_store(state, &limits) {
            Ok(store) => store,
            Err(e) => return fail(format!("cannot create the store: {e:#}")),
        };

        let info = world::TaskInfo {
            id: task.id.clone(),
            name: task.name.clone(),
            tenant: task.tenant.clone(),
            attempt: task.attempt,
            deadline_ms: limits.timeout_ms,
        };
        let mut instantiate_time = Duration::ZERO;
        let hard_deadline = tokio::time::sleep(limits.timeout());
        let soft_deadline = tokio::time::sleep(limits.soft_deadline());
        tokio::pin!(hard_deadline, soft_deadline);
        let mut soft_passed = false;

        enum Ended {
            Returned(wasmtime::Result<Result<String, world::TaskError>>),
            Cancelled,
            Deadline,
        }
        let ended = {
            let call = async {
                let instance = plugin.pre.instantiate_async(&mut store).await?;
                instantiate_time = started.elapsed();
                instance.call_run(&mut store, &info, input).await
            };
            tokio::pin!(call);
            loop {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => {
                        stop_requested.store(true, Ordering::Relaxed);
                        break Ended::Cancelled;
                    }
                    _ = &mut hard_deadline => break Ended::Deadline,
                    _ = &mut soft_deadline, if !soft_passed => {
                        soft_passed = true;
                        stop_requested.store(true, Ordering::Relaxed);
                    }
                    result = &mut call => break Ended::Returned(result),
                }
            }
        };

        let outcome = match ended {
            Ended::Cancelled => Outcome::Cancelled,
            Ended::Deadline => Outcome::DeadlineExceeded { timeout_ms: limits.timeout_ms },
            Ended::Returned(result) => classify(result, &store, &limits, soft_passed),
        };
        let fuel_used = match self.config.interruption {
            Interruption::EpochOnly => 0,
            _ => limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0)),
        };

        // Captured stdout/stderr become log lines, within the same log budget.
        let state = store.data_mut();
        for (level, capture) in [("stdout", &stdout), ("stderr", &stderr)] {
            let (text, dropped) = capture.take();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                state.log_line(level, line.to_owned()).await;
            }
            if dropped > 0 {
                state
                    .log_line("warn", format!("{dropped} bytes of {level} dropped (log volume limit)"))
                    .await;
            }
        }
        drop(store);
        drop(scratch);
        RunReport { outcome, fuel_used, instantiate_time, elapsed: started.elapsed() }
    }
}

/// Turns what the call returned into an [`Outcome`].
fn classify(
    result: wasmtime::Result<Result<String, world::TaskError>>,
    store: &Store<TaskState>,
    limits: &TaskLimits,
    soft_deadline_passed: bool,
) -> Outcome {
    let state = store.data();
    match result {
        Ok(Ok(output)) => {
            if output.len() as u64 > limits.output_bytes {
                return Outcome::OutputTooLarge {
                    bytes: output.len() as u64,
                    limit_bytes: limits.output_bytes,
                };
            }
            match serde_json::from_str::<serde::de::IgnoredAny>(&output) {
                Ok(_) => Outcome::Succeeded { output },
                Err(e) => {
                    Outcome::PluginError { message: format!("the result is not JSON: {e}"), retryable: false }
                }
            }
        }
        Ok(Err(world::TaskError::InvalidInput(message))) => Outcome::InvalidInput { message },
        Ok(Err(world::TaskError::Failed(message))) => Outcome::PluginError { message, retryable: false },
        Ok(Err(world::TaskError::Retryable(message))) => Outcome::PluginError { message, retryable: true },
        Ok(Err(world::TaskError::Cancelled)) if soft_deadline_passed => {
            Outcome::DeadlineExceeded { timeout_ms: limits.timeout_ms }
        }
        Ok(Err(world::TaskError::Cancelled)) => Outcome::Cancelled,
        Err(error) => {
            if let Some(violation) = &state.violation {
                return violation.clone();
            }
            match error.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => Outcome::OutOfFuel { fuel: limits.fuel },
                _ if state.limiter.memory_refused => {
                    Outcome::MemoryLimit { limit_bytes: limits.memory_bytes }
                }
                Some(trap) => {
                    let mut message = trap.to_string();
                    if *trap == Trap::StackOverflow {
                        message = "stack overflow (call stack exhausted)".into();
                    } else if *trap == Trap::MemoryOutOfBounds {
                        // Rust and C keep their own stack in linear memory: deep recursion runs
                        // off its bottom before it exhausts the wasm call stack.
                        message
                            .push_str(" (in Rust or C plugins, often a stack overflow from deep recursion)");
                    }
                    if let Some(log) = &state.last_error_log {
                        message.push_str(&format!("; last error logged: {log}"));
                    }
                    Outcome::Trapped { message }
                }
                None => Outcome::HostError { message: format!("{error:#}") },
            }
        }
    }
}

/// Checks the component's imports and exports against the `task-plugin` world and names any
/// import the host does not provide or export it lacks.
fn check_world(engine: &Engine, component: &Component) -> Result<(), SandboxError> {
    let ty = component.component_type();
    let mut problems = Vec::new();
    for (name, _) in ty.imports(engine) {
        let ours = name.starts_with("taskhost:plugin/");
        let wasi = name.starts_with("wasi:");
        if ours && !name.ends_with(&format!("@{}", WIT_PACKAGE.trim_start_matches("taskhost:plugin@"))) {
            problems.push(format!("imports `{name}`, but this host implements {WIT_PACKAGE}"));
        } else if !ours && !wasi {
            problems.push(format!("imports `{name}`, which taskhost does not provide"));
        }
    }
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_owned()).collect();
    for required in ["describe", "run"] {
        if !exports.iter().any(|e| e == required) {
            problems.push(format!("does not export `{required}`"));
        }
    }
    for extra in exports.iter().filter(|e| !matches!(e.as_str(), "describe" | "run")) {
        problems.push(format!("exports `{extra}`, which is not part of the world"));
    }
    if problems.is_empty() { Ok(()) } else { Err(SandboxError::WorldMismatch(problems.join("; "))) }
}
