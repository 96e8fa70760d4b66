"""Tasks for the soak test: successes, retries, dead jobs, deferrals, dynamic limit and breaker names."""

from __future__ import annotations

import random
import time
from typing import Any

from celery import shared_task

from stalwart import Breaker, Concurrency, Permanent, RateLimit
from stalwart.job.commit import commit

TENANTS = 12  # dynamic policy names: one budget per tenant, a bounded set of them


@shared_task(idempotency_key="{key}")
def ok(key: str) -> str:
    """Its effect is committed once per key, however often it is delivered."""
    commit(lambda pipe: pipe.incr(f"effect:{key}"), result=key)
    return key


@shared_task(bind=True, idempotency_key="{key}", max_retries=3, retry_backoff=0.05, retry_backoff_max=0.2)
def flaky(self: Any, key: str) -> str:
    """Fails its first attempt, then commits."""
    if self.request.retries == 0:
        raise ConnectionError(f"{key}: transient")
    commit(lambda pipe: pipe.incr(f"effect:{key}"), result=key)
    return key


@shared_task
def doomed(key: str) -> None:
    raise Permanent(f"{key}: never")


@shared_task(idempotency_key="{key}")
def tenant_call(key: str, tenant: int) -> str:
    """Holds a tenant's concurrency slot, rate and breaker (names made at run time); contention
    defers it."""
    name = f"soak-tenant-{tenant}"
    with (Concurrency(name, 1, lease=5).hold(), RateLimit(name, "50/s", burst=5).hold(),
          Breaker(name, window=10, min_calls=1000, failure_on=(TimeoutError,)).hold()):
        time.sleep(random.random() * 0.02)
    commit(lambda pipe: pipe.incr(f"effect:{key}"), result=key)
    return key
