"""The state store on a real 3-node Redis Cluster, the broker on a single Redis (DESIGN §4).

Every Stalwart script keeps its keys in one hash slot, so job claims, results, the DLQ, the
idempotency records and the switches all work through a cluster client; kombu has no cluster
transport, so the broker stays a single Redis and saying otherwise is a clear error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisCluster
from stalwart.errors import ConfigurationError
from stalwart.settings import Settings
from stalwart.testing import WorkerProcess, wait_until

TASKS = "tests.integration.jobs_cluster"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster() as c:
        yield c


@pytest.fixture
def cluster_env(cluster: RedisCluster, redis_url: str) -> dict[str, str]:
    cluster.client().flushall()
    return {
        "STALWART_REDIS_URL": f"redis+cluster://127.0.0.1:{cluster.servers[0].port}",
        "CELERY_BROKER_URL": redis_url,
        "STALWART_TASK_MODULES": TASKS,
        "STALWART_MOVER_INTERVAL": "0.05",
    }


def test_a_cluster_cannot_be_the_broker() -> None:
    with pytest.raises(ConfigurationError, match="CELERY_BROKER_URL"):
        Settings.from_env({"STALWART_REDIS_URL": "redis+cluster://127.0.0.1:7000"})
    with pytest.raises(ConfigurationError, match="kombu has no cluster transport"):
        Settings.from_env({"STALWART_REDIS_URL": "redis://a", "CELERY_BROKER_URL": "redis+cluster://b"})


def test_jobs_retries_dlq_and_idempotency_on_a_cluster_state_store(
    cluster: RedisCluster, cluster_env: dict[str, str], make_worker: Callable[..., WorkerProcess],
    r: redis.Redis,
) -> None:
    app = Stalwart("cluster", settings=Settings.from_env(cluster_env), include=[TASKS])
    assert isinstance(app.stalwart.redis, redis.RedisCluster)
    make_worker(env=cluster_env)

    first = app.send_task(f"{TASKS}.flaky_on_cluster", args=["a", 2], idempotency_key="cluster-a")
    again = app.send_task(f"{TASKS}.flaky_on_cluster", args=["a", 2], idempotency_key="cluster-a")
    assert again.id == first.id  # the enqueue record lives in the cluster
    app.send_task(f"{TASKS}.doomed_on_cluster", args=["b"])

    wait_until(lambda: r.get("effect:a") == b"1", 30, message="the retried job did not finish")
    wait_until(lambda: app.stalwart.dlq.stats()["total"] == 1, 30, message="nothing dead-lettered")
    [entry] = app.stalwart.dlq.list()
    assert (entry.reason, len(entry.attempts)) == ("exhausted", 2)
    # Explicit keys are scoped by task name (a key of one task never blocks another's).
    assert app.stalwart.jobs.read(f"k:{TASKS}.flaky_on_cluster:cluster-a").state == "done"
    assert not r.keys("stalwart:{dlq}*")  # the state lives in the cluster, not on the broker
    assert not r.keys("stalwart:{job:*")

    cli = subprocess.run(
        [sys.executable, "-m", "stalwart.cli.main", "dlq", "stats", "--json"],
        env={**os.environ, **cluster_env}, capture_output=True, text=True, timeout=60, check=True,
    )
    assert json.loads(cli.stdout)["by_reason"] == {"exhausted": 1}
