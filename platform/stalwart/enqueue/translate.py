"""Enqueue-side translation of Stalwart's options into message headers."""

from __future__ import annotations

import datetime as dt
import time
from contextvars import ContextVar
from typing import Any

from stalwart.broker.decode import CLOCK_FIELD, LOCAL_CLOCK
from stalwart.errors import ConfigurationError
from stalwart.job.header import DELAY_HEADER, HEADER, Meta

# The trace id of the job running in this process, so jobs it enqueues inherit it.
current_trace: ContextVar[str | None] = ContextVar("stalwart_trace", default=None)

STALWART_ENQUEUE_OPTIONS = ("idempotency_key", "trace_id", "deadline")


def _seconds_until(value: object, name: str) -> float:
    if isinstance(value, dt.datetime):
        when = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return when.timestamp() - time.time()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ConfigurationError(f"{name} must be seconds (a number) or a datetime, got {value!r}")


def translate(options: dict[str, Any]) -> Meta:
    """Move countdown/eta, expires/deadline, idempotency_key and trace_id into headers.

    Mutates ``options`` (Celery's keyword arguments to one call) and returns the job's
    :class:`Meta`; the caller's ``headers`` dict is copied, never changed. Celery's own ``eta``
    header is never set: the delay goes to the delayed set, not into a worker's memory, and
    ``expires`` becomes a deadline that dead-letters (``expired``) instead of silently revoking.
    A new job's ``sent`` and ``deadline`` are on this process's clock and marked so; the
    transport moves them onto the Redis clock as it publishes (one clock for every process).
    """
    headers = dict(options.pop("headers", None) or {})
    fresh = not isinstance(headers.get(HEADER), dict)
    meta = Meta() if fresh else Meta.from_header(headers[HEADER])
    key = options.pop("idempotency_key", None)
    if key is not None:
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"idempotency_key must be a non-empty string, got {key!r}")
        meta.key = key
    trace = options.pop("trace_id", None) or (None if HEADER in headers else current_trace.get())
    if trace is not None:
        meta.trace = str(trace)
    for name in ("deadline", "expires"):
        value = options.pop(name, None)
        if value is not None:
            deadline = meta.sent + int(_seconds_until(value, name) * 1000)
            meta.deadline = deadline if meta.deadline is None else min(meta.deadline, deadline)
    delay = 0.0
    countdown, eta = options.pop("countdown", None), options.pop("eta", None)
    if countdown is not None:
        delay = _seconds_until(countdown, "countdown")
    elif eta is not None:
        delay = _seconds_until(eta, "eta")
    local = fresh or headers[HEADER].get(CLOCK_FIELD) == LOCAL_CLOCK  # a replay's fresh ``sent``
    headers[HEADER] = meta.to_header()
    if local:
        headers[HEADER][CLOCK_FIELD] = LOCAL_CLOCK
    if delay > 0:
        headers[DELAY_HEADER] = int(delay * 1000)
    options["headers"] = headers
    return meta
