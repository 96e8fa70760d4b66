"""Example tasks a newcomer learns from: each shows one behaviour of the envelope."""

from __future__ import annotations

import time

from celery import shared_task

from stalwart import Permanent


@shared_task(bind=True, max_retries=5, retry_backoff=0.2, retry_backoff_max=2.0)
def flaky(self, name: str, fail_times: int = 3) -> str:  # type: ignore[no-untyped-def]
    """Fails transiently ``fail_times`` times, then succeeds: retries with backoff and jitter."""
    if self.request.retries < fail_times:
        raise ConnectionError(f"{name}: upstream unavailable (attempt {self.request.retries + 1})")
    return f"{name}: ok after {self.request.retries + 1} attempts"


@shared_task(max_retries=2, retry_backoff=0.1)
def always_fails(reason: str) -> None:
    """A transient failure that never clears: exhausts its attempts, then lands in the DLQ."""
    raise TimeoutError(f"payment gateway timed out: {reason}")


@shared_task(permanent_for=(ValueError,))
def charge(amount_cents: int) -> str:
    """Bad input is permanent: a ValueError goes to the DLQ at once, never retried."""
    if amount_cents <= 0:
        raise ValueError(f"amount must be positive, got {amount_cents}")
    return f"charged {amount_cents}"


@shared_task
def reject_forever(order_id: str) -> None:
    """Raises Permanent: dead-lettered on the first attempt."""
    raise Permanent(f"order {order_id} was cancelled upstream")


@shared_task(soft_time_limit=1, time_limit=5, max_retries=1, retry_backoff=0.1)
def slow_report(seconds: float) -> str:
    """Runs past its soft time limit: treated as a transient timeout, retried, then dead."""
    time.sleep(seconds)
    return f"report took {seconds}s"


@shared_task
def add(x: int, y: int) -> int:
    """A plain job: the common path, two state-store round trips."""
    return x + y


@shared_task
def noop() -> None:
    """Does nothing: what the throughput benchmark drains."""
