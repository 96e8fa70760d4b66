"""Idempotent enqueue (delay/apply_async/send_task/bulk) and idempotent execution."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from stalwart.testing import WorkerProcess, wait_until

from .reliability import CHAOS_ENV, RECORD_ONCE, SLOW_ONCE, counts, job_states, make_app

pytestmark = pytest.mark.integration
PLAIN = "tests.integration.jobs_chaos.plain_keyed"


@pytest.fixture
def capp(worker_env: dict[str, str]) -> Any:
    return make_app({**worker_env, **CHAOS_ENV})


def test_same_key_publishes_once_for_every_enqueue_path(capp: Any, r: redis.Redis) -> None:
    task = capp.tasks[RECORD_ONCE]
    first = task.delay("k1")
    ids = {
        first.id,
        task.apply_async(("k1",)).id,
        task.apply_async(("other",), idempotency_key=f"{RECORD_ONCE}:k1").id,
        capp.send_task(RECORD_ONCE, ("k1",), idempotency_key=f"{RECORD_ONCE}:k1").id,
        *(res.id for res in capp.enqueue_many(task, [(("k1",), {}), (("k1",), {})])),
    }
    assert ids == {first.id}
    assert r.llen("celery") == 1


def test_bulk_dedupes_within_a_batch_and_against_earlier_enqueues(capp: Any, r: redis.Redis) -> None:
    task = capp.tasks[RECORD_ONCE]
    earlier = task.delay("a")
    results = capp.enqueue_many(RECORD_ONCE, [(("a",), {}), (("b",), {}), (("b",), {}), (("c",), {})])
    assert results[0].id == earlier.id
    assert results[1].id == results[2].id != results[3].id
    assert r.llen("celery") == 3  # a (earlier), b, c


def test_bulk_countdown_goes_to_the_delayed_set(capp: Any, r: redis.Redis) -> None:
    jobs = [((f"d{i}",), {}, {"countdown": 30}) for i in range(5)] + [(("now",), {})]
    capp.enqueue_many(RECORD_ONCE, jobs)
    assert r.llen("celery") == 1
    assert r.zcard(capp.stalwart.keys.delayed("celery")) == 5


def test_bulk_jobs_run_once_each(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    keys = [f"bulk{i}" for i in range(300)]
    capp.enqueue_many(RECORD_ONCE, [((k,), {}) for k in keys] + [((k,), {}) for k in keys[:50]])
    make_worker(env=CHAOS_ENV)
    wait_until(lambda: set(job_states(capp, RECORD_ONCE, keys).values()) == {"done"}, 60)
    assert set(counts(r, "effect", keys).values()) == {1}


def _duplicate(capp: Any, task: str, key: str, *args: Any) -> Any:
    """Publish a second message of a keyed job, as a redelivery or a lost enqueue record would."""
    capp.stalwart.redis.delete(capp.stalwart.keys.idem(f"{task}:{key}"))
    return capp.send_task(task, (key, *args))


def test_done_job_returns_stored_result_without_running(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    worker = make_worker(env=CHAOS_ENV)
    capp.send_task(PLAIN, ("p1",))
    wait_until(lambda: job_states(capp, PLAIN, ["p1"])["p1"] == "done", 30)
    again = _duplicate(capp, PLAIN, "p1")
    wait_until(lambda: f"{again.id}] succeeded" in worker.log(), 30)
    line = next(x for x in worker.log().splitlines() if f"{again.id}] succeeded" in x)
    assert "{'key': 'p1', 'n': 1}" in line
    assert r.get("effect:p1") == b"1"


def test_running_job_defers_duplicate_instead_of_failing(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    worker = make_worker(env=CHAOS_ENV, concurrency=2)
    capp.send_task(SLOW_ONCE, ("s1", 2.0))
    wait_until(lambda: r.get("starts:s1") == b"1", 30)
    dup = _duplicate(capp, SLOW_ONCE, "s1", 2.0)
    wait_until(lambda: f"{dup.id}] succeeded" in worker.log() or f"{dup.id}] ignored" in worker.log(), 30)
    wait_until(lambda: r.get("effect:s1") == b"1", 30)
    assert r.get("starts:s1") == b"1"
    assert "raised unexpected" not in worker.log()
    assert capp.stalwart.dlq.stats().get("added", 0) == 0


def test_failure_releases_the_claim_for_the_retry(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    make_worker(env=CHAOS_ENV)
    task = "tests.integration.jobs_chaos.fail_once"
    capp.send_task(task, ("f1",))
    wait_until(lambda: job_states(capp, task, ["f1"])["f1"] == "done", 30)
    assert (r.get("attempts:f1"), r.get("effect:f1")) == (b"2", b"1")


def test_committed_effect_is_final_even_if_the_body_fails_after(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    make_worker(env=CHAOS_ENV)
    task = "tests.integration.jobs_chaos.commit_then_fail"
    capp.send_task(task, ("c1",))
    wait_until(lambda: r.get("attempts:c1") == b"1", 30)
    time.sleep(1.5)  # a retry would have run by now
    assert job_states(capp, task, ["c1"])["c1"] == "done"
    assert (r.get("attempts:c1"), r.get("effect:c1")) == (b"1", b"1")


def test_lease_of_a_dead_holder_expires_and_the_job_runs(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    def server_ms() -> int:
        sec, usec = r.time()
        return int(sec) * 1000 + int(usec) // 1000

    job_hash = capp.stalwart.keys.job(f"k:{RECORD_ONCE}:ghost")
    make_worker(env=CHAOS_ENV)
    lease_end = server_ms() + 1500  # a holder on another host died holding this lease
    r.hset(job_hash, mapping={"state": "running", "owner": "deadhost:1:x", "lease": lease_end})
    capp.send_task(RECORD_ONCE, ("ghost",))
    while server_ms() < lease_end - 100:  # on the Redis clock, however slow this machine is
        assert r.get("effect:ghost") is None, "ran while the dead holder's lease was live"
        time.sleep(0.05)
    wait_until(lambda: r.get("effect:ghost") == b"1", 30, message="never ran after the lease expired")
    assert job_states(capp, RECORD_ONCE, ["ghost"])["ghost"] == "done"


# -- keys are per task, and a dead key does not block a fresh enqueue (issue 10.9) --------------


def test_the_same_explicit_key_on_two_tasks_is_two_jobs(capp: Any, r: redis.Redis) -> None:
    first = capp.send_task("tests.integration.jobs.record", ("a",), idempotency_key="order-7")
    second = capp.send_task("tests.integration.jobs.permanent", ("b",), idempotency_key="order-7")
    again = capp.send_task("tests.integration.jobs.record", ("c",), idempotency_key="order-7")
    assert first.id != second.id
    assert again.id == first.id
    assert r.llen("celery") == 2


def test_a_dead_lettered_key_does_not_block_a_fresh_enqueue(
    capp: Any, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    make_worker(env=CHAOS_ENV)
    task = "tests.integration.jobs.permanent"
    dead = capp.send_task(task, ("dk",), idempotency_key="dk")
    wait_until(lambda: capp.stalwart.dlq.stats()["total"] == 1, 30, message="first job dead-lettered")
    fresh = capp.send_task(task, ("dk",), idempotency_key="dk")
    assert fresh.id != dead.id
    wait_until(lambda: r.get("attempts:dk") == b"2", 30, message="the fresh job never ran")
    wait_until(lambda: capp.stalwart.dlq.stats()["total"] == 2, 30)
    assert capp.send_task(task, ("dk",), idempotency_key="dk").id not in (dead.id, fresh.id)
