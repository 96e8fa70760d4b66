"""``stalwart status``: queues, delayed jobs, dead letters, breakers, limits and live workers.

Reads only: queue lists and delayed sets on the broker Redis, everything else on the state
store. Breakers and limits are those used lately (their registries); workers are those that
wrote a presence mark within the last hour, live when seen within the last 15 s (Redis clock).
"""

from __future__ import annotations

import argparse
from typing import Any

from stalwart.ops import presence
from stalwart.runtime import Runtime
from stalwart.settings import Settings
from stalwart.store import broker as broker_store

from .output import format_ms, print_json, print_table

DEFAULT_QUEUE = "celery"
PRIORITY_SEP = "\x06\x16"  # kombu's separator between a queue name and its priority lists
PRIORITY_STEPS = (3, 6, 9)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("status", help="queues, DLQ, breakers, limits and live workers")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(func=cmd_status)


def queues(runtime: Runtime, default: str = DEFAULT_QUEUE) -> list[dict[str, Any]]:
    """Ready (list length and fair lane, all priorities) and delayed counts of every known queue."""
    waiting = runtime.delayed.depth()
    names = sorted({default} | {name.split(PRIORITY_SEP)[0] for name in waiting})
    lists = {name: [name] + [f"{name}{PRIORITY_SEP}{p}" for p in PRIORITY_STEPS] for name in names}
    lengths = iter(broker_store.list_lengths(runtime.broker_redis, [p for parts in lists.values() for p in parts],
                                             runtime.keys.prefix))
    rows = []
    for name, parts in lists.items():
        ready = sum(next(lengths) for _ in parts)
        late = sum(n for key, n in waiting.items() if key.split(PRIORITY_SEP)[0] == name)
        rows.append({"queue": name, "ready": ready, "delayed": late})
    return rows


def breakers(runtime: Runtime) -> list[dict[str, Any]]:
    """Every registered breaker with its state."""
    return [runtime.breakers.status(name) for name in runtime.limits.names("breakers")]


def limits(runtime: Runtime) -> list[dict[str, Any]]:
    """Every registered limit with its declared settings."""
    return [{"name": name, "config": runtime.limits.config(name)} for name in runtime.limits.names("limits")]


def workers(runtime: Runtime, now: int) -> list[dict[str, Any]]:
    seen = runtime.presence.read()
    alive = presence.live(seen, now)
    return [
        {"hostname": h, "last_seen": at, "age_seconds": round((now - at) / 1000, 1), "live": alive[h]}
        for h, at in sorted(seen.items())
    ]


def gather(runtime: Runtime) -> dict[str, Any]:
    """Everything ``status`` shows, as one JSON-ready document."""
    dlq = runtime.dlq.stats()
    in_flight = broker_store.unacked_count(runtime.broker_redis)
    found = workers(runtime, runtime.presence.now_ms())
    return {
        "queues": queues(runtime),
        "in_flight": in_flight,
        "dlq": {"total": dlq["total"], "by_reason": dlq["by_reason"]},
        "breakers": breakers(runtime),
        "limits": limits(runtime),
        "workers": found,
        "live_workers": sum(1 for w in found if w["live"]),
    }


def render(data: dict[str, Any]) -> None:
    """The status as sections of aligned tables."""
    print(f"QUEUES  (in flight: {data['in_flight']})")
    print_table(data["queues"], ("queue", "ready", "delayed"))
    print(f"\nDEAD LETTERS  (total: {data['dlq']['total']})")
    print_table([{"reason": k, "entries": v} for k, v in data["dlq"]["by_reason"].items()], ("reason", "entries"))
    print("\nBREAKERS")
    print_table(data["breakers"], ("name", "state", "failure_rate", "calls", "half_open_in"))
    print("\nLIMITS")
    print_table([{"name": r["name"], "settings": _settings(r["config"])} for r in data["limits"]], ("name", "settings"))
    print(f"\nWORKERS  (live: {data['live_workers']})")
    rows = [{**w, "last_seen": format_ms(w["last_seen"]), "live": "yes" if w["live"] else "no"}
            for w in data["workers"]]
    print_table(rows, ("hostname", "live", "last_seen", "age_seconds"))


def _settings(config: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(config.items())) or "-"


def cmd_status(args: argparse.Namespace) -> int:
    data = gather(Runtime(Settings.from_env()))
    if args.json:
        print_json(data)
    else:
        render(data)
    return 0
