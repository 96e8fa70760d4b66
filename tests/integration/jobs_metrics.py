"""Tasks for the ops and metrics tests: they record which pool child ran them, and when."""

from __future__ import annotations

import os
import time

from celery import shared_task

from tests.integration.effects import state_redis as _redis


@shared_task
def note_pid(key: str, sleep: float = 0.0) -> int:
    """SADD pids:<key> the pool child's pid, then INCR effect:<key>."""
    if sleep:
        time.sleep(sleep)
    r = _redis()
    r.sadd(f"pids:{key}", os.getpid())
    r.incr(f"effect:{key}")
    return os.getpid()


@shared_task
def slow(key: str, seconds: float) -> None:
    """SET started:<key>, sleep, then INCR effect:<key>: a job to drain."""
    r = _redis()
    r.set(f"started:{key}", 1)
    time.sleep(seconds)
    r.incr(f"effect:{key}")
