"""Keeps the broker from redelivering jobs whose worker is alive (super_fetch, on kombu).

kombu's Redis transport redelivers a message once it has been unacked for the visibility
timeout. Stalwart keeps that timeout short so a dead worker's jobs come back in seconds; a live
worker re-stamps the unacked entries of every job it holds (``unacked_index`` scores, on the Redis
clock like the fetch that wrote them and the sweep that reads them) so a long job is never
redelivered while its worker lives, whatever its host's clock says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from stalwart.periodic import Periodic
from stalwart.store import broker as broker_store


class VisibilityKeeper(Periodic):
    """A daemon thread re-stamping the delivery tags ``tags()`` returns every ``interval`` s."""

    name = "stalwart-visibility"

    def __init__(
        self,
        client: Any,
        index_key: str,
        tags: Callable[[], Iterable[str]],
        interval: float,
    ) -> None:
        super().__init__(interval)
        self.client = client
        self.index_key = index_key
        self.tags = tags

    def touch(self) -> int:
        tags = list(self.tags())
        if not tags:
            return 0
        return broker_store.restamp(self.client, self.index_key, tags)

    def tick(self) -> None:
        self.touch()
