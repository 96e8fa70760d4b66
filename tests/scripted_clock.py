"""Run a shipped Lua script on a clock the test sets: days of traffic simulated in seconds.

The script's body is the shipped one; only the prelude's clock functions read the key
:data:`CLOCK_KEY` instead of Redis ``TIME``. Install with
``monkeypatch.setitem(SCRIPTS, name, clocked(name))``; move time with :func:`set_clock`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from stalwart.store.scripts import PRELUDE, Script, script

CLOCK_KEY = "test:clock_ms"
FAKE_PRELUDE = f"""
local function clock_ms() return tonumber(redis.call('GET', '{CLOCK_KEY}')) end
local function clock_ms_exact() return clock_ms() end
local function clock_s() return clock_ms() / 1000 end
"""


def clocked(name: str) -> Script:
    """The shipped script ``name`` with its clock read from :data:`CLOCK_KEY`."""
    shipped = script(name)
    fake = Script(name, shipped.numkeys, "")
    fake.source = FAKE_PRELUDE + shipped.source[len(PRELUDE):]
    fake.sha = hashlib.sha1(fake.source.encode()).hexdigest()  # Redis names scripts by SHA1
    return fake


def set_clock(client: Any, ms: int) -> None:
    client.set(CLOCK_KEY, ms)
