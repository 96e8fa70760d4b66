"""Singleton: an enqueue after the waiting job was dead-lettered (issue 12 red team, brought in).

Guarantee: no merged request is lost (every enqueue is served by a run that started after it). A
singleton job dead-lettered for any reason stops being its key's waiting job (the DeadWaiting
hook, on the envelope's ``after_job`` with a ``dead`` outcome), so a later enqueue makes a new job.

How: a holder of key ``x`` runs 6 s. A second enqueue W (``expires=1``) becomes the waiting job;
it is denied the slot and its deadline passes while deferred, so it is dead-lettered ``expired``.
Then a third enqueue N (no deadline) is made, after W's dead letter exists: it is a new job, and
it runs after the holder. The same with W dead-lettered for bad arguments (never run at all).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.testing import WorkerProcess, wait_until
from tests.integration.jobs_flow_adversarial import ENV, JOBS, dead_reasons, make_app, redis_ms, spans, started

pytestmark = pytest.mark.integration


@pytest.fixture
def flow_app(worker_env: dict[str, str]) -> Stalwart:
    return make_app(worker_env)


def waiting_of(r: redis.Redis, account: str) -> bytes | None:
    found = r.hget(f"stalwart:{{singleton:{JOBS}.single:{account}}}", "waiting")
    return bytes(found) if found is not None else None


def test_an_enqueue_after_the_waiting_job_expired_makes_a_new_job_that_runs(
    flow_app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    make_worker(env=ENV, concurrency=2)
    holder = flow_app.send_task(f"{JOBS}.single", args=["x", 6.0], kwargs={"tag": "holder"}).id
    wait_until(lambda: holder in started(r, "x"), 30, message="the holder did not start")
    waiting = flow_app.send_task(f"{JOBS}.single", args=["x", 0.1], kwargs={"tag": "w"}, expires=1).id
    assert waiting_of(r, "x") == waiting.encode()
    wait_until(lambda: dead_reasons(flow_app, waiting), 20, 0.05, message="the waiting job was not dead-lettered")
    wait_until(lambda: waiting_of(r, "x") is None, 5, 0.05, message="the dead job is still the waiting one")
    assert dead_reasons(flow_app, waiting) == ["expired"]
    assert holder not in {s["id"] for s in spans(r, "x")}  # the holder still runs
    asked = redis_ms(r)
    later = flow_app.send_task(f"{JOBS}.single", args=["x", 0.1], kwargs={"tag": "n"}).id
    assert later != waiting, "the new enqueue was merged into a job dead-lettered before it was made"
    wait_until(lambda: len(spans(r, "x")) == 2, 30, 0.1, message="the new job did not run")
    holder_span, later_span = spans(r, "x")
    assert (holder_span["id"], later_span["id"]) == (holder, later)
    assert later_span["start"] >= max(asked, holder_span["end"])  # after N was made, one at a time
    assert waiting not in started(r, "x")


def test_a_waiting_job_dead_lettered_as_disabled_stops_waiting(
    flow_app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    make_worker(env=ENV, concurrency=2)
    holder = flow_app.send_task(f"{JOBS}.single", args=["y", 4.0], kwargs={"tag": "holder"}).id
    wait_until(lambda: holder in started(r, "y"), 30, message="the holder did not start")
    waiting = flow_app.send_task(f"{JOBS}.single", args=["y", 0.1], kwargs={"tag": "w"}).id
    assert flow_app.send_task(f"{JOBS}.single", args=["y", 0.1]).id == waiting  # merged while it waits
    # The task is disabled while W is deferred: its next delivery is dead-lettered "disabled".
    flow_app.stalwart.switch_store.set(f"{JOBS}.single", "disabled")
    try:
        wait_until(lambda: dead_reasons(flow_app, waiting), 30, 0.05, message="W was not dead-lettered")
        assert dead_reasons(flow_app, waiting) == ["disabled"]
        wait_until(lambda: waiting_of(r, "y") is None, 5, 0.05, message="the dead job is still the waiting one")
    finally:
        flow_app.stalwart.switch_store.clear(f"{JOBS}.single")
    later = flow_app.send_task(f"{JOBS}.single", args=["y", 0.1], kwargs={"tag": "n"}).id
    assert later != waiting
    assert waiting_of(r, "y") == later.encode()
