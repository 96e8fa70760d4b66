"""Worker presence: one hash of hostname → last-seen ms (Redis clock)."""

from __future__ import annotations

import redis

from stalwart.store.keys import Keys
from stalwart.store.scripts import as_int, guarded, text


class PresenceStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    @guarded
    def beat(self, hostname: str, now_ms: int) -> None:
        self.client.hset(self.keys.workers(), hostname, now_ms)

    @guarded
    def remove(self, hostname: str) -> None:
        self.client.hdel(self.keys.workers(), hostname)

    @guarded
    def read(self) -> dict[str, int]:
        """Every worker that beat: hostname → last-seen epoch ms."""
        return {text(k): as_int(v) for k, v in self.client.hgetall(self.keys.workers()).items()}
