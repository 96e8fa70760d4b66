"""Stalwart tasks for bench/paused.py: a task that gets paused, and a probe that records its latency."""

from __future__ import annotations

import os
import threading

import redis
from celery import shared_task

_local = threading.local()


def _redis() -> redis.Redis:
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = redis.Redis.from_url(os.environ["STALWART_REDIS_URL"])
    return client


@shared_task(name="bench.paused.work")
def work(n: int) -> int:
    """The task that is paused while the probes run."""
    return n


@shared_task(name="bench.probe")
def probe(sent_ms: int) -> None:
    """Record how long after its enqueue (Redis clock) this job started."""
    r = _redis()
    seconds, micros = r.time()
    r.rpush("bench:latency", int(seconds) * 1000 + int(micros) // 1000 - sent_ms)
