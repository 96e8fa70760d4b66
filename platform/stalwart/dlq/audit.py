"""The operator audit log: who did what, when, to how many entries (shown on the console)."""

from __future__ import annotations

from typing import Any

from stalwart.store.audit import AuditStore
from stalwart.store.keys import Keys


class AuditLog:
    """Append operator actions and read them back, newest first."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.store = AuditStore(client, keys)

    def record(self, who: str, action: str, what: str, count: int | None = None,
               detail: dict[str, Any] | None = None) -> int:
        """Write one action; returns the Redis time (ms) it was recorded at."""
        return self.store.add({"who": who, "action": action, "what": what, "count": count,
                               "detail": detail or {}})

    def page(self, offset: int = 0, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
        """Records newest first, and how many there are."""
        return self.store.page(max(0, offset), max(1, min(limit, 500)))
