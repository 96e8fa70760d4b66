"""Debounce: a relative ``expires``/``deadline`` on a debounced enqueue under clock skew (issue 12
red team, brought in).

Guarantee: the Redis clock decides a debounced job's deadline, as it does a plain enqueue's
(tests/integration/test_clock_skew.py): the enqueue script makes ``expires=30`` absolute on the
Redis clock, and the burst's job carries what is left of it (shifted onto the Redis clock once,
by the transport, like any fresh enqueue).

How: a producer whose clock is 60 s behind enqueues a debounced task (wait 1 s) with
``expires=30`` (or ``deadline=30``); a worker with a correct clock runs the burst's trigger and
job. A burst whose call's deadline passed before it was due is dead-lettered ``expired``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.testing import WorkerProcess, wait_until
from tests.integration.jobs_flow_adversarial import ENV, JOBS, dead_reasons, make_app, runs
from tests.integration.test_clock_skew import skewed

pytestmark = pytest.mark.integration


@pytest.fixture
def flow_app(worker_env: dict[str, str]) -> Stalwart:
    return make_app(worker_env)


def produce(env: dict[str, str], shift: float, code: str) -> str:
    """Run one debounced enqueue in a producer process whose clock is ``shift`` s off; its task id."""
    script = "\n".join([
        "from stalwart import Settings, Stalwart",
        f"app = Stalwart('producer', settings=Settings.from_env(), include=['{JOBS}'])",
        "app.loader.import_default_modules()",
        f"print({code}.id)",
    ])
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, **env, **skewed(shift)},
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.split()[-1]


@pytest.mark.parametrize("shift", [-60, 60])
@pytest.mark.parametrize("option", ["expires", "deadline"])
def test_a_debounced_deadline_from_a_skewed_producer_is_measured_on_the_redis_clock(
    option: str, shift: int, flow_app: Stalwart, worker_env: dict[str, str],
    make_worker: Callable[..., WorkerProcess], r: redis.Redis,
) -> None:
    env = {**worker_env, **ENV}
    make_worker(env=ENV, concurrency=1)
    doc = f"skew-{option}-{shift}"
    task_id = produce(env, shift, f"app.send_task('{JOBS}.bounce', args=['{doc}', 1], {option}=30)")
    wait_until(lambda: runs(r, doc) or dead_reasons(flow_app, task_id), 30, 0.1,
               message="the burst neither ran nor was dead-lettered")
    assert dead_reasons(flow_app, task_id) == []
    assert [x["id"] for x in runs(r, doc)] == [task_id]


def test_a_burst_due_after_its_calls_deadline_is_dead_lettered_expired(
    flow_app: Stalwart, worker_env: dict[str, str], make_worker: Callable[..., WorkerProcess], r: redis.Redis,
) -> None:
    make_worker(env=ENV, concurrency=1)
    # wait is 1 s: the call's deadline (0.3 s) passes before the burst is due, on any clock.
    task_id = produce({**worker_env, **ENV}, 60, f"app.send_task('{JOBS}.bounce', args=['late', 1], expires=0.3)")
    wait_until(lambda: dead_reasons(flow_app, task_id), 30, 0.1, message="the late burst was not dead-lettered")
    assert dead_reasons(flow_app, task_id) == ["expired"]
    assert runs(r, "late") == []
