"""Issue 10.2/10.3 red team: the idempotent-enqueue record is not kept alive by the lease.

Guarantee broken: "every lease also keeps its state alive" and the README's "a key already
pending, running or done within its retention returns the existing task id and publishes
nothing". The job hash's TTL is extended by every lease renewal (job_renew), but the enqueue
record ``<prefix>:{job:k:<key>}:enqueued`` keeps the TTL it got at enqueue time
(enqueue_claim-2.lua ``SET ... PX ttl``) and nothing ever extends it.

How: STALWART_IDEMPOTENCY_TTL=2 (lease 1 s); a keyed job runs for 7 s; after 3 s the same key is
enqueued again while the first job is still running (and again after it is done).
Observed: the second enqueue returns a *new* task id and publishes a second message (that copy is
then dropped as ``stale`` by job_begin, so the caller's AsyncResult never completes).
Expected: the running (or just done) job's task id, and nothing published.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from stalwart.testing import WorkerProcess, wait_until
from tests.integration.reliability import CHAOS_ENV, SLOW_ONCE, job_states, make_app

pytestmark = pytest.mark.integration
ENV = {**CHAOS_ENV, "STALWART_IDEMPOTENCY_TTL": "2", "STALWART_LEASE_SECONDS": "1"}


@pytest.fixture
def capp(worker_env: dict[str, str]) -> Any:
    return make_app({**worker_env, **ENV})


def test_enqueue_of_a_running_keyed_job_past_the_enqueue_ttl_returns_the_running_task_id(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    make_worker(env=ENV, concurrency=1)
    first = capp.send_task(SLOW_ONCE, ("long", 7.0)).id
    wait_until(lambda: r.get("starts:long") == b"1", 30, message="job never started")
    time.sleep(3.0)  # past STALWART_IDEMPOTENCY_TTL, the job still runs (its lease is renewed)
    assert job_states(capp, SLOW_ONCE, ["long"])["long"] == "running"
    queued_before = r.llen("celery")
    second = capp.send_task(SLOW_ONCE, ("long", 7.0)).id
    published = r.llen("celery") - queued_before
    assert (second, published) == (first, 0), (
        f"a running key was enqueued again: new task id {second} (running: {first}), "
        f"{published} message(s) published"
    )
