"""Rate and concurrency limits shared by every worker: one Lua script per decision (DESIGN §3.7).

``RateLimit`` is GCRA with time from Redis ``TIME`` and an exact retry-after. A job the limit
defers reserves the next free slot, so a backlog comes back spread out at the limit's pace instead
of all at once (and each deferred job is usually deferred once). Slots obey ``rate * t + burst``
exactly; actual grants obey a second GCRA with a small ``slack`` for jobs that return late.
``Concurrency`` hands out leased slots (a sorted set of lease ids scored by expiry), renewed while
the job runs: the slot of a holder that died comes back when its lease runs out.

Both are envelope permits (``@app.task(limits=[...])``) and also work around one call in a body:
``with limit.hold(): ...`` or ``@limit`` on a function; a denial there raises ``LimitExceeded``.
A name may be a template over the task's arguments (``Concurrency("tenant:{tenant_id}", 3)``) or
come from ``key=`` (a callable of them): each rendered key is its own budget
(:mod:`stalwart.policies.keyed`); in a body, ``limit.for_key(tenant_id=...).hold()``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from stalwart.errors import ConfigurationError
from stalwart.job.context import JobContext, Outcome
from stalwart.policies import survey
from stalwart.policies.keyed import KeyFn
from stalwart.policies.permits import Decision
from stalwart.policies.shared import (
    STORE_ERRORS,
    FailMode,
    SharedPolicy,
    check_fail_mode,
    note_redis_error,
    redis_errors,
    store,
)
from stalwart.store.keys import Keys
from stalwart.store.limits import LimitStore
from stalwart.store.scripts import text

__all__ = ["RENEWER", "Concurrency", "RateLimit", "limit_names", "limit_status", "parse_rate", "redis_errors", "store"]
log = logging.getLogger("stalwart.policies.limits")
HAND_ON_MS = 250  # a reserved slot its job is this late for goes to the next job that asks


def decode(value: Any) -> str:
    return text(value)


_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
            "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]+)\s*")


def parse_rate(text: object) -> tuple[int, float]:
    """``"100/s"`` → (100, 1.0); also ``/m``, ``/h``, ``/d`` and multiples such as ``"5/10s"``."""
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    if match is None or match.group(3) not in _PERIODS:
        raise ConfigurationError(f"rate must look like '100/s', '30/m', '5/h' or '10/2s', got {text!r}")
    count, multiple, unit = int(match.group(1)), match.group(2), match.group(3)
    period = (float(multiple) if multiple else 1.0) * _PERIODS[unit]
    if count < 1 or period <= 0:
        raise ConfigurationError(f"rate must allow at least 1 call per a positive period, got {text!r}")
    return count, period


@dataclass(frozen=True)
class RateLimit(SharedPolicy):
    """At most ``rate`` calls (e.g. ``"100/s"``), plus ``burst`` at once; one budget per (rendered) name."""

    kind: ClassVar[str] = "limits"
    name: str
    rate: str
    burst: int = 1
    on_redis_error: FailMode = "open"
    key: KeyFn | None = field(default=None, kw_only=True)
    count: int = field(init=False, repr=False, compare=False)
    period: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.setup_name()
        count, period = parse_rate(self.rate)
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "period", period)
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ConfigurationError(f"RateLimit.burst must be an int >= 1, got {self.burst!r}")
        check_fail_mode("RateLimit", self.on_redis_error)

    @property
    def interval_ms(self) -> float:
        """The emission interval: one call every this many milliseconds."""
        return self.period * 1000 / self.count

    @property
    def slack(self) -> int:
        """Grants a sliding window may see beyond ``rate * t + burst``: 0.1 s worth, at least 1.

        Deferred jobs come back for their reserved slots a little late (mover tick, queue wait);
        without slack each late grant would push every later slot back. Counted from the
        limit's first use the bound stays exactly ``rate * t + burst``.
        """
        return max(1, math.ceil(self.count / self.period * 0.1))

    def config(self) -> dict[str, str]:
        return {"type": "rate", "rate": self.rate, "burst": str(self.burst),
                "interval_ms": f"{self.interval_ms:.3f}", "on_redis_error": self.on_redis_error}

    def try_acquire(self, client: Any, keys: Keys, ctx: JobContext | None, name: str | None = None) -> Decision:
        name = self.name_for(name)
        member = ctx.job_key if ctx is not None else ""
        late_ms = max(10_000.0, 2 * self.interval_ms)
        granted, wait_ms = LimitStore(client, keys).rate_acquire(
            name, interval_ms=self.interval_ms, burst=self.burst, member=member,
            late_ms=late_ms, slack=self.slack, hand_on_ms=HAND_ON_MS,
        )
        if granted:
            return Decision.grant(key=name)
        return Decision.deny(wait_ms / 1000, f"rate limit {name}", key=name)


@dataclass(frozen=True)
class Concurrency(SharedPolicy):
    """At most ``limit`` holders at once across all workers, as slots leased for ``lease`` seconds."""

    kind: ClassVar[str] = "limits"
    name: str
    limit: int
    lease: float = 30.0
    on_redis_error: FailMode = "open"
    key: KeyFn | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        self.setup_name()
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ConfigurationError(f"Concurrency.limit must be an int >= 1, got {self.limit!r}")
        if isinstance(self.lease, bool) or not isinstance(self.lease, (int, float)) or self.lease < 0.3:
            raise ConfigurationError(f"Concurrency.lease must be a number of seconds >= 0.3, got {self.lease!r}")
        check_fail_mode("Concurrency", self.on_redis_error)

    @property
    def lease_ms(self) -> int:
        return int(self.lease * 1000)

    def config(self) -> dict[str, str]:
        return {"type": "concurrency", "limit": str(self.limit), "lease": f"{self.lease:g}",
                "on_redis_error": self.on_redis_error}

    def try_acquire(self, client: Any, keys: Keys, ctx: JobContext | None, name: str | None = None) -> Decision:
        name = self.name_for(name)
        lease_id = f"{os.getpid()}:{uuid.uuid4().hex[:16]}"
        granted, wait_ms = LimitStore(client, keys).concurrency_acquire(
            name, limit=self.limit, lease_ms=self.lease_ms, lease_id=lease_id, idle_ms=self.idle_ms()
        )
        if not granted:
            return Decision.deny(wait_ms / 1000, f"concurrency limit {name}", key=name)
        RENEWER.add(lease_id, self, client, keys, name)
        return Decision.grant(lease_id, key=name)

    def give_back(self, client: Any, keys: Keys, decision: Decision, outcome: Outcome) -> None:
        if decision.token is None:
            return
        RENEWER.remove(decision.token)
        LimitStore(client, keys).concurrency_release(
            self.name_for(decision.key), lease_id=decision.token, held_ms=int(outcome.duration * 1000)
        )

    def renew(self, client: Any, keys: Keys, lease_id: str, name: str | None = None) -> bool:
        """Extend a held lease; False when it had already expired and been reclaimed."""
        return LimitStore(client, keys).concurrency_renew(
            self.name_for(name), lease_id=lease_id, lease_ms=self.lease_ms
        )


class LeaseRenewer:
    """One daemon thread per process renewing held concurrency leases every third of their length."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[Concurrency, Any, Keys, float, str]] = {}
        self._lock = threading.Lock()
        self._pid: int | None = None

    def add(self, lease_id: str, policy: Concurrency, client: Any, keys: Keys, name: str | None = None) -> None:
        """Renew ``lease_id`` of ``name`` (the rendered name; the policy's own by default)."""
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._held = os.getpid(), {}
                threading.Thread(target=self._run, name="stalwart-limit-leases", daemon=True).start()
            self._held[lease_id] = (policy, client, keys, time.monotonic(), name or policy.name)

    def remove(self, lease_id: str) -> None:
        with self._lock:
            self._held.pop(lease_id, None)

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def _run(self) -> None:
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            with self._lock:
                due = [(k, v) for k, v in self._held.items() if now - v[3] >= v[0].lease / 3]
            for lease_id, (policy, client, keys, _since, name) in due:
                self._renew(lease_id, policy, client, keys, name)

    def _renew(self, lease_id: str, policy: Concurrency, client: Any, keys: Keys, name: str) -> None:
        try:
            kept = policy.renew(client, keys, lease_id, name)
        except STORE_ERRORS as exc:
            note_redis_error(policy.family, exc)
            return
        with self._lock:
            if lease_id in self._held:
                self._held[lease_id] = (policy, client, keys, time.monotonic(), name)
        if not kept:
            log.warning("concurrency %s: lease %s expired before renewal; the slot was reclaimed", name, lease_id)


RENEWER = LeaseRenewer()


def limit_names(client: Any, keys: Keys) -> list[str]:
    return LimitStore(client, keys).names("limits")


def limit_status(client: Any, keys: Keys, name: str) -> dict[str, Any] | None:
    """What an operator needs to see about one limit, template (with its busiest keys) or rendered
    key; None when no limit has that name."""
    return survey.limit_status(client, keys, name)
