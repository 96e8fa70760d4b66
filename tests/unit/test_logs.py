"""Structured log records carry the running job's fields."""

from __future__ import annotations

import json
import logging

from stalwart.job.context import JobContext
from stalwart.job.delivery import current_job
from stalwart.job.header import Meta
from stalwart.ops import logs


def record(message: str) -> logging.LogRecord:
    rec = logging.LogRecord("app", logging.INFO, __file__, 1, message, (), None)
    logs.JobFilter().filter(rec)
    return rec


def test_json_lines_carry_the_job_fields() -> None:
    ctx = JobContext(task_name="billing.charge", task_id="t-1", queue="celery", args=(), kwargs={},
                     meta=Meta(trace="trace-9"), attempt=2, hostname="h", job_key="t:t-1")
    token = current_job.set(ctx)
    try:
        line = json.loads(logs.JsonFormatter().format(record("charging")))
    finally:
        current_job.reset(token)
    assert line["message"] == "charging"
    assert (line["task_id"], line["task_name"], line["attempt"], line["trace_id"]) == (
        "t-1", "billing.charge", 2, "trace-9")


def test_outside_a_job_the_fields_are_absent_from_json_and_dashes_in_text() -> None:
    line = json.loads(logs.JsonFormatter().format(record("idle")))
    assert "task_id" not in line
    assert line["level"] == "INFO"
    text = logs.formatter("text").format(record("idle"))
    assert text.endswith("[- - #- trace=-] idle")


def test_configure_is_idempotent() -> None:
    logger = logging.getLogger("stalwart.test.logs")
    logger.addHandler(logging.StreamHandler())
    logs.configure(logger)
    logs.configure(logger)
    assert len(logger.handlers[0].filters) == 1
    assert isinstance(logger.handlers[0].formatter, logs.JsonFormatter)
