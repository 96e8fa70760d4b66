"""How every ``stalwart`` subcommand prints: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO


def print_json(data: Any, out: TextIO | None = None) -> None:
    """One JSON document on stdout (``--json``)."""
    print(json.dumps(data, indent=2, sort_keys=True, default=str), file=out or sys.stdout)


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    out: TextIO | None = None,
    empty: str = "(none)",
    max_width: int = 60,
) -> None:
    """An aligned text table of ``columns`` from ``rows``; long cells are cut with an ellipsis."""
    stream = out or sys.stdout
    if not rows:
        print(empty, file=stream)
        return
    cells = [[_cell(row.get(col), max_width) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    print("  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True)).rstrip(), file=stream)
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=stream)


def print_fields(data: Mapping[str, Any], out: TextIO | None = None) -> None:
    """``key: value`` lines for one object (``show`` commands)."""
    stream = out or sys.stdout
    width = max((len(k) for k in data), default=0)
    for key, value in data.items():
        text = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
        print(f"{key.rjust(width)}: {text}", file=stream)


def format_ms(ms: int | None) -> str:
    """An epoch-milliseconds timestamp as UTC ISO-8601 to the second."""
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cell(value: Any, max_width: int) -> str:
    text = "-" if value is None else str(value).replace("\n", " ")
    return text if len(text) <= max_width else text[: max_width - 1] + "…"
