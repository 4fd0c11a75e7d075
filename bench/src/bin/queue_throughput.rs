//! `queue_throughput`: no-op tasks end to end through the API (issue 3).
//!
//! For each setup (the embedded broker with one host; Redis with one host; Redis with two hosts),
//! on a fresh broker:
//! 1. **Throughput**: `--tasks` no-op tasks (`kernels` with input `{}`) submitted through the API by
//!    `--clients` concurrent HTTP clients (spread over the hosts; `--batch N` sends N per request
//!    through `POST /api/v1/tasks/batch`), timed from the first submit until
//!    `GET /api/v1/queues` shows nothing pending, running or scheduled; every outcome is counted
//!    from the hosts' `/metrics`. Meanwhile: CPU of each process from `/proc/<pid>/stat`, and, on
//!    Redis, `INFO commandstats` (which counts the commands scripts run too).
//! 2. **Latency at half load**: submissions paced at half the measured throughput for
//!    `--latency-secs`, open loop; submit-to-start and submit-to-outcome from each task's
//!    `created_at`, `started_at`, `finished_at` (RFC 3339, whole ms).
//! 3. **Round trips** (Redis): `MONITOR` over an idle window and over a window with
//!    `--monitor-tasks` tasks; commands sent by clients (not by scripts) per task, by command.
//!
//! Then, against the same `redis-server`, the floor: `redis-benchmark` on SET, LPUSH and XADD (50
//! clients; one client; pipelined).
//!
//! ```sh
//! cargo xtask plugins
//! cargo build --release -p taskhost --bin host && cargo build --release -p taskhost-bench
//! target/release/queue_throughput
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::Value;
use taskhost_bench::{CpuMeter, HostProcess, StallMeter, Summary, load_average, ms, nproc, parse_rfc3339_ms};
use taskhost_e2e::redis::RedisServer;
use tokio::sync::Semaphore;

#[derive(Parser, Debug, Clone)]
#[command(about = "End-to-end throughput and latency of no-op tasks, embedded and on Redis")]
struct Args {
    /// The host binary (default: `host` beside this executable).
    #[arg(long)]
    host_bin: Option<PathBuf>,
    /// Setups to run, from `embedded`, `redis`, `redis-2hosts`.
    #[arg(long, value_delimiter = ',', default_value = "embedded,redis,redis-2hosts")]
    setups: Vec<String>,
    /// Tasks in the throughput phase on Redis.
    #[arg(long, default_value_t = 30_000)]
    tasks: usize,
    /// Tasks in the throughput phase on the embedded broker (slower: fewer keep the run short).
    #[arg(long, default_value_t = 3_000)]
    embedded_tasks: usize,
    /// Concurrent HTTP clients submitting.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// `--concurrency` of each host (worker slots).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Length of the half-load latency phase.
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,
    /// Tasks in the `MONITOR` window (Redis setups).
    #[arg(long, default_value_t = 200)]
    monitor_tasks: usize,
    /// Tasks submitted (and waited for) before anything is measured.
    #[arg(long, default_value_t = 500)]
    warmup: usize,
    /// Skip the redis-benchmark floor.
    #[arg(long)]
    no_floor: bool,
    /// Write each half-load task's `created_at,started_at,finished_at` (ms) to `PATH.<setup>.csv`.
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Tasks per request in the throughput phase and the warm-up: 1 POSTs each task alone
    /// (`POST /api/v1/tasks`), more sends them in batches (`POST /api/v1/tasks/batch`).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// The hosts' `TASKHOST_LOG`.
    #[arg(long, default_value = "info")]
    host_log: String,
}

/// Everything measured for one setup.
struct SetupReport {
    name: String,
    hosts: usize,
    tasks: usize,
    submit_secs: f64,
    total_secs: f64,
    succeeded: f64,
    submit_latency: Summary,
    cpu: Vec<(String, f64)>,
    commands_per_task: Option<CommandStats>,
    half_rate: f64,
    half_tasks: usize,
    half_behind: usize,
    to_start: Summary,
    to_outcome: Summary,
    /// Lateness of a thread's 1 ms sleeps in the generator during the half-load phase.
    stalls: Summary,
    /// Redis commands over 1 ms during the half-load phase: how many, the longest (ms).
    slow_commands: Option<(usize, f64)>,
    round_trips: Option<RoundTrips>,
    load: (String, String),
}

/// `INFO commandstats` over the throughput phase, per task.
struct CommandStats {
    /// (command, calls per task, µs of Redis time per task), busiest first.
    by_command: Vec<(String, f64, f64)>,
    calls: f64,
    /// µs per task inside `EVALSHA` (the scripts' whole runs, their inner commands included).
    script_usec: f64,
}

/// Client commands seen by `MONITOR`, per task, beyond an idle window.
struct RoundTrips {
    /// (command, per task).
    client: Vec<(String, f64)>,
    client_total: f64,
    /// Commands run inside scripts, per task.
    scripted_total: f64,
    /// (script, calls per task, commands it ran per call), busiest first.
    scripts: Vec<(String, f64, f64)>,
}

/// What `MONITOR` saw in one window.
#[derive(Default)]
struct Monitored {
    /// Client commands by name (`EVALSHA` included).
    client: BTreeMap<String, u64>,
    /// Per script (by what it runs): calls and the commands run inside.
    scripts: BTreeMap<String, (u64, u64)>,
}

impl Monitored {
    fn scripted(&self) -> u64 {
        self.scripts.values().map(|(_, inner)| inner).sum()
    }
}

const NO_OP: &str = r#"{"plugin":"kernels","input":{}}"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let host_bin = taskhost_bench::host_binary(args.host_bin.clone())?;
    taskhost_bench::raise_open_files_limit()?;
    let root = taskhost_bench::repo_root();
    if !root.join("tests/fixtures/kernels/kernels.wasm").is_file() {
        bail!("tests/fixtures/kernels/kernels.wasm is missing: run `cargo xtask plugins` first");
    }
    let started = Instant::now();
    println!(
        "queue_throughput: nproc {}, load average {}, setups {:?}, {} tasks, {} clients, --concurrency {}, --batch {}",
        nproc(),
        load_average(),
        args.setups,
        args.tasks,
        args.clients,
        args.concurrency,
        args.batch
    );
    let redis = args.setups.iter().any(|s| s.starts_with("redis")).then(RedisServer::start);
    let mut reports = Vec::new();
    for setup in &args.setups {
        let hosts = match setup.as_str() {
            "embedded" | "redis" => 1,
            "redis-2hosts" => 2,
            other => bail!("unknown setup {other:?}"),
        };
        let redis = if setup.starts_with("redis") { redis.as_ref() } else { None };
        if let Some(redis) = redis {
            redis.cli(&["FLUSHALL"]);
        }
        println!("-- {setup}");
        reports.push(run_setup(&args, &host_bin, setup, hosts, redis).await?);
    }
    let floor = match (&redis, args.no_floor) {
        (Some(redis), false) => Some(redis_floor(redis.port())?),
        _ => None,
    };
    print_report(&args, &reports, floor.as_ref(), started.elapsed());
    Ok(())
}

async fn run_setup(
    args: &Args,
    host_bin: &Path,
    name: &str,
    host_count: usize,
    redis: Option<&RedisServer>,
) -> anyhow::Result<SetupReport> {
    let dir = tempfile::tempdir()?;
    let plugins = taskhost_bench::repo_root().join("tests/fixtures").display().to_string();
    let mut hosts = Vec::new();
    for i in 0..host_count {
        let mut host_args = vec![
            "--plugins".to_owned(),
            plugins.clone(),
            "--data-dir".to_owned(),
            dir.path().join(format!("data-{i}")).display().to_string(),
            "--concurrency".to_owned(),
            args.concurrency.to_string(),
        ];
        host_args.extend(taskhost_bench::compile_cache_args());
        if let Some(redis) = redis {
            host_args.extend(["--redis".to_owned(), redis.url()]);
        }
        hosts.push(HostProcess::start(
            host_bin,
            &host_args,
            &dir.path().join(format!("host-{i}.log")),
            &args.host_log,
        )?);
    }
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(256).build()?;
    for host in &hosts {
        host.wait_ready(&http).await?;
    }
    let bases: Vec<String> = hosts.iter().map(|h| h.base.clone()).collect();
    let redis_pid = redis.and_then(|r| {
        r.cli(&["INFO", "server"])
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse::<u32>().ok())
    });

    // Warm-up: connections, caches, the compiled plugin.
    submit_all(&http, &bases, args.warmup, args.clients, args.batch).await?;
    wait_drained(&http, &bases[0], Duration::from_secs(60)).await?;

    // 1. Throughput.
    let load_before = load_average();
    let succeeded_before = succeeded(&http, &bases).await?;
    if let Some(redis) = redis {
        redis.cli(&["CONFIG", "RESETSTAT"]);
    }
    let mut pids: Vec<u32> = hosts.iter().map(HostProcess::pid).collect();
    pids.extend(redis_pid);
    pids.push(std::process::id());
    let cpu = CpuMeter::start(&pids);
    let t0 = Instant::now();
    let tasks = if redis.is_some() { args.tasks } else { args.embedded_tasks };
    let mut submit_latencies = submit_all(&http, &bases, tasks, args.clients, args.batch).await?;
    let submit_secs = t0.elapsed().as_secs_f64();
    wait_drained(&http, &bases[0], Duration::from_secs(120)).await?;
    let total_secs = t0.elapsed().as_secs_f64();
    let cores = cpu.cores();
    let commands_per_task = redis.map(|r| command_stats(&r.cli(&["INFO", "commandstats"]), tasks));
    let succeeded = succeeded(&http, &bases).await? - succeeded_before;
    let load_after = load_average();
    let mut cpu_names: Vec<String> = (0..host_count).map(|i| format!("host {}", i + 1)).collect();
    if redis_pid.is_some() {
        cpu_names.push("redis-server".into());
    }
    cpu_names.push("generator".into());
    let throughput = tasks as f64 / total_secs;
    println!("   {throughput:.0} tasks/s ({tasks} tasks in {total_secs:.2} s)");

    // 2. Latency at half the measured throughput.
    let half_rate = (throughput / 2.0).max(10.0);
    if let Some(redis) = redis {
        redis.cli(&["CONFIG", "SET", "slowlog-log-slower-than", "1000", "slowlog-max-len", "100000"]);
        redis.cli(&["SLOWLOG", "RESET"]);
    }
    let stalls = StallMeter::start();
    let (ids, behind) =
        submit_paced(&http, &bases, half_rate, Duration::from_secs(args.latency_secs)).await?;
    wait_drained(&http, &bases[0], Duration::from_secs(120)).await?;
    let stalls = stalls.finish();
    let slow_commands = redis.map(slow_commands);
    let (mut to_start, mut to_outcome) = (Vec::new(), Vec::new());
    let mut dump = String::new();
    let records = fetch_tasks(&http, &bases[0], &ids).await?;
    for task in &records {
        let at = |field: &str| task[field].as_str().and_then(parse_rfc3339_ms);
        if let (Some(created), Some(started), Some(finished)) =
            (at("created_at"), at("started_at"), at("finished_at"))
        {
            to_start.push(started - created);
            to_outcome.push(finished - created);
            dump += &format!("{created},{started},{finished}\n");
        }
    }
    if let Some(path) = &args.dump {
        std::fs::write(format!("{}.{name}.csv", path.display()), dump)?;
    }
    println!("   half load: {half_rate:.0} tasks/s for {} s, {} tasks", args.latency_secs, ids.len());

    // 3. Round trips per task.
    let round_trips = match redis {
        Some(redis) => Some(count_round_trips(redis, &http, &bases, args.monitor_tasks, dir.path()).await?),
        None => None,
    };
    drop(hosts);
    Ok(SetupReport {
        name: name.to_owned(),
        hosts: host_count,
        tasks,
        submit_secs,
        total_secs,
        succeeded,
        submit_latency: Summary::of(&mut submit_latencies),
        cpu: cpu_names.into_iter().zip(cores).collect(),
        commands_per_task,
        half_rate,
        half_tasks: ids.len(),
        half_behind: behind,
        to_start: Summary::of(&mut to_start),
        to_outcome: Summary::of(&mut to_outcome),
        stalls,
        slow_commands,
        round_trips,
        load: (load_before, load_after),
    })
}

/// Submits `count` no-op tasks with `clients` concurrent clients, round-robin over `bases`, `batch`
/// per request; returns each request's round trip in ms.
async fn submit_all(
    http: &reqwest::Client,
    bases: &[String],
    count: usize,
    clients: usize,
    batch: usize,
) -> anyhow::Result<Vec<f64>> {
    let batch = batch.max(1);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (http, bases, next) = (http.clone(), bases.to_vec(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(batch, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let sent = Instant::now();
                let base = &bases[(i / batch) % bases.len()];
                if batch == 1 {
                    submit(&http, base).await?;
                } else {
                    submit_batch(&http, base, batch.min(count - i)).await?;
                }
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut all = Vec::with_capacity(count / batch + 1);
    for worker in workers {
        all.extend(worker.await??);
    }
    Ok(all)
}

/// Submits `n` no-op tasks in one `POST /api/v1/tasks/batch`; fails unless every one was created.
async fn submit_batch(http: &reqwest::Client, base: &str, n: usize) -> anyhow::Result<()> {
    let body = format!("{{\"tasks\":[{}]}}", vec![NO_OP; n].join(","));
    let (status, reply) = post_json(http, &format!("{base}/api/v1/tasks/batch"), body).await?;
    if status.as_u16() != 200 || reply["created"].as_u64() != Some(n as u64) {
        bail!("batch submit answered {status}: {reply}");
    }
    Ok(())
}

async fn submit(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let (status, reply) = post_json(http, &format!("{base}/api/v1/tasks"), NO_OP.to_owned()).await?;
    if status.as_u16() != 202 {
        bail!("submit answered {status}: {reply}");
    }
    reply["id"].as_str().map(str::to_owned).context("no id in the reply")
}

/// POSTs a JSON `body`: the status and the JSON reply.
async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: String,
) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let response = http.post(url).header("content-type", "application/json").body(body).send().await?;
    let status = response.status();
    Ok((status, response.json().await?))
}

/// Submits at `rate` per second for `length`, open loop (each submit on its own task, at most
/// 512 in flight); returns the ids and how many submits found no free slot at their due time.
async fn submit_paced(
    http: &reqwest::Client,
    bases: &[String],
    rate: f64,
    length: Duration,
) -> anyhow::Result<(Vec<String>, usize)> {
    let in_flight = Arc::new(Semaphore::new(512));
    let started = Instant::now();
    let total = (rate * length.as_secs_f64()) as usize;
    let mut handles = Vec::with_capacity(total);
    let mut behind = 0;
    while handles.len() < total {
        let due = ((started.elapsed().as_secs_f64() * rate) as usize).min(total);
        while handles.len() < due {
            let permit = match in_flight.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    behind += 1;
                    in_flight.clone().acquire_owned().await?
                }
            };
            let (http, base) = (http.clone(), bases[handles.len() % bases.len()].clone());
            handles.push(tokio::spawn(async move {
                let id = submit(&http, &base).await;
                drop(permit);
                id
            }));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut ids = Vec::with_capacity(total);
    for handle in handles {
        ids.push(handle.await??);
    }
    Ok((ids, behind))
}

/// Waits until the queues hold nothing pending, running or scheduled.
async fn wait_drained(http: &reqwest::Client, base: &str, deadline: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    loop {
        let reply: Value = http.get(format!("{base}/api/v1/queues")).send().await?.json().await?;
        let left: u64 = reply["queues"]
            .as_array()
            .map(|qs| {
                qs.iter()
                    .map(|q| {
                        ["pending", "running", "scheduled"]
                            .iter()
                            .map(|f| q[*f].as_u64().unwrap_or(0))
                            .sum::<u64>()
                    })
                    .sum()
            })
            .unwrap_or(u64::MAX);
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("{left} tasks still waiting or running after {deadline:?}: {reply}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Succeeded outcomes so far, summed over the hosts' `/metrics`.
async fn succeeded(http: &reqwest::Client, bases: &[String]) -> anyhow::Result<f64> {
    let mut sum = 0.0;
    for base in bases {
        let text = http.get(format!("{base}/metrics")).send().await?.text().await?;
        sum += text
            .lines()
            .filter(|l| {
                l.starts_with("taskhost_tasks_finished_total{") && l.contains("outcome=\"succeeded\"")
            })
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum::<f64>();
    }
    Ok(sum)
}

/// `GET /api/v1/tasks/{id}` for every id, 32 at a time.
async fn fetch_tasks(http: &reqwest::Client, base: &str, ids: &[String]) -> anyhow::Result<Vec<Value>> {
    use futures::StreamExt;
    let fetched: Vec<anyhow::Result<Value>> =
        futures::stream::iter(ids.iter().cloned())
            .map(|id| {
                let (http, base) = (http.clone(), base.to_owned());
                async move {
                    Ok(http.get(format!("{base}/api/v1/tasks/{id}")).send().await?.json::<Value>().await?)
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
    fetched.into_iter().collect()
}

/// Entries of Redis's slow log (commands over `slowlog-log-slower-than`): how many, and the
/// longest in ms.
fn slow_commands(redis: &RedisServer) -> (usize, f64) {
    const LONGEST: &str = "local m = 0 for _, e in ipairs(redis.call('SLOWLOG', 'GET', -1)) do \
                           if e[3] > m then m = e[3] end end return m";
    let count = redis.cli(&["SLOWLOG", "LEN"]).trim().parse().unwrap_or(0);
    let longest_us: f64 = redis.cli(&["EVAL", LONGEST, "0"]).trim().parse().unwrap_or(f64::NAN);
    (count, longest_us / 1000.0)
}

/// `INFO commandstats` divided by `tasks`.
fn command_stats(info: &str, tasks: usize) -> CommandStats {
    let mut by_command = Vec::new();
    for line in info.lines() {
        let Some((name, rest)) = line.trim().strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else {
            continue;
        };
        let field = |key: &str| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        by_command.push((name.to_uppercase(), field("calls=") / tasks as f64, field("usec=") / tasks as f64));
    }
    by_command.sort_by(|a, b| b.2.total_cmp(&a.2));
    CommandStats {
        calls: by_command.iter().map(|c| c.1).sum(),
        script_usec: by_command.iter().filter(|c| c.0 == "EVALSHA").map(|c| c.2).sum(),
        by_command,
    }
}

/// Client and scripted commands per task, from `MONITOR` over an idle window and over a window in
/// which `tasks` tasks run (same length).
async fn count_round_trips(
    redis: &RedisServer,
    http: &reqwest::Client,
    bases: &[String],
    tasks: usize,
    dir: &Path,
) -> anyhow::Result<RoundTrips> {
    let window = Duration::from_secs(3);
    let idle = monitor(redis.port(), &dir.join("monitor-idle.txt"), window, async {}).await?;
    let busy = monitor(redis.port(), &dir.join("monitor-busy.txt"), window, async {
        let _ = submit_all(http, bases, tasks, 8, 1).await;
    })
    .await?;
    wait_drained(http, &bases[0], Duration::from_secs(30)).await?;
    let per_task = |busy: u64, idle: u64| (busy as f64 - idle as f64) / tasks as f64;
    let mut client: Vec<(String, f64)> = busy
        .client
        .iter()
        .map(|(command, n)| (command.clone(), per_task(*n, idle.client.get(command).copied().unwrap_or(0))))
        .filter(|(_, n)| *n >= 0.005)
        .collect();
    client.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut scripts: Vec<(String, f64, f64)> = busy
        .scripts
        .iter()
        .map(|(name, (calls, inner))| {
            let idle_calls = idle.scripts.get(name).map_or(0, |s| s.0);
            (name.clone(), per_task(*calls, idle_calls), *inner as f64 / (*calls).max(1) as f64)
        })
        .filter(|(_, n, _)| *n >= 0.005)
        .collect();
    scripts.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(RoundTrips {
        client_total: client.iter().map(|c| c.1).sum(),
        client,
        scripted_total: per_task(busy.scripted(), idle.scripted()),
        scripts,
    })
}

/// Runs `redis-cli monitor` for `window` while `during` runs.
async fn monitor(
    port: u16,
    out: &Path,
    window: Duration,
    during: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Monitored> {
    let file = std::fs::File::create(out)?;
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "monitor"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::null())
        .spawn()
        .context("running redis-cli monitor")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    during.await;
    tokio::time::sleep(window.saturating_sub(started.elapsed())).await;
    let _ = child.kill();
    let _ = child.wait();
    Ok(parse_monitor(&std::fs::read_to_string(out)?))
}

/// Reads `MONITOR` output: `1700000000.123456 [0 127.0.0.1:51234] "EVALSHA" "…" …` for a client's
/// command, `[0 lua]` for a command a script ran (listed right after the script's `EVALSHA`).
fn parse_monitor(text: &str) -> Monitored {
    let mut seen = Monitored::default();
    // The script being listed: its sha and the commands it ran so far.
    let mut current: Option<(String, Vec<String>)> = None;
    let mut by_sha: BTreeMap<String, (u64, u64, String)> = BTreeMap::new();
    let mut close = |current: &mut Option<(String, Vec<String>)>| {
        if let Some((sha, inner)) = current.take() {
            let entry = by_sha.entry(sha).or_insert((0, 0, String::new()));
            entry.0 += 1;
            entry.1 += inner.len() as u64;
            let name = script_name(&inner);
            if entry.2.is_empty() || name != "other" {
                entry.2 = name.to_owned();
            }
        }
    };
    for line in text.lines() {
        let Some((source, command)) = line.split_once(" [").and_then(|(_, rest)| rest.split_once("] "))
        else {
            continue;
        };
        let mut words = command.split('"').skip(1).step_by(2);
        let name = words.next().unwrap_or("?").to_uppercase();
        if source.ends_with("lua") {
            if let Some((_, inner)) = current.as_mut() {
                let key = words.next().unwrap_or("");
                inner.push(format!("{name} {key}"));
            }
            continue;
        }
        close(&mut current);
        if name == "MONITOR" {
            continue;
        }
        if name == "EVALSHA" {
            current = Some((words.next().unwrap_or("?").to_owned(), Vec::new()));
        }
        *seen.client.entry(name).or_insert(0) += 1;
    }
    close(&mut current);
    for (_, (calls, inner, name)) in by_sha {
        let entry = seen.scripts.entry(name).or_insert((0, 0));
        entry.0 += calls;
        entry.1 += inner;
    }
    seen
}

/// Names a script by the commands it ran (the host's scripts are not named on the wire).
fn script_name(inner: &[String]) -> &'static str {
    let ran = |prefix: &str| inner.iter().any(|c| c.starts_with(prefix));
    if ran("XREADGROUP") || ran("SMEMBERS") {
        "lease"
    } else if ran("XACK") {
        "finish"
    } else if ran("XADD") && inner.iter().any(|c| c.starts_with("XADD") && c.contains(":s:")) {
        "submit"
    } else if ran("XADD") && inner.iter().any(|c| c.contains(":events:")) {
        "append_events"
    } else if ran("HGET") && ran("ZRANGE") {
        "peek (when is work due)"
    } else {
        "other"
    }
}

/// One `redis-benchmark` line: `name: 12345.67 requests per second, p50=…`.
struct FloorLine {
    what: String,
    per_sec: f64,
}

/// `redis-benchmark` on the same server: SET and LPUSH, then XADD with 50 clients, one client,
/// and 50 clients pipelining 64 commands.
fn redis_floor(port: u16) -> anyhow::Result<Vec<FloorLine>> {
    let port = port.to_string();
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("SET, 50 clients", vec!["-t", "set", "-n", "100000"]),
        ("LPUSH, 50 clients", vec!["-t", "lpush", "-n", "100000"]),
        ("XADD, 50 clients", vec!["-n", "100000", "XADD", "bench:s", "MAXLEN", "~", "100000", "*", "f", "v"]),
        (
            "XADD, 1 client (one round trip at a time)",
            vec!["-c", "1", "-n", "20000", "XADD", "bench:s", "MAXLEN", "~", "100000", "*", "f", "v"],
        ),
        (
            "XADD, 50 clients, pipelined 64",
            vec!["-P", "64", "-n", "500000", "XADD", "bench:s", "MAXLEN", "~", "100000", "*", "f", "v"],
        ),
    ];
    let mut lines = Vec::new();
    for (what, extra) in runs {
        let output = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port, "-q"])
            .args(&extra)
            .output()
            .context("running redis-benchmark (package redis-tools)")?;
        let text = String::from_utf8_lossy(&output.stdout);
        // With -q the last line carries the result (progress lines end in \r).
        let per_sec = text
            .rsplit(['\n', '\r'])
            .find_map(|l| {
                l.split_once(": ").and_then(|(_, r)| r.split_whitespace().next()?.parse::<f64>().ok())
            })
            .with_context(|| format!("cannot read redis-benchmark's output: {text}"))?;
        lines.push(FloorLine { what: format!("`redis-benchmark {}`: {what}", extra.join(" ")), per_sec });
    }
    Ok(lines)
}

fn print_report(args: &Args, reports: &[SetupReport], floor: Option<&Vec<FloorLine>>, elapsed: Duration) {
    let xadd = floor.and_then(|f| f.iter().find(|l| l.what.ends_with("XADD, 50 clients")));
    println!();
    println!("## Queue throughput (`queue_throughput`)");
    println!();
    println!(
        "| setup | tasks/s (submit → last outcome) | submit phase alone | succeeded | POST p50 / p99 (per request) | CPU: share of one core (CPU time per task) | load avg before → after |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in reports {
        let cpu: Vec<String> = r
            .cpu
            .iter()
            .map(|(name, c)| {
                format!("{name} {:.0} % ({:.0} µs/task)", c * 100.0, c * r.total_secs / r.tasks as f64 * 1e6)
            })
            .collect();
        let ratio = xadd
            .map(|x| format!(" ({:.1} % of XADD)", 100.0 * r.tasks as f64 / r.total_secs / x.per_sec))
            .unwrap_or_default();
        println!(
            "| {} ({} host{}) | **{:.0}**{ratio} | {:.0}/s | {} of {} | {} / {} ms | {} | {} → {} |",
            r.name,
            r.hosts,
            if r.hosts > 1 { "s" } else { "" },
            r.tasks as f64 / r.total_secs,
            r.tasks as f64 / r.submit_secs,
            r.succeeded,
            r.tasks,
            ms(r.submit_latency.p50),
            ms(r.submit_latency.p99),
            cpu.join(", "),
            r.load.0,
            r.load.1
        );
    }
    println!();
    println!(
        "| setup | half load | submit → start p50 / p99 / max | submit → outcome p50 / p99 / max | generator thread's 1 ms sleeps late by p99 / max | Redis commands > 1 ms (longest) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in reports {
        let behind =
            if r.half_behind > 0 { format!(", {} submits late", r.half_behind) } else { String::new() };
        println!(
            "| {} | {:.0} tasks/s × {} s = {} tasks{behind} | {} / {} / {} ms | {} / {} / {} ms | {} / {} ms | {} |",
            r.name,
            r.half_rate,
            args.latency_secs,
            r.half_tasks,
            ms(r.to_start.p50),
            ms(r.to_start.p99),
            ms(r.to_start.max),
            ms(r.to_outcome.p50),
            ms(r.to_outcome.p99),
            ms(r.to_outcome.max),
            ms(r.stalls.p99),
            ms(r.stalls.max),
            r.slow_commands.map_or("n/a".to_owned(), |(n, longest)| format!("{n} ({} ms)", ms(longest)))
        );
    }
    for r in reports {
        if let Some(stats) = &r.commands_per_task {
            println!();
            println!(
                "Redis `INFO commandstats` over the throughput phase of `{}`, per task: {:.1} commands (scripts' inner \
                 commands counted too); {:.0} µs inside `EVALSHA` (the scripts' whole runs, wall-clock, so including \
                 any preemption; the inner commands' times below are part of it):",
                r.name, stats.calls, stats.script_usec
            );
            println!();
            println!("| command | calls per task | µs per task |");
            println!("| --- | --- | --- |");
            for (name, calls, usec) in stats.by_command.iter().take(12) {
                println!("| {name} | {calls:.2} | {usec:.1} |");
            }
        }
        if let Some(trips) = &r.round_trips {
            println!();
            let listed: Vec<String> = trips.client.iter().map(|(c, n)| format!("{c} {n:.2}")).collect();
            let scripts: Vec<String> = trips
                .scripts
                .iter()
                .map(|(name, calls, inner)| format!("{name} {calls:.2} × {inner:.1} commands"))
                .collect();
            println!(
                "Round trips per task on `{}` (`MONITOR`, {} tasks, idle window subtracted): **{:.1}** client commands ({}); \
                 scripts ran {:.1} more inside Redis (per task: {}).",
                r.name,
                args.monitor_tasks,
                trips.client_total,
                listed.join(", "),
                trips.scripted_total,
                scripts.join(", ")
            );
        }
    }
    if let Some(floor) = floor {
        println!();
        println!("Floor, the same `redis-server`, after the hosts stopped:");
        println!();
        println!("| redis-benchmark | requests/s |");
        println!("| --- | --- |");
        for line in floor {
            println!("| {} | {:.0} |", line.what, line.per_sec);
        }
    }
    println!();
    println!(
        "Method: hosts started with `--plugins tests/fixtures --concurrency {}` (`TASKHOST_LOG={}`), embedded broker \
         in a temporary folder or a private `redis-server` ({}) on loopback, flushed between setups. Each setup: {} \
         warm-up tasks, then {} no-op tasks on Redis ({} embedded; `kernels`, input `{{}}`) POSTed {} per request by {} concurrent keep-alive clients \
         spread over the hosts, timed from the first submit until `GET /api/v1/queues` (polled every 10 ms) shows \
         nothing pending, running or scheduled; outcomes counted from `/metrics`. Half load: open-loop submits at half \
         that rate for {} s; latencies from each task's `created_at`/`started_at`/`finished_at` (whole ms, so ±1 ms). \
         CPU from /proc/<pid>/stat over the throughput phase. The generator runs on the same {} cores. Wall time {:.0} s.",
        args.concurrency,
        args.host_log,
        redis_version(),
        args.warmup,
        args.tasks,
        args.embedded_tasks,
        args.batch,
        args.clients,
        args.latency_secs,
        nproc(),
        elapsed.as_secs_f64()
    );
}

fn redis_version() -> String {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .find_map(|w| w.strip_prefix("v=").map(|v| format!("Redis {v}")))
        })
        .unwrap_or_else(|| "Redis".into())
}

#[cfg(test)]
mod tests {
    const SAMPLE: &str = r#"1.1 [0 127.0.0.1:45980] "SET" "taskhost:id:a" "default" "NX"
1.2 [0 127.0.0.1:45980] "EVALSHA" "e8f6" "1" "taskhost:{default}:counts"
1.3 [0 lua] "TIME"
1.4 [0 lua] "XADD" "taskhost:{default}:s:1:default" "*" "task" "a"
1.5 [0 127.0.0.1:45980] "EVALSHA" "5f99" "1" "taskhost:{default}:counts"
1.6 [0 lua] "TIME"
1.7 [0 lua] "XREADGROUP" "GROUP" "workers" "w/1"
1.8 [0 127.0.0.1:46002] "XREAD" "BLOCK" "1000"
1.9 [0 127.0.0.1:45980] "EVALSHA" "5f99" "1" "taskhost:{default}:counts"
2.0 [0 lua] "TIME""#;

    #[test]
    fn monitor_output_is_split_into_client_commands_and_scripts() {
        let seen = super::parse_monitor(SAMPLE);
        assert_eq!(seen.client.get("EVALSHA"), Some(&3));
        assert_eq!(seen.client.get("SET"), Some(&1));
        assert_eq!(seen.client.get("XREAD"), Some(&1));
        assert_eq!(seen.scripts.get("submit"), Some(&(1, 2)));
        assert_eq!(seen.scripts.get("lease"), Some(&(2, 3)));
        assert_eq!(seen.scripted(), 5);
    }
}
