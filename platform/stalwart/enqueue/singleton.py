"""Singleton enqueue: at most one job per rendered key waits; later enqueues merge into it.

The enqueue side of ``singleton=`` (the run side is :mod:`stalwart.policies.singleton`). One
script reserves the key's wait for a fresh task id, or answers with the waiting job's id, which
the caller gets back without anything being published. The reserving enqueuer publishes, then
marks the wait ``queued``; until then other enqueuers of the key ask again (a few ms) instead of
merging into a job that might never be published. A reservation whose enqueuer died is taken
over after ``PENDING_SECONDS``. A dead-lettered waiting job stops waiting as it is dead-lettered
(:class:`stalwart.policies.singleton.DeadWaiting`); ``STALE_SECONDS`` is the backstop for what
that misses (its message purged, its worker killed between the dead letter and that step): a
queued waiting job not seen that long is replaced, at worst one extra waiting job. It is not
shorter because a waiting job stuck behind a backlog is only seen when it is delivered, and each
replacement is one more job; not longer, because until then enqueues merge into a job that may
never run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import celery

from stalwart.enqueue.flow_keys import render_flow_key
from stalwart.runtime import Runtime, runtime_of
from stalwart.store.flow import SingletonStore

PENDING_SECONDS = 5.0  # a reservation not settled this long is taken over (its enqueuer died)
STALE_SECONDS = 600.0  # a waiting job not seen this long is replaced by the next enqueue (a backstop)
ASK_AGAIN_SECONDS = 0.005


def store(runtime: Runtime) -> SingletonStore:
    return SingletonStore(runtime.redis, runtime.keys)


def ttl_ms(runtime: Runtime) -> int:
    """How long a key's record lives past its last write: longer than any wait it tracks."""
    return int(max(STALE_SECONDS, runtime.settings.lease_seconds * 2) * 1000)


def rendered_key(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The singleton key of one call; ConfigurationError when the arguments cannot render it."""
    return render_flow_key(f"singleton key of {task.name}", task.singleton, task.run, args, kwargs)


def send(app: celery.Celery, task: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
         options: dict[str, Any], publish: Callable[[dict[str, Any]], Any]) -> Any:
    """Enqueue one call of a singleton task: the waiting job's result, or ``publish(options)``'s."""
    key = rendered_key(task, args, kwargs)
    runtime = runtime_of(app)
    singletons, ttl = store(runtime), ttl_ms(runtime)
    new_id = options.pop("task_id", None) or celery.uuid()
    deadline = time.monotonic() + PENDING_SECONDS * 2
    while True:
        code, task_id = singletons.claim(task.name, key, new_id=new_id, ttl_ms=ttl,
                                         pending_ms=int(PENDING_SECONDS * 1000), stale_ms=int(STALE_SECONDS * 1000))
        if code != "pending" or time.monotonic() > deadline:
            break
        time.sleep(ASK_AGAIN_SECONDS)
    if code != "claimed":  # merged (or, past the deadline, still pending: the reserver is publishing)
        result_cls = options.get("result_cls") or app.AsyncResult
        return result_cls(task_id, app=app)
    published = False
    try:
        result = publish({**options, "task_id": new_id})
        published = getattr(result, "id", None) == new_id  # an idempotency key may name another job
        return result
    finally:
        singletons.settle(task.name, key, new_id, published=published, ttl_ms=ttl)
