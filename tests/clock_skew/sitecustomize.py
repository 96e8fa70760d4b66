"""Test-only: a process with this directory on PYTHONPATH sees ``time.time()`` shifted by
``STALWART_TEST_CLOCK_SHIFT`` seconds (a host whose clock is off)."""

import os
import time

_SHIFT = float(os.environ.get("STALWART_TEST_CLOCK_SHIFT") or 0)
if _SHIFT:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _SHIFT
    time.time_ns = lambda: _time_ns() + int(_SHIFT * 1e9)
