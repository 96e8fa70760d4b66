"""The operator audit log: who did what, when, to how many entries (shown on the console).

A record is at most :data:`MAX_RECORD_BYTES` of JSON: callers store counts and a sample of ids,
and a detail that still exceeds the cap is replaced by a note saying so."""

from __future__ import annotations

import json
from typing import Any

from stalwart.store.audit import AuditStore
from stalwart.store.keys import Keys

MAX_RECORD_BYTES = 8_192


class AuditLog:
    """Append operator actions and read them back, newest first."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.store = AuditStore(client, keys)

    def record(self, who: str, action: str, what: str, count: int | None = None,
               detail: dict[str, Any] | None = None) -> int:
        """Write one action; returns the Redis time (ms) it was recorded at."""
        record = {"who": who[:200], "action": action[:200], "what": what[:500], "count": count,
                  "detail": detail or {}}
        size = len(json.dumps(record, default=str))
        if size > MAX_RECORD_BYTES:
            record["detail"] = {"omitted": f"{size} bytes of detail, over the {MAX_RECORD_BYTES}-byte cap"}
        return self.store.add(record)

    def page(self, offset: int = 0, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
        """Records newest first, and how many there are."""
        return self.store.page(max(0, offset), max(1, min(limit, 500)))
