"""The state-store client the test tasks record their effects with: one per process."""

from __future__ import annotations

import os
from functools import cache

import redis


@cache
def state_redis() -> redis.Redis:
    """A client for ``STALWART_REDIS_URL``; redis-py reconnects by itself after a fork."""
    return redis.Redis.from_url(os.environ["STALWART_REDIS_URL"])
