"""Tasks for the Redis Cluster state-store test; effects go to the broker's single Redis."""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import shared_task


def _effects() -> redis.Redis:
    return redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])


@shared_task(bind=True, max_retries=3, retry_backoff=0.05, retry_backoff_max=0.1)
def flaky_on_cluster(self: Any, key: str, failures: int) -> int:
    """Fails ``failures`` times, then records its effect: retries cross the cluster state store."""
    if self.request.retries < failures:
        raise ConnectionError(f"{key}: transient failure {self.request.retries + 1}")
    _effects().incr(f"effect:{key}")
    return self.request.retries + 1


@shared_task(max_retries=1, retry_backoff=0.05)
def doomed_on_cluster(key: str) -> None:
    raise TimeoutError(f"{key}: never works")
