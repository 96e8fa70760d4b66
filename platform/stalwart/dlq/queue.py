"""The dead-letter queue: entries with full context, kept in Redis, indexed, with retention."""

from __future__ import annotations

import builtins
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from stalwart.dlq.causes import cause_id, normalise
from stalwart.dlq.entry import DeadLetter, Filter, new_entry_id
from stalwart.dlq.secrets import scrubbed_call
from stalwart.errors import DLQError, EntryNotFound
from stalwart.ops.scrub import scrub
from stalwart.settings import Settings
from stalwart.store.dlq import DLQStore, NewEntry, cursor_ok
from stalwart.store.keys import Keys

log = logging.getLogger("stalwart.dlq")
PAGE_BUDGET = 20_000  # index members one page read examines at most (a search or several filters)
SEARCH_CHARS = 1000
_ID_ATTEMPTS = 3


def key_of(entry: DeadLetter) -> str | None:
    """The entry's idempotency key, from either kind of headers."""
    headers = entry.headers or {}
    meta = headers.get("stalwart", headers)
    key = meta.get("key") if isinstance(meta, dict) else None
    return str(key) if key is not None else None


def new_entry(entry: DeadLetter, task: Any = None) -> NewEntry:
    """What the store indexes for ``entry``: its cause, and a search text with secrets cut out
    (positional secrets too, named through ``task``'s signature when it is registered here)."""
    args, kwargs, secrets = scrubbed_call(task, list(entry.args), dict(entry.kwargs), entry.headers or {})
    message: str = scrub(entry.exc_message or "", secrets)
    call = json.dumps([args, kwargs], default=repr)[:400]
    parts = (entry.id, entry.task_id, entry.task, entry.exc_type, message[:400], call, key_of(entry))
    return NewEntry(
        entry_id=entry.id, entry_json=entry.to_json(), reason=entry.reason, source=entry.source,
        task_id=entry.task_id or "", queue=entry.queue or "", task=entry.task or "",
        cause=cause_id(entry.task, entry.exc_type, entry.exc_message),
        cause_info={"task": entry.task, "exc_type": entry.exc_type, "message": normalise(entry.exc_message),
                    "sample": message[:300]},
        search=" ".join(p for p in parts if p).lower()[:SEARCH_CHARS],
    )


def _filters(flt: Filter) -> dict[str, str]:
    found = {"q": flt.queue, "t": flt.task, "r": flt.reason, "c": flt.cause}
    return {d: v for d, v in found.items() if v is not None}


@dataclass
class EntryPage:
    """A page of entries, the cursor of the next page, and the exact total when known."""

    entries: list[DeadLetter]
    cursor: str | None
    total: int | None


class DeadLetterQueue:
    """Add, list, show, remove and count dead-letter entries. Replay lives in :mod:`.replay`."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings,
                 task_of: Callable[[str], Any] = lambda name: None) -> None:
        self.settings = settings
        self.store = DLQStore(client, keys)
        self.task_of = task_of  # a task name's registered task (its signature names positional secrets)

    def _new(self, entry: DeadLetter) -> NewEntry:
        return new_entry(entry, self.task_of(entry.task) if entry.task else None)

    @property
    def _retention(self) -> dict[str, int]:
        return {"max_entries": self.settings.dlq_max_entries,
                "max_age_ms": int(self.settings.dlq_max_age_seconds * 1000)}

    def add(self, entry: DeadLetter) -> bool:
        """Store ``entry``; False when its source is already dead-lettered for the same task id
        (a redelivery), in which case ``entry.id`` becomes the id of the entry that holds it."""
        for _ in range(_ID_ATTEMPTS):
            done = self.store.add(self._new(entry), **self._retention)
            if not done.id_taken:
                entry.id = done.entry_id
                return done.added
            log.warning("dead-letter id %s is taken; writing the entry under a new id", entry.id)
            entry.id = new_entry_id()
        raise DLQError(f"could not find a free dead-letter id in {_ID_ATTEMPTS} attempts")

    def add_many(self, entries: builtins.list[DeadLetter]) -> int:
        """Add many entries in one pipeline (seeding, imports); returns how many were new."""
        done = self.store.add_many([self._new(e) for e in entries], **self._retention)
        return sum(1 for d in done if d.added)

    def get(self, entry_id: str) -> DeadLetter:
        raw = self.store.get(entry_id)
        if raw is None:
            raise EntryNotFound(f"no dead-letter entry {entry_id!r}")
        return DeadLetter.from_json(raw)

    def get_many(self, entry_ids: builtins.list[str]) -> builtins.list[DeadLetter]:
        """The entries that still exist, in the order given."""
        return [DeadLetter.from_json(raw) for raw in self.store.get_many(entry_ids) if raw is not None]

    def page(self, flt: Filter = Filter(), cursor: str | None = None, limit: int = 50) -> EntryPage:
        """Up to ``limit`` matching entries, newest first, from ``cursor`` (None: the newest).

        One request examines at most :data:`PAGE_BUDGET` index members: a search or filters that
        match little return fewer entries (even none) and the cursor to go on from."""
        if limit < 1:
            raise DLQError("limit must be >= 1")
        if cursor is not None and not cursor_ok(cursor):
            raise DLQError(f"{cursor[:80]!r} is not a page cursor (give the 'cursor' of a previous page)")
        ids: builtins.list[str] = []
        total: int | None = None
        scanned = 0
        while True:
            found = self.store.page(filters=_filters(flt), since_ms=flt.since_ms, until_ms=flt.until_ms,
                                    cursor=cursor, count=limit - len(ids), budget=PAGE_BUDGET - scanned,
                                    search=flt.search)
            ids.extend(found.ids)
            scanned += found.scanned
            cursor, total = found.cursor, found.total if total is None else total
            if cursor is None or len(ids) >= limit or scanned >= PAGE_BUDGET:
                return EntryPage(self.get_many(ids), cursor, total)

    def iter_ids(self, flt: Filter = Filter(), batch: int = 500) -> Iterator[builtins.list[str]]:
        """Matching entry ids, newest first, a batch at a time."""
        cursor: str | None = None
        while True:
            found = self.store.page(filters=_filters(flt), since_ms=flt.since_ms, until_ms=flt.until_ms,
                                    cursor=cursor, count=batch, budget=max(batch, PAGE_BUDGET), search=flt.search)
            if found.ids:
                yield found.ids
            if found.cursor is None:
                return
            cursor = found.cursor

    def iter(self, flt: Filter = Filter()) -> Iterator[DeadLetter]:
        """Entries matching ``flt``, newest first, read from Redis a page at a time."""
        for ids in self.iter_ids(flt, batch=200):
            yield from self.get_many(ids)

    def list(self, flt: Filter = Filter(), offset: int = 0, limit: int = 50) -> builtins.list[DeadLetter]:
        """One page of matching entries, newest first, after skipping ``offset``."""
        if offset < 0 or limit < 1:
            raise DLQError("offset must be >= 0 and limit >= 1")
        skipped, out = 0, builtins.list[str]()
        for ids in self.iter_ids(flt):
            take = ids[max(0, offset - skipped):]
            skipped += len(ids)
            out.extend(take[: limit - len(out)])
            if len(out) >= limit:
                break
        return self.get_many(out)

    def count(self, flt: Filter = Filter()) -> int:
        """How many entries match ``flt`` exactly (one range count, or a walk of the matches)."""
        found = self.store.page(filters=_filters(flt), since_ms=flt.since_ms, until_ms=flt.until_ms,
                                cursor=None, count=1, budget=1, search=flt.search)
        if found.total is not None:
            return found.total
        return sum(len(ids) for ids in self.iter_ids(flt))

    def remove(self, entry_ids: builtins.list[str], stat: str = "purged") -> int:
        """Delete entries by id; ``stat`` names the counter that records why (purged/replayed)."""
        return sum(self.store.remove(entry_ids[i : i + 500], stat) for i in range(0, len(entry_ids), 500))

    def purge(self, flt: Filter = Filter()) -> int:
        """Delete every entry matching ``flt`` (read first: entries added meanwhile stay)."""
        ids = [i for batch in self.iter_ids(flt) for i in batch]
        return self.remove(ids, "purged")

    def causes(self, order: str = "last", offset: int = 0,
               limit: int = 50) -> tuple[builtins.list[dict[str, Any]], int]:
        """Causes (task, exception type, normalised message, count, first/last seen), newest or
        largest first, and how many causes there are."""
        if order not in ("last", "count"):
            raise DLQError("causes are ordered by 'last' (seen) or 'count'")
        return self.store.causes(order=order, offset=offset, count=limit)

    def cause(self, cause: str) -> dict[str, Any] | None:
        return self.store.cause(cause)

    def per_minute(self) -> dict[int, int]:
        """Additions per minute (epoch minute → count) over the last six hours."""
        return self.store.per_minute()

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
