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
SEARCH_MAX = 200  # characters of a search text


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
    # Celery's execution options of the message, so a replay re-publishes it as it was: the
    # canvas (chain, link, link_error, chord, group), custom headers, root/parent ids, priority,
    # time limits (see stalwart.dlq.message). None: not recorded, and then replay refuses.
    options: dict[str, Any] | None = None
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
        return unreplayable_reason(self) is None


def unreplayable_reason(entry: DeadLetter) -> str | None:
    """Why ``entry`` can never be replayed as it is, or None when it can."""
    if entry.reason in {"malformed", "refused_content"}:
        return f"{entry.reason}: the message never decoded into a task call; inspect it and purge it"
    if not entry.task or not entry.task_id:
        return "no task name or task id recorded; nothing to republish"
    if entry.raw is not None:
        return ("the message body never decoded into arguments (kept raw); replaying would run the task "
                "without them")
    if entry.options is None:
        return ("the message's canvas and headers were not recorded (an older entry); replaying could "
                "drop its chain, callbacks or headers")
    return None


@dataclass(frozen=True)
class Filter:
    """Which entries an operation applies to; every field narrows the selection.

    ``cause`` is a cause id (stalwart.dlq.causes); ``search`` is a case-insensitive substring of
    the entry's ids, task, error and (scrubbed) arguments.
    """

    queue: str | None = None
    task: str | None = None
    reason: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    cause: str | None = None
    search: str | None = None

    def __post_init__(self) -> None:
        if self.reason is not None and self.reason not in REASONS:
            raise DLQError(f"unknown reason {self.reason!r}; known reasons: {', '.join(REASONS)}")
        if self.search is not None and not 0 < len(self.search) <= SEARCH_MAX:
            raise DLQError(f"a search text must be 1-{SEARCH_MAX} characters")

    @property
    def narrowed(self) -> bool:
        """True when any field narrows the selection."""
        return self != Filter()

    def until(self, until_ms: int) -> Filter:
        """The same filter, also bounded to entries dead at or before ``until_ms``."""
        bound = until_ms if self.until_ms is None else min(self.until_ms, until_ms)
        return Filter(**{**asdict(self), "until_ms": bound})
