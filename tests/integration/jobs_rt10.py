"""Tasks for the issue-10 red-team tests (loaded by workers through STALWART_TASK_MODULES)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from celery import shared_task

from stalwart import Permanent
from tests.integration.effects import state_redis as _redis


@shared_task
def rt_record(key: Any, *rest: Any) -> str:
    """INCR effect:<key> (a chain's next step gets the previous result as ``key``)."""
    _redis().incr(f"effect:{key}")
    return str(key)


@shared_task(bind=True, max_retries=3)
def retry_once(self: Any, key: str) -> str:
    """Calls self.retry() on its first attempt, then returns v-<key>."""
    _redis().incr(f"attempts:{key}")
    if self.request.retries == 0:
        raise self.retry(countdown=0.1)
    return f"v-{key}"


@shared_task(bind=True, max_retries=3)
def retry_once_no_throw(self: Any, key: str) -> str:
    """retry(throw=False) on its first attempt, and the body goes on and returns."""
    _redis().incr(f"attempts:{key}")
    if self.request.retries == 0:
        self.retry(countdown=0.1, throw=False)
    return f"v-{key}"


@shared_task(bind=True)
def header_probe(self: Any, key: str, sleep: float = 0.0) -> str:
    """Records the custom ``tenant`` header this attempt saw."""
    if sleep:
        time.sleep(sleep)
    headers = dict(self.request.headers or {})
    tenant = headers.get("tenant", getattr(self.request, "tenant", None))
    _redis().rpush(f"tenant:{key}", json.dumps(tenant))
    return key


@shared_task
def missing_file(name_hex: str) -> None:
    """Fails permanently naming a file whose name is not UTF-8 (os.fsdecode: a lone surrogate)."""
    _redis().incr(f"attempts:{name_hex}")
    raise Permanent(f"no such file: {os.fsdecode(bytes.fromhex(name_hex))}")


@shared_task(bind=True, max_retries=3)
def retry_later(self: Any, key: str, countdown: float) -> str:
    """Counts attempts; the first attempt asks for a retry ``countdown`` seconds later."""
    _redis().rpush(f"runs:{key}", self.request.retries)
    if self.request.retries == 0:
        raise self.retry(countdown=countdown)
    return key
