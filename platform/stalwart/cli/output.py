"""How every ``stalwart`` subcommand prints: aligned tables for people, JSON for scripts.

Nothing printed here reaches the terminal raw: control characters (ANSI CSI and OSC escape
sequences, BEL, NUL, carriage returns, C1 controls), bidi overrides, zero-width and every other
Unicode format character, separators and lone surrogates in
any value (a DLQ entry's message bytes, a limit name, a switch pattern) are shown as ``\\xNN`` /
``\\uNNNN`` text by :func:`escape`; JSON escapes them itself. Commands that print a line of their
own use :func:`say`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

# C0 controls but tab and newline, DEL and C1; every other character is checked by its Unicode
# category: format characters (zero-width, bidi marks and overrides, soft hyphen, tag characters,
# deprecated format controls U+206A-206F), line/paragraph separators and lone surrogates.
_CANDIDATES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]|[^\x00-\x7f]")
_CANDIDATES_WITH_LINES = re.compile(r"[\x00-\x1f\x7f-\x9f]|[^\x00-\x7f]")
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _visible(match: re.Match[str]) -> str:
    char = match.group(0)
    code = ord(char)
    if code >= 0xA0 and unicodedata.category(char) not in _HIDDEN:
        return char
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text: str, *, keep_lines: bool = True) -> str:
    """``text`` with every control or invisible formatting character shown as ``\\xNN``/``\\uNNNN``.

    Newlines and tabs stay unless ``keep_lines`` is False.
    """
    return (_CANDIDATES if keep_lines else _CANDIDATES_WITH_LINES).sub(_visible, text)


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
