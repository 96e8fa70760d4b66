"""Progress records of background bulk actions (replay, purge, dry run) run from the console.

``<prefix>:{dlq}:bulk:<id>`` hashes (name, kind, who, state, total, done, counts, skipped
reasons, times), each with a TTL of :data:`TTL_MS` (refreshed on every update), and the
``<prefix>:{dlq}:bulk`` sorted set (id → start ms) that lists them, capped at :data:`MAX_JOBS`.
"""

from __future__ import annotations

import json
from typing import Any

from stalwart.store.keys import Keys
from stalwart.store.scripts import guarded, text_map

TTL_MS = 7 * 86_400_000
MAX_JOBS = 200


class BulkStore:
    """Write and read bulk-job progress."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.list_key = keys.dlq("bulk")

    def _key(self, job_id: str) -> str:
        return self.keys.dlq(f"bulk:{job_id}")

    @guarded
    def now_ms(self) -> int:
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    @guarded
    def create(self, job_id: str, fields: dict[str, Any]) -> None:
        """Record a new job and list it (the oldest beyond the cap are unlisted)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(job_id), mapping=_encode(fields))
            pipe.pexpire(self._key(job_id), TTL_MS)
            pipe.zadd(self.list_key, {job_id: int(fields.get("started", 0))})
            pipe.zremrangebyrank(self.list_key, 0, -MAX_JOBS - 1)
            pipe.pexpire(self.list_key, TTL_MS)
            pipe.execute()

    @guarded
    def update(self, job_id: str, fields: dict[str, Any]) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(job_id), mapping=_encode(fields))
            pipe.pexpire(self._key(job_id), TTL_MS)
            pipe.execute()

    @guarded
    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = text_map(self.client.hgetall(self._key(job_id)))
        return _decode(raw) if raw else None

    @guarded
    def recent(self, count: int) -> list[dict[str, Any]]:
        """The newest jobs first (those whose record expired are left out)."""
        ids = self.client.zrevrange(self.list_key, 0, count - 1)
        with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self._key(job_id.decode() if isinstance(job_id, bytes) else str(job_id)))
            found = pipe.execute()
        return [_decode(text_map(raw)) for raw in found if raw]


def _encode(fields: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v, default=str) for k, v in fields.items()}


def _decode(raw: dict[str, str]) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in raw.items()}
