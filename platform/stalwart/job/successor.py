"""The next message of a job (a retry, a deferral, a parked copy), built from the current one.

It carries the job's task id, options and custom message headers (a tenant header set at enqueue
arrives on every attempt), the successor's ``stalwart`` header, and, for a ``retry()``, the
call's new arguments and options (see :mod:`stalwart.job.retry`).
"""

from __future__ import annotations

from typing import Any

from stalwart.job.context import JobContext
from stalwart.job.header import DELAY_HEADER, HEADER
from stalwart.job.retry import RetryCall, next_arguments
from stalwart.job.spec import EnvelopeTask
from stalwart.store.switches import PARK_HEADER

# Message headers that are Stalwart's own: never carried over as custom headers.
OWN_HEADERS = frozenset({HEADER, DELAY_HEADER, PARK_HEADER})


def custom_headers(request: Any) -> dict[str, Any]:
    """The message headers of ``request`` that are neither Celery's nor Stalwart's own."""
    return {k: v for k, v in (getattr(request, "headers", None) or {}).items() if k not in OWN_HEADERS}


def signature(task: EnvelopeTask, ctx: JobContext, *, gen: int, delay: float, retries: int,
              call: RetryCall | None = None, park: bool = False) -> Any:
    """The Celery signature of the next message: published as it is, or parked (``park``)."""
    req = task.request
    options = dict(call.options) if call is not None else {}
    headers = custom_headers(req)
    headers.update(options.pop("headers", None) or {})
    headers[HEADER] = ctx.meta.successor(gen=gen).to_header()
    if park:
        headers[PARK_HEADER] = ctx.task_name
    args, kwargs = ctx.args, ctx.kwargs
    if call is not None:
        args, kwargs = next_arguments(task.run, (args, kwargs), call)
    return task.signature_from_request(
        req, tuple(args), kwargs, countdown=None if park else max(delay, 0.001),
        retries=(req.retries or 0) + retries, headers=headers, stalwart_successor=True, **options,
    )
