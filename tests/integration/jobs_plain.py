"""Tasks the plain-Celery-producer tests send by name from a ``celery.Celery`` app."""

from __future__ import annotations

import os
import time

from celery import shared_task

from tests.integration.effects import state_redis as _redis


@shared_task(max_age=2)
def old_crash(key: str) -> None:
    """Useless two seconds after it was first seen; its first delivery kills its child late."""
    if _redis().incr(f"attempts:{key}") == 1:
        time.sleep(2.5)
        os._exit(1)
    _redis().incr(f"effect:{key}")
