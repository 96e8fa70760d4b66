"""How every ``stalwart`` subcommand prints: aligned tables for people, JSON for scripts.

Nothing printed here reaches the terminal raw: control characters (ANSI CSI and OSC escape
sequences, BEL, NUL, carriage returns, C1 controls), bidi overrides and zero-width characters in
any value (a DLQ entry's message bytes, a limit name, a switch pattern) are shown as ``\\xNN`` /
``\\uNNNN`` text by :func:`escape`; JSON escapes them itself. Commands that print a line of their
own use :func:`say`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

# C0 controls but tab and newline, DEL and C1, zero-width and bidi marks, line/paragraph
# separators, bidi embeddings/overrides/isolates, word joiners, BOM, interlinear annotations.
_INVISIBLE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb"
_UNSAFE = re.compile(f"[{_INVISIBLE}]")
_UNSAFE_WITH_LINES = re.compile(f"[\t\n{_INVISIBLE}]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str, *, keep_lines: bool = True) -> str:
    """``text`` with every control or invisible formatting character shown as ``\\xNN``/``\\uNNNN``.

    Newlines and tabs stay unless ``keep_lines`` is False.
    """
    return (_UNSAFE if keep_lines else _UNSAFE_WITH_LINES).sub(_visible, text)


def say(text: str, out: TextIO | None = None) -> None:
    """Print one line for an operator, escaped."""
    print(escape(str(text)), file=out or sys.stdout)


def print_json(data: Any, out: TextIO | None = None) -> None:
    """One JSON document on stdout (``--json``); every control character is escaped, DEL included."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str)
    print(text.replace("\x7f", "\\u007f"), file=out or sys.stdout)


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
    print("  ".join(escape(col.upper()).ljust(w) for col, w in zip(columns, widths, strict=True)).rstrip(),
          file=stream)
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=stream)


def print_fields(data: Mapping[str, Any], out: TextIO | None = None) -> None:
    """``key: value`` lines for one object (``show`` commands)."""
    stream = out or sys.stdout
    width = max((len(escape(k)) for k in data), default=0)
    for key, value in data.items():
        text = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
        print(f"{escape(key).rjust(width)}: {escape(text)}", file=stream)


def format_ms(ms: int | None) -> str:
    """An epoch-milliseconds timestamp as UTC ISO-8601 to the second."""
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cell(value: Any, max_width: int) -> str:
    text = "-" if value is None else escape(str(value).replace("\n", " "), keep_lines=False)
    return text if len(text) <= max_width else text[: max_width - 1] + "…"
