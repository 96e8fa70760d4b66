"""A dead-letter entry and the filter that selects entries. Pure data, no Redis."""

from __future__ import annotations

import json
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from stalwart.errors import DLQError

REASONS = (
    "exhausted", "permanent", "poison", "expired", "disabled", "unregistered",
    "malformed", "refused_content", "bad_arguments",
)


def new_entry_id() -> str:
    """A dead-letter entry id: generated here, never taken from a message."""
    return uuid.uuid4().hex


@dataclass(kw_only=True)
class DeadLetter:
    """One dead job, with everything an operator needs to understand and replay it."""

    reason: str
    id: str = field(default_factory=new_entry_id)
    # The dead message's identity (its Stalwart message id, or its delivery tag): the DLQ keeps
    # one entry per source, so a redelivered copy of a dead message is not written twice.
    source: str | None = None
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
