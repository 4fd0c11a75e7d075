"""A backlog of tasks that start later, on the embedded broker (issue 4's `GET /queues`, issue 3's
queue): how fast it is submitted, and what it costs an idle host to keep it.

Starts one `host run` (embedded broker, `--concurrency 2`, the `hello` example) on a free loopback
port, submits `--tasks` tasks with `delay_ms` one hour through `POST /api/v1/tasks/batch` (1,000
per request), then reads the host's CPU time over 5 idle seconds and times 200 `GET /api/v1/queues`.
Before 2026-12-06 the lease and the wait for the next due task each read every waiting row of
the tenant, so a backlog of later tasks made both grow with it.

    cargo build --release -p taskhost --bin host && cargo xtask plugins
    python3 bench/scheduled_backlog.py [--host target/release/host] [--tasks 200000]
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.path.join(ROOT, "target/release/host"))
    parser.add_argument("--tasks", type=int, default=200_000)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="scheduled-backlog-")
    host = subprocess.Popen(
        [args.host, "run", "--plugins", os.path.join(ROOT, "examples/hello"), "--data-dir", data,
         "--listen", "127.0.0.1:0", "--concurrency", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "TASKHOST_LOG": "warn"},
    )
    try:
        line = host.stdout.readline()
        while line and not line.startswith("listening on"):
            line = host.stdout.readline()
        if not line:
            raise SystemExit("the host exited before listening")
        conn = http.client.HTTPConnection("127.0.0.1", int(line.rsplit(":", 1)[1]))
        item = {"plugin": "hello", "input": {"name": "later"}, "delay_ms": 3_600_000}
        batches = []
        started = time.perf_counter()
        for _ in range(args.tasks // 1000):
            t = time.perf_counter()
            conn.request("POST", "/api/v1/tasks/batch", body=json.dumps({"tasks": [item] * 1000}),
                         headers={"content-type": "application/json"})
            reply = json.loads(conn.getresponse().read())
            batches.append((time.perf_counter() - t) * 1000)
            if reply.get("created") != 1000:
                raise SystemExit(f"a batch was not taken whole: {reply}")
        submitted = time.perf_counter() - started
        before = cpu_seconds(host.pid)
        time.sleep(5)
        idle = cpu_seconds(host.pid) - before
        latencies = []
        for _ in range(200):
            t = time.perf_counter()
            conn.request("GET", "/api/v1/queues")
            conn.getresponse().read()
            latencies.append((time.perf_counter() - t) * 1000)
        latencies.sort()
        print(f"{args.tasks} tasks starting in an hour submitted in {submitted:.1f} s "
              f"(first batch of 1,000 {batches[0]:.0f} ms, last {batches[-1]:.0f} ms); "
              f"host CPU over 5 idle s {idle:.2f} s; GET /queues p50 {latencies[100]:.2f} ms, "
              f"p99 {latencies[197]:.2f} ms; load average {os.getloadavg()[0]:.2f}")
    finally:
        host.send_signal(signal.SIGTERM)
        host.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
