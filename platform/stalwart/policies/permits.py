"""The contract between the envelope and the shared-state policies (rate, concurrency, breaker).

Before the body the envelope asks each declared policy for a permit, in order. A denied permit
defers the job by ``retry_after`` through the delayed set: it never consumes an attempt and is
never reported as an error. After the body, every granted permit is released with the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from stalwart.errors import ConfigurationError
from stalwart.job.context import JobContext, Outcome
from stalwart.runtime import Runtime


@dataclass(frozen=True)
class Decision:
    """A policy's answer: granted, or denied with the exact wait before asking again."""

    granted: bool
    retry_after: float = 0.0
    reason: str = ""
    token: str | None = None  # e.g. a concurrency lease id or a half-open probe id
    fallback: bool = False  # denied by an open breaker: run the task's fallback if it has one
    key: str | None = None  # the (rendered) name the permit lives under: release uses the same

    @classmethod
    def grant(cls, token: str | None = None, *, key: str | None = None) -> Decision:
        return cls(True, token=token, key=key)

    @classmethod
    def deny(cls, retry_after: float, reason: str, *, fallback: bool = False, key: str | None = None) -> Decision:
        return cls(False, retry_after=max(0.0, retry_after), reason=reason, fallback=fallback, key=key)


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


@runtime_checkable
class TaskChecked(Protocol):
    """A permit whose declaration depends on the task's signature (a per-key template)."""

    def check_task(self, where: str, fun: Callable[..., Any]) -> None:
        """Raise ConfigurationError when the policy cannot render its name from ``fun``'s arguments."""
        ...


class PermitOptions:
    """``limits=[...]``, ``breaker=`` and ``fallback=``: the permits a job needs before its body."""

    options: dict[str, str] = {
        "limits": "RateLimit/Concurrency policies the job needs a permit from before it runs; a name "
                  "may be a template over the task's arguments ('tenant:{tenant_id}'): one budget per key",
        "breaker": "a Breaker guarding the dependency this task calls",
        "fallback": "callable run instead of the body while the breaker is open",
    }

    def resolve(self, where: str, fun: Callable[..., Any], given: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "limits" in given or "breaker" in given:
            out["permits"] = self.permits(where, given.get("breaker"), given.get("limits", ()))
            for policy in out["permits"]:
                if isinstance(policy, TaskChecked):
                    policy.check_task(where, fun)
        if "fallback" in given:
            fallback = given["fallback"]
            if fallback is not None and not callable(fallback):
                raise ConfigurationError(f"{where}: fallback must be callable, got {fallback!r}")
            out["fallback"] = staticmethod(fallback) if fallback else None
        return out

    @staticmethod
    def permits(where: str, breaker: object, limits: object) -> tuple[PermitPolicy, ...]:
        if isinstance(limits, PermitPolicy):
            limits = (limits,)
        if not isinstance(limits, (tuple, list)):
            raise ConfigurationError(f"{where}: limits must be a list of RateLimit/Concurrency, got {limits!r}")
        chosen: list[PermitPolicy] = []
        for policy in ([breaker] if breaker is not None else []) + list(limits):
            if not isinstance(policy, PermitPolicy):
                raise ConfigurationError(f"{where}: {policy!r} is not a Stalwart limit or breaker")
            chosen.append(policy)
        return tuple(chosen)


PERMIT_OPTIONS = PermitOptions()
