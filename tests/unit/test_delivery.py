"""The envelope's decisions, one delivery at a time, against the store on a real redis-server.

No worker process: a fake task stands in for Celery's (its request, its successor publishing),
and each test reads the outcome from what Delivery raised or returned, the job hash, the DLQ
and the successor messages it published.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import Ignore, Reject
from celery.exceptions import Retry as CeleryRetry

from stalwart.errors import Permanent, RetryAfter
from stalwart.job import delivery
from stalwart.job.delivery import DeadLettered
from stalwart.job.header import HEADER, Meta
from stalwart.policies.limits import Concurrency
from stalwart.policies.permits import PermitPolicy
from stalwart.policies.retry import ExceptionTypes, Retry
from stalwart.runtime import Runtime
from stalwart.settings import Settings
from stalwart.store.jobs import job_key


@dataclass
class Published:
    """A successor message the delivery published (retry or deferral)."""

    countdown: float
    retries: int
    meta: Meta


@dataclass
class FakeTask:
    """What the envelope needs of a task (stalwart.job.spec.EnvelopeTask), without Celery."""

    body: Callable[..., Any]
    name: str = "tests.job"
    retry_policy: Retry = field(default_factory=lambda: Retry(max_attempts=3, backoff=1.0))
    permanent_for: ExceptionTypes = ()
    max_age: float | None = None
    max_deliveries: int = 3
    permits: tuple[PermitPolicy, ...] = ()
    fallback: Callable[..., Any] | None = None
    result_max_bytes: int = 65536
    request: Any = None
    app: Any = field(default_factory=lambda: SimpleNamespace(conf=SimpleNamespace(task_default_queue="celery")))
    published: list[Published] = field(default_factory=list)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.body(*args, **kwargs)

    def bind_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        import inspect  # noqa: PLC0415 - mirrors StalwartTask.bind_arguments

        inspect.signature(self.body).bind(*args, **kwargs)

    def signature_from_request(self, request: Any = None, args: Any = None, kwargs: Any = None,
                               queue: Any = None, **options: Any) -> Any:
        def apply_async() -> None:
            header = Meta.from_header(options["headers"][HEADER])
            self.published.append(Published(options["countdown"], options["retries"], header))

        return SimpleNamespace(apply_async=apply_async)


def deliver(task: FakeTask, runtime: Runtime, *args: Any, meta: Meta | None = None, retries: int = 0,
            task_id: str = "task-1") -> Any:
    """Run one delivery of ``task`` as a worker would hand it over."""
    meta = meta or Meta()
    task.request = SimpleNamespace(id=task_id, retries=retries, hostname="test-host",
                                   delivery_info={"routing_key": "celery"}, **{HEADER: meta.to_header()})
    return delivery.run(task, runtime, args, {})


@pytest.fixture
def runtime(redis_url: str) -> Runtime:
    return Runtime(Settings.from_env({"STALWART_REDIS_URL": redis_url, "STALWART_LEASE_SECONDS": "5"}))


def state(runtime: Runtime, task_id: str = "task-1", key: str | None = None) -> str:
    return runtime.jobs.read(job_key(key, task_id)).state


def test_success_returns_the_result_and_marks_the_job_done(runtime: Runtime) -> None:
    task = FakeTask(lambda x: x * 2)
    assert deliver(task, runtime, 21) == 42
    assert state(runtime) == "done"


def test_a_done_job_returns_its_stored_result_without_running_again(runtime: Runtime) -> None:
    calls: list[int] = []
    task = FakeTask(lambda: calls.append(1) or "once")
    meta = Meta(key="k-1")
    assert deliver(task, runtime, meta=meta) == "once"
    assert deliver(task, runtime, meta=meta.successor()) == "once"
    assert calls == [1]


def test_a_transient_failure_publishes_a_successor_and_uses_an_attempt(runtime: Runtime) -> None:
    def fail() -> None:
        raise ConnectionError("flaky")

    task = FakeTask(fail)
    with pytest.raises(CeleryRetry):
        deliver(task, runtime)
    [successor] = task.published
    assert successor.retries == 1
    assert successor.meta.gen == 1
    assert successor.meta.history[0]["exc_type"] == "ConnectionError"
    assert state(runtime) == "waiting"


def test_retry_after_sets_the_delay_exactly(runtime: Runtime) -> None:
    def slow_down() -> None:
        raise RetryAfter(7.5)

    task = FakeTask(slow_down)
    with pytest.raises(CeleryRetry):
        deliver(task, runtime)
    assert task.published[0].countdown == 7.5


def test_exhausted_attempts_dead_letter_with_the_history(runtime: Runtime) -> None:
    def fail() -> None:
        raise ConnectionError("down")

    task = FakeTask(fail)
    meta = Meta(history=[{"attempt": 1}, {"attempt": 2}])
    with pytest.raises(ConnectionError):
        deliver(task, runtime, meta=meta, retries=2)
    [entry] = runtime.dlq.list()
    assert entry.reason == "exhausted"
    assert len(entry.attempts) == 3
    assert state(runtime) == "dead"
    assert task.published == []


def test_permanent_dead_letters_at_once(runtime: Runtime) -> None:
    def refuse() -> None:
        raise Permanent("card declined")

    with pytest.raises(Permanent):
        deliver(FakeTask(refuse), runtime)
    assert [e.reason for e in runtime.dlq.list()] == ["permanent"]


def test_a_past_deadline_dead_letters_as_expired_and_never_runs(runtime: Runtime) -> None:
    calls: list[int] = []
    task = FakeTask(lambda: calls.append(1))
    with pytest.raises(DeadLettered, match="expired"):
        deliver(task, runtime, meta=Meta(deadline=1))
    assert calls == []
    assert [e.reason for e in runtime.dlq.list()] == ["expired"]


def test_deliveries_past_max_deliveries_are_poison(runtime: Runtime) -> None:
    """A copy that keeps coming back without finishing (its process died each time) is poison."""
    calls: list[int] = []
    task = FakeTask(lambda: calls.append(1), max_deliveries=2)
    meta = Meta()
    for _ in range(2):  # two deliveries that "died": the claim's lease is taken over each time
        runtime.jobs.begin(job_key(None, "task-1"), owner=f"dead:{uuid.uuid4().hex}", lease_ms=0,
                           max_deliveries=2, deadline_ms=None, gen=0, ttl_ms=60_000)
    with pytest.raises(DeadLettered, match="poison"):
        deliver(task, runtime, meta=meta)
    assert calls == []
    assert [e.reason for e in runtime.dlq.list()] == ["poison"]


def test_a_job_held_under_a_live_lease_is_deferred_not_run(runtime: Runtime) -> None:
    calls: list[int] = []
    task = FakeTask(lambda: calls.append(1))
    runtime.jobs.begin(job_key(None, "task-1"), owner="other:1:m", lease_ms=60_000, max_deliveries=3,
                       deadline_ms=None, gen=0, ttl_ms=60_000)
    with pytest.raises(Ignore):
        deliver(task, runtime)
    assert calls == []
    [successor] = task.published
    assert successor.retries == 0  # a deferral uses no attempt
    assert 0 < successor.countdown <= 60.2


def test_a_stale_copy_is_dropped(runtime: Runtime) -> None:
    calls: list[int] = []
    task = FakeTask(lambda: calls.append(1))
    runtime.jobs.begin(job_key(None, "task-1"), owner="h:1:m", lease_ms=1, max_deliveries=3,
                       deadline_ms=None, gen=2, ttl_ms=60_000)
    with pytest.raises(Ignore):
        deliver(task, runtime, meta=Meta(gen=1))
    assert calls == []
    assert task.published == []


def test_a_denied_permit_defers_without_an_attempt(runtime: Runtime) -> None:
    gate = Concurrency("delivery-test", 1, lease=30)
    held = gate.acquire(runtime, None)
    assert held.granted
    calls: list[int] = []
    task = FakeTask(lambda: calls.append(1), permits=(gate,))
    with pytest.raises(Ignore):
        deliver(task, runtime)
    assert calls == []
    assert task.published[0].retries == 0
    assert state(runtime) == "waiting"


def test_arguments_that_do_not_bind_are_dead_lettered_not_run(runtime: Runtime) -> None:
    with pytest.raises(TypeError):
        deliver(FakeTask(lambda a: a), runtime, 1, 2)
    assert [e.reason for e in runtime.dlq.list()] == ["bad_arguments"]


def test_an_unreachable_state_store_hands_the_message_back(redis_url: str) -> None:
    dead = Runtime(Settings.from_env({"STALWART_REDIS_URL": "redis://127.0.0.1:1/0", "STALWART_REDIS_TIMEOUT": "0.2"}))
    with pytest.raises(Reject) as err:
        deliver(FakeTask(lambda: None), dead)
    assert err.value.requeue
