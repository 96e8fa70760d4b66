"""Singleton through real worker processes and a real redis-server (issue 12, point 3)."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.errors import ConfigurationError
from stalwart.settings import Settings
from stalwart.store.flow import SingletonStore
from stalwart.store.keys import Keys
from stalwart.testing import WorkerProcess, wait_until
from tests.conftest import TEST_TASKS

pytestmark = pytest.mark.integration

JOBS = "tests.integration.jobs_flow"
ENV = {"STALWART_TASK_MODULES": f"{TEST_TASKS},{JOBS}"}
LEASE_MS = 3000  # STALWART_LEASE_SECONDS of the test workers
LATE_MS = 600  # mover tick, fetch and the envelope's jitter on a shared two-core machine


@pytest.fixture
def flow_app(worker_env: dict[str, str]) -> Stalwart:
    application = Stalwart("tests", settings=Settings.from_env({**worker_env, **ENV}), include=[TEST_TASKS, JOBS])
    application.loader.import_default_modules()
    return application


def redis_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def spans(r: redis.Redis, account: str) -> list[dict[str, Any]]:
    return sorted((json.loads(x) for x in r.lrange(f"spans:{account}", 0, -1)), key=lambda s: s["start"])


def started(r: redis.Redis, account: str) -> dict[str, int]:
    return {bytes(k).decode(): int(v) for k, v in r.hgetall(f"started:{account}").items()}


def enqueue_from_threads(app: Stalwart, r: redis.Redis, account: str, threads: int, each: int,
                         pause_ms: int) -> list[tuple[int, str, int]]:
    """(Redis ms before, task id returned, Redis ms after) of every enqueue, from several threads."""
    made: list[tuple[int, str, int]] = []
    lock = threading.Lock()

    def run() -> None:
        for _ in range(each):
            before = redis_ms(r)
            task_id = app.send_task(f"{JOBS}.single", args=[account, 0.3]).id
            after = redis_ms(r)
            with lock:
                made.append((before, task_id, after))
            wait_until(lambda since=after: redis_ms(r) - since >= pause_ms, 5, 0.01)  # type: ignore[misc]

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return made


def test_one_runs_one_waits_and_every_enqueue_is_served_by_a_later_run(
    flow_app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    for _ in range(2):
        make_worker(env=ENV, concurrency=2)
    other = [flow_app.send_task(f"{JOBS}.single", args=[f"other-{i}", 1.0]).id for i in range(2)]
    made = enqueue_from_threads(flow_app, r, "a", threads=6, each=12, pause_ms=100)
    ids = {task_id for _, task_id, _ in made}
    wait_until(lambda: ids <= set(started(r, "a")) and len(spans(r, "a")) == len(started(r, "a")), 60, 0.1,
               message="not every singleton job ran")
    runs = spans(r, "a")
    assert {s["id"] for s in runs} == ids  # each job ran once
    assert len(runs) == len(ids)
    for previous, following in itertools.pairwise(runs):
        assert following["start"] >= previous["end"]  # never two at once for one key
    order = [s["id"] for s in runs]
    for before, task_id, after in made:
        assert started(r, "a")[task_id] >= before  # served by a run that started after the ask
        j = order.index(task_id)
        if j >= 2:  # one waiting at a time: a job is asked for only after the one two back ended
            assert after > runs[j - 2]["end"]
    assert 3 <= len(ids) < len(made)  # requests were merged, and the key kept running
    # other keys ran beside key a: both started while a's jobs ran
    wait_until(lambda: all(s in started(r, "other-0") | started(r, "other-1") for s in other), 30)
    others = [spans(r, f"other-{i}")[0] for i in range(2)]
    assert others[0]["start"] < others[1]["end"]
    assert others[1]["start"] < others[0]["end"]


def test_a_killed_holder_gives_its_slot_back_within_the_lease(
    flow_app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    first = make_worker(env=ENV, concurrency=1)
    holder = flow_app.send_task(f"{JOBS}.single", args=["k", 4.0]).id
    wait_until(lambda: holder in started(r, "k"), 30, message="the holder did not start")
    make_worker(env=ENV, concurrency=2)  # ready before the kill: it takes the waiting job
    waiting = flow_app.send_task(f"{JOBS}.single", args=["k", 0.1]).id
    assert flow_app.send_task(f"{JOBS}.single", args=["k", 0.1]).id == waiting  # merged
    # the waiting job was denied and waits in the delayed set (not in a worker) when the holder dies
    wait_until(lambda: r.zcard("stalwart:{delayed:celery}") == 1, 30, 0.01, message="the waiting job was not deferred")
    first.kill()
    killed_at = redis_ms(r)
    wait_until(lambda: waiting in started(r, "k"), 30, message="the waiting job never ran")
    assert started(r, "k")[waiting] - killed_at <= LEASE_MS + LATE_MS
    wait_until(lambda: len(spans(r, "k")) == 2, 60, message="the killed holder did not run again")
    runs = spans(r, "k")  # the holder's redelivery runs again, never beside the waiting job
    assert {s["id"] for s in runs} == {holder, waiting}
    assert runs[1]["start"] >= runs[0]["end"]


def test_lost_records_cost_at_most_one_extra_waiting_job_never_a_request(
    flow_app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    make_worker(env=ENV, concurrency=2)
    holder = flow_app.send_task(f"{JOBS}.single", args=["l", 1.5]).id
    wait_until(lambda: holder in started(r, "l"), 30, message="the holder did not start")
    waiting = flow_app.send_task(f"{JOBS}.single", args=["l", 0.1]).id
    asked = redis_ms(r)
    r.delete(SingletonStore(r, Keys("stalwart")).key(f"{JOBS}.single", "l"))  # the state store lost it
    extra = flow_app.send_task(f"{JOBS}.single", args=["l", 0.1]).id
    later = flow_app.send_task(f"{JOBS}.single", args=["l", 0.1]).id
    assert len({holder, waiting, extra, later}) <= 3  # at most one extra waiting job
    wait_until(lambda: {holder, waiting, extra, later} <= set(started(r, "l")) and len(spans(r, "l")) >= 3,
               60, message="a request was lost")
    assert all(started(r, "l")[t] >= asked for t in (waiting, extra, later))


def test_a_key_the_arguments_cannot_render_is_refused_and_nothing_is_published(
    flow_app: Stalwart, r: redis.Redis
) -> None:
    with pytest.raises(ConfigurationError, match="singleton key"):
        flow_app.send_task(f"{JOBS}.single", kwargs={"sleep": 1})
    with pytest.raises(ConfigurationError, match="enqueue_many"):
        flow_app.enqueue_many(f"{JOBS}.single", [(["a", 1], {})])
    assert r.dbsize() == 0
