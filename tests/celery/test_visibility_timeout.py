"""A task that runs longer than the Redis transport's visibility timeout: a real Celery worker runs
it again while it is still running (kombu hands the unacknowledged message out once more); taskhost
runs it once, since it takes each message with an atomic move and runs it under a renewed lease.

Both sides get the same 16 s task and the same 8 s `visibility_timeout`, at the same time. The
Celery worker acknowledges late (`task_acks_late`), as deployments that must not lose a task when a
worker dies do: an early acknowledgement avoids the duplicate but loses the task with its worker.
taskhost neither loses nor repeats it.
"""

import os
import subprocess
import sys
import time

from conftest import BROKER_URL, make_app, taskhost_events, taskhost_task

HERE = os.path.dirname(os.path.abspath(__file__))
TASK_SECONDS = 16
VISIBILITY_TIMEOUT = 8


def test_a_task_longer_than_the_visibility_timeout_runs_once_on_taskhost_and_more_than_once_on_celery(redis_client):
    counter = f"visibility-probe-runs-{time.time_ns()}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "sleepy_app", "worker", "-Q", "visibility_probe", "-c", "2",
         "-P", "prefork", "-n", f"sleepy-{os.getpid()}@%h", "--without-mingle", "--without-gossip",
         "--loglevel", "WARNING"],
        cwd=HERE, env={**os.environ, "CELERY_BROKER_URL": BROKER_URL},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        producer = make_app("producer", broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT})
        node = f"sleepy-{os.getpid()}@"
        deadline = time.monotonic() + 60
        while not any(n.startswith(node) for n in (producer.control.inspect(timeout=1).ping() or {})):
            assert time.monotonic() < deadline, "the Celery worker did not come up"
        started = time.monotonic()
        on_celery = producer.send_task("tests.sleep_and_count", args=[counter, TASK_SECONDS], queue="visibility_probe")
        on_taskhost = producer.send_task("tests.hello", args=["Long", TASK_SECONDS * 1000])

        assert on_taskhost.get(timeout=120)["greeting"] == "Hello, Long!"
        on_celery.get(timeout=120)
        # Give kombu's restore (every 10 s) the time to hand the message out again if it will.
        while time.monotonic() - started < TASK_SECONDS + 12 and int(redis_client.get(counter) or 0) < 2:
            time.sleep(0.5)
        celery_runs = int(redis_client.get(counter) or 0)

        task = taskhost_task(on_taskhost.id)
        taskhost_runs = sum(1 for e in taskhost_events(on_taskhost.id) if e["event_type"] == "run_started")
        print(f"{TASK_SECONDS} s task, visibility_timeout {VISIBILITY_TIMEOUT} s: "
              f"Celery worker ran it {celery_runs} times, taskhost {taskhost_runs} time(s)")
        assert task["attempts"] == 1 and taskhost_runs == 1, task
        assert celery_runs >= 2, f"the Celery worker ran it {celery_runs} time(s)"
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
