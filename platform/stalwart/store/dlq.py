"""The DLQ's keys: entries (id → JSON), an index by dead-at time, and counters.

All three share the ``{dlq}`` hash tag. Retention (count and age caps) is applied by ``dlq_add``
on every write, and each eviction is counted by cause; nothing else grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from stalwart.store.keys import Keys
from stalwart.store.scripts import as_int, guarded, script, text, text_map


@dataclass(frozen=True)
class Added:
    """What ``dlq_add`` did: whether the entry was new, the Redis time, and how many it evicted."""

    added: bool
    now_ms: int
    evicted: int


class DLQStore:
    """Every read and write of the dead-letter keys."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.entries_key = keys.dlq("entries")
        self.index_key = keys.dlq("index")
        self.stats_key = keys.dlq("stats")
        self.keys = keys

    @property
    def _keys(self) -> list[str]:
        return [self.entries_key, self.index_key, self.stats_key]

    @guarded
    def add(self, entry_id: str, *, entry_json: str, reason: str, max_entries: int, max_age_ms: int) -> Added:
        """Store an entry (idempotent by id) and apply retention."""
        added, now, evicted = script("dlq_add")(
            self.client, self._keys, [entry_id, entry_json, reason, max_entries, max_age_ms]
        )
        return Added(bool(added), int(now), int(evicted))

    @guarded
    def get(self, entry_id: str) -> str | None:
        raw = self.client.hget(self.entries_key, entry_id)
        return None if raw is None else text(raw)

    @guarded
    def get_many(self, entry_ids: list[str]) -> list[str | None]:
        if not entry_ids:
            return []
        return [None if raw is None else text(raw) for raw in self.client.hmget(self.entries_key, entry_ids)]

    @guarded
    def page(self, *, newest: float | str, oldest: float | str, offset: int, count: int) -> list[str]:
        """Entry ids dead between ``oldest`` and ``newest`` ms, newest first."""
        ids: list[Any] = self.client.zrevrangebyscore(
            self.index_key, newest, oldest, start=offset, num=count
        )
        return [text(i) for i in ids]

    @guarded
    def all_ids(self) -> list[str]:
        return [text(i) for i in self.client.zrange(self.index_key, 0, -1)]

    @guarded
    def remove(self, entry_ids: list[str], stat: str) -> int:
        """Delete entries; ``stat`` names the counter that records why (purged, replayed)."""
        if not entry_ids:
            return 0
        return int(script("dlq_remove")(self.client, self._keys, [stat, *entry_ids]))

    @guarded
    def counters(self) -> dict[str, int]:
        return {k: as_int(v) for k, v in text_map(self.client.hgetall(self.stats_key)).items()}

    @guarded
    def count(self) -> int:
        return int(self.client.zcard(self.index_key))

    @guarded
    def lock(self, entry_id: str, ttl_ms: int) -> bool:
        """Take the replay lock of one entry (expires on its own if the holder dies)."""
        return bool(self.client.set(self.keys.dlq(f"replaying:{entry_id}"), "1", nx=True, px=ttl_ms))

    @guarded
    def unlock(self, entry_id: str) -> None:
        self.client.delete(self.keys.dlq(f"replaying:{entry_id}"))
