"""The body both sides of bench/fairness.py run: 10 ms of work, then a record on the Redis clock."""

from __future__ import annotations

import os
import time
from functools import cache

import redis


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["STALWART_REDIS_URL"])


def finish(tenant: str, enqueued_ms: int) -> None:
    """10 ms of work; A's jobs count themselves, the others record (enqueued, done) on the Redis clock."""
    time.sleep(0.01)
    if tenant == "A":
        _client().incr("bench:done:A")
        return
    seconds, micros = _client().time()
    _client().rpush("bench:done", f"{enqueued_ms} {int(seconds) * 1000 + int(micros) // 1000}")
