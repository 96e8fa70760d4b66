"""Plain Celery with the settings Stalwart would otherwise share: late acks, requeue on loss."""

from __future__ import annotations

import os

import celery

app = celery.Celery("plain", broker=os.environ["BENCH_REDIS_URL"], include=["bench.recovery_jobs"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
)
