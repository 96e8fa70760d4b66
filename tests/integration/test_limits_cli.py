"""``stalwart breaker`` and ``stalwart limits`` against a real redis-server."""

from __future__ import annotations

import json

import pytest
import redis

from stalwart.cli.main import main
from stalwart.job.context import Outcome
from stalwart.policies.breakers import Breaker
from stalwart.policies.limits import Concurrency, RateLimit, store
from stalwart.runtime import Runtime
from stalwart.settings import Settings


@pytest.fixture
def runtime(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv("STALWART_REDIS_URL", redis_url)
    monkeypatch.delenv("STALWART_PREFIX", raising=False)
    return Runtime(Settings.from_env())


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_breaker_ls_show_open_close_reset(runtime: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    br = Breaker("stripe", min_calls=2)
    for _ in range(2):
        decision = br.acquire(runtime, None)
        br.release(runtime, None, decision, Outcome("retried", 0.01, ConnectionError("down")))
    rows = run_json(capsys, "breaker", "ls")
    assert len(rows) == 1  # type: ignore[arg-type]
    assert rows[0]["name"] == "stripe"  # type: ignore[index]
    assert rows[0]["state"] == "open"  # type: ignore[index]
    shown = run_json(capsys, "breaker", "show", "stripe")
    assert shown["config"]["min_calls"] == "2"  # type: ignore[index]
    assert run_json(capsys, "breaker", "close", "stripe") == {"name": "stripe", "state": "closed"}
    assert br.acquire(runtime, None).granted
    assert main(["breaker", "open", "stripe"]) == 0
    assert "forced_open" in capsys.readouterr().out
    assert not br.acquire(runtime, None).granted
    assert run_json(capsys, "breaker", "reset", "stripe") == {"name": "stripe", "state": "closed"}
    assert main(["breaker", "show", "stripe"]) == 0
    assert "state: closed" in capsys.readouterr().out
    assert main(["breaker", "show", "nope"]) == 1


def test_limits_ls_and_show(runtime: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    RateLimit("api", "5/s", burst=2).acquire(runtime, None)
    db_permit = Concurrency("db", 3).acquire(runtime, None)
    rows = run_json(capsys, "limits", "ls")
    assert [r["name"] for r in rows] == ["api", "db"]  # type: ignore[attr-defined]
    api = run_json(capsys, "limits", "show", "api")
    assert api["type"] == "rate"  # type: ignore[index]
    assert api["granted"] == 1  # type: ignore[index]
    db = run_json(capsys, "limits", "show", "db")
    assert db["holders"] == 1  # type: ignore[index]
    assert main(["limits", "ls"]) == 0
    out = capsys.readouterr().out
    assert "5/s burst 2" in out
    assert "1 holding" in out
    assert main(["limits", "show", "missing"]) == 1
    Concurrency("db", 3).release(runtime, None, db_permit, Outcome("succeeded", 0.01))


def test_permit_store_is_short_timeout(runtime: Runtime) -> None:
    client = store(runtime)
    assert isinstance(client, redis.Redis)
    assert client.connection_pool.connection_kwargs["socket_timeout"] <= 0.5
