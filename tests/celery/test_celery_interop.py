"""Unmodified Celery client code against taskhost hosts: results, progress, failures, revoke, eta,
expires, workflows, remote control and Flower.

The stubs in conftest.py are what a Celery producer has: task names. taskhost's plugins answer to
them (`tests.hello` is the hello example, `bench.noop` the no-op kernels fixture, the CVD name the
shipped cvd plugin).
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from celery import chain, chord, group
from celery.exceptions import TaskRevokedError, TimeLimitExceeded
from celery.result import AsyncResult

from conftest import BROKER_URL, app, hello, noop, run_cvd_simulation, taskhost_events, taskhost_task

HERE = os.path.dirname(os.path.abspath(__file__))


def seconds(api_time):
    """Seconds since the epoch of a time as the taskhost API shows it (RFC 3339)."""
    return datetime.fromisoformat(api_time.replace("Z", "+00:00")).timestamp()


def poll(check, timeout):
    """The first truthy value of `check()` within `timeout` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    return None


def wait_until(check, timeout, what):
    value = poll(check, timeout)
    if not value:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return value


# --- results -------------------------------------------------------------------------------------


def test_send_task_and_get_return_the_plugins_result():
    result = app.send_task("tests.hello", args=["Ada"])
    assert result.get(timeout=30) == {"greeting": "Hello, Ada!", "rounds": 0, "digest": 0}
    assert result.state == "SUCCESS"
    assert result.date_done is not None
    # The same task, seen from taskhost: it ran once, under the Celery task id.
    task = taskhost_task(result.id)
    assert task["status"] == "succeeded" and task["attempts"] == 1 and task["plugin"] == "celery_hello"


def test_delay_on_a_stub_task_and_keyword_arguments_work():
    assert hello.delay("Grace").get(timeout=30)["greeting"] == "Hello, Grace!"
    assert hello.apply_async(kwargs={"name": "Kw"}).get(timeout=30)["greeting"] == "Hello, Kw!"


def test_progress_reaches_on_message_and_info():
    result = hello.delay("Progress", 1500)
    seen = []
    value = result.get(timeout=30, on_message=lambda m: seen.append((m["status"], m["result"])))
    assert value["greeting"] == "Hello, Progress!"
    states = [s for s, _ in seen if s in ("STARTED", "PROGRESS", "SUCCESS")]
    # On a failure, say what taskhost stored for the run (with times), to tell a progress report that
    # never came from one the result writer folded into the final state.
    def events():
        return [(e["event_type"], e["ts"], isinstance(e["data"], dict) and e["data"].get("percent"))
                for e in taskhost_events(result.id)]

    assert "PROGRESS" in states and states[-1] == "SUCCESS", (seen, events())
    progress = [r["progress"] for s, r in seen if s == "PROGRESS"]
    assert progress == sorted(progress) and 0 < progress[-1] <= 100, (progress, events())


def test_a_cvd_run_reports_progress_and_thickness_through_task_info():
    recipe = {
        "mode": "thermal", "temperature_c": 800.0, "pressure_torr": 0.5,
        "precursor_flow_sccm": 80.0, "carrier_gas_flow_sccm": 500.0,
        "film_material": "Si3N4", "target_thickness_nm": 100.0, "duration_sec": 3600.0,
    }
    # As in the CVD notes: positional run_id and recipe, polled through task.info.
    result = run_cvd_simulation.delay("CVD_RUN_CELERY", recipe, {"speedup": 1000.0})
    info = wait_until(
        lambda: result.state == "PROGRESS" and "current_thickness_nm" in result.info and result.info,
        30,
        "a PROGRESS state with the thickness",
    )
    assert 0 <= info["progress"] <= 100
    assert info["current_thickness_nm"] >= 0
    final = result.get(timeout=60)
    assert final["run_id"] == "CVD_RUN_CELERY"


# --- failures ------------------------------------------------------------------------------------


def test_invalid_input_raises_value_error():
    with pytest.raises(ValueError, match="must not be empty"):
        hello.delay("").get(timeout=30)


def test_a_plugin_error_raises_an_exception_named_for_it():
    result = hello.delay("Boom", None, "the furnace tripped")
    with pytest.raises(Exception) as raised:
        result.get(timeout=30)
    assert type(raised.value).__name__ == "PluginError"
    assert "the furnace tripped" in str(raised.value)
    assert result.state == "FAILURE"
    assert result.traceback


def test_a_time_limit_raises_time_limit_exceeded():
    result = hello.apply_async(("Slow", 10_000), time_limit=1)
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=30)


def test_an_unknown_task_fails_as_not_registered():
    from celery.exceptions import NotRegistered

    with pytest.raises(NotRegistered):
        app.send_task("tests.no_such_task", args=[1]).get(timeout=30)


def test_wrong_arguments_raise_type_error():
    with pytest.raises(TypeError, match="positional"):
        app.send_task("tests.hello", args=["a", 1, None, "extra"]).get(timeout=30)


def test_a_malformed_message_is_dead_lettered_and_consumption_goes_on(redis_client):
    redis_client.lpush("celery", b"this is not a kombu envelope")
    assert hello.delay("After").get(timeout=30)["greeting"] == "Hello, After!"
    letters = wait_until(lambda: redis_client.lrange("taskhost:celery:dead-letters", 0, -1), 10, "a dead letter")
    assert any(b"not a JSON envelope" in letter and b"this is not a kombu envelope" in letter for letter in letters)


def test_a_success_already_stored_is_never_overwritten(redis_client):
    import json
    import uuid

    # A result another worker stored for this id first (Celery's worker keeps a SUCCESS too).
    task_id = str(uuid.uuid4())
    stored = {"status": "SUCCESS", "result": "first", "traceback": None, "children": [],
              "date_done": "2026-01-01T00:00:00+00:00", "task_id": task_id}
    redis_client.setex(f"celery-task-meta-{task_id}", 600, json.dumps(stored))
    app.send_task("tests.hello", args=["Second"], task_id=task_id)
    wait_until(lambda: (t := taskhost_task_or_none(task_id)) and t["status"] == "succeeded", 30, "the task to run")
    # The result writer settles the task (takes it out of the in-flight set) without writing.
    wait_until(lambda: redis_client.zscore("taskhost:celery:inflight", task_id) is None, 10, "the result write")
    assert json.loads(redis_client.get(f"celery-task-meta-{task_id}")) == stored
    assert AsyncResult(task_id, app=app).get(timeout=5) == "first"


# --- revoke --------------------------------------------------------------------------------------


def test_revoking_a_queued_task_means_it_never_runs():
    result = hello.apply_async(("Never",), countdown=5)
    wait_until(lambda: taskhost_task_or_none(result.id), 10, "the task to reach taskhost")
    result.revoke()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=30)
    assert result.state == "REVOKED"
    task = taskhost_task(result.id)
    assert task["status"] == "cancelled" and task["attempts"] == 0, task


def test_revoke_with_terminate_stops_a_running_task_at_once():
    result = hello.delay("Long", 60_000)
    wait_until(lambda: result.state in ("STARTED", "PROGRESS"), 30, "the task to start")
    revoked_at = time.monotonic()
    result.revoke(terminate=True)
    with pytest.raises(TaskRevokedError, match="terminated"):
        result.get(timeout=30)
    seen_revoked = time.monotonic() - revoked_at
    task = taskhost_task(result.id)
    assert task["status"] == "cancelled", task
    events = taskhost_events(result.id)
    assert events[-1]["event_type"] == "run_cancelled"
    run_ms = events[-1]["data"]["duration_ms"]
    print(f"revoke(terminate=True): REVOKED seen by the client {seen_revoked * 1000:.0f} ms after the revoke; "
          f"the run lasted {run_ms} ms")
    # Stopped, not finished: the task was to compute for 60 s. How fast is measured by
    # bench/celery/bench.py --phases control, side by side with a Celery worker.
    assert run_ms < 60_000, run_ms


def taskhost_task_or_none(task_id):
    try:
        return taskhost_task(task_id)
    except Exception:
        return None


# --- eta, expires --------------------------------------------------------------------------------


def test_countdown_delays_the_start():
    sent = time.time()
    result = hello.apply_async(("Later",), countdown=2)
    assert result.get(timeout=30)["greeting"] == "Hello, Later!"
    task = taskhost_task(result.id)
    assert seconds(task["started_at"]) - sent >= 1.9, task


def test_eta_delays_the_start():
    eta = datetime.now(timezone.utc) + timedelta(seconds=2)
    result = hello.apply_async(("At eta",), eta=eta)
    result.get(timeout=30)
    task = taskhost_task(result.id)
    assert seconds(task["started_at"]) >= eta.timestamp() - 0.1, task


def test_a_task_past_its_expiry_is_revoked_not_run():
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    result = hello.apply_async(("Too late",), expires=past)
    with pytest.raises(TaskRevokedError, match="expired"):
        result.get(timeout=30)


def test_a_task_that_expires_while_it_waits_is_revoked():
    result = hello.apply_async(("Expires waiting",), countdown=3, expires=1)
    with pytest.raises(TaskRevokedError, match="expired"):
        result.get(timeout=30)
    assert taskhost_task(result.id)["status"] == "expired"


# --- workflows -----------------------------------------------------------------------------------


def test_a_chain_runs_its_steps_in_order_and_passes_results_on():
    workflow = chain(noop.s(), noop.s(), hello.si("End of chain"))
    result = workflow.apply_async()
    assert result.get(timeout=60)["greeting"] == "Hello, End of chain!"
    first, second = result.parent.parent, result.parent
    assert first.get(timeout=5) == {"value": 0} and second.get(timeout=5) == {"value": 0}
    # Each step started after the one before it ended.
    tasks = [taskhost_task(r.id) for r in (first, second, result)]
    ends = [seconds(t["finished_at"]) for t in tasks]
    starts = [seconds(t["started_at"]) for t in tasks]
    assert ends[0] <= starts[1] and ends[1] <= starts[2], tasks


def test_link_runs_on_success_with_the_result_and_link_error_on_failure():
    callback = noop.s().freeze()
    ok = hello.apply_async(("Linked",), link=noop.s().set(task_id=callback.id))
    ok.get(timeout=30)
    assert AsyncResult(callback.id, app=app).get(timeout=30) == {"value": 0}

    errback_id = "errback-" + str(time.time_ns())
    failing = hello.apply_async(("",), link_error=hello.s().set(task_id=errback_id))
    with pytest.raises(ValueError):
        failing.get(timeout=30)
    # Celery calls a link_error task with the failed task's id.
    assert AsyncResult(errback_id, app=app).get(timeout=30)["greeting"] == f"Hello, {failing.id}!"


def test_a_group_runs_every_member():
    results = group(hello.s(f"member {i}") for i in range(4)).apply_async()
    values = results.get(timeout=60)
    assert [v["greeting"] for v in values] == [f"Hello, member {i}!" for i in range(4)]


def test_a_chord_is_refused_with_a_clear_error():
    result = chord([noop.s(), noop.s()], noop.s()).apply_async()
    with pytest.raises(NotImplementedError, match="chords are not supported"):
        result.get(timeout=30)


# --- remote control and monitoring ---------------------------------------------------------------


def test_inspect_ping_is_answered_by_the_host():
    started = time.monotonic()
    replies = app.control.inspect(timeout=5, limit=1).ping()
    elapsed = time.monotonic() - started
    node = next(iter(replies))
    assert node.startswith("taskhost@") and replies[node] == {"ok": "pong"}
    # With limit=1 the call returns with the first reply instead of waiting out its timeout; how
    # fast is measured by bench/celery/bench.py --phases control, beside a Celery worker.
    print(f"inspect ping answered by {node} in {elapsed * 1000:.1f} ms")


def test_the_celery_command_line_pings_the_host():
    out = subprocess.run(
        [sys.executable, "-m", "celery", "-b", BROKER_URL, "inspect", "ping", "--timeout", "1"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "taskhost@" in out.stdout and "pong" in out.stdout, out.stdout


def test_inspect_shows_registered_names_stats_and_active_tasks():
    inspect = app.control.inspect(timeout=2)
    registered = inspect.registered()
    node = next(n for n in registered if n.startswith("taskhost@"))
    assert "tests.hello" in registered[node]
    assert "app.tasks.cvd_orchestration.run_cvd_simulation" in registered[node]
    stats = inspect.stats()[node]
    assert stats["pool"]["max-concurrency"] >= 1 and stats["broker"]["transport"] == "redis"
    running = hello.delay("Active", 3000)
    wait_until(lambda: running.state in ("STARTED", "PROGRESS"), 30, "the task to start")
    active = app.control.inspect(timeout=2).active()
    assert any(t["id"] == running.id and t["name"] == "tests.hello" for t in active[node]), active
    running.revoke(terminate=True)


def task_events_seen(pubsub, into):
    """Adds the task events published so far (on `/<db>.celeryev/task.multi`) to `into`, by task id."""
    import base64
    import json

    while (message := pubsub.get_message(timeout=0.01)) is not None:
        envelope = json.loads(message["data"])
        for event in json.loads(base64.b64decode(envelope["body"])):
            into.setdefault(event["uuid"], []).append(event["type"])
    return into


def set_task_events(method):
    """`enable_events` / `disable_events`, as `celery control` sends them, waiting for the host's reply."""
    replies = app.control.broadcast(method, reply=True, timeout=2)
    assert any(node.startswith("taskhost@") for reply in replies for node in reply), replies


def test_task_events_are_sent_only_while_enabled_as_by_a_celery_worker(redis_client):
    events = redis_client.pubsub(ignore_subscribe_messages=True)
    events.psubscribe("/*.celeryev/task.*")
    seen = {}
    try:
        set_task_events("disable_events")
        quiet = hello.delay("no events")
        quiet.get(timeout=30)
        set_task_events("enable_events")
        loud = hello.delay("events")
        loud.get(timeout=30)
        expected = {"task-received", "task-started", "task-succeeded"}
        wait_until(lambda: set(task_events_seen(events, seen).get(loud.id, [])) >= expected, 10,
                   f"the task events of a task run while they are enabled (seen: {seen})")
        # Messages are taken in order and results written in order: had the first task had any
        # events, they would have come before the second one's.
        assert quiet.id not in seen, seen[quiet.id]
    finally:
        set_task_events("disable_events")
        events.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_flower_lists_the_host_and_its_tasks():
    port = free_port()
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-b", BROKER_URL, "flower", f"--port={port}", "--address=127.0.0.1"],
        env={**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        def workers():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/workers?refresh=1", timeout=5) as r:
                    import json
                    body = json.loads(r.read())
                    return [n for n in body if n.startswith("taskhost@")]
            except Exception:
                return None

        nodes = wait_until(workers, 30, "Flower to list the host")

        def task_seen(task_id):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/task/info/{task_id}", timeout=5) as r:
                    import json
                    info = json.loads(r.read())
                    return info if info.get("state") == "SUCCESS" else None
            except Exception:
                return None

        # Task events start when Flower sends `enable_events` (every 5 s, the first 5 s after it
        # starts), as with a Celery worker: send tasks until Flower shows one.
        def a_task_seen():
            result = hello.delay("Flower")
            result.get(timeout=30)
            return poll(lambda: task_seen(result.id), 2)

        info = wait_until(a_task_seen, 40, "Flower to see a task")
        assert info["name"] == "tests.hello" and info["worker"] in nodes, info
    finally:
        flower.terminate()
        flower.wait(timeout=10)
