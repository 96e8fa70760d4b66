"""More test tasks for the envelope tests: they stamp times from the Redis clock."""

from __future__ import annotations

from typing import Any

import redis
from celery import shared_task

from stalwart import RetryAfter
from tests.integration.effects import state_redis as _redis


def _redis_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


@shared_task
def stamp(key: str) -> None:
    """RPUSH ran:<key> the Redis time (ms) at which the body ran."""
    r = _redis()
    r.rpush(f"ran:{key}", _redis_ms(r))


@shared_task(bind=True, max_retries=3)
def hinted(self: Any, key: str, seconds: float, times: int = 1) -> int:
    """Raises RetryAfter(seconds) ``times`` times, stamping each attempt on the Redis clock."""
    r = _redis()
    r.rpush(f"ran:{key}", _redis_ms(r))
    if self.request.retries < times:
        raise RetryAfter(seconds)
    return self.request.retries + 1


@shared_task(max_age=0.5)
def aged(key: str) -> None:
    """A job that is useless half a second after it was enqueued."""
    _redis().incr(f"effect:{key}")
