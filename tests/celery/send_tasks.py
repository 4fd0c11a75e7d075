"""Sends Celery tasks with a plain Celery client and prints how each ended, as JSON.

Used by `tests/e2e/celery.rs` for checks that need a host of their own (tenants). Not a pytest
module. Usage:

    CELERY_BROKER_URL=redis://... python send_tasks.py '[{"task": "tests.hello", "args": ["ada"], "queue": "q"}]'

Prints one JSON list: for each task `{"id", "state", "result"}` on success, or `{"id", "state",
"exc_type", "exc_message"}` when `get()` raised.
"""

import json
import os
import sys

from celery import Celery

url = os.environ["CELERY_BROKER_URL"]
app = Celery("send-tasks", broker=url, backend=url)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])

sends = json.loads(sys.argv[1])
results = [
    app.send_task(s["task"], args=s.get("args", []), kwargs=s.get("kwargs", {}), queue=s["queue"]) for s in sends
]
outcomes = []
for result in results:
    try:
        value = result.get(timeout=60)
        outcomes.append({"id": result.id, "state": result.state, "result": value})
    except Exception as e:  # what get() raised is the outcome
        outcomes.append({"id": result.id, "state": result.state, "exc_type": type(e).__name__, "exc_message": str(e)})
print(json.dumps(outcomes))
