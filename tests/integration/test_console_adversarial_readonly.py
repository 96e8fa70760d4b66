"""Red team (issue 11 point 5): read-only logins and read-only mode, against a real
``stalwart flower`` and redis-server (the console harness of tests/integration)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.dev.embedded import RedisServer
from stalwart.dlq.entry import DeadLetter
from stalwart.settings import Settings
from tests.integration.console_harness import CONSOLE_TASKS, VIEWER, Client, Console, console

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(redis_server: RedisServer) -> dict[str, str]:
    redis.Redis.from_url(redis_server.url).flushall()
    return {"STALWART_REDIS_URL": redis_server.url, "STALWART_TASK_MODULES": CONSOLE_TASKS}


@pytest.fixture(scope="module")
def app(env: dict[str, str]) -> Stalwart:
    application = Stalwart("tests", settings=Settings.from_env(env), include=CONSOLE_TASKS.split(","))
    application.loader.import_default_modules()
    return application


@pytest.fixture(scope="module")
def server(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with console(env, tmp_path_factory.mktemp("rt-ro") / "flower.log") as started:
        yield started


def dead(app: Stalwart, n: str) -> DeadLetter:
    entry = DeadLetter(reason="exhausted", task="rt.task", task_id=f"rt-{n}", queue="celery", source=f"rt-{n}",
                       options={}, headers={"msg": f"m-{n}", "gen": 0})
    app.stalwart.dlq.add(entry)
    return entry


def as_viewer(server: Console, authorization: str) -> Client:
    """A client sending the viewer's credential in the given (hand-written) Authorization header."""
    client = server.client(auth=None)
    original = client.request

    def request(method, path, body=None, headers=None, raw=None):  # type: ignore[no-untyped-def]
        return original(method, path, body, {**(headers or {}), "Authorization": authorization}, raw)

    client.request = request  # type: ignore[method-assign]
    return client


CANONICAL = base64.b64encode(VIEWER.encode()).decode()
VARIANTS = {
    # Flower decodes with b64decode(validate=False): characters outside the alphabet are dropped;
    # the console's basic_login uses validate=True, fails, and so does not see a read-only login.
    "junk character": f"Basic {CANONICAL[:4]}*{CANONICAL[4:]}",
    # Flower splits on any whitespace; the console partitions on one space only.
    "tab separator": f"Basic\t{CANONICAL}",
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_read_only_login_is_refused_whatever_its_header_spelling(
    app: Stalwart, server: Console, variant: str
) -> None:
    entry = dead(app, variant.replace(" ", "-"))
    canonical = as_viewer(server, f"Basic {CANONICAL}")
    path = f"/api/stalwart/dead-letters/{entry.id}/purge"
    assert canonical.post(path)[0] == 403  # the premise: the viewer is refused as written
    viewer = as_viewer(server, VARIANTS[variant])
    status, body = viewer.get("/api/stalwart/csrf")
    assert status == 200, body  # Flower accepts the login
    status, body = viewer.post(path)
    assert status == 403, f"the read-only viewer purged an entry: {status} {body}"


def test_flowers_own_actions_refuse_a_read_only_login_with_a_non_canonical_header(server: Console) -> None:
    """The same bypass reaches Flower's own actions (refuse() uses the same basic_login)."""
    viewer = as_viewer(server, VARIANTS["junk character"])
    status, body = viewer.request("POST", "/api/task/revoke/rt-does-not-exist", raw=b"terminate=false",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403, f"Flower's revoke answered {status} {body!r} for the read-only viewer"


def test_read_only_for_everyone_refuses_flowers_own_actions(
    env: dict[str, str], tmp_path: Path
) -> None:
    """STALWART_CONSOLE_READONLY=1: the console refuses its actions, but Flower's revoke (and pool
    resize, shutdown) still run for the operator login; the issue says read-only mode refuses every
    action (README: 'the console read-only for everyone')."""
    with console(env, tmp_path / "flower.log", extra_env={"STALWART_CONSOLE_READONLY": "1"}) as ro:
        ops = ro.client()
        assert ops.post("/api/stalwart/switches", {"pattern": "x.*", "state": "paused"})[0] == 403  # premise
        status, body = ops.request("POST", "/api/task/revoke/rt-does-not-exist", raw=b"terminate=false",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 403, f"Flower's revoke answered {status} {body!r} in read-only mode"
