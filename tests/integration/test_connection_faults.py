"""Connection faults between workers and the broker, injected by a TCP proxy (issue 9, points 4-5).

A frozen (half-open) consumer connection is replaced and consumption resumes within the recovery
window; a worker that stays stalled turns /healthz 503; a publish whose first try is dropped keeps
its countdown.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.dev.embedded import free_port
from stalwart.settings import Settings
from stalwart.testing import WorkerProcess, wait_until
from tests.integration.test_ops import get
from tests.proxy import Proxy, proxy

pytestmark = pytest.mark.integration
__all__ = ["proxy"]  # the fixture, imported for this module's tests
MODULES = "tests.integration.jobs,tests.integration.jobs_envelope"
STAMP = "tests.integration.jobs_envelope.stamp"


def redis_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def stamped(r: redis.Redis, key: str) -> int | None:
    value = r.lindex(f"ran:{key}", 0)
    return None if value is None else int(value)


def unhealthy(port: int) -> str | None:
    code, body = get(port, "/healthz")
    return body if code == 503 else None


def test_a_frozen_consumer_connection_is_replaced_within_the_recovery_window(
    proxy: Proxy, app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    recovery_ms = 10_000
    worker = make_worker(env={"CELERY_BROKER_URL": proxy.url, "STALWART_TASK_MODULES": MODULES,
                              "STALWART_RECOVERY_SECONDS": str(recovery_ms // 1000)})
    app.send_task(STAMP, args=["before"])
    wait_until(lambda: stamped(r, "before"), 20, message="the worker never consumed through the proxy")
    assert proxy.freeze() > 0  # the consumer's connection is among them: it waits on it right now
    frozen_at = redis_ms(r)
    app.send_task(STAMP, args=["after"])
    ran_at = wait_until(lambda: stamped(r, "after"), 60, message="consumption never resumed")
    assert ran_at - frozen_at < recovery_ms  # on the Redis clock
    assert "dropping the connection" in worker.log()
    assert worker.alive


def test_health_turns_503_when_a_stalled_worker_takes_nothing_while_work_waits(
    proxy: Proxy, app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    """Only the consumer's connection freezes, and the stale-connection check is slow here (a 120 s
    recovery window gives it 30 s of grace): the worker's loop turns, it is "connected but not
    consuming", and /healthz must say so."""
    port = free_port()
    make_worker(env={"CELERY_BROKER_URL": proxy.url, "STALWART_TASK_MODULES": MODULES,
                     "STALWART_RECOVERY_SECONDS": "120", "STALWART_OPS_PORT": str(port),
                     "STALWART_OPS_STALE_SECONDS": "3"})
    app.send_task(STAMP, args=["before"])
    wait_until(lambda: stamped(r, "before"), 20)
    assert get(port, "/healthz")[0] == 200
    wait_until(lambda: proxy.freeze(waiting_on=b"BLMOVE"), 10, 0.1, "the consumer never waited")
    for i in range(3):
        app.send_task(STAMP, args=[f"waiting{i}"])
    body = wait_until(lambda: unhealthy(port), 30, message="/healthz stayed 200")
    assert "took nothing" in json.loads(body)["reasons"][0]
    assert "3 messages wait" in json.loads(body)["reasons"][0]
    assert stamped(r, "waiting0") is None


def test_a_publish_whose_first_try_is_dropped_keeps_its_countdown(
    proxy: Proxy, worker_env: dict[str, str], r: redis.Redis
) -> None:
    producer = Stalwart("producer", settings=Settings.from_env({**worker_env, "CELERY_BROKER_URL": proxy.url}))
    producer.send_task("tests.integration.jobs.record", args=["warm"], countdown=60)  # connected
    accepted = proxy.accepted
    proxy.refuse(1.0)  # every try within the next second fails: kombu retries the publish after it
    before = redis_ms(r)
    result = producer.send_task("tests.integration.jobs.record", args=["kept"], countdown=30,
                                retry_policy={"max_retries": 30, "interval_start": 0.1, "interval_step": 0.1,
                                              "interval_max": 0.2})
    assert proxy.accepted - accepted >= 2  # the publish was tried again after its connection died
    delayed = {json.loads(p)["headers"]["id"]: due for p, due in
               r.zrange(producer.stalwart.keys.delayed("celery"), 0, -1, withscores=True)}
    assert result.id in delayed  # in the delayed set, not the queue
    assert delayed[result.id] >= before + 30_000
    assert r.llen("celery") == 0
    producer.close()
