"""Fair lanes vs a ``stalwart_fair`` header whose weight is a huge JSON integer (real redis-server,
real workers).

Guarantee (brief; stalwart.policies.fairness.job_of: "anything else is queued plainly"): a hostile
``stalwart_fair`` header (wrong types, huge values, ...) never crashes the publish or the fetch and
never loses the job; a dead worker's jobs are restored and run once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
import redis
from celery import Celery

from stalwart.app import Stalwart
from stalwart.testing import WorkerProcess, wait_until
from tests.integration.fair_adversarial_helpers import ENV, PLAIN, fair_app, runs, starts

__all__ = ["fair_app"]
HUGE = 10 ** 400  # JSON integer; math.isfinite() raises OverflowError on it


@pytest.fixture
def plain(redis_url: str) -> Iterator[Celery]:
    """Another service's producer: stock Celery and kombu, no Stalwart."""
    producer = Celery("plain-producer", broker=redis_url)
    yield producer
    producer.close()


def test_a_huge_integer_weight_does_not_crash_the_publish(
    fair_app: Stalwart, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    """Guarantee: a bad ``stalwart_fair`` header is ignored (queued plainly); the publish never fails.

    How: ``send_task(plain_job, headers={"stalwart_fair": ["k", 10**400]})`` through Stalwart's
    transport. Observed: ``OverflowError: int too large to convert to float`` from
    ``check_weight`` (math.isfinite) via ``fair_of`` in ``Channel._put``: the enqueue raises.
    Wrong types, NaN, inf and negative weights are handled; a big int is not.
    Expected: the message is queued plainly and runs once.
    """
    fair_app.send_task(PLAIN, [1], headers={"stalwart_fair": ["k", HUGE]})  # raises today
    make_worker(env=ENV, concurrency=1)
    wait_until(lambda: all(runs(r, ["plain/1"])), 30)
    assert runs(r, ["plain/1"]) == [1]


def test_a_huge_integer_weight_blocks_the_restore_of_a_dead_workers_jobs(
    fair_app: Stalwart, plain: Celery, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    """Guarantee: nothing is lost under SIGKILL; a dead worker's jobs are restored and run once.

    How: a stock Celery producer (plain kombu: it LPUSHes, so the header is not looked at on
    publish) sends ``plain_job(1, sleep=4)`` with ``stalwart_fair = ["k", 10**400]`` and a
    second ``plain_job(2, sleep=4)`` without it. A worker (c=2) takes both and is SIGKILLed
    mid-run. A new worker's visibility sweep must restore both.
    Observed: the restore calls ``fair_of_item`` on the first record, whose ``job_of`` raises
    OverflowError; ``restore_visible`` only catches connection errors, so every sweep dies on
    that record: it is never restored (stays in ``unacked`` forever), and neither is any record
    ordered after it (job 2 here).
    Expected: both jobs start again after the restore and finish (each body completes once).
    """
    plain.send_task(PLAIN, args=[1, 4.0], headers={"stalwart_fair": ["k", HUGE]})
    first = make_worker(env=ENV, concurrency=2)
    wait_until(lambda: "plain/1" in starts(r), 30)
    plain.send_task(PLAIN, args=[2, 4.0])
    wait_until(lambda: "plain/2" in starts(r), 30)
    first.kill()
    assert r.hlen("unacked") == 2
    make_worker(env=ENV, concurrency=2)
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: all(runs(r, ["plain/1", "plain/2"])), 60)
    assert runs(r, ["plain/1", "plain/2"]) == [1, 1], (runs(r, ["plain/1", "plain/2"]), r.hlen("unacked"))
