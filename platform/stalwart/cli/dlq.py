"""``stalwart dlq``: list, show, replay, purge, count and export dead-letter entries.

Every command prints a readable table by default and JSON with ``--json``; ``export`` always
writes JSON lines. Message content never reaches the terminal raw: control characters (ANSI
and OSC escapes) are shown as ``\\xNN`` text in tables, and escaped by JSON elsewhere. Times
for ``--since``/``--until`` are ISO-8601 (naive means UTC) or relative to now (``90s``, ``15m``,
``2h``, ``1d``, ``1w``). ``replay`` and ``purge`` act only on what they are told: entry ids, a
filter, or ``--all`` — never on everything by default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import IO, Any

from stalwart.app import Stalwart, create_app
from stalwart.dlq import times
from stalwart.dlq.display import show, visible
from stalwart.dlq.entry import REASONS, DeadLetter, Filter
from stalwart.dlq.queue import DeadLetterQueue
from stalwart.dlq.replay import Replayer
from stalwart.errors import DLQError, EntryNotFound

from .output import format_ms, print_fields, print_json, print_table

LS_COLUMNS = ("id", "dead_at", "reason", "task", "task_id", "queue", "attempts", "error")
_FILTER_FIELDS = ("queue", "task", "reason", "since", "until", "cause", "search")


# -- argument types ---------------------------------------------------------------------------


def parse_time(text: str, now_ms: int | None = None) -> int:
    """An ISO-8601 time or a relative one (``15m`` = 15 minutes ago) as epoch milliseconds."""
    try:
        return times.parse_time(text, now_ms)
    except DLQError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


# -- parsers ----------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parent


def _filters() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("filters (each narrows the selection)")
    group.add_argument("--queue", help="only entries from this queue")
    group.add_argument("--task", help="only entries of this task name")
    group.add_argument("--reason", choices=REASONS, help="only entries dead for this reason")
    group.add_argument("--since", type=parse_time, metavar="TIME",
                       help="dead at or after TIME (ISO-8601, or relative: 15m, 2h, 1d)")
    group.add_argument("--until", type=parse_time, metavar="TIME",
                       help="dead at or before TIME (ISO-8601, or relative: 15m, 2h, 1d)")
    group.add_argument("--cause", metavar="ID", help="only entries of this cause (the console's by-cause ids)")
    group.add_argument("--search", metavar="TEXT",
                       help="only entries whose ids, task, error or arguments contain TEXT (any case)")
    return parent


def register(subparsers: Any) -> None:
    """Add ``dlq`` and its subcommands to the ``stalwart`` parser."""
    parser = subparsers.add_parser("dlq", help="work the dead-letter queue",
                                   description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    common, filters = _common(), _filters()

    ls = sub.add_parser("ls", parents=[common, filters], help="list entries, newest first")
    ls.add_argument("--limit", type=_count(1), default=50, help="entries per page (default 50)")
    ls.add_argument("--offset", type=_count(0), default=0, help="entries to skip (default 0)")
    ls.set_defaults(func=cmd_ls)

    show = sub.add_parser("show", parents=[common], help="one entry in full")
    show.add_argument("id", help="entry id")
    show.set_defaults(func=cmd_show)

    for name, func, verb in (("replay", cmd_replay, "run again"), ("purge", cmd_purge, "delete")):
        p = sub.add_parser(name, parents=[common, filters], help=f"{verb} entries: ids, a filter or --all")
        p.add_argument("ids", nargs="*", metavar="ID", help="entry ids")
        p.add_argument("--all", action="store_true", help=f"{verb} every entry")
        p.set_defaults(func=func)

    stats = sub.add_parser("stats", parents=[common], help="totals by reason, evictions, replays")
    stats.set_defaults(func=cmd_stats)

    export = sub.add_parser("export", parents=[common, filters], help="entries as JSON lines")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default stdout)")
    export.set_defaults(func=cmd_export)


# -- helpers ----------------------------------------------------------------------------------


def make_app() -> Stalwart:
    """The app the CLI works on, configured from the environment (no tasks needed)."""
    return create_app()


def _dlq() -> DeadLetterQueue:
    return make_app().stalwart.dlq


def build_filter(args: argparse.Namespace) -> Filter:
    return Filter(queue=args.queue, task=args.task, reason=args.reason, since_ms=args.since,
                  until_ms=args.until, cause=args.cause, search=args.search)


def has_filter(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) is not None for name in _FILTER_FIELDS)


def selection(args: argparse.Namespace, verb: str) -> str:
    """Which of ids / filter / all the operator chose; exactly one is required."""
    chosen = [name for name, on in (("ids", bool(args.ids)), ("filter", has_filter(args)),
                                    ("all", args.all)) if on]
    if not chosen:
        raise DLQError(f"dlq {verb}: say which entries: entry ids, a filter "
                       f"(--queue/--task/--reason/--since/--until/--cause/--search) or --all")
    if len(chosen) > 1:
        raise DLQError(f"dlq {verb}: give only one of entry ids, a filter or --all (got {' and '.join(chosen)})")
    return chosen[0]


def row(entry: DeadLetter) -> dict[str, Any]:
    """One ``ls`` table row."""
    error = ": ".join(p for p in (entry.exc_type, entry.exc_message) if p) or None
    return {
        "id": entry.id, "dead_at": format_ms(entry.dead_at), "reason": entry.reason,
        "task": entry.task, "task_id": entry.task_id, "queue": entry.queue,
        "attempts": len(entry.attempts), "error": error,
    }


# -- commands ---------------------------------------------------------------------------------


def cmd_ls(args: argparse.Namespace) -> int:
    entries = _dlq().list(build_filter(args), offset=args.offset, limit=args.limit)
    if args.json:
        print_json([asdict(e) for e in entries])
        return 0
    print_table([show(row(e)) for e in entries], LS_COLUMNS, empty="(no dead-letter entries match)")
    if len(entries) == args.limit:
        print(f"(more may follow: --offset {args.offset + args.limit})", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    try:
        entry = _dlq().get(args.id)
    except EntryNotFound as exc:  # a KeyError: its str() would be quoted
        raise DLQError(str(exc.args[0])) from None
    if args.json:
        print_json(asdict(entry))
        return 0
    meta = entry.headers.get("stalwart", entry.headers) if entry.headers else {}
    print_fields(show({
        "id": entry.id, "reason": entry.reason, "replayable": entry.replayable,
        "task": entry.task, "task_id": entry.task_id, "queue": entry.queue,
        "idempotency_key": meta.get("key") if isinstance(meta, dict) else None,
        "trace_id": meta.get("trace") if isinstance(meta, dict) else None,
        "first_seen": format_ms(entry.first_seen), "dead_at": format_ms(entry.dead_at),
        "hostname": entry.hostname, "error": f"{entry.exc_type}: {entry.exc_message}",
        "args": entry.args, "kwargs": entry.kwargs,
    }))
    print(f"\nattempts ({len(entry.attempts)}):")
    for a in entry.attempts:
        print(visible(f"  #{a.get('attempt', '?')} {format_ms(a.get('at'))} on {a.get('host', '-')} "
                      f"after {a.get('duration', '-')}s: {a.get('exc_type', '-')}: {a.get('exc_message', '')}"))
    if entry.traceback:
        print("\ntraceback:\n" + visible(entry.traceback.rstrip()))
    if entry.raw:
        print("\nraw message:\n" + visible(entry.raw))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    how = selection(args, "replay")
    replayer = Replayer(make_app())
    if how == "ids":
        report = replayer.replay_ids(args.ids)
    else:
        report = replayer.replay_matching(build_filter(args) if how == "filter" else Filter())
    if args.json:
        print_json(report.to_dict())
    else:
        print(f"replayed {len(report.replayed)} entr{'y' if len(report.replayed) == 1 else 'ies'}"
              + (f": {', '.join(report.replayed)}" if 0 < len(report.replayed) <= 20 else ""))
        if report.skipped:
            print(f"skipped {len(report.skipped)}:")
            skipped = [show({"id": i, "why": w}) for i, w in report.skipped.items()]
            print_table(skipped, ("id", "why"), max_width=100)
    return 1 if report.skipped else 0


def cmd_purge(args: argparse.Namespace) -> int:
    how = selection(args, "purge")
    dlq = _dlq()
    if how == "ids":
        purged = dlq.remove(list(dict.fromkeys(args.ids)), "purged")
    else:
        purged = dlq.purge(build_filter(args) if how == "filter" else Filter())
    if args.json:
        print_json({"purged": purged})
    else:
        print(f"purged {purged} entr{'y' if purged == 1 else 'ies'}")
    return 1 if how == "ids" and purged < len(set(args.ids)) else 0


def cmd_stats(args: argparse.Namespace) -> int:
    stats = _dlq().stats()
    if args.json:
        print_json(stats)
        return 0
    print_fields({k: stats[k] for k in ("total", "added", "replayed", "purged", "evicted")})
    if stats["evicted_by"]:
        print_fields({f"evicted ({why})": n for why, n in sorted(stats["evicted_by"].items())})
    print()
    rows = [{"reason": reason, "entries": n} for reason, n in stats["by_reason"].items()]
    print_table(rows, ("reason", "entries"), empty="(the DLQ is empty)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    dlq = _dlq()
    if args.output in (None, "-"):
        count = write_lines(dlq, build_filter(args), sys.stdout)
        return 0
    with open(args.output, "w", encoding="utf-8") as out:
        count = write_lines(dlq, build_filter(args), out)
    if args.json:
        print_json({"exported": count, "file": args.output})
    else:
        print(f"exported {count} entr{'y' if count == 1 else 'ies'} to {args.output}")
    return 0


def write_lines(dlq: DeadLetterQueue, flt: Filter, out: IO[str]) -> int:
    """Write matching entries, newest first, one JSON object per line; return how many."""
    count = 0
    for entry in dlq.iter(flt):
        out.write(entry.to_json() + "\n")
        count += 1
    return count
