"""Switch resolution and the per-process cached switch board, without workers."""

from __future__ import annotations

import json
import logging

import fakeredis
import pytest
import redis

from stalwart.errors import ConfigurationError
from stalwart.policies import switches
from stalwart.store.keys import Keys
from stalwart.store.switches import PARK_HEADER, ParkedStore

KEYS = Keys("t")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_resolve_matches_patterns_and_disabled_wins() -> None:
    rules = {"billing.*": "paused", "billing.refund": "disabled", "mail.send": "paused"}
    assert switches.resolve(rules, "billing.charge") == "paused"
    assert switches.resolve(rules, "billing.refund") == "disabled"
    assert switches.resolve(rules, "mail.send") == "paused"
    assert switches.resolve(rules, "mail.sendall") is None
    assert switches.resolve({}, "anything") is None


def test_set_read_and_clear_round_trip() -> None:
    client = fakeredis.FakeRedis()
    at = switches.set_switch(client, KEYS, "reports.*", "paused")
    assert switches.read(client, KEYS) == {"reports.*": {"state": "paused", "at": at}}
    assert switches.clear(client, KEYS, "reports.*") is True
    assert switches.clear(client, KEYS, "reports.*") is False
    assert switches.read(client, KEYS) == {}


@pytest.mark.parametrize(("pattern", "state"), [("x", "stopped"), ("", "paused"), (" x", "paused")])
def test_bad_switches_are_refused(pattern: str, state: str) -> None:
    with pytest.raises(ConfigurationError):
        switches.set_switch(fakeredis.FakeRedis(), KEYS, pattern, state)


def test_the_board_rereads_redis_only_after_its_ttl() -> None:
    client, clock = fakeredis.FakeRedis(), Clock()
    board = switches.SwitchBoard(lambda: client, KEYS, ttl=0.25, clock=clock)
    assert board.state("a.task") is None
    switches.set_switch(client, KEYS, "a.*", "paused")
    clock.now += 0.2
    assert board.state("a.task") is None  # still cached
    clock.now += 0.06
    assert board.state("a.task") == "paused"


class Down:
    def hgetall(self, key: str) -> dict[bytes, bytes]:
        raise redis.ConnectionError("down")


def test_the_board_fails_open_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    board = switches.SwitchBoard(Down, KEYS, ttl=0.25, clock=clock)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, "stalwart.policies.switches"):
        for _ in range(3):
            assert board.state("a.task") is None
            clock.now += 1
    assert len(caplog.records) == 1


# -- parked jobs (issue 10.7), on a real redis-server --------------------------------------------


def message(task: str, n: int) -> dict[str, object]:
    return {"body": f"b{n}", "headers": {"task": task, PARK_HEADER: task}, "properties": {"delivery_tag": f"t{n}"}}


def test_resume_releases_parked_jobs_to_their_queue_oldest_first(r: redis.Redis) -> None:
    parked = ParkedStore(r, KEYS)
    switches.set_switch(r, KEYS, "billing.*", "paused")
    for n in range(3):
        parked.park("celery", message("billing.charge", n))
    parked.park("mail", message("mail.send", 9))
    assert switches.parked_counts(r, KEYS) == {"billing.charge": 3, "mail.send": 1}
    assert r.llen("celery") == 0
    assert switches.release_unpaused(r, r, KEYS) == 1  # mail.send is not paused: a racing park
    assert switches.clear(r, KEYS, "billing.*")
    assert switches.parked_counts(r, KEYS) == {}
    bodies = [json.loads(r.rpop("celery"))["body"] for _ in range(3)]  # type: ignore[arg-type]
    assert bodies == ["b0", "b1", "b2"]  # consumed oldest first
    assert PARK_HEADER not in json.loads(r.rpop("mail"))["headers"]  # type: ignore[arg-type]
    assert r.keys(f"{KEYS.prefix}:{{parked}}:*") == []


def test_a_task_still_paused_by_another_pattern_stays_parked(r: redis.Redis) -> None:
    parked = ParkedStore(r, KEYS)
    switches.set_switch(r, KEYS, "billing.*", "paused")
    switches.set_switch(r, KEYS, "billing.charge", "paused")
    parked.park("celery", message("billing.charge", 1))
    switches.clear(r, KEYS, "billing.*")
    assert switches.parked_counts(r, KEYS) == {"billing.charge": 1}
    switches.set_switch(r, KEYS, "billing.charge", "disabled")  # disabling releases (to be dead-lettered)
    assert switches.parked_counts(r, KEYS) == {}
    assert r.llen("celery") == 1
