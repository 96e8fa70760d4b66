"""The envelope on a real worker: recovery, classification, time limits, deadlines (issue 2, item 4)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.dlq.entry import DeadLetter
from stalwart.testing import WorkerProcess, wait_until

pytestmark = pytest.mark.integration

TASK_MODULES = "tests.integration.jobs,tests.integration.jobs_envelope"
JOBS = "tests.integration.jobs."
MORE = "tests.integration.jobs_envelope."
LONG = "tests.integration.jobs_long."
LONG_MODULES = "tests.integration.jobs,tests.integration.jobs_long"


@pytest.fixture
def worker(make_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    return make_worker(env={"STALWART_TASK_MODULES": TASK_MODULES})


def dead_letter(app: Stalwart, task_id: str, timeout: float = 40) -> DeadLetter:
    """Wait for the DLQ entry of ``task_id``."""

    def find() -> DeadLetter | None:
        return next((e for e in app.stalwart.dlq.iter() if e.task_id == task_id), None)

    return wait_until(find, timeout, 0.1, f"no dead-letter entry for {task_id}")


def count(r: redis.Redis, key: str) -> int:
    return int(r.get(key) or 0)


def stamps(r: redis.Redis, key: str) -> list[int]:
    return [int(v) for v in r.lrange(f"ran:{key}", 0, -1)]


def assert_serving(app: Stalwart, worker: WorkerProcess, r: redis.Redis) -> None:
    """The worker is alive and still runs jobs."""
    app.send_task(JOBS + "record", args=["still-serving"])
    wait_until(lambda: count(r, "effect:still-serving") == 1, 30, message="worker stopped serving")
    assert worker.alive
    assert "CRITICAL" not in worker.log()


# -- transient failures and retries -------------------------------------------------------------


def test_job_failing_three_times_then_succeeding_finishes(app: Stalwart, worker: WorkerProcess, r: redis.Redis) -> None:
    result = app.send_task(JOBS + "fail_times", args=["flaky", 3])
    wait_until(lambda: count(r, "effect:flaky") == 1, message="flaky job never finished")
    assert count(r, "attempts:flaky") == 4
    assert result.id not in {e.task_id for e in app.stalwart.dlq.iter()}
    assert r.zcard(app.stalwart.keys.delayed("celery")) == 0  # no retry left waiting


def test_job_exhausting_its_attempts_is_dead_lettered_with_its_history(
    app: Stalwart, worker: WorkerProcess, r: redis.Redis
) -> None:
    result = app.send_task(JOBS + "always_fail", args=["doomed"])
    entry = dead_letter(app, result.id)
    assert entry.reason == "exhausted"
    assert entry.task == JOBS + "always_fail"
    assert entry.args == ["doomed"]
    assert entry.exc_type == "TimeoutError"
    assert [a["attempt"] for a in entry.attempts] == [1, 2, 3]
    assert {a["exc_type"] for a in entry.attempts} == {"TimeoutError"}
    assert entry.traceback
    assert entry.headers["trace"]
    assert count(r, "attempts:doomed") == 3


def test_permanent_error_is_dead_lettered_at_once(app: Stalwart, worker: WorkerProcess, r: redis.Redis) -> None:
    result = app.send_task(JOBS + "permanent", args=["never"])
    entry = dead_letter(app, result.id)
    assert entry.reason == "permanent"
    assert entry.exc_type == "Permanent"
    assert len(entry.attempts) == 1
    assert count(r, "attempts:never") == 1


def test_retry_after_hint_is_honoured(app: Stalwart, worker: WorkerProcess, r: redis.Redis) -> None:
    app.send_task(MORE + "hinted", args=["hint", 1.5])
    wait_until(lambda: len(stamps(r, "hint")) == 2, message="hinted job did not run twice")
    first, second = stamps(r, "hint")
    assert second - first >= 1500  # both stamped on the Redis clock


def test_retry_is_never_scheduled_past_the_deadline(app: Stalwart, worker: WorkerProcess, r: redis.Redis) -> None:
    result = app.send_task(MORE + "hinted", args=["late", 30.0], deadline=10)
    entry = dead_letter(app, result.id)
    assert entry.reason == "expired"
    assert entry.exc_type == "RetryAfter"
    assert len(stamps(r, "late")) == 1
    assert r.zcard(app.stalwart.keys.delayed("celery")) == 0


# -- time limits --------------------------------------------------------------------------------


def test_soft_time_limit_is_retried_then_dead_lettered(app: Stalwart, worker: WorkerProcess, r: redis.Redis) -> None:
    result = app.send_task(JOBS + "soft_limited", args=["slow", 10.0])
    entry = dead_letter(app, result.id)
    assert entry.reason == "exhausted"
    assert [a["exc_type"] for a in entry.attempts] == ["SoftTimeLimitExceeded"] * 2
    assert count(r, "attempts:slow") == 2


def test_hard_time_limit_kills_the_child_and_the_job_ends_as_poison(
    app: Stalwart, worker: WorkerProcess, r: redis.Redis
) -> None:
    result = app.send_task(JOBS + "hard_limited", args=["stuck"])
    entry = dead_letter(app, result.id, timeout=50)
    assert entry.reason == "poison"
    assert count(r, "attempts:stuck") == 2  # max_deliveries=2: killed twice, never run a third time
    assert "Hard time limit" in worker.log()
    assert_serving(app, worker, r)


def test_child_dying_mid_job_is_redelivered_then_poison(
    app: Stalwart, worker: WorkerProcess, r: redis.Redis
) -> None:
    result = app.send_task(JOBS + "crash", args=["pill"])
    entry = dead_letter(app, result.id, timeout=50)
    assert entry.reason == "poison"
    assert count(r, "attempts:pill") == 3  # max_deliveries=3: each delivery killed its child
    assert_serving(app, worker, r)


# -- deadlines ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"deadline": -1},
        {"expires": dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)},
        {"deadline": 0.3, "countdown": 1},  # expires while waiting in the delayed set
        {"expires": 0.3, "countdown": 1},
    ],
    ids=["deadline-past", "expires-past", "deadline-while-delayed", "expires-while-delayed"],
)
def test_job_past_its_deadline_is_dead_lettered_unrun(
    app: Stalwart, worker: WorkerProcess, r: redis.Redis, options: dict[str, object]
) -> None:
    result = app.send_task(JOBS + "record", args=["too-late"], **options)
    entry = dead_letter(app, result.id)
    assert entry.reason == "expired"
    assert entry.headers["deadline"]
    assert count(r, "effect:too-late") == 0


def test_job_older_than_max_age_is_dead_lettered_unrun(app: Stalwart, worker: WorkerProcess, r: redis.Redis) -> None:
    result = app.send_task(MORE + "aged", args=["stale"], countdown=1)
    entry = dead_letter(app, result.id)
    assert entry.reason == "expired"
    assert count(r, "effect:stale") == 0


def test_job_within_its_deadline_runs(app: Stalwart, worker: WorkerProcess, r: redis.Redis) -> None:
    app.send_task(JOBS + "record", args=["in-time"], deadline=60)
    wait_until(lambda: count(r, "effect:in-time") == 1)
    assert app.stalwart.dlq.stats()["total"] == 0


# -- arguments that do not bind -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [([], {}), (["a", 1, 2, 3], {}), (["a"], {"colour": "red"})],
    ids=["missing", "too-many", "unknown-kwarg"],
)
def test_bad_arguments_are_dead_lettered(
    app: Stalwart, worker: WorkerProcess, r: redis.Redis, args: list[object], kwargs: dict[str, object]
) -> None:
    result = app.send_task(JOBS + "record", args=args, kwargs=kwargs)
    entry = dead_letter(app, result.id)
    assert entry.reason == "bad_arguments"
    assert entry.exc_type == "TypeError"
    assert (entry.args, entry.kwargs) == (args, kwargs)
    assert r.keys("effect:*") == []
    assert_serving(app, worker, r)


# -- countdown ----------------------------------------------------------------------------------


def test_countdown_job_waits_in_the_delayed_set_not_in_a_worker(
    app: Stalwart, worker: WorkerProcess, r: redis.Redis
) -> None:
    delayed = app.stalwart.keys.delayed("celery")
    app.send_task(MORE + "stamp", args=["later"], countdown=2)
    [(_, due)] = r.zrange(delayed, 0, -1, withscores=True)
    assert r.hlen("unacked") == 0
    assert r.llen("celery") == 0
    wait_until(lambda: stamps(r, "later"), message="countdown job never ran")
    assert stamps(r, "later")[0] >= due
    assert r.zcard(delayed) == 0
    wait_until(lambda: r.hlen("unacked") == 0, message="job still unacked after running")


# -- a job running longer than its state's TTL (issue 10.2) -------------------------------------


def test_a_job_running_longer_than_its_state_ttl_keeps_its_claim_and_commits_once(
    app: Stalwart, r: redis.Redis, make_worker: Callable[..., WorkerProcess]
) -> None:
    """The job hash lives 2 s (STALWART_DONE_TTL) and the body runs 5 s: lease renewals keep the
    hash alive, so the commit lands (it used to find the hash gone, and the job was acknowledged
    without its effect)."""
    make_worker(env={"STALWART_TASK_MODULES": LONG_MODULES, "STALWART_DONE_TTL": "2",
                     "STALWART_LEASE_SECONDS": "1"})
    result = app.send_task(LONG + "long_commit", args=["outlives", 5.0])
    job = app.stalwart.keys.job(f"t:{result.id}")

    def settled() -> bool:
        return (r.get("starts:outlives") == b"1" and r.llen("celery") == 0 and r.hlen("unacked") == 0
                and r.zcard(app.stalwart.keys.delayed("celery")) == 0)

    wait_until(settled, 40, 0.2, message="the long job never settled")
    assert count(r, "effect:outlives") == 1
    assert count(r, "starts:outlives") == 1
    assert r.hget(job, "state") == b"done"


# -- Celery's retry() API and custom headers (issue 10.6) ---------------------------------------


@pytest.fixture
def long_worker(make_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    return make_worker(env={"STALWART_TASK_MODULES": LONG_MODULES})


def test_retry_runs_with_its_new_arguments_and_limit_and_keeps_custom_headers(
    app: Stalwart, r: redis.Redis, long_worker: WorkerProcess
) -> None:
    """retry(args=, kwargs=, max_retries=10) on a task with max_retries=5: 11 runs, each with the
    arguments the previous one asked for, each seeing the tenant header set at enqueue."""
    app.send_task(LONG + "retry_with", args=["r1"], headers={"tenant": "acme"})
    wait_until(lambda: r.llen("runs:r1") >= 11, 60, message="retried fewer than 11 times")
    runs = [v.decode() for v in r.lrange("runs:r1", 0, -1)]
    assert runs == [f"{n}:{n}:acme" for n in range(11)]
    assert app.stalwart.dlq.stats()["total"] == 0


def test_retry_past_max_retries_raises_its_exc_and_dead_letters_as_exhausted(
    app: Stalwart, r: redis.Redis, long_worker: WorkerProcess
) -> None:
    result = app.send_task(LONG + "retry_past_limit", args=["p1"])
    entry = dead_letter(app, result.id)
    assert (entry.reason, entry.exc_type) == ("exhausted", "KeyError")
    assert count(r, "attempts:p1") == 2  # max_retries=1: the first run and one retry


def test_retry_without_throw_lets_the_body_go_on_and_the_retry_still_runs(
    app: Stalwart, r: redis.Redis, long_worker: WorkerProcess
) -> None:
    result = app.send_task(LONG + "retry_no_throw", args=["n1"])
    wait_until(lambda: count(r, "runs:n1") == 2, 30, message="the retry never ran")
    wait_until(lambda: r.hget(app.stalwart.keys.job(f"t:{result.id}"), "state") == b"done", 30)
    assert count(r, "runs:n1") == 2
    assert count(r, "went_on:n1") == 1  # the first run went on past retry(throw=False)
