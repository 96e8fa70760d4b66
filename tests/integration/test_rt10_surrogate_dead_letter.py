"""Issue 10.4/10.9 red team: a job whose error message holds a lone surrogate is never dead-lettered.

Guarantee: a job that fails permanently goes to the DLQ with its reason (never dropped), and every
CLI output shows stored text safely. How: a real worker runs a task that raises
``Permanent(f"no such file: {os.fsdecode(b'report-\\xff.csv')}")``, an everyday message: a
non-UTF-8 file name decoded with ``surrogateescape`` carries a lone surrogate (U+DCFF).
Observed: ``DeadLetterQueue.add`` -> the ``dlq_add`` script call raises ``UnicodeEncodeError``
('surrogates not allowed', redis-py cannot encode the entry's text arguments); Delivery.dead_letter
only catches StateStoreError, so the error escapes the envelope: no DLQ entry, the job hash is not
marked dead, and the message is acknowledged as a plain Celery failure - the job is lost.
Expected: one DLQ entry, reason ``permanent``, its message shown with the surrogate escaped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from stalwart.testing import WorkerProcess, wait_until

from .test_rt10_canvas import ENV, capp  # noqa: F401 - fixture

pytestmark = pytest.mark.integration
MISSING = "tests.integration.jobs_rt10.missing_file"


def test_a_permanent_failure_with_a_surrogate_in_its_message_is_dead_lettered(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]  # noqa: F811
) -> None:
    worker = make_worker(env=ENV, concurrency=1)
    name = b"report-\xff.csv".hex()
    capp.send_task(MISSING, (name,))
    wait_until(lambda: r.get(f"attempts:{name}") == b"1" and r.llen("celery") == 0 and r.hlen("unacked") == 0,
               30, 0.1, message="job never ran")
    time.sleep(2.0)
    entries = list(capp.stalwart.dlq.iter())
    assert [e.reason for e in entries] == ["permanent"], (
        "the failed job was not dead-lettered; worker log tail:\n" + worker.log()[-1500:]
    )
