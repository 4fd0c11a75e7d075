//! Shared pieces of the load generators in `src/bin/` (see BENCHMARKS.md for what each measures):
//! starting the release `host` binary, reading a process's memory and CPU from `/proc`, the
//! machine's load, the file-descriptor limit, and percentiles.
//!
//! The generators start `target/release/host` (beside their own executable, or `--host-bin`)
//! rather than going through `taskhost_e2e::Host`, which looks for the binary of the test
//! profile; they reuse the end-to-end suite's repository paths and private `redis-server`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// The `p`-th percentile (0-100) of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// p50, p99 and max of some samples, and how many there were.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// Sorts `samples` and summarises them.
    pub fn of(samples: &mut [f64]) -> Summary {
        samples.sort_by(f64::total_cmp);
        Summary {
            count: samples.len(),
            p50: percentile(samples, 50.0),
            p99: percentile(samples, 99.0),
            max: samples.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// Milliseconds since the Unix epoch, with a fraction.
pub fn unix_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

/// An RFC 3339 time as the API writes it (`2025-01-01T00:00:00.123Z`), in ms since the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Option<f64> {
    let t = humantime::parse_rfc3339(text).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs_f64() * 1000.0)
}

/// The `host` binary: `explicit` if given, else `host` beside this executable
/// (`target/release/ws_load` → `target/release/host`).
pub fn host_binary(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path,
        None => {
            let exe = std::env::current_exe().context("the path of this executable")?;
            exe.parent().context("the folder of this executable")?.join("host")
        }
    };
    if !path.is_file() {
        bail!(
            "{} is not there: build it with `cargo build --release -p taskhost --bin host` or pass --host-bin",
            path.display()
        );
    }
    Ok(path)
}

/// The repository root (where `plugins/` and `tests/fixtures/` are).
pub fn repo_root() -> PathBuf {
    taskhost_e2e::repo_root()
}

/// `--compile-cache DIR` for the hosts a generator starts: one folder under `target/` for every
/// run, so that each plugin compiles once rather than at every start (the cache keys each entry
/// by the component's digest and the engine's settings, so builds under comparison never share
/// an entry they should not).
pub fn compile_cache_args() -> [String; 2] {
    ["--compile-cache".to_owned(), repo_root().join("target/bench-cache/compiled").display().to_string()]
}

/// A `host run` process of our own, stopped by PID when dropped.
pub struct HostProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log_path: PathBuf,
}

impl HostProcess {
    /// Runs `binary run --listen 127.0.0.1:0 ARGS...` with its log in `log_path` and waits until it
    /// prints its address. The child inherits this process's limits (open files above all).
    pub fn start(binary: &Path, args: &[String], log_path: &Path, log_level: &str) -> anyhow::Result<Self> {
        Self::start_on(binary, args, log_path, log_level, None)
    }

    /// [`HostProcess::start`], the host's threads confined to `cpus` when given.
    pub fn start_on(
        binary: &Path,
        args: &[String],
        log_path: &Path,
        log_level: &str,
        cpus: Option<&[usize]>,
    ) -> anyhow::Result<Self> {
        let log = File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = Command::new(binary);
        if let Some(cpus) = cpus {
            let mask = cpu_mask(cpus)?;
            // SAFETY: the closure runs in the child between fork and exec and makes one system
            // call on memory it owns; it allocates nothing.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    set_affinity_mask(0, &mask)
                });
            }
        }
        let mut child = command
            .arg("run")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("TASKHOST_LOG", log_level)
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("the host's stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let mut host = HostProcess { child, base: String::new(), log_path: log_path.to_path_buf() };
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(base) => host.base = base,
            Err(_) => bail!("the host did not start within 120 s; its log:\n{}", host.log_tail(40)),
        }
        Ok(host)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `ws://…` form of `path` on this host.
    pub fn ws(&self, path: &str) -> String {
        format!("{}{path}", self.base.replacen("http://", "ws://", 1))
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until `GET /readyz` answers 200.
    pub async fn wait_ready(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("{} is not ready after 60 s; its log:\n{}", self.base, self.log_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid` (`VmRSS` in `/proc/<pid>/status`), in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS line")
}

/// CPU time (user + system) process `pid` has used so far (`/proc/<pid>/stat`); `None` when it is
/// gone. Pass `std::process::id()` for this process.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: state is the
    // 3rd field of the line, utime the 14th and stime the 15th.
    let after = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second()))
}

/// CPU used by several processes over a span of wall-clock time, as a share of one core.
pub struct CpuMeter {
    started: Instant,
    at_start: Vec<Option<Duration>>,
    pids: Vec<u32>,
}

impl CpuMeter {
    /// Starts measuring `pids`.
    pub fn start(pids: &[u32]) -> Self {
        CpuMeter {
            started: Instant::now(),
            at_start: pids.iter().map(|p| cpu_time(*p)).collect(),
            pids: pids.to_vec(),
        }
    }

    /// Per process: the share of one core it used since the start (1.0 = one core busy).
    pub fn cores(&self) -> Vec<f64> {
        let wall = self.started.elapsed().as_secs_f64();
        self.pids
            .iter()
            .zip(&self.at_start)
            .map(|(pid, start)| match (start, cpu_time(*pid)) {
                (Some(start), Some(now)) => (now.saturating_sub(*start)).as_secs_f64() / wall,
                _ => f64::NAN,
            })
            .collect()
    }
}

/// How late a plain thread wakes from 1 ms sleeps: a gauge of how much the machine (other
/// processes, the host, the generator itself) keeps a runnable thread waiting for a core.
pub struct StallMeter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<f64>>,
}

impl StallMeter {
    /// Starts sampling on a thread of its own, at the kernel's default slice.
    pub fn start() -> Self {
        Self::with_slice(Duration::ZERO)
    }

    /// Starts sampling on a thread of its own that asks for `slice` ([`request_slice`]; zero: the
    /// kernel's default, whatever the caller's).
    pub fn with_slice(slice: Duration) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // Zero too: a thread inherits its creator's slice, and the probes ask for one.
                if let Err(error) = request_slice(slice) {
                    eprintln!("the stall meter cannot ask for a {slice:?} slice: {error}");
                }
                let mut late = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let asleep = Instant::now();
                    std::thread::sleep(Duration::from_millis(1));
                    late.push(
                        asleep.elapsed().saturating_sub(Duration::from_millis(1)).as_secs_f64() * 1000.0,
                    );
                }
                late
            })
        };
        StallMeter { stop, thread }
    }

    /// Stops and summarises the lateness, in ms.
    pub fn finish(self) -> Summary {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut late = self.thread.join().unwrap_or_default();
        Summary::of(&mut late)
    }
}

/// `/proc/loadavg`'s three averages, as `uptime` prints them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Online CPUs, as `nproc` prints them.
pub fn nproc() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}

#[repr(C)]
struct RLimit {
    current: u64,
    maximum: u64,
}

// libc is not a dependency of the generators; these few calls are all they need (the
// scheduling hints come from `taskhost::sched`).
unsafe extern "C" {
    fn getrlimit(resource: i32, limit: *mut RLimit) -> i32;
    fn setrlimit(resource: i32, limit: *const RLimit) -> i32;
    fn sysconf(name: i32) -> i64;
    fn sched_setaffinity(pid: i32, size: usize, mask: *const u8) -> i32;
}

/// A `cpu_set_t` (1,024 CPUs) with `cpus` set.
fn cpu_mask(cpus: &[usize]) -> anyhow::Result<[u8; 128]> {
    let mut mask = [0u8; 128];
    for &cpu in cpus {
        if cpu >= mask.len() * 8 {
            bail!("CPU {cpu} is beyond the 1,024 a cpu_set_t holds");
        }
        mask[cpu / 8] |= 1 << (cpu % 8);
    }
    Ok(mask)
}

fn set_affinity_mask(pid: i32, mask: &[u8; 128]) -> std::io::Result<()> {
    // SAFETY: `mask` is a valid 128-byte `cpu_set_t` for the duration of the call.
    if unsafe { sched_setaffinity(pid, mask.len(), mask.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Confines the calling thread, and every thread it starts afterwards, to `cpus`.
pub fn set_thread_affinity(cpus: &[usize]) -> anyhow::Result<()> {
    set_affinity_mask(0, &cpu_mask(cpus)?).with_context(|| format!("sched_setaffinity to CPUs {cpus:?}"))
}

/// Per-thread nice values and time slices, the host's own (`taskhost::sched`).
pub use taskhost::sched::{request_slice, set_thread_nice, thread_nice};

/// `RLIMIT_NOFILE` on Linux.
const RLIMIT_NOFILE: i32 = 7;
/// `_SC_CLK_TCK` on Linux.
const SC_CLK_TCK: i32 = 2;

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system and has no preconditions.
    let ticks = unsafe { sysconf(SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Raises this process's soft limit of open files to its hard limit (children started afterwards
/// inherit it); returns the (soft, hard) limits now in force.
pub fn raise_open_files_limit() -> anyhow::Result<(u64, u64)> {
    let mut limit = RLimit { current: 0, maximum: 0 };
    // SAFETY: `limit` is a valid, writable `struct rlimit` (two 64-bit fields on Linux).
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) } != 0 {
        bail!("getrlimit(RLIMIT_NOFILE) failed: {}", std::io::Error::last_os_error());
    }
    if limit.current < limit.maximum {
        let raised = RLimit { current: limit.maximum, maximum: limit.maximum };
        // SAFETY: as above; `raised` outlives the call.
        if unsafe { setrlimit(RLIMIT_NOFILE, &raised) } != 0 {
            bail!("setrlimit(RLIMIT_NOFILE) failed: {}", std::io::Error::last_os_error());
        }
        limit.current = limit.maximum;
    }
    Ok((limit.current, limit.maximum))
}

/// Formats milliseconds for a table: `0.42`, `3.1`, `57`.
pub fn ms(value: f64) -> String {
    if value.is_nan() {
        "n/a".into()
    } else if value < 1.0 {
        format!("{value:.2}")
    } else if value < 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_of_a_known_list() {
        let v: Vec<f64> = (1..=101).map(f64::from).collect();
        assert_eq!(super::percentile(&v, 50.0), 51.0);
        assert_eq!(super::percentile(&v, 99.0), 100.0);
        assert_eq!(super::percentile(&v, 100.0), 101.0);
    }

    #[test]
    fn api_times_parse_to_milliseconds() {
        assert_eq!(super::parse_rfc3339_ms("1970-01-01T00:00:01.250Z"), Some(1250.0));
    }

    #[test]
    fn a_cpu_mask_sets_the_bits_of_its_cpus_and_refuses_those_beyond_a_cpu_set() {
        let mask = super::cpu_mask(&[0, 9, 1023]).unwrap();
        assert_eq!((mask[0], mask[1], mask[127]), (0b1, 0b10, 0b1000_0000));
        assert_eq!(mask.iter().map(|b| b.count_ones()).sum::<u32>(), 3);
        assert!(super::cpu_mask(&[1024]).is_err());
    }

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let me = std::process::id();
        assert!(super::rss_kib(me).unwrap() > 0);
        assert!(super::cpu_time(me).is_some());
    }
}
