"""A plain ``celery.Celery`` app with Celery's native ``rate_limit="20/s"``: the baseline of ratelimit.py.

Same broker Redis and worker settings as the Stalwart side (JSON, late acks, prefetch 1).
"""

from __future__ import annotations

import os

import redis
from celery import Celery

URL = os.environ.get("STALWART_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("plain_ratelimit", broker=URL)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)
_client = redis.Redis.from_url(URL)


@app.task(name="bench.plain.limited", rate_limit="20/s")
def limited() -> None:
    """Records the server time it ran at."""
    sec, usec = _client.time()
    _client.rpush("ran:plain", sec + usec / 1e6)
