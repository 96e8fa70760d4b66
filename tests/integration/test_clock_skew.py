"""One clock (issue 9, point 6): workers and producers whose clocks are off by a minute change nothing.

Each skewed process runs with ``tests/clock_skew`` on its path, whose ``sitecustomize`` shifts
``time.time()``. The unacked index, its re-stamps and the restore sweep, deadlines and the delayed
set all read the Redis clock, so: no early restore, no early expiry, no late expiry.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.testing import REPO_ROOT, WorkerProcess, wait_until

from .reliability import CHAOS_ENV, SLOW_ONCE, counts

pytestmark = pytest.mark.integration
SKEW_DIR = str(Path(__file__).resolve().parents[1] / "clock_skew")
FAST = {**CHAOS_ENV, "STALWART_RECOVERY_SECONDS": "3"}  # visibility timeout 3 s, a sweep every second


def skewed(seconds: float) -> dict[str, str]:
    """Environment of a process whose clock is ``seconds`` off."""
    return {"PYTHONPATH": os.pathsep.join([SKEW_DIR, str(REPO_ROOT)]), "STALWART_TEST_CLOCK_SHIFT": str(seconds)}


def produce(env: dict[str, str], shift: float, *calls: str) -> list[str]:
    """Run ``app.send_task(...)`` calls in a producer process whose clock is ``shift`` off; task ids."""
    code = "\n".join([
        "from stalwart import Settings, Stalwart",
        "import time; assert abs(time.time() - __import__('datetime').datetime.now().timestamp()) > 1 or "
        f"{shift} == 0",
        "app = Stalwart('producer', settings=Settings.from_env())",
        *(f"print(app.send_task({call}).id)" for call in calls),
    ])
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env, **skewed(shift)},
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.split()


def received(workers: list[WorkerProcess], task_id: str) -> int:
    return sum(len(re.findall(rf"\[{task_id}\] received", w.log())) for w in workers)


def test_no_early_restore_between_workers_a_minute_apart(
    worker_env: dict[str, str], make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    """The holder's clock is a minute behind (its re-stamps would look old), the sweeper's a minute
    ahead (everything would look old to it): the held job is never put back while it runs."""
    holder = make_worker(env={**FAST, **skewed(-60)})
    [task_id] = produce({**worker_env, **FAST}, 0, f"{SLOW_ONCE!r}, args=['held', 8.0]")
    wait_until(lambda: counts(r, "starts", ["held"])["held"] == 1, 30, message="the held job never started")
    sweeper = make_worker(env={**FAST, **skewed(60)})
    wait_until(lambda: counts(r, "effect", ["held"])["held"] == 1, 30, message="the held job never finished")
    assert received([holder, sweeper], task_id) == 1  # never restored while its worker lived
    assert counts(r, "starts", ["held"])["held"] == 1
    assert "restored" not in sweeper.log()


def test_a_skewed_producers_deadline_is_neither_early_nor_late(
    worker_env: dict[str, str], make_worker: Callable[..., WorkerProcess], app: Stalwart, r: redis.Redis
) -> None:
    env = {**worker_env, **CHAOS_ENV}
    record = "'tests.integration.jobs.record'"
    # A producer a minute behind: deadline=20 must not have passed on arrival.
    [early] = produce(env, -60, f"{record}, args=['behind'], deadline=20")
    # A producer a minute ahead: deadline=2 must pass two seconds after it sent, not sixty-two.
    [late] = produce(env, 60, f"{record}, args=['ahead'], deadline=2, queue='later'")
    sent_s = r.time()[0]
    wait_until(lambda: r.time()[0] >= sent_s + 4, 10, 0.2)  # the Redis clock passes its deadline
    make_worker(env=CHAOS_ENV, queues="celery,later")
    wait_until(lambda: r.get("effect:behind") == b"1", 30, message="a job from a slow-clock producer expired")
    entries = wait_until(lambda: [e for e in app.stalwart.dlq.iter() if e.task_id == late], 30,
                         message="a job from a fast-clock producer outlived its deadline")
    assert entries[0].reason == "expired"
    assert r.get("effect:ahead") is None
    assert not [e for e in app.stalwart.dlq.iter() if e.task_id == early]
