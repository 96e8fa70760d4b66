"""Run-time switches through real workers: pause, resume and disable by task pattern."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from stalwart.cli.main import main
from stalwart.policies import switches
from stalwart.testing import WorkerProcess, wait_until

pytestmark = pytest.mark.integration
TASKS = "tests.integration.jobs,tests.integration.jobs_ops"
STAMP = "tests.integration.jobs_ops.stamp"


def starts(r: Any, key: str) -> list[tuple[int, int, str]]:
    """(start ms, retries, worker) of every run of stamp(key)."""
    out = []
    for raw in r.lrange(f"starts:{key}", 0, -1):
        at, retries, host = raw.decode().split(":", 2)
        out.append((int(at), int(retries), host))
    return out


@pytest.fixture
def cli(redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., str]:
    monkeypatch.setenv("STALWART_REDIS_URL", redis_url)

    def run(*argv: str, status: int = 0) -> str:
        assert main(list(argv)) == status
        return capsys.readouterr().out

    return run


def test_pause_stops_a_task_on_every_worker_within_a_second_and_resume_restarts_it(
    make_worker: Callable[..., WorkerProcess], app: Any, r: Any, cli: Callable[..., str]
) -> None:
    workers = [make_worker(env={"STALWART_TASK_MODULES": TASKS}) for _ in range(2)]
    total = 300
    for _ in range(total):
        app.send_task(STAMP, ["p"])
    wait_until(lambda: len({host for _, _, host in starts(r, "p")}) == 2, 30, message="both workers run stamp")

    cli("switch", "pause", "tests.integration.jobs_ops.st*")
    paused_at = int(switches.read(r, app.stalwart.keys)["tests.integration.jobs_ops.st*"]["at"])  # type: ignore[call-overload]
    assert "paused" in cli("switch", "ls")
    time.sleep(2.5)
    ran = starts(r, "p")
    late = [at - paused_at for at, _, _ in ran if at > paused_at + 1000]
    assert late == [], f"started {len(late)} jobs more than 1 s after the pause: {late[:5]} ms"
    assert len(ran) < total

    cli("switch", "resume", "tests.integration.jobs_ops.st*")
    wait_until(lambda: len(starts(r, "p")) >= total, 60, message="paused jobs resume")
    ran = starts(r, "p")
    assert len(ran) == total
    assert {retries for _, retries, _ in ran} == {0}  # deferrals kept every job's attempts
    assert {host.split("@")[0] for _, _, host in ran} == {w.name for w in workers}
    assert app.stalwart.dlq.stats()["total"] == 0  # paused is not an error


def test_disabled_jobs_are_dead_lettered_with_reason_disabled(
    make_worker: Callable[..., WorkerProcess], app: Any, r: Any, cli: Callable[..., str]
) -> None:
    make_worker(env={"STALWART_TASK_MODULES": TASKS})
    out = cli("switch", "disable", "tests.integration.jobs.record", "--json")
    assert '"disabled"' in out
    time.sleep(1.0)
    app.send_task("tests.integration.jobs.record", ["off"])
    wait_until(lambda: app.stalwart.dlq.stats()["total"], 30, message="disabled job dead-lettered")
    entry = app.stalwart.dlq.list()[0]
    assert (entry.reason, entry.task) == ("disabled", "tests.integration.jobs.record")
    assert r.get("effect:off") is None

    cli("switch", "resume", "tests.integration.jobs.record")
    cli("switch", "resume", "tests.integration.jobs.record", status=1)  # nothing left to resume
    time.sleep(1.0)  # a change reaches every worker within a second
    app.send_task("tests.integration.jobs.record", ["on"])
    wait_until(lambda: r.get("effect:on"), 30, message="resumed task runs")


def received(worker: WorkerProcess, task: str) -> int:
    """How many deliveries of ``task`` the worker received (Celery logs each one)."""
    return sum(1 for line in worker.log().splitlines() if f"Task {task}[" in line and "] received" in line)


def test_paused_jobs_are_parked_and_not_delivered_again_until_resumed(
    make_worker: Callable[..., WorkerProcess], app: Any, r: Any, cli: Callable[..., str]
) -> None:
    """Issue 10.7: paused jobs used to come back every ~1.1 s, each taking a worker slot."""
    worker = make_worker(env={"STALWART_TASK_MODULES": TASKS})
    cli("switch", "pause", STAMP)
    time.sleep(1.0)  # every worker sees a switch within a second
    total = 40
    for _ in range(total):
        app.send_task(STAMP, ["parked"])
    wait_until(lambda: received(worker, STAMP) >= total and r.llen("celery") == 0, 30,
               message="paused jobs delivered once")
    time.sleep(2.5)  # twice the old re-deferral period
    assert received(worker, STAMP) == total, "paused jobs were delivered again while paused"
    assert r.zcard(app.stalwart.keys.delayed("celery")) == 0
    assert starts(r, "parked") == []

    cli("switch", "resume", STAMP)
    wait_until(lambda: len(starts(r, "parked")) == total, 30, message="parked jobs run after resume")
    assert received(worker, STAMP) == 2 * total  # each parked job delivered once more, and run
    assert {retries for _, retries, _ in starts(r, "parked")} == {0}
    assert app.stalwart.dlq.stats()["total"] == 0
