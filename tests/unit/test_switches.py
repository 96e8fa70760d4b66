"""Switch resolution and the per-process cached switch board, without workers."""

from __future__ import annotations

import logging

import fakeredis
import pytest
import redis

from stalwart.errors import ConfigurationError
from stalwart.policies import switches
from stalwart.store.keys import Keys

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
