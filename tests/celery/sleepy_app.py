"""A real Celery worker's app for the visibility-timeout comparison: one task that counts its
executions in Redis and sleeps. Run as `python -m celery -A sleepy_app worker -Q visibility_probe`."""

import os
import time

import redis
from celery import Celery

BROKER_URL = os.environ["CELERY_BROKER_URL"]
VISIBILITY_TIMEOUT = 8

app = Celery("sleepy", broker=BROKER_URL, backend=BROKER_URL)
app.conf.update(
    # kombu 5.7 sweeps for messages past their visibility timeout every interval x throttle
    # seconds (100 s by default); its docs advise lowering both with a low visibility timeout.
    broker_transport_options={
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    task_default_queue="visibility_probe",
    # Acknowledge after the task, as deployments that must not lose a task when a worker dies do;
    # until then the message is "unacked" in kombu's emulation, and handed out again once its
    # visibility timeout has passed.
    task_acks_late=True,
)


@app.task(name="tests.sleep_and_count")
def sleep_and_count(key, seconds):
    redis.Redis.from_url(BROKER_URL).incr(key)
    time.sleep(seconds)
    return seconds
