"""What a dead message was, beyond its arguments: Celery's execution options, so that a replay
re-publishes it as it was sent. Pure functions over a Celery request or a raw message.

Kept: the canvas (``chain``, ``link``/``link_error`` callbacks, ``chord``, ``group_id``/
``group_index``), custom headers (a tenant header, stamps), ``root_id``/``parent_id``,
``shadow``, ``priority``, time limits, ``ignore_result`` and ``reply_to``. Not kept, by
design: the ETA/countdown and ``expires`` (a replay runs now, without the old deadline) and the
retry count (a replayed job gets its attempts again); Stalwart's own header is rebuilt by replay.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from stalwart.job.header import FAIR_HEADER

# Protocol-2 headers Celery itself sets; every other header is a custom one and is kept.
CELERY_HEADERS = frozenset({
    "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries", "timelimit",
    "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result", "replaced_task_nesting",
    "stamped_headers", "stamps", "correlation_id", "reply_to",
})
STALWART_PREFIX = "stalwart"  # Stalwart's own headers (its job header, delay, park, malformed marks)
KEPT_OWN_HEADERS = frozenset({FAIR_HEADER})  # a replay re-enters its fair_by lane
DROPPED_HEADERS = frozenset({"x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason"})


def custom_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The headers a sender added (not Celery's, not Stalwart's, not a broker's dead-lettering)."""
    if not isinstance(headers, Mapping):
        return {}
    skip = CELERY_HEADERS | DROPPED_HEADERS
    return {str(k): v for k, v in headers.items()
            if k not in skip and (k in KEPT_OWN_HEADERS or not str(k).startswith(STALWART_PREFIX))}


def _clean(options: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe, without empty values (Celery's defaults apply to what is absent)."""
    kept = {k: v for k, v in options.items() if v not in (None, [], {}, "")}
    out: dict[str, Any] = json.loads(json.dumps(kept, default=repr))
    return out


def _time_limits(timelimit: Any) -> tuple[Any, Any]:
    if isinstance(timelimit, (list, tuple)) and len(timelimit) == 2:
        return timelimit[0], timelimit[1]
    return None, None


def _stamps(stamped: Any, stamps: Any) -> dict[str, Any]:
    if not isinstance(stamped, (list, tuple)) or not stamped:
        return {}
    values = stamps if isinstance(stamps, Mapping) else {}
    return {"stamped_headers": list(stamped), **{str(k): values.get(k) for k in stamped if k in values}}


def from_request(request: Any) -> dict[str, Any]:
    """The execution options of the message behind a Celery task request (any attribute may be
    missing: a request built by hand, or by an older Celery)."""
    def get(name: str) -> Any:
        return getattr(request, name, None)

    hard, soft = _time_limits(get("timelimit"))
    delivery = get("delivery_info")
    return _clean({
        "chain": get("chain"), "link": get("callbacks"), "link_error": get("errbacks"), "chord": get("chord"),
        "group_id": get("group"), "group_index": get("group_index"), "root_id": get("root_id"),
        "parent_id": get("parent_id"), "shadow": get("shadow"),
        "priority": delivery.get("priority") if isinstance(delivery, Mapping) else None,
        "time_limit": hard, "soft_time_limit": soft, "ignore_result": bool(get("ignore_result")) or None,
        "reply_to": get("reply_to"), "headers": custom_headers(get("headers")),
        **_stamps(get("stamped_headers"), get("stamps")),
    })


def from_message(headers: Mapping[str, Any], embed: Any, properties: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The execution options of a protocol-2 message: its headers and the body's ``embed`` part."""
    embed = embed if isinstance(embed, Mapping) else {}
    props = properties if isinstance(properties, Mapping) else {}
    found = props.get("delivery_info")
    info: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    hard, soft = _time_limits(headers.get("timelimit"))
    return _clean({
        "chain": embed.get("chain"), "link": embed.get("callbacks"), "link_error": embed.get("errbacks"),
        "chord": embed.get("chord"), "group_id": headers.get("group"), "group_index": headers.get("group_index"),
        "root_id": headers.get("root_id"), "parent_id": headers.get("parent_id"), "shadow": headers.get("shadow"),
        "priority": props.get("priority", info.get("priority")),
        "time_limit": hard, "soft_time_limit": soft,
        "ignore_result": bool(headers.get("ignore_result")) or None,
        "reply_to": props.get("reply_to"), "headers": custom_headers(headers),
        **_stamps(headers.get("stamped_headers"), headers.get("stamps")),
    })


REPLAY_OPTIONS = frozenset({
    "chain", "link", "link_error", "chord", "group_id", "group_index", "root_id", "parent_id", "shadow",
    "priority", "time_limit", "soft_time_limit", "ignore_result", "reply_to", "stamped_headers",
})


def replay_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Recorded options as ``send_task`` keyword arguments, and the custom headers apart."""
    found = options.get("stamped_headers")
    stamps: list[Any] = found if isinstance(found, list) else []
    kwargs = {k: v for k, v in options.items() if k in REPLAY_OPTIONS or k in stamps}
    headers = options.get("headers")
    return kwargs, dict(headers) if isinstance(headers, Mapping) else {}


def split_body(decoded: Any) -> tuple[list[Any], dict[str, Any], dict[str, Any]] | None:
    """``(args, kwargs, embed)`` of a decoded protocol-2 body, or None when it is not one."""
    if not (isinstance(decoded, (list, tuple)) and len(decoded) == 3):
        return None
    args, kwargs, embed = decoded
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, Mapping):
        return None
    return list(args), dict(kwargs), dict(embed) if isinstance(embed, Mapping) else {}


__all__ = ["custom_headers", "from_message", "from_request", "replay_options", "split_body"]
