"""Shared limits and breakers through real worker processes (issue 4 acceptance)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.policies.breakers import admin, status
from stalwart.store.keys import Keys
from stalwart.testing import WorkerProcess, wait_until

pytestmark = pytest.mark.integration

ENV = {"STALWART_TASK_MODULES": "tests.integration.jobs,tests.integration.jobs_limits"}
JOBS = "tests.integration.jobs_limits"
K = Keys("stalwart")


def workers(make_worker: Callable[..., WorkerProcess], n: int, concurrency: int = 1) -> list[WorkerProcess]:
    started = [make_worker(env=ENV, concurrency=concurrency, start=False) for _ in range(n)]
    for w in started:
        w.start(wait=False)
    for w in started:
        w.wait_ready()
    return started


def dead_letters(app: Stalwart) -> int:
    return int(app.stalwart.dlq.stats()["total"])


def test_four_processes_share_one_rate_limit(
    app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    workers(make_worker, 4)
    for i in range(160):
        app.send_task(f"{JOBS}.hammered", args=["h"], task_id=f"hammer-{i}")
    wait_until(lambda: r.llen("grants:h") > 0, 30, message="no job was granted")
    first = float(r.lindex("grants:h", 0) or 0)
    wait_until(lambda: float(r.lindex("grants:h", -1) or 0) >= first + 10.5, 30, 0.2,
               message="the backlog did not last 10 s")
    grants = [float(t) for t in r.lrange("grants:h", 0, -1)]
    in_ten = [t for t in grants if t <= first + 10.0]
    assert len(in_ten) <= 10 * 10 + 5  # rate x time + burst, across all four processes
    assert len(in_ten) >= 0.9 * 10 * 10
    # deferred by the limit, never retried: every job still had all its attempts
    assert {int(x) for x in r.lrange("retries:h", 0, -1)} == {0}
    assert dead_letters(app) == 0


def test_concurrency_never_exceeds_its_slots(
    app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    workers(make_worker, 3, concurrency=2)
    for i in range(12):
        app.send_task(f"{JOBS}.pooled", args=["p", 0.3], task_id=f"pool-{i}")
    wait_until(lambda: int(r.get("effect:p") or 0) == 12, 60, message="pooled jobs did not finish")
    assert int(r.get("max:p") or 0) == 2
    assert dead_letters(app) == 0


def test_sigkilled_holder_slot_comes_back_after_its_lease(
    app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    holder = make_worker(env=ENV, concurrency=1, queues="holder")
    make_worker(env=ENV, concurrency=1)
    app.send_task(f"{JOBS}.sole", args=["long", 60], queue="holder")
    wait_until(lambda: r.get("started:long"), 30, message="the holder never started")
    time.sleep(2.5)  # longer than the lease: renewals keep the slot while the holder lives
    assert r.zcard(K.limit("sole", "holders")) == 1
    holder.kill()
    sec, usec = r.time()
    killed = sec + usec / 1e6
    app.send_task(f"{JOBS}.sole", args=["next", 0])
    wait_until(lambda: r.get("started:next"), 20, message="the slot never came back")
    waited = float(r.get("started:next") or 0) - killed
    assert waited > 0
    # the slot came back because the dead holder's lease expired and was reclaimed, not released
    assert int(r.hget(K.limit("sole", "stats"), "reclaimed") or 0) == 1


def test_breaker_shared_by_four_processes(
    app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    workers(make_worker, 4)
    for i in range(8):
        app.send_task(f"{JOBS}.call_dependency", args=[f"warm-{i}"])
    wait_until(lambda: len(r.keys("effect:warm-*")) == 8, 30, message="healthy calls did not finish")
    time.sleep(2.1)  # let the healthy calls leave the 2 s window
    r.set("dependency:down", 1)
    for i in range(30):
        app.send_task(f"{JOBS}.call_dependency", args=[f"job-{i}"])
    wait_until(lambda: status(r, K, "dependency")["state"] != "closed", 30, message="the breaker never opened")
    wait_until(lambda: status(r, K, "dependency")["transitions"] >= 5, 30, 0.1,
               message="the breaker did not go through two half-open rounds")
    r.delete("dependency:down")
    by_round = {int(k): int(v) for k, v in r.hgetall("dependency:calls_by_round").items()}
    # closed (transition count 0): exactly min_calls reach the failing dependency, fleet-wide,
    # because calls in flight that could trip the breaker hold new ones back until recorded
    assert by_round.pop(0) == 4
    # each half-open round (even transition counts) lets at most 2 probes through, fleet-wide
    assert all(n <= 2 for n in by_round.values())
    assert int(r.get("dependency:max_half_open_inflight") or 0) <= 2
    wait_until(lambda: len(r.keys("effect:job-*")) == 30, 60, message="jobs did not finish after recovery")
    assert status(r, K, "dependency")["state"] == "closed"
    assert dead_letters(app) == 0


def test_breaker_deferred_jobs_keep_their_attempts_and_fallback_runs(
    app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    admin(r, K, "maintenance", "force_open")
    admin(r, K, "degradable", "force_open")
    workers(make_worker, 2)
    for i in range(5):
        app.send_task(f"{JOBS}.maintained", args=["m"], task_id=f"maint-{i}")
    app.send_task(f"{JOBS}.degradable", args=["d"])
    wait_until(lambda: r.get("fallback:d"), 20, message="the fallback did not run")
    time.sleep(1.5)
    assert r.get("effect:m") is None  # deferred while the breaker is forced open
    admin(r, K, "maintenance", "close")
    wait_until(lambda: int(r.get("effect:m") or 0) == 5, 30, message="deferred jobs did not run")
    assert {int(x) for x in r.lrange("retries:m", 0, -1)} == {0}
    assert r.get("effect:d") is None
    assert dead_letters(app) == 0


def test_limit_inside_a_body_defers_without_using_an_attempt(
    app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    workers(make_worker, 1, concurrency=2)
    for _ in range(3):
        app.send_task(f"{JOBS}.limited_in_body", args=["b"])
    wait_until(lambda: int(r.get("effect:b") or 0) == 3, 30, message="in-body limited calls did not finish")
    assert dead_letters(app) == 0
    retries = [int(x) for x in r.lrange("retries:b", 0, -1)]
    assert len(retries) > 3, "the 1/s limit should have deferred some of the three calls"
    assert set(retries) == {0}


def test_a_failing_fallback_is_a_failed_attempt_retried_then_dead_lettered(
    app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    admin(r, K, "broken-fallback", "force_open")
    workers(make_worker, 1)
    app.send_task(f"{JOBS}.broken_fallback", args=["f"])
    wait_until(lambda: dead_letters(app) == 1, 30, message="the job was not dead-lettered")
    [entry] = app.stalwart.dlq.list()
    assert (entry.reason, entry.exc_type, len(entry.attempts)) == ("exhausted", "ConnectionError", 2)
    assert int(r.get("fallback:f") or 0) == 2
    assert r.get("effect:f") is None
