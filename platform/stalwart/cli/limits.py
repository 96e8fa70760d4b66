"""``stalwart limits``: list the shared rate and concurrency limits and show one's live state.

A per-key template (``tenant:{tenant_id}``) is one row in ``ls``; ``show`` on it lists its
busiest keys (``--top N``), and ``show`` on one rendered key (``tenant:acme``) shows that key.
"""

from __future__ import annotations

import argparse
from typing import Any

from stalwart.policies.survey import MAX_TOP, TOP_KEYS, limit_status, limits_overview
from stalwart.runtime import Runtime
from stalwart.settings import Settings

from .output import print_fields, print_json, print_table, say

LS_COLUMNS = ("name", "type", "limit", "granted", "denied", "now")
KEY_COLUMNS = ("name", "activity", "granted", "denied", "now")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("limits", help="inspect shared rate and concurrency limits")
    sub = parser.add_subparsers(dest="limits_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub.add_parser("ls", parents=[common], help="list every limit in use").set_defaults(func=cmd_ls)
    show = sub.add_parser("show", parents=[common],
                          help="one limit's settings and live state (a template: its busiest keys)")
    show.add_argument("name", metavar="NAME", help="a limit, a template like 'tenant:{tenant_id}', or one key")
    show.add_argument("--top", type=int, default=TOP_KEYS, metavar="N",
                      help=f"busiest keys to show for a template (default {TOP_KEYS}, at most {MAX_TOP})")
    show.set_defaults(func=cmd_show)


def _runtime() -> Runtime:
    return Runtime(Settings.from_env())


def _settings(status: dict[str, Any]) -> str:
    if status.get("type") == "rate":
        return f"{status.get('rate')} burst {status.get('burst')}"
    return f"{status.get('limit')} (lease {status.get('lease')}s)"


def _now(status: dict[str, Any]) -> str:
    if status.get("template"):
        return f"{status['tracked_keys']} keys tracked"
    if status.get("type") == "rate":
        return f"{status['waiting']} waiting, backlog {status['backlog_seconds']}s"
    return f"{status['holders']} holding"


def summary(status: dict[str, Any]) -> dict[str, Any]:
    """One table row: the configured limit and what is happening now."""
    limit = _settings(status) + (" per key" if status.get("template") is True else "")
    return {"name": status["name"], "type": status.get("type"), "limit": limit,
            "granted": status.get("granted"), "denied": status.get("denied"), "now": _now(status)}


def cmd_ls(args: argparse.Namespace) -> int:
    runtime = _runtime()
    rows = limits_overview(runtime.redis, runtime.keys)
    if args.json:
        print_json(rows)
    else:
        print_table([summary(s) for s in rows], LS_COLUMNS, empty="(no limits used yet)", max_width=80)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    runtime = _runtime()
    status = limit_status(runtime.redis, runtime.keys, args.name, max(1, min(args.top, MAX_TOP)))
    if status is None:
        say(f"stalwart: no limit named {args.name!r} has been used")
        return 1
    if args.json:
        print_json(status)
    elif status.get("template") is True:
        keys = status.pop("keys")
        print_fields(status)
        say(f"busiest keys (at most {args.top}, by grants + denials decayed over 5 minutes):")
        print_table([{**summary(k), "activity": k["activity"]} for k in keys], KEY_COLUMNS,
                    empty="(no key used recently)", max_width=80)
    else:
        print_fields(status)
    return 0
