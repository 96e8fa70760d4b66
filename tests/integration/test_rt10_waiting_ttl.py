"""Issue 10.2/10.8 red team: a job waiting for its retry loses its generation when the hash TTL
runs out, and a leftover copy of the older generation then runs.

Guarantee: a copy of an older generation is dropped as stale (job_begin's gen check), so a
leftover (a duplicate publish, a copy restored after a blip) never runs once the job has moved on;
"a lease that keeps a job alive also keeps its state alive". How: STALWART_DONE_TTL=1 (tests may
shrink TTLs); a job calls self.retry(countdown=4) - job_end records ``waiting`` gen 1 and sets the
hash's TTL to the bare done TTL (job_end-1.lua: PEXPIRE ARGV[4], not past the successor's due
time, not even the 2-lease floor job_begin uses). After 2 s the hash is gone; a leftover copy of
the gen-0 message arrives. Observed: job_begin sees no hash and claims it: the body runs again
at gen 0 (and retries again), beside the pending gen-1 retry. Expected: the gen-0 copy is
dropped as stale; attempt 0 runs once. (Its extra retry may run again later too, once the done
hash's 1 s TTL passes: that part is the documented DONE_TTL limit and not asserted.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.job.header import HEADER, Meta
from stalwart.settings import Settings
from stalwart.testing import WorkerProcess, wait_until

from .test_rt10_canvas import ENV as BASE_ENV
from .test_rt10_canvas import MODULES

pytestmark = pytest.mark.integration
ENV = {**BASE_ENV, "STALWART_DONE_TTL": "1"}
RETRY_LATER = "tests.integration.jobs_rt10.retry_later"


@pytest.fixture
def capp(worker_env: dict[str, str]) -> Any:
    application = Stalwart("tests", settings=Settings.from_env({**worker_env, **ENV}), include=MODULES.split(","))
    application.loader.import_default_modules()
    return application


def test_a_leftover_older_generation_copy_is_dropped_while_the_retry_waits(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    make_worker(env=ENV, concurrency=1)
    meta = Meta()
    res = capp.send_task(RETRY_LATER, ("w", 4.0), headers={HEADER: meta.to_header()}, stalwart_successor=True)
    job = capp.stalwart.keys.job(f"t:{res.id}")
    wait_until(lambda: r.hget(job, "state") == b"waiting", 30, message="the retry was never recorded")
    assert r.hget(job, "gen") == b"1"
    time.sleep(2.0)  # the retry is due in 4 s; the job is still waiting for it
    waiting_hash_left = r.exists(job)
    # a leftover copy of the gen-0 message (duplicate publish / restored copy)
    capp.send_task(RETRY_LATER, ("w", 4.0), task_id=res.id, headers={HEADER: meta.to_header()},
                   stalwart_successor=True)
    wait_until(lambda: r.hget(job, "state") == b"done", 30, message="the retry never finished")
    time.sleep(1.0)
    runs = [int(x) for x in r.lrange("runs:w", 0, -1)]
    assert runs.count(0) == 1, (
        f"the gen-0 body ran {runs.count(0)} times (retries seen: {runs}); the waiting job's hash "
        f"{'was' if waiting_hash_left else 'was already gone'} before the leftover arrived"
    )
