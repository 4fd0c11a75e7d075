//! Sandbox benchmarks (BENCHMARKS.md has the method and the figures).
//!
//! `cargo bench -p taskhost --bench sandbox` runs every section; `-- SECTION...` runs some of
//! them: `noop`, `criterion`, `breakdown`, `kernels`, `import`, `cancel`, `isolation`.
//! `BENCH_QUICK=1` cuts every count (for a smoke run; the figures are then rough).
//!
//! Criterion gives means and medians with confidence intervals but no tail, so most sections use
//! their own timing loops and print p50/p99 tables (Markdown); the `criterion` section measures the
//! per-task cost of a no-op plugin with criterion as a cross-check.
//!
//! The fixtures must be built first: `cargo xtask plugins`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use taskhost::plugin::{LoadedPlugin, PluginRegistry};
use taskhost::sandbox::{
    Capabilities, Interruption, Outcome, RunReport, Sandbox, SandboxConfig, TaskIdentity, TaskLimits, TaskRun,
};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const KERNELS: &str = "tests/fixtures/kernels";
const HOSTILE: &str = "tests/fixtures/hostile";
const NOOP: &str = "{}";
const ENDLESS: &str = r#"{"mode":"endless_loop"}"#;
const HOUR: Duration = Duration::from_secs(3600);
const MS: Duration = Duration::from_millis(1);

// ---------------------------------------------------------------------------------------------
// Setup helpers

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A compile cache of the benchmark's own, so each fixture compiles once per engine setting.
fn cache_dir() -> PathBuf {
    repo_root().join("target").join("bench-cache").join("compiled")
}

fn plugin_dir(relative: &str) -> PathBuf {
    let dir = repo_root().join(relative);
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        dir.join(format!("{name}.wasm")).is_file(),
        "{}/{name}.wasm is missing: run `cargo xtask plugins` first",
        dir.display()
    );
    dir
}

fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some()
}

/// `full` normally, a tenth of it (at least `min`) with BENCH_QUICK.
fn count(full: usize, min: usize) -> usize {
    if quick() { (full / 10).max(min) } else { full }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

/// An engine setting under test.
#[derive(Debug, Clone, Copy)]
struct Setting {
    label: &'static str,
    pooling: bool,
    interruption: Interruption,
    epoch_tick: Duration,
    fuel_yield_interval: u64,
}

impl Setting {
    const fn new(
        label: &'static str,
        interruption: Interruption,
        epoch_tick: Duration,
        fuel_yield_interval: u64,
    ) -> Self {
        Setting { label, pooling: true, interruption, epoch_tick, fuel_yield_interval }
    }

    const fn default_fuel(label: &'static str) -> Self {
        Setting::new(label, Interruption::FuelYield, MS, 1_000_000)
    }

    const fn pooling(mut self, pooling: bool) -> Self {
        self.pooling = pooling;
        self
    }

    fn sandbox(&self, slots: u32) -> Sandbox {
        let scratch = repo_root().join("target").join("bench-cache").join("scratch");
        let mut config = SandboxConfig::new(slots, scratch);
        config.pooling = self.pooling;
        config.interruption = self.interruption;
        config.epoch_tick = self.epoch_tick;
        config.fuel_yield_interval = self.fuel_yield_interval;
        Sandbox::new(config).expect("sandbox")
    }
}

async fn load(sandbox: &Sandbox, relative: &str) -> Arc<LoadedPlugin> {
    let registry = PluginRegistry::load(sandbox, &[plugin_dir(relative)], &cache_dir()).await.unwrap();
    assert!(registry.problems().is_empty(), "{:?}", registry.problems());
    registry.iter().next().unwrap().clone()
}

fn identity(plugin: &LoadedPlugin) -> TaskIdentity {
    TaskIdentity {
        id: "bench-1".into(),
        name: plugin.manifest.tasks[0].clone(),
        tenant: "default".into(),
        attempt: 1,
    }
}

/// What `Sandbox::run` needs to know about one task.
fn task_run<'a>(
    plugin: &'a LoadedPlugin,
    task: &'a TaskIdentity,
    input: &'a str,
    limits: TaskLimits,
) -> TaskRun<'a> {
    TaskRun { task, input, limits, capabilities: &plugin.capabilities }
}

/// One run as the worker does it: a new report channel and cancellation token per task. The
/// receiver is kept (not drained: the no-op and the kernels report nothing) until the run ends.
async fn run_once(
    sandbox: &Sandbox,
    plugin: &LoadedPlugin,
    task: &TaskIdentity,
    input: &str,
    limits: TaskLimits,
) -> RunReport {
    let (tx, rx) = mpsc::channel(256);
    let report = sandbox
        .run(&plugin.prepared, task_run(plugin, task, input, limits), tx, CancellationToken::new())
        .await;
    drop(rx);
    report
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn multi_thread(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap()
}

fn expect_success(report: &RunReport) -> String {
    match &report.outcome {
        Outcome::Succeeded { output } => output.clone(),
        other => panic!("the run did not succeed: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics

#[derive(Debug, Clone, Copy)]
struct Stats {
    min: Duration,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    mean: Duration,
}

/// Nearest-rank percentiles.
fn stats(samples: &[Duration]) -> Stats {
    assert!(!samples.is_empty());
    let mut v = samples.to_vec();
    v.sort_unstable();
    let n = v.len();
    let rank = |p: f64| v[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1];
    let total: Duration = v.iter().sum();
    Stats {
        min: v[0],
        p50: rank(50.0),
        p90: rank(90.0),
        p99: rank(99.0),
        max: v[n - 1],
        mean: total / n as u32,
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn pct(value: Duration, base: Duration) -> String {
    format!("{:+.1}%", (value.as_secs_f64() / base.as_secs_f64() - 1.0) * 100.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU time, in clock ticks, used by the whole machine (busy, all CPUs) and by this process.
fn cpu_ticks() -> (u64, u64) {
    let machine = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let fields: Vec<u64> =
                s.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
            Some(fields.iter().take(8).sum::<u64>() - fields.get(3)? - fields.get(4)?)
        })
        .unwrap_or(0);
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after_name = &s[s.rfind(')')? + 2..];
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    (machine, own)
}

fn section(title: &str) {
    println!("\n## {title}\n\n(load average at start: {})\n", loadavg());
}

// ---------------------------------------------------------------------------------------------
// 1. Per-task cost of a no-op plugin

fn noop_settings() -> [Setting; 4] {
    [
        Setting::default_fuel("pooling, FuelYield (host default)"),
        Setting::default_fuel("default allocator, FuelYield").pooling(false),
        Setting::new("pooling, EpochOnly (1 h tick)", Interruption::EpochOnly, HOUR, 1_000_000),
        Setting::new("default allocator, EpochOnly (1 h tick)", Interruption::EpochOnly, HOUR, 1_000_000)
            .pooling(false),
    ]
}

fn bench_noop() {
    section("1. Per task: instantiate and run a no-op plugin (`Sandbox::run`, one thread)");
    let rt = current_thread();
    let settings = noop_settings();
    let set: Vec<(Sandbox, Arc<LoadedPlugin>)> = settings
        .iter()
        .map(|s| {
            let sandbox = s.sandbox(4);
            let plugin = rt.block_on(load(&sandbox, KERNELS));
            (sandbox, plugin)
        })
        .collect();
    let (warmup, measured, rounds) = (count(1_000, 100), count(10_000, 1_000), 5);
    let mut totals: Vec<Vec<Duration>> = vec![Vec::new(); set.len()];
    let mut instantiate: Vec<Vec<Duration>> = vec![Vec::new(); set.len()];
    rt.block_on(async {
        for (sandbox, plugin) in &set {
            let task = identity(plugin);
            for _ in 0..warmup {
                let report = run_once(sandbox, plugin, &task, NOOP, plugin.limits).await;
                expect_success(&report);
            }
        }
        // Rounds interleave the settings, so that drift in the machine's load hits all alike.
        for _ in 0..rounds {
            for (i, (sandbox, plugin)) in set.iter().enumerate() {
                let task = identity(plugin);
                for _ in 0..measured / rounds {
                    let started = Instant::now();
                    let report = run_once(sandbox, plugin, &task, NOOP, plugin.limits).await;
                    totals[i].push(started.elapsed());
                    instantiate[i].push(report.instantiate_time);
                }
            }
        }
    });
    println!(
        "{measured} timed runs per setting after {warmup} warm-up runs, in {rounds} interleaved rounds.\n"
    );
    println!("| setting | p50 | p90 | p99 | mean | max | of which up to instantiated (p50) |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (i, s) in settings.iter().enumerate() {
        let t = stats(&totals[i]);
        let inst = stats(&instantiate[i]);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            s.label,
            us(t.p50),
            us(t.p90),
            us(t.p99),
            us(t.mean),
            us(t.max),
            us(inst.p50)
        );
    }
}

// The same with criterion (mean and median with confidence intervals), as a cross-check.
fn bench_criterion() {
    section("1b. Criterion cross-check of the per-task cost");
    let rt = current_thread();
    let mut c = criterion::Criterion::default()
        .sample_size(if quick() { 10 } else { 50 })
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 4 }))
        .without_plots();
    let mut group = c.benchmark_group("noop_task");
    for (name, setting) in [("pooling", noop_settings()[0]), ("default_allocator", noop_settings()[1])] {
        let sandbox = setting.sandbox(4);
        let plugin = rt.block_on(load(&sandbox, KERNELS));
        let task = identity(&plugin);
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(run_once(&sandbox, &plugin, &task, NOOP, plugin.limits)))
        });
    }
    group.finish();
    c.final_summary();
}

// ---------------------------------------------------------------------------------------------
// 1c. Where the per-task time goes: the same component driven with wasmtime directly

/// A bare host for the `task-plugin` world: the same engine settings as [`Sandbox`], but a bare
/// WASI context and no limiter, channel, timers or output capture, and host imports that do
/// nothing. For the breakdown of the per-task cost, the "no instrumentation at all" baseline of
/// the kernels, and the cost of a bare host import call.
mod raw {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use ::taskhost::sandbox::TaskLimits;
    use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
    use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
    use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

    wasmtime::component::bindgen!({
        path: "../wit",
        world: "task-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
    });

    use self::taskhost::plugin::{host, types};

    pub struct State {
        wasi: WasiCtx,
        table: ResourceTable,
        calls: u64,
    }

    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
        }
    }

    impl types::Host for State {}

    impl host::Host for State {
        async fn progress(&mut self, _percent: f32, _message: String) -> wasmtime::Result<()> {
            self.calls += 1;
            Ok(())
        }

        async fn emit(&mut self, _kind: String, _data: String) -> wasmtime::Result<()> {
            self.calls += 1;
            Ok(())
        }

        async fn log(&mut self, _level: types::Level, _message: String) -> wasmtime::Result<()> {
            self.calls += 1;
            Ok(())
        }

        async fn cancelled(&mut self) -> wasmtime::Result<bool> {
            Ok(false)
        }
    }

    /// Engine settings of the bare host.
    #[derive(Debug, Clone, Copy)]
    pub struct Opts {
        pub pooling: bool,
        /// Fuel metering with an async yield every 1,000,000 units (as the host's default).
        pub fuel: bool,
        /// `linear_memory_keep_resident` and `table_keep_resident`, bytes (pooling only).
        pub keep_resident: usize,
        /// `PoolingAllocationConfig::pagemap_scan`.
        pub pagemap_scan: bool,
    }

    pub struct Raw {
        engine: Engine,
        pre: TaskPluginPre<State>,
        opts: Opts,
    }

    /// Time spent in each step of one run.
    #[derive(Debug, Clone, Copy)]
    pub struct Phases {
        /// WASI context and store.
        pub setup: Duration,
        pub instantiate: Duration,
        pub call: Duration,
        /// Dropping the store (and so the instance).
        pub teardown: Duration,
        pub total: Duration,
        pub host_calls: u64,
    }

    impl Raw {
        pub fn new(opts: Opts, wasm: &Path) -> Raw {
            let mut config = Config::new();
            config.wasm_component_model(true);
            config.consume_fuel(opts.fuel);
            if opts.pooling {
                // As in `Sandbox::new`, for 4 slots.
                let slots = 4 + 2;
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
                    .max_core_instance_size(1 << 20)
                    .linear_memory_keep_resident(opts.keep_resident)
                    .table_keep_resident(opts.keep_resident)
                    .pagemap_scan(if opts.pagemap_scan { Enabled::Yes } else { Enabled::No });
                config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            }
            let engine = Engine::new(&config).expect("engine");
            let mut linker = Linker::<State>::new(&engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
            TaskPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).unwrap();
            let component = Component::from_file(&engine, wasm).expect("compile");
            let pre = TaskPluginPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
            Raw { engine, pre, opts }
        }

        /// Runs `input` in a fresh store and instance; panics unless the plugin returns Ok.
        pub async fn run(&self, input: &str) -> (Phases, String) {
            let t0 = Instant::now();
            let wasi = WasiCtxBuilder::new().build();
            let mut store = Store::new(&self.engine, State { wasi, table: ResourceTable::new(), calls: 0 });
            if self.opts.fuel {
                store.set_fuel(1_000_000_000_000).unwrap();
                store.fuel_async_yield_interval(Some(1_000_000)).unwrap();
            }
            let t1 = Instant::now();
            let instance = self.pre.instantiate_async(&mut store).await.expect("instantiate");
            let t2 = Instant::now();
            let info = types::TaskInfo {
                id: "bench-1".into(),
                name: "bench".into(),
                tenant: "default".into(),
                attempt: 1,
                deadline_ms: 600_000,
            };
            let output = match instance.call_run(&mut store, &info, input).await.expect("call") {
                Ok(output) => output,
                Err(e) => panic!("the plugin failed: {e:?}"),
            };
            let t3 = Instant::now();
            let host_calls = store.data().calls;
            drop(store);
            let t4 = Instant::now();
            let phases = Phases {
                setup: t1 - t0,
                instantiate: t2 - t1,
                call: t3 - t2,
                teardown: t4 - t3,
                total: t4 - t0,
                host_calls,
            };
            (phases, output)
        }
    }
}

fn bench_breakdown() {
    section("1c. Where the per-task time goes");
    let rt = current_thread();
    let wasm = plugin_dir(KERNELS).join("kernels.wasm");
    let (warmup, measured) = (count(1_000, 100), count(10_000, 1_000));

    // Sandbox::run as in section 1, for reference in the same table.
    let default = noop_settings()[0];
    let sandbox = default.sandbox(4);
    let plugin = rt.block_on(load(&sandbox, KERNELS));
    let task = identity(&plugin);

    let variants: [(&str, raw::Opts); 5] = [
        (
            "wasmtime directly: pooling without keep_resident (wasmtime's default reuse), fuel + yield 1M",
            raw::Opts { pooling: true, fuel: true, keep_resident: 0, pagemap_scan: false },
        ),
        (
            "wasmtime directly: default allocator, fuel + yield 1M",
            raw::Opts { pooling: false, fuel: true, keep_resident: 0, pagemap_scan: false },
        ),
        (
            "wasmtime directly: pooling, keep_resident 1 MiB",
            raw::Opts { pooling: true, fuel: true, keep_resident: 1 << 20, pagemap_scan: false },
        ),
        (
            "wasmtime directly: pooling, keep_resident 1 MiB + pagemap_scan",
            raw::Opts { pooling: true, fuel: true, keep_resident: 1 << 20, pagemap_scan: true },
        ),
        (
            "wasmtime directly: pooling, keep_resident 4 MiB + pagemap_scan",
            raw::Opts { pooling: true, fuel: true, keep_resident: 4 << 20, pagemap_scan: true },
        ),
    ];
    let raws: Vec<raw::Raw> = variants.iter().map(|(_, o)| raw::Raw::new(*o, &wasm)).collect();

    let rounds = 5;
    let mut sandbox_total = Vec::new();
    let mut sandbox_inst = Vec::new();
    let mut phases: Vec<Vec<raw::Phases>> = vec![Vec::new(); raws.len()];
    rt.block_on(async {
        for _ in 0..warmup {
            run_once(&sandbox, &plugin, &task, NOOP, plugin.limits).await;
            for r in &raws {
                r.run(NOOP).await;
            }
        }
        for _ in 0..rounds {
            for _ in 0..measured / rounds {
                let started = Instant::now();
                let report = run_once(&sandbox, &plugin, &task, NOOP, plugin.limits).await;
                sandbox_total.push(started.elapsed());
                sandbox_inst.push(report.instantiate_time);
            }
            for (i, r) in raws.iter().enumerate() {
                for _ in 0..measured / rounds {
                    phases[i].push(r.run(NOOP).await.0);
                }
            }
        }
    });

    // Pieces of Sandbox::run that the bare host does not have, measured alone.
    let micro_n = count(100_000, 10_000) as u32;
    let channel_token = rt.block_on(async {
        let t = Instant::now();
        for _ in 0..micro_n {
            let (tx, rx) = mpsc::channel::<u64>(256);
            let token = CancellationToken::new();
            std::hint::black_box((&tx, &rx, &token));
        }
        t.elapsed() / micro_n
    });
    let timers = rt.block_on(async {
        let t = Instant::now();
        for _ in 0..micro_n {
            let hard = tokio::time::sleep(Duration::from_secs(60));
            let soft = tokio::time::sleep(Duration::from_secs(54));
            tokio::pin!(hard, soft);
            // Polling registers them with the timer wheel, as the select! in `run` does.
            let _ = futures::poll!(&mut hard);
            let _ = futures::poll!(&mut soft);
        }
        t.elapsed() / micro_n
    });
    let wasi_bare = {
        let t = Instant::now();
        for _ in 0..micro_n {
            std::hint::black_box(wasmtime_wasi::WasiCtxBuilder::new().build());
        }
        t.elapsed() / micro_n
    };
    let wasi_host = {
        let t = Instant::now();
        for _ in 0..micro_n {
            let mut b = wasmtime_wasi::WasiCtxBuilder::new();
            b.stdout(wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(1 << 20))
                .stderr(wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(1 << 20))
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false);
            std::hint::black_box(b.build());
        }
        t.elapsed() / micro_n
    };

    println!("{measured} timed runs each after {warmup} warm-up runs; rounds interleave the variants.\n");
    println!(
        "| variant | p50 | p99 | setup (WASI ctx, store) p50 | instantiate p50 | call p50 | drop store p50 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let t = stats(&sandbox_total);
    println!(
        "| `Sandbox::run` (host default: pooling, FuelYield) | {} | {} | up to instantiated: {} | | | |",
        us(t.p50),
        us(t.p99),
        us(stats(&sandbox_inst).p50)
    );
    for (i, (label, _)) in variants.iter().enumerate() {
        let get = |f: fn(&raw::Phases) -> Duration| stats(&phases[i].iter().map(f).collect::<Vec<_>>());
        let total = get(|p| p.total);
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} |",
            us(total.p50),
            us(total.p99),
            us(get(|p| p.setup).p50),
            us(get(|p| p.instantiate).p50),
            us(get(|p| p.call).p50),
            us(get(|p| p.teardown).p50)
        );
    }
    println!("\nPieces of `Sandbox::run` alone (mean of {micro_n}):\n");
    println!("| piece | mean |");
    println!("| --- | --- |");
    println!("| report channel (capacity 256) + cancellation token | {} |", us(channel_token));
    println!("| two `tokio::time::sleep` deadlines, registered and dropped | {} |", us(timers));
    println!("| bare `WasiCtxBuilder::new().build()` | {} |", us(wasi_bare));
    println!("| WASI ctx with two output pipes and the socket switches | {} |", us(wasi_host));
}

// ---------------------------------------------------------------------------------------------
// 2. Cost of fuel and epochs on compute kernels

#[derive(Debug, Clone, Copy)]
enum KernelMode {
    /// wasmtime directly, neither fuel nor epochs: no instrumentation at all.
    Pure,
    Sandbox(Setting),
}

impl KernelMode {
    fn label(&self) -> &'static str {
        match self {
            KernelMode::Pure => "no fuel, no epochs (wasmtime directly; not a host mode)",
            KernelMode::Sandbox(s) => s.label,
        }
    }
}

fn kernel_modes() -> [KernelMode; 6] {
    [
        KernelMode::Pure,
        KernelMode::Sandbox(Setting::new(
            "EpochOnly, 1 h tick (epoch checks, never fire): **baseline**",
            Interruption::EpochOnly,
            HOUR,
            1_000_000,
        )),
        KernelMode::Sandbox(Setting::new("EpochOnly, 1 ms tick", Interruption::EpochOnly, MS, 1_000_000)),
        KernelMode::Sandbox(Setting::default_fuel("FuelYield, yield every 1,000,000 units (host default)")),
        KernelMode::Sandbox(Setting::new(
            "FuelAndEpoch, 1 ms tick",
            Interruption::FuelAndEpoch,
            MS,
            1_000_000,
        )),
        KernelMode::Sandbox(Setting::new(
            "FuelYield, yield every 10,000 units",
            Interruption::FuelYield,
            MS,
            10_000,
        )),
    ]
}

fn bench_kernels() {
    section("2. Cost of fuel and epochs on compute kernels");
    let kernels = [
        ("lcg loop", format!(r#"{{"kernel":"lcg","n":{}}}"#, env_u64("BENCH_LCG_N", 800_000_000))),
        ("recursive fib", format!(r#"{{"kernel":"fib","n":{}}}"#, env_u64("BENCH_FIB_N", 37))),
        ("sieve", format!(r#"{{"kernel":"sieve","n":{}}}"#, env_u64("BENCH_SIEVE_N", 20_000_000))),
    ];
    let modes = kernel_modes();
    let rounds = count(15, 2);
    let rt = current_thread();
    let wasm = plugin_dir(KERNELS).join("kernels.wasm");
    let pure =
        raw::Raw::new(raw::Opts { pooling: true, fuel: false, keep_resident: 0, pagemap_scan: false }, &wasm);

    // times[mode][kernel]
    let mut times: Vec<Vec<Vec<Duration>>> = vec![vec![Vec::new(); kernels.len()]; modes.len()];
    let mut values: Vec<Option<String>> = vec![None; kernels.len()];
    // Fuel used by each kernel (the same in every fuel mode) and the median time of the host default.
    let mut fuel_used = vec![0u64; kernels.len()];
    let mut check = |k: usize, output: String| match &values[k] {
        None => values[k] = Some(output),
        Some(v) => assert_eq!(v, &output, "kernel {k} gave different results in different modes"),
    };
    // Round 0 is a warm-up and not counted. Each round creates each mode's sandbox anew, so that
    // only one epoch ticker thread is alive at a time.
    for round in 0..=rounds {
        for (m, mode) in modes.iter().enumerate() {
            match mode {
                KernelMode::Pure => rt.block_on(async {
                    for (k, (_, input)) in kernels.iter().enumerate() {
                        let started = Instant::now();
                        let (_, output) = pure.run(input).await;
                        let elapsed = started.elapsed();
                        check(k, output);
                        if round > 0 {
                            times[m][k].push(elapsed);
                        }
                    }
                }),
                KernelMode::Sandbox(setting) => {
                    let sandbox = setting.sandbox(1);
                    rt.block_on(async {
                        let plugin = load(&sandbox, KERNELS).await;
                        let task = identity(&plugin);
                        for (k, (_, input)) in kernels.iter().enumerate() {
                            let started = Instant::now();
                            let report = run_once(&sandbox, &plugin, &task, input, plugin.limits).await;
                            let elapsed = started.elapsed();
                            check(k, expect_success(&report));
                            if report.fuel_used > 0 {
                                fuel_used[k] = report.fuel_used;
                            }
                            if round > 0 {
                                times[m][k].push(elapsed);
                            }
                        }
                    });
                }
            }
        }
    }

    println!("Inputs: {}.", kernels.iter().map(|(_, i)| format!("`{i}`")).collect::<Vec<_>>().join(", "));
    println!(
        "{rounds} timed runs per mode and kernel (after one warm-up round), rounds interleaving the modes.\n"
    );
    println!("Median wall time of one whole run (instantiate + run):\n");
    print!("| mode |");
    for (name, _) in &kernels {
        print!(" {name} |");
    }
    println!();
    println!("| --- |{}", " --- |".repeat(kernels.len()));
    for (m, mode) in modes.iter().enumerate() {
        print!("| {} |", mode.label());
        for t in &times[m] {
            let s = stats(t);
            print!(" {} (min {}, max {}) |", ms(s.p50), ms(s.min), ms(s.max));
        }
        println!();
    }
    for (base_index, base_name) in
        [(1, "the baseline (EpochOnly, 1 h tick)"), (0, "no instrumentation at all")]
    {
        println!("\nCost relative to {base_name} (median vs median; min vs min in brackets):\n");
        print!("| mode |");
        for (name, _) in &kernels {
            print!(" {name} |");
        }
        println!();
        println!("| --- |{}", " --- |".repeat(kernels.len()));
        for (m, mode) in modes.iter().enumerate() {
            if m == base_index {
                continue;
            }
            print!("| {} |", mode.label());
            for (t, base) in times[m].iter().zip(&times[base_index]) {
                let (s, b) = (stats(t), stats(base));
                print!(" {} ({}) |", pct(s.p50, b.p50), pct(s.min, b.min));
            }
            println!();
        }
    }
    let default_index = modes.iter().position(|m| m.label().contains("host default")).unwrap();
    println!(
        "\nFuel per run and time between two yields under the host default (1,000,000 units per yield):\n"
    );
    println!("| kernel | fuel units per run | yields per run | median time between yields |");
    println!("| --- | --- | --- | --- |");
    for (k, (name, _)) in kernels.iter().enumerate() {
        let yields = fuel_used[k] / 1_000_000;
        let between = stats(&times[default_index][k]).p50 / yields.max(1) as u32;
        println!("| {name} | {} | {yields} | {} |", fuel_used[k], us(between));
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Host import calls

/// Runs one task while a separate task drains its reports; returns the report, how many reports
/// came, and the time until both ended.
async fn run_drained(
    sandbox: Arc<Sandbox>,
    plugin: Arc<LoadedPlugin>,
    input: String,
    limits: TaskLimits,
) -> (RunReport, usize, Duration) {
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel(256);
    let drain = tokio::spawn(async move {
        let mut n = 0usize;
        while rx.recv().await.is_some() {
            n += 1;
        }
        n
    });
    let task = identity(&plugin);
    let report = sandbox
        .run(&plugin.prepared, task_run(&plugin, &task, &input, limits), tx, CancellationToken::new())
        .await;
    let reports = drain.await.unwrap();
    (report, reports, started.elapsed())
}

fn bench_import() {
    section("3. Host import calls");
    let reps = count(7, 3);
    let wasm = plugin_dir(HOSTILE).join("hostile.wasm");
    let n_log = env_u64("BENCH_IMPORT_N", 200_000);
    let n_emit = n_log / 2;

    // The bare host: imports that only count calls.
    let rt = current_thread();
    let bare =
        raw::Raw::new(raw::Opts { pooling: true, fuel: true, keep_resident: 0, pagemap_scan: false }, &wasm);
    let log_input = |n: u64| format!(r#"{{"mode":"log_flood","lines":{n},"bytes":16}}"#);
    let emit_input = |n: u64| format!(r#"{{"mode":"event_flood","count":{n}}}"#);
    let mut bare_rows = Vec::new();
    for (what, input, n) in [
        ("log(), 16-byte line", &log_input as &dyn Fn(u64) -> String, n_log),
        ("emit(), `{\"i\":N}`", &emit_input, n_emit),
    ] {
        let (mut zero, mut many) = (Vec::new(), Vec::new());
        rt.block_on(async {
            bare.run(&input(n)).await;
            for _ in 0..reps {
                zero.push(bare.run(&input(0)).await.0.total);
                let (p, _) = bare.run(&input(n)).await;
                assert_eq!(p.host_calls, n);
                many.push(p.total);
            }
        });
        bare_rows.push((what, n, stats(&zero).p50, stats(&many).p50));
    }

    // The host's imports: validation, limits, the report channel, drained by another task.
    let setting = Setting::default_fuel("FuelYield");
    let sandbox = Arc::new(setting.sandbox(2));
    let plugin = rt.block_on(load(&sandbox, HOSTILE));
    let limits = TaskLimits {
        events_total: 100_000_000,
        events_per_sec: 1_000_000_000,
        events_burst: 1_000_000_000,
        log_bytes: 1 << 40,
        ..plugin.limits
    };
    let mut host_rows = Vec::new();
    for (rt_name, rt) in
        [("current-thread runtime", current_thread()), ("multi-thread runtime, 2 workers", multi_thread(2))]
    {
        for (what, input, n) in [
            ("log() end to end", &log_input as &dyn Fn(u64) -> String, n_log),
            ("emit() end to end", &emit_input, n_emit),
        ] {
            let (mut zero, mut many) = (Vec::new(), Vec::new());
            let one = |input: String| {
                let (s, p) = (sandbox.clone(), plugin.clone());
                rt.block_on(async { tokio::spawn(run_drained(s, p, input, limits)).await.unwrap() })
            };
            one(input(n));
            for _ in 0..reps {
                let (report, _, t) = one(input(0));
                expect_success(&report);
                zero.push(t);
                let (report, reports, t) = one(input(n));
                expect_success(&report);
                assert!(reports as u64 >= n, "{reports} reports for {n} calls");
                many.push(t);
            }
            host_rows.push((what, rt_name, n, stats(&zero).p50, stats(&many).p50));
        }
    }

    println!(
        "Plugin `hostile`, modes `log_flood` (16-byte lines) and `event_flood` (`{{\"i\": i}}`): median of {reps} runs with N calls"
    );
    println!(
        "minus the median with 0 calls, divided by N. Includes the guest's side of each call (for emit: serialising"
    );
    println!("`{{\"i\":i}}` with serde_json); every report is received by a separate draining task.\n");
    println!("| what | host | N | run with 0 calls | run with N calls | per call |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (what, n, zero, many) in bare_rows {
        let per = (many.saturating_sub(zero)).as_secs_f64() / n as f64;
        println!(
            "| {what} | bare host (imports only count) | {n} | {} | {} | {:.0} ns |",
            ms(zero),
            ms(many),
            per * 1e9
        );
    }
    for (what, rt_name, n, zero, many) in host_rows {
        let per = (many.saturating_sub(zero)).as_secs_f64() / n as f64;
        println!(
            "| {what} | `Sandbox::run`, {rt_name} | {n} | {} | {} | {:.0} ns |",
            ms(zero),
            ms(many),
            per * 1e9
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Cancellation latency

fn bench_cancel() {
    section("4. Cancellation latency of a running task");
    let rt = multi_thread(2);
    let runs = count(100, 10);
    let fuel = Setting::default_fuel("FuelYield, 1,000,000 units (host default)");
    let rows = [
        ("hostile `endless_loop`", HOSTILE, ENDLESS, fuel),
        ("hostile `endless_loop`, data and scratch folder not granted", HOSTILE, ENDLESS, fuel),
        (
            "hostile `endless_loop`",
            HOSTILE,
            ENDLESS,
            Setting::new("EpochOnly, 1 ms tick", Interruption::EpochOnly, MS, 1_000_000),
        ),
        (
            "hostile `endless_loop`",
            HOSTILE,
            ENDLESS,
            Setting::new("FuelAndEpoch, 1 ms tick", Interruption::FuelAndEpoch, MS, 1_000_000),
        ),
        (
            "kernels `lcg`, n = 10^12 (no data or scratch folder)",
            KERNELS,
            r#"{"kernel":"lcg","n":1000000000000}"#,
            fuel,
        ),
    ];
    println!(
        "2-worker multi-thread runtime; the task is spawned on it, runs 10-20 ms, then the bench thread calls"
    );
    println!(
        "`cancel()`; latency = from `cancel()` to `Sandbox::run` returning (outcome `cancelled`), which includes"
    );
    println!(
        "the run's teardown (for `hostile`, whose manifest asks for a data and a scratch folder, removing the"
    );
    println!("scratch folder). {runs} runs each, after 3 warm-up runs.\n");
    println!("| task | interruption | p50 | p90 | p99 | max |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut hostile_noop = None;
    for (what, dir, input, setting) in rows {
        let sandbox = Arc::new(setting.sandbox(2));
        let plugin = rt.block_on(load(&sandbox, dir));
        let mut latencies = Vec::new();
        for i in 0..runs + 3 {
            let token = CancellationToken::new();
            let (s, p, t) = (sandbox.clone(), plugin.clone(), token.clone());
            let handle = rt.spawn(async move {
                let (tx, _rx) = mpsc::channel(256);
                let task = identity(&p);
                let mut run = task_run(&p, &task, input, p.limits);
                let none = Capabilities::default();
                if what.contains("not granted") {
                    run.capabilities = &none;
                }
                let report = s.run(&p.prepared, run, tx, t).await;
                (Instant::now(), report)
            });
            std::thread::sleep(Duration::from_micros(10_000 + fastrand::u64(0..10_000)));
            let cancelled_at = Instant::now();
            token.cancel();
            let (returned_at, report) = rt.block_on(handle).unwrap();
            assert_eq!(report.outcome, Outcome::Cancelled, "{:?}", report.outcome);
            if i >= 3 {
                latencies.push(returned_at.saturating_duration_since(cancelled_at));
            }
        }
        let s = stats(&latencies);
        println!(
            "| {what} | {} | {} | {} | {} | {} |",
            setting.label,
            us(s.p50),
            us(s.p90),
            us(s.p99),
            us(s.max)
        );
        if hostile_noop.is_none() && dir == HOSTILE {
            // For scale: a whole short run of the same plugin (data + scratch folder).
            let times = rt.block_on(async {
                let task = identity(&plugin);
                let mut times = Vec::new();
                for _ in 0..runs * 2 {
                    let started = Instant::now();
                    let report =
                        run_once(&sandbox, &plugin, &task, r#"{"mode":"echo","value":1}"#, plugin.limits)
                            .await;
                    expect_success(&report);
                    times.push(started.elapsed());
                }
                times
            });
            hostile_noop = Some(stats(&times));
        }
    }
    if let Some(s) = hostile_noop {
        println!(
            "\nFor scale: a whole `hostile` run that does nothing (`echo`), data and scratch folder included: p50 {}, p99 {}.",
            us(s.p50),
            us(s.p99)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. A hostile task must not stall a well-behaved one

fn bench_isolation() {
    section("5. No-op task latency next to endless_loop tasks (2-worker multi-thread runtime)");
    let rt = multi_thread(2);
    let sandbox = Arc::new(Setting::default_fuel("FuelYield").sandbox(4));
    let registry = rt.block_on(async {
        PluginRegistry::load(&sandbox, &[plugin_dir(KERNELS), plugin_dir(HOSTILE)], &cache_dir())
            .await
            .unwrap()
    });
    assert!(registry.problems().is_empty(), "{:?}", registry.problems());
    let kernels = registry.get("kernels").unwrap().clone();
    let hostile = registry.get("hostile").unwrap().clone();
    let requests = count(3_000, 200);

    println!(
        "A slot task on the runtime waits for requests on a channel and runs the no-op task for each; the"
    );
    println!(
        "bench thread sends a request, waits for the answer, pauses 50-300 µs, and so on ({requests} requests)."
    );
    println!(
        "Latency = from sending the request to the slot task's `Sandbox::run` returning. Meanwhile 0, 1 or 2"
    );
    println!("`endless_loop` tasks run on the same runtime (host default: FuelYield, 1,000,000 units).\n");
    println!("| concurrent endless_loop tasks | p50 | p90 | p99 | max | `run` alone p50 | `run` alone p99 |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let wasm = plugin_dir(KERNELS).join("kernels.wasm");
    let raws = Arc::new([
        raw::Raw::new(raw::Opts { pooling: true, fuel: true, keep_resident: 0, pagemap_scan: false }, &wasm),
        raw::Raw::new(
            raw::Opts { pooling: true, fuel: true, keep_resident: 1 << 20, pagemap_scan: true },
            &wasm,
        ),
    ]);
    let mut raw_rows = Vec::new();
    for hostiles in [0usize, 1, 2] {
        let stop = CancellationToken::new();
        let loops: Vec<_> = (0..hostiles)
            .map(|_| {
                let (s, p, t) = (sandbox.clone(), hostile.clone(), stop.clone());
                rt.spawn(async move {
                    let (tx, _rx) = mpsc::channel(256);
                    let task = identity(&p);
                    s.run(&p.prepared, task_run(&p, &task, ENDLESS, p.limits), tx, t).await
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30));

        let (req_tx, mut req_rx) = mpsc::channel::<()>(1);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<(Instant, Duration)>();
        let (s, p) = (sandbox.clone(), kernels.clone());
        let slot = rt.spawn(async move {
            let task = identity(&p);
            while req_rx.recv().await.is_some() {
                let started = Instant::now();
                let report = run_once(&s, &p, &task, NOOP, p.limits).await;
                expect_success(&report);
                let _ = done_tx.send((Instant::now(), started.elapsed()));
            }
        });
        let (mut latency, mut run_time) = (Vec::new(), Vec::new());
        for i in 0..requests + 50 {
            let sent = Instant::now();
            req_tx.blocking_send(()).unwrap();
            let (done, run) = done_rx.recv().unwrap();
            if i >= 50 {
                latency.push(done - sent);
                run_time.push(run);
            }
            std::thread::sleep(Duration::from_micros(50 + fastrand::u64(0..250)));
        }
        drop(req_tx);
        rt.block_on(slot).unwrap();

        // The same no-op driven by wasmtime directly, without and with resident pool memory, back
        // to back on a runtime task while the same endless loops run.
        let (a, b) = (raws.clone(), requests);
        let raw_times = rt
            .block_on(rt.spawn(async move {
                let mut times = vec![Vec::new(); a.len()];
                for _ in 0..b {
                    for (i, r) in a.iter().enumerate() {
                        times[i].push(r.run(NOOP).await.0.total);
                    }
                }
                times
            }))
            .unwrap();
        raw_rows.push((hostiles, raw_times.iter().map(|t| stats(t)).collect::<Vec<_>>()));
        stop.cancel();
        for handle in loops {
            let report = rt.block_on(handle).unwrap();
            assert_eq!(report.outcome, Outcome::Cancelled, "{:?}", report.outcome);
        }
        let (l, r) = (stats(&latency), stats(&run_time));
        println!(
            "| {hostiles} | {} | {} | {} | {} | {} | {} |",
            us(l.p50),
            us(l.p90),
            us(l.p99),
            us(l.max),
            us(r.p50),
            us(r.p99)
        );
    }
    println!(
        "\nThe no-op run alone, driven by wasmtime directly (section 1c) on a runtime task, {requests} runs each:\n"
    );
    println!(
        "| concurrent endless_loop tasks | no keep_resident: p50 | p99 | keep_resident 1 MiB + pagemap_scan: p50 | p99 |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for (hostiles, s) in raw_rows {
        println!(
            "| {hostiles} | {} | {} | {} | {} |",
            us(s[0].p50),
            us(s[0].p99),
            us(s[1].p50),
            us(s[1].p99)
        );
    }
}

// ---------------------------------------------------------------------------------------------

fn main() {
    // `cargo bench` passes `--bench`; other words select sections.
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let all: [(&str, fn()); 7] = [
        ("noop", bench_noop),
        ("criterion", bench_criterion),
        ("breakdown", bench_breakdown),
        ("kernels", bench_kernels),
        ("import", bench_import),
        ("cancel", bench_cancel),
        ("isolation", bench_isolation),
    ];
    if let Some(unknown) = wanted.iter().find(|w| !all.iter().any(|(n, _)| n == w)) {
        eprintln!(
            "unknown section {unknown:?}; sections: {}",
            all.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        );
        std::process::exit(2);
    }
    let started = Instant::now();
    println!("# taskhost sandbox benchmark");
    println!(
        "\n{} CPUs available; load average {}; {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        loadavg(),
        if quick() { "BENCH_QUICK: reduced counts" } else { "full counts" }
    );
    for (name, bench) in all {
        if wanted.is_empty() || wanted.iter().any(|w| w == name) {
            let (t, (machine0, own0)) = (Instant::now(), cpu_ticks());
            bench();
            let (machine1, own1) = cpu_ticks();
            // Clock ticks are 1/100 s on Linux.
            let others = (machine1 - machine0).saturating_sub(own1 - own0) as f64 / 100.0;
            println!(
                "\n(section `{name}` took {:.0} s; other processes used {:.2} CPUs on average meanwhile)",
                t.elapsed().as_secs_f64(),
                others / t.elapsed().as_secs_f64()
            );
        }
    }
    println!("\nTotal: {:.0} s", started.elapsed().as_secs_f64());
}
