"""The operator audit log: one capped list, ``<prefix>:{dlq}:audit``, newest first.

Each record is JSON (who, action, what, count, detail, at). Cap: :data:`MAX_RECORDS` records
(``audit_add`` trims on every write); the oldest fall off.
"""

from __future__ import annotations

import json
from typing import Any

from stalwart.store.keys import Keys
from stalwart.store.scripts import guarded, script

MAX_RECORDS = 10_000


class AuditStore:
    """Append to and read the audit log."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.key = keys.dlq("audit")

    @guarded
    def add(self, record: dict[str, Any]) -> int:
        """Append ``record``; returns the Redis time (ms) it was stamped with."""
        return int(script("audit_add")(self.client, [self.key], [json.dumps(record, default=str), MAX_RECORDS]))

    @guarded
    def page(self, offset: int, count: int) -> tuple[list[dict[str, Any]], int]:
        """Records newest first, and how many there are."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.lrange(self.key, offset, offset + count - 1)
            pipe.llen(self.key)
            raws, total = pipe.execute()
        return [json.loads(raw) for raw in raws], int(total)
