"""Helpers shared by the reliability and chaos tests: apps, key lookups, accounting."""

from __future__ import annotations

from collections.abc import Iterable

import redis

from stalwart.app import Stalwart
from stalwart.settings import Settings

TASK_MODULES = "tests.integration.jobs,tests.integration.jobs_chaos"
CHAOS_ENV = {"STALWART_TASK_MODULES": TASK_MODULES}
RECORD_ONCE = "tests.integration.jobs_chaos.record_once"
SLOW_ONCE = "tests.integration.jobs_chaos.slow_once"


def make_app(env: dict[str, str]) -> Stalwart:
    """An enqueuing app configured like the workers, with both test task modules imported."""
    application = Stalwart("tests", settings=Settings.from_env(env), include=TASK_MODULES.split(","))
    application.loader.import_default_modules()
    return application


def job_states(app: Stalwart, task: str, keys: Iterable[str]) -> dict[str, str | None]:
    """The state (done, running, dead, ...) of each keyed job of ``task``, by key."""
    keys = list(keys)
    with app.stalwart.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hget(app.stalwart.keys.job(f"k:{task}:{key}"), "state")
        states = pipe.execute()
    return {k: (s.decode() if s else None) for k, s in zip(keys, states, strict=True)}


def counts(r: redis.Redis, prefix: str, keys: Iterable[str]) -> dict[str, int]:
    """The integer at ``<prefix>:<key>`` for each key (0 when missing)."""
    keys = list(keys)
    values = r.mget([f"{prefix}:{k}" for k in keys]) if keys else []
    return {k: int(v or 0) for k, v in zip(keys, values, strict=True)}


def dlq_reasons(app: Stalwart) -> dict[str, str]:
    """The DLQ reason of each dead-lettered job, by its first positional argument."""
    return {str(e.args[0]) if e.args else str(e.kwargs.get("key")): e.reason for e in app.stalwart.dlq.iter()}
