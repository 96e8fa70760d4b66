"""Worker presence: each worker writes hostname → last-seen ms so ``stalwart status`` lists it."""

from __future__ import annotations

import logging
import threading

import redis

from .job import now_ms
from .keys import Keys

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


class Presence:
    """A daemon thread in the worker's main process that beats every ``interval`` seconds."""

    def __init__(self, client: redis.Redis, keys: Keys, hostname: str, interval: float = 3.0) -> None:
        self.client = client
        self.keys = keys
        self.hostname = hostname
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        self.client.hset(self.keys.workers(), self.hostname, now_ms())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stalwart-presence", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and remove this worker from the hash (a clean shutdown is not a death)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.client.hdel(self.keys.workers(), self.hostname)
        except redis.RedisError as exc:
            log.warning("could not remove the presence of %s: %s", self.hostname, exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("presence: Redis error, retrying: %s", exc)
            self._stop.wait(self.interval)
