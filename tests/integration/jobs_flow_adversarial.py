"""Tasks of the flow-control adversarial tests (debounce and singleton), recorded on the Redis clock.

Effects go to ``FLOW_RECORD_URL`` when set (so a test can restart the state store without losing
them), else to the state store. The helpers below read them back in the tests.
"""

from __future__ import annotations

import json
import os
import time
from functools import cache
from typing import Any

import redis
from celery import shared_task

from stalwart import Debounce
from stalwart.app import Stalwart
from stalwart.settings import Settings

JOBS = "tests.integration.jobs_flow_adversarial"
# Threads/solo workers cannot enforce time limits: the tests accept that with a warning.
ENV = {"STALWART_TASK_MODULES": f"tests.integration.jobs,{JOBS}", "STALWART_UNENFORCED_TIME_LIMITS": "warn"}


@cache
def rec() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get("FLOW_RECORD_URL") or os.environ["STALWART_REDIS_URL"])


def redis_ms(client: redis.Redis | None = None) -> int:
    seconds, micros = (client or rec()).time()
    return int(seconds) * 1000 + int(micros) // 1000


@shared_task(bind=True, debounce=Debounce(key="{doc}", wait=1.0, max_wait=3.0))
def bounce(self: Any, doc: Any, n: int) -> int:
    rec().rpush(f"fa:runs:{doc}", json.dumps({"id": self.request.id, "n": n, "at": redis_ms()}))
    return n


@shared_task(bind=True, singleton="{account}")
def single(self: Any, account: Any, sleep: float, tag: str = "") -> str:
    start = redis_ms()
    rec().hset(f"fa:started:{account}", self.request.id, start)
    time.sleep(sleep)
    rec().rpush(f"fa:spans:{account}", json.dumps({"id": self.request.id, "tag": tag, "start": start,
                                                   "end": redis_ms()}))
    return str(account)


def make_app(env: dict[str, str]) -> Stalwart:
    """The enqueuing side, configured like the workers of ``env`` plus :data:`ENV`."""
    application = Stalwart("flow-adversarial", settings=Settings.from_env({**env, **ENV}),
                           include=["tests.integration.jobs", JOBS])
    application.loader.import_default_modules()
    return application


def dead_reasons(app: Stalwart, task_id: str) -> list[str]:
    return [e.reason for e in app.stalwart.dlq.iter() if e.task_id == task_id]


def runs(r: redis.Redis, doc: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in r.lrange(f"fa:runs:{doc}", 0, -1)]


def spans(r: redis.Redis, account: str) -> list[dict[str, Any]]:
    return sorted((json.loads(x) for x in r.lrange(f"fa:spans:{account}", 0, -1)), key=lambda s: s["start"])


def started(r: redis.Redis, account: str) -> dict[str, int]:
    return {bytes(k).decode(): int(v) for k, v in r.hgetall(f"fa:started:{account}").items()}
