"""Issue 10.1 red team: a duplicate delivery of a done job re-runs its canvas callback.

test_a_duplicate_delivery_of_a_done_job_does_not_run_its_link_again
  Guarantee: one delivery = one owner, effects exactly once; "a duplicate delivery of a done job
  returns the stored result without running the body". How: a job with a ``link`` callback runs
  and finishes on a real worker; then a second delivery of the same message (same task id,
  header and generation: a duplicate publish / a copy restored after a connection blip) arrives.
  Observed: job_begin answers ``done``, Delivery.not_run returns the stored result, Celery's
  tracer takes it as a success and applies the ``link`` callback again (with a fresh task id), so
  the callback's body runs twice. Expected: the callback runs once.
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
from tests.integration.reliability import counts

pytestmark = pytest.mark.integration
MODULES = "tests.integration.jobs,tests.integration.jobs_chaos,tests.integration.jobs_rt10"
ENV = {"STALWART_TASK_MODULES": MODULES}
RECORD = "tests.integration.jobs_rt10.rt_record"


@pytest.fixture
def capp(worker_env: dict[str, str]) -> Any:
    application = Stalwart("tests", settings=Settings.from_env({**worker_env, **ENV}), include=MODULES.split(","))
    application.loader.import_default_modules()
    return application


def test_a_duplicate_delivery_of_a_done_job_does_not_run_its_link_again(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    make_worker(env=ENV, concurrency=1)
    link = capp.signature(RECORD, ("cb",), immutable=True)
    res = capp.send_task(RECORD, ("a",), link=link)
    wait_until(lambda: r.get("effect:cb") == b"1", 30, message="callback never ran")
    # the same message delivered again (same task id, generation 0)
    capp.send_task(RECORD, ("a",), task_id=res.id, link=link,
                   headers={HEADER: Meta().to_header()}, stalwart_successor=True)
    wait_until(lambda: r.llen("celery") == 0 and r.hlen("unacked") == 0, 30)
    time.sleep(2.0)
    assert counts(r, "effect", ["a", "cb"]) == {"a": 1, "cb": 1}, "the done job's callback ran again"
