"""Classify a failure: retry after how long, or dead-letter for which reason. Pure logic."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from celery.exceptions import SoftTimeLimitExceeded

from stalwart.errors import Permanent, RetryAfter, StalwartError
from stalwart.job.retry import RetryCall, exceeded
from stalwart.policies.retry import ExceptionTypes, Retry


@dataclass(frozen=True)
class Verdict:
    """What to do with a failed attempt."""

    action: Literal["retry", "dead"]
    reason: str = ""  # DLQ reason when dead: permanent, exhausted, expired
    delay: float = 0.0


class ExplicitRetry(StalwartError):
    """``self.retry(...)`` called from a task body: retry with the given delay (or the policy's),
    and with the call's arguments, limit and options (:class:`stalwart.job.retry.RetryCall`)."""

    def __init__(self, exc: BaseException | None, countdown: float | None, call: RetryCall | None = None) -> None:
        self.exc = exc
        self.countdown = countdown
        self.call = call if call is not None else RetryCall(exc=exc, countdown=countdown)
        super().__init__(f"retry requested{'' if countdown is None else f' in {countdown:g}s'}: {exc!r}")


def classify(
    exc: BaseException,
    policy: Retry,
    permanent_for: ExceptionTypes,
    attempt: int,
    remaining: float | None,
    rand: Callable[[], float] = random.random,
) -> Verdict:
    """Decide the fate of failed attempt ``attempt`` (1-based) with ``remaining`` deadline seconds."""
    cause = exc.exc if isinstance(exc, ExplicitRetry) and exc.exc is not None else exc
    if isinstance(cause, Permanent) or (permanent_for and isinstance(cause, permanent_for)):
        return Verdict("dead", "permanent")
    explicit = isinstance(exc, (ExplicitRetry, RetryAfter, SoftTimeLimitExceeded))
    if not explicit and not policy.retries(cause):
        return Verdict("dead", "permanent")
    if isinstance(exc, ExplicitRetry) and exc.call.max_retries is not None:
        if exceeded(attempt, exc.call.max_retries):  # retry(max_retries=n) overrides the task's limit
            return Verdict("dead", "exhausted")
    elif policy.max_attempts is not None and attempt >= policy.max_attempts:
        return Verdict("dead", "exhausted")
    delay = backoff_delay(exc, policy, attempt, rand)
    if remaining is not None and delay >= remaining:
        return Verdict("dead", "expired", delay)
    return Verdict("retry", delay=delay)


def backoff_delay(
    exc: BaseException, policy: Retry, attempt: int, rand: Callable[[], float] = random.random
) -> float:
    """The wait before the next attempt: a hint from the task wins, else the policy's backoff."""
    if isinstance(exc, RetryAfter):
        return exc.seconds
    if isinstance(exc, ExplicitRetry) and exc.countdown is not None:
        return max(0.0, float(exc.countdown))
    ceiling = policy.ceiling(attempt)
    return ceiling * rand() if policy.jitter else ceiling
