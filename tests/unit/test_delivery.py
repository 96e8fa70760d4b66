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
from celery.app.task import Context
from celery.exceptions import Ignore, MaxRetriesExceededError, Reject
from celery.exceptions import Retry as CeleryRetry

from stalwart.errors import Permanent, RetryAfter
from stalwart.job import delivery
from stalwart.job.commit import ClaimLost, commit
from stalwart.job.delivery import DeadLettered
from stalwart.job.header import HEADER, Meta
from stalwart.job.retry import RetryCall
from stalwart.policies.limits import Concurrency
from stalwart.policies.permits import PermitPolicy
from stalwart.policies.retry import ExceptionTypes, Retry
from stalwart.runtime import Runtime
from stalwart.settings import Settings
from stalwart.store.jobs import job_key
from stalwart.store.switches import PARK_HEADER


@dataclass
class Published:
    """A successor message the delivery published (retry or deferral)."""

    countdown: float | None
    retries: int
    meta: Meta
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


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
    flow_permits: tuple[PermitPolicy, ...] = ()
    fallback: Callable[..., Any] | None = None
    result_max_bytes: int = 65536
    request: Any = None
    app: Any = field(default_factory=lambda: SimpleNamespace(conf=SimpleNamespace(task_default_queue="celery")))
    published: list[Published] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.run = self.body  # type: ignore[method-assign] # run has the body's signature, as in Celery

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.body(*args, **kwargs)

    def bind_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        import inspect  # noqa: PLC0415 - mirrors StalwartTask.bind_arguments

        inspect.signature(self.body).bind(*args, **kwargs)

    def signature_from_request(self, request: Any = None, args: Any = None, kwargs: Any = None,
                               queue: Any = None, **options: Any) -> Any:
        def apply_async() -> None:
            header = Meta.from_header(options["headers"][HEADER])
            self.published.append(Published(options["countdown"], options["retries"], header, tuple(args),
                                             dict(kwargs), dict(options["headers"]), {**options, "queue": queue}))

        return SimpleNamespace(apply_async=apply_async)


def deliver(task: FakeTask, runtime: Runtime, *args: Any, meta: Meta | None = None, retries: int = 0,
            task_id: str = "task-1", headers: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Run one delivery of ``task`` as a worker would hand it over."""
    meta = meta or Meta()
    task.request = Context(id=task_id, retries=retries, hostname="test-host", headers=headers, args=args,
                           kwargs=kwargs, delivery_info={"routing_key": "celery"}, **{HEADER: meta.to_header()})
    return delivery.run(task, runtime, args, kwargs)


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


# -- a lost claim is never acknowledged without an effect (issue 10.2) --------------------------


def test_a_commit_that_finds_the_claim_gone_sends_the_job_round_again(runtime: Runtime) -> None:
    """The hash vanished under the running body (its TTL lapsed): the effect never happened, so
    the job must not be acknowledged as if it had."""

    def body() -> None:
        runtime.redis.delete(runtime.keys.job(job_key(None, "task-1")))
        commit(lambda pipe: pipe.incr("effect:lost"))

    task = FakeTask(body)
    with pytest.raises(Ignore):
        deliver(task, runtime)
    [successor] = task.published
    assert successor.retries == 0  # not a failure: no attempt used
    assert successor.meta.gen == 0  # the same generation: a newer holder's successor still wins
    assert runtime.redis.get("effect:lost") is None


def test_a_commit_of_a_job_done_meanwhile_is_dropped(runtime: Runtime) -> None:
    def body() -> None:
        hash_key = runtime.keys.job(job_key(None, "task-1"))
        runtime.redis.hset(hash_key, "state", "done")  # another delivery finished it meanwhile
        runtime.redis.hdel(hash_key, "owner", "lease")
        commit(lambda pipe: pipe.incr("effect:twice"))

    task = FakeTask(body)
    with pytest.raises(ClaimLost):
        deliver(task, runtime)
    assert task.published == []
    assert runtime.redis.get("effect:twice") is None


# -- Celery's retry() arguments and custom headers (issue 10.6) ---------------------------------


def retrying(call: RetryCall, *, throw: bool = True, then: Any = None) -> Callable[..., Any]:
    def body(*args: Any, **kwargs: Any) -> Any:
        delivery.retry(call, throw=throw)
        return then

    return body


def test_retry_publishes_the_new_arguments_and_options(runtime: Runtime) -> None:
    call = RetryCall(args=(2,), kwargs={"b": "new"}, countdown=4.0, options={"queue": "slow", "priority": 3})
    task = FakeTask(retrying(call))
    with pytest.raises(CeleryRetry):
        deliver(task, runtime, 1, b="old")
    [successor] = task.published
    assert (successor.args, successor.kwargs) == ((2,), {"b": "new"})
    assert (successor.countdown, successor.retries) == (4.0, 1)
    assert (successor.options["queue"], successor.options["priority"]) == ("slow", 3)


def test_new_positionals_replace_the_keyword_arguments_they_cover(runtime: Runtime) -> None:
    def body(a: int) -> None:
        delivery.retry(RetryCall(args=(5,)), throw=True)

    task = FakeTask(body)
    with pytest.raises(CeleryRetry):
        deliver(task, runtime, a=1)
    assert (task.published[0].args, task.published[0].kwargs) == ((5,), {})


def test_retry_max_retries_overrides_the_tasks_limit(runtime: Runtime) -> None:
    """Retry(max_attempts=3) is max_retries=2; retry(max_retries=10) still retries attempt 3."""
    task = FakeTask(retrying(RetryCall(max_retries=10, countdown=0.1)))
    with pytest.raises(CeleryRetry):
        deliver(task, runtime, retries=2)
    assert task.published[0].retries == 3


def test_retry_past_max_retries_raises_exc_and_dead_letters_as_exhausted(runtime: Runtime) -> None:
    task = FakeTask(retrying(RetryCall(max_retries=1, exc=KeyError("gone"))))
    with pytest.raises(KeyError):
        deliver(task, runtime, retries=1)
    assert task.published == []
    assert [e.reason for e in runtime.dlq.list()] == ["exhausted"]


def test_retry_past_max_retries_without_exc_raises_max_retries_exceeded(runtime: Runtime) -> None:
    caught: list[BaseException] = []

    def body() -> str:
        try:
            delivery.retry(RetryCall(max_retries=0), throw=True)
        except MaxRetriesExceededError as exc:
            caught.append(exc)
        return "handled"

    assert deliver(FakeTask(body), runtime) == "handled"
    assert len(caught) == 1


def test_retry_without_throw_returns_and_the_retry_still_runs(runtime: Runtime) -> None:
    task = FakeTask(retrying(RetryCall(countdown=2.0), throw=False, then="went on"))
    assert deliver(task, runtime) == "went on"
    [successor] = task.published
    assert (successor.countdown, successor.retries, successor.meta.gen) == (2.0, 1, 1)
    assert state(runtime) == "waiting"  # not done: the published retry must run


def test_custom_headers_survive_retries_and_deferrals(runtime: Runtime) -> None:
    def fail() -> None:
        raise ConnectionError("flaky")

    retried = FakeTask(fail)
    with pytest.raises(CeleryRetry):
        deliver(retried, runtime, headers={"tenant": "acme", HEADER: {"msg": "old"}})
    assert retried.published[0].headers["tenant"] == "acme"
    gate = Concurrency("headers-test", 1, lease=30)
    assert gate.acquire(runtime, None).granted
    deferred = FakeTask(lambda: None, permits=(gate,))
    with pytest.raises(Ignore):
        deliver(deferred, runtime, task_id="task-2", headers={"tenant": "acme"})
    assert deferred.published[0].headers["tenant"] == "acme"


# -- a paused task's jobs are parked, not re-deferred (issue 10.7) ------------------------------


class Paused:
    def state(self, task_name: str) -> str | None:
        return "paused"


def test_a_paused_job_is_parked_not_deferred(runtime: Runtime) -> None:
    calls: list[int] = []
    task = FakeTask(lambda: calls.append(1))
    runtime.switches = Paused()
    runtime.switch_store.set("tests.*", "paused")
    with pytest.raises(Ignore):
        deliver(task, runtime)
    [parked] = task.published
    assert parked.headers[PARK_HEADER] == "tests.job"
    assert parked.countdown is None  # not through the delayed set: it waits for resume
    assert calls == []
