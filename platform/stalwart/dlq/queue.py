"""The dead-letter queue: entries with full context, kept in Redis, with retention."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

import redis

from stalwart.dlq.entry import DeadLetter, Filter
from stalwart.errors import DLQError, EntryNotFound
from stalwart.settings import Settings
from stalwart.store.dlq import DLQStore
from stalwart.store.keys import Keys

_PAGE = 200


class DeadLetterQueue:
    """Add, list, show, remove and count dead-letter entries. Replay lives in :mod:`.replay`."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self.settings = settings
        self.store = DLQStore(client, keys)

    def add(self, entry: DeadLetter) -> bool:
        """Store ``entry``; False when its source is already dead-lettered (a redelivery), in
        which case ``entry.id`` becomes the id of the entry that holds it."""
        done = self.store.add(
            entry.id, entry_json=entry.to_json(), reason=entry.reason, source=entry.source,
            max_entries=self.settings.dlq_max_entries, max_age_ms=int(self.settings.dlq_max_age_seconds * 1000),
        )
        entry.id = done.entry_id
        return done.added

    def get(self, entry_id: str) -> DeadLetter:
        raw = self.store.get(entry_id)
        if raw is None:
            raise EntryNotFound(f"no dead-letter entry {entry_id!r}")
        return DeadLetter.from_json(raw)

    def iter(self, flt: Filter = Filter()) -> Iterator[DeadLetter]:
        """Entries matching ``flt``, newest first, read from Redis a page at a time."""
        newest = "+inf" if flt.until_ms is None else flt.until_ms
        oldest = "-inf" if flt.since_ms is None else flt.since_ms
        offset = 0
        while True:
            ids = self.store.page(newest=newest, oldest=oldest, offset=offset, count=_PAGE)
            if not ids:
                return
            offset += len(ids)
            for raw in self.store.get_many(ids):
                if raw is None:
                    continue  # removed since the page was read
                entry = DeadLetter.from_json(raw)
                if flt.matches(entry):
                    yield entry

    def list(self, flt: Filter = Filter(), offset: int = 0, limit: int = 50) -> builtins.list[DeadLetter]:
        """One page of matching entries, newest first."""
        if offset < 0 or limit < 1:
            raise DLQError("offset must be >= 0 and limit >= 1")
        out: builtins.list[DeadLetter] = []
        for i, entry in enumerate(self.iter(flt)):
            if i >= offset:
                out.append(entry)
            if len(out) >= limit:
                break
        return out

    def remove(self, entry_ids: builtins.list[str], stat: str = "purged") -> int:
        """Delete entries by id; ``stat`` names the counter that records why (purged/replayed)."""
        return sum(self.store.remove(entry_ids[i : i + 500], stat) for i in range(0, len(entry_ids), 500))

    def purge(self, flt: Filter = Filter()) -> int:
        ids = self.store.all_ids() if flt == Filter() else [e.id for e in self.iter(flt)]
        return self.remove(ids, "purged")

    def stats(self) -> dict[str, Any]:
        """Totals: entries by reason, evictions by cause, replayed and purged counts."""
        raw = self.store.counters()
        by_reason = {k[7:]: v for k, v in raw.items() if k.startswith("reason:") and v > 0}
        evicted = {k[8:]: v for k, v in raw.items() if k.startswith("evicted:")}
        return {
            "total": self.store.count(),
            "by_reason": dict(sorted(by_reason.items())),
            "evicted": sum(evicted.values()),
            "evicted_by": evicted,
            "added": raw.get("added", 0),
            "replayed": raw.get("replayed", 0),
            "purged": raw.get("purged", 0),
        }
