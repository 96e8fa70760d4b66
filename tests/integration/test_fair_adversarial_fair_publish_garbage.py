"""Fair lanes vs garbage in a lane's ``:tails``/``:clock`` keys, at publish (real redis-server).

Guarantee (brief): garbage in the lane/tails/clock keys never crashes the publish and never
loses the job.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.store.fair import LaneKeys
from stalwart.testing import WorkerProcess, wait_until
from tests.integration.fair_adversarial_helpers import ENV, FAIR, fair_app, lane, runs

__all__ = ["fair_app"]


def _clock_text(r: redis.Redis, keys: LaneKeys) -> None:
    r.hset(keys.clock, mapping={"v": "garbage", "seq": "1"})


def _tails_wrong_type(r: redis.Redis, keys: LaneKeys) -> None:
    r.set(keys.tails, "garbage")


@pytest.mark.parametrize("spoil", [_clock_text, _tails_wrong_type], ids=["clock-v-text", "tails-a-string"])
def test_a_fair_publish_survives_garbage_lane_state(
    spoil: Callable[[redis.Redis, LaneKeys], None],
    fair_app: Stalwart, r: redis.Redis, make_worker: Callable[..., WorkerProcess],
) -> None:
    """Guarantee: a fair job's publish never fails because of what lies in its lane's keys.

    How: the lane's clock field ``v`` is set to non-numeric text (or the tails key is made a
    string); then ``fair_job.delay("T", 1)`` on the real broker, and a worker is started.
    Observed: the publish raises redis ResponseError from fair_push ("bad argument #1 to 'max'
    (number expected, got nil)" / WRONGTYPE): every fair enqueue on that queue fails until an
    operator deletes the key (the fetch side tolerates the same garbage with pcall/`or 0`).
    Expected: the publish succeeds (the garbage is ignored or reset) and the job runs once.
    """
    spoil(r, lane(fair_app))
    fair_app.send_task(FAIR, ["T", 1])  # raises today
    make_worker(env=ENV, concurrency=1)
    wait_until(lambda: all(runs(r, ["T/1"])), 30)
    assert runs(r, ["T/1"]) == [1]
