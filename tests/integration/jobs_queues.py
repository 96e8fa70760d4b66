"""Tasks for the multi-queue tests: each records the order in which it started, then its effect once."""

from __future__ import annotations

import time

from celery import shared_task

from stalwart.job.commit import commit
from tests.integration.effects import state_redis as _redis


@shared_task(idempotency_key="{key}")
def ordered_once(key: str, sleep: float = 0.0) -> str:
    """SET order:<key> to a global start counter, work ``sleep`` s, then INCR effect:<key> with the
    done mark."""
    r = _redis()
    r.set(f"order:{key}", r.incr("order"))
    if sleep:
        time.sleep(sleep)
    commit(lambda pipe: pipe.incr(f"effect:{key}"), result=key)
    return key
