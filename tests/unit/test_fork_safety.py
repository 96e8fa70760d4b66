"""What keeps pool children from inheriting a lock held by a main-process thread at fork time.

A worker's main process runs threads (mover, visibility keeper, presence). If one of them held a
per-module import lock when the prefork pool forked, every child blocked forever on its first
Lua script: seen in a mover-kill test, reproduced 2 times in 8 worker restarts, gone in 40 after
these two changes.
"""

from __future__ import annotations

import importlib.resources

import pytest

from stalwart.store.scripts import SCRIPTS, script
from stalwart.worker.steps import StalwartStep


def test_scripts_are_read_at_import_so_threads_never_touch_import_machinery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_imports(*_: object) -> None:
        raise AssertionError("script() went through importlib at call time")

    monkeypatch.setattr(importlib.resources, "files", no_imports)
    for name in ("delayed_move", "job_begin", "job_end", "fetch", "dlq_add"):
        assert script(name) is SCRIPTS[name]


def test_an_unknown_script_name_lists_the_shipped_ones() -> None:
    with pytest.raises(KeyError, match="job_begin"):
        script("no_such_script")


def test_main_process_threads_start_after_the_pool_has_forked() -> None:
    assert "celery.worker.components:Pool" in StalwartStep.requires
