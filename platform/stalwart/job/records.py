"""What a delivery writes down about itself: one attempt for the history, and its DLQ entry."""

from __future__ import annotations

import traceback
from typing import Any

from stalwart.dlq import message as dlq_message
from stalwart.dlq.entry import DeadLetter
from stalwart.job.context import JobContext
from stalwart.job.header import now_ms


def describe(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception's own ``__str__`` raises."""
    try:
        return str(exc)
    except Exception as err:  # noqa: BLE001 - a task's exception type is arbitrary code
        return f"<{type(exc).__name__}: str() raised {type(err).__name__}>"


def attempt_record(ctx: JobContext, exc: BaseException) -> dict[str, Any]:
    """One failed (or refused) attempt, as the job's history keeps it."""
    return {
        "attempt": ctx.attempt,
        "at": now_ms(),
        "host": ctx.hostname,
        "duration": round(ctx.elapsed(), 4),
        "exc_type": type(exc).__name__,
        "exc_message": describe(exc)[:1000],
    }


def dead_letter_entry(ctx: JobContext, request: Any, reason: str, exc: BaseException) -> DeadLetter:
    """The DLQ entry of a job that dies in this delivery, with its options and canvas."""
    meta = ctx.meta
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return DeadLetter(
        source=meta.msg,
        reason=reason,
        task=ctx.task_name,
        task_id=ctx.task_id,
        queue=ctx.queue,
        args=list(ctx.args),
        kwargs=ctx.kwargs,
        headers=meta.to_header(),
        exc_type=type(exc).__name__,
        exc_message=describe(exc)[:4000],
        traceback=tb[-16000:],
        attempts=list(meta.history),
        first_seen=meta.first_seen,
        hostname=ctx.hostname,
        options=dlq_message.from_request(request),
    )
