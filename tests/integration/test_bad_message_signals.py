"""Dead-lettered bad messages still reach Celery's own listeners: signals, events, Flower."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import redis

from stalwart.app import Stalwart
from stalwart.testing import WorkerProcess, wait_until
from tests.integration.jobs_signals import SIGNALS_KEY
from tests.integration.test_bad_messages import envelope, json_body
from tests.integration.test_flower import Flower, flower, states

pytestmark = pytest.mark.integration
__all__ = ["flower"]  # the fixture, imported for this module's tests


def test_bad_messages_fire_celery_signals_and_events_and_flower_lists_them(
    flower: Flower, make_worker: Callable[..., WorkerProcess], app: Stalwart, r: redis.Redis
) -> None:
    make_worker(env={"STALWART_TASK_MODULES": "tests.integration.jobs,tests.integration.jobs_signals"})
    unregistered = envelope(json_body("a"), "application/json", task="billing.nowhere")
    pickled = envelope(pickle.dumps((("x",), {}, {})), "application/x-python-serialize", encoding="binary")
    undecodable = envelope(b"{[not json", "application/json")
    for message in (unregistered, pickled, undecodable):
        r.lpush("celery", json.dumps(message))
    r.lpush("celery", b"\x00 not even an envelope")
    ids = {name: m["headers"]["id"] for name, m in
           (("unregistered", unregistered), ("refused", pickled), ("malformed", undecodable))}

    def recorded() -> list[list[Any]] | None:
        found = [json.loads(x) for x in r.lrange(SIGNALS_KEY, 0, -1)]
        return found if len(found) >= 4 else None

    found = wait_until(recorded, 60, 0.2, "the worker did not fire a signal for every bad message")
    assert ["task_unknown", ids["unregistered"], "billing.nowhere"] in found
    rejected = {tuple(x[:2]) for x in found if x[0] == "task_rejected"}
    assert ("task_rejected", ids["refused"]) in rejected
    assert ("task_rejected", ids["malformed"]) in rejected
    assert ("task_rejected", None) in rejected  # the non-envelope has no task id
    assert app.stalwart.dlq.stats()["total"] == 4

    def failed_in_flower() -> dict[str, Any] | None:
        seen = states(flower)
        return seen if all(seen.get(i, {}).get("state") == "FAILURE" for i in ids.values()) else None

    seen = wait_until(failed_in_flower, 60, 0.3, "flower did not list every bad message as failed")
    assert seen[ids["unregistered"]]["name"] == "billing.nowhere"
    assert "dead-letter entry" in seen[ids["malformed"]]["exception"]
