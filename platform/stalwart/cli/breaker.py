"""``stalwart breaker``: list breakers, show one, and force one open, closed or reset.

``open`` is a maintenance switch: the breaker stays open (jobs defer or run their fallback) until
an operator runs ``close`` or ``reset``. ``close`` clears the failure window; ``reset`` forgets
everything about the breaker's state (its settings stay).
"""

from __future__ import annotations

import argparse
from typing import Any

from stalwart.policies.breakers import admin, status
from stalwart.runtime import Runtime
from stalwart.settings import Settings

from .output import format_ms, print_fields, print_json, print_table, say

LS_COLUMNS = ("name", "state", "calls", "failures", "failure_rate", "probes_in_flight", "half_open_in")
_OPS = {"open": "force_open", "close": "close", "reset": "reset"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("breaker", help="inspect and control circuit breakers")
    sub = parser.add_subparsers(dest="breaker_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub.add_parser("ls", parents=[common], help="list every breaker in use").set_defaults(func=cmd_ls)
    show = sub.add_parser("show", parents=[common], help="one breaker's state, window and settings")
    show.add_argument("name", metavar="NAME")
    show.set_defaults(func=cmd_show)
    for action, helptext in (
        ("open", "force open until closed (maintenance switch)"),
        ("close", "close now and clear the failure window"),
        ("reset", "forget the breaker's state"),
    ):
        one = sub.add_parser(action, parents=[common], help=helptext)
        one.add_argument("name", metavar="NAME")
        one.set_defaults(func=cmd_admin, action=action)


def _runtime() -> Runtime:
    return Runtime(Settings.from_env())


def _names(runtime: Runtime) -> list[str]:
    return runtime.limits.names("breakers")


def cmd_ls(args: argparse.Namespace) -> int:
    runtime = _runtime()
    rows = [status(runtime.redis, runtime.keys, n) for n in _names(runtime)]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, LS_COLUMNS, empty="(no breakers used yet)")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    runtime = _runtime()
    if args.name not in _names(runtime):
        say(f"stalwart: no breaker named {args.name!r} has been used")
        return 1
    info = status(runtime.redis, runtime.keys, args.name)
    if args.json:
        print_json(info)
    else:
        print_fields({**info, "opened_at": format_ms(info["opened_at"]), "open_until": format_ms(info["open_until"])})
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    runtime = _runtime()
    state = admin(runtime.redis, runtime.keys, args.name, _OPS[args.action])  # type: ignore[arg-type]
    if args.json:
        print_json({"name": args.name, "state": state})
    else:
        say(f"breaker {args.name}: {state}")
    return 0
