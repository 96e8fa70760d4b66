"""Adversarial regressions for the architecture change (issue 8), from a red-team pass.

Red team, claim 5: the architecture test's detectors, fed code they must flag.
"""

from __future__ import annotations

import pytest

from tests.unit import test_architecture as arch

BYPASSES = [
    'client.execute_command("HSET", key, "state", "done")',
    'getattr(client, "hset")(key, "state", "done")',
    'client.set(f"{prefix}:{{job:x}}", 1)',
    'client.delete(keys.job(job))',
    'pipe.lrem(queue, 0, payload)',
    'client.eval(LUA, 1, key)',
    'client.hset (key, "state", "done")',
    'client.zincrby(key, 1, member)',
]


@pytest.mark.parametrize("line", BYPASSES)
def test_the_store_bypass_detector_flags_raw_redis_writes(line: str) -> None:
    """REDIS_TOUCH is a list of method names: EVAL, SET, DELETE, LREM, execute_command, getattr
    and a space before the parenthesis all write Stalwart's keys outside store/ unnoticed.
    (Outside store/ today: ops/server.py calls client.ping(); dev/embedded.py execute_command.)"""
    assert arch.REDIS_TOUCH.search(line), f"not detected: {line}"


ENV_READS = [
    "from os import environ\nx = environ['STALWART_PREFIX']",
    "import os\nx = os.environ.copy()['STALWART_PREFIX']",
    "import os\nx = dict(os.environ).get('STALWART_PREFIX')",
    "import os\nif 'SENTRY_DSN' in os.environ: pass",
    "import os\nx = os.environ.setdefault('STALWART_PREFIX', 'a')",
]
ENV_PATTERN = arch.ENV_TOUCH


@pytest.mark.parametrize("source", ENV_READS)
def test_the_environment_detector_flags_every_read(source: str) -> None:
    """The same regex as test_no_library_module_reads_the_environment_but_settings."""
    assert ENV_PATTERN.search(source), f"not detected: {source!r}"

