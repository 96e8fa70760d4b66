"""Shared helpers of the rt12b fair-lane red-team tests (real redis-server, real workers)."""

from __future__ import annotations

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.settings import Settings
from stalwart.store.fair import LaneKeys
from tests.integration.jobs_fair import STARTS

MODULES = "tests.integration.jobs,tests.integration.jobs_fair"
ENV = {"STALWART_TASK_MODULES": MODULES}
FAIR = "tests.integration.jobs_fair.fair_job"
PLAIN = "tests.integration.jobs_fair.plain_job"
SLACK = 2  # a c=1 worker may hold two jobs (running + reserved) fetched before the rest arrived


def make_fair_app(worker_env: dict[str, str]) -> Stalwart:
    application = Stalwart("tests", settings=Settings.from_env({**worker_env, **ENV}), include=MODULES.split(","))
    application.loader.import_default_modules()
    return application


def starts(r: redis.Redis, begin: int = 0) -> list[str]:
    return [s.decode() for s in r.lrange(STARTS, begin, -1)]


def runs(r: redis.Redis, names: list[str]) -> list[int]:
    return [int(v or 0) for v in r.mget([f"fair:runs:{n}" for n in names])]


def lane(app: Stalwart) -> LaneKeys:
    return LaneKeys.of(app.stalwart.keys.prefix, app.conf.task_default_queue)


@pytest.fixture
def fair_app(worker_env: dict[str, str]) -> Stalwart:
    return make_fair_app(worker_env)
