"""Adversarial regressions for the architecture change (issue 8), from a red-team pass.

Red team, claims 1 and 3 seen from the envelope: whatever happens, a delivery either returns,
is retried/deferred/requeued (Retry, Ignore, Reject) or is dead-lettered. Any other exception out
of delivery.run is a job Celery marks failed and acknowledges (task_acks_on_failure) with no DLQ
entry and no successor: a lost job.
"""

from __future__ import annotations

import pytest
from celery.exceptions import Ignore, Reject
from celery.exceptions import Retry as CeleryRetry

from stalwart.dev.embedded import free_port
from stalwart.policies.limits import Concurrency, RateLimit
from stalwart.runtime import Runtime
from stalwart.settings import Settings
from tests.unit.test_delivery import FakeTask, deliver, runtime  # noqa: F401 - fixture

HANDED_BACK = (CeleryRetry, Ignore, Reject)


def outcome_is_safe(task: FakeTask, rt: Runtime, raised: BaseException | None) -> bool:
    if raised is None or isinstance(raised, HANDED_BACK):
        return True
    return bool(rt.dlq.list())  # failed in Celery, but written to the DLQ first


def run(task: FakeTask, rt: Runtime) -> BaseException | None:
    try:
        deliver(task, rt)
    except BaseException as exc:
        return exc
    return None


def test_a_huge_max_age_does_not_lose_the_job(runtime: Runtime) -> None:  # noqa: F811
    """max_age=1e308 (or inf/nan) passes the decorator; delivery.run then computes
    `meta.sent + int(max_age * 1000)` before the envelope starts: OverflowError, no DLQ entry."""
    task = FakeTask(lambda: "ran", max_age=1e308)
    raised = run(task, runtime)
    assert outcome_is_safe(task, runtime, raised), f"{type(raised).__name__}: {raised}"


class Unprintable(Exception):
    """An exception whose message cannot be built (e.g. __str__ reads an attribute __init__ never
    set, common in hand-written exception classes)."""

    def __str__(self) -> str:
        raise AttributeError("code")


@pytest.mark.parametrize("retries", [0, 2])  # a retryable attempt, and the last attempt
def test_an_exception_whose_str_raises_is_retried_or_dead_lettered(runtime: Runtime, retries: int) -> None:  # noqa: F811
    """Delivery.fail() calls attempt_record() -> str(exc) before it publishes a retry or writes
    the DLQ entry; the AttributeError escapes, Celery acks a failure, and the job is gone."""
    def body() -> None:
        raise Unprintable()

    task = FakeTask(body)
    try:
        from tests.unit.test_delivery import Meta  # noqa: PLC0415
        deliver(task, runtime, meta=Meta(history=[{}] * retries), retries=retries)
        raised = None
    except BaseException as exc:
        raised = exc
    safe = isinstance(raised, HANDED_BACK) or bool(runtime.dlq.list()) or bool(task.published)
    assert safe, f"{type(raised).__name__}: {raised} - no successor published, no DLQ entry"


@pytest.fixture
def cluster_down() -> Runtime:
    """A Runtime whose state store is a Redis Cluster that cannot be reached right now."""
    port = free_port()
    return Runtime(Settings.from_env({"STALWART_REDIS_URL": f"redis+cluster://127.0.0.1:{port}",
                                      "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
                                      "STALWART_REDIS_TIMEOUT": "0.2"}))


def test_an_unreachable_cluster_state_store_requeues_the_job(cluster_down: Runtime) -> None:
    """Delivery.begin() catches StateStoreError around `self.runtime.jobs.begin(...)`, but
    `self.runtime.jobs` builds the RedisCluster client, which connects in its constructor and
    raises a raw RedisClusterException outside any @guarded method."""
    task = FakeTask(lambda: "ran")
    raised = run(task, cluster_down)
    assert isinstance(raised, Reject), f"{type(raised).__name__}: {raised}"
    assert raised.requeue


@pytest.mark.parametrize("policy", [RateLimit("rt-rate", "5/s", on_redis_error="open"),
                                    Concurrency("rt-conc", 2, on_redis_error="open")])
def test_a_fail_open_policy_fails_open_when_the_cluster_is_unreachable(cluster_down: Runtime, policy: object) -> None:
    """SharedPolicy.acquire() calls store(runtime) (client_from_url) outside its try: with a
    cluster URL the constructor raises RedisClusterException, so instead of failing open the
    permit raises; in the envelope that is classified as a job failure and burns an attempt."""
    decision = policy.acquire(cluster_down, None)  # type: ignore[attr-defined]
    assert decision.granted


def test_an_enqueue_with_an_unreachable_cluster_state_store_raises_state_store_error(cluster_down: Runtime) -> None:
    from stalwart.errors import StateStoreError  # noqa: PLC0415

    with pytest.raises(StateStoreError):
        cluster_down.enqueues.claim("k", "t", 1000)
