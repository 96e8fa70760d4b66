"""What the console shows of a dead letter, made safe: secret-looking arguments scrubbed (the same
rules as for Sentry, :mod:`stalwart.ops.scrub`), and every control character of message content
(ANSI and OSC escapes, bidi overrides, NULs) shown as a visible escape, in pages and in the JSON
API alike. Pages escape HTML on top (templates autoescape; scripts only set ``textContent``).
Pure functions.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from stalwart.dlq.display import show, visible
from stalwart.dlq.entry import DeadLetter, unreplayable_reason
from stalwart.dlq.queue import key_of
from stalwart.dlq.replay import entry_meta
from stalwart.dlq.secrets import parameter_names, scrubbed_call
from stalwart.ops.scrub import scrub, scrub_raw

__all__ = ["detail", "iso", "parameter_names", "row", "scrubbed_call", "show", "show_map", "show_rows", "visible"]
ROW_ERROR_CHARS = 300
REPR_CHARS = 1024  # Celery's own cut of argsrepr/kwargsrepr

def show_map(value: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`show` of a mapping, typed."""
    shown: dict[str, Any] = show(value)
    return shown


def show_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`show` of a list of rows, typed."""
    shown: list[dict[str, Any]] = show(rows)
    return shown


def iso(ms: Any) -> str | None:
    """Epoch milliseconds as UTC ISO-8601 to the millisecond."""
    if not isinstance(ms, (int, float)) or isinstance(ms, bool) or ms <= 0:
        return None
    try:
        when = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: str | None, secrets: set[str], limit: int | None = None) -> str | None:
    """Scrubbed first, then cut (a secret straddling the cut would otherwise show its head)."""
    if value is None:
        return None
    clean: str = scrub(value, secrets)
    return visible(clean if limit is None else clean[:limit])


def _headers(headers: dict[str, Any], args: list[Any], kwargs: dict[str, Any], secrets: set[str]) -> dict[str, Any]:
    """Scrubbed headers, with Celery's argsrepr/kwargsrepr re-derived from the scrubbed arguments
    (the message's own are repr() text, where an escaped secret no longer matches its value)."""
    shown: dict[str, Any] = scrub(headers, secrets)
    if "argsrepr" in headers:
        shown["argsrepr"] = repr(tuple(args))[:REPR_CHARS]
    if "kwargsrepr" in headers:
        shown["kwargsrepr"] = repr(kwargs)[:REPR_CHARS]
    return shown


def row(entry: DeadLetter, task: Any = None) -> dict[str, Any]:
    """One row of the dead-letters table."""
    args, kwargs, secrets = scrubbed_call(task, list(entry.args), dict(entry.kwargs), entry.headers or {})
    call = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
    return show_map({
        "id": entry.id, "task": entry.task, "task_id": entry.task_id, "queue": entry.queue,
        "reason": entry.reason, "dead_at": entry.dead_at, "dead_at_iso": iso(entry.dead_at),
        "attempts": len(entry.attempts), "exc_type": entry.exc_type,
        "error": _text(entry.exc_message, secrets, ROW_ERROR_CHARS), "call": call[:ROW_ERROR_CHARS],
        "replayable": entry.replayable,
    })


def detail(entry: DeadLetter, task: Any = None) -> dict[str, Any]:
    """Everything the entry page shows: scrubbed arguments and headers, the attempts timeline,
    the traceback, and why it cannot be replayed (if so)."""
    args, kwargs, secrets = scrubbed_call(task, list(entry.args), dict(entry.kwargs), entry.headers or {})
    meta = entry_meta(entry)
    attempts = [{**scrub(a, secrets), "at_iso": iso(a.get("at"))} for a in entry.attempts if isinstance(a, dict)]
    why = unreplayable_reason(entry)
    headers = _headers(entry.headers or {}, args, kwargs, secrets)
    options = scrub(entry.options or {}, secrets)
    return show_map({
        "id": entry.id, "task": entry.task, "task_id": entry.task_id, "queue": entry.queue,
        "reason": entry.reason, "replayable": entry.replayable, "why_not_replayable": why,
        "idempotency_key": key_of(entry), "trace_id": meta.trace if entry.headers else None,
        "first_seen": entry.first_seen, "first_seen_iso": iso(entry.first_seen),
        "dead_at": entry.dead_at, "dead_at_iso": iso(entry.dead_at), "hostname": entry.hostname,
        "exc_type": entry.exc_type, "error": _text(entry.exc_message, secrets),
        "args": args, "kwargs": kwargs, "headers": headers, "options": options, "attempts": attempts,
        "traceback": _text(entry.traceback, secrets),
        "raw": None if entry.raw is None else visible(scrub_raw(entry.raw, secrets)),
        "pretty": {name: pretty(value) for name, value in
                   (("args", args), ("kwargs", kwargs), ("headers", headers), ("options", options))},
    })


def pretty(value: Any) -> str:
    """Indented JSON for a page (JSON escapes control characters itself; the rest are shown)."""
    return visible(json.dumps(value, indent=2, ensure_ascii=False, default=repr))
