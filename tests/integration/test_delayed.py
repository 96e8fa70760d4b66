"""The delayed set on real workers: retries and countdowns wait there, movers lose nothing (item 5)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.testing import WorkerProcess, wait_until

pytestmark = pytest.mark.integration

TASK_MODULES = "tests.integration.jobs,tests.integration.jobs_envelope"
RECORD = "tests.integration.jobs.record"
HINTED = "tests.integration.jobs_envelope.hinted"


def effects(r: redis.Redis, prefix: str) -> dict[str, int]:
    keys = r.keys(f"effect:{prefix}*")
    return {k.decode(): int(v) for k, v in zip(keys, r.mget(keys), strict=True)} if keys else {}


def test_retry_waits_in_the_delayed_set_not_unacked(
    app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    make_worker(env={"STALWART_TASK_MODULES": TASK_MODULES})
    delayed = app.stalwart.keys.delayed("celery")
    app.send_task(HINTED, args=["waiting", 4.0])
    wait_until(lambda: r.llen("ran:waiting") == 1, message="first attempt never ran")
    # The successor waits in the delayed set; the failed delivery is acknowledged.
    wait_until(lambda: r.zcard(delayed) == 1 and r.hlen("unacked") == 0, 3,
               message="the retry is held unacked instead of waiting in the delayed set")
    assert r.llen("ran:waiting") == 1
    wait_until(lambda: r.llen("ran:waiting") == 2, message="the retry never ran")
    assert r.zcard(delayed) == 0


def test_many_movers_publish_each_due_job_once(
    app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    workers = [make_worker(), make_worker()]  # two movers race for the same delayed set
    results = [app.send_task(RECORD, args=[f"once{i}"], countdown=0.5 + (i % 20) * 0.1) for i in range(200)]
    wait_until(lambda: len(effects(r, "once")) == 200, 60, 0.2, "countdown jobs did not all run")
    wait_until(lambda: r.llen("celery") == 0 and r.hlen("unacked") == 0, 30)
    assert set(effects(r, "once").values()) == {1}
    received = re.findall(r"Task \S+\[([0-9a-f-]+)\] received", "".join(w.log() for w in workers))
    assert sorted(received) == sorted(res.id for res in results)  # no job published twice


def test_killing_movers_mid_move_loses_nothing(
    app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    delayed = app.stalwart.keys.delayed("celery")
    worker = make_worker()
    total = 300
    for i in range(total):
        app.send_task(RECORD, args=[f"k{i}"], countdown=0.3 + (i % 100) * 0.15)
    waiting_at_kill = []
    for threshold in (40, 120, 200):
        wait_until(lambda t=threshold: len(effects(r, "k")) >= t, 60, 0.02, f"fewer than {threshold} ran")
        worker.kill()  # SIGKILL the whole worker, mover included, while jobs come due
        waiting_at_kill.append(r.zcard(delayed))
        worker = make_worker()
    assert waiting_at_kill[0] > 0  # the kills did land while jobs were still coming due
    wait_until(lambda: len(effects(r, "k")) == total, 60, 0.2,
               f"jobs lost: {total - len(effects(r, 'k'))} never ran")
    assert r.zcard(delayed) == 0
    assert min(effects(r, "k").values()) >= 1
    wait_until(lambda: r.llen("celery") == 0 and r.hlen("unacked") == 0, 30, 0.2, "queue not drained")
    assert app.stalwart.dlq.stats()["total"] == 0
