//! `host run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::events::EventHub;
use crate::plugin::PluginRegistry;
use crate::queue::Broker;
use crate::queue::celery;
use crate::queue::embedded::EmbeddedBroker;
use crate::queue::redis::{RedisBroker, RedisConfig};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::tenant::Tenants;
use crate::worker::{Worker, WorkerSettings};

/// Arguments of `host run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Plugin folders: each holds plugin sub-folders (or is one). Repeat or separate with commas.
    #[arg(long, required = true, value_delimiter = ',', value_name = "DIR")]
    plugins: Vec<PathBuf>,
    /// Redis URL (redis:// or rediss://). Without it, the embedded broker under --data-dir is used.
    #[arg(long, env = "REDIS_URL", value_name = "URL")]
    redis: Option<String>,
    /// Address for the API and WebSocket.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// Tasks run at once (default: the number of cores).
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Queues to consume (default: every queue the loaded plugins listen on).
    #[arg(long, value_delimiter = ',', value_name = "Q,...")]
    queues: Vec<String>,
    /// Where the embedded broker and the compile cache live.
    #[arg(long, default_value = ".taskhost", value_name = "DIR")]
    data_dir: PathBuf,
    /// Seconds running tasks get to finish after SIGTERM or Ctrl-C before they are stopped and
    /// handed back to the queue.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    grace: f64,
    /// Tenants file (TOML): tenants with token hashes, quotas and weights, and an admin. Without
    /// it, one default tenant is served without tokens, on loopback only.
    #[arg(long, value_name = "FILE")]
    tenants: Option<PathBuf>,
    /// Also serve Celery: consume Celery protocol-2 messages from the Redis named by --redis (the
    /// Celery app's broker and result backend), run them as tasks of the plugins that answer to
    /// their names, write Celery results, and answer Celery's remote control. Needs --redis.
    #[arg(long)]
    celery: bool,
    /// Celery queues to consume (default: `celery`, the queue of every plugin with Celery names,
    /// and the Celery queues tenants claim with `celery_queues`).
    #[arg(long, value_delimiter = ',', value_name = "Q,...", requires = "celery")]
    celery_queues: Vec<String>,
    /// Send Celery task events (for Flower) from the start, as `celery worker -E`; without it
    /// they start with `celery control enable_events`, which Flower sends every 5 s.
    #[arg(long, requires = "celery")]
    celery_task_events: bool,
    /// Seconds Celery results are kept (Celery's `result_expires`).
    #[arg(long, default_value_t = 86_400, value_name = "SECS", requires = "celery")]
    celery_result_expires: u64,
    /// Seconds a running task may stay silent (no progress, event or log) before it is flagged
    /// stale in the API and with a `run_stale` event.
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    stale_after: f64,
    /// Seconds a task's lease lasts without renewal (renewed every third of it while the task
    /// runs): the time after which another host takes over the tasks of a host that died.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    lease_secs: f64,
    /// Where compiled plugins are cached (default: `<data-dir>/compiled`). Hosts may share one.
    #[arg(long, value_name = "DIR")]
    compile_cache: Option<PathBuf>,
    /// Largest file accepted in a tenant's file area, in bytes.
    #[arg(long, default_value_t = api::DEFAULT_MAX_FILE_BYTES, value_name = "BYTES")]
    max_file_bytes: usize,
    /// Largest task input accepted, in bytes.
    #[arg(long, default_value_t = api::DEFAULT_MAX_INPUT_BYTES, value_name = "BYTES")]
    max_input_bytes: usize,
    /// Nice value (0-19) of the threads that fan events out to WebSocket watchers. Above 0, REST
    /// requests, event storage and tasks run first when they compete with the fan-out for a core;
    /// beside other busy processes the fan-out then gets less CPU (BENCHMARKS.md).
    #[arg(long, default_value_t = api::DEFAULT_FANOUT_NICE, value_name = "NICE",
          value_parser = clap::value_parser!(i32).range(0..=19))]
    ws_nice: i32,
    /// Time slice, in µs, that the threads serving REST ask the kernel for (Linux 6.12 and
    /// later; clamped by the kernel to 100-100,000): a request's wake-up then preempts a thread
    /// in the middle of a longer slice (tasks, the fan-out) instead of waiting for it to end. It
    /// changes when the API runs, not how much CPU it gets. 0 keeps the kernel's default.
    #[arg(long, default_value_t = crate::sched::DEFAULT_API_SLICE.as_micros() as u64, value_name = "US")]
    api_slice_us: u64,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TASKHOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
}

/// Runs the host until SIGTERM or Ctrl-C, then drains.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    init_tracing();
    crate::telemetry::handle();
    // A malformed URL is refused at once; an unreachable Redis is waited for below.
    let redis_config = args.redis.as_deref().map(RedisConfig::new).transpose().context("--redis")?;
    let tenants = Arc::new(match &args.tenants {
        Some(path) => Tenants::load(path)?,
        None => Tenants::open(),
    });
    if args.celery {
        match &redis_config {
            None => bail!(
                "--celery needs --redis URL (or REDIS_URL): Celery's messages and results live in Redis, and taskhost runs them through its Redis queue"
            ),
            Some(config) if config.urls.len() > 1 => {
                bail!(
                    "--celery: Celery's Redis transport does not support Redis Cluster; give --redis one standalone Redis"
                )
            }
            Some(_) => {}
        }
    }
    if !args.listen.ip().is_loopback() && !tenants.requires_tokens() {
        bail!(
            "--listen {}: without a tenants file the API has no authentication, so it only listens on loopback (127.0.0.1 or ::1)",
            args.listen
        );
    }
    let concurrency = args
        .concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);

    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create --data-dir {}", args.data_dir.display()))?;
    let sandbox = Arc::new(
        Sandbox::new(SandboxConfig::new(concurrency as u32, args.data_dir.join("scratch")))
            .context("cannot start the sandbox")?,
    );
    let compile_cache = args.compile_cache.clone().unwrap_or_else(|| args.data_dir.join("compiled"));
    let plugins = PluginRegistry::load(&sandbox, &args.plugins, &compile_cache).await?;
    if plugins.is_empty() {
        bail!(
            "no plugin could be loaded from {} (build them with `cargo xtask plugins`)",
            args.plugins.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let plugins = Arc::new(plugins);
    let mut redis_broker: Option<Arc<RedisBroker>> = None;
    let broker: Arc<dyn Broker> = match redis_config {
        Some(config) => match connect_redis(config).await {
            Some(broker) => {
                let broker = Arc::new(broker);
                redis_broker = Some(broker.clone());
                broker
            }
            None => return Ok(ExitCode::SUCCESS),
        },
        None => Arc::new(EmbeddedBroker::open(&args.data_dir)?),
    };
    let hub = EventHub::new(broker.clone());
    let queues = if args.queues.is_empty() { plugins.queues() } else { args.queues.clone() };
    let host_id = format!("{}-{}", hostname(), std::process::id());
    let mut settings = WorkerSettings::new(concurrency, queues.clone(), host_id.clone());
    settings.stale_after = Duration::from_secs_f64(args.stale_after.max(0.05));
    settings.lease_duration = Duration::from_secs_f64(args.lease_secs.max(0.3));
    settings.lease_renewal_interval = settings.lease_duration / 3;
    let heartbeat_interval = settings.heartbeat_interval;
    let worker = Arc::new(
        Worker::new(broker.clone(), hub.clone(), sandbox.clone(), plugins.clone(), settings)
            .with_tenants(tenants.clone()),
    );
    // A cancel requested on any host stops the task here at once.
    let cancel_subscription = redis_broker.as_ref().map(|redis| {
        let running = worker.running();
        redis.watch_cancellations(move |task_id| {
            running.cancel(task_id);
        })
    });

    api::set_fanout_nice(args.ws_nice);
    let state = AppState {
        broker: broker.clone(),
        hub: hub.clone(),
        plugins: plugins.clone(),
        running: worker.running(),
        max_input_bytes: args.max_input_bytes,
        tenants: tenants.clone(),
        slots: concurrency,
        host_offline_after: heartbeat_interval * crate::worker::OFFLINE_AFTER_HEARTBEATS,
        max_file_bytes: args.max_file_bytes,
        cancel_subscription,
    };
    // The API gets a runtime of its own (see `api_runtime`); its listener, and so every
    // connection it accepts, is registered with that runtime's I/O driver.
    let api_runtime =
        api_runtime(Duration::from_micros(args.api_slice_us)).context("cannot start the API runtime")?;
    let listener = std::net::TcpListener::bind(args.listen)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    let listener = {
        let _api = api_runtime.handle.enter();
        tokio::net::TcpListener::from_std(listener).context("cannot register the API listener")?
    };
    let shutdown = CancellationToken::new();
    let celery = match (args.celery, &args.redis) {
        (true, Some(url)) => {
            let queue_tenants = tenants.celery_queue_tenants();
            let queues = if args.celery_queues.is_empty() {
                let mut queues = celery::default_queues(&plugins);
                for queue in queue_tenants.keys() {
                    if !queues.contains(queue) {
                        queues.push(queue.clone());
                    }
                }
                queues
            } else {
                args.celery_queues.clone()
            };
            let mut config = celery::CeleryConfig::new(url.trim(), queues, &host_id, &hostname());
            config.queue_tenants = queue_tenants;
            config.result_expires = Duration::from_secs(args.celery_result_expires.max(1));
            config.concurrency = concurrency;
            config.task_events = args.celery_task_events;
            config.max_input_bytes = args.max_input_bytes;
            let routes = celery::Routes::from_plugins(&plugins);
            Some(
                celery::start(
                    config,
                    broker.clone(),
                    hub.clone(),
                    routes,
                    worker.running(),
                    tenants.clone(),
                    shutdown.clone(),
                )
                .await?,
            )
        }
        _ => None,
    };
    tracing::info!(
        host = %host_id,
        api = %format!("http://{local}"),
        broker = broker.backend_name(),
        data_dir = %args.data_dir.display(),
        concurrency,
        queues = %queues.join(","),
        plugins = %plugins.iter().map(|p| p.manifest.name.as_str()).collect::<Vec<_>>().join(","),
        "taskhost ready"
    );
    // A machine-readable line for scripts and tests that start the host on port 0.
    println!("listening on http://{local}");

    let server = {
        let shutdown = shutdown.clone();
        api_runtime.handle.spawn(async move {
            // No Nagle delay: a WebSocket burst is written as it is ready, and a small second write
            // must not wait for the peer's delayed ACK (up to 40 ms on Linux).
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%error, "cannot set TCP_NODELAY");
                }
            });
            axum::serve(listener, api::router(state))
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        })
    };
    let workers = tokio::spawn(worker.run(shutdown.clone(), Duration::from_secs_f64(args.grace.max(0.0))));

    wait_for_signal().await;
    tracing::info!("shutting down: no new tasks; running tasks get {}s", args.grace);
    shutdown.cancel();
    let _ = workers.await;
    if let Some(celery) = celery {
        celery.stop().await;
    }
    let _ = server.await;
    drop(api_runtime);
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The runtime that serves the REST API and accepts WebSocket upgrades, apart from the one that
/// runs the tasks, stores their events and talks to the broker. A task's sandbox holds a worker
/// thread for up to one fuel slice at a time, and a runtime's I/O driver is polled only between
/// polls of its tasks: on a shared runtime, a request that arrived meanwhile waited for a slice
/// to end before it was even read. Here its thread sleeps in `epoll` until a request comes, and
/// the kernel schedules it like any thread woken by I/O. Its threads ask for a time slice of
/// `slice` ([`crate::sched::request_slice`]): a thread woken with a short slice preempts a task
/// running a long one, where at the kernel's default it would wait up to that task's slice
/// (BENCHMARKS.md, "REST beside CPU-bound tasks", has the figures). Threads they start inherit
/// it. WebSocket streams run on the fan-out runtime of [`crate::api`], which takes the default
/// slice again. One worker thread per core, like the others.
fn api_runtime(slice: Duration) -> std::io::Result<ApiRuntime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, usize::from))
        .thread_name("api")
        .enable_all()
        .on_thread_start(move || {
            if !slice.is_zero()
                && let Err(error) = crate::sched::request_slice(slice)
            {
                tracing::debug!(%error, "the kernel refused a short time slice for an API thread");
            }
        })
        .build()
        .map(|runtime| ApiRuntime { handle: runtime.handle().clone(), runtime: Some(runtime) })
}

/// The API's runtime, shut down without waiting when dropped: it is dropped inside the main
/// runtime (at the end of `run`, or on an early error), where blocking is not allowed.
struct ApiRuntime {
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for ApiRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Connects to Redis, trying again with backoff while it cannot be reached (each failure is
/// logged with its reason); `None` when the host was told to stop meanwhile.
async fn connect_redis(config: RedisConfig) -> Option<RedisBroker> {
    let mut backoff = Duration::from_millis(500);
    loop {
        match RedisBroker::connect(config.clone()).await {
            Ok(broker) => return Some(broker),
            Err(error) => {
                tracing::error!(%error, retry_in_secs = backoff.as_secs_f64(), "cannot use Redis; trying again");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = wait_for_signal() => return None,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}
