"""Debounced and singleton tasks the flow-control integration tests run in real workers.

Each run records itself in Redis on the Redis clock (ms), so the tests compare times on one clock.
"""

from __future__ import annotations

import json
import time
from typing import Any

from celery import shared_task

from stalwart import Debounce
from tests.integration.effects import state_redis as _redis


def redis_ms() -> int:
    seconds, micros = _redis().time()
    return int(seconds) * 1000 + int(micros) // 1000


@shared_task(bind=True, debounce=Debounce(key="{doc}", wait=1.0, max_wait=8.0))
def collapse(self: Any, doc: str, n: int) -> int:
    """A slow-window debounce: enqueues close together collapse."""
    _redis().rpush(f"runs:{doc}", json.dumps({"id": self.request.id, "n": n, "at": redis_ms()}))
    return n


@shared_task(bind=True, debounce=Debounce(key="{doc}", wait=0.4, max_wait=1.2))
def stream(self: Any, doc: str, n: int, sleep: float = 0.0) -> int:
    """A short-window debounce for a steady stream of enqueues."""
    _redis().rpush(f"runs:{doc}", json.dumps({"id": self.request.id, "n": n, "at": redis_ms()}))
    if sleep:
        time.sleep(sleep)
        _redis().rpush(f"ended:{doc}", self.request.id)
    return n


@shared_task(bind=True, singleton="{account}")
def single(self: Any, account: str, sleep: float) -> str:
    """One run at a time per account: its start and end on the Redis clock."""
    start = redis_ms()
    _redis().hset(f"started:{account}", self.request.id, start)
    time.sleep(sleep)
    _redis().rpush(f"spans:{account}", json.dumps({"id": self.request.id, "start": start, "end": redis_ms()}))
    return account
