"""What the console shows of a dead letter, made safe: secret-looking arguments scrubbed (the same
rules as for Sentry, :mod:`stalwart.ops.scrub`), and every control character of message content
(ANSI and OSC escapes, bidi overrides, NULs) shown as a visible escape, in pages and in the JSON
API alike. Pages escape HTML on top (templates autoescape; scripts only set ``textContent``).
Pure functions.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
from collections.abc import Mapping
from typing import Any

from stalwart.dlq.display import show, visible
from stalwart.dlq.entry import DeadLetter, unreplayable_reason
from stalwart.dlq.queue import key_of
from stalwart.dlq.replay import entry_meta
from stalwart.ops.scrub import FILTERED, is_secret, scrub, secret_values

__all__ = ["detail", "iso", "row", "scrubbed_call", "show", "show_map", "show_rows", "visible"]
ROW_ERROR_CHARS = 300

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


def parameter_names(task: Any, count: int) -> list[str | None]:
    """The names of the first ``count`` positional parameters of a registered task's ``run``."""
    try:
        params = list(inspect.signature(task.run).parameters.values())
    except (AttributeError, TypeError, ValueError):
        return [None] * count
    names: list[str | None] = []
    for p in params:
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            break
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
    return (names + [None] * count)[:count]


def scrubbed_call(task: Any, args: list[Any], kwargs: dict[str, Any],
                  headers: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any], set[str]]:
    """Arguments with secret-named ones filtered (positional ones named through the task's
    signature when it is registered here), and the secret values found, to cut from text."""
    names = parameter_names(task, len(args)) if task is not None else [None] * len(args)
    named = {n: a for n, a in zip(names, args, strict=True) if n is not None}
    secrets = secret_values(named) | secret_values(kwargs) | secret_values(dict(headers))
    shown = [FILTERED if n is not None and is_secret(n) else scrub(a, secrets) for n, a in zip(names, args,
                                                                                                strict=True)]
    return shown, scrub(kwargs, secrets), secrets


def _text(value: str | None, secrets: set[str], limit: int | None = None) -> str | None:
    if value is None:
        return None
    cut = value if limit is None else value[:limit]
    return visible(scrub(cut, secrets))


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
    headers, options = scrub(entry.headers or {}, secrets), scrub(entry.options or {}, secrets)
    return show_map({
        "id": entry.id, "task": entry.task, "task_id": entry.task_id, "queue": entry.queue,
        "reason": entry.reason, "replayable": entry.replayable, "why_not_replayable": why,
        "idempotency_key": key_of(entry), "trace_id": meta.trace if entry.headers else None,
        "first_seen": entry.first_seen, "first_seen_iso": iso(entry.first_seen),
        "dead_at": entry.dead_at, "dead_at_iso": iso(entry.dead_at), "hostname": entry.hostname,
        "exc_type": entry.exc_type, "error": _text(entry.exc_message, secrets),
        "args": args, "kwargs": kwargs, "headers": headers, "options": options, "attempts": attempts,
        "traceback": _text(entry.traceback, secrets), "raw": _text(entry.raw, secrets),
        "pretty": {name: pretty(value) for name, value in
                   (("args", args), ("kwargs", kwargs), ("headers", headers), ("options", options))},
    })


def pretty(value: Any) -> str:
    """Indented JSON for a page (JSON escapes control characters itself; the rest are shown)."""
    return visible(json.dumps(value, indent=2, ensure_ascii=False, default=repr))
