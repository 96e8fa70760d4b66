"""Worker presence: each worker writes hostname → last-seen ms so ``stalwart status`` lists it."""

from __future__ import annotations

import logging

from stalwart.errors import StateStoreError
from stalwart.periodic import Periodic
from stalwart.store.presence import PresenceStore

log = logging.getLogger("stalwart.ops.presence")
LIVE_WITHIN_MS = 15_000


def live(seen: dict[str, int], now: int, within_ms: int = LIVE_WITHIN_MS) -> dict[str, bool]:
    """Which workers were seen within ``within_ms`` of ``now``."""
    return {name: now - at <= within_ms for name, at in seen.items()}


class Presence(Periodic):
    """A daemon thread in the worker's main process that beats every ``interval`` seconds."""

    name = "stalwart-presence"

    def __init__(self, store: PresenceStore, hostname: str, interval: float = 3.0) -> None:
        super().__init__(interval)
        self.store = store
        self.hostname = hostname

    def beat(self) -> None:
        self.store.beat(self.hostname)

    def tick(self) -> None:
        self.beat()

    def stop(self) -> None:
        """Stop beating and remove this worker from the hash (a clean shutdown is not a death)."""
        super().stop()
        try:
            self.store.remove(self.hostname)
        except StateStoreError as exc:
            log.warning("could not remove the presence of %s: %s", self.hostname, exc)
