"""The Celery side of the CPU-bound benchmark: the `cvd` plugin's computation, ported to Python
(`cvd_port.py`), as the Celery task the plugin answers to, run by a real Celery worker (prefork).

Like taskhost's Celery results, the task reports PROGRESS (`progress`, `current_thickness_nm`, ...)
at most every 200 ms, and the last sample's state is written before SUCCESS."""

import os
import time

from celery import Celery

import cvd_port

app = Celery("bench-cvd", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_BROKER_URL"])
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])

PROGRESS_INTERVAL = 0.2


@app.task(name="app.tasks.cvd_orchestration.run_cvd_simulation", bind=True)
def run_cvd_simulation(self, run_id=None, recipe=None, simulation=None, seed=0):
    last = [0.0]

    def progress(percent, meta):
        now = time.monotonic()
        if now - last[0] >= PROGRESS_INTERVAL or percent >= 100.0:
            last[0] = now
            self.update_state(state="PROGRESS", meta=meta)

    return cvd_port.run({"run_id": run_id, "recipe": recipe, "simulation": simulation or {}, "seed": seed}, progress)
