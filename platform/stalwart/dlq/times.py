"""Times operators type for DLQ filters: ISO-8601 (naive means UTC), relative to now (``90s``,
``15m``, ``2h``, ``1d``, ``1w``, optionally followed by ``ago``), or epoch milliseconds."""

from __future__ import annotations

import datetime as dt
import re
import time

from stalwart.errors import DLQError

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*(?:ago)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_EPOCH_MS = re.compile(r"^\s*\d{11,14}\s*$")


def parse_time(text: str, now_ms: int | None = None) -> int:
    """``text`` as epoch milliseconds; :class:`DLQError` (one line) when it is not a time."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    match = _RELATIVE.match(text)
    if match:
        return now - int(float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()] * 1000)
    if _EPOCH_MS.match(text):
        return int(text)
    raw = text.strip()
    if raw[-1:] in ("Z", "z"):
        raw = raw[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise DLQError(
            f"{text!r} is not a time: use ISO-8601 (2026-01-31T12:00:00Z) or relative (90s, 15m, 2h, 1d, 1w)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1000)
