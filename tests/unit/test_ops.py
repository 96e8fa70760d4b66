"""Ops config, the health/readiness rules over a fake clock, and the HTTP handlers."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from stalwart.errors import ConfigurationError
from stalwart.ops.server import OpsConfig, OpsServer, OpsState
from stalwart.settings import Settings
from stalwart.testing import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def failing() -> None:
    raise ConnectionError("Connection refused")


def test_config_is_off_unless_a_port_is_given() -> None:
    assert OpsConfig.from_settings(Settings.from_env({})) is None
    assert OpsConfig.from_settings(Settings.from_env({"STALWART_OPS_PORT": ""})) is None
    config = OpsConfig.from_settings(Settings.from_env({"STALWART_OPS_PORT": "0", "STALWART_OPS_STALE_SECONDS": "5"}))
    assert config == OpsConfig(port=0, host="0.0.0.0", stale_seconds=5.0)


@pytest.mark.parametrize(
    "env",
    [{"STALWART_OPS_PORT": "http"}, {"STALWART_OPS_PORT": "70000"},
     {"STALWART_OPS_PORT": "1", "STALWART_OPS_STALE_SECONDS": "0"}],
)
def test_config_refuses_bad_values(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        Settings.from_env(env)


def test_health_fails_only_when_the_consumer_loop_stalls() -> None:
    clock = Clock()
    state = OpsState(stale_seconds=10, clock=clock)
    assert state.health()[0] == 200  # starting: not consuming yet
    state.consuming = True
    state.beat()
    clock.now += 9
    assert state.health() == (200, {"status": "ok", "consumer": "consuming", "loop_age_seconds": 9.0})
    clock.now += 2
    code, body = state.health()
    assert code == 503
    assert body["reasons"] == ["consumer loop stalled for 11.0s"]
    state.draining = True  # draining: the loop is closed on purpose
    assert state.health()[0] == 200


def test_ready_needs_consuming_a_live_loop_reachable_redis_and_no_drain() -> None:
    clock = Clock()
    checks: dict[str, Any] = {"broker": lambda: None, "state_store": lambda: None}
    state = OpsState(stale_seconds=10, clock=clock, checks=checks)
    assert state.readiness() == (503, {"status": "fail", "reasons": ["not consuming"],
                                       "checks": {"broker": "ok", "state_store": "ok"}})
    state.consuming = True
    state.beat()
    assert state.readiness()[0] == 200
    checks["state_store"] = failing
    code, body = state.readiness()
    assert code == 503
    assert body["reasons"] == ["state_store: ConnectionError: Connection refused"]
    assert body["checks"]["broker"] == "ok"
    checks["state_store"] = lambda: None
    state.draining = True
    assert state.readiness()[1]["reasons"] == ["draining: the worker is shutting down"]
    state.draining = False
    clock.now += 11
    assert state.readiness()[1]["reasons"] == ["consumer loop stalled"]


@pytest.fixture
def server() -> Iterator[OpsServer]:
    state = OpsState(consuming=True, checks={"broker": lambda: None})
    state.beat()
    srv = OpsServer(OpsConfig(port=0, host="127.0.0.1"), state, lambda: b"stalwart_up 1\n").start()
    yield srv
    srv.stop()


def get(server: OpsServer, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_endpoints_answer_json_and_prometheus_text(server: OpsServer) -> None:
    code, ctype, body = get(server, "/healthz")
    assert (code, ctype, json.loads(body)["status"]) == (200, "application/json", "ok")
    code, _, body = get(server, "/readyz")
    assert (code, json.loads(body)["checks"]) == (200, {"broker": "ok"})
    code, ctype, body = get(server, "/metrics")
    assert (code, body) == (200, "stalwart_up 1\n")
    assert ctype.startswith("text/plain")
    server.state.draining = True
    code, _, body = get(server, "/readyz")
    assert code == 503
    assert json.loads(body)["reasons"] == ["draining: the worker is shutting down"]
    assert get(server, "/nope")[0] == 404


def test_health_fails_when_work_waits_free_slots_exist_and_nothing_was_taken() -> None:
    clock = Clock()
    waiting = {"celery": 5}
    state = OpsState(stale_seconds=10, clock=clock, ready=lambda lists: sum(waiting.get(n, 0) for n in lists))
    state.consuming = True
    state.beat()
    state.took(clock.now, ("celery",), free_slots=True)
    clock.now += 11
    state.beat()  # the loop turns: only the not-taking rule can fail it
    code, body = state.health()
    assert code == 503
    assert body["reasons"] == ["consumer took nothing for 11.0s while 5 messages wait and it has a free slot"]
    state.took(None, ("celery",), free_slots=False)  # every slot busy: waiting is expected
    assert state.health()[0] == 200
    state.took(None, ("celery",), free_slots=True)
    waiting["celery"] = 0  # nothing to take
    assert state.health()[0] == 200
    waiting["celery"] = 5
    state.took(clock.now - 1, ("celery",), free_slots=True)  # it took one a second ago
    assert state.health()[0] == 200
    clock.now += 20
    state.draining = True
    assert state.health()[0] == 200


def test_an_unreachable_broker_does_not_fail_health() -> None:
    clock = Clock()

    def unreachable(lists: tuple[str, ...]) -> int:
        raise ConnectionError("refused")

    state = OpsState(stale_seconds=1, clock=clock, ready=unreachable, consuming=True)
    state.beat()
    state.took(clock.now, ("celery",), free_slots=True)
    clock.now += 5
    state.beat()
    assert state.health()[0] == 200  # /readyz reports the broker; liveness does not restart for it


def test_the_server_serves_a_bounded_number_of_connections_at_once() -> None:
    state = OpsState(consuming=True)
    state.beat()
    srv = OpsServer(OpsConfig(port=0, host="127.0.0.1"), state, lambda: b"", max_connections=2).start()
    idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(2)]
    try:
        extra = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        assert extra.recv(1) == b""  # accepted in order after the two idle ones, and closed: no third thread
        extra.close()
        assert srv.refused >= 1
    finally:
        for conn in idle:
            conn.close()
    wait_until(lambda: answers(srv), 10)  # the slots came back
    srv.stop()


def answers(server: OpsServer) -> bool:
    """Whether /healthz answers 200 (a refused connection is a no, not an error)."""
    try:
        return get(server, "/healthz")[0] == 200
    except (ConnectionError, OSError):
        return False
