"""The worker-side request: frees a dead child's claim and reports the loss (main process)."""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionInfo, ExceptionWithTraceback  # type: ignore[attr-defined]
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery.app.task import Task as CeleryTask
from celery.worker.request import Request as CeleryRequest

from stalwart.errors import StateStoreError
from stalwart.job.delivery import HOSTNAME
from stalwart.job.header import HEADER, Meta
from stalwart.runtime import runtime_of
from stalwart.store.jobs import job_key, owner_prefix

log = logging.getLogger("stalwart.broker.request")
# Celery 5.7 split acks_on_failure_or_timeout into acks_on_failure and acks_on_timeout.
_ACKS_ON_TIMEOUT = hasattr(CeleryTask, "acks_on_timeout")
# Celery 5.7 treats a child's SystemExit/KeyboardInterrupt (reported by billiard >= 4.3) as a lost worker.
_EXIT_IS_WORKER_LOST = hasattr(CeleryRequest, "_worker_lost_info")


def _worker_lost_info(exc: BaseException) -> Any:
    try:
        raise WorkerLostError(f"Worker exited prematurely: {exc!r}.")
    except WorkerLostError:
        return ExceptionInfo()


class Request(CeleryRequest):
    """Celery's request, plus what Stalwart does when the child running it dies."""

    _stalwart_lost = False

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if isinstance(exc, (SystemExit, KeyboardInterrupt)) and not _EXIT_IS_WORKER_LOST:
            # Celery < 5.7 would ack the job as failed: requeue it as a lost worker, as 5.7 does.
            exc_info = _worker_lost_info(exc)
            exc = exc_info.exception
        if isinstance(exc, (WorkerLostError, SystemExit)):
            self.stalwart_lost(f"worker lost: {exc}")
        if isinstance(exc, TimeLimitExceeded):
            self.requeue_timed_out()
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def on_timeout(self, soft: bool, timeout: float) -> Any:
        if not soft:
            self.stalwart_lost(f"hard time limit ({timeout}s) exceeded")
            self.requeue_timed_out()
        return super().on_timeout(soft, timeout)

    def requeue_timed_out(self) -> None:
        """Requeue a job its hard time limit killed, as ``task_acks_on_timeout=False`` does in Celery 5.7.

        Celery < 5.7 has one setting for both, acks_on_failure_or_timeout, and acks such a job
        with its failures; once rejected here, its own acknowledge does nothing.
        """
        if not _ACKS_ON_TIMEOUT and self.task.acks_late:
            self.reject(requeue=True)

    def stalwart_lost(self, reason: str) -> None:
        """Free the dead child's claim so the requeued copy runs now, and tell the hooks."""
        if self._stalwart_lost:
            return
        self._stalwart_lost = True
        headers = dict(self.request_dict or {})
        runtime = runtime_of(self.app)
        job = job_key(Meta.from_header(headers.get(HEADER)).key, self.id)
        if self.worker_pid:
            try:
                runtime.jobs.crashed(job, owner_prefix=owner_prefix(HOSTNAME, int(self.worker_pid)))
            except StateStoreError as exc:
                log.warning("could not free the claim of %s[%s]: %s", self.task_name, self.id, exc)
        log.error("%s[%s]: %s; the job is requeued and its delivery counted",
                  self.task_name, self.id, reason)
        runtime.hooks.call("on_worker_lost", self.task_name, self.id, reason, headers)
