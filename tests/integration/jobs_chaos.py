"""Tasks for the reliability and chaos tests: effects committed once per key."""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task

from stalwart.job.commit import commit
from tests.integration.effects import state_redis as _redis


@shared_task(idempotency_key="{key}")
def record_once(key: str, sleep: float = 0.0) -> str:
    """INCR effect:<key> together with the job's done mark: at most once per key."""
    if sleep:
        time.sleep(sleep)
    commit(lambda pipe: pipe.incr(f"effect:{key}"), result=key)
    return key


@shared_task(idempotency_key="{key}")
def slow_once(key: str, sleep: float) -> str:
    """Counts body starts, sleeps, then records its effect once (drain and lease tests)."""
    _redis().incr(f"starts:{key}")
    time.sleep(sleep)
    commit(lambda pipe: pipe.incr(f"effect:{key}"), result=key)
    return key


@shared_task(idempotency_key="{key}", max_retries=3, retry_backoff=0.05, retry_backoff_max=0.1)
def fail_once(key: str) -> str:
    """Fails its first attempt (the claim is released), then succeeds."""
    attempts = _redis().incr(f"attempts:{key}")
    if attempts == 1:
        raise ConnectionError(f"{key}: transient")
    _redis().incr(f"effect:{key}")
    return key


@shared_task(idempotency_key="{key}")
def commit_then_fail(key: str) -> None:
    """Commits its effect, then raises: the job stays done and never runs again."""
    _redis().incr(f"attempts:{key}")
    commit(lambda pipe: pipe.incr(f"effect:{key}"))
    raise ConnectionError("after the effect")


@shared_task(idempotency_key="{key}")
def plain_keyed(key: str) -> dict[str, Any]:
    """Records its effect without commit() and returns a result to be replayed."""
    _redis().incr(f"effect:{key}")
    return {"key": key, "n": 1}
