"""The Celery side of the benchmark: a no-op task under the name taskhost's `celery_noop` plugin
answers to, run by a real Celery worker (prefork)."""

import os

from celery import Celery

app = Celery("bench", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_BROKER_URL"])
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])


@app.task(name="bench.noop")
def noop(*args, **kwargs):
    return {"value": 0}
