"""Worker presence stays bounded: workers killed without a clean shutdown are forgotten."""

from __future__ import annotations

import pytest
import redis

from stalwart.store import presence
from stalwart.store.keys import Keys
from stalwart.store.presence import PresenceStore

KEYS = Keys("pres")


def test_workers_silent_past_the_retention_are_forgotten(r: redis.Redis) -> None:
    store = PresenceStore(r, KEYS)
    now = store.now_ms()
    r.hset(KEYS.workers(), mapping={"killed@old": now - presence.RETENTION_MS - 1, "quiet@recent": now - 60_000})
    assert store.beat("alive@host") == 2
    seen = store.read()
    assert set(seen) == {"alive@host", "quiet@recent"}
    assert now <= seen["alive@host"] <= store.now_ms()
    assert 0 < r.pttl(KEYS.workers()) <= presence.RETENTION_MS


def test_presence_keeps_at_most_its_cap(r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    store = PresenceStore(r, KEYS)
    now = store.now_ms()
    r.hset(KEYS.workers(), mapping={f"w{i}": now - 1000 + i for i in range(30)})
    monkeypatch.setattr(presence, "CAP", 10)
    assert store.beat("new") == 10
    seen = store.read()
    assert len(seen) == 10
    assert {"new", "w29"} <= set(seen)
    assert "w0" not in seen  # the oldest went first
