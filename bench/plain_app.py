"""A plain ``celery.Celery`` app with Stalwart's worker settings: the baseline of every bench.

Same broker Redis, JSON only, late acks, requeue on worker loss, prefetch 1, task events on,
no result backend; kombu's stock Redis transport and no envelope.
"""

from __future__ import annotations

import os
from functools import cache

import redis
from celery import Celery

URL = os.environ.get("STALWART_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("plain", broker=URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    event_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.plain.noop")
def noop() -> None:
    """Does nothing: what the benchmark drains."""


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(URL)


@app.task(name="bench.plain.limited", rate_limit="20/s")
def limited() -> None:
    """Celery's own per-worker rate limit; records the server time it ran at (ratelimit.py)."""
    sec, usec = _client().time()
    _client().rpush("ran:plain", sec + usec / 1e6)
