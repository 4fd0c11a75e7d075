//! `ws_load`: many WebSocket watchers on one host while tasks stream events (issue 4).
//!
//! One `host` (embedded broker) runs `hostile` tasks that sleep, one per slot; `--tasks` `cvd`
//! runs, each paced to a steady `--samples-per-sec`, wait behind them. The watchers open
//! `/ws/tasks/{cvd}` while the runs wait (quiet tasks), spread evenly over the runs; with
//! `--queue-watchers` and `--events-watchers` some of them watch `/ws/queue` and `/ws/events`
//! instead (a dashboard mix). The host's resident memory before and after, divided by the
//! watchers, is the memory of an idle watcher, and its CPU over a few quiet seconds is the cost of
//! keeping them. Then the sleepers are cancelled, one after another over `--stagger-ms` (runs
//! that start at different moments, as runs do; `--tasks 1` is the extreme where every event
//! goes to every watcher in one burst), and every watcher receives its run's events: delivery
//! latency is the receipt time minus the event's `ts` (stamped by the host's worker when it took
//! the report from the plugin, before storing it). Each watcher of a run gets the same message
//! rate whatever `--tasks` is, so the aggregate rate stays the same. Meanwhile a separate
//! connection requests `GET /api/v1/queues` (and `GET /healthz`, which touches no store) at a
//! steady pace from a thread of its own. The generator's own sockets use a 4 KiB read buffer
//! (`--client-read-buffer`) so that its CPU stays out of the host's way; it still shares the
//! machine's cores, and `--watcher-nice` lowers the priority of its watcher threads (not of the
//! probe's) to stand in for clients on other machines.
//!
//! ```sh
//! cargo xtask plugins
//! cargo build --release -p taskhost --bin host && cargo build --release -p taskhost-bench
//! target/release/ws_load --watchers 10000 --tasks 10
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use taskhost_bench::{
    CpuMeter, HostProcess, StallMeter, Summary, load_average, ms, nproc, parse_rfc3339_ms, rss_kib, unix_ms,
};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Parser, Debug)]
#[command(
    about = "WebSocket fan-out benchmark: delivery latency, memory per idle watcher, GET /queues under load"
)]
struct Args {
    /// The host binary (default: `host` beside this executable).
    #[arg(long)]
    host_bin: Option<std::path::PathBuf>,
    /// More arguments for `host run` (repeat), e.g. `--host-arg=--ws-nice=10`.
    #[arg(long, allow_hyphen_values = true)]
    host_arg: Vec<String>,
    /// Watchers to open, all kinds together.
    #[arg(long, default_value_t = 10_000)]
    watchers: usize,
    /// `cvd` runs streaming at once; the task watchers are spread evenly over them. 1 puts every
    /// watcher on one run: each event is one burst to all of them.
    #[arg(long, default_value_t = 10)]
    tasks: usize,
    /// Of `--watchers`, this many watch `/ws/queue` instead of a run.
    #[arg(long, default_value_t = 0)]
    queue_watchers: usize,
    /// Of `--watchers`, this many watch `/ws/events` (every event of every task) instead of a run.
    #[arg(long, default_value_t = 0)]
    events_watchers: usize,
    /// The runs start over this span, one after another (default: one sample interval). Whatever
    /// the span, their phases within a sample interval are spread evenly, so that their bursts
    /// fall at different moments as those of independent runs do; a longer span also spreads
    /// their ends (see `release_offset`).
    #[arg(long)]
    stagger_ms: Option<u64>,
    /// Wall-clock length of each streaming run.
    #[arg(long, default_value_t = 60)]
    stream_secs: u64,
    /// Progress samples a cvd run reports per second (each is a plugin `progress_update`, and
    /// the host adds its own coalesced `progress_update`).
    #[arg(long, default_value_t = 2.0)]
    samples_per_sec: f64,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200)]
    connect_parallelism: usize,
    /// `GET /api/v1/queues` requests while the runs stream.
    #[arg(long, default_value_t = 1000)]
    queues_requests: usize,
    /// Wait after the last watcher connected before reading the host's memory.
    #[arg(long, default_value_t = 5)]
    settle_secs: u64,
    /// The generator's own WebSocket read buffer per connection, bytes; 0 for tungstenite's
    /// default (128 KiB, zero-filled on every read). Small keeps the generator's CPU out of the
    /// way; the host's buffer is its own and not set here.
    #[arg(long, default_value_t = 4096)]
    client_read_buffer: usize,
    /// Nice value of the generator's watcher threads (0-19): above 0, the host and the probe
    /// thread run before them when they compete for a core, as if the clients were on other
    /// machines. The probe thread stays at the generator's own priority.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=19))]
    watcher_nice: i32,
    /// Run the host on the lower half of the CPUs and the generator on the upper half (one core
    /// each on a 2-core machine), as if the watchers were on another machine: the host then has
    /// half the cores, and the watchers' CPU is not in its way.
    #[arg(long)]
    split_cores: bool,
    /// Time slice, µs, that the probe thread (`GET /queues`, `/healthz`) asks the kernel for;
    /// 0 for the default. A short one lets its wake-ups preempt the watchers' threads, as if the
    /// client were on another machine (`host run --api-slice-us` does the same for the host's
    /// API threads). A second stall meter runs at this slice beside the plain one.
    #[arg(long, default_value_t = 0)]
    probe_slice_us: u64,
    /// Write every (watcher, task, seq, latency ms) of the run watchers to this CSV file, the
    /// runs' events to `<file>.events` and the `/queues` and `/healthz` samples to `<file>.probe`.
    #[arg(long)]
    dump: Option<std::path::PathBuf>,
    /// The host's `TASKHOST_LOG`.
    #[arg(long, default_value = "info")]
    host_log: String,
}

/// A runtime shut down in the background when dropped (a plain `Runtime` dropped within an async
/// context panics).
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for BackgroundRuntime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// What a watcher watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watching {
    /// `/ws/tasks/{id}` of run number `.0`.
    Run(usize),
    /// `/ws/queue`.
    Queue,
    /// `/ws/events`.
    Events,
}

/// The fields of a received message the generator reads. Everything else (an event's `data`, the
/// largest part) is skipped by the parser without being built: the generator shares the host's
/// cores, so its CPU per message is kept as small as it can be.
#[derive(Deserialize)]
struct Received<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    seq: Option<u64>,
    #[serde(borrow)]
    task_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ts: Option<Cow<'a, str>>,
}

/// What one watcher saw.
struct WatcherReport {
    watching: Watching,
    connected: bool,
    /// Sequence id and receipt minus `ts` of every live event, ms (for `/ws/queue`, of every
    /// `task_status`; the sequence id is 0 there).
    latencies_ms: Vec<(u32, f32)>,
    /// The last sequence id received (runs only).
    last_seq: u64,
    gaps: u64,
    received: u64,
    finished: bool,
    close_code: Option<u16>,
    error: Option<String>,
}

impl WatcherReport {
    fn new(watching: Watching) -> Self {
        WatcherReport {
            watching,
            connected: false,
            latencies_ms: Vec::new(),
            last_seq: 0,
            gaps: 0,
            received: 0,
            finished: false,
            close_code: None,
            error: None,
        }
    }
}

/// A run's last stretch, reported apart: its final events come together, then every watcher of
/// the run is closed at once.
const RUN_END: Duration = Duration::from_secs(1);

/// True for the event types that end a task's stream (as the host's `events::kind`).
fn kind_is_terminal(kind: &str) -> bool {
    matches!(kind, "run_completed" | "run_failed" | "run_cancelled")
}

/// Fd headroom for the generator itself beside its watchers.
const OWN_FDS: u64 = 200;

/// How long each sleeper would sleep: it holds a slot until cancelled, within hostile's 60 s limit.
const SLEEPER_MS: u64 = 58_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    let host_bin = taskhost_bench::host_binary(args.host_bin.clone())?;
    let (soft, hard) = taskhost_bench::raise_open_files_limit()?;
    let mut watchers = args.watchers;
    let mut notes = Vec::new();
    if watchers as u64 + OWN_FDS > soft {
        watchers = soft.saturating_sub(OWN_FDS) as usize;
        notes.push(format!(
            "asked for {} watchers but RLIMIT_NOFILE is {soft} (hard {hard}): ran {watchers}",
            args.watchers
        ));
    }
    if args.queue_watchers + args.events_watchers >= watchers {
        bail!("--queue-watchers and --events-watchers leave no run watcher of {watchers}");
    }
    let run_watchers = watchers - args.queue_watchers - args.events_watchers;
    let runs = args.tasks;
    let slots = runs.max(2);
    let sample_interval_ms = 1000.0 / args.samples_per_sec;
    let sample_interval = Duration::from_secs_f64(sample_interval_ms / 1000.0);
    let stagger = Duration::from_millis(if runs == 1 {
        0
    } else {
        args.stagger_ms.unwrap_or(sample_interval_ms.round() as u64)
    });
    // With --split-cores, this thread (and so every thread the generator starts from now on) keeps
    // to the upper half of the CPUs, the host to the lower half.
    // (`nproc` counts the CPUs this thread may use: read it before.)
    let cpus = nproc();
    let split =
        args.split_cores.then(|| ((0..cpus / 2).collect::<Vec<_>>(), (cpus / 2..cpus).collect::<Vec<_>>()));
    if let Some((_, generator)) = &split {
        if cpus < 2 {
            bail!("--split-cores needs at least 2 CPUs");
        }
        taskhost_bench::set_thread_affinity(generator)?;
    }
    let generator_cpus = split.as_ref().map_or(cpus, |(_, generator)| generator.len());
    let load_before = load_average();
    let started = Instant::now();
    println!(
        "ws_load: {watchers} watchers ({run_watchers} on {runs} runs, {} on /ws/queue, {} on /ws/events), nproc {}, load average {load_before}, open files limit {soft}/{hard}",
        args.queue_watchers, args.events_watchers, cpus
    );

    let dir = tempfile::tempdir()?;
    let root = taskhost_bench::repo_root();
    let plugins =
        format!("{},{}", root.join("plugins/cvd").display(), root.join("tests/fixtures/hostile").display());
    for wasm in ["plugins/cvd/cvd.wasm", "tests/fixtures/hostile/hostile.wasm"] {
        if !root.join(wasm).is_file() {
            bail!("{wasm} is missing: run `cargo xtask plugins` first");
        }
    }
    let mut host_args: Vec<String> = [
        "--plugins",
        &plugins,
        "--data-dir",
        &dir.path().join("data").display().to_string(),
        "--concurrency",
        &slots.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    host_args.extend(taskhost_bench::compile_cache_args());
    host_args.extend(args.host_arg.iter().cloned());
    let host_cpus = split.as_ref().map(|(host, _)| host.as_slice());
    let host = HostProcess::start_on(
        &host_bin,
        &host_args,
        &dir.path().join("host.log"),
        &args.host_log,
        host_cpus,
    )?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    host.wait_ready(&http).await?;
    let pid = host.pid();
    let me = std::process::id();

    // The watchers' own runtime, on threads that may run at a lower priority than the probe's.
    let watcher_nice = args.watcher_nice;
    // Shut down without blocking however `main` returns: a runtime dropped inside this async
    // context would panic and hide the error that ended the run.
    let watcher_runtime = BackgroundRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(generator_cpus)
            .thread_name("watchers")
            .enable_all()
            .on_thread_start(move || {
                if watcher_nice != 0
                    && let Err(e) = taskhost_bench::set_thread_nice(watcher_nice)
                {
                    eprintln!("cannot lower the watcher threads' priority: {e}");
                }
            })
            .build()?,
    ));

    let probe_slice = Duration::from_micros(args.probe_slice_us);
    // GET /queues on a quiet host, for comparison.
    let Probed { queues: quiet_queues, health: quiet_health, .. } = probe_on_own_thread(
        host.base.clone(),
        300,
        Duration::from_millis(5),
        Duration::ZERO,
        probe_slice,
        None,
    )
    .await??;

    // Sleepers hold every slot; the streaming runs wait behind them.
    let mut sleepers = Vec::new();
    for _ in 0..slots {
        sleepers.push(
            submit(
                &http,
                &host.base,
                json!({"plugin": "hostile", "input": {"mode": "sleep", "ms": SLEEPER_MS}}),
            )
            .await?,
        );
    }
    for id in &sleepers {
        wait_status(&http, &host.base, id, &["running"], Duration::from_secs(60)).await?;
    }
    let report_interval_sec = 10.0;
    let speedup = args.samples_per_sec * report_interval_sec;
    let duration_sec = speedup * args.stream_secs as f64;
    let stream_input = json!({
        "recipe": {"film_material": "Si3N4", "temperature_c": 800.0, "pressure_torr": 0.5,
                   "precursor_flow_sccm": 80.0, "carrier_gas_flow_sccm": 500.0, "duration_sec": duration_sec},
        "simulation": {"speedup": speedup, "report_interval_sec": report_interval_sec},
    });
    let mut run_ids = Vec::with_capacity(runs);
    for _ in 0..runs {
        let id = submit(&http, &host.base, json!({"plugin": "cvd", "input": stream_input})).await?;
        let status = task(&http, &host.base, &id).await?["status"].clone();
        if status != "queued" {
            bail!("the streaming runs should wait behind the sleepers but one is {status}");
        }
        run_ids.push(id);
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(pid)?;
    let own_rss_before = rss_kib(me)?;

    // Open the watchers: the dashboard ones spread among the run watchers, the run watchers
    // spread evenly over the runs.
    let plan = watcher_plan(run_watchers, runs, args.queue_watchers, args.events_watchers);
    let gate = Arc::new(Semaphore::new(args.connect_parallelism));
    let connected = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (stop_dashboards, dashboards_stop) = watch::channel(false);
    let connect_started = Instant::now();
    let (mut handles, mut dashboard_handles) = (Vec::with_capacity(watchers), Vec::new());
    for watching in plan {
        let url = match watching {
            Watching::Run(run) => host.ws(&format!("/ws/tasks/{}", run_ids[run])),
            Watching::Queue => host.ws("/ws/queue"),
            Watching::Events => host.ws("/ws/events"),
        };
        let handle = watcher_runtime.spawn(watch_stream(
            url,
            watching,
            (args.client_read_buffer > 0).then_some(args.client_read_buffer),
            gate.clone(),
            connected.clone(),
            failed.clone(),
            dashboards_stop.clone(),
        ));
        match watching {
            Watching::Run(_) => handles.push(handle),
            Watching::Queue | Watching::Events => dashboard_handles.push(handle),
        }
    }
    let connect_deadline = Instant::now() + Duration::from_secs(90);
    while connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < watchers {
        if Instant::now() > connect_deadline {
            bail!(
                "only {} of {watchers} watchers connected within 90 s ({} failed)",
                connected.load(Ordering::Relaxed),
                failed.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let open = connected.load(Ordering::Relaxed);
    println!("{open} watchers connected in {connect_secs:.1} s ({} failed)", failed.load(Ordering::Relaxed));

    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let idle_cpu = CpuMeter::start(&[pid, me]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_cores = idle_cpu.cores();
    let rss_after = rss_kib(pid)?;
    let own_rss_after = rss_kib(me)?;
    for id in &run_ids {
        if task(&http, &host.base, id).await?["status"] != "queued" {
            notes.push(
                "a streaming run started before the idle measurement ended (sleepers ended early)".into(),
            );
            break;
        }
    }

    // Release the slots one after another: each frees one slot, which one queued run takes.
    let load_stream_start = load_average();
    let stream_cpu = CpuMeter::start(&[pid, me]);
    let stream_cpu_started = Instant::now();
    let release_started = tokio::time::Instant::now();
    for (i, id) in sleepers.iter().enumerate() {
        let at = if i < runs { release_offset(i, runs, stagger, sample_interval) } else { stagger };
        tokio::time::sleep_until(release_started + at).await;
        http.post(format!("{}/api/v1/tasks/{id}/cancel", host.base)).send().await?;
    }
    let interval =
        Duration::from_secs_f64(args.stream_secs as f64 * 0.8 / args.queues_requests.max(1) as f64);
    let probe = probe_on_own_thread(
        host.base.clone(),
        args.queues_requests,
        interval,
        Duration::from_secs(2),
        probe_slice,
        args.dump.as_ref().map(|d| d.with_extension("probe")),
    );
    // The run watchers end with their run; the dashboard watchers are told to stop after that.
    let mut reports = Vec::with_capacity(watchers);
    let wait = Duration::from_secs(args.stream_secs + 90);
    for handle in handles {
        reports.push(tokio::time::timeout(wait, handle).await.context("a watcher did not finish")??);
    }
    let _ = stop_dashboards.send(true);
    let mut dashboard_reports = Vec::with_capacity(dashboard_handles.len());
    for handle in dashboard_handles {
        dashboard_reports
            .push(tokio::time::timeout(wait, handle).await.context("a dashboard watcher did not stop")??);
    }
    let stream_cores = stream_cpu.cores();
    let stream_cpu_secs = stream_cpu_started.elapsed().as_secs_f64();
    let Probed { queues: busy_queues, health: busy_health, stalls: busy_stalls, slice_stalls } =
        probe.await??;
    let load_after = load_average();

    // Every run's end, and its events.
    let mut stored_events = Vec::with_capacity(runs);
    let mut run_spans = Vec::with_capacity(runs);
    let mut not_succeeded = Vec::new();
    let mut event_lines = Vec::new();
    // When each event of each run was stamped, and when each run's terminal event was.
    let mut event_ts: HashMap<(usize, u64), f64> = HashMap::new();
    let mut run_last_ts = vec![f64::INFINITY; runs];
    for (run, id) in run_ids.iter().enumerate() {
        let final_task = task(&http, &host.base, id).await?;
        let events: Value = http
            .get(format!("{}/api/v1/tasks/{id}/events?limit=10000", host.base))
            .send()
            .await?
            .json()
            .await?;
        let events = events["events"].as_array().cloned().unwrap_or_default();
        stored_events.push(events.len() as u64);
        for e in &events {
            if let (Some(seq), Some(ts)) = (e["seq"].as_u64(), e["ts"].as_str().and_then(parse_rfc3339_ms)) {
                event_ts.insert((run, seq), ts);
                if kind_is_terminal(e["event_type"].as_str().unwrap_or_default()) {
                    run_last_ts[run] = ts;
                }
            }
        }
        event_lines
            .extend(events.iter().map(|e| format!("{run},{},{},{}", e["seq"], e["event_type"], e["ts"])));
        if let (Some(a), Some(b)) = (
            final_task["started_at"].as_str().and_then(parse_rfc3339_ms),
            final_task["finished_at"].as_str().and_then(parse_rfc3339_ms),
        ) {
            run_spans.push((a, b));
        }
        if final_task["status"] != "succeeded" {
            not_succeeded.push(format!("{id} ended {}: {}", final_task["status"], final_task["error"]));
        }
    }

    // Everything measured: summarise.
    let mut latencies: Vec<f64> = Vec::new();
    // The same, split: events of a run's last RUN_END (its final events, after which all its
    // watchers are closed at once), and all the others (the runs streaming).
    let (mut steady, mut ending): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let (mut complete, mut gaps, mut lagged, mut errors, mut received) = (0, 0, 0, 0, 0u64);
    let mut first_error = None;
    for r in &reports {
        let Watching::Run(run) = r.watching else { continue };
        latencies.extend(r.latencies_ms.iter().map(|(_, l)| f64::from(*l)));
        for (seq, l) in &r.latencies_ms {
            let ts = event_ts.get(&(run, u64::from(*seq))).copied().unwrap_or(f64::NEG_INFINITY);
            if ts >= run_last_ts[run] - RUN_END.as_secs_f64() * 1000.0 {
                ending.push(f64::from(*l));
            } else {
                steady.push(f64::from(*l));
            }
        }
        received += r.received;
        gaps += r.gaps;
        if r.finished && r.last_seq == stored_events[run] && r.gaps == 0 {
            complete += 1;
        }
        if r.close_code == Some(4008) {
            lagged += 1;
        }
        if let Some(e) = &r.error {
            errors += 1;
            first_error.get_or_insert_with(|| e.clone());
        }
    }
    let mut dashboard = HashMap::new();
    for kind in [Watching::Queue, Watching::Events] {
        let mine: Vec<&WatcherReport> = dashboard_reports.iter().filter(|r| r.watching == kind).collect();
        let mut lat: Vec<f64> =
            mine.iter().flat_map(|r| r.latencies_ms.iter().map(|(_, l)| f64::from(*l))).collect();
        let got: u64 = mine.iter().map(|r| r.received).sum();
        let kind_gaps: u64 = mine.iter().map(|r| r.gaps).sum();
        let kind_lagged = mine.iter().filter(|r| r.close_code == Some(4008)).count();
        let kind_errors = mine.iter().filter(|r| r.error.is_some()).count();
        if let Some(e) = mine.iter().find_map(|r| r.error.clone()) {
            first_error.get_or_insert(e);
        }
        dashboard.insert(
            if kind == Watching::Queue { "queue" } else { "events" },
            (mine.len(), Summary::of(&mut lat), got, kind_gaps, kind_lagged, kind_errors),
        );
    }
    if let Some(path) = &args.dump {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for (w, r) in reports.iter().enumerate() {
            let Watching::Run(run) = r.watching else { continue };
            for (seq, l) in &r.latencies_ms {
                writeln!(out, "{w},{run},{seq},{l}")?;
            }
        }
        std::fs::write(path.with_extension("events"), event_lines.join("\n"))?;
    }
    let connected_watchers = reports.iter().chain(&dashboard_reports).filter(|r| r.connected).count();
    // Per event of a run: the first watcher's latency (store and publish, plus one send) and the
    // spread to the last watcher of that run (the fan-out itself).
    let mut per_event: HashMap<(usize, u32), (f64, f64)> = HashMap::new();
    for r in &reports {
        let Watching::Run(run) = r.watching else { continue };
        for (seq, l) in &r.latencies_ms {
            let l = f64::from(*l);
            let entry = per_event.entry((run, *seq)).or_insert((l, l));
            entry.0 = entry.0.min(l);
            entry.1 = entry.1.max(l);
        }
    }
    let first = Summary::of(&mut per_event.values().map(|(first, _)| *first).collect::<Vec<_>>());
    let spread = Summary::of(&mut per_event.values().map(|(first, last)| last - first).collect::<Vec<_>>());
    let over_50 = latencies.iter().filter(|l| **l > 50.0).count();
    let delivery = Summary::of(&mut latencies);
    let steady_over_50 = steady.iter().filter(|l| **l > 50.0).count();
    let steady = Summary::of(&mut steady);
    let ending = Summary::of(&mut ending);
    let per_watcher_kib = (rss_after as f64 - rss_before as f64) / open.max(1) as f64;
    let all_received = received + dashboard.values().map(|d| d.2).sum::<u64>();
    let (first_start, last_end) = run_spans
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (start, end)| (a.min(*start), b.max(*end)));
    let streaming_secs = (last_end - first_start) / 1000.0;
    let run_secs: Vec<f64> = run_spans.iter().map(|(a, b)| (b - a) / 1000.0).collect();
    let events_total: u64 = stored_events.iter().sum();
    let per_run_rate = events_total as f64 / run_secs.iter().sum::<f64>();

    println!();
    println!("## WebSocket fan-out (`ws_load`)");
    println!();
    println!("| measure | value | target (issue 4) |");
    println!("| --- | --- | --- |");
    println!(
        "| watchers connected | {connected_watchers} of {watchers} (in {connect_secs:.1} s): {run_watchers} on {runs} runs, {} on `/ws/queue`, {} on `/ws/events` | 10,000 |",
        args.queue_watchers, args.events_watchers
    );
    println!(
        "| events of the runs | {events_total} in {runs} runs of {:.1}-{:.1} s, starts spread over {} ms ({per_run_rate:.1}/s per run to each of its watchers) | a few per second |",
        run_secs.iter().copied().fold(f64::INFINITY, f64::min),
        run_secs.iter().copied().fold(0.0, f64::max),
        stagger.as_millis()
    );
    println!(
        "| messages received, all watchers | {all_received} in {streaming_secs:.1} s: {:.0} messages/s | |",
        all_received as f64 / streaming_secs
    );
    println!(
        "| run watchers: delivery latency p50 / p99 / max | {} / {} / {} ms ({} samples, {:.2} % over 50 ms) | p99 < 50 ms |",
        ms(delivery.p50),
        ms(delivery.p99),
        ms(delivery.max),
        delivery.count,
        100.0 * over_50 as f64 / delivery.count.max(1) as f64
    );
    println!(
        "| run watchers, while the runs stream (all but each run's last {} s): p50 / p99 / max | {} / {} / {} ms ({} samples, {:.2} % over 50 ms) | p99 < 50 ms |",
        RUN_END.as_secs(),
        ms(steady.p50),
        ms(steady.p99),
        ms(steady.max),
        steady.count,
        100.0 * steady_over_50 as f64 / steady.count.max(1) as f64
    );
    println!(
        "| run watchers, each run's last {} s (final events, then all its watchers closed): p50 / p99 / max | {} / {} / {} ms ({} samples) | |",
        RUN_END.as_secs(),
        ms(ending.p50),
        ms(ending.p99),
        ms(ending.max),
        ending.count
    );
    println!(
        "| per event: first watcher's latency p50 / p99 / max | {} / {} / {} ms | |",
        ms(first.p50),
        ms(first.p99),
        ms(first.max)
    );
    println!(
        "| per event: last minus first watcher of its run p50 / p99 / max | {} / {} / {} ms | |",
        ms(spread.p50),
        ms(spread.p99),
        ms(spread.max)
    );
    println!("| run watchers: messages received | {received} | |");
    println!(
        "| run watchers that got every event, in order, then the close | {complete} of {run_watchers} | all |"
    );
    println!("| run watchers: gaps / closed as lagged (4008) / errors | {gaps} / {lagged} / {errors} | 0 |");
    for (name, path) in [("queue", "/ws/queue"), ("events", "/ws/events")] {
        let (count, lat, got, g, l, e) = dashboard[name];
        if count == 0 {
            continue;
        }
        println!(
            "| `{path}` watchers ({count}): messages, latency p50 / p99 / max, gaps / lag closes / errors | {got}, {} / {} / {} ms, {g} / {l} / {e} | |",
            ms(lat.p50),
            ms(lat.p99),
            ms(lat.max)
        );
    }
    println!(
        "| host RSS before → after opening the watchers | {:.1} → {:.1} MiB | |",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    println!("| memory per idle watcher | {per_watcher_kib:.1} KiB | < 64 KiB |");
    println!(
        "| the generator's own memory per connection (read buffer {}) | {:.1} KiB | |",
        match args.client_read_buffer {
            0 => "128 KiB, tungstenite's default".to_owned(),
            bytes => format!("{bytes} B"),
        },
        (own_rss_after as f64 - own_rss_before as f64) / open.max(1) as f64
    );
    println!(
        "| CPU with the watchers idle (host / generator) | {:.0} % / {:.0} % of a core | |",
        idle_cores[0] * 100.0,
        idle_cores[1] * 100.0
    );
    println!(
        "| CPU while streaming (host / generator) | {:.0} % / {:.0} % of a core | |",
        stream_cores[0] * 100.0,
        stream_cores[1] * 100.0
    );
    println!(
        "| CPU per message delivered while streaming (host / generator) | {:.1} / {:.1} µs | |",
        stream_cores[0] * stream_cpu_secs * 1e6 / all_received.max(1) as f64,
        stream_cores[1] * stream_cpu_secs * 1e6 / all_received.max(1) as f64
    );
    println!(
        "| `GET /api/v1/queues` quiet host p50 / p99 / max | {} / {} / {} ms ({} requests) | |",
        ms(quiet_queues.p50),
        ms(quiet_queues.p99),
        ms(quiet_queues.max),
        quiet_queues.count
    );
    println!(
        "| `GET /api/v1/queues` while streaming p50 / p99 / max | {} / {} / {} ms ({} requests) | p99 < 2 ms |",
        ms(busy_queues.p50),
        ms(busy_queues.p99),
        ms(busy_queues.max),
        busy_queues.count
    );
    println!(
        "| `GET /healthz` (no store), paired with each, quiet / streaming p99 | {} / {} ms (max {} / {}) | |",
        ms(quiet_health.p99),
        ms(busy_health.p99),
        ms(quiet_health.max),
        ms(busy_health.max)
    );
    println!(
        "| a plain thread of the generator: 1 ms sleeps late by p50 / p99 / max while streaming (the floor any wake-up meets) | {} / {} / {} ms | |",
        ms(busy_stalls.p50),
        ms(busy_stalls.p99),
        ms(busy_stalls.max)
    );
    if let Some(late) = slice_stalls {
        println!(
            "| the same, a thread at the probe's {} µs slice | {} / {} / {} ms | |",
            args.probe_slice_us,
            ms(late.p50),
            ms(late.p99),
            ms(late.max)
        );
    }
    println!(
        "| load average: start / stream start / end | {load_before} / {load_stream_start} / {load_after} (nproc {cpus}) | |"
    );
    println!("| total wall time | {:.0} s | |", started.elapsed().as_secs_f64());
    let placement = match &split {
        Some((host, generator)) => format!("the host on CPUs {host:?}, the generator on CPUs {generator:?}"),
        None => format!("both on all {cpus} CPUs"),
    };
    println!();
    println!(
        "Method: one `host run --concurrency {slots} {}` (embedded broker, `TASKHOST_LOG={}`), the generator on the \
         same machine ({placement}; its watchers on a tokio runtime of {} worker threads at nice {watcher_nice}). {slots} `hostile` \
         sleepers hold the slots while {watchers} watchers open their streams ({} at a time): {run_watchers} \
         `/ws/tasks/{{id}}` spread evenly over {runs} queued `cvd` runs, {} `/ws/queue`, {} `/ws/events`; memory per \
         idle watcher = (VmRSS after {} s settle − VmRSS before) / watchers. The sleepers are cancelled one after \
         another over {} ms, each run streams {:.0} simulated s at {speedup}x (one sample every \
         {report_interval_sec} simulated s); delivery latency = receipt time − the event's `ts` (whole ms, so up to \
         1 ms high), live events only. `GET /api/v1/queues`: {} requests one after another on one keep-alive \
         connection, one every {:.0} ms, from 2 s after the first run was released, each paired with a \
         `GET /healthz` (the two take turns going first), from a thread and runtime of their own at the \
         generator's priority (slice: {}).",
        args.host_arg.join(" "),
        args.host_log,
        generator_cpus,
        args.connect_parallelism,
        args.queue_watchers,
        args.events_watchers,
        args.settle_secs,
        stagger.as_millis(),
        duration_sec,
        args.queues_requests,
        interval.as_secs_f64() * 1000.0,
        if args.probe_slice_us == 0 {
            "the kernel's default".to_owned()
        } else {
            format!("{} µs", args.probe_slice_us)
        }
    );
    for note in &notes {
        println!("Note: {note}.");
    }
    if let Some(e) = first_error {
        println!("First watcher error: {e}");
    }
    for line in &not_succeeded {
        println!("A streaming run did not succeed: {line}");
    }
    drop(host);
    drop(watcher_runtime);
    Ok(())
}

/// When run `i` of `runs` is released, from the first: its phase within a sample interval is
/// `i / runs` of the interval, and whole intervals are added to spread the starts over `span`.
/// (Spreading them evenly over a span that is a multiple of the interval would put runs in
/// step: 10 runs over 5 s start 500 ms apart, and all burst at the same moment.)
fn release_offset(i: usize, runs: usize, span: Duration, interval: Duration) -> Duration {
    let share = i as f64 / runs as f64;
    let whole_intervals = (share * span.as_secs_f64() / interval.as_secs_f64()).floor();
    interval.mul_f64(share + whole_intervals)
}

/// What each watcher watches, in connection order: the `/ws/queue` and `/ws/events` watchers
/// spread among the run watchers, and watcher `i` of the runs on run `i % runs`.
fn watcher_plan(run_watchers: usize, runs: usize, queue: usize, events: usize) -> Vec<Watching> {
    let mut plan: Vec<Watching> = (0..run_watchers).map(|i| Watching::Run(i % runs)).collect();
    let dashboard =
        std::iter::repeat_n(Watching::Queue, queue).chain(std::iter::repeat_n(Watching::Events, events));
    let every = (run_watchers / (queue + events).max(1)).max(1);
    for (n, watching) in dashboard.enumerate() {
        plan.insert(((n + 1) * (every + 1) - 1).min(plan.len()), watching);
    }
    plan
}

/// One watcher: connects (at most `gate` at once), then reads until the server closes (a run's
/// stream) or until `stop` turns true (`/ws/queue`, `/ws/events`, which never end by themselves).
async fn watch_stream(
    url: String,
    watching: Watching,
    read_buffer: Option<usize>,
    gate: Arc<Semaphore>,
    connected: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> WatcherReport {
    let mut report = WatcherReport::new(watching);
    let permit = gate.acquire().await;
    let config = read_buffer.map(|bytes| WebSocketConfig::default().read_buffer_size(bytes));
    let mut socket = match tokio_tungstenite::connect_async_with_config(url.as_str(), config, true).await {
        Ok((socket, _)) => socket,
        Err(e) => {
            failed.fetch_add(1, Ordering::Relaxed);
            report.error = Some(format!("connect: {e}"));
            return report;
        }
    };
    drop(permit);
    report.connected = true;
    connected.fetch_add(1, Ordering::Relaxed);
    let connected_at = unix_ms();
    // `/ws/events`: the last sequence id per task, to see gaps.
    let mut last_per_task: HashMap<String, u64> = HashMap::new();
    loop {
        let message = tokio::select! {
            message = socket.next() => message,
            _ = stop.changed(), if !matches!(watching, Watching::Run(_)) => {
                report.finished = true;
                let _ = socket.close(None).await;
                break;
            }
        };
        let Some(message) = message else { break };
        match message {
            Ok(Message::Text(text)) => {
                let received_at = unix_ms();
                let Ok(event) = serde_json::from_str::<Received>(text.as_str()) else { continue };
                report.received += 1;
                let seq = event.seq.unwrap_or(0);
                match watching {
                    Watching::Run(_) => {
                        if seq != report.last_seq + 1 {
                            report.gaps += 1;
                        }
                        report.last_seq = seq;
                    }
                    Watching::Events => {
                        let task = event.task_id.unwrap_or_default();
                        let last = match last_per_task.get_mut(task.as_ref()) {
                            Some(last) => Some(std::mem::replace(last, seq)),
                            None => last_per_task.insert(task.into_owned(), seq),
                        };
                        if last.is_some_and(|last| seq != last + 1) {
                            report.gaps += 1;
                        }
                    }
                    Watching::Queue if event.kind.as_deref() != Some("task_status") => continue,
                    Watching::Queue => {}
                }
                if let Some(ts) = event.ts.as_deref().and_then(parse_rfc3339_ms)
                    && ts >= connected_at.floor()
                {
                    report.latencies_ms.push((seq as u32, (received_at - ts) as f32));
                }
            }
            Ok(Message::Close(frame)) => {
                let code = frame.map(|f| u16::from(f.code));
                report.finished = code == Some(1000);
                report.close_code = code;
                break;
            }
            Ok(_) => {}
            Err(e) => {
                report.error = Some(e.to_string());
                break;
            }
        }
    }
    report
}

/// [`probe_queues`] after `delay`, on a thread and runtime of its own: the watchers' runtime is
/// busy reading every burst, and a request waiting there behind them would time the generator,
/// not the host.
fn probe_on_own_thread(
    base: String,
    requests: usize,
    interval: Duration,
    delay: Duration,
    slice: Duration,
    dump: Option<std::path::PathBuf>,
) -> tokio::sync::oneshot::Receiver<anyhow::Result<Probed>> {
    let (done, result) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("probe".into()).spawn(move || {
        if !slice.is_zero()
            && let Err(error) = taskhost_bench::request_slice(slice)
        {
            eprintln!("the probe cannot ask for a {slice:?} slice: {error}");
        }
        let probed =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Into::into).and_then(
                |runtime| {
                    runtime.block_on(async {
                        tokio::time::sleep(delay).await;
                        probe_queues(&base, requests, interval, slice, dump).await
                    })
                },
            );
        let _ = done.send(probed);
    });
    if let Err(error) = spawned {
        // `done` went with the closure: the caller's receiver reports the probe as gone.
        eprintln!("cannot start the probe thread: {error}");
    }
    result
}

/// What [`probe_queues`] measured, in ms.
struct Probed {
    queues: Summary,
    health: Summary,
    /// How late a plain thread of the generator woke from 1 ms sleeps meanwhile: the floor any
    /// wake-up met on its cores.
    stalls: Summary,
    /// The same, for a thread at the probe's slice (when it has one of its own).
    slice_stalls: Option<Summary>,
}

/// `requests` GETs of `/api/v1/queues`, one every `interval`, on one keep-alive connection, each
/// paired with a `GET /healthz` (which touches no store).
async fn probe_queues(
    base: &str,
    requests: usize,
    interval: Duration,
    slice: Duration,
    dump: Option<std::path::PathBuf>,
) -> anyhow::Result<Probed> {
    let stalls = StallMeter::start();
    let slice_stalls = (!slice.is_zero()).then(|| StallMeter::with_slice(slice));
    let started = Instant::now();
    let mut log = String::new();
    let client =
        reqwest::Client::builder().pool_max_idle_per_host(1).timeout(Duration::from_secs(10)).build()?;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut queues, mut health) = (Vec::with_capacity(requests), Vec::with_capacity(requests));
    for i in 0..requests {
        tick.tick().await;
        // The first request of a pair finds the host's API thread asleep after the pause, the
        // second finds it awake: the two take turns going first.
        let mut pair = [("/api/v1/queues", &mut queues), ("/healthz", &mut health)];
        if i % 2 == 1 {
            pair.reverse();
        }
        for (path, samples) in pair {
            let sent = Instant::now();
            let response = client.get(format!("{base}{path}")).send().await?;
            let ok = response.status().is_success();
            let _ = response.bytes().await?;
            samples.push(sent.elapsed().as_secs_f64() * 1000.0);
            if !ok {
                bail!("GET {path} failed");
            }
            log += &format!(
                "{:.3},{path},{:.3}\n",
                (sent - started).as_secs_f64(),
                sent.elapsed().as_secs_f64() * 1000.0
            );
        }
    }
    if let Some(dump) = dump {
        std::fs::write(dump, log)?;
    }
    Ok(Probed {
        queues: Summary::of(&mut queues),
        health: Summary::of(&mut health),
        stalls: stalls.finish(),
        slice_stalls: slice_stalls.map(StallMeter::finish),
    })
}

async fn submit(http: &reqwest::Client, base: &str, body: Value) -> anyhow::Result<String> {
    let reply: Value = http.post(format!("{base}/api/v1/tasks")).json(&body).send().await?.json().await?;
    reply["id"].as_str().map(str::to_owned).with_context(|| format!("submit refused: {reply}"))
}

async fn task(http: &reqwest::Client, base: &str, id: &str) -> anyhow::Result<Value> {
    Ok(http.get(format!("{base}/api/v1/tasks/{id}")).send().await?.json().await?)
}

async fn wait_status(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    wanted: &[&str],
    deadline: Duration,
) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    loop {
        let t = task(http, base, id).await?;
        if wanted.iter().any(|w| t["status"] == *w) {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("task {id} is {} after {deadline:?}", t["status"]);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Watching, release_offset, watcher_plan};

    #[test]
    fn runs_released_over_a_long_span_are_out_of_step() {
        let interval = Duration::from_millis(500);
        let offsets: Vec<u128> =
            (0..10).map(|i| release_offset(i, 10, Duration::from_secs(5), interval).as_millis()).collect();
        assert_eq!(offsets, [0, 550, 1100, 1650, 2200, 2750, 3300, 3850, 4400, 4950]);
        let phases: std::collections::BTreeSet<u128> = offsets.iter().map(|o| o % 500).collect();
        assert_eq!(phases.len(), 10, "every run bursts at its own moment");
        // A span of one interval: evenly spread within it.
        assert_eq!(release_offset(5, 10, interval, interval).as_millis(), 250);
    }

    #[test]
    fn the_plan_spreads_run_watchers_evenly_and_mixes_in_the_dashboards() {
        let plan = watcher_plan(100, 7, 3, 2);
        assert_eq!(plan.len(), 105);
        for run in 0..7 {
            let on_run = plan.iter().filter(|w| **w == Watching::Run(run)).count();
            assert!((14..=15).contains(&on_run), "run {run}: {on_run}");
        }
        assert_eq!(plan.iter().filter(|w| **w == Watching::Queue).count(), 3);
        assert_eq!(plan.iter().filter(|w| **w == Watching::Events).count(), 2);
        // Not all at the start or the end.
        let first_dashboard = plan.iter().position(|w| !matches!(w, Watching::Run(_))).unwrap();
        assert!(first_dashboard > 0 && first_dashboard < 40, "{first_dashboard}");
    }
}
