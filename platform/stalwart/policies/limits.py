"""Rate and concurrency limits shared by every worker: one Lua script per decision (DESIGN §3.7).

``RateLimit`` is GCRA with time from Redis ``TIME`` and an exact retry-after. A job the limit
defers reserves the next free slot, so a backlog comes back spread out at the limit's pace instead
of all at once (and each deferred job is usually deferred once). Slots obey ``rate * t + burst``
exactly; actual grants obey a second GCRA with a small ``slack`` for jobs that return late.
``Concurrency`` hands out leased slots (a sorted set of lease ids scored by expiry), renewed while
the job runs: the slot of a holder that died comes back when its lease runs out.

Both are envelope permits (``@app.task(limits=[...])``) and also work around one call in a body:
``with limit.hold(): ...`` or ``@limit`` on a function; a denial there raises ``LimitExceeded``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from stalwart.errors import ConfigurationError, LimitExceeded, RetryAfter, StateStoreError
from stalwart.job.context import JobContext, Outcome
from stalwart.policies.permits import Decision
from stalwart.runtime import Runtime
from stalwart.store.connection import client_from_url
from stalwart.store.keys import Keys
from stalwart.store.limits import LimitStore
from stalwart.store.scripts import text

log = logging.getLogger("stalwart.policies.limits")
F = TypeVar("F", bound=Callable[..., Any])
FailMode = Literal["open", "closed"]
UNAVAILABLE = "state store unavailable"
PERMIT_TIMEOUT = 0.5  # seconds: a permit decision never waits long on a sick Redis
HAND_ON_MS = 250  # a reserved slot its job is this late for goes to the next job that asks
CLOSED_RETRY = 1.0  # seconds a fail-closed policy defers for while Redis is unreachable
STORE_ERRORS = (StateStoreError,)

REREGISTER_SECONDS = 3600.0  # a process in use renews a policy's registry entry this often
MAX_TRACKED_NAMES = 1000  # policy names one process remembers (registrations, error counts)
OTHER = "other"  # where error counts of names past MAX_TRACKED_NAMES go

_lock = threading.Lock()
REDIS_ERRORS: dict[str, int] = {}  # policy name -> state-store errors seen by this process
_registered: OrderedDict[tuple[int, str, str], float] = OrderedDict()  # -> monotonic time registered
_stores: weakref.WeakKeyDictionary[Runtime, Any] = weakref.WeakKeyDictionary()


_set_aside: list[Any] = []  # a forked child's inherited permit clients: never used, never closed


def _fresh_in_child() -> None:
    """A forked child gets its own lock and its own permit clients (see stalwart.runtime); the
    inherited ones are kept unclosed (closing takes a pool lock the fork may have copied held)."""
    global _lock, _stores  # noqa: PLW0603 - module state, replaced in a forked child
    _lock = threading.Lock()
    _set_aside.append(_stores)
    _stores = weakref.WeakKeyDictionary()


os.register_at_fork(after_in_child=_fresh_in_child)


def redis_errors() -> dict[str, int]:
    """State-store errors per policy name in this process (for the metrics endpoint); at most
    MAX_TRACKED_NAMES names, the rest counted under ``other``."""
    with _lock:
        return dict(REDIS_ERRORS)


def note_redis_error(name: str, exc: BaseException) -> None:
    with _lock:
        label = name if name in REDIS_ERRORS or len(REDIS_ERRORS) < MAX_TRACKED_NAMES else OTHER
        REDIS_ERRORS[label] = REDIS_ERRORS.get(label, 0) + 1
    log.warning("policy %s: state store error: %s", name, exc)


def store(runtime: Runtime) -> Any:
    """The runtime's state store with a short timeout, for permit decisions."""
    client = _stores.get(runtime)
    if client is None:
        timeout = min(runtime.settings.redis_timeout_seconds, PERMIT_TIMEOUT)
        client = _stores[runtime] = client_from_url(runtime.settings.redis_url, timeout)
    return client


def decode(value: Any) -> str:
    return text(value)


def check_fail_mode(where: str, mode: object) -> None:
    if mode not in ("open", "closed"):
        raise ConfigurationError(f"{where}.on_redis_error must be 'open' or 'closed', got {mode!r}")


def check_name(where: str, name: object) -> None:
    if not isinstance(name, str) or not name or any(c in name for c in "{} "):
        raise ConfigurationError(f"{where}.name must be a non-empty str without braces or spaces, got {name!r}")


class SharedPolicy:
    """What limits and breakers share: envelope permit, in-body use, Redis-trouble handling."""

    kind: ClassVar[str]
    denied_error: ClassVar[type[RetryAfter]] = LimitExceeded
    name: str
    on_redis_error: FailMode

    def config(self) -> dict[str, str]:
        raise NotImplementedError

    def try_acquire(self, client: Any, keys: Keys, ctx: JobContext | None) -> Decision:
        """The decision itself, on any client (Redis or RedisCluster); may raise RedisError."""
        raise NotImplementedError

    def give_back(self, client: Any, keys: Keys, decision: Decision, outcome: Outcome) -> None:
        """Release a granted permit; may raise RedisError."""

    def register(self, client: Any, keys: Keys, clock: Callable[[], float] = time.monotonic) -> None:
        """Record the name and settings so the CLI can list it: once per process and hour while
        in use (the registry forgets names unused for days), remembering a bounded set of names."""
        marker = (id(client), self.kind, self.name)
        now = clock()
        with _lock:
            last = _registered.get(marker)
        if last is not None and now - last < REREGISTER_SECONDS:
            return
        LimitStore(client, keys).register(self.kind, self.name, self.config())
        with _lock:
            _registered[marker] = now
            _registered.move_to_end(marker)
            while len(_registered) > MAX_TRACKED_NAMES:
                _registered.popitem(last=False)

    def acquire(self, runtime: Runtime, ctx: JobContext | None) -> Decision:
        try:
            client = store(runtime)  # a cluster client connects here: inside the fail-open/closed rule
            self.register(client, runtime.keys)
            return self.try_acquire(client, runtime.keys, ctx)
        except STORE_ERRORS as exc:
            note_redis_error(self.name, exc)
            if self.on_redis_error == "open":
                return Decision(True, reason=UNAVAILABLE)
            return Decision.deny(CLOSED_RETRY, f"{self.name}: {UNAVAILABLE}")

    def release(self, runtime: Runtime, ctx: JobContext | None, decision: Decision, outcome: Outcome) -> None:
        if not decision.granted or decision.reason == UNAVAILABLE:
            return
        try:
            self.give_back(store(runtime), runtime.keys, decision, outcome)
        except STORE_ERRORS as exc:
            note_redis_error(self.name, exc)

    @contextmanager
    def hold(self, runtime: Runtime | None = None) -> Iterator[Decision]:
        """Hold a permit around a block inside a task body; denied → raise ``denied_error``."""
        if runtime is None:
            from celery import current_app  # noqa: PLC0415 - only needed in task bodies

            runtime = getattr(current_app, "stalwart", None)
            if runtime is None:
                raise ConfigurationError(f"{self.name}: hold() needs a Stalwart app or a runtime")
        decision = self.acquire(runtime, None)
        if not decision.granted:
            raise self.denied_error(decision.retry_after, decision.reason)
        started = time.monotonic()
        try:
            yield decision
        except BaseException as exc:
            self.release(runtime, None, decision, Outcome("retried", time.monotonic() - started, exc))
            raise
        self.release(runtime, None, decision, Outcome("succeeded", time.monotonic() - started))

    def __call__(self, fn: F) -> F:
        """Use the policy as a decorator: every call of ``fn`` holds a permit."""

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            with self.hold():
                return fn(*args, **kwargs)

        return guarded  # type: ignore[return-value]


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
    """At most ``rate`` calls (e.g. ``"100/s"``), plus ``burst`` at once; one budget per name."""

    kind: ClassVar[str] = "limits"
    name: str
    rate: str
    burst: int = 1
    on_redis_error: FailMode = "open"
    count: int = field(init=False, repr=False, compare=False)
    period: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_name("RateLimit", self.name)
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

    def try_acquire(self, client: Any, keys: Keys, ctx: JobContext | None) -> Decision:
        member = ctx.job_key if ctx is not None else ""
        late_ms = max(10_000.0, 2 * self.interval_ms)
        granted, wait_ms = LimitStore(client, keys).rate_acquire(
            self.name, interval_ms=self.interval_ms, burst=self.burst, member=member,
            late_ms=late_ms, slack=self.slack, hand_on_ms=HAND_ON_MS,
        )
        if granted:
            return Decision.grant()
        return Decision.deny(wait_ms / 1000, f"rate limit {self.name}")


@dataclass(frozen=True)
class Concurrency(SharedPolicy):
    """At most ``limit`` holders at once across all workers, as slots leased for ``lease`` seconds."""

    kind: ClassVar[str] = "limits"
    name: str
    limit: int
    lease: float = 30.0
    on_redis_error: FailMode = "open"

    def __post_init__(self) -> None:
        check_name("Concurrency", self.name)
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

    def try_acquire(self, client: Any, keys: Keys, ctx: JobContext | None) -> Decision:
        lease_id = f"{os.getpid()}:{uuid.uuid4().hex[:16]}"
        granted, wait_ms = LimitStore(client, keys).concurrency_acquire(
            self.name, limit=self.limit, lease_ms=self.lease_ms, lease_id=lease_id
        )
        if not granted:
            return Decision.deny(wait_ms / 1000, f"concurrency limit {self.name}")
        RENEWER.add(lease_id, self, client, keys)
        return Decision.grant(lease_id)

    def give_back(self, client: Any, keys: Keys, decision: Decision, outcome: Outcome) -> None:
        if decision.token is None:
            return
        RENEWER.remove(decision.token)
        LimitStore(client, keys).concurrency_release(
            self.name, lease_id=decision.token, held_ms=int(outcome.duration * 1000)
        )

    def renew(self, client: Any, keys: Keys, lease_id: str) -> bool:
        """Extend a held lease; False when it had already expired and been reclaimed."""
        return LimitStore(client, keys).concurrency_renew(self.name, lease_id=lease_id, lease_ms=self.lease_ms)


class LeaseRenewer:
    """One daemon thread per process renewing held concurrency leases every third of their length."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[Concurrency, Any, Keys, float]] = {}
        self._lock = threading.Lock()
        self._pid: int | None = None

    def add(self, lease_id: str, policy: Concurrency, client: Any, keys: Keys) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._held = os.getpid(), {}
                threading.Thread(target=self._run, name="stalwart-limit-leases", daemon=True).start()
            self._held[lease_id] = (policy, client, keys, time.monotonic())

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
            for lease_id, (policy, client, keys, _since) in due:
                self._renew(lease_id, policy, client, keys)

    def _renew(self, lease_id: str, policy: Concurrency, client: Any, keys: Keys) -> None:
        try:
            kept = policy.renew(client, keys, lease_id)
        except STORE_ERRORS as exc:
            note_redis_error(policy.name, exc)
            return
        with self._lock:
            if lease_id in self._held:
                self._held[lease_id] = (policy, client, keys, time.monotonic())
        if not kept:
            log.warning("concurrency %s: lease %s expired before renewal; the slot was reclaimed",
                        policy.name, lease_id)


RENEWER = LeaseRenewer()


def limit_names(client: Any, keys: Keys) -> list[str]:
    return LimitStore(client, keys).names("limits")


def limit_status(client: Any, keys: Keys, name: str) -> dict[str, Any] | None:
    """What an operator needs to see about one limit; None when no limit has that name."""
    return LimitStore(client, keys).status(name)
