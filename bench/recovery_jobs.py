"""The job bench/recovery.py runs on both apps: counts starts and finishes in Redis."""

from __future__ import annotations

import os
import time

import redis
from celery import shared_task


@shared_task(name="bench.record")
def record(key: str, sleep: float) -> str:
    """INCR starts:<key>, sleep, INCR effect:<key>."""
    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    client.incr(f"starts:{key}")
    time.sleep(sleep)
    client.incr(f"effect:{key}")
    return key
