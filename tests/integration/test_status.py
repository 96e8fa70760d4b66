"""``stalwart status``: queues, delayed set, dead letters, breakers, limits and live workers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from stalwart.cli.main import main
from stalwart.testing import WorkerProcess, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def status(redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., str]:
    monkeypatch.setenv("STALWART_REDIS_URL", redis_url)

    def run(*argv: str) -> str:
        capsys.readouterr()
        assert main(["status", *argv]) == 0
        return capsys.readouterr().out

    return run


def test_status_without_workers_shows_queued_and_delayed_jobs(app: Any, r: Any, status: Callable[..., str]) -> None:
    for n in range(3):
        app.send_task("tests.integration.jobs.record", [f"q{n}"])
    app.send_task("tests.integration.jobs.record", ["later"], countdown=300)
    app.send_task("tests.integration.jobs.record", ["other"], queue="reports", countdown=300)
    app.stalwart.limits.touch("breakers", "payments")
    r.hset(app.stalwart.keys.breaker("payments", "state"), mapping={"state": "open"})
    app.stalwart.limits.touch("limits", "api")
    r.hset(app.stalwart.keys.limit("api", "config"), mapping={"kind": "rate", "rate": "10/s"})

    data = json.loads(status("--json"))
    queues = {q["queue"]: q for q in data["queues"]}
    assert queues["celery"] == {"queue": "celery", "ready": 3, "delayed": 1}
    assert queues["reports"] == {"queue": "reports", "ready": 0, "delayed": 1}
    assert data["dlq"] == {"total": 0, "by_reason": {}}
    assert [(b["name"], b["state"]) for b in data["breakers"]] == [("payments", "open")]
    assert data["limits"] == [{"name": "api", "config": {"kind": "rate", "rate": "10/s"}}]
    assert (data["workers"], data["live_workers"]) == ([], 0)

    table = status()
    for heading in ("QUEUES", "DEAD LETTERS", "BREAKERS", "LIMITS", "WORKERS  (live: 0)"):
        assert heading in table
    assert "payments" in table
    assert "rate=10/s" in table


def test_status_counts_dead_letters_by_reason_and_lists_live_workers(
    make_worker: Callable[..., WorkerProcess], app: Any, status: Callable[..., str]
) -> None:
    workers = [make_worker(), make_worker()]
    app.send_task("tests.integration.jobs.permanent", ["p1"])
    app.send_task("tests.integration.jobs.permanent", ["p2"])
    app.send_task("tests.integration.jobs.always_fail", ["a1"])
    wait_until(lambda: app.stalwart.dlq.stats()["total"] == 3, 30)

    data = json.loads(status("--json"))
    assert data["dlq"] == {"total": 3, "by_reason": {"exhausted": 1, "permanent": 2}}
    assert data["live_workers"] == 2
    assert sorted(w["hostname"].split("@")[0] for w in data["workers"]) == sorted(w.name for w in workers)
    assert "WORKERS  (live: 2)" in status()

    workers[0].stop()  # a clean shutdown removes the worker from the list
    data = json.loads(status("--json"))
    assert [w["hostname"].split("@")[0] for w in data["workers"]] == [workers[1].name]
