"""Celery worker vs taskhost on the same Celery producer: throughput and submit-to-result latency.

One Redis (started here on a free loopback port), one Python producer sending N tasks with
`send_task` as fast as it can, consumed either by a real Celery worker (prefork, concurrency =
cores) or by a taskhost host (`host run --redis --celery`, release build, concurrency = cores).
Two workloads:

- `noop`: `bench.noop`, a no-op Python task under Celery, the no-op `kernels` component as the
  `celery_noop` plugin under taskhost;
- `cvd`: `app.tasks.cvd_orchestration.run_cvd_simulation` with the CVD notes' nitride recipe and
  furnace noise (`cvd_port.bench_input`), computed by the Python port of the plugin
  (`cvd_port.py`, `cvd_app.py`) under Celery and by the `cvd` plugin under taskhost; the results
  of both are checked to agree with each other.

Each task's latency runs from just before its `send_task` to the moment its SUCCESS result is
published (a pattern subscription on `celery-task-meta-*` stamps each result as it arrives, which
is when a waiting `AsyncResult.get()` would return). Throughput is N over the time from the first
send to the last result. Every task's result is counted: a task whose SUCCESS arrives twice ran
twice.

    python bench/celery/bench.py --n 5000 --runs 3 [--host target/release/host] [--json out.json]
    python bench/celery/bench.py --only taskhost --taskhost-concurrency 32 --phases backlog
    python bench/celery/bench.py --only celery --celery-concurrency 4 --celery-prefetch 16 --phases backlog
    python bench/celery/bench.py --workload cvd --n 200 --runs 3 [--cvd-step 0.1]
    python bench/celery/bench.py --phases control [--control-rounds 10]

The `control` phase (no-op workload only) times, on an idle worker, each `inspect` call (ping,
active, reserved, stats, registered; `limit=1`, so a call returns with the worker's reply) and
`revoke(terminate=True)` of a task computing for 60 s (`tests.hello`: the `hello` example under
taskhost, its Python twin in noop_app.py under Celery), from the call to the REVOKED result.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis
from celery import Celery

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import cvd_port  # noqa: E402


class Workload:
    """What is sent, and what runs it on either side."""

    def __init__(self, name, queue, task, celery_module, plugin_manifest, plugin_component, kwargs):
        self.name = name
        self.queue = queue
        self.task = task
        self.celery_module = celery_module
        self.plugin_manifest = plugin_manifest
        self.plugin_component = plugin_component
        self.kwargs = kwargs

    def send(self, app, queue=None, run_id=None):
        kwargs = self.kwargs(run_id) if self.kwargs else {}
        return app.send_task(self.task, kwargs=kwargs, queue=queue or self.queue)


def workload(name, cvd_step):
    if name == "noop":
        return Workload("noop", "celery_noop", "bench.noop", "noop_app", "tests/celery/plugins/celery_noop/plugin.toml",
                        "tests/fixtures/kernels/kernels.wasm", None)
    return Workload("cvd", "cvd_bench", "app.tasks.cvd_orchestration.run_cvd_simulation", "cvd_app",
                    "plugins/cvd/plugin.toml", "plugins/cvd/cvd.wasm",
                    lambda run_id: cvd_port.bench_input(cvd_step, run_id=run_id or "bench"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


class Redis:
    def __init__(self, workdir):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis.from_url(self.url)

        def up():
            try:
                return self.client.ping()
            except redis.ConnectionError:
                return False

        wait_for(up, 20, "redis-server")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


# The queue of the task that computes for a while (`tests.hello`), consumed in the control phase.
SPIN_QUEUE = "celery_hello"


def start_celery_worker(url, args, work, control=False):
    """A real Celery worker: `-P POOL -c N`, and `--prefetch-multiplier` when given; with `control`,
    it also serves `tests.hello` (noop_app's) on SPIN_QUEUE."""
    extra = []
    if args.celery_prefetch is not None:
        extra += ["--prefetch-multiplier", str(args.celery_prefetch)]
    module = "noop_app" if control else work.celery_module
    queues = f"{work.queue},{SPIN_QUEUE}" if control else work.queue
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", module, "worker", "-P", args.celery_pool,
         "-c", str(args.celery_concurrency or args.cores), *extra, "-Q", queues,
         "-n", f"bench-{os.getpid()}@%h", "--without-mingle", "--without-gossip", "--without-heartbeat",
         "--loglevel", "WARNING"],
        cwd=HERE, env={**os.environ, "CELERY_BROKER_URL": url},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return proc, f"bench-{os.getpid()}@"


def install_plugin(workdir, folder, manifest, component):
    """Copies a manifest and its component into `workdir/plugins/folder`; returns that folder."""
    plugins = os.path.join(workdir, "plugins", folder)
    os.makedirs(plugins, exist_ok=True)
    manifest = os.path.join(ROOT, manifest)
    shutil.copy(manifest, plugins)
    with open(manifest) as f:
        plugin_name = next(line.split('"')[1] for line in f if line.startswith("name = "))
    shutil.copy(os.path.join(ROOT, component), os.path.join(plugins, f"{plugin_name}.wasm"))
    return plugins


def start_taskhost(url, cores, host_binary, workdir, work, control=False):
    """One host on the Celery queue of `work`; with `control`, also `celery_hello` (the `hello`
    example answering to `tests.hello`) on SPIN_QUEUE."""
    plugins = [install_plugin(workdir, "bench", work.plugin_manifest, work.plugin_component)]
    queues = [work.queue]
    if control:
        plugins.append(install_plugin(workdir, "hello", "tests/celery/plugins/celery_hello/plugin.toml",
                                      "examples/hello/hello.wasm"))
        queues.append(SPIN_QUEUE)
    proc = subprocess.Popen(
        [host_binary, "run", "--plugins", ",".join(plugins), "--redis", url.rsplit("/", 1)[0], "--celery",
         "--celery-queues", ",".join(queues), "--concurrency", str(cores), "--listen", "127.0.0.1:0",
         "--data-dir", os.path.join(workdir, "data")],
        env={**os.environ, "TASKHOST_LOG": "warn"},
        stdout=open(os.path.join(workdir, "host.out"), "w"), stderr=subprocess.DEVNULL,
    )
    return proc, "taskhost@"


def taskhost_api(workdir):
    """The HTTP address the host printed."""
    with open(os.path.join(workdir, "host.out")) as f:
        return next(line.split()[-1] for line in f if line.startswith("listening on "))


def progress_events(api, task_id):
    """How many samples of the cvd run a task reported (`progress_update` events)."""
    import urllib.request

    with urllib.request.urlopen(f"{api}/api/v1/tasks/{task_id}/events?limit=10000", timeout=10) as r:
        events = json.loads(r.read())["events"]
    # The plugin's own samples (the host's progress events carry only percent and message).
    return sum(e["event_type"] == "progress_update" and "current_thickness_nm" in e["data"] for e in events)


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ResultWatcher:
    """Stamps every result of `status` (SUCCESS by default) published on celery-task-meta-*."""

    def __init__(self, client, status="SUCCESS"):
        self.status = status
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("celery-task-meta-*")
        self.arrivals = {}
        self.results = {}
        self.duplicates = 0
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            message = self.pubsub.get_message(timeout=0.1)
            if not message:
                continue
            now = time.perf_counter()
            meta = json.loads(message["data"])
            if meta.get("status") != self.status:
                continue
            with self.lock:
                if meta["task_id"] in self.arrivals:
                    self.duplicates += 1
                else:
                    self.arrivals[meta["task_id"]] = now
                    if len(self.results) < 3 and "result" in meta:
                        self.results[meta["task_id"]] = meta["result"]

    def count(self):
        with self.lock:
            return len(self.arrivals)

    def close(self):
        self.running = False
        self.thread.join()
        self.pubsub.close()


def one_run(app, client, n, label, work):
    watcher = ResultWatcher(client)
    time.sleep(0.2)
    sent = {}
    first = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        result = work.send(app)
        sent[result.id] = t
    send_seconds = time.perf_counter() - first
    wait_for(lambda: watcher.count() >= n, 600, f"{n} results ({label})")
    time.sleep(0.5)  # late duplicates
    watcher.close()
    latencies = sorted((watcher.arrivals[i] - sent[i]) * 1000 for i in sent)
    last = max(watcher.arrivals[i] for i in sent)
    return {
        "n": n,
        "throughput": n / (last - first),
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "send_rate": n / send_seconds,
        "duplicates": watcher.duplicates,
        "sample_results": list(watcher.results.values()),
        "sample_ids": list(watcher.results),
    }


MOVE_ALL = """
local n = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') do n = n + 1 end
return n
"""


def backlog_run(app, client, n, label, work, meter=None, slowlog=False, on_start=None):
    """N messages prepared on a list nobody reads, then moved onto the queue in one step: the
    consumer's own capacity, whatever the producer's speed. `meter()` gives (redis-server CPU s,
    consumer CPU s): their use from the move to the last result is this run's CPU per task, and
    Redis's commands over the same span are counted."""
    staging = f"staging-{time.time_ns()}"
    for _ in range(n):
        work.send(app, queue=staging)
    watcher = ResultWatcher(client)
    time.sleep(0.2)
    if slowlog:
        client.config_set("slowlog-max-len", 1_000_000)
        client.config_set("slowlog-log-slower-than", 0)
        client.slowlog_reset()
    client.config_resetstat()
    before = meter() if meter else None
    t0 = time.perf_counter()
    client.eval(MOVE_ALL, 2, staging, work.queue)
    if on_start:
        on_start()
    wait_for(lambda: watcher.count() >= n, 600, f"{n} results ({label}, backlog)")
    after = meter() if meter else None
    stats = redis_stats(client, n)
    calls = slowlog_breakdown(client, n) if slowlog else None
    time.sleep(0.5)
    watcher.close()
    last = max(watcher.arrivals.values())
    run = {"n": n, "throughput": n / (last - t0), "duplicates": watcher.duplicates, "redis_commands": stats,
           "calls": calls}
    if meter:
        run["redis_cpu_per_task_us"] = (after[0] - before[0]) / n * 1e6
        run["consumer_cpu_per_task_us"] = (after[1] - before[1]) / n * 1e6
    return run


def one_by_one(app, client, n, work):
    """Latency on an idle system: each task sent after the previous one's result arrived."""
    watcher = ResultWatcher(client)
    time.sleep(0.2)
    latencies = []
    for _ in range(n):
        t = time.perf_counter()
        result = work.send(app)
        wait_for(lambda: result.id in watcher.arrivals, 60, "one result")
        latencies.append((watcher.arrivals[result.id] - t) * 1000)
    watcher.close()
    latencies.sort()
    return {"n": n, "p50_ms": latencies[len(latencies) // 2], "p99_ms": latencies[int(len(latencies) * 0.99)]}


INSPECT_CALLS = ("ping", "active", "reserved", "stats", "registered")


def control_phase(app, client, rounds, work, n):
    """Remote control, timed from the producer's side, on an idle worker:
    - each `inspect` call with `limit=1` (so the call returns with the worker's reply instead of
      waiting out its timeout), `rounds` times;
    - `revoke(terminate=True)` of a task that computes for 60 s, `rounds` times: from the call to
      the REVOKED state published on `celery-task-meta-<id>` (when a waiting `get()` raises);
    then on a busy one: `inspect active` one call after another while a backlog of `n` no-op
    tasks drains."""
    timings = {name: [] for name in INSPECT_CALLS}
    for _ in range(rounds):
        for name in INSPECT_CALLS:
            started = time.perf_counter()
            reply = getattr(app.control.inspect(timeout=10, limit=1), name)()
            elapsed = (time.perf_counter() - started) * 1000
            if not reply:
                raise RuntimeError(f"inspect {name}: no reply within 10 s")
            timings[name].append(elapsed)
    revokes = []
    for _ in range(rounds):
        watcher = ResultWatcher(client, status="REVOKED")
        result = app.send_task("tests.hello", args=["Long", 60_000], queue=SPIN_QUEUE)
        wait_for(lambda: any(t["id"] == result.id for tasks in (app.control.inspect(timeout=1, limit=1).active()
                                                                 or {}).values() for t in tasks),
                 60, "the long task to be active")
        started = time.perf_counter()
        result.revoke(terminate=True)
        wait_for(lambda: result.id in watcher.arrivals, 60, "REVOKED")
        revokes.append((watcher.arrivals[result.id] - started) * 1000)
        watcher.close()
    busy = []
    draining = threading.Event()

    def inspect_while_draining():
        draining.wait()
        while draining.is_set():
            started = time.perf_counter()
            reply = app.control.inspect(timeout=10, limit=1).active()
            if reply and draining.is_set():
                busy.append((time.perf_counter() - started) * 1000)

    prober = threading.Thread(target=inspect_while_draining, daemon=True)
    prober.start()
    backlog_run(app, client, n, "control, busy", work, on_start=draining.set)
    draining.clear()
    prober.join()
    summary = {name: {"median_ms": statistics.median(v), "max_ms": max(v)} for name, v in timings.items()}
    summary["revoke_terminate"] = {"median_ms": statistics.median(revokes), "max_ms": max(revokes)}
    if busy:
        summary["active_while_draining"] = {"median_ms": statistics.median(busy), "max_ms": max(busy),
                                            "calls": len(busy)}
    return summary


def bench(system, args, work):
    workdir = tempfile.mkdtemp(prefix=f"celery-bench-{system}-")
    server = Redis(workdir)
    try:
        phases = args.phases.split(",")
        control = "control" in phases
        if system == "celery":
            proc, node = start_celery_worker(server.url, args, work, control)
        else:
            proc, node = start_taskhost(server.url, args.taskhost_concurrency or args.cores, args.host, workdir, work,
                                        control)
        app = Celery("producer", broker=server.url, backend=server.url)
        app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
        wait_for(lambda: any(k.startswith(node) for k in (app.control.inspect(timeout=0.5).ping() or {})), 120,
                 f"the {system} worker")
        one_run(app, server.client, args.warmup, f"{system} warm-up", work)

        def meter():
            return process_cpu_seconds(server.proc.pid), tree_cpu_seconds(proc.pid)

        server.client.config_resetstat()
        cpu_before = meter()
        runs = [one_run(app, server.client, args.n, system, work) for _ in range(args.runs)] \
            if "streaming" in phases else []
        cpu_after = meter()
        streamed_tasks = max(1, args.n * len(runs))
        stats = redis_stats(server.client, streamed_tasks)
        backlog = [backlog_run(app, server.client, args.n, system, work, meter, args.slowlog)
                   for _ in range(args.runs)] \
            if "backlog" in phases else []
        idle = one_by_one(app, server.client, args.idle, work) if "idle" in phases else None
        controlled = control_phase(app, server.client, args.control_rounds, work, args.n) if control else None
        samples = None
        if system == "taskhost" and work.name == "cvd" and runs:
            samples = progress_events(taskhost_api(workdir), runs[0]["sample_ids"][0])
        stop(proc)
        return {"streamed": runs, "backlog": backlog, "idle": idle, "control": controlled,
                "redis_cpu_per_task_us": (cpu_after[0] - cpu_before[0]) / streamed_tasks * 1e6,
                "consumer_cpu_per_task_us": (cpu_after[1] - cpu_before[1]) / streamed_tasks * 1e6,
                "progress_events": samples, "redis_commands": stats}
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def process_cpu_seconds(pid):
    """User + system CPU time of a process so far, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid):
    """CPU time of a process and its live children (a prefork worker's pool processes)."""
    total = process_cpu_seconds(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    for child in children:
        try:
            total += tree_cpu_seconds(child)
        except OSError:
            pass
    return total


def redis_stats(client, tasks):
    """Redis commands per task and their cost (INFO commandstats since the last reset)."""
    stats = []
    for name, value in client.info("commandstats").items():
        stats.append({"command": name.removeprefix("cmdstat_"), "calls_per_task": value["calls"] / tasks,
                      "usec_per_task": value["usec"] / tasks})
    stats.sort(key=lambda s: -s["usec_per_task"])
    return stats


def slowlog_breakdown(client, n):
    """Every top-level command of the run from Redis's slow log (threshold 0), grouped by command
    and, for scripts, by their SHA and first key: calls and microseconds per task. Scripts' own
    commands are inside their script's time."""
    entries = client.execute_command("SLOWLOG", "GET", "-1")
    client.config_set("slowlog-log-slower-than", 10_000)
    groups = {}
    for entry in entries:
        args = [a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in entry[3]]
        name = args[0].lower()
        if name in ("evalsha", "eval"):
            body = args[1] if name == "evalsha" else args[1].strip().splitlines()[0][:40]
            first_key = args[3] if len(args) > 3 and args[2] not in ("", "0") else ""
            # The native broker's scripts share their first key: name them by what their
            # arguments carry.
            hint = next((h for a in args[4:] for h in ("run_started", "run_completed", "queued")
                         if a == h), "")
            hint = {"run_started": "(appends run_started)", "run_completed": "(finish)",
                    "queued": ""}.get(hint, "")
            if not hint and any("/" in a and a.rsplit("/", 1)[-1].isdigit() for a in args[4:]):
                hint = "(lease)"
            name = f"{name} {body[:8]} {first_key[:48]} {hint}".rstrip()
        group = groups.setdefault(name, [0, 0])
        group[0] += 1
        group[1] += entry[2]
    rows = [{"call": k, "calls_per_task": c / n, "usec_per_task": us / n} for k, (c, us) in groups.items()]
    rows.sort(key=lambda r: -r["usec_per_task"])
    return rows


def commands(stats, top=10):
    calls = sum(c["calls_per_task"] for c in stats)
    return f"{calls:.1f} in all; " + ", ".join(
        f"{c['command']} {c['calls_per_task']:.2f}x {c['usec_per_task']:.1f} µs" for c in stats[:top])


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=["noop", "cvd"], default="noop")
    parser.add_argument("--cvd-step", type=float, default=0.1, help="integration step of the cvd run, simulated s")
    parser.add_argument("--n", type=int, help="tasks per run (default 5000 no-op, 200 cvd)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, help="warm-up tasks (default 200 no-op, 10 cvd)")
    parser.add_argument("--idle", type=int, help="tasks sent one at a time for the idle latency (default 200 no-op, 30 cvd)")
    parser.add_argument("--host", default=os.path.join(ROOT, "target/release/host"))
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--taskhost-concurrency", "--taskhost-slots", type=int, dest="taskhost_concurrency",
                        help="taskhost's --concurrency, its slot count (default: --cores). A slot is not a process: "
                             "a no-op task holds one for microseconds")
    parser.add_argument("--celery-pool", default="prefork", help="the Celery worker's -P (default prefork)")
    parser.add_argument("--celery-concurrency", type=int, help="the Celery worker's -c (default: --cores)")
    parser.add_argument("--celery-prefetch", type=int,
                        help="the Celery worker's --prefetch-multiplier (default: Celery's, 4)")
    parser.add_argument("--only", choices=["celery", "taskhost"])
    parser.add_argument("--phases", default="streaming,backlog,idle",
                        help="comma-separated: streaming, backlog, idle, control (default the first three; control "
                             "times inspect and revoke(terminate=True), and adds a spinning task's queue to both sides)")
    parser.add_argument("--control-rounds", type=int, default=10, help="rounds of the control phase")
    parser.add_argument("--slowlog", action="store_true",
                        help="log every command of the backlog runs (slow log, threshold 0) and print them grouped "
                             "per script: calls and µs per task (adds Redis CPU: not for throughput figures)")
    parser.add_argument("--json")
    args = parser.parse_args()
    cvd = args.workload == "cvd"
    args.n = args.n or (200 if cvd else 5000)
    args.warmup = args.warmup if args.warmup is not None else (10 if cvd else 200)
    args.idle = args.idle or (30 if cvd else 200)
    work = workload(args.workload, args.cvd_step)
    if cvd and "control" in args.phases.split(","):
        parser.error("the control phase runs with the no-op workload only")
    if cvd:
        started = time.perf_counter()
        port = cvd_port.run(work.kwargs("bench"))
        print(f"cvd run: {port['integration_steps']} integration steps, {port['samples']} samples; "
              f"the Python port alone takes {(time.perf_counter() - started) * 1000:.0f} ms here", flush=True)
    print(f"load average before: {os.getloadavg()}", flush=True)
    results = {}
    for system in ("celery", "taskhost"):
        if args.only and args.only != system:
            continue
        results[system] = bench(system, args, work)
        print(f"load average after {system}: {os.getloadavg()}", flush=True)
        for r in results[system]["streamed"]:
            print(f"{system:9} streamed n={r['n']} throughput={r['throughput']:8.0f}/s p50={r['p50_ms']:8.1f} ms "
                  f"p99={r['p99_ms']:8.1f} ms send={r['send_rate']:6.0f}/s duplicates={r['duplicates']}",
                  flush=True)
        if results[system]["streamed"]:
            print(f"{system:9} streaming: consumer CPU per task {results[system]['consumer_cpu_per_task_us']:.0f} µs; "
                  f"redis-server CPU per task {results[system]['redis_cpu_per_task_us']:.0f} µs; commands per task: "
                  + commands(results[system]["redis_commands"]), flush=True)
        for r in results[system]["backlog"]:
            print(f"{system:9} backlog  n={r['n']} throughput={r['throughput']:8.0f}/s duplicates={r['duplicates']} "
                  f"consumer CPU per task {r['consumer_cpu_per_task_us']:.0f} µs, redis-server "
                  f"{r['redis_cpu_per_task_us']:.0f} µs; commands per task: {commands(r['redis_commands'])}",
                  flush=True)
            for row in r["calls"] or []:
                print(f"    {row['calls_per_task']:6.3f} calls {row['usec_per_task']:7.1f} µs per task  {row['call']}")
        controlled = results[system]["control"]
        for name, timing in (controlled or {}).items():
            print(f"{system:9} control  {name:21} median {timing['median_ms']:7.1f} ms, max {timing['max_ms']:7.1f} ms"
                  + (f" ({timing['calls']} calls)" if "calls" in timing else ""))
        idle = results[system]["idle"]
        if idle:
            print(f"{system:9} idle     n={idle['n']} p50={idle['p50_ms']:.2f} ms p99={idle['p99_ms']:.2f} ms")
    if cvd and all(r["streamed"] for r in results.values()):
        port = cvd_port.run(work.kwargs("bench"))
        for system, r in results.items():
            for result in r["streamed"][0]["sample_results"]:
                if system == "taskhost":
                    differences = cvd_port.compare(port, cvd_port.plugin_summary(result))
                else:
                    differences = cvd_port.compare(port, {k: result[k] for k in port})
                print(f"{system:9} cvd result vs the port: {'agrees' if not differences else differences}")
                if differences:
                    sys.exit(f"the {system} result disagrees with the Python port: {differences}")
            if system == "taskhost":
                worst = cvd_port.largest_relative_difference(port, cvd_port.plugin_summary(r["streamed"][0]["sample_results"][0]))
                print(f"taskhost  cvd: largest relative difference from the port {worst:.1e}; "
                      f"{r['progress_events']} progress_update events, the port's trace has {port['samples']} samples")
                if r["progress_events"] != port["samples"]:
                    sys.exit("the plugin's trace and the port's differ in length")
    if len(results) == 2:
        c, t = results["celery"], results["taskhost"]
        print()
        rounds = f", control: {args.control_rounds} rounds" if c["control"] else ""
        print(f"| {args.workload}, N = {args.n}, median of {args.runs} runs{rounds} | Celery worker | taskhost | "
              "taskhost / Celery |")
        print("| --- | --- | --- | --- |")
        if c["streamed"] and t["streamed"]:
            ct, tt = median(c["streamed"], "throughput"), median(t["streamed"], "throughput")
            print(f"| throughput, one producer streaming (tasks/s) | {ct:.0f} | {tt:.0f} | {tt / ct:.2f}x |")
            for key, name in (("p50_ms", "submit-to-result p50, streaming (ms)"),
                              ("p99_ms", "submit-to-result p99, streaming (ms)")):
                cv, tv = median(c["streamed"], key), median(t["streamed"], key)
                print(f"| {name} | {cv:.1f} | {tv:.1f} | {tv / cv:.3f}x ({cv / tv:.0f}x lower) |")
        if c["backlog"] and t["backlog"]:
            cb, tb = median(c["backlog"], "throughput"), median(t["backlog"], "throughput")
            print(f"| throughput, draining a backlog of N (tasks/s) | {cb:.0f} | {tb:.0f} | {tb / cb:.2f}x |")
        if c["idle"] and t["idle"]:
            for key, name in (("p50_ms", "submit-to-result p50, one at a time (ms)"),
                              ("p99_ms", "submit-to-result p99, one at a time (ms)")):
                cv, tv = c["idle"][key], t["idle"][key]
                print(f"| {name} | {cv:.2f} | {tv:.2f} | {tv / cv:.3f}x ({cv / tv:.1f}x lower) |")
        if c["control"] and t["control"]:
            labels = {"revoke_terminate": "revoke(terminate=True) to REVOKED published",
                      "active_while_draining": f"inspect active (limit=1) while a backlog of {args.n} drains"}
            for name in (*INSPECT_CALLS, "revoke_terminate", "active_while_draining"):
                if name not in c["control"] or name not in t["control"]:
                    continue
                label = labels.get(name, f"inspect {name} (limit=1)")
                cv, tv = c["control"][name]["median_ms"], t["control"][name]["median_ms"]
                print(f"| {label}, median (max) ms | {cv:.1f} ({c['control'][name]['max_ms']:.1f}) | "
                      f"{tv:.1f} ({t['control'][name]['max_ms']:.1f}) | {tv / cv:.3f}x ({cv / tv:.1f}x lower) |")
        dups = lambda r: sum(x["duplicates"] for x in r["streamed"] + r["backlog"])
        print(f"| duplicate results | {dups(c)} | {dups(t)} | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
