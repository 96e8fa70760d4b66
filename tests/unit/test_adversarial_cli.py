"""Adversarial regressions for the architecture change (issue 8), from a red-team pass.

Red team, claim 1 seen from the CLI: Redis trouble is one line on stderr naming the Redis that
failed, exit status 2; never a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from stalwart.dev.embedded import RedisServer, free_port
from stalwart.dlq.entry import DeadLetter
from stalwart.runtime import Runtime
from stalwart.settings import Settings


def cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env}
    return subprocess.run([sys.executable, "-m", "stalwart.cli.main", *argv], capture_output=True, text=True,
                          env=full, timeout=120, check=False)


def one_line(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr, done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.fixture
def stopped_broker() -> Iterator[RedisServer]:
    """A broker Redis that accepts connections but never answers (SIGSTOP: a hung host)."""
    server = RedisServer().start()
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    yield server
    os.kill(server.process.pid, signal.SIGCONT)
    server.cleanup()


def test_status_with_a_hung_broker_is_one_line(redis_url: str, stopped_broker: RedisServer) -> None:
    """status reads queue lengths and the unacked count through store.broker's unguarded
    functions on the broker's client; the raw redis.TimeoutError is not in main()'s except
    (it catches StoreUnavailable and redis.ConnectionError only): a 76-line traceback."""
    done = cli({"STALWART_REDIS_URL": redis_url, "CELERY_BROKER_URL": stopped_broker.url,
                "STALWART_REDIS_TIMEOUT": "0.3"}, "status")
    one_line(done)


def test_an_unreachable_broker_is_named_not_the_state_store(redis_url: str) -> None:
    """With the broker down, main() prints `cannot reach Redis at <STALWART_REDIS_URL>`: the
    state store, which is up; the operator is sent to the wrong server."""
    broker = f"redis://127.0.0.1:{free_port()}/0"
    done = cli({"STALWART_REDIS_URL": redis_url, "CELERY_BROKER_URL": broker}, "status")
    assert f"broker {broker}" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_dlq_replay_with_the_broker_down_is_one_line(redis_url: str) -> None:
    """Replay publishes with send_task; kombu raises kombu.exceptions.OperationalError, which is
    neither a StalwartError nor a redis.ConnectionError: a 132-line traceback, exit status 1."""
    rt = Runtime(Settings.from_env({"STALWART_REDIS_URL": redis_url}))
    entry = DeadLetter(reason="exhausted", task="tests.rt", task_id="rt-1", queue="celery", args=[1], options={},
                       source="rt-src")
    rt.dlq.add(entry)
    done = cli({"STALWART_REDIS_URL": redis_url, "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"},
               "dlq", "replay", entry.id)
    one_line(done)


def test_an_unreachable_cluster_state_store_is_one_line(redis_url: str) -> None:
    """redis+cluster:// URLs: RedisCluster connects in its constructor (Runtime.redis, outside
    every @guarded method) and raises RedisClusterException, which main() does not catch."""
    done = cli({"STALWART_REDIS_URL": f"redis+cluster://127.0.0.1:{free_port()}",
                "CELERY_BROKER_URL": redis_url, "STALWART_REDIS_TIMEOUT": "0.3"}, "dlq", "ls")
    one_line(done)
