"""``stalwart limits``: list the shared rate and concurrency limits and show one's live state."""

from __future__ import annotations

import argparse
from typing import Any

from stalwart.policies.limits import limit_names, limit_status
from stalwart.runtime import Runtime
from stalwart.settings import Settings

from .output import print_fields, print_json, print_table, say

LS_COLUMNS = ("name", "type", "limit", "granted", "denied", "now")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("limits", help="inspect shared rate and concurrency limits")
    sub = parser.add_subparsers(dest="limits_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub.add_parser("ls", parents=[common], help="list every limit in use").set_defaults(func=cmd_ls)
    show = sub.add_parser("show", parents=[common], help="one limit's settings and live state")
    show.add_argument("name", metavar="NAME")
    show.set_defaults(func=cmd_show)


def _runtime() -> Runtime:
    return Runtime(Settings.from_env())


def summary(status: dict[str, Any]) -> dict[str, Any]:
    """One table row: the configured limit and what is happening now."""
    if status.get("type") == "rate":
        limit = f"{status.get('rate')} burst {status.get('burst')}"
        now = f"{status['waiting']} waiting, backlog {status['backlog_seconds']}s"
    else:
        limit = f"{status.get('limit')} (lease {status.get('lease')}s)"
        now = f"{status['holders']} holding"
    return {"name": status["name"], "type": status.get("type"), "limit": limit,
            "granted": status["granted"], "denied": status["denied"], "now": now}


def cmd_ls(args: argparse.Namespace) -> int:
    runtime = _runtime()
    found = [limit_status(runtime.redis, runtime.keys, n) for n in limit_names(runtime.redis, runtime.keys)]
    rows = [s for s in found if s is not None]
    if args.json:
        print_json(rows)
    else:
        print_table([summary(s) for s in rows], LS_COLUMNS, empty="(no limits used yet)", max_width=80)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    runtime = _runtime()
    status = limit_status(runtime.redis, runtime.keys, args.name)
    if status is None:
        say(f"stalwart: no limit named {args.name!r} has been used")
        return 1
    if args.json:
        print_json(status)
    else:
        print_fields(status)
    return 0
