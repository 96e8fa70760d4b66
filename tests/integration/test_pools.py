"""One delivery, one owner, on every pool: prefork, threads and solo (issue 10.1).

Each pool runs the same three attacks on a running job whose effect is committed once per key:
a second delivery of the same message while it runs (what a redelivery or a duplicate publish
is), the broker and state-store connections killed under it (Celery's consumer restarts and the
in-flight message comes back), and the whole worker SIGKILLed mid-load. Every effect happens
exactly once, and every body starts once per job.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from stalwart.job.header import HEADER, Meta
from stalwart.testing import WorkerProcess, wait_until

from .reliability import CHAOS_ENV, RECORD_ONCE, SLOW_ONCE, counts, job_states, make_app

pytestmark = pytest.mark.integration
POOLS = {"prefork": 2, "threads": 2, "solo": 1}
# the test task modules declare time limits; these pools cannot enforce them (see test below)
POOL_ENV = {**CHAOS_ENV, "STALWART_UNENFORCED_TIME_LIMITS": "warn"}


@pytest.fixture
def capp(worker_env: dict[str, str]) -> Any:
    return make_app({**worker_env, **POOL_ENV})


def start(make_worker: Callable[..., WorkerProcess], pool: str) -> WorkerProcess:
    return make_worker(env=POOL_ENV, pool=pool, concurrency=POOLS[pool])


def send_slow(capp: Any, key: str, seconds: float, meta: Meta, task_id: str) -> None:
    """Publish slow_once(key) as exactly this message: the same task id, header and generation."""
    capp.send_task(SLOW_ONCE, (key, seconds), task_id=task_id, headers={HEADER: meta.to_header()},
                   stalwart_successor=True)


def settled(capp: Any, r: redis.Redis, key: str) -> Callable[[], bool]:
    """The job is done and no copy of it is queued, delayed or in flight any more."""
    def check() -> bool:
        return (job_states(capp, SLOW_ONCE, [key])[key] == "done" and r.llen("celery") == 0
                and r.zcard(capp.stalwart.keys.delayed("celery")) == 0 and r.hlen("unacked") == 0)
    return check


def kill_connections_but_mine(r: redis.Redis) -> int:
    """Close every client connection of the Redis except this test's own: a network blip."""
    mine = r.client_id()
    killed = 0
    for client in r.client_list():
        if int(client["id"]) != mine:
            killed += int(r.client_kill_filter(_id=client["id"]) or 0)
    return killed


@pytest.mark.parametrize("pool", list(POOLS))
def test_a_second_delivery_and_a_connection_blip_never_run_a_job_twice(
    pool: str, capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start(make_worker, pool)
    # a second delivery of the message while its first delivery runs
    key, task_id = "dup", str(uuid.uuid4())
    meta = Meta(key=f"{SLOW_ONCE}:dup")
    send_slow(capp, key, 2.5, meta, task_id)
    wait_until(lambda: r.get(f"starts:{key}") == b"1", 30, message="first delivery never started")
    send_slow(capp, key, 2.5, meta, task_id)
    wait_until(lambda: worker.log().count(f"{task_id}] received") >= 2, 30, message="copy not delivered")
    wait_until(settled(capp, r, key), 60, 0.1, message=f"{pool}: the duplicated job did not settle")
    assert counts(r, "starts", [key]) == {key: 1}, f"{pool}: the body ran beside itself"
    assert counts(r, "effect", [key]) == {key: 1}

    # the connections dropped under a running job: the consumer restarts, the message comes back
    key = "blip"
    capp.send_task(SLOW_ONCE, (key, 5.0))
    wait_until(lambda: r.get(f"starts:{key}") == b"1", 30, message="blip job never started")
    assert kill_connections_but_mine(r) > 0
    wait_until(settled(capp, r, key), 90, 0.1, message=f"{pool}: the job did not settle after the blip")
    assert counts(r, "starts", [key]) == {key: 1}, f"{pool}: the body ran twice after the blip"
    assert counts(r, "effect", [key]) == {key: 1}
    assert capp.stalwart.dlq.stats()["total"] == 0
    assert worker.alive


@pytest.mark.parametrize("pool", list(POOLS))
def test_a_sigkilled_worker_loses_nothing_and_runs_nothing_twice(
    pool: str, capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    keys = [f"k{i}" for i in range(40)]
    victim = start(make_worker, pool)
    capp.enqueue_many(RECORD_ONCE, [((k, 0.1), {}) for k in keys])
    wait_until(lambda: sum(counts(r, "effect", keys).values()) >= 5, 30, message="no job ran before the kill")
    victim.kill()
    start(make_worker, pool)
    wait_until(lambda: set(job_states(capp, RECORD_ONCE, keys).values()) == {"done"}, 90, 0.2,
               message=f"{pool}: jobs of the killed worker never finished")
    assert set(counts(r, "effect", keys).values()) == {1}, f"{pool}: an effect was lost or doubled"


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_a_pool_that_cannot_enforce_time_limits_refuses_to_start(
    pool: str, make_worker: Callable[..., WorkerProcess]
) -> None:
    """The threads and solo pools cannot stop a body: time limits there are refused, loudly."""
    worker = make_worker(env=CHAOS_ENV, pool=pool, concurrency=1, start=False)
    with pytest.raises(RuntimeError, match="exited early") as refused:
        worker.start(timeout=60)
    assert "cannot enforce time limits" in str(refused.value)
    assert "tests.integration.jobs.hard_limited" in worker.log()
    warned = make_worker(env=POOL_ENV, pool=pool, concurrency=1)
    assert "does not enforce the time limits of tests.integration.jobs.hard_limited" in warned.log()
