//! `ws_load`: many WebSocket watchers on one host while a task streams events (issue 4).
//!
//! One `host` (embedded broker, `--concurrency 2`) runs two `hostile` tasks that sleep, which hold
//! both slots; a `cvd` run, paced to a steady `--samples-per-sec`, waits behind them. N watchers
//! open `/ws/tasks/{cvd}` while it waits (a quiet task): the host's resident memory before and
//! after, divided by N, is the memory of an idle watcher, and its CPU over a few quiet seconds is
//! the cost of keeping them. Then the sleepers are cancelled, the run starts, and every watcher
//! receives every event: delivery latency is the receipt time minus the event's `ts` (stamped by
//! the host's worker when it took the report from the plugin, before storing it). Meanwhile a
//! separate connection requests `GET /api/v1/queues` (and `GET /healthz`, which touches no store)
//! at a steady pace. The generator's own sockets use a 4 KiB read buffer (`--client-read-buffer`)
//! so that its CPU stays out of the host's way; it still shares the machine's cores.
//!
//! ```sh
//! cargo xtask plugins
//! cargo build --release -p taskhost --bin host && cargo build --release -p taskhost-bench
//! target/release/ws_load --watchers 10000
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use taskhost_bench::{
    CpuMeter, HostProcess, Summary, load_average, ms, nproc, parse_rfc3339_ms, rss_kib, unix_ms,
};
use tokio::sync::Semaphore;
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
    /// Watchers to open.
    #[arg(long, default_value_t = 10_000)]
    watchers: usize,
    /// Wall-clock length of the streaming run.
    #[arg(long, default_value_t = 60)]
    stream_secs: u64,
    /// Progress samples the cvd run reports per second (each is a plugin `progress_update`, and
    /// the host adds its own coalesced `progress_update`).
    #[arg(long, default_value_t = 2.0)]
    samples_per_sec: f64,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200)]
    connect_parallelism: usize,
    /// `GET /api/v1/queues` requests while the run streams.
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
    /// Write every (watcher, seq, latency ms) to this CSV file, the run's events to
    /// `<file>.events` and the `/queues` and `/healthz` samples to `<file>.probe`.
    #[arg(long)]
    dump: Option<std::path::PathBuf>,
    /// The host's `TASKHOST_LOG`.
    #[arg(long, default_value = "info")]
    host_log: String,
}

/// What one watcher saw.
#[derive(Default)]
struct WatcherReport {
    connected: bool,
    /// Sequence id and receipt minus `ts` of every live event, ms.
    latencies_ms: Vec<(u32, f32)>,
    /// The last sequence id received.
    last_seq: u64,
    gaps: u64,
    received: u64,
    finished: bool,
    close_code: Option<u16>,
    error: Option<String>,
}

/// Fd headroom for the generator itself beside its watchers.
const OWN_FDS: u64 = 200;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
    let load_before = load_average();
    let started = Instant::now();
    println!(
        "ws_load: {watchers} watchers, nproc {}, load average {load_before}, open files limit {soft}/{hard}",
        nproc()
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
    let host_args: Vec<String> = [
        "--plugins",
        &plugins,
        "--data-dir",
        &dir.path().join("data").display().to_string(),
        "--concurrency",
        "2",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let host = HostProcess::start(&host_bin, &host_args, &dir.path().join("host.log"), &args.host_log)?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    host.wait_ready(&http).await?;
    let pid = host.pid();
    let me = std::process::id();

    // GET /queues on a quiet host, for comparison.
    let (quiet_queues, quiet_health) =
        probe_on_own_thread(host.base.clone(), 300, Duration::from_millis(5), Duration::ZERO, None).await??;

    // Two sleepers hold both slots; the streaming run waits behind them.
    let mut sleepers = Vec::new();
    for _ in 0..2 {
        sleepers.push(
            submit(&http, &host.base, json!({"plugin": "hostile", "input": {"mode": "sleep", "ms": 58_000}}))
                .await?,
        );
    }
    for id in &sleepers {
        wait_status(&http, &host.base, id, &["running"], Duration::from_secs(30)).await?;
    }
    let report_interval_sec = 10.0;
    let speedup = args.samples_per_sec * report_interval_sec;
    let duration_sec = speedup * args.stream_secs as f64;
    let stream_input = json!({
        "recipe": {"film_material": "Si3N4", "temperature_c": 800.0, "pressure_torr": 0.5,
                   "precursor_flow_sccm": 80.0, "carrier_gas_flow_sccm": 500.0, "duration_sec": duration_sec},
        "simulation": {"speedup": speedup, "report_interval_sec": report_interval_sec},
    });
    let stream_id = submit(&http, &host.base, json!({"plugin": "cvd", "input": stream_input})).await?;
    let status = task(&http, &host.base, &stream_id).await?["status"].clone();
    if status != "queued" {
        bail!("the streaming task should wait behind the sleepers but is {status}");
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(pid)?;
    let own_rss_before = rss_kib(me)?;

    // Open the watchers.
    let url = host.ws(&format!("/ws/tasks/{stream_id}"));
    let gate = Arc::new(Semaphore::new(args.connect_parallelism));
    let connected = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let connect_started = Instant::now();
    let mut handles = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        handles.push(tokio::spawn(watch(
            url.clone(),
            (args.client_read_buffer > 0).then_some(args.client_read_buffer),
            gate.clone(),
            connected.clone(),
            failed.clone(),
        )));
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
    let still_queued = task(&http, &host.base, &stream_id).await?["status"] == "queued";
    if !still_queued {
        notes.push(
            "the streaming run started before the idle measurement ended (sleepers ended early)".into(),
        );
    }

    // Release the slots: the run starts and streams to every watcher.
    let load_stream_start = load_average();
    let stream_cpu = CpuMeter::start(&[pid, me]);
    let stream_cpu_started = Instant::now();
    for id in &sleepers {
        http.post(format!("{}/api/v1/tasks/{id}/cancel", host.base)).send().await?;
    }
    let interval =
        Duration::from_secs_f64(args.stream_secs as f64 * 0.8 / args.queues_requests.max(1) as f64);
    let probe = probe_on_own_thread(
        host.base.clone(),
        args.queues_requests,
        interval,
        Duration::from_secs(2),
        args.dump.as_ref().map(|d| d.with_extension("probe")),
    );
    let mut reports = Vec::with_capacity(watchers);
    let wait = Duration::from_secs(args.stream_secs + 90);
    for handle in handles {
        let report = tokio::time::timeout(wait, handle).await.context("a watcher did not finish")??;
        reports.push(report);
    }
    let stream_cores = stream_cpu.cores();
    let stream_cpu_secs = stream_cpu_started.elapsed().as_secs_f64();
    let (busy_queues, busy_health) = probe.await??;
    let load_after = load_average();

    let final_task = task(&http, &host.base, &stream_id).await?;
    let events: Value = http
        .get(format!("{}/api/v1/tasks/{stream_id}/events?limit=10000", host.base))
        .send()
        .await?
        .json()
        .await?;
    let stored_events = events["events"].as_array().map_or(0, Vec::len);
    let stream_secs = match (
        final_task["started_at"].as_str().and_then(parse_rfc3339_ms),
        final_task["finished_at"].as_str().and_then(parse_rfc3339_ms),
    ) {
        (Some(a), Some(b)) => (b - a) / 1000.0,
        _ => f64::NAN,
    };

    // Everything measured: summarise.
    let mut latencies: Vec<f64> = Vec::new();
    let (mut complete, mut gaps, mut lagged, mut errors, mut received) = (0, 0, 0, 0, 0u64);
    let mut first_error = None;
    for r in &reports {
        latencies.extend(r.latencies_ms.iter().map(|(_, l)| f64::from(*l)));
        received += r.received;
        gaps += r.gaps;
        if r.finished && r.last_seq == stored_events as u64 && r.gaps == 0 {
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
    if let Some(path) = &args.dump {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for (w, r) in reports.iter().enumerate() {
            for (seq, l) in &r.latencies_ms {
                writeln!(out, "{w},{seq},{l}")?;
            }
        }
        let types: Vec<String> = events["events"]
            .as_array()
            .map(|a| a.iter().map(|e| format!("{},{},{}", e["seq"], e["event_type"], e["ts"])).collect())
            .unwrap_or_default();
        std::fs::write(path.with_extension("events"), types.join("\n"))?;
    }
    let connected_watchers = reports.iter().filter(|r| r.connected).count();
    // Per event: the first watcher's latency (store and publish, plus one send) and the spread to
    // the last watcher (the fan-out itself).
    let mut per_event: std::collections::HashMap<u32, (f64, f64)> = std::collections::HashMap::new();
    for r in &reports {
        for (seq, l) in &r.latencies_ms {
            let l = f64::from(*l);
            let entry = per_event.entry(*seq).or_insert((l, l));
            entry.0 = entry.0.min(l);
            entry.1 = entry.1.max(l);
        }
    }
    let first = Summary::of(&mut per_event.values().map(|(first, _)| *first).collect::<Vec<_>>());
    let spread = Summary::of(&mut per_event.values().map(|(first, last)| last - first).collect::<Vec<_>>());
    let over_50 = latencies.iter().filter(|l| **l > 50.0).count();
    let delivery = Summary::of(&mut latencies);
    let per_watcher_kib = (rss_after as f64 - rss_before as f64) / open.max(1) as f64;
    let events_per_sec = stored_events as f64 / stream_secs;

    println!();
    println!("## WebSocket fan-out (`ws_load`)");
    println!();
    println!("| measure | value | target (issue 4) |");
    println!("| --- | --- | --- |");
    println!("| watchers connected | {connected_watchers} of {watchers} (in {connect_secs:.1} s) | 10,000 |");
    println!(
        "| events of the run | {stored_events} in {stream_secs:.1} s ({events_per_sec:.1}/s to every watcher; {:.0} messages/s in all) | a few per second |",
        events_per_sec * open as f64
    );
    println!(
        "| delivery latency p50 / p99 / max | {} / {} / {} ms ({} samples, {:.2} % over 50 ms) | p99 < 50 ms |",
        ms(delivery.p50),
        ms(delivery.p99),
        ms(delivery.max),
        delivery.count,
        100.0 * over_50 as f64 / delivery.count.max(1) as f64
    );
    println!(
        "| per event: first watcher's latency p50 / p99 / max | {} / {} / {} ms | |",
        ms(first.p50),
        ms(first.p99),
        ms(first.max)
    );
    println!(
        "| per event: last minus first watcher p50 / p99 / max | {} / {} / {} ms | |",
        ms(spread.p50),
        ms(spread.p99),
        ms(spread.max)
    );
    println!("| messages received by all watchers | {received} | |");
    println!("| watchers that got every event, in order, then the close | {complete} | all |");
    println!("| gaps / closed as lagged (4008) / errors | {gaps} / {lagged} / {errors} | 0 |");
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
        stream_cores[0] * stream_cpu_secs * 1e6 / received.max(1) as f64,
        stream_cores[1] * stream_cpu_secs * 1e6 / received.max(1) as f64
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
        "| `GET /healthz` (no store), right after each, quiet / streaming p99 | {} / {} ms (max {} / {}) | |",
        ms(quiet_health.p99),
        ms(busy_health.p99),
        ms(quiet_health.max),
        ms(busy_health.max)
    );
    println!(
        "| load average: start / stream start / end | {load_before} / {load_stream_start} / {load_after} (nproc {}) | |",
        nproc()
    );
    println!("| total wall time | {:.0} s | |", started.elapsed().as_secs_f64());
    println!();
    println!(
        "Method: one `host` (embedded broker, `--concurrency 2`, `TASKHOST_LOG={}`), the generator on the same \
         machine (one tokio runtime, {} worker threads). Two `hostile` sleepers hold the slots while {watchers} \
         watchers open `/ws/tasks/{{id}}` of a queued `cvd` run ({} at a time); memory per idle watcher = \
         (VmRSS after {} s settle − VmRSS before) / watchers. The sleepers are cancelled, the run streams \
         {:.0} simulated s at {speedup}x (one sample every {report_interval_sec} simulated s); delivery latency = \
         receipt time − the event's `ts` (whole ms, so up to 1 ms high), live events only. `GET /api/v1/queues`: \
         {} requests one after another on one keep-alive connection, one every {:.0} ms, from 2 s into the run, each followed by a `GET /healthz`, from a thread and runtime of their own.",
        args.host_log,
        nproc(),
        args.connect_parallelism,
        args.settle_secs,
        duration_sec,
        args.queues_requests,
        interval.as_secs_f64() * 1000.0
    );
    for note in &notes {
        println!("Note: {note}.");
    }
    if let Some(e) = first_error {
        println!("First watcher error: {e}");
    }
    if final_task["status"] != "succeeded" {
        println!("The streaming run ended {}: {}", final_task["status"], final_task["error"]);
    }
    drop(host);
    Ok(())
}

/// One watcher: connects (at most `gate` at once), then reads until the server closes.
async fn watch(
    url: String,
    read_buffer: Option<usize>,
    gate: Arc<Semaphore>,
    connected: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
) -> WatcherReport {
    let mut report = WatcherReport::default();
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
    while let Some(message) = socket.next().await {
        match message {
            Ok(Message::Text(text)) => {
                let received_at = unix_ms();
                let Ok(event) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                report.received += 1;
                let seq = event["seq"].as_u64().unwrap_or(0);
                if seq != report.last_seq + 1 {
                    report.gaps += 1;
                }
                report.last_seq = seq;
                if let Some(ts) = event["ts"].as_str().and_then(parse_rfc3339_ms)
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
    dump: Option<std::path::PathBuf>,
) -> tokio::sync::oneshot::Receiver<anyhow::Result<(Summary, Summary)>> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let probed =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Into::into).and_then(
                |runtime| {
                    runtime.block_on(async {
                        tokio::time::sleep(delay).await;
                        probe_queues(&base, requests, interval, dump).await
                    })
                },
            );
        let _ = done.send(probed);
    });
    result
}

/// `requests` GETs of `/api/v1/queues`, one every `interval`, on one keep-alive connection, each
/// followed by a `GET /healthz` (which touches no store): the first summary is `/queues`, the
/// second `/healthz`.
async fn probe_queues(
    base: &str,
    requests: usize,
    interval: Duration,
    dump: Option<std::path::PathBuf>,
) -> anyhow::Result<(Summary, Summary)> {
    let started = Instant::now();
    let mut log = String::new();
    let client =
        reqwest::Client::builder().pool_max_idle_per_host(1).timeout(Duration::from_secs(10)).build()?;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut queues, mut health) = (Vec::with_capacity(requests), Vec::with_capacity(requests));
    for _ in 0..requests {
        tick.tick().await;
        for (path, samples) in [("/api/v1/queues", &mut queues), ("/healthz", &mut health)] {
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
    Ok((Summary::of(&mut queues), Summary::of(&mut health)))
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
