"""Acceptance: dead jobs land in the DLQ with their history; `stalwart dlq` replays them for real."""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from celery import chain

from stalwart.app import Stalwart
from stalwart.dlq.entry import DeadLetter, Filter
from stalwart.store.keys import Keys
from stalwart.testing import REPO_ROOT, WorkerProcess, wait_until

pytestmark = pytest.mark.integration

ALWAYS_FAIL = "tests.integration.jobs.always_fail"
PERMANENT = "tests.integration.jobs.permanent"
BROKEN = "tests.integration.jobs_dlq.broken_until_fixed"
CHARGE = "tests.integration.jobs_dlq.charge_when_fixed"
WITH_DLQ_JOBS = {"STALWART_TASK_MODULES": "tests.integration.jobs,tests.integration.jobs_dlq"}


def cli(redis_url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m stalwart.cli.main ARGS`` as an operator would, against the test Redis."""
    env = {**os.environ, "STALWART_REDIS_URL": redis_url}
    env.pop("CELERY_BROKER_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "stalwart.cli.main", *argv],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )


def count(r: redis.Redis, key: str) -> int:
    return int(r.get(key) or 0)


def dead(app: Stalwart, task_id: str) -> DeadLetter | None:
    """The DLQ entry of ``task_id``, once there is one."""
    return next((e for e in app.stalwart.dlq.iter() if e.task_id == task_id), None)


def wait_dead(app: Stalwart, task_id: str, *, not_id: str | None = None) -> DeadLetter:
    def found() -> DeadLetter | None:
        entry = dead(app, task_id)
        return entry if entry is not None and entry.id != not_id else None

    entry = wait_until(found, timeout=30, message=f"{task_id} never reached the DLQ")
    assert entry is not None
    return entry


def test_exhausted_job_is_replayed_by_the_cli_and_dies_again(
    app: Stalwart, r: redis.Redis, redis_url: str, make_worker: Callable[..., WorkerProcess]
) -> None:
    make_worker()
    task_id = app.send_task(ALWAYS_FAIL, ["k1"]).id
    first = wait_dead(app, task_id)
    assert first.reason == "exhausted"
    assert first.task == ALWAYS_FAIL
    assert [a["attempt"] for a in first.attempts] == [1, 2, 3]
    assert count(r, "attempts:k1") == 3

    done = cli(redis_url, "dlq", "replay", first.id)
    assert done.returncode == 0, done.stderr
    assert f"replayed 1 entry: {first.id}" in done.stdout

    second = wait_dead(app, task_id, not_id=first.id)
    assert count(r, "attempts:k1") == 6
    assert second.reason == "exhausted"
    assert second.task_id == first.task_id
    assert len(second.attempts) == 6  # the history travels with the replayed job
    assert second.headers["trace"] == first.headers["trace"]
    assert [e.id for e in app.stalwart.dlq.iter()] == [second.id]
    assert app.stalwart.dlq.stats()["replayed"] == 1


def test_fixed_job_replayed_completes_keeps_its_key_and_leaves_the_dlq(
    app: Stalwart, r: redis.Redis, redis_url: str, make_worker: Callable[..., WorkerProcess]
) -> None:
    make_worker(env=WITH_DLQ_JOBS)
    task_id = app.send_task(CHARGE, ["42"], idempotency_key="order-42").id
    entry = wait_dead(app, task_id)
    assert entry.headers["key"] == f"{CHARGE}:order-42"  # an explicit key is scoped by its task
    assert count(r, "attempts:order-42") == 2

    r.set("fixed:order-42", 1)
    done = cli(redis_url, "dlq", "replay", entry.id, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["replayed_ids"] == [entry.id]

    wait_until(lambda: count(r, "effect:order-42") == 1, timeout=30, message="replay never ran")
    job = Keys().job(f"k:{CHARGE}:order-42")
    wait_until(lambda: r.hget(job, "state") == b"done", timeout=10)
    assert app.stalwart.dlq.stats()["total"] == 0

    # Same key, same task id: the replayed job kept its key, so nothing runs twice.
    again = app.send_task(CHARGE, ["42"], idempotency_key="order-42")
    assert again.id == task_id
    again_by_another_id = app.send_task(CHARGE, ["42"], idempotency_key="order-42", task_id="other")
    assert again_by_another_id.id == task_id
    assert count(r, "effect:order-42") == 1


def test_operator_workflow_filters_replay_purge_stats_export(
    app: Stalwart, r: redis.Redis, redis_url: str, make_worker: Callable[..., WorkerProcess]
) -> None:
    make_worker(env=WITH_DLQ_JOBS)
    broken = [app.send_task(BROKEN, [f"b{i}"]).id for i in range(3)]
    perm = app.send_task(PERMANENT, ["p1"]).id
    for task_id in (*broken, perm):
        wait_dead(app, task_id)

    ls = cli(redis_url, "dlq", "ls", "--reason", "permanent", "--json")
    assert ls.returncode == 0, ls.stderr
    assert [e["task_id"] for e in json.loads(ls.stdout)] == [perm]
    table = cli(redis_url, "dlq", "ls", "--task", BROKEN, "--since", "10m").stdout.splitlines()
    assert len(table) == 4
    assert table[0].startswith("ID")

    stats = json.loads(cli(redis_url, "dlq", "stats", "--json").stdout)
    assert stats["total"] == 4
    assert stats["by_reason"] == {"exhausted": 3, "permanent": 1}

    export = cli(redis_url, "dlq", "export", "--task", BROKEN)
    assert sorted(json.loads(line)["task_id"] for line in export.stdout.splitlines()) == sorted(broken)

    refused = cli(redis_url, "dlq", "replay")
    assert refused.returncode == 2
    assert "say which entries" in refused.stderr

    for i in range(3):
        r.set(f"fixed:b{i}", 1)
    replayed = cli(redis_url, "dlq", "replay", "--task", BROKEN)
    assert replayed.returncode == 0
    assert "replayed 3 entries" in replayed.stdout
    wait_until(lambda: all(count(r, f"effect:b{i}") == 1 for i in range(3)), timeout=30)

    purged = cli(redis_url, "dlq", "purge", "--reason", "permanent", "--json")
    assert json.loads(purged.stdout) == {"purged": 1}
    final: dict[str, Any] = json.loads(cli(redis_url, "dlq", "stats", "--json").stdout)
    assert final["total"] == 0
    assert final["by_reason"] == {}
    assert final["replayed"] == 3
    assert final["purged"] == 1
    assert list(app.stalwart.dlq.iter(Filter())) == []


WITH_CONSOLE_JOBS = {"STALWART_TASK_MODULES": "tests.integration.jobs,tests.integration.jobs_console"}
TENANT = "tests.integration.jobs_console.fixable_tenant"
THEN_RECORD = "tests.integration.jobs_console.then_record"


def test_replay_resends_the_chain_and_custom_headers_as_they_were(
    app: Stalwart, r: redis.Redis, redis_url: str, make_worker: Callable[..., WorkerProcess]
) -> None:
    """Issue 10 point 5: the replayed step runs with its header, and the chain's next step runs."""
    make_worker(env=WITH_CONSOLE_JOBS)
    flow = chain(app.signature(TENANT, (301,)), app.signature(THEN_RECORD, ("chain-301",)))
    first = flow.apply_async(headers={"tenant": "acme"})
    entry = wait_dead(app, first.parent.id if first.parent is not None else first.id)
    assert entry.options is not None
    assert entry.options["headers"] == {"tenant": "acme"}
    assert [step["task"] for step in entry.options["chain"]] == [THEN_RECORD]
    assert r.get("chained:chain-301") is None

    r.delete("tenant:301")
    r.set("fixed:301", 1)
    done = cli(redis_url, "dlq", "replay", entry.id)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: r.get("chained:chain-301") == b"paid 301", timeout=30, message="the chain's next step never ran")
    assert r.get("tenant:301") == b"acme"


def test_a_pickled_message_for_an_unregistered_task_is_never_replayed_without_its_arguments(
    app: Stalwart, r: redis.Redis, redis_url: str, make_worker: Callable[..., WorkerProcess]
) -> None:
    """Issue 10 point 5: the body never decoded, so there is nothing faithful to resend."""
    task_id = str(uuid.uuid4())
    body = base64.b64encode(pickle.dumps(((1, 2), {}, {}))).decode()
    r.lpush("celery", json.dumps({
        "body": body, "content-encoding": "binary", "content-type": "application/x-python-serialize",
        "headers": {"lang": "py", "task": "billing.refund", "id": task_id, "root_id": task_id, "retries": 0,
                    "timelimit": [None, None]},
        "properties": {"correlation_id": task_id, "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
                       "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0},
    }))
    make_worker()
    entry = wait_dead(app, task_id)
    assert (entry.reason, entry.task, entry.args) == ("unregistered", "billing.refund", [])
    assert entry.raw is not None
    refused = cli(redis_url, "dlq", "replay", entry.id)
    assert refused.returncode == 1
    assert "never decoded into arguments" in refused.stdout
    assert r.llen("celery") == 0  # nothing was published
    assert app.stalwart.dlq.get(entry.id).id == entry.id
