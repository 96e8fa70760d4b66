"""A plain ``celery.Celery`` producer on the same broker gets Stalwart's semantics (issue 9, point 3).

countdown/eta wait in the delayed set (never in a worker's memory), ``expires`` is the job's
deadline (past on arrival: DLQ ``expired``), ``max_age`` counts from the first fetch across
redeliveries, and a job an operator revokes is not run, logged and counted. Throughout, the
``unacked`` hash holds only running jobs and each body runs at most once.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator

import pytest
import redis
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from stalwart.app import Stalwart
from stalwart.dev.embedded import free_port
from stalwart.settings import Settings
from stalwart.testing import WorkerProcess, wait_until
from tests.integration.test_ops import get

pytestmark = pytest.mark.integration
MODULES = "tests.integration.jobs,tests.integration.jobs_plain"
RECORD = "tests.integration.jobs.record"


@pytest.fixture
def plain(redis_url: str) -> Iterator[Celery]:
    """Another service's producer: stock Celery and kombu, no Stalwart."""
    producer = Celery("plain-producer", broker=redis_url)
    yield producer
    producer.close()


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def dead(app: Stalwart, task_id: str) -> str | None:
    found = [e.reason for e in app.stalwart.dlq.iter() if e.task_id == task_id]
    return found[0] if found else None


def delayed(app: Stalwart, r: redis.Redis) -> dict[str, float]:
    """task id -> due (epoch ms) of every job in the celery queue's delayed set."""
    pairs = r.zrange(app.stalwart.keys.delayed("celery"), 0, -1, withscores=True)
    return {json.loads(payload)["headers"]["id"]: due for payload, due in pairs}


def skipped(port: int, task: str) -> float:
    for family in text_string_to_metric_families(get(port, "/metrics")[1]):
        for s in family.samples:
            if s.name == "stalwart_jobs_total" and s.labels == {"task": task, "outcome": "skipped"}:
                return s.value
    return 0.0


def test_countdown_eta_and_expires_from_a_plain_producer(
    plain: Celery, app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    make_worker(env={"STALWART_TASK_MODULES": MODULES})
    later = plain.send_task(RECORD, args=["countdown"], countdown=3600)
    plain.send_task(RECORD, args=["eta"], eta=now() + dt.timedelta(seconds=3))
    gone = plain.send_task(RECORD, args=["expired"], expires=now() - dt.timedelta(seconds=10))
    plain.send_task("tests.integration.jobs.fail_times", args=["retried", 2],
                    expires=now() + dt.timedelta(seconds=60))
    too_late = plain.send_task("tests.integration.jobs.retry_after", args=["too-late", 5.0],
                               expires=now() + dt.timedelta(seconds=2))

    wait_until(lambda: later.id in delayed(app, r), 15, message="countdown=3600 did not go to the delayed set")
    waiting = delayed(app, r)
    seconds, micros = r.time()
    assert 3590_000 < waiting[later.id] - (seconds * 1000 + micros // 1000) <= 3600_000
    assert wait_until(lambda: dead(app, gone.id), 15) == "expired"  # not silently revoked
    wait_until(lambda: r.get("effect:eta") == b"1", 20, message="the eta job never ran")
    wait_until(lambda: r.get("effect:retried") == b"1", 20, message="the retrying job never succeeded")
    assert r.get("attempts:retried") == b"3"  # two retries inside the deadline, then done
    assert wait_until(lambda: dead(app, too_late.id), 20) == "expired"  # a retry past the deadline
    assert r.get("first:too-late") is not None
    assert r.get("second:too-late") is None
    wait_until(lambda: r.hlen("unacked") == 0, 10, message="unacked holds jobs nobody runs")
    assert r.get("effect:countdown") is None
    assert r.get("effect:expired") is None
    assert r.get("effect:eta") == b"1"
    assert set(delayed(app, r)) == {later.id}


def test_max_age_counts_from_the_first_fetch_across_redeliveries(
    plain: Celery, app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    make_worker(env={"STALWART_TASK_MODULES": MODULES})
    job = plain.send_task("tests.integration.jobs_plain.old_crash", args=["aged"])
    # The first delivery kills its child after 2.5 s; the redelivery is past max_age=2.
    assert wait_until(lambda: dead(app, job.id), 30) == "expired"
    assert r.get("attempts:aged") == b"1"
    assert r.get("effect:aged") is None


def test_a_job_an_operator_revokes_is_not_run_and_is_logged_and_counted(
    plain: Celery, app: Stalwart, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    port = free_port()
    worker = make_worker(env={"STALWART_TASK_MODULES": MODULES, "STALWART_OPS_PORT": str(port)})
    job = plain.send_task(RECORD, args=["revoked"], countdown=3)
    wait_until(lambda: job.id in delayed(app, r), 15)
    plain.control.revoke(job.id)
    wait_until(lambda: "was revoked by an operator" in worker.log(), 30, message="the revoke was not logged")
    assert wait_until(lambda: skipped(port, RECORD), 10) == 1.0
    assert r.get("effect:revoked") is None
    assert dead(app, job.id) is None
    assert r.hlen("unacked") == 0


def test_global_keyprefix_is_honoured_by_fetch_delay_restore_and_keeper(
    redis_url: str, worker_env: dict[str, str], make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    """kombu's ``global_keyprefix`` (STALWART_BROKER_KEYPREFIX): a plain producer and a Stalwart one
    with the same prefix, a worker that consumes, delays, restores a killed worker's job and keeps a
    live one's visible, all under the prefixed names."""
    env = {"STALWART_TASK_MODULES": MODULES, "STALWART_BROKER_KEYPREFIX": "gp:"}
    producer = Celery("plain-producer", broker=redis_url)
    producer.conf.broker_transport_options = {"global_keyprefix": "gp:"}
    app = Stalwart("tests", settings=Settings.from_env({**worker_env, **env}))
    first = make_worker(env=env)
    producer.send_task(RECORD, args=["gp-plain"])
    producer.send_task(RECORD, args=["gp-plain-later"], countdown=1)
    app.send_task(RECORD, args=["gp-stalwart"], countdown=1)
    app.send_task(RECORD, args=["gp-slow", 8.0])  # longer than the 5 s visibility timeout
    wait_until(lambda: r.get("effect:gp-plain") == b"1", 20)
    wait_until(lambda: r.hlen("gp:unacked") == 1, 20, message="the slow job is not in the prefixed unacked hash")
    first.kill()  # its job comes back on another worker, from the prefixed index
    make_worker(env=env)
    for key in ("gp-plain-later", "gp-stalwart", "gp-slow"):
        wait_until(lambda k=key: r.get(f"effect:{k}") == b"1", 40, message=f"{key} never ran")
    assert r.exists("celery", "unacked", "unacked_index") == 0  # nothing under the unprefixed names
    # delayed under the prefixed list only (the name leaves the registry once its set is empty)
    assert r.smembers(app.stalwart.keys.registry("delayed")) <= {b"gp:celery"}
    assert r.exists(app.stalwart.keys.delayed("celery")) == 0
    wait_until(lambda: r.hlen("gp:unacked") == 0, 10)
    assert r.get("effect:gp-slow") == b"1"  # re-stamped while it ran: not restored under its live worker
    producer.close()
