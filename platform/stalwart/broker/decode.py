"""The decode boundary: what a queue list item becomes before kombu and Celery see it.

Pure and total. :func:`inspect` takes any bytes and returns a :class:`Verdict`: the envelope to
deliver (unchanged, or a plain Celery message normalised to Stalwart's semantics), a quarantine
envelope that carries the raw item to the DLQ with a precise reason, or a due time for the delayed
set. It never raises. What it accepts is exactly what kombu's message and Celery's consumer,
strategy and request read without raising in the worker's main process: every field they touch
has the type they expect, strings are valid Unicode, nesting is bounded.

Plain Celery producers: ``expires`` becomes the job's deadline (a job past it is dead-lettered as
``expired``, never silently revoked), ``eta``/``countdown`` a due time in the delayed set (never
held in worker memory), and a message without a ``stalwart`` header gets one whose ``sent`` is the
Redis time of its first fetch, so ``max_age`` counts from there across redeliveries.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from celery.app.task import Context

from stalwart.job.header import HEADER, Meta

MAX_DEPTH = 100  # nesting of the envelope and of the decoded body (the fetch script's limit too)
MAX_ITEM_BYTES = 64 * 1024 * 1024
MALFORMED_CONTENT_TYPE = "application/x-stalwart-malformed"
MALFORMED_HEADER = "stalwart_malformed"  # the problem, for the DLQ entry
REASON_HEADER = "stalwart_reason"  # malformed, or poison for the crash-loop guard's quarantine
SOURCE_HEADER = "stalwart_source"  # the stable identity the DLQ dedups on
CONTEXT_HEADERS = {"task": "stalwart_malformed_task", "id": "stalwart_malformed_id"}
# A ``stalwart`` header whose ``sent``/``deadline`` are on the publishing process's clock carries
# ``"clock": "local"``; the transport moves them onto the Redis clock as it publishes.
CLOCK_FIELD, LOCAL_CLOCK = "clock", "local"
_MAX_INT = 2**53
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# Header (and embed) names that would shadow a method or an internal flag of the task's request:
# Celery copies both into it. (celery.app.task.Context: read, never changed.)
RESERVED_HEADERS = frozenset(
    {n for n in dir(Context) if n.startswith("__") or callable(getattr(Context, n, None))}
    | {"called_directly", "is_eager", "_protected", "_children"}
)


def reserved(name: str) -> bool:
    """Whether a header or embed name would shadow part of the task request."""
    return name in RESERVED_HEADERS or name.startswith("__")


@dataclass(frozen=True)
class Verdict:
    """What to do with one item: deliver ``envelope`` (a quarantine envelope when ``problem``),
    or, when ``due_ms`` is set, put ``envelope`` in the delayed set due then (Redis clock)."""

    envelope: dict[str, Any]
    problem: str | None = None
    due_ms: int | None = None
    changed: bool = False  # the envelope differs from the item: its unacked record is replaced


def inspect(item: bytes, *, tag: str, queue: str, now_ms: int) -> Verdict:
    """The verdict on ``item``, fetched and recorded unacked under ``tag`` at ``now_ms``."""
    try:
        return _inspect(item, tag, queue, now_ms)
    except Exception as exc:  # noqa: BLE001 - the boundary is total: the unforeseen is quarantined, not fatal
        problem = f"undecodable: {type(exc).__name__}: {str(exc)[:200]}"
        return Verdict(quarantine(item, queue, problem, tag, context=item_context(item)), problem)


def _inspect(item: bytes, tag: str, queue: str, now_ms: int) -> Verdict:
    problem: str | None
    if len(item) > MAX_ITEM_BYTES:
        problem = f"the item is {len(item)} bytes, more than the {MAX_ITEM_BYTES} allowed"
    else:
        envelope, problem = _parse(item)
        if problem is None and envelope["properties"].get("delivery_tag") != tag:
            problem = "the delivery tag is missing or not the one the fetch recorded"
        if problem is None:
            verdict = normalize(envelope, tag, now_ms)
            if verdict.problem is None:
                return verdict
            problem = verdict.problem
    return Verdict(quarantine(item, queue, problem, tag, context=item_context(item)), problem)


def _parse(item: bytes) -> tuple[dict[str, Any], str | None]:
    try:
        envelope = json.loads(item.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return {}, f"not UTF-8: {exc}"
    except ValueError as exc:
        return {}, f"not a JSON envelope: {exc}"
    if not isinstance(envelope, dict):
        return {}, f"not a kombu envelope: a JSON {_kind(envelope)}"
    if too_deep(envelope):
        return envelope, f"nested deeper than {MAX_DEPTH} levels"
    if _SURROGATE_ESCAPE.search(item) and has_lone_surrogate(envelope):
        return envelope, "a string holds a lone UTF-16 surrogate (not valid Unicode)"
    return envelope, envelope_problem(envelope)


def _kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def too_deep(value: object, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests lists/dicts more than ``limit`` levels (iteratively: no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def has_lone_surrogate(value: object) -> bool:
    """Whether any string (or dict key) in ``value`` cannot be encoded as UTF-8."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


# -- the envelope's schema: what kombu and Celery read in the main process ----------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) and abs(value) < _MAX_INT) or (  # type: ignore[arg-type]
        isinstance(value, float) and math.isfinite(value))


def _text(value: object, limit: int = 1024) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit


def _text_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)


def _seconds(value: object) -> bool:
    return value is None or (_is_number(value) and 0 <= value < 10**9)  # type: ignore[operator]


_HEADER_RULES: dict[str, tuple[Any, str]] = {
    "shadow": (_text_or_none, "a string or null"),
    "root_id": (_text_or_none, "a string or null"),
    "parent_id": (_text_or_none, "a string or null"),
    "group": (_text_or_none, "a string or null"),
    "argsrepr": (_text_or_none, "a string or null"),
    "kwargsrepr": (_text_or_none, "a string or null"),
    "origin": (_text_or_none, "a string or null"),
    "lang": (_text_or_none, "a string or null"),
    "eta": (_text_or_none, "an ISO 8601 string or null"),
    "expires": (_text_or_none, "an ISO 8601 string or null"),
    "retries": (lambda v: v is None or (_is_int(v) and 0 <= v < 2**31), "an integer from 0 or null"),
    "group_index": (lambda v: v is None or (_is_int(v) and abs(v) < 2**31), "an integer or null"),
    "replaced_task_nesting": (lambda v: v is None or (_is_int(v) and abs(v) < 2**31), "an integer or null"),
    "ignore_result": (lambda v: v is None or isinstance(v, bool), "a boolean or null"),
    "timelimit": (lambda v: v is None or (isinstance(v, list) and len(v) == 2 and all(_seconds(x) for x in v)),
                  "[soft, hard] seconds (each a number or null) or null"),
    "stamped_headers": (lambda v: v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
                        "a list of strings or null"),
    "stamps": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    HEADER: (lambda v: isinstance(v, dict), "an object"),
}
_META_RULES: dict[str, tuple[Any, str]] = {
    "msg": (_text, "a non-empty string"),
    "gen": (lambda v: _is_int(v) and 0 <= v < 2**31, "an integer from 0"),
    "key": (_text_or_none, "a string or null"),
    "trace": (lambda v: v is None or _text(v), "a non-empty string"),
    "deadline": (lambda v: v is None or _is_number(v), "epoch milliseconds or null"),
    "sent": (lambda v: v is None or _is_number(v), "epoch milliseconds"),
    "first_seen": (lambda v: v is None or _is_number(v), "epoch milliseconds or null"),
    "history": (lambda v: v is None or (isinstance(v, list) and all(isinstance(h, dict) for h in v)),
                "a list of objects"),
}
_PROPERTY_RULES: dict[str, tuple[Any, str]] = {
    "body_encoding": (lambda v: v in (None, "base64"), '"base64" or null'),
    "delivery_info": (lambda v: v is None or (isinstance(v, dict) and all(
        _text_or_none(v.get(k)) for k in ("exchange", "routing_key"))), "an object with string exchange/routing_key"),
    "correlation_id": (_text_or_none, "a string or null"),
    "reply_to": (_text_or_none, "a string or null"),
    "priority": (lambda v: v is None or (_is_int(v) and 0 <= v <= 255), "an integer 0-255 or null"),
}


def _rules_problem(where: str, values: dict[str, Any], rules: dict[str, tuple[Any, str]]) -> str | None:
    for name, (ok, wanted) in rules.items():
        if name in values and not ok(values[name]):
            return f"{where} {name!r} must be {wanted}, got {_shown(values[name])}"
    return None


def _shown(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, (dict, list)) else _kind(value)
    return text if len(text) <= 80 else text[:77] + "..."


def envelope_problem(envelope: dict[str, Any]) -> str | None:
    """Why kombu or Celery could not take this envelope in the worker's main process, or None."""
    missing = [f for f in ("body", "headers", "properties") if f not in envelope]
    if missing:
        return f"not a kombu envelope: no {', '.join(missing)}"
    for field in ("content-type", "content-encoding"):
        if not _text_or_none(envelope.get(field)):
            return f"{field!r} must be a string or null, got {_shown(envelope.get(field))}"
    if envelope.get("content-type") == MALFORMED_CONTENT_TYPE:  # only the transport makes these
        return f"content type {MALFORMED_CONTENT_TYPE} is Stalwart's own, not a producer's"
    props, headers = envelope["properties"], envelope["headers"]
    if not isinstance(props, dict):
        return "'properties' must be an object"
    if headers is not None and not isinstance(headers, dict):
        return "'headers' must be an object or null"
    problem = _rules_problem("property", props, _PROPERTY_RULES) or _body_problem(envelope, props)
    if problem is None and isinstance(headers, dict) and "task" in headers:
        problem = headers_problem(headers)
    return problem


def is_task(envelope: dict[str, Any]) -> bool:
    """A Celery task message (protocol 2: its headers name the task). Other kombu messages (replies
    to ``celery inspect``, rpc results) pass with the envelope checks only; a worker's consumer
    dead-letters them if they land in a task queue."""
    return isinstance(envelope.get("headers"), dict) and "task" in envelope["headers"]


def _body_problem(envelope: dict[str, Any], props: dict[str, Any]) -> str | None:
    body = envelope["body"]
    if not isinstance(body, str):
        return f"'body' must be a string, got a JSON {_kind(body)}"
    if props.get("body_encoding") == "base64":
        try:
            base64.b64decode(body.encode("ascii"))
        except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
            return f"'body' is not base64: {exc}"
    return None


def headers_problem(headers: dict[str, Any]) -> str | None:
    """Why Celery's consumer or request could not take these task headers, or None."""
    for name in ("task", "id"):
        if not _text(headers.get(name), 255):
            return f"header {name!r} must be a string of 1 to 255 characters, got {_shown(headers.get(name))}"
    shadowing = sorted(name for name in headers if reserved(name))
    if shadowing:
        return f"header {shadowing[0]!r} would shadow a method of the task request"
    problem = _rules_problem("header", headers, _HEADER_RULES)
    if problem is None and isinstance(headers.get(HEADER), dict):
        problem = _rules_problem(f"{HEADER} header field", headers[HEADER], _META_RULES)
    return problem


# -- plain Celery producers ------------------------------------------------------------------------


def parse_time_ms(value: str) -> int:
    """An ISO 8601 time (Celery's eta/expires) in epoch ms; naive times are UTC, as Celery sends."""
    when = dt.datetime.fromisoformat(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1000)


def normalize(envelope: dict[str, Any], tag: str, now_ms: int) -> Verdict:
    """Give a plain Celery message Stalwart's semantics; a Stalwart message passes unchanged."""
    if not is_task(envelope):
        return Verdict(envelope)
    headers = envelope["headers"]
    eta, expires, meta_raw = headers.get("eta"), headers.get("expires"), headers.get(HEADER)
    if eta is None and expires is None and isinstance(meta_raw, dict):
        return Verdict(envelope)
    try:
        due = None if eta is None else parse_time_ms(eta)
        deadline = None if expires is None else parse_time_ms(expires)
    except (ValueError, OverflowError, OSError) as exc:
        return Verdict(envelope, problem=f"header 'eta'/'expires' is not an ISO 8601 time: {exc}")
    if isinstance(meta_raw, dict):
        meta = Meta.from_header(meta_raw)
    else:
        meta = Meta(msg=f"celery:{tag}", trace=headers["id"].replace("-", ""), sent=now_ms)
    if deadline is not None:
        meta.deadline = deadline if meta.deadline is None else min(meta.deadline, deadline)
    changed = {**envelope, "headers": {**headers, HEADER: meta.to_header(), "eta": None, "expires": None}}
    if due is not None and meta.deadline is not None:
        due = min(due, meta.deadline)  # a job due after its deadline is dead-lettered at the deadline
    return Verdict(changed, due_ms=due if due is not None and due > now_ms else None, changed=True)


# -- the quarantine envelope -----------------------------------------------------------------------


_CONTEXT = {name: re.compile(rb'"' + name.encode() + rb'"\s*:\s*"([^"\\]{1,255})"') for name in CONTEXT_HEADERS}


def item_context(raw: bytes) -> dict[str, str]:
    """Task name and id read from a raw item with a bounded regex: never decodes it (the item may
    be the one that kills a decoder), so it is safe for any bytes."""
    head = raw[: 64 * 1024]
    found = {}
    for name, pattern in _CONTEXT.items():
        match = pattern.search(head)
        if match:
            found[name] = match.group(1).decode("utf-8", "replace")
    return found


def quarantine(raw: bytes, queue: str, problem: str, tag: str, *, reason: str = "malformed",
               source: str | None = None, context: dict[str, str] | None = None) -> dict[str, Any]:
    """A valid kombu envelope carrying ``raw`` (base64) to the consumer, which dead-letters it with
    ``reason`` and ``problem``; acknowledging it settles the record or stream entry under ``tag``."""
    headers: dict[str, Any] = {MALFORMED_HEADER: problem[:500], REASON_HEADER: reason, SOURCE_HEADER: source or tag}
    for name, value in (context or {}).items():
        headers[CONTEXT_HEADERS[name]] = value
    return {
        "body": base64.b64encode(raw).decode(),
        "content-encoding": "binary",
        "content-type": MALFORMED_CONTENT_TYPE,
        "headers": headers,
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": tag,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
        },
    }


# -- restoring unacked records ---------------------------------------------------------------------


def restore_target(record: bytes) -> tuple[bytes, str, str] | None:
    """(item, exchange, routing key) of an unacked record, the item byte for byte; None if unreadable.

    The fetch script writes ``[<item>,"",<queue>]`` around the raw item, which is cut out as is;
    a record kombu wrote itself (``[payload, exchange, routing_key]``) is parsed.
    """
    marker = record.rfind(b',"",')
    if record.startswith(b"[") and record.endswith(b"]") and marker > 0:
        try:
            queue = json.loads(record[marker + 4: -1])
        except ValueError:
            queue = None
        if isinstance(queue, str):
            return record[1:marker], "", queue
    try:
        parsed = json.loads(record.decode("utf-8", "replace"), strict=False)
    except (ValueError, RecursionError):
        return None
    if isinstance(parsed, list) and len(parsed) == 3 and all(isinstance(x, str) for x in parsed[1:]):
        return json.dumps(parsed[0]).encode(), parsed[1], parsed[2]
    return None


def priority_of(item: bytes) -> int:
    """The message's priority property (0-255), 0 when it has none or the item is unreadable."""
    try:
        props = json.loads(item).get("properties", {})
        value = props.get("priority")
    except Exception:  # noqa: BLE001 - any unreadable item restores at the default priority
        return 0
    return value if _is_int(value) and 0 <= value <= 255 else 0
