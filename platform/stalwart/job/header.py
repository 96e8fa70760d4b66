"""The ``stalwart`` message header: what travels with a job through retries and deferrals."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

HEADER = "stalwart"
DELAY_HEADER = "stalwart_delay_ms"
FAIR_HEADER = "stalwart_fair"  # [rendered fair_by key, weight]: the message waits in its key's fair lane


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Meta:
    """The ``stalwart`` message header: travels with the job through retries and deferrals."""

    msg: str = field(default_factory=lambda: uuid.uuid4().hex)
    gen: int = 0
    key: str | None = None
    trace: str = field(default_factory=lambda: uuid.uuid4().hex)
    deadline: int | None = None  # epoch ms
    sent: int = field(default_factory=now_ms)
    first_seen: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_header(self) -> dict[str, Any]:
        out: dict[str, Any] = {"msg": self.msg, "gen": self.gen, "trace": self.trace, "sent": self.sent}
        if self.key is not None:
            out["key"] = self.key
        if self.deadline is not None:
            out["deadline"] = self.deadline
        if self.first_seen is not None:
            out["first_seen"] = self.first_seen
        if self.history:
            out["history"] = self.history
        return out

    @classmethod
    def from_header(cls, raw: object) -> Meta:
        """Parse the header leniently: a job from a plain Celery client gets fresh defaults."""
        if not isinstance(raw, dict):
            return cls()
        meta = cls()
        meta.msg = str(raw.get("msg") or meta.msg)
        meta.gen = _int(raw.get("gen"), 0)
        meta.key = str(raw["key"]) if raw.get("key") is not None else None
        meta.trace = str(raw.get("trace") or meta.trace)
        meta.deadline = _int(raw.get("deadline"), 0) or None
        meta.sent = _int(raw.get("sent"), meta.sent)
        meta.first_seen = _int(raw.get("first_seen"), 0) or None
        history = raw.get("history")
        meta.history = [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []
        return meta

    def successor(self, **changes: Any) -> Meta:
        """The header of the next message of the same job (retry or deferral)."""
        data = {**self.__dict__, "msg": uuid.uuid4().hex, "history": list(self.history)}
        data.update(changes)
        return Meta(**data)


def _int(value: object, default: int) -> int:
    if not isinstance(value, (int, float, str)):
        return default
    try:
        return int(value)
    except ValueError:
        return default
