"""Message content shown to an operator (console pages, the JSON API, the CLI) with every control
or invisible formatting character made visible: ANSI and OSC escape sequences, NULs, carriage
returns, bidi overrides and zero-width characters become ``\\xNN``/``\\uNNNN`` text, so bytes
from a message can never drive a terminal or disguise what a page shows. Newlines and tabs stay.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every control or invisible formatting character shown as ``\\xNN``/``\\uNNNN``."""
    return _INVISIBLE.sub(_escape, text)


def show(value: Any) -> Any:
    """A JSON-like value with :func:`visible` applied to every string in it, keys included."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, Mapping):
        return {visible(str(k)): show(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [show(v) for v in value]
    return value
