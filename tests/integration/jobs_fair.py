"""Tasks of the fair-lane integration tests: each start is appended to ``fair:starts`` in Redis."""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task

from stalwart import Permanent, RetryAfter
from tests.integration.effects import state_redis as _redis

STARTS = "fair:starts"


def _run(name: str, sleep: float) -> str:
    r = _redis()
    r.rpush(STARTS, name)
    if sleep:
        time.sleep(sleep)
    r.incr(f"fair:runs:{name}")
    return name


@shared_task(fair_by="{tenant}", fair_weights={"heavy": 3})
def fair_job(tenant: str, n: int, sleep: float = 0.0) -> str:
    """Records its start as ``<tenant>/<n>``, sleeps, counts its run."""
    return _run(f"{tenant}/{n}", sleep)


@shared_task
def plain_job(n: int, sleep: float = 0.0) -> str:
    """The same without fair_by: queued on the plain list."""
    return _run(f"plain/{n}", sleep)


@shared_task(bind=True, fair_by="{tenant}", max_retries=3)
def fair_defer_once(self: Any, tenant: str, n: int, seconds: float) -> str:
    """Asks to run again after ``seconds`` once (a retry through the delayed set), then runs."""
    if self.request.retries == 0:
        _redis().incr(f"fair:first:{tenant}/{n}")
        raise RetryAfter(seconds)
    return _run(f"{tenant}/{n}", 0.0)


@shared_task(fair_by="{tenant}")
def fair_until_fixed(tenant: str, n: int) -> str:
    """Dies (Permanent) until ``fair:fixed`` is set."""
    if not _redis().get("fair:fixed"):
        raise Permanent("not fixed yet")
    return _run(f"{tenant}/{n}", 0.0)
