"""Tasks for the operations tests (Sentry, logs and trace ids, switches, status)."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task

from stalwart import Permanent
from stalwart.enqueue.translate import current_trace
from tests.integration.effects import state_redis as _redis

log = logging.getLogger(__name__)


@shared_task(bind=True)
def stamp(self: Any, key: str, sleep: float = 0.02) -> None:
    """Records "<start ms>:<retries>:<worker>" in starts:<key>, then works for ``sleep`` s."""
    _redis().rpush(f"starts:{key}", f"{int(time.time() * 1000)}:{self.request.retries}:{self.request.hostname}")
    time.sleep(sleep)


@shared_task(max_retries=0)
def leak(user: str, password: str, token: str | None = None) -> None:
    """Dies at once, quoting its secret in the error message."""
    raise Permanent(f"login for {user} refused with {password}")


@shared_task(bind=True, max_retries=3, retry_backoff=0.05, retry_backoff_max=0.1)
def traced(self: Any, key: str, children: int = 0, mode: str = "ok") -> str | None:
    """Logs, records its trace id, spawns ``children`` jobs; fails first per ``mode``."""
    r = _redis()
    log.info("traced %s running", key)
    r.rpush(f"traces:{key}", str(current_trace.get()))
    if mode == "fail_first" and self.request.retries == 0:
        raise ConnectionError(f"{key}: first attempt fails")
    if mode == "die_first" and not r.exists(f"revived:{key}"):
        raise Permanent(f"{key}: dies until revived")
    for n in range(children):
        traced.delay(f"{key}.{n}")
    return current_trace.get()
