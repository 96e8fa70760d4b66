"""Keeps the broker from redelivering jobs whose worker is alive (super_fetch, on kombu).

kombu's Redis transport redelivers a message once it has been unacked for the visibility
timeout. Stalwart keeps that timeout short so a dead worker's jobs come back in seconds; a live
worker re-stamps the unacked entries of every job it holds (``unacked_index`` scores) so a long
job is never redelivered while its worker lives.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import redis

log = logging.getLogger("stalwart.visibility")


class VisibilityKeeper:
    """A daemon thread re-stamping the delivery tags ``tags()`` returns every ``interval`` s."""

    def __init__(
        self,
        client: redis.Redis,
        index_key: str,
        tags: Callable[[], Iterable[str]],
        interval: float,
    ) -> None:
        self.client = client
        self.index_key = index_key
        self.tags = tags
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stalwart-visibility", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def touch(self) -> int:
        tags = list(self.tags())
        if not tags:
            return 0
        now = time.time()
        return int(self.client.zadd(self.index_key, dict.fromkeys(tags, now), xx=True) or 0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.touch()
            except Exception as exc:  # noqa: BLE001 - the keeper must outlive any error
                log.warning("could not refresh in-flight deliveries: %s", exc)
