"""Trace ids flow app → job → retries → child jobs → replays, into structured JSON logs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from stalwart.dlq.replay import replay
from stalwart.testing import WorkerProcess, wait_until

pytestmark = pytest.mark.integration
TASKS = "tests.integration.jobs,tests.integration.jobs_ops"
TRACED = "tests.integration.jobs_ops.traced"


def records(worker: WorkerProcess) -> list[dict[str, Any]]:
    """The worker's JSON log records (the banner and tracebacks are not JSON lines)."""
    out = []
    for line in worker.log().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def running(worker: WorkerProcess, key: str) -> list[dict[str, Any]]:
    return [r for r in records(worker) if r.get("message") == f"traced {key} running"]


@pytest.fixture
def worker(make_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    return make_worker(env={"STALWART_TASK_MODULES": TASKS})


def test_logs_carry_the_trace_through_retries_and_child_jobs(worker: WorkerProcess, app: Any, r: Any) -> None:
    result = app.send_task(TRACED, ["t1"], {"children": 2, "mode": "fail_first"}, trace_id="trace-from-app")
    wait_until(lambda: r.llen("traces:t1.0") and r.llen("traces:t1.1"), 30, message="child jobs ran")
    assert {t.decode() for k in ("t1", "t1.0", "t1.1") for t in r.lrange(f"traces:{k}", 0, -1)} == {"trace-from-app"}

    wait_until(lambda: len(running(worker, "t1.1")) == 1, 10)
    parent = running(worker, "t1")
    assert [(p["task_id"], p["attempt"], p["trace_id"]) for p in parent] == [
        (result.id, 1, "trace-from-app"), (result.id, 2, "trace-from-app"),
    ]
    assert all(p["task_name"] == TRACED and p["level"] == "INFO" for p in parent)
    child = running(worker, "t1.0")[0]
    assert child["trace_id"] == "trace-from-app"
    assert child["task_id"] != result.id
    retry_line = next(x for x in records(worker)
                      if x["logger"] == "stalwart.job.delivery" and x.get("task_id") == result.id)
    assert (retry_line["attempt"], retry_line["trace_id"]) == (1, "trace-from-app")


def test_a_trace_id_is_created_at_enqueue_when_the_app_gives_none(worker: WorkerProcess, app: Any, r: Any) -> None:
    app.send_task(TRACED, ["t2"])
    wait_until(lambda: r.llen("traces:t2"), 30)
    trace = r.lindex("traces:t2", 0).decode()
    assert len(trace) == 32
    wait_until(lambda: running(worker, "t2"), 10)
    assert running(worker, "t2")[0]["trace_id"] == trace


def test_a_replayed_job_keeps_its_trace(worker: WorkerProcess, app: Any, r: Any) -> None:
    app.send_task(TRACED, ["t3"], {"mode": "die_first"}, trace_id="trace-replayed")
    wait_until(lambda: app.stalwart.dlq.stats()["total"], 30, message="job dead-lettered")
    r.set("revived:t3", 1)
    report = replay(app, [app.stalwart.dlq.list()[0].id])
    assert len(report.replayed) == 1
    wait_until(lambda: r.llen("traces:t3") == 2, 30, message="replayed job ran")
    assert [t.decode() for t in r.lrange("traces:t3", 0, -1)] == ["trace-replayed"] * 2
    wait_until(lambda: len(running(worker, "t3")) == 2, 10)
    assert {x["trace_id"] for x in running(worker, "t3")} == {"trace-replayed"}


def test_text_logs_for_local_runs(make_worker: Callable[..., WorkerProcess], app: Any, r: Any) -> None:
    worker = make_worker(env={"STALWART_TASK_MODULES": TASKS, "STALWART_LOG_FORMAT": "text"})
    result = app.send_task(TRACED, ["t4"], trace_id="trace-text")
    wait_until(lambda: r.llen("traces:t4"), 30)
    wait_until(lambda: "traced t4 running" in worker.log(), 10)
    line = next(x for x in worker.log().splitlines() if "traced t4 running" in x)
    assert f"[{TRACED} {result.id} #1 trace=trace-text]" in line
