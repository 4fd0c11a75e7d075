"""The Celery side of the benchmark: a no-op task under the name taskhost's `celery_noop` plugin
answers to, and a task that computes for a while under the name `celery_hello` answers to (for
revoke), run by a real Celery worker (prefork)."""

import os
import time

from celery import Celery

app = Celery("bench", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_BROKER_URL"])
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])


@app.task(name="bench.noop")
def noop(*args, **kwargs):
    return {"value": 0}


@app.task(name="tests.hello")
def hello(name, spin_ms=0, fail=False):
    """The `hello` example's Celery twin, for the control phase: computes for `spin_ms`."""
    deadline = time.monotonic() + spin_ms / 1000
    while time.monotonic() < deadline:
        pass
    if fail:
        raise ValueError(f"asked to fail for {name}")
    return f"Hello, {name}!"
