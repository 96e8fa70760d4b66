"""Cross-cutting behaviour (metrics, Sentry, logs) plugs into the envelope through hooks.

Every method is a no-op by default. A hook that raises is a bug in that hook: the envelope logs
it with the hook's name and carries on, so reporting can never lose or fail a job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from stalwart.dlq.entry import DeadLetter
from stalwart.job.context import JobContext, Outcome

log = logging.getLogger("stalwart.hooks")


class Hook:
    """Base class: override what you need."""

    def before_job(self, ctx: JobContext) -> None:
        """Called in the pool child before the body runs."""

    def after_job(self, ctx: JobContext, outcome: Outcome) -> None:
        """Called in the pool child once the delivery has ended, whatever the outcome."""

    def on_retry(self, ctx: JobContext, exc: BaseException, delay: float) -> None:
        """A transient failure was scheduled for another attempt."""

    def on_defer(self, ctx: JobContext, reason: str, delay: float) -> None:
        """The job was deferred (limit, breaker, busy key, paused switch): not a failure."""

    def on_dead_letter(self, entry: DeadLetter, exc: BaseException | None) -> None:
        """An entry was written to the DLQ (child for job failures, main process for bad messages)."""

    def on_worker_lost(self, task_name: str, task_id: str, reason: str, headers: dict[str, Any]) -> None:
        """Main process: a child died mid-job (SIGKILL, OOM, hard time limit); the job is requeued."""


class Hooks:
    """An ordered set of hooks called as one, isolating each hook's failures."""

    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        self._hooks: list[Hook] = list(hooks)

    def add(self, hook: Hook) -> None:
        self._hooks.append(hook)

    def __iter__(self) -> Any:
        return iter(self._hooks)

    def call(self, method: str, *args: Any) -> None:
        for hook in self._hooks:
            try:
                getattr(hook, method)(*args)
            except Exception:
                log.exception("hook %s.%s failed", type(hook).__name__, method)
