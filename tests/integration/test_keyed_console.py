"""The console's limits and breakers panels with per-key templates: one row per template, its
busiest keys beside it, actions on one rendered key (never on a template)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import redis

from stalwart.console import panels
from stalwart.errors import ConfigurationError
from stalwart.job.context import Outcome
from stalwart.policies.breakers import Breaker
from stalwart.policies.limits import Concurrency
from stalwart.runtime import Runtime
from stalwart.settings import Settings

pytestmark = pytest.mark.integration


class Audit:
    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []

    def record(self, *args: Any) -> None:
        self.records.append(args)


@pytest.fixture
def console(redis_url: str) -> Any:
    runtime = Runtime(Settings.from_env({"STALWART_REDIS_URL": redis_url}))
    return SimpleNamespace(runtime=runtime, audit=Audit())


def test_limits_panel_lists_a_template_once_with_its_busiest_keys(console: Any, r: redis.Redis) -> None:
    slots = Concurrency("tenant:{tenant_id}", 2)
    held = [slots.for_key(tenant_id=t).acquire(console.runtime, None) for t in ("a", "a", "b")]
    Concurrency("db", 1).acquire(console.runtime, None)
    data = panels.limits(console)
    assert [row["name"] for row in data["limits"]] == ["db", "tenant:{tenant_id}"]
    family = data["limits"][1]
    assert family["template"] is True
    assert family["tracked_keys"] == 2
    assert family["usage"] == 3.0  # holders over its busiest keys
    assert [(k["name"], k["usage"]) for k in data["top_keys"]["tenant:{tenant_id}"]] == [
        ("tenant:a", 2.0), ("tenant:b", 1.0)]
    for decision in held:
        slots.release(console.runtime, None, decision, Outcome("succeeded", 0.01))


def test_breakers_panel_and_actions_on_one_key(console: Any) -> None:
    smtp = Breaker("smtp:{provider}", min_calls=1, open_for=30)
    down = smtp.for_key(provider="down")
    smtp.release(console.runtime, None, down.acquire(console.runtime, None),
                 Outcome("retried", 0.01, ConnectionError("refused")))
    up = smtp.for_key(provider="up")
    smtp.release(console.runtime, None, up.acquire(console.runtime, None), Outcome("succeeded", 0.01))
    rows = panels.breakers(console)
    assert [row["name"] for row in rows] == ["smtp:{provider}"]
    assert {k["name"]: k["state"] for k in rows[0]["keys"]} == {"smtp:down": "open", "smtp:up": "closed"}
    assert rows[0]["open_keys"] == 1
    assert panels.breaker_action(console, "smtp:down", "close", "ops") == "closed"
    assert console.audit.records[-1][:3] == ("ops", "breaker close", "smtp:down")
    with pytest.raises(ConfigurationError, match="per-key template"):
        panels.breaker_action(console, "smtp:{provider}", "open", "ops")
    with pytest.raises(ConfigurationError, match="no breaker named"):
        panels.breaker_action(console, "imap:down", "open", "ops")
