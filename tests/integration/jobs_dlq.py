"""Tasks for the DLQ replay tests: they fail until an operator "fixes" them with a Redis flag."""

from __future__ import annotations

from celery import shared_task

from tests.integration.effects import state_redis as _redis


@shared_task(max_retries=2, retry_backoff=0.05, retry_backoff_max=0.1)
def broken_until_fixed(key: str) -> str:
    """Fails transiently until ``fixed:<key>`` is set; then records its effect."""
    r = _redis()
    r.incr(f"attempts:{key}")
    if not r.exists(f"fixed:{key}"):
        raise ConnectionError(f"{key}: downstream is broken")
    r.incr(f"effect:{key}")
    return f"done {key}"


@shared_task(idempotency_key="order-{order_id}", max_retries=1, retry_backoff=0.05)
def charge_when_fixed(order_id: str) -> str:
    """An idempotent charge that fails until ``fixed:order-<id>`` is set."""
    r = _redis()
    r.incr(f"attempts:order-{order_id}")
    if not r.exists(f"fixed:order-{order_id}"):
        raise ConnectionError(f"order {order_id}: payment provider down")
    r.incr(f"effect:order-{order_id}")
    return f"charged {order_id}"
