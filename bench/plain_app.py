"""A plain ``celery.Celery`` app with Stalwart's worker settings, the baseline of throughput.py.

Same broker Redis, JSON only, late acks, requeue on worker loss, prefetch 1, task events on,
no result backend; kombu's stock Redis transport and no envelope.
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("plain", broker=os.environ.get("STALWART_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    event_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.plain.noop")
def noop() -> None:
    """Does nothing: what the benchmark drains."""
