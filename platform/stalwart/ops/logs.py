"""Structured logs: every record carries the running job's task id, name, attempt and trace id.

JSON lines by default; ``STALWART_LOG_FORMAT=text`` gives a readable line for local runs.
Installed on Celery's worker and task loggers through its ``after_setup_*logger`` signals, so
the pool children (forked after logging is set up) inherit it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import current_task, signals

from stalwart.enqueue.translate import current_trace
from stalwart.job.delivery import current_job
from stalwart.job.header import HEADER

JOB_FIELDS = ("task_id", "task_name", "attempt", "trace_id")
TEXT_FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [%(task_name)s %(task_id)s #%(attempt)s trace=%(trace_id)s] %(message)s"
)


def job_fields() -> dict[str, Any]:
    """The running job's fields: from the envelope, else from Celery's current task request."""
    ctx = current_job.get()
    if ctx is not None:
        return {"task_id": ctx.task_id, "task_name": ctx.task_name, "attempt": ctx.attempt, "trace_id": ctx.trace_id}
    fields: dict[str, Any] = dict.fromkeys(JOB_FIELDS)
    fields["trace_id"] = current_trace.get()
    request = getattr(current_task, "request", None)  # the proxy raises AttributeError outside a task
    if request is not None and getattr(request, "id", None):
        header = getattr(request, HEADER, None)
        fields.update(task_id=request.id, task_name=current_task.name, attempt=(request.retries or 0) + 1)
        fields["trace_id"] = header.get("trace") if isinstance(header, dict) else fields["trace_id"]
    return fields


class JobFilter(logging.Filter):
    """Adds the running job's fields to each record (None outside a job); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in job_fields().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        data.update({k: getattr(record, k) for k in JOB_FIELDS if getattr(record, k, None) is not None})
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A readable line for local runs; job fields show as ``-`` outside a job."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        missing = [k for k in JOB_FIELDS if getattr(record, k, None) is None]
        for name in missing:
            setattr(record, name, "-")
        try:
            return super().format(record)
        finally:
            for name in missing:
                setattr(record, name, None)


def formatter(fmt: str = "json") -> logging.Formatter:
    """The formatter for ``fmt`` (Settings.log_format): ``json`` unless ``text``."""
    return TextFormatter() if fmt == "text" else JsonFormatter()


def configure(logger: logging.Logger, fmt: str = "json") -> None:
    """Give every handler of ``logger`` the job filter and the chosen formatter."""
    chosen = formatter(fmt)
    for handler in logger.handlers:
        handler.setFormatter(chosen)
        if not any(isinstance(f, JobFilter) for f in handler.filters):
            handler.addFilter(JobFilter())


def install(fmt: str = "json") -> None:
    """Format this process's Celery loggers now, and again whenever Celery sets them up."""

    def on_logger_setup(logger: logging.Logger | None = None, **_: Any) -> None:
        if logger is not None:
            configure(logger, fmt)

    signals.after_setup_logger.connect(on_logger_setup, weak=False, dispatch_uid="stalwart.ops.logs")
    signals.after_setup_task_logger.connect(on_logger_setup, weak=False, dispatch_uid="stalwart.ops.logs.task")
    # The worker set its loggers up before its bootsteps ran: configure what exists now.
    for logger in (logging.getLogger(), logging.getLogger("celery.task")):
        configure(logger, fmt)
