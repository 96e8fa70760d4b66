"""What the envelope knows about one delivery of a job, and how that delivery ended."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from stalwart.job.header import Meta

OutcomeKind = Literal["succeeded", "retried", "deferred", "dead", "skipped"]


@dataclass
class JobContext:
    """One delivery of one job, as seen by the envelope, hooks and permits."""

    task_name: str
    task_id: str
    queue: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    meta: Meta
    attempt: int  # 1-based: retries so far + 1
    hostname: str
    job_key: str  # "k:<idempotency key>" or "t:<task id>"
    server_now_ms: int = 0
    started: float = field(default_factory=time.monotonic)
    deliveries: int = 0
    breaker_states: dict[str, str] = field(default_factory=dict)
    dlq_entry_id: str | None = None

    @property
    def trace_id(self) -> str:
        return self.meta.trace

    @property
    def idempotency_key(self) -> str | None:
        return self.meta.key

    def remaining(self) -> float | None:
        """Seconds left before the job's deadline (None when it has none)."""
        if self.meta.deadline is None:
            return None
        elapsed_ms = (time.monotonic() - self.started) * 1000
        return (self.meta.deadline - self.server_now_ms - elapsed_ms) / 1000

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass(frozen=True)
class Outcome:
    """How one delivery ended: what the hooks and permits are told after the body."""

    kind: OutcomeKind
    duration: float = 0.0
    exc: BaseException | None = None
    reason: str = ""
    delay: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind == "succeeded"
