"""Issue 10.1 red team: a byte-identical duplicate publish of a running message is dead-lettered
as ``malformed`` (and its task id marked FAILURE) instead of being deferred or dropped.

Guarantee: "a second delivery of a running message (... duplicate publish of the same message
...) never runs the body beside the first"; the DLQ keeps jobs that died with a precise reason.
How: a keyed job runs on a real worker (threads pool, c=2, and prefork c=2); the exact bytes of
its message (taken from kombu's unacked record) are pushed onto the queue again, as a client
library's retried LPUSH whose first reply was lost does.
Observed: the fetch script sees the delivery tag in flight and quarantines the copy
(``fetch-4+.lua``: 'another message with delivery tag ... is in flight: a duplicate'); the
consumer writes a ``malformed`` DLQ entry (unreplayable, one Sentry event) for a job that then
completes fine, and marks its task id FAILURE in the result backend.
Expected: the copy is treated as a second delivery of a running job (busy -> deferred, then
dropped once done): the job done, effect 1, no DLQ entry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

from stalwart.testing import WorkerProcess, wait_until
from tests.integration.reliability import CHAOS_ENV, SLOW_ONCE, counts, job_states, make_app

pytestmark = pytest.mark.integration
ENV = {**CHAOS_ENV, "STALWART_UNENFORCED_TIME_LIMITS": "warn"}


@pytest.fixture
def capp(worker_env: dict[str, str]) -> Any:
    return make_app({**worker_env, **ENV})


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_byte_identical_copy_of_a_running_message_is_not_dead_lettered(
    pool: str, capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    make_worker(env=ENV, pool=pool, concurrency=2)
    capp.send_task(SLOW_ONCE, ("dup", 4.0))
    wait_until(lambda: r.get("starts:dup") == b"1", 30, message="job never started")
    (record,) = r.hvals("unacked")
    tail = b',"",' + json.dumps("celery").encode() + b"]"
    assert record.startswith(b"[")
    assert record.endswith(tail)
    r.lpush("celery", record[1:-len(tail)])  # the same bytes again: a retried LPUSH
    wait_until(lambda: job_states(capp, SLOW_ONCE, ["dup"])["dup"] == "done" and r.llen("celery") == 0
               and r.hlen("unacked") == 0 and r.zcard(capp.stalwart.keys.delayed("celery")) == 0,
               60, 0.1, message="the job did not settle")
    assert counts(r, "effect", ["dup"]) == {"dup": 1}
    assert counts(r, "starts", ["dup"]) == {"dup": 1}
    reasons = [e.reason for e in capp.stalwart.dlq.iter()]
    assert reasons == [], f"{pool}: a duplicate of a running, healthy job was dead-lettered as {reasons}"
