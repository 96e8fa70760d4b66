"""Which pools enforce time limits, and what a worker on another pool does at start."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from celery.concurrency.prefork import TaskPool as Prefork
from celery.concurrency.solo import TaskPool as Solo
from celery.concurrency.thread import TaskPool as Threads

from stalwart.errors import ConfigurationError
from stalwart.job.pools import check_time_limits, pool_name, time_limited_tasks


def app(tasks: dict[str, Any], hard: float | None = None, soft: float | None = None) -> Any:
    return SimpleNamespace(tasks=tasks, conf=SimpleNamespace(task_time_limit=hard, task_soft_time_limit=soft))


TASK = SimpleNamespace(time_limit=30, soft_time_limit=20)
PLAIN = SimpleNamespace(time_limit=None, soft_time_limit=None)


def test_pool_names() -> None:
    assert [pool_name(p) for p in (Prefork, Threads, Solo)] == ["prefork", "threads", "solo"]


def test_tasks_with_their_own_or_the_apps_default_limits_are_found() -> None:
    assert time_limited_tasks(app({"a.t": TASK, "a.p": PLAIN, "celery.chord_unlock": TASK})) == {"a.t": (30, 20)}
    assert time_limited_tasks(app({"a.p": PLAIN}, soft=5)) == {"a.p": (None, 5)}


def test_prefork_enforces_and_is_never_refused() -> None:
    assert check_time_limits(app({"a.t": TASK}), Prefork, "refuse") == []


@pytest.mark.parametrize("pool", [Threads, Solo])
def test_other_pools_refuse_time_limits_naming_the_tasks(pool: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot enforce time limits.*a\.t \(time_limit=30"):
        check_time_limits(app({"a.t": TASK, "a.p": PLAIN}), pool, "refuse")
    assert check_time_limits(app({"a.p": PLAIN}), pool, "refuse") == []


def test_warn_starts_and_logs_each_task(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "stalwart.job.pools"):
        assert check_time_limits(app({"a.t": TASK}), Threads, "warn") == ["a.t"]
    assert "threads pool does not enforce the time limits of a.t" in caplog.text
