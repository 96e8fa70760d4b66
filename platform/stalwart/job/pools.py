"""Time limits need a pool that enforces them. Only prefork does (a child over its hard limit is
killed, and the soft limit raises inside the body); the threads, solo, gevent and eventlet pools
cannot stop a running body. A worker on one of them refuses to start while a task declares a
time limit, saying which tasks (``STALWART_UNENFORCED_TIME_LIMITS=warn`` starts it anyway, with
a warning per task), so a limit is never silently not applied.
"""

from __future__ import annotations

import logging
from typing import Any

from stalwart.errors import ConfigurationError

log = logging.getLogger("stalwart.job.pools")
ENFORCING_POOLS = frozenset({"celery.concurrency.prefork"})
MODES = ("refuse", "warn")


def pool_name(pool_cls: Any) -> str:
    """``prefork``, ``threads``, ``solo``, ... for a Celery pool class (or its name)."""
    module = pool_cls.__module__ if isinstance(pool_cls, type) else str(pool_cls).split(":")[0]
    return {"celery.concurrency.thread": "threads"}.get(module, module.rsplit(".", 1)[-1])


def enforces_time_limits(pool_cls: Any) -> bool:
    module = pool_cls.__module__ if isinstance(pool_cls, type) else str(pool_cls).split(":")[0]
    return module in ENFORCING_POOLS


def time_limited_tasks(app: Any) -> dict[str, tuple[float | None, float | None]]:
    """Task name → (hard, soft) limit, for every task that has one (its own or the app's default)."""
    conf = app.conf
    out: dict[str, tuple[float | None, float | None]] = {}
    for name, task in sorted(app.tasks.items()):
        if name.startswith("celery."):  # Celery's built-in tasks
            continue
        hard = getattr(task, "time_limit", None) or conf.task_time_limit
        soft = getattr(task, "soft_time_limit", None) or conf.task_soft_time_limit
        if hard or soft:
            out[name] = (hard, soft)
    return out


def check_time_limits(app: Any, pool_cls: Any, mode: str) -> list[str]:
    """At worker start: raise :class:`ConfigurationError` (``refuse``) or log a warning per task
    (``warn``) when ``pool_cls`` cannot enforce the time limits tasks declare; the tasks named."""
    if enforces_time_limits(pool_cls):
        return []
    limited = time_limited_tasks(app)
    if not limited:
        return []
    pool = pool_name(pool_cls)
    shown = ", ".join(f"{name} (time_limit={hard}, soft_time_limit={soft})" for name, (hard, soft) in limited.items())
    if mode != "warn":
        raise ConfigurationError(
            f"the {pool} pool cannot enforce time limits, and {len(limited)} task(s) declare them: {shown}. "
            "Run them on a prefork worker (-P prefork), or set STALWART_UNENFORCED_TIME_LIMITS=warn "
            "to run them here without their limits"
        )
    for name, (hard, soft) in limited.items():
        log.warning("the %s pool does not enforce the time limits of %s (time_limit=%s, soft_time_limit=%s)",
                    pool, name, hard, soft)
    return list(limited)
