"""Fair lanes vs a ``stalwart_fair`` header with a tiny positive weight (real redis-server, real worker).

Guarantee (README "Tenant fairness"; brief): a hostile ``stalwart_fair`` header never breaks
the rotation; "A job enqueued for a new key starts after at most one job of each other key with
queued jobs"; the plain list is one more key of weight 1, "so neither side starves".
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from stalwart.app import Stalwart
from stalwart.store import broker as broker_store
from stalwart.testing import WorkerProcess, wait_until
from tests.integration.fair_adversarial_helpers import ENV, FAIR, PLAIN, SLACK, fair_app, runs, starts

__all__ = ["fair_app"]


def _take_and_ack(app: Stalwart) -> str:
    """One fetch by the real fetch script (as a consumer would), acknowledged at once."""
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        lists = channel.stalwart_lists([app.conf.task_default_queue])
        found = broker_store.fetch(channel.client, channel.stalwart.keys, lists, channel.stalwart.limits)
        assert found is not None
        broker_store.ack(channel.client, channel.stalwart.keys, found.tag)
        return found.tag


def test_a_tiny_header_weight_freezes_the_lane_clock_and_starves_plain_jobs_and_new_keys(
    fair_app: Stalwart, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    """Guarantee: new keys and plain jobs keep their turn whatever weight a header claims.

    How: a producer sends three messages with ``stalwart_fair = ["evil", 1e-300]`` (the weight
    passes ``check_weight``: finite, > 0, <= 1000). Two of them are taken by the real fetch
    script (so the lane's virtual time ``v`` becomes 1e300; the third keeps the lane, and so its
    clock, alive). Then tenant A queues 40 fair jobs, 5 plain jobs and tenant B 5 fair jobs
    arrive, and a real worker (c=1) serves them.
    Observed: at v = 1e300, ``start + 1/w`` == ``start`` for every weight-1 key (float
    absorption), so every tail stays at v and every job gets the same start tag: the lane is
    served FIFO by sequence. B waits for all of A's backlog, and the plain list (whose start
    ``max(v, plain)`` is never below the head's) waits for the whole lane.
    Expected: B/n and plain/n start within one round of the three keys (index < 3*(n+1)+SLACK),
    as tests/integration/test_fair_workers.py checks without the hostile header.
    """
    hostile = {"stalwart_fair": ["evil", 1e-300]}
    for n in range(3):
        fair_app.send_task(PLAIN, [900 + n], headers=hostile)
    _take_and_ack(fair_app)
    _take_and_ack(fair_app)
    fair_app.enqueue_many(FAIR, [(["A", n], {}) for n in range(40)])
    for n in range(5):
        fair_app.send_task(PLAIN, [n])
    for n in range(5):
        fair_app.send_task(FAIR, ["B", n])
    make_worker(env=ENV, concurrency=1)
    late = [f"B/{n}" for n in range(5)] + [f"plain/{n}" for n in range(5)]
    wait_until(lambda: all(runs(r, late)), 60)
    order = [s for s in starts(r) if not s.startswith("plain/90")]
    for n in range(5):
        assert order.index(f"B/{n}") < 3 * (n + 1) + SLACK, order
        assert order.index(f"plain/{n}") < 3 * (n + 1) + SLACK, order
