"""Worker presence: each worker writes hostname → last-seen ms so ``stalwart status`` lists it."""

from __future__ import annotations

import logging

import redis

from .job import now_ms
from .keys import Keys
from .periodic import Periodic

log = logging.getLogger("stalwart.presence")
LIVE_WITHIN_MS = 15_000


def live(seen: dict[str, int], now: int, within_ms: int = LIVE_WITHIN_MS) -> dict[str, bool]:
    """Which workers were seen within ``within_ms`` of ``now``."""
    return {name: now - at <= within_ms for name, at in seen.items()}


def read(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """Every worker that ever beat: hostname → last-seen epoch ms."""
    return {
        (k.decode() if isinstance(k, bytes) else k): int(v) for k, v in client.hgetall(keys.workers()).items()
    }


class Presence(Periodic):
    """A daemon thread in the worker's main process that beats every ``interval`` seconds."""

    name = "stalwart-presence"

    def __init__(self, client: redis.Redis, keys: Keys, hostname: str, interval: float = 3.0) -> None:
        super().__init__(interval)
        self.client = client
        self.keys = keys
        self.hostname = hostname

    def beat(self) -> None:
        self.client.hset(self.keys.workers(), self.hostname, now_ms())

    def tick(self) -> None:
        self.beat()

    def stop(self) -> None:
        """Stop beating and remove this worker from the hash (a clean shutdown is not a death)."""
        super().stop()
        try:
            self.client.hdel(self.keys.workers(), self.hostname)
        except redis.RedisError as exc:
            log.warning("could not remove the presence of %s: %s", self.hostname, exc)
