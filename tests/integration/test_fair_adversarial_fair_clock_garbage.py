"""Fair lanes vs garbage in a lane's ``:clock`` hash (real redis-server, real worker).

Guarantee (brief; fetch-4+.lua header; README "Tenant fairness"): garbage in the lane/tails/clock
keys never crashes the fetch and never loses a job ("a lane member or lane key that cannot be
read is quarantined or skipped like a bad list item or key").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import redis

from stalwart.app import Stalwart
from stalwart.testing import WorkerProcess, wait_until
from tests.integration.fair_adversarial_helpers import ENV, FAIR, PLAIN, fair_app, lane, runs

__all__ = ["fair_app"]


def test_a_nan_lane_clock_makes_every_fetch_delete_a_lane_job(
    fair_app: Stalwart, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    """Guarantee: nothing queued in a lane is lost, whatever garbage sits in the lane's keys.

    How: five fair jobs of key T are queued in the lane (worker stopped), then the lane's clock
    field ``v`` is overwritten with the text ``nan`` (a value ``tonumber`` reads as NaN). Three
    plain jobs follow. A real worker (c=1) is started.

    Observed: each fetch pops the lane head (ZREM), then ``advance`` runs
    ``ZREMRANGEBYSCORE tails -inf nan`` which errors ("min or max is not a float"); a Redis
    script is not rolled back, so the job is gone from the lane but was never recorded unacked
    nor quarantined. Every fetch (the worker retries once a second) destroys one more lane job,
    until the last one (whose ZREM empties the lane, so ``advance`` deletes the clock instead):
    runs=[0, 0, 0, 0, 1], lane=0, unacked=0, DLQ=0 - 4 of 5 jobs silently lost. Meanwhile the
    fetch of every list of the worker fails (one script), so the plain jobs wait until the lane
    has been destroyed.
    Expected: the 5 fair jobs run once each (or, at worst, are quarantined to the DLQ), and the
    fetch of the other lists keeps working.
    """
    fair = [f"T/{n}" for n in range(5)]
    for n in range(5):
        fair_app.send_task(FAIR, ["T", n])
    keys = lane(fair_app)
    assert r.zcard(keys.lane) == 5
    r.hset(keys.clock, "v", "nan")
    plain = [f"plain/{n}" for n in range(3)]
    for n in range(3):
        fair_app.send_task(PLAIN, [n])
    make_worker(env=ENV, concurrency=1)
    wait_until(lambda: all(runs(r, plain)), 60)
    # give the fair jobs every chance: whatever is still in the lane, in flight or dead-lettered
    accounted = lambda: (sum(runs(r, fair)) + r.zcard(keys.lane) + r.hlen("unacked")  # noqa: E731
                         + sum(1 for _ in fair_app.stalwart.dlq.iter()))
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: all(runs(r, fair)), 15)
    assert accounted() >= 5, (f"fair jobs lost: runs={runs(r, fair)} lane={r.zcard(keys.lane)} "
                              f"unacked={r.hlen('unacked')} dlq={sum(1 for _ in fair_app.stalwart.dlq.iter())}")
    assert runs(r, fair) == [1] * 5
