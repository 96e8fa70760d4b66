"""The breakers, limits, switches and queues pages: reads on top of the policies' and stores'
public functions, and the operator actions on breakers and switches (each one audited)."""

from __future__ import annotations

import json
from typing import Any

from stalwart.console.context import Console
from stalwart.console.views import iso, show_map, show_rows
from stalwart.errors import ConfigurationError
from stalwart.policies import survey, switches
from stalwart.store import broker as broker_store
from stalwart.store import console as looks

BREAKER_OPS = {"open": "force_open", "close": "close", "reset": "reset"}
SWITCH_STATES = ("paused", "disabled")
TOP_KEYS = 10
CHART_MINUTES = 360


# -- breakers -------------------------------------------------------------------------------------


def _breaker_row(console: Console, status: dict[str, Any]) -> dict[str, Any]:
    rt = console.runtime
    row = dict(status)
    if row.get("template") is True:
        row["keys"] = [_breaker_row(console, key) for key in row.get("keys", [])]
        row["in_flight"] = sum(int(key["in_flight"]) for key in row["keys"])
    else:
        row["in_flight"] = looks.breaker_calls_in_flight(rt.redis, rt.keys, str(row["name"]))
    row["opened_at_iso"] = iso(row.get("opened_at"))
    row["open_until_iso"] = iso(row.get("open_until"))
    return row


def breakers(console: Console) -> list[dict[str, Any]]:
    """Every breaker in use: state, failure rate over its window, calls in flight; a per-key
    template as one row with its busiest keys (``keys``), each a breaker row of its own."""
    rt = console.runtime
    return [show_map(_breaker_row(console, status))
            for status in survey.breakers_overview(rt.redis, rt.keys, TOP_KEYS)]


def breaker_action(console: Console, name: str, action: str, who: str) -> str:
    """Open, close or reset a breaker in use, or one rendered key of a template in use."""
    if action not in BREAKER_OPS:
        raise ConfigurationError(f"breaker action must be one of {', '.join(BREAKER_OPS)}, got {action!r}")
    rt = console.runtime
    if name not in rt.limits.names("breakers") and survey.family_of(rt.redis, rt.keys, "breakers", name) is None:
        raise ConfigurationError(f"no breaker named {name!r} has been used")
    state = survey.breaker_admin(rt.redis, rt.keys, name, BREAKER_OPS[action])  # type: ignore[arg-type]
    console.audit.record(who, f"breaker {action}", name, None, {"state": state})
    return state


# -- limits ---------------------------------------------------------------------------------------


def usage(status: dict[str, Any]) -> float:
    """How busy a limit is now: holders of a concurrency limit, waiting jobs of a rate limit."""
    if status.get("type") == "rate":
        return float(status.get("waiting", 0) or 0) + float(status.get("backlog_seconds", 0) or 0)
    return float(status.get("holders", 0) or 0)


def limits(console: Console) -> dict[str, Any]:
    """Every limit in use with its current usage, and the busiest keys of each per-key template
    (``tenant:{tenant_id}`` → ``tenant:acme``, ``tenant:globex``, ... by recent grants + denials)."""
    rt = console.runtime
    found = survey.limits_overview(rt.redis, rt.keys, TOP_KEYS)
    top: dict[str, list[dict[str, Any]]] = {}
    for status in found:
        if status.get("template") is True:
            keys = status.pop("keys")
            for key in keys:
                key["usage"] = usage(key)
            status["usage"] = sum(float(key["usage"]) for key in keys)
            top[str(status["name"])] = [{"name": key["name"], "usage": key["usage"], "activity": key["activity"],
                                         "granted": key.get("granted"), "denied": key.get("denied")}
                                        for key in keys]
        else:
            status["usage"] = usage(status)
    return show_map({"limits": sorted(found, key=lambda s: str(s["name"])), "top_keys": top})


# -- switches -------------------------------------------------------------------------------------


def switch_list(console: Console, seen: list[str]) -> list[dict[str, Any]]:
    rows = []
    for pattern, info in switches.read(console.runtime.redis, console.runtime.keys).items():
        rows.append({"pattern": pattern, "state": info["state"], "at": info["at"], "at_iso": iso(info["at"]),
                     "matches": console.matching(pattern, seen)})
    return show_rows(rows)


def set_switch(console: Console, pattern: str, state: str, who: str, seen: list[str]) -> dict[str, Any]:
    if state not in SWITCH_STATES:
        raise ConfigurationError(f"switch state must be one of {', '.join(SWITCH_STATES)}, got {state!r}")
    matches = console.matching(pattern, seen)
    at = switches.set_switch(console.runtime.redis, console.runtime.keys, pattern, state,
                             broker=console.runtime.broker_redis)
    console.audit.record(who, f"switch {state}", pattern, len(matches), {"matches": matches[:50]})
    return {"pattern": pattern, "state": state, "at": at, "matches": matches}


def resume(console: Console, pattern: str, who: str, seen: list[str]) -> bool:
    removed = switches.clear(console.runtime.redis, console.runtime.keys, pattern, broker=console.runtime.broker_redis)
    console.audit.record(who, "switch resume", pattern, len(console.matching(pattern, seen)), {"removed": removed})
    return removed


# -- queues ---------------------------------------------------------------------------------------


SEP = "\x06\x16"  # kombu's separator between a queue's name and its priority lists


def queue_names(console: Console, delayed: dict[str, int]) -> list[str]:
    conf = console.capp.conf
    prefix = console.settings.broker_keyprefix
    names = {str(conf.task_default_queue or "celery")}
    names |= {str(q.name) for q in (conf.task_queues or ()) if getattr(q, "name", None)}
    names |= {key.removeprefix(prefix).split(SEP)[0] for key in delayed}
    return sorted(names)


def queue_lists(console: Console, name: str) -> list[str]:
    """The broker lists holding a queue's ready messages: one per priority step (kombu's names,
    with the broker's key prefix)."""
    options = console.capp.conf.broker_transport_options or {}
    steps = options.get("priority_steps") or [0]
    sep = options.get("sep", SEP)
    prefix = console.settings.broker_keyprefix
    return [f"{prefix}{name}{sep}{step}" if step else f"{prefix}{name}" for step in steps]


def _sent_ms(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    try:
        message = json.loads(raw)
        sent = message["headers"]["stalwart"]["sent"]
    except (ValueError, KeyError, TypeError):
        return None
    return int(sent) if isinstance(sent, (int, float)) and not isinstance(sent, bool) else None


def _queue_row(console: Console, name: str, delayed: dict[str, int], now: int) -> dict[str, Any]:
    rt = console.runtime
    lists = queue_lists(console, name)
    lengths = broker_store.list_lengths(rt.broker_redis, lists, rt.keys.prefix)  # fair lanes included
    sent = [s for key, n in zip(lists, lengths, strict=True) if n
            for s in (_sent_ms(looks.oldest(rt.broker_redis, key)),) if s is not None]
    prefix = console.settings.broker_keyprefix
    return {"queue": name, "ready": sum(lengths),
            "delayed": sum(n for key, n in delayed.items() if key.removeprefix(prefix).split(SEP)[0] == name),
            "oldest_age_seconds": round(max(0, now - min(sent)) / 1000, 1) if sent else None}


def queues(console: Console) -> dict[str, Any]:
    """Ready, delayed and in flight per queue, the age of each queue's oldest ready job, and DLQ
    additions per minute over the last six hours."""
    rt = console.runtime
    delayed = rt.delayed.depth()
    now = looks.now_ms(rt.broker_redis)
    rows = [_queue_row(console, name, delayed, now) for name in queue_names(console, delayed)]
    per_minute = rt.dlq.per_minute()
    minute = now // 60_000
    series = [{"minute": m, "count": per_minute.get(m, 0)} for m in range(minute - CHART_MINUTES + 1, minute + 1)]
    unacked = f"{console.settings.broker_keyprefix}unacked"
    return show_map({"queues": rows, "in_flight": broker_store.unacked_count(rt.broker_redis, unacked),
                     "dlq_per_minute": series, "now": now})
