"""Tasks for the canvas tests (loaded by workers through STALWART_TASK_MODULES).

Every task counts its body's starts (``starts:<tag>``, plain INCR: a killed body may start again)
and does its effect with ``stalwart.commit`` (``effect:<tag>`` and the value it saw,
``seen:<tag>``), so an effect counted twice is a real double run, not a restarted body.
"""

from __future__ import annotations

import json
import time
from typing import Any

from celery import shared_task

from stalwart import Permanent, commit
from tests.integration.effects import state_redis as _redis


def _effect(tag: str, seen: Any, result: Any) -> Any:
    """Commit effect:<tag> += 1 and seen:<tag> += [seen] with the job's done mark; return result."""
    def effect(pipe: Any) -> None:
        pipe.incr(f"effect:{tag}")
        pipe.rpush(f"seen:{tag}", json.dumps(seen))

    commit(effect, result=result)
    return result


@shared_task(bind=True)
def cv_step(self: Any, value: int, tag: str, sleep: float = 0.0) -> int:
    """A chain step: returns ``value + 1`` and records the worker that ran it (``host:<tag>``).

    With ``sleep``, its first start sets ``sleeping:<tag>`` and sleeps (a test kills it there).
    """
    started = _redis().incr(f"starts:{tag}")
    _redis().rpush(f"host:{tag}", str(self.request.hostname))
    if sleep and started == 1:
        _redis().set(f"sleeping:{tag}", 1)
        time.sleep(sleep)
    return int(_effect(tag, value, value + 1))


@shared_task(bind=True, max_retries=3)
def cv_retry_step(self: Any, value: int, tag: str) -> int:
    """A chain step whose first attempt calls ``self.retry(countdown=0.1)``."""
    _redis().incr(f"starts:{tag}")
    if self.request.retries == 0:
        raise self.retry(countdown=0.1)
    return int(_effect(tag, value, value + 1))


@shared_task
def cv_mark(tag: str) -> str:
    """A callback or errback given as an immutable signature: one effect per run."""
    _redis().incr(f"starts:{tag}")
    return str(_effect(tag, None, tag))


@shared_task
def cv_collect(values: list[Any], tag: str) -> list[Any]:
    """A chord or link callback that receives results: records them."""
    _redis().incr(f"starts:{tag}")
    return list(_effect(tag, values, values))


@shared_task
def cv_permanent(tag: str) -> None:
    """Fails permanently on every attempt."""
    _redis().incr(f"starts:{tag}")
    raise Permanent(f"cv_permanent {tag} refuses")


@shared_task(bind=True, max_retries=2)
def cv_exhaust(self: Any, tag: str) -> None:
    """Calls ``self.retry(countdown=0.05)`` on every attempt: 3 attempts, then exhausted."""
    _redis().incr(f"starts:{tag}")
    raise self.retry(countdown=0.05)


@shared_task(max_retries=2, retry_backoff=0.05, retry_backoff_max=0.1)  # type: ignore[call-overload,untyped-decorator]
def cv_flaky(tag: str) -> None:
    """Raises a transient error on every attempt: retried by the envelope's backoff, then exhausted."""
    _redis().incr(f"starts:{tag}")
    raise RuntimeError(f"cv_flaky {tag} failed")
