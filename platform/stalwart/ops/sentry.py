"""Sentry reporting: exactly one event per job that dies, retries only as breadcrumbs (DESIGN §7).

When ``SENTRY_DSN`` is set, workers initialise sentry-sdk with its Celery integration (main
process when the worker bootstep wires it, each pool child again at ``worker_process_init`` so no HTTP
connection is shared across a fork) and flush it on shutdown. :class:`SentryHook` reports:

* a dead-lettered job (any reason, pool child or main process for bad messages), tagged with
  task, queue, attempt, reason, DLQ entry id, idempotency key, trace id and breaker states,
  grouped by task and exception type, with every earlier attempt as a breadcrumb;
* a worker lost mid-job or killed by the hard time limit (main process).

One event per job that dies: the first loss of a message is reported, and its later losses and
the ``poison`` verdict they lead to are not; any other dead-letter reason is reported once per
message (Redis ``SET NX`` markers per message decide; without Redis, report rather than miss).
The Celery integration would report a dead job's re-raised exception a second time; those
events are dropped in ``before_send``. Log records become breadcrumbs, never events.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import celery
from celery import signals

from stalwart.dlq.entry import DeadLetter
from stalwart.errors import StateStoreError
from stalwart.hooks import Hook
from stalwart.job.context import JobContext
from stalwart.job.delivery import current_job
from stalwart.job.header import HEADER, Meta
from stalwart.ops.scrub import scrub, secret_values
from stalwart.runtime import Runtime
from stalwart.store.jobs import job_key

log = logging.getLogger("stalwart.ops.sentry")
_REPORTED: OrderedDict[str, None] = OrderedDict()  # task ids this process reported as dead
_REPORTED_MAX = 1000
_STATE: dict[str, Any] = {"pid": None}


def remember(task_id: str | None) -> None:
    """Note that ``task_id`` was reported, so the Celery integration's copy is dropped."""
    if task_id:
        _REPORTED[task_id] = None
        while len(_REPORTED) > _REPORTED_MAX:
            _REPORTED.popitem(last=False)


def is_duplicate(event: Mapping[str, Any]) -> bool:
    """An event from the Celery integration for a job this process already reported."""
    values = (event.get("exception") or {}).get("values") or []
    from_celery = any((v.get("mechanism") or {}).get("type") == "celery" for v in values)
    return from_celery and (event.get("tags") or {}).get("celery_task_id") in _REPORTED


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """Drop duplicates; scrub secret keys everywhere and secret values out of all text."""
    if is_duplicate(event):
        return None
    secrets = secret_values(event.get("contexts")) | secret_values(event.get("extra"))
    return scrub(event, secrets)  # type: ignore[no-any-return]


def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    return scrub(crumb)  # type: ignore[no-any-return]


def init(dsn: str) -> None:
    """Initialise sentry-sdk in this process (once per pid)."""
    if _STATE["pid"] == os.getpid():
        return
    import sentry_sdk  # noqa: PLC0415 - optional at import time
    from sentry_sdk.integrations.celery import CeleryIntegration  # noqa: PLC0415
    from sentry_sdk.integrations.logging import LoggingIntegration  # noqa: PLC0415

    sentry_sdk.init(
        dsn=dsn,
        integrations=[CeleryIntegration(), LoggingIntegration(level=logging.INFO, event_level=None)],
        send_default_pii=False,
        include_local_variables=False,  # locals hold job arguments positionally: never send them
        before_send=before_send,  # type: ignore[arg-type]
        before_breadcrumb=before_breadcrumb,
    )
    _STATE["pid"] = os.getpid()


def flush(**_: Any) -> None:
    """Send what is queued before the process exits."""
    if _STATE["pid"] == os.getpid():
        import sentry_sdk  # noqa: PLC0415

        sentry_sdk.flush(timeout=5)


def named_arguments(task: Any, args: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The job's arguments by parameter name, so secret-looking names can be scrubbed."""
    try:
        return dict(inspect.signature(task.run).bind_partial(*args, **kwargs).arguments)
    except (AttributeError, TypeError, ValueError):
        return {"args": list(args or ()), **dict(kwargs)}


class SentryHook(Hook):
    """Reports dead and lost jobs to Sentry; retries and deferrals become breadcrumbs."""

    def __init__(self, app: celery.Celery, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    def on_retry(self, ctx: JobContext, exc: BaseException, delay: float) -> None:
        _breadcrumb(f"{ctx.task_name} attempt {ctx.attempt} failed ({type(exc).__name__}), retry in {delay:.2f}s",
                    "warning", ctx)

    def on_defer(self, ctx: JobContext, reason: str, delay: float) -> None:
        _breadcrumb(f"{ctx.task_name} deferred {delay:.2f}s ({reason})", "info", ctx)

    def on_dead_letter(self, entry: DeadLetter, exc: BaseException | None) -> None:
        remember(entry.task_id)
        meta = Meta.from_header(entry.headers.get(HEADER, entry.headers))  # message headers or the job's
        if not self.first_report(entry.task_id, meta, "lost" if entry.reason == "poison" else "dead"):
            return
        ctx = current_job.get()
        tags = {
            "task": entry.task or "unknown", "queue": entry.queue, "reason": entry.reason,
            "dlq_entry_id": entry.id, "task_id": entry.task_id, "trace_id": meta.trace,
            "idempotency_key": meta.key, "attempt": ctx.attempt if ctx else len(entry.attempts) or None,
        }
        breakers = ctx.breaker_states if ctx else {}
        task = self.app.tasks.get(entry.task) if entry.task else None
        context = {
            "arguments": named_arguments(task, entry.args, entry.kwargs),
            "attempts": entry.attempts, "breakers": breakers, "hostname": entry.hostname,
        }
        fingerprint = [entry.task or "unknown", entry.exc_type or type(exc).__name__]
        message = f"{entry.task}: dead-lettered ({entry.reason}): {entry.exc_type}: {entry.exc_message}"
        _capture(tags, breakers, context, fingerprint, exc, message, entry.attempts)

    def on_worker_lost(self, task_name: str, task_id: str, reason: str, headers: dict[str, Any]) -> None:
        meta = Meta.from_header(headers.get(HEADER))
        if not self.first_report(task_id, meta, "lost"):
            return
        kind = "TimeLimitExceeded" if reason.startswith("hard time limit") else "WorkerLostError"
        tags = {
            "task": task_name, "task_id": task_id, "reason": "time_limit" if kind == "TimeLimitExceeded" else "lost",
            "queue": (headers.get("delivery_info") or {}).get("routing_key"), "trace_id": meta.trace,
            "idempotency_key": meta.key, "attempt": int(headers.get("retries") or 0) + 1,
        }
        context = {"hostname": headers.get("hostname"), "detail": reason}
        _capture(tags, {}, context, [task_name, kind], None, f"{task_name}: {reason}", meta.history)

    def first_report(self, task_id: str | None, meta: Meta, kind: str) -> bool:
        """True the first time this message of this job is reported as ``kind`` (lost/dead)."""
        if not task_id:
            return True
        try:
            return self.runtime.jobs.first_report(job_key(meta.key, task_id), kind=kind, message_id=meta.msg,
                                                  ttl_ms=int(self.runtime.settings.done_ttl_seconds * 1000))
        except StateStoreError as exc:
            log.warning("could not check whether %s was reported already: %s", task_id, exc)
            return True


def _breadcrumb(message: str, level: str, ctx: JobContext) -> None:
    import sentry_sdk  # noqa: PLC0415

    sentry_sdk.add_breadcrumb(category="stalwart", message=message, level=level,
                              data={"task_id": ctx.task_id, "trace_id": ctx.trace_id})


def _capture(
    tags: dict[str, Any],
    breakers: dict[str, str],
    context: dict[str, Any],
    fingerprint: list[str],
    exc: BaseException | None,
    message: str,
    attempts: list[dict[str, Any]],
) -> None:
    import sentry_sdk  # noqa: PLC0415

    with sentry_sdk.new_scope() as scope:
        for name, value in tags.items():
            if value is not None:
                scope.set_tag(name, str(value)[:200])
        for name, state in breakers.items():
            scope.set_tag(f"breaker.{name}"[:32], state)
        for attempt in attempts:
            scope.add_breadcrumb(category="stalwart.attempt", level="warning", message=(
                f"attempt {attempt.get('attempt')} on {attempt.get('host')}: "
                f"{attempt.get('exc_type')}: {attempt.get('exc_message')}"))
        scope.set_context("stalwart", context)
        scope.fingerprint = fingerprint
        if exc is not None:
            sentry_sdk.capture_exception(exc)
        else:
            sentry_sdk.capture_message(message, level="error")


def install(app: celery.Celery, runtime: Runtime) -> None:
    """With a Sentry DSN configured: add the hook, initialise Sentry here and in pool children.

    Called by the worker's bootstep, in the main process, after Celery's ``worker_init``.
    """
    dsn = runtime.settings.sentry_dsn
    if not dsn:
        return
    runtime.hooks.add(SentryHook(app, runtime))
    init(dsn)

    def on_start(**_: Any) -> None:
        init(dsn)

    signals.worker_process_init.connect(on_start, weak=False, dispatch_uid="stalwart.ops.sentry.process_init")
    signals.worker_shutdown.connect(flush, weak=False, dispatch_uid="stalwart.ops.sentry.shutdown")
    signals.worker_process_shutdown.connect(flush, weak=False, dispatch_uid="stalwart.ops.sentry.process_shutdown")
