"""Celery worker vs taskhost on the same Celery producer: throughput and submit-to-result latency.

One Redis (started here on a free loopback port), one Python producer sending N `bench.noop` tasks
with `send_task` as fast as it can, consumed either by a real Celery worker (prefork, concurrency =
cores, running a no-op Python task) or by a taskhost host (`host run --redis --celery`, release
build, concurrency = cores, running the no-op `kernels` component as the `celery_noop` plugin).

Each task's latency runs from just before its `send_task` to the moment its SUCCESS result is
published (a pattern subscription on `celery-task-meta-*` stamps each result as it arrives, which
is when a waiting `AsyncResult.get()` would return). Throughput is N over the time from the first
send to the last result. Every task's result is counted: a task whose SUCCESS arrives twice ran
twice.

    python bench/celery/bench.py --n 5000 --runs 3 [--host target/release/host] [--json out.json]
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
QUEUE = "celery_noop"


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


def start_celery_worker(url, cores):
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "noop_app", "worker", "-P", "prefork", "-c", str(cores), "-Q", QUEUE,
         "-n", f"bench-{os.getpid()}@%h", "--without-mingle", "--without-gossip", "--without-heartbeat",
         "--loglevel", "WARNING"],
        cwd=HERE, env={**os.environ, "CELERY_BROKER_URL": url},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return proc, f"bench-{os.getpid()}@"


def start_taskhost(url, cores, host_binary, workdir):
    plugins = os.path.join(workdir, "plugins", "celery_noop")
    os.makedirs(plugins, exist_ok=True)
    shutil.copy(os.path.join(ROOT, "tests/celery/plugins/celery_noop/plugin.toml"), plugins)
    shutil.copy(os.path.join(ROOT, "tests/fixtures/kernels/kernels.wasm"), os.path.join(plugins, "celery_noop.wasm"))
    proc = subprocess.Popen(
        [host_binary, "run", "--plugins", plugins, "--redis", url.rsplit("/", 1)[0], "--celery",
         "--celery-queues", QUEUE, "--concurrency", str(cores), "--listen", "127.0.0.1:0",
         "--data-dir", os.path.join(workdir, "data")],
        env={**os.environ, "TASKHOST_LOG": "warn"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return proc, "taskhost@"


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ResultWatcher:
    """Stamps every SUCCESS published on celery-task-meta-*."""

    def __init__(self, client):
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("celery-task-meta-*")
        self.arrivals = {}
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
            if meta.get("status") != "SUCCESS":
                continue
            with self.lock:
                if meta["task_id"] in self.arrivals:
                    self.duplicates += 1
                else:
                    self.arrivals[meta["task_id"]] = now

    def count(self):
        with self.lock:
            return len(self.arrivals)

    def close(self):
        self.running = False
        self.thread.join()
        self.pubsub.close()


def one_run(app, client, n, label):
    watcher = ResultWatcher(client)
    time.sleep(0.2)
    sent = {}
    first = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        result = app.send_task("bench.noop", queue=QUEUE)
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
    }


MOVE_ALL = """
local n = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') do n = n + 1 end
return n
"""


def backlog_run(app, client, n, label):
    """N messages prepared on a list nobody reads, then moved onto the queue in one step: the
    consumer's own capacity, whatever the producer's speed."""
    staging = f"staging-{time.time_ns()}"
    for _ in range(n):
        app.send_task("bench.noop", queue=staging)
    watcher = ResultWatcher(client)
    time.sleep(0.2)
    t0 = time.perf_counter()
    client.eval(MOVE_ALL, 2, staging, QUEUE)
    wait_for(lambda: watcher.count() >= n, 600, f"{n} results ({label}, backlog)")
    time.sleep(0.5)
    watcher.close()
    last = max(watcher.arrivals.values())
    return {"n": n, "throughput": n / (last - t0), "duplicates": watcher.duplicates}


def one_by_one(app, client, n):
    """Latency on an idle system: each task sent after the previous one's result arrived."""
    watcher = ResultWatcher(client)
    time.sleep(0.2)
    latencies = []
    for _ in range(n):
        t = time.perf_counter()
        result = app.send_task("bench.noop", queue=QUEUE)
        wait_for(lambda: result.id in watcher.arrivals, 30, "one result")
        latencies.append((watcher.arrivals[result.id] - t) * 1000)
    watcher.close()
    latencies.sort()
    return {"n": n, "p50_ms": latencies[len(latencies) // 2], "p99_ms": latencies[int(len(latencies) * 0.99)]}


def bench(system, args, cores):
    workdir = tempfile.mkdtemp(prefix=f"celery-bench-{system}-")
    server = Redis(workdir)
    try:
        if system == "celery":
            proc, node = start_celery_worker(server.url, cores)
        else:
            proc, node = start_taskhost(server.url, args.taskhost_slots or cores, args.host, workdir)
        app = Celery("producer", broker=server.url, backend=server.url)
        app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
        wait_for(lambda: any(k.startswith(node) for k in (app.control.inspect(timeout=0.5).ping() or {})), 120,
                 f"the {system} worker")
        one_run(app, server.client, args.warmup, f"{system} warm-up")
        runs = [one_run(app, server.client, args.n, system) for _ in range(args.runs)]
        backlog = [backlog_run(app, server.client, args.n, system) for _ in range(args.runs)]
        idle = one_by_one(app, server.client, args.idle)
        stop(proc)
        return {"streamed": runs, "backlog": backlog, "idle": idle}
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--idle", type=int, default=200, help="tasks sent one at a time for the idle latency")
    parser.add_argument("--host", default=os.path.join(ROOT, "target/release/host"))
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--taskhost-slots", type=int, help="taskhost's --concurrency (default: --cores)")
    parser.add_argument("--only", choices=["celery", "taskhost"])
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {}
    for system in ("celery", "taskhost"):
        if args.only and args.only != system:
            continue
        results[system] = bench(system, args, args.cores)
        for r in results[system]["streamed"]:
            print(f"{system:9} streamed n={r['n']} throughput={r['throughput']:8.0f}/s p50={r['p50_ms']:8.1f} ms "
                  f"p99={r['p99_ms']:8.1f} ms send={r['send_rate']:6.0f}/s duplicates={r['duplicates']}",
                  flush=True)
        for r in results[system]["backlog"]:
            print(f"{system:9} backlog  n={r['n']} throughput={r['throughput']:8.0f}/s duplicates={r['duplicates']}")
        idle = results[system]["idle"]
        print(f"{system:9} idle     n={idle['n']} p50={idle['p50_ms']:.2f} ms p99={idle['p99_ms']:.2f} ms")
    if len(results) == 2:
        c, t = results["celery"], results["taskhost"]
        print()
        print(f"| N = {args.n}, median of {args.runs} runs | Celery worker | taskhost | taskhost / Celery |")
        print("| --- | --- | --- | --- |")
        ct, tt = median(c["streamed"], "throughput"), median(t["streamed"], "throughput")
        print(f"| throughput, one producer streaming (tasks/s) | {ct:.0f} | {tt:.0f} | {tt / ct:.2f}x |")
        for key, name in (("p50_ms", "submit-to-result p50, streaming (ms)"), ("p99_ms", "submit-to-result p99, streaming (ms)")):
            cv, tv = median(c["streamed"], key), median(t["streamed"], key)
            print(f"| {name} | {cv:.1f} | {tv:.1f} | {tv / cv:.3f}x ({cv / tv:.0f}x lower) |")
        cb, tb = median(c["backlog"], "throughput"), median(t["backlog"], "throughput")
        print(f"| throughput, draining a backlog of N (tasks/s) | {cb:.0f} | {tb:.0f} | {tb / cb:.2f}x |")
        for key, name in (("p50_ms", "submit-to-result p50, one at a time (ms)"), ("p99_ms", "submit-to-result p99, one at a time (ms)")):
            cv, tv = c["idle"][key], t["idle"][key]
            print(f"| {name} | {cv:.2f} | {tv:.2f} | {tv / cv:.3f}x ({cv / tv:.1f}x lower) |")
        dups = lambda r: sum(x["duplicates"] for x in r["streamed"] + r["backlog"])
        print(f"| duplicate results | {dups(c)} | {dups(t)} | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
