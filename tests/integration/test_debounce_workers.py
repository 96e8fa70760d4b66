"""Debounce through real worker processes and a real redis-server (issue 12, point 3)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.errors import ConfigurationError
from stalwart.settings import Settings
from stalwart.testing import WorkerProcess, wait_until
from tests.conftest import TEST_TASKS

pytestmark = pytest.mark.integration

JOBS = "tests.integration.jobs_flow"
ENV = {"STALWART_TASK_MODULES": f"{TEST_TASKS},{JOBS}"}
MAX_WAIT_MS = 1200
# A burst's job starts at most this long after its due time: the mover's tick (50 ms here), the
# trigger's fetch and run, and the job's own fetch, on a shared two-core machine.
LATE_MS = 600


@pytest.fixture
def flow_app(worker_env: dict[str, str]) -> Stalwart:
    application = Stalwart("tests", settings=Settings.from_env({**worker_env, **ENV}), include=[TEST_TASKS, JOBS])
    application.loader.import_default_modules()
    return application


def redis_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def runs(r: redis.Redis, doc: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in r.lrange(f"runs:{doc}", 0, -1)]


def pending(r: redis.Redis) -> int:
    """Messages not yet run: queued, delayed, unacked, and bursts not yet published."""
    delayed = sum(int(r.zcard(k)) for k in r.scan_iter("stalwart:{delayed:*", count=1000) if r.type(k) == b"zset")
    bursts = sum(1 for _ in r.scan_iter("stalwart:{debounce:*", count=1000))
    return int(r.llen("celery")) + delayed + int(r.hlen("unacked")) + bursts


def drained(r: redis.Redis) -> bool:
    return pending(r) == 0


def test_ten_enqueues_within_wait_run_once_with_the_last_arguments(
    flow_app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    make_worker(env=ENV)
    results = [flow_app.send_task(f"{JOBS}.collapse", args=["d1", n]) for n in range(10)]
    other = flow_app.send_task(f"{JOBS}.collapse", args=["d2", 99])
    assert len({res.id for res in results}) == 1
    assert other.id != results[0].id
    wait_until(lambda: runs(r, "d1") and runs(r, "d2") and drained(r), 30, message="the bursts did not run")
    assert [(x["id"], x["n"]) for x in runs(r, "d1")] == [(results[0].id, 9)]
    assert [(x["id"], x["n"]) for x in runs(r, "d2")] == [(other.id, 99)]


def test_a_steady_stream_runs_by_max_wait_with_the_latest_arguments(
    flow_app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    make_worker(env=ENV)
    made: list[tuple[int, str, int]] = []  # (n, task id returned, Redis ms just before the enqueue)
    start = redis_ms(r)
    n = 0
    while redis_ms(r) - start < 3 * MAX_WAIT_MS:  # one enqueue every wait/2 for 3 x max_wait
        before = redis_ms(r)
        made.append((n, flow_app.send_task(f"{JOBS}.stream", args=["s", n]).id, before))
        n += 1
        wait_until(lambda since=before: redis_ms(r) - since >= 200, 5, 0.01)  # type: ignore[misc]
    wait_until(lambda: drained(r), 30, message="the stream's bursts did not all run")
    ran = runs(r, "s")
    bursts: dict[str, list[tuple[int, int]]] = {}
    for number, task_id, before in made:
        bursts.setdefault(task_id, []).append((number, before))
    assert len(ran) == len(bursts) >= 3  # every burst ran, once; max_wait cut the stream
    assert len({x["id"] for x in ran}) == len(ran)
    for run in ran:
        burst = bursts[run["id"]]
        assert run["n"] == max(number for number, _ in burst)  # the last enqueue of its window
        assert run["at"] - min(before for _, before in burst) <= MAX_WAIT_MS + LATE_MS
    # bursts are consecutive: each enqueue belongs to the burst open when it was made
    order = [task_id for _, task_id, _ in made]
    assert [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k] == list(bursts)


def test_a_worker_killed_while_the_burst_runs_still_completes_it_once(
    flow_app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    worker = make_worker(env=ENV)
    ids = {flow_app.send_task(f"{JOBS}.stream", args=["k", n], kwargs={"sleep": 2.0}).id for n in range(3)}
    wait_until(lambda: runs(r, "k"), 30, message="the burst did not start")
    worker.kill()
    make_worker(env=ENV)
    wait_until(lambda: r.llen("ended:k") >= 1 and drained(r), 60, message="the burst did not complete")
    assert len(ids) == 1
    assert [bytes(x).decode() for x in r.lrange("ended:k", 0, -1)] == list(ids)
    assert {(x["id"], x["n"]) for x in runs(r, "k")} == {(next(iter(ids)), 2)}


def test_a_key_the_arguments_cannot_render_is_refused_and_nothing_is_published(
    flow_app: Stalwart, r: redis.Redis
) -> None:
    with pytest.raises(ConfigurationError, match="debounce key"):
        flow_app.send_task(f"{JOBS}.collapse", kwargs={"n": 1})
    with pytest.raises(ConfigurationError, match="debounce key"):
        flow_app.send_task(f"{JOBS}.collapse", args=["a", 1, 2])
    with pytest.raises(ConfigurationError, match="countdown"):
        flow_app.send_task(f"{JOBS}.collapse", args=["a", 1], countdown=5)
    with pytest.raises(ConfigurationError, match="JSON"):
        flow_app.send_task(f"{JOBS}.collapse", args=[object(), 1])
    with pytest.raises(ConfigurationError, match="enqueue_many"):
        flow_app.enqueue_many(f"{JOBS}.collapse", [(["a", 1], {})])
    assert pending(r) == 0
    assert r.dbsize() == 0
