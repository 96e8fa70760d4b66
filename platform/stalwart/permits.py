"""The contract between the envelope and the shared-state policies (rate, concurrency, breaker).

Before the body the envelope asks each declared policy for a permit, in order. A denied permit
defers the job by ``retry_after`` through the delayed set: it never consumes an attempt and is
never reported as an error. After the body, every granted permit is released with the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .job import JobContext, Outcome

if TYPE_CHECKING:
    from .runtime import Runtime


@dataclass(frozen=True)
class Decision:
    """A policy's answer: granted, or denied with the exact wait before asking again."""

    granted: bool
    retry_after: float = 0.0
    reason: str = ""
    token: str | None = None  # e.g. a concurrency lease id or a half-open probe id
    fallback: bool = False  # denied by an open breaker: run the task's fallback if it has one

    @classmethod
    def grant(cls, token: str | None = None) -> Decision:
        return cls(True, token=token)

    @classmethod
    def deny(cls, retry_after: float, reason: str, *, fallback: bool = False) -> Decision:
        return cls(False, retry_after=max(0.0, retry_after), reason=reason, fallback=fallback)


@runtime_checkable
class PermitPolicy(Protocol):
    """A shared-state policy the envelope consults around the body."""

    name: str

    def acquire(self, runtime: Runtime, ctx: JobContext) -> Decision:
        """Reserve a permit (one Lua script), or say how long to wait."""
        ...

    def release(self, runtime: Runtime, ctx: JobContext, decision: Decision, outcome: Outcome) -> None:
        """Give the permit back and record the outcome (breakers count failures here)."""
        ...
