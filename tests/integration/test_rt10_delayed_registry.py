"""Issue 10.3 red team: the delayed-queue registry grows for ever, and every mover tick pays for it.

Guarantee: "every Redis structure Stalwart writes is bounded (TTL or documented cap)"; "days of
traffic must not grow Redis or slow a script". How: countdown jobs are sent to 300 short-lived
queue names (per-pod direct queues, per-tenant queues: names that come and go), and a real
worker's mover moves them all when due. Observed: ``<prefix>:{registry}:delayed`` keeps all 300
names after every delayed set is empty (delayed_schedule SADDs, nothing ever SREMs), has no TTL,
and the mover runs one ``delayed_move`` script per name on every tick (0.05 s here), so an idle
worker's Redis load grows with every queue name ever used. Expected: names whose delayed set is
empty leave the registry (or the registry has a TTL/cap), and idle mover cost stays flat.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from stalwart.testing import WorkerProcess, wait_until

pytestmark = pytest.mark.integration
NAMES = 300


def test_the_delayed_registry_forgets_queues_whose_delayed_set_is_empty(
    app: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    make_worker(concurrency=1)
    for i in range(NAMES):
        app.send_task("tests.integration.jobs.record", (f"q{i}",), queue=f"pod-{i}.dq2", countdown=0.2)
    registry = app.stalwart.keys.registry("delayed")
    wait_until(lambda: all(r.llen(f"pod-{i}.dq2") == 1 for i in range(NAMES)), 30, 0.2,
               message="the mover did not move the countdown jobs")
    assert not any(r.exists(app.stalwart.keys.delayed(f"pod-{i}.dq2")) for i in range(NAMES))
    # the movers scan only names with something delayed: none is left once every set is empty
    wait_until(lambda: r.scard(registry) == 0, 10, 0.1,
               message=f"{r.scard(registry)} queue names stay registered with no delayed job and no TTL")
