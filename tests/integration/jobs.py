"""Tasks the integration tests run in real workers. Effects are recorded in Redis."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import shared_task

from stalwart import Permanent, RetryAfter
from tests.integration.effects import state_redis as _redis


@shared_task
def record(key: str, sleep: float = 0.0) -> str:
    """INCR effect:<key>: how many times the body of this job ran."""
    if sleep:
        time.sleep(sleep)
    _redis().incr(f"effect:{key}")
    return key


@shared_task(bind=True, max_retries=5, retry_backoff=0.05, retry_backoff_max=0.2)
def fail_times(self: Any, key: str, times: int) -> int:
    """Fails transiently ``times`` times, then records its effect."""
    _redis().incr(f"attempts:{key}")
    if self.request.retries < times:
        raise ConnectionError(f"{key}: transient failure {self.request.retries + 1}")
    _redis().incr(f"effect:{key}")
    return self.request.retries + 1


@shared_task(max_retries=2, retry_backoff=0.05, retry_backoff_max=0.1)
def always_fail(key: str) -> None:
    _redis().incr(f"attempts:{key}")
    raise TimeoutError(f"{key}: never works")


@shared_task
def permanent(key: str) -> None:
    _redis().incr(f"attempts:{key}")
    raise Permanent(f"{key}: cannot ever succeed")


@shared_task(bind=True, max_retries=3)
def retry_after(self: Any, key: str, seconds: float) -> float:
    """Asks for a retry after exactly ``seconds`` once, then succeeds."""
    r = _redis()
    if self.request.retries == 0:
        r.set(f"first:{key}", time.time())
        raise RetryAfter(seconds)
    r.set(f"second:{key}", time.time())
    return seconds


@shared_task(soft_time_limit=0.5, time_limit=3, max_retries=1, retry_backoff=0.05)
def soft_limited(key: str, seconds: float) -> None:
    _redis().incr(f"attempts:{key}")
    time.sleep(seconds)


@shared_task(time_limit=1, max_deliveries=2)
def hard_limited(key: str) -> None:
    _redis().incr(f"attempts:{key}")
    time.sleep(30)


@shared_task(max_deliveries=3)
def crash(key: str) -> None:
    """Kills its own process: a poison pill."""
    _redis().incr(f"attempts:{key}")
    os._exit(1)


@shared_task(idempotency_key="order-{order_id}")
def charge_order(order_id: str, amount: int) -> str:
    _redis().incr(f"effect:order-{order_id}")
    return f"charged {amount}"
