"""Plain Celery's side of bench/fairness.py: bench/plain_app.py's settings, the same task body."""

from __future__ import annotations

from bench.fairness_body import finish
from bench.plain_app import app


@app.task(name="bench.fair.job", shared=False)  # the Stalwart app has its own
def job(tenant: str, enqueued_ms: int) -> None:
    finish(tenant, enqueued_ms)


__all__ = ["app", "job"]
