"""Chaos: workers SIGKILLed and SIGTERMed, poison pills and a Redis restart, all under load.

Each test owns its workers (short recovery: 6 s, lease 3 s) and ends with an exact account:
every job done or dead-lettered with a reason, every effect recorded exactly once.
"""

from __future__ import annotations

import random
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisServer
from stalwart.settings import Settings
from stalwart.testing import WorkerProcess, wait_until

from .reliability import CHAOS_ENV, RECORD_ONCE, SLOW_ONCE, counts, dlq_reasons, job_states, make_app

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def _all_accounted(app: Any, task: str, keys: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        states = job_states(app, task, keys)
        return all(s in ("done", "dead") for s in states.values())

    return check


def _assert_exact(app: Any, r: redis.Redis, task: str, keys: list[str]) -> None:
    states = job_states(app, task, keys)
    dead = dlq_reasons(app)
    unaccounted = [k for k, s in states.items() if s != "done" and not dead.get(k)]
    assert not unaccounted, f"{len(unaccounted)} jobs neither done nor dead-lettered: {unaccounted[:10]}"
    effects = counts(r, "effect", keys)
    wrong = {k: n for k, n in effects.items() if n != 1}
    assert not wrong, f"effects not exactly once: {dict(list(wrong.items())[:10])}"


def _diagnose(app: Any, r: redis.Redis, task: str, keys: list[str], workers: list[WorkerProcess]) -> str:
    states: dict[str | None, int] = {}
    for state in job_states(app, task, keys).values():
        states[state] = states.get(state, 0) + 1
    return (
        f"states {states}, queued {r.llen('celery')}, unacked {r.hlen('unacked')}, "
        f"delayed {r.zcard(app.stalwart.keys.delayed('celery'))}, dlq {dlq_reasons(app)}, "
        f"workers alive {[w.alive for w in workers]}"
    )


def test_sigkill_random_workers_every_two_seconds(
    r: redis.Redis, worker_env: dict[str, str], make_worker: Callable[..., WorkerProcess]
) -> None:
    app = make_app({**worker_env, **CHAOS_ENV})
    keys = [f"c{i}" for i in range(2000)]
    workers = [make_worker(env=CHAOS_ENV, concurrency=2, start=False) for _ in range(3)]
    for w in workers:
        w.start(wait=False)
    for w in workers:
        w.wait_ready()
    app.enqueue_many(RECORD_ONCE, [((k, 0.01), {}) for k in keys])
    done = _all_accounted(app, RECORD_ONCE, keys)
    rng, kills, chaos_until = random.Random(7), 0, time.monotonic() + 40
    while not done() and time.monotonic() < chaos_until:
        time.sleep(2)
        victim = rng.choice(workers)
        victim.kill()
        kills += 1
        victim.start(wait=False)
    try:
        wait_until(done, 90, 0.5)
    except TimeoutError:
        pytest.fail(f"after {kills} kills: {_diagnose(app, r, RECORD_ONCE, keys, workers)}")
    assert kills >= 3
    _assert_exact(app, r, RECORD_ONCE, keys)


def test_sigterm_mid_load_loses_nothing_and_runs_nothing_twice(
    r: redis.Redis, worker_env: dict[str, str], make_worker: Callable[..., WorkerProcess]
) -> None:
    app = make_app({**worker_env, **CHAOS_ENV})
    keys = [f"t{i}" for i in range(60)]
    leaving = make_worker(env=CHAOS_ENV, concurrency=2)
    app.enqueue_many(SLOW_ONCE, [((k, 0.3), {}) for k in keys])
    wait_until(lambda: sum(counts(r, "starts", keys).values()) >= 6, 30)
    leaving.signal(signal.SIGTERM)  # drains: finishes in-flight, hands prefetched back
    staying = make_worker(env=CHAOS_ENV, concurrency=2)
    assert leaving.process is not None
    assert leaving.process.wait(30) == 0
    wait_until(_all_accounted(app, SLOW_ONCE, keys), 90, 0.2)
    assert staying.alive
    assert set(counts(r, "starts", keys).values()) == {1}, "a job body started twice"
    assert set(job_states(app, SLOW_ONCE, keys).values()) == {"done"}
    _assert_exact(app, r, SLOW_ONCE, keys)


def test_poison_job_is_dead_lettered_and_the_worker_keeps_serving(
    r: redis.Redis, worker_env: dict[str, str], make_worker: Callable[..., WorkerProcess]
) -> None:
    app = make_app({**worker_env, **CHAOS_ENV})
    keys = [f"p{i}" for i in range(40)]
    worker = make_worker(env=CHAOS_ENV, concurrency=2)
    app.send_task("tests.integration.jobs.crash", ("pill",))
    app.enqueue_many(RECORD_ONCE, [((k,), {}) for k in keys])
    wait_until(lambda: dlq_reasons(app).get("pill") == "poison", 60, 0.2)
    assert r.get("attempts:pill") == b"3"  # max_deliveries=3: three deliveries, never a fourth
    wait_until(_all_accounted(app, RECORD_ONCE, keys), 60, 0.2)
    _assert_exact(app, r, RECORD_ONCE, keys)
    app.send_task(RECORD_ONCE, ("after",))
    wait_until(lambda: r.get("effect:after") == b"1", 30)
    assert worker.alive


@pytest.fixture
def aof_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, persisting every write (AOF, fsync always)."""
    server = RedisServer(appendonly=True).start()
    yield server
    server.cleanup()


def test_redis_restart_mid_load_loses_nothing(
    aof_redis: RedisServer, worker_env: dict[str, str], make_worker: Callable[..., WorkerProcess]
) -> None:
    env = {**worker_env, **CHAOS_ENV, "STALWART_REDIS_URL": aof_redis.url}
    r = redis.Redis.from_url(aof_redis.url)
    app = make_app(env)
    keys = [f"r{i}" for i in range(400)]
    workers = [make_worker(env=env, concurrency=2) for _ in range(2)]
    app.enqueue_many(RECORD_ONCE, [((k, 0.02), {}) for k in keys])
    wait_until(lambda: sum(counts(r, "effect", keys).values()) >= 50, 60, 0.1)
    aof_redis.stop(kill=True)
    time.sleep(2)
    aof_redis.start()
    try:
        wait_until(_all_accounted(app, RECORD_ONCE, keys), 100, 0.5)
    except TimeoutError:
        logs = "\n".join(w.log()[-3000:] for w in workers)
        pytest.fail(f"{_diagnose(app, r, RECORD_ONCE, keys, workers)}\n{logs}")
    _assert_exact(app, r, RECORD_ONCE, keys)


def test_a_message_that_kills_the_consumer_costs_at_most_max_fetches_crashes(
    r: redis.Redis, worker_env: dict[str, str], make_worker: Callable[..., WorkerProcess]
) -> None:
    """The crash-loop guard: the message kills the worker's main process each time it is received;
    the fetch script quarantines it on its fourth fetch (STALWART_MAX_FETCHES=3) as poison."""
    env = {"STALWART_TASK_MODULES": "tests.integration.jobs,tests.integration.jobs_fuzz",
           "STALWART_RECOVERY_SECONDS": "3"}
    app = make_app({**worker_env, **env})
    app.send_task("tests.integration.jobs_fuzz.record_any", task_id="kill-consumer-1")
    for i in range(20):
        app.send_task("tests.integration.jobs.record", args=[f"kc{i}"])
    worker, crashes = make_worker(env=env, start=False).start(wait=False), 0

    def poisoned() -> bool:
        nonlocal worker, crashes
        if not worker.alive:  # it died of the message: start another, as a supervisor would
            crashes += 1
            worker = make_worker(env=env, start=False).start(wait=False)
        return any(e.task_id == "kill-consumer-1" for e in app.stalwart.dlq.iter())

    wait_until(poisoned, 120, 0.2, "the consumer killer was never dead-lettered")
    [entry] = [e for e in app.stalwart.dlq.iter() if e.task_id == "kill-consumer-1"]
    assert entry.reason == "poison"
    assert "kill-consumer-1" in (entry.raw or "")  # the raw message is kept
    assert 1 <= crashes <= 3
    wait_until(lambda: counts(r, "effect", [f"kc{i}" for i in range(20)]) == {f"kc{i}": 1 for i in range(20)}, 60)
    assert worker.alive
    assert r.hlen("unacked") == 0


QUEUES_ENV = {"STALWART_TASK_MODULES": "tests.integration.jobs,tests.integration.jobs_queues"}
ORDERED = "tests.integration.jobs_queues.ordered_once"


def _queues_app(env: dict[str, str]) -> Stalwart:
    """An enqueuing app that knows the multi-queue tasks (so it derives their idempotency keys)."""
    application = Stalwart("tests", settings=Settings.from_env(env), include=["tests.integration.jobs_queues"])
    application.loader.import_default_modules()
    return application


def _order(r: redis.Redis, keys: list[str]) -> dict[str, int]:
    return {k: int(v) for k, v in zip(keys, r.mget([f"order:{k}" for k in keys]), strict=True) if v}


def test_three_queues_priorities_first_then_queues_in_rotation(
    r: redis.Redis, worker_env: dict[str, str], make_worker: Callable[..., WorkerProcess]
) -> None:
    app = _queues_app({**worker_env, **QUEUES_ENV})
    jobs = [(f"{q}{p}-{i}", q, p) for i in range(4) for p in (9, 6, 3, 0) for q in "abc"]  # low first
    for key, queue, priority in jobs:
        app.send_task(ORDERED, args=[key], queue=queue, priority=priority)
    make_worker(env=QUEUES_ENV, queues="a,b,c", concurrency=1)
    keys = [key for key, _, _ in jobs]
    wait_until(lambda: len(_order(r, keys)) == len(keys), 60, 0.2)
    started = sorted(keys, key=_order(r, keys).__getitem__)
    priorities = [key.split("-")[0][1] for key in started]
    assert priorities == sorted(priorities)  # 0 before 3 before 6 before 9, across the three queues
    for level in range(4):  # within a priority, one job of each queue in turn
        queues = [key[0] for key in started[level * 12:(level + 1) * 12]]
        assert all(sorted(queues[i:i + 3]) == ["a", "b", "c"] for i in range(0, 12, 3)), queues


def test_sigkill_workers_consuming_three_queues_with_priorities(
    r: redis.Redis, worker_env: dict[str, str], make_worker: Callable[..., WorkerProcess]
) -> None:
    app = _queues_app({**worker_env, **QUEUES_ENV})
    jobs = [(f"m{q}{p}-{i}", q, p) for i in range(100) for p in (9, 6, 3, 0) for q in "abc"]
    keys = [key for key, _, _ in jobs]
    for key, queue, priority in jobs:
        app.send_task(ORDERED, args=[key, 0.03], queue=queue, priority=priority)  # 6 s of work at least
    workers = [make_worker(env=QUEUES_ENV, queues="a,b,c", start=False) for _ in range(3)]
    for w in workers:
        w.start(wait=False)
    done = _all_accounted(app, ORDERED, keys)
    rng, kills, chaos_until = random.Random(11), 0, time.monotonic() + 20
    while not done() and time.monotonic() < chaos_until:
        time.sleep(1.5)
        victim = rng.choice(workers)
        victim.kill()
        kills += 1
        victim.start(wait=False)
    try:
        wait_until(done, 90, 0.5)
    except TimeoutError:
        pytest.fail(f"after {kills} kills: {_diagnose(app, r, ORDERED, keys, workers)}")
    assert kills >= 3
    _assert_exact(app, r, ORDERED, keys)  # 0 lost, 0 double effects
    order = _order(r, keys)
    median = {p: statistics.median(order[k] for k, _, q in jobs if q == p) for p in (0, 3, 6, 9)}
    assert median[0] < median[3] < median[6] < median[9]  # higher priorities taken first, kills and all
