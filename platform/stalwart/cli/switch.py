"""``stalwart switch``: pause, disable and resume task types by name pattern, on every worker.

Patterns are shell-style (``billing.*``). A paused job is parked (it keeps its attempts, is not
an error, and is not delivered again until resumed; ``ls`` counts them); a disabled job is
dead-lettered with reason ``disabled``. Every worker sees a change within a second; ``resume``
(and ``disable``) releases the parked jobs of the tasks it no longer pauses.
"""

from __future__ import annotations

import argparse
from typing import Any

from stalwart.policies import switches
from stalwart.runtime import Runtime
from stalwart.settings import Settings

from .output import format_ms, print_json, print_table, say


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("switch", help="pause/disable task types at run time")
    sub = parser.add_subparsers(dest="switch_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub.add_parser("ls", parents=[common], help="list the switches").set_defaults(func=cmd_ls)
    for action, helptext in (
        ("pause", "defer jobs of matching tasks until resumed"),
        ("disable", "dead-letter jobs of matching tasks (reason: disabled)"),
        ("resume", "remove the switch on exactly this pattern"),
    ):
        one = sub.add_parser(action, parents=[common], help=helptext)
        one.add_argument("pattern", metavar="PATTERN", help="task name pattern, e.g. 'billing.*'")
        one.set_defaults(func=cmd_set, action=action)


def _runtime() -> Runtime:
    return Runtime(Settings.from_env())


def cmd_ls(args: argparse.Namespace) -> int:
    runtime = _runtime()
    current = switches.read(runtime.redis, runtime.keys)
    parked = switches.parked_counts(runtime.broker_redis, runtime.keys)
    rows = [{"pattern": p, "state": s["state"], "since": s["at"],
             "parked": sum(n for task, n in parked.items() if switches.resolve({p: "paused"}, task))}
            for p, s in current.items()]
    if args.json:
        print_json(rows)
    else:
        print_table([{**r, "since": format_ms(r["since"])} for r in rows],  # type: ignore[arg-type]
                    ("pattern", "state", "since", "parked"), empty="(no switches: every task runs)")
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    runtime = _runtime()
    if args.action == "resume":
        removed = switches.clear(runtime.redis, runtime.keys, args.pattern, broker=runtime.broker_redis)
        result: dict[str, Any] = {"pattern": args.pattern, "state": "running", "changed": removed}
        text = f"resumed {args.pattern}" if removed else f"no switch on {args.pattern!r}; nothing changed"
    else:
        state = "paused" if args.action == "pause" else "disabled"
        at = switches.set_switch(runtime.redis, runtime.keys, args.pattern, state, broker=runtime.broker_redis)
        result = {"pattern": args.pattern, "state": state, "changed": True, "at": at}
        text = f"{state} {args.pattern} (every worker within a second)"
    if args.json:
        print_json(result)
    else:
        say(text)
    return 0 if result["changed"] else 1
