"""``stalwart breaker``: list breakers, show one, and force one open, closed or reset.

``open`` is a maintenance switch: the breaker stays open (jobs defer or run their fallback) until
an operator runs ``close`` or ``reset``. ``close`` clears the failure window; ``reset`` forgets
everything about the breaker's state (its settings stay). A per-key template
(``smtp:{provider}``) is one row in ``ls``; ``show`` on it lists its busiest keys, and every
command takes one rendered key (``smtp:sendgrid``) as a name.
"""

from __future__ import annotations

import argparse
from typing import Any

from stalwart.policies.breakers import admin
from stalwart.policies.survey import MAX_TOP, TOP_KEYS, breaker_status, breakers_overview
from stalwart.runtime import Runtime
from stalwart.settings import Settings

from .output import format_ms, print_fields, print_json, print_table, say

LS_COLUMNS = ("name", "state", "calls", "failures", "failure_rate", "probes_in_flight", "half_open_in")
KEY_COLUMNS = ("name", "activity", "state", "calls", "failures", "failure_rate", "half_open_in")
_OPS = {"open": "force_open", "close": "close", "reset": "reset"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("breaker", help="inspect and control circuit breakers")
    sub = parser.add_subparsers(dest="breaker_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub.add_parser("ls", parents=[common], help="list every breaker in use").set_defaults(func=cmd_ls)
    show = sub.add_parser("show", parents=[common],
                          help="one breaker's state, window and settings (a template: its busiest keys)")
    show.add_argument("name", metavar="NAME", help="a breaker, a template like 'smtp:{provider}', or one key")
    show.add_argument("--top", type=int, default=TOP_KEYS, metavar="N",
                      help=f"busiest keys to show for a template (default {TOP_KEYS}, at most {MAX_TOP})")
    show.set_defaults(func=cmd_show)
    for action, helptext in (
        ("open", "force open until closed (maintenance switch)"),
        ("close", "close now and clear the failure window"),
        ("reset", "forget the breaker's state"),
    ):
        one = sub.add_parser(action, parents=[common], help=helptext)
        one.add_argument("name", metavar="NAME", help="a breaker or one rendered key of a template")
        one.set_defaults(func=cmd_admin, action=action)


def _runtime() -> Runtime:
    return Runtime(Settings.from_env())


def cmd_ls(args: argparse.Namespace) -> int:
    runtime = _runtime()
    rows = breakers_overview(runtime.redis, runtime.keys)
    if args.json:
        print_json(rows)
    else:
        print_table(rows, LS_COLUMNS, empty="(no breakers used yet)")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    runtime = _runtime()
    info = breaker_status(runtime.redis, runtime.keys, args.name, max(1, min(args.top, MAX_TOP)))
    if info is None:
        say(f"stalwart: no breaker named {args.name!r} has been used")
        return 1
    if args.json:
        print_json(info)
    elif info.get("template") is True:
        keys = info.pop("keys")
        print_fields(info)
        say(f"busiest keys (at most {args.top}, by calls decayed over 5 minutes):")
        print_table(keys, KEY_COLUMNS, empty="(no key used recently)")
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
