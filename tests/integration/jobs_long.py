"""Tasks that outlive their state's TTL (issue 10.2) and use Celery's retry() API (issue 10.6)."""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task

from stalwart.job.commit import commit
from tests.integration.effects import state_redis as _redis


@shared_task
def long_commit(key: str, seconds: float) -> str:
    """No idempotency key (its state lives STALWART_DONE_TTL); runs ``seconds``, commits once."""
    _redis().incr(f"starts:{key}")
    time.sleep(seconds)
    commit(lambda pipe: pipe.incr(f"effect:{key}"), result=key)
    return key


@shared_task(bind=True, max_retries=5)
def retry_with(self: Any, key: str, step: int = 0) -> int:
    """Retries with new arguments and a larger max_retries than its own, recording each run."""
    tenant = (self.request.headers or {}).get("tenant")
    _redis().rpush(f"runs:{key}", f"{step}:{self.request.retries}:{tenant}")
    if step < 10:
        raise self.retry(args=[key], kwargs={"step": step + 1}, countdown=0.01, max_retries=10)
    return step


@shared_task(bind=True, max_retries=1)
def retry_past_limit(self: Any, key: str) -> None:
    """retry(exc=...) past max_retries: Celery raises exc, the job is exhausted."""
    _redis().incr(f"attempts:{key}")
    raise self.retry(exc=KeyError(f"{key}: gone"), countdown=0.01)


@shared_task(bind=True, max_retries=3)
def retry_no_throw(self: Any, key: str) -> str:
    """retry(throw=False) schedules the retry and the body goes on, as Celery documents."""
    runs = _redis().incr(f"runs:{key}")
    if runs == 1:
        self.retry(countdown=0.01, throw=False)
        _redis().set(f"went_on:{key}", 1)
        return "went on"
    return "retried"
