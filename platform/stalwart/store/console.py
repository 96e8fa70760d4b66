"""Read-only looks for the operator console at structures other modules own and write: the
oldest ready message of a broker queue list (kombu's), the closed-state calls in flight of a
breaker (``stalwart.store.breakers``' ``inflight`` zset), and the broker Redis clock. Nothing here
writes, so nothing here needs a TTL or a cap."""

from __future__ import annotations

from typing import Any

from stalwart.store.keys import Keys
from stalwart.store.scripts import guarded


@guarded
def oldest(client: Any, list_key: str) -> bytes | None:
    """The oldest ready message of a queue list (kombu pushes on the left, takes from the right)."""
    found: bytes | None = client.lindex(list_key, -1)
    return found


@guarded
def now_ms(client: Any) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


@guarded
def breaker_calls_in_flight(client: Any, keys: Keys, name: str) -> int:
    """Closed-state calls holding an in-flight slot of breaker ``name`` right now (unexpired)."""
    seconds, micros = client.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    return int(client.zcount(keys.breaker(name, "inflight"), f"({now}", "+inf"))
