"""Tasks for the console tests: crafted failures, jobs an operator fixes and replays, a canvas,
and a dependency behind a breaker."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from stalwart import Permanent
from stalwart.policies.breakers import Breaker
from tests.integration.effects import state_redis as _redis

# HTML, script, ANSI colour, an OSC 8 hyperlink and a bidi override: none may reach a page raw.
CRAFTED = ("<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script> "
           "\x1b[31mred\x1b[0m \x1b]8;;http://evil.example\x07link\x1b]8;;\x07 \u202eesrever")
PAYMENTS = Breaker("console-payments", failure_rate=0.5, window=60, min_calls=3, open_for=600)


@shared_task
def crafted(order_id: int, card_number: str, note: str = "") -> None:
    """Dies at once with a message full of markup and escape sequences; its card is a secret."""
    raise Permanent(f"order {order_id} refused: {CRAFTED} {note}")


@shared_task
def fixable(order_id: int) -> str:
    """Dies (permanently) until ``fixed:<order_id>`` is set; then records its effect."""
    r = _redis()
    if not r.exists(f"fixed:{order_id}"):
        raise Permanent(f"order {order_id} failed: the payment provider is down")
    r.incr(f"effect:{order_id}")
    return f"paid {order_id}"


@shared_task
def then_record(result: Any, key: str) -> str:
    """A chain's next step: records that it ran, with what it was given."""
    _redis().set(f"chained:{key}", str(result))
    return key


@shared_task(breaker=PAYMENTS, max_retries=0)
def pay(order_id: int) -> None:
    """A call to a payment provider that is down: the breaker counts the failures."""
    raise ConnectionError(f"payment provider down for order {order_id}")


@shared_task(bind=True)
def fixable_tenant(self: Any, order_id: int) -> str:
    """Records the ``tenant`` header it was sent with, then dies until ``fixed:<order_id>`` is set."""
    r = _redis()
    r.set(f"tenant:{order_id}", str(getattr(self.request, "tenant", None)))
    if not r.exists(f"fixed:{order_id}"):
        raise Permanent(f"order {order_id} failed: the payment provider is down")
    return f"paid {order_id}"
