"""Acceptance: fair_by on real workers. Keys take turns on one queue, plain jobs keep their share,
and nothing is lost or run twice through a SIGKILL, a retry through the mover, or a DLQ replay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.dlq.replay import replay
from stalwart.settings import Settings
from stalwart.store.fair import LaneKeys
from stalwart.testing import WorkerProcess, wait_until
from tests.integration.jobs_fair import STARTS

MODULES = "tests.integration.jobs,tests.integration.jobs_fair"
ENV = {"STALWART_TASK_MODULES": MODULES}
FAIR = "tests.integration.jobs_fair.fair_job"
PLAIN = "tests.integration.jobs_fair.plain_job"
DEFER = "tests.integration.jobs_fair.fair_defer_once"
FIXABLE = "tests.integration.jobs_fair.fair_until_fixed"
SLACK = 2  # jobs a c=1 worker may have fetched before a new key arrived: the one running, one reserved


@pytest.fixture
def fair_app(worker_env: dict[str, str]) -> Stalwart:
    application = Stalwart("tests", settings=Settings.from_env({**worker_env, **ENV}), include=MODULES.split(","))
    application.loader.import_default_modules()
    return application


def starts(r: redis.Redis, begin: int = 0) -> list[str]:
    return [s.decode() for s in r.lrange(STARTS, begin, -1)]


def runs(r: redis.Redis, names: list[str]) -> list[int]:
    return [int(v or 0) for v in r.mget([f"fair:runs:{n}" for n in names])]


def all_ran(r: redis.Redis, names: list[str]) -> bool:
    return all(runs(r, names))


def lane(app: Stalwart) -> LaneKeys:
    return LaneKeys.of(app.stalwart.keys.prefix, app.conf.task_default_queue)


def test_new_keys_start_before_a_backlog_drains_and_take_turns(
    fair_app: Stalwart, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    fair_app.enqueue_many(FAIR, [(["A", n, 0.02], {}) for n in range(150)])
    make_worker(env=ENV, concurrency=1)
    wait_until(lambda: r.llen(STARTS) >= 10)
    mark = r.llen(STARTS)
    fair_app.enqueue_many(FAIR, [(["B", n, 0.02], {}) for n in range(5)])
    for n in range(5):
        fair_app.send_task(FAIR, ["C", n, 0.02])
    late = [f"{k}/{n}" for k in "BC" for n in range(5)]
    wait_until(lambda: all_ran(r, late), 60)
    seen = starts(r, mark)
    for n in range(5):  # one turn each per round of the three keys
        assert seen.index(f"B/{n}") < SLACK + 3 * (n + 1) + 1, seen[:25]
        assert seen.index(f"C/{n}") < SLACK + 3 * (n + 1) + 3, seen[:25]  # C arrives a little after B
    assert int(r.get("fair:runs:A/149") or 0) == 0  # A's backlog had not drained
    assert r.zcard(lane(fair_app).lane) > 0


def test_a_key_of_weight_three_gets_three_turns_per_turn_of_weight_one(
    fair_app: Stalwart, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    for n in range(30):
        fair_app.send_task(FAIR, ["heavy", n])
        fair_app.send_task(FAIR, ["light", n])
    make_worker(env=ENV, concurrency=1)
    wait_until(lambda: r.llen(STARTS) >= 60, 60)
    order = [s.split("/")[0] for s in starts(r)]
    assert order[:40].count("heavy") == 30
    for k in range(1, 41):  # the SFQ bound on every prefix while both are backlogged
        assert abs(order[:k].count("heavy") / 3 - order[:k].count("light")) <= 1, order[:k]


def test_plain_jobs_and_a_big_lane_share_the_queue_both_ways(
    fair_app: Stalwart, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    fair_app.enqueue_many(FAIR, [(["A", n], {}) for n in range(200)])
    for n in range(10):
        fair_app.send_task(PLAIN, [n])
    fair_app.enqueue_many(PLAIN, [([100 + n], {}) for n in range(200)])
    for n in range(10):
        fair_app.send_task(FAIR, ["B", n])
    make_worker(env=ENV, concurrency=1)
    wait_until(lambda: r.llen(STARTS) >= 420, 90)
    order = starts(r)
    assert sorted(order) == sorted({*order})  # each once
    for n in range(10):  # three keys (A's lane, B's lane, the plain list): one turn each per round
        assert order.index(f"plain/{n}") < 3 * (n + 1) + SLACK, order[:35]
        assert order.index(f"B/{n}") < 3 * (n + 1) + SLACK, order[:35]
    assert order.index("A/199") > 400  # of 420: neither backlog (200 fair, 210 plain) drained first
    assert order.index("plain/299") > 400


def test_a_sigkilled_worker_loses_nothing_of_a_lane_and_runs_nothing_twice(
    fair_app: Stalwart, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    names = [f"{k}/{n}" for k in "XYZ" for n in range(20)]
    fair_app.enqueue_many(FAIR, [([name.split("/")[0], int(name.split("/")[1]), 0.1], {}) for name in names])
    first = make_worker(env=ENV, concurrency=2)
    wait_until(lambda: sum(runs(r, names)) >= 6, 60)
    first.kill()
    assert r.hlen("unacked") >= 1  # jobs held by the dead worker, fetched from the lane
    make_worker(env=ENV, concurrency=2)
    wait_until(lambda: all_ran(r, names), 90)
    assert runs(r, names) == [1] * len(names)
    assert r.hlen("unacked") == 0
    assert r.zcard(lane(fair_app).lane) == 0


def test_a_fair_retry_waits_in_its_lanes_delayed_set_and_comes_back_into_the_lane(
    fair_app: Stalwart, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    make_worker(env=ENV, concurrency=2)
    names = [f"R/{n}" for n in range(3)]
    for n in range(3):
        fair_app.send_task(DEFER, ["R", n, 3.0])
    wait_until(lambda: all(r.get(f"fair:first:{name}") for name in names), 30)
    wait_until(lambda: r.zcard(lane(fair_app).delayed) == 3, 10)
    assert r.zcard(fair_app.stalwart.keys.delayed(fair_app.conf.task_default_queue)) == 0
    wait_until(lambda: all_ran(r, names), 30)
    assert runs(r, names) == [1, 1, 1]
    assert r.zcard(lane(fair_app).delayed) == 0


def test_a_replayed_fair_job_reenters_its_lane(
    fair_app: Stalwart, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    worker = make_worker(env=ENV, concurrency=1)
    task_id = fair_app.send_task(FIXABLE, ["T", 1]).id
    entry: Any = wait_until(lambda: next((e for e in fair_app.stalwart.dlq.iter() if e.task_id == task_id), None), 30)
    worker.stop()
    r.set("fair:fixed", 1)
    report = replay(fair_app, [entry.id])
    assert report.replayed == [entry.id]
    members = r.zrange(lane(fair_app).lane, 0, -1)
    assert len(members) == 1
    assert task_id.encode() in members[0]
    make_worker(env=ENV, concurrency=1)
    wait_until(lambda: all_ran(r, ["T/1"]), 30)
    assert runs(r, ["T/1"]) == [1]


def test_a_backlog_of_one_key_is_delivered_once_per_job_without_deferral(
    fair_app: Stalwart, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    results: list[Any] = fair_app.enqueue_many(FAIR, [(["solo", n], {}) for n in range(2000)])
    make_worker(env=ENV, concurrency=2)
    wait_until(lambda: r.llen(STARTS) >= 2000, 180, 0.2)
    wait_until(lambda: all_ran(r, [f"solo/{n}" for n in range(1990, 2000)]), 30)
    with r.pipeline(transaction=False) as pipe:
        for result in results:
            pipe.hmget(fair_app.stalwart.keys.job(f"t:{result.id}"), "state", "gen")
        jobs = pipe.execute()
    # done in its first generation: no successor (retry, deferral, requeue) was ever published
    assert {(state, int(gen or 0)) for state, gen in jobs} == {(b"done", 0)}
    assert len(set(starts(r))) == r.llen(STARTS) == 2000  # each body once
    assert r.zcard(lane(fair_app).delayed) == 0
    # no delayed set was ever made, and the drained lane leaves the movers' registry
    wait_until(lambda: fair_app.stalwart.delayed.registered() == ([], []), 10, 0.1)
