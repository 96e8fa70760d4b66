"""Fixtures that own real servers and processes and always clean them up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisServer
from stalwart.settings import Settings
from stalwart.testing import WorkerProcess

TEST_TASKS = "tests.integration.jobs"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One throwaway redis-server on a free port for the session."""
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server, emptied before the test."""
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def worker_env(redis_url: str) -> dict[str, str]:
    """Environment of worker processes: the test Redis and the test task catalogue."""
    return {
        "STALWART_REDIS_URL": redis_url,
        "STALWART_TASK_MODULES": TEST_TASKS,
        "STALWART_RECOVERY_SECONDS": "6",
        "STALWART_LEASE_SECONDS": "3",
        "STALWART_MOVER_INTERVAL": "0.05",
    }


@pytest.fixture
def app(worker_env: dict[str, str]) -> Stalwart:
    """An app in the test process (the enqueuing side), configured like the workers."""
    application = Stalwart("tests", settings=Settings.from_env(worker_env), include=[TEST_TASKS])
    application.loader.import_default_modules()
    return application


@pytest.fixture
def make_worker(worker_env: dict[str, str], tmp_path: Any) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real ``celery worker`` processes; all are stopped (then killed) at teardown."""
    started: list[WorkerProcess] = []

    def factory(env: dict[str, str] | None = None, start: bool = True, **kwargs: Any) -> WorkerProcess:
        worker = WorkerProcess({**worker_env, **(env or {})}, log_dir=str(tmp_path), **kwargs)
        started.append(worker)
        return worker.start() if start else worker

    yield factory
    for worker in started:
        worker.stop(timeout=10)
