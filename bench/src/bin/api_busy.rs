//! `api_busy`: REST latency while every slot runs CPU-bound WebAssembly (issue 4).
//!
//! A host runs compute-heavy plugins (a CVD run, an SCF loop) most of its life, with all its slots
//! busy; its API must still answer a dashboard at once. This starts one host on the embedded
//! broker with `--concurrency` slots, and times `GET /healthz` (no store) and
//! `GET /api/v1/queues` (the counts the dashboard polls), one request at a time on one keep-alive
//! connection, every `--interval-ms`:
//! 1. on the idle host;
//! 2. while `--concurrency` `hostile` tasks in `endless_loop` mode (pure computation, no host call)
//!    hold every slot.
//!
//! The requests come from this process at the normal priority, on the same cores as the loops.
//!
//! ```sh
//! cargo xtask plugins
//! cargo build --release -p taskhost --bin host && cargo build --release -p taskhost-bench
//! target/release/api_busy
//! ```

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use taskhost_bench::{HostProcess, StallMeter, Summary, load_average, ms, nproc, repo_root};

#[derive(Parser, Debug)]
#[command(about = "REST latency on a host whose slots all run CPU-bound WebAssembly")]
struct Args {
    /// The host binary (default: `host` beside this executable).
    #[arg(long)]
    host_bin: Option<std::path::PathBuf>,
    /// More arguments for `host run` (repeat).
    #[arg(long, allow_hyphen_values = true)]
    host_arg: Vec<String>,
    /// Slots, all of them busy in phase 2 (default: one per core).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Requests per path and phase.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Pause between one pair of requests and the next.
    #[arg(long, default_value_t = 5)]
    interval_ms: u64,
    /// Time slice, µs, that this process's requesting thread asks the kernel for (after the host
    /// started, which so keeps its own); 0 for the default. A short one lets its wake-ups
    /// preempt the loops, as if the client were on another machine.
    #[arg(long, default_value_t = 0)]
    probe_slice_us: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = repo_root();
    let plugin = root.join("tests/fixtures/hostile");
    if !plugin.join("hostile.wasm").is_file() {
        bail!("{} is missing: run `cargo xtask plugins` first", plugin.join("hostile.wasm").display());
    }
    let binary = taskhost_bench::host_binary(args.host_bin.clone())?;
    let slots = args.concurrency.unwrap_or_else(nproc).max(1);
    let work = tempfile::tempdir()?;
    let mut host_args = vec![
        "--plugins".to_owned(),
        plugin.display().to_string(),
        "--data-dir".to_owned(),
        work.path().join("data").display().to_string(),
        "--concurrency".to_owned(),
        slots.to_string(),
    ];
    host_args.extend(taskhost_bench::compile_cache_args());
    host_args.extend(args.host_arg.iter().cloned());
    let host = HostProcess::start(&binary, &host_args, &work.path().join("host.log"), "warn")?;
    let http =
        reqwest::Client::builder().pool_max_idle_per_host(1).timeout(Duration::from_secs(10)).build()?;
    host.wait_ready(&http).await?;
    let slice = Duration::from_micros(args.probe_slice_us);
    if !slice.is_zero() {
        taskhost_bench::request_slice(slice).context("--probe-slice-us")?;
    }
    let interval = Duration::from_millis(args.interval_ms);

    let idle = probe(&http, &host.base, args.requests, interval).await?;

    let mut loops = Vec::with_capacity(slots);
    for _ in 0..slots {
        let created: Value = http
            .post(format!("{}/api/v1/tasks", host.base))
            .json(&json!({"plugin": "hostile", "input": {"mode": "endless_loop"}}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        loops.push(created["id"].as_str().context("a task id in the submit reply")?.to_owned());
    }
    wait_until_running(&http, &host.base, slots).await?;
    let load_before = load_average();
    let stalls = StallMeter::start();
    let slice_stalls = (!slice.is_zero()).then(|| StallMeter::with_slice(slice));
    let busy = probe(&http, &host.base, args.requests, interval).await?;
    let stalls = stalls.finish();
    let slice_stalls = slice_stalls.map(StallMeter::finish);
    let load_after = load_average();
    // Every loop must still be running, or the second phase did not measure what it says.
    let still = running(&http, &host.base).await?;
    for id in &loops {
        let _ = http.post(format!("{}/api/v1/tasks/{id}/cancel", host.base)).send().await;
    }
    if still < slots {
        bail!("only {still} of {slots} loops were still running at the end of the busy phase");
    }

    println!(
        "| {} slots, `{}` | idle host p50 / p99 / max | all slots in CPU-bound wasm p50 / p99 / max |",
        slots,
        binary.display()
    );
    println!("| --- | --- | --- |");
    for (path, i) in [("GET /healthz", 0), ("GET /api/v1/queues", 1)] {
        println!("| `{path}` | {} | {} |", row(&idle[i]), row(&busy[i]));
    }
    println!(
        "| a plain thread of this process: 1 ms sleeps late by (the floor any wake-up meets) | | {} |",
        row(&stalls)
    );
    if let Some(late) = slice_stalls {
        println!(
            "| the same, a thread at the requests' {} µs slice | | {} |",
            args.probe_slice_us,
            row(&late)
        );
    }
    println!(
        "\n{} requests per path and phase, one every {} ms, one keep-alive connection; load average {load_before} → {load_after}.",
        args.requests, args.interval_ms
    );
    Ok(())
}

fn row(summary: &Summary) -> String {
    format!("{} / {} / {} ms", ms(summary.p50), ms(summary.p99), ms(summary.max))
}

/// `requests` pairs of `GET /healthz` and `GET /api/v1/queues`; their latencies in ms.
async fn probe(
    http: &reqwest::Client,
    base: &str,
    requests: usize,
    interval: Duration,
) -> anyhow::Result<[Summary; 2]> {
    let mut samples = [Vec::with_capacity(requests), Vec::with_capacity(requests)];
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..requests {
        tick.tick().await;
        for (path, samples) in ["/healthz", "/api/v1/queues"].into_iter().zip(samples.iter_mut()) {
            let sent = Instant::now();
            let response = http.get(format!("{base}{path}")).send().await?;
            let status = response.status();
            let _ = response.bytes().await?;
            if !status.is_success() {
                bail!("GET {path}: {status}");
            }
            samples.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let [mut health, mut queues] = samples;
    Ok([Summary::of(&mut health), Summary::of(&mut queues)])
}

/// Tasks running on the host, from `GET /api/v1/queues`.
async fn running(http: &reqwest::Client, base: &str) -> anyhow::Result<usize> {
    let queues: Value =
        http.get(format!("{base}/api/v1/queues")).send().await?.error_for_status()?.json().await?;
    let queues = queues["queues"].as_array().context("`queues` in the reply")?;
    Ok(queues.iter().filter_map(|q| q["running"].as_u64()).sum::<u64>() as usize)
}

/// Waits (at most 30 s) until `slots` tasks run.
async fn wait_until_running(http: &reqwest::Client, base: &str, slots: usize) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if running(http, base).await? >= slots {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("the {slots} loops did not all start within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
