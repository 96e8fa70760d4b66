"""Worker presence: one hash of hostname → last-seen ms (Redis clock), under ``{workers}``.

Bounded: every beat forgets the workers not heard from for :data:`RETENTION_MS` (a worker killed
without a clean shutdown leaves its entry only that long) and keeps at most :data:`CAP` entries;
the hash itself expires :data:`RETENTION_MS` after the last beat of any worker.
"""

from __future__ import annotations

import redis

from stalwart.store.keys import Keys
from stalwart.store.scripts import as_int, guarded, script, text

RETENTION_MS = 3_600_000  # an hour: long enough for `stalwart status` to show a worker that died
CAP = 10_000


class PresenceStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    @guarded
    def beat(self, hostname: str) -> int:
        """Mark ``hostname`` seen now (Redis clock), forgetting long-silent workers; how many kept."""
        return int(script("presence_beat")(self.client, [self.keys.workers()], [hostname, RETENTION_MS, CAP]))

    @guarded
    def remove(self, hostname: str) -> None:
        self.client.hdel(self.keys.workers(), hostname)

    @guarded
    def read(self) -> dict[str, int]:
        """Every worker that beat: hostname → last-seen epoch ms."""
        return {text(k): as_int(v) for k, v in self.client.hgetall(self.keys.workers()).items()}

    @guarded
    def now_ms(self) -> int:
        """The Redis clock, which the last-seen times are on."""
        sec, usec = self.client.time()
        return int(sec) * 1000 + int(usec) // 1000
