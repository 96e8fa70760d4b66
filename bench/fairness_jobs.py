"""Stalwart's side of bench/fairness.py: one task, ``fair_by`` its tenant."""

from __future__ import annotations

from celery import shared_task

from bench.fairness_body import finish


@shared_task(name="bench.fair.job", fair_by="{tenant}")
def job(tenant: str, enqueued_ms: int) -> None:
    finish(tenant, enqueued_ms)


@shared_task(name="bench.fair.unfair")
def unfair(tenant: str, enqueued_ms: int) -> None:
    """The same task without fair_by: Stalwart's envelope cost apart from the lanes'."""
    finish(tenant, enqueued_ms)
