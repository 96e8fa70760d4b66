"""The dead-letter queue: entries with full context, kept in Redis, with retention."""

from __future__ import annotations

import builtins
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from .errors import DLQError, EntryNotFound
from .keys import Keys
from .redis.scripts import load_script
from .settings import Settings

REASONS = (
    "exhausted", "permanent", "poison", "expired", "disabled", "unregistered",
    "malformed", "refused_content", "bad_arguments",
)
_PAGE = 200


@dataclass
class DeadLetter:
    """One dead job, with everything an operator needs to understand and replay it."""

    id: str
    reason: str
    task: str | None = None
    task_id: str | None = None
    queue: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    exc_type: str | None = None
    exc_message: str | None = None
    traceback: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    first_seen: int | None = None
    dead_at: int = field(default_factory=lambda: int(time.time() * 1000))
    hostname: str = field(default_factory=socket.gethostname)
    raw: str | None = None  # the undecodable message, for malformed/refused entries

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=repr, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> DeadLetter:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def replayable(self) -> bool:
        return bool(self.task and self.task_id) and self.reason not in {"malformed", "refused_content"}


@dataclass(frozen=True)
class Filter:
    """Which entries an operation applies to; every field narrows the selection."""

    queue: str | None = None
    task: str | None = None
    reason: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def __post_init__(self) -> None:
        if self.reason is not None and self.reason not in REASONS:
            raise DLQError(f"unknown reason {self.reason!r}; known reasons: {', '.join(REASONS)}")

    def matches(self, entry: DeadLetter) -> bool:
        return (
            (self.queue is None or entry.queue == self.queue)
            and (self.task is None or entry.task == self.task)
            and (self.reason is None or entry.reason == self.reason)
        )


class DeadLetterQueue:
    """Add, list, show, remove and count dead-letter entries. Replay lives in :mod:`replay`."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.entries_key = keys.dlq("entries")
        self.index_key = keys.dlq("index")
        self.stats_key = keys.dlq("stats")

    @property
    def _keys(self) -> list[str]:
        return [self.entries_key, self.index_key, self.stats_key]

    def add(self, entry: DeadLetter) -> bool:
        """Store ``entry``; False when an entry with its id already exists (a redelivery)."""
        added, _now, _evicted = load_script("dlq_add")(
            self.client,
            self._keys,
            [
                entry.id, entry.to_json(), entry.reason, self.settings.dlq_max_entries,
                int(self.settings.dlq_max_age_seconds * 1000),
            ],
        )
        return bool(added)

    def get(self, entry_id: str) -> DeadLetter:
        raw = self.client.hget(self.entries_key, entry_id)
        if raw is None:
            raise EntryNotFound(f"no dead-letter entry {entry_id!r}")
        return DeadLetter.from_json(raw)

    def iter(self, flt: Filter = Filter()) -> Iterator[DeadLetter]:
        """Entries matching ``flt``, newest first, read from Redis a page at a time."""
        hi = "+inf" if flt.until_ms is None else flt.until_ms
        lo = "-inf" if flt.since_ms is None else flt.since_ms
        offset = 0
        while True:
            ids: builtins.list[bytes] = self.client.zrevrangebyscore(  # type: ignore[assignment]
                self.index_key, hi, lo, start=offset, num=_PAGE
            )
            if not ids:
                return
            offset += len(ids)
            for raw in self.client.hmget(self.entries_key, ids):
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
        removed = 0
        for i in range(0, len(entry_ids), 500):
            chunk = entry_ids[i : i + 500]
            removed += int(load_script("dlq_remove")(self.client, self._keys, [stat, *chunk]))
        return removed

    def purge(self, flt: Filter = Filter()) -> int:
        if flt == Filter():
            members: builtins.list[bytes] = self.client.zrange(self.index_key, 0, -1)  # type: ignore[assignment]
            ids = [i.decode() for i in members]
        else:
            ids = [e.id for e in self.iter(flt)]
        return self.remove(ids, "purged")

    def stats(self) -> dict[str, Any]:
        """Totals: entries by reason, evictions by cause, replayed and purged counts."""
        raw = {
            (k.decode() if isinstance(k, bytes) else k): int(v)
            for k, v in self.client.hgetall(self.stats_key).items()
        }
        by_reason = {k[7:]: v for k, v in raw.items() if k.startswith("reason:") and v > 0}
        evicted = {k[8:]: v for k, v in raw.items() if k.startswith("evicted:")}
        return {
            "total": int(self.client.zcard(self.index_key)),
            "by_reason": dict(sorted(by_reason.items())),
            "evicted": sum(evicted.values()),
            "evicted_by": evicted,
            "added": raw.get("added", 0),
            "replayed": raw.get("replayed", 0),
            "purged": raw.get("purged", 0),
        }
