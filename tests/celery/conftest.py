"""Fixtures of the Celery interoperability tests.

These tests are driven by `tests/e2e/celery.rs`, which starts a redis-server and a taskhost host
(`host run --redis URL --celery`) and runs pytest here with:

- CELERY_BROKER_URL: the Redis both Celery and taskhost use (broker and result backend);
- TASKHOST_API: the host's HTTP address, to look at the tasks from taskhost's side.

The client code is plain Celery: an app with the broker and backend, `send_task`, stub tasks whose
names the host's plugins answer to (`.delay()` works without the real implementation), and
`AsyncResult`. Nothing in it knows about taskhost.
"""

import json
import os
import urllib.request

import pytest
import redis
from celery import Celery


def _need(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run these tests through `cargo test --test e2e celery`")
    return value


BROKER_URL = _need("CELERY_BROKER_URL")
TASKHOST_API = _need("TASKHOST_API")


def make_app(name="client", **conf):
    app = Celery(name, broker=BROKER_URL, backend=BROKER_URL)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"], **conf)
    return app


app = make_app()


# Stubs: the client's view of tasks that taskhost's plugins run. Their bodies never run here.
@app.task(name="tests.hello")
def hello(name, spin_ms=None, fail=None):
    raise RuntimeError("runs on taskhost")


@app.task(name="bench.noop")
def noop(*args, **kwargs):
    raise RuntimeError("runs on taskhost")


@app.task(name="app.tasks.cvd_orchestration.run_cvd_simulation")
def run_cvd_simulation(run_id, recipe, simulation=None):
    raise RuntimeError("runs on taskhost")


@pytest.fixture(scope="session")
def celery_app():
    return app


@pytest.fixture(scope="session")
def redis_client():
    return redis.Redis.from_url(BROKER_URL)


def taskhost(path):
    """GET a path of the host's API; returns the JSON body."""
    with urllib.request.urlopen(TASKHOST_API + path, timeout=10) as response:
        return json.loads(response.read())


def taskhost_task(task_id):
    return taskhost(f"/api/v1/tasks/{task_id}")


def taskhost_events(task_id):
    return taskhost(f"/api/v1/tasks/{task_id}/events")["events"]
