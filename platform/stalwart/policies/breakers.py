"""Circuit breakers whose state every worker shares, each transition one atomic script (DESIGN §3.6).

Closed: calls are counted in per-second buckets over ``window`` seconds; once at least
``min_calls`` were made and the failure rate (or the slow-call rate) reaches its threshold, the
breaker opens. Open: calls are denied (the envelope defers the job, or runs its ``fallback``)
until ``open_for`` seconds have passed. Half-open: at most ``half_open_probes`` calls in flight
across all workers, each reserved with a TTL so a crashed prober frees its slot; that many
successes close it, one failure opens it again. All times are Redis server milliseconds.

Only exceptions in ``failure_on`` (and not in ``ignore``) count as dependency failures: a bad
input is the caller's fault, not the dependency's. ``ignore`` calls are not counted at all; other
exceptions count as successful calls (the dependency answered).

``Breaker("smtp:{provider}", ...)`` (or ``key=`` a callable of the task's arguments) keeps one
breaker per rendered key: one provider's failures open only its own breaker. A rendered key's
state expires :data:`~stalwart.store.limits.KEY_IDLE_MS` after its last transition.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from stalwart.errors import CircuitOpen, ConfigurationError, Permanent, RetryAfter
from stalwart.job.classify import ExplicitRetry
from stalwart.job.context import JobContext, Outcome
from stalwart.policies.keyed import KeyFn
from stalwart.policies.permits import Decision
from stalwart.policies.retry import ExceptionTypes, exception_types
from stalwart.policies.shared import FailMode, SharedPolicy, check_fail_mode
from stalwart.policies.survey import breaker_admin
from stalwart.store.breakers import AdminOp, BreakerParams, BreakerStore
from stalwart.store.keys import Keys

CallKind = Literal["success", "failure", "ignore"]
STATES = ("closed", "open", "half_open", "forced_open")
CALL_PREFIX = "call:"  # marks a closed-state call's in-flight slot in a Decision token
MAX_WINDOW = 3600  # seconds; the failure window is a ring of one bucket per second


def _positive(where: str, value: object, minimum: float = 0.0, *, integer: bool = False) -> None:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or float(value) < minimum:  # type: ignore[arg-type]
        what = "an int" if integer else "a number"
        raise ConfigurationError(f"Breaker.{where} must be {what} >= {minimum:g}, got {value!r}")


def _rate(where: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigurationError(f"Breaker.{where} must be a fraction in (0, 1], got {value!r}")


@dataclass(frozen=True)
class Breaker(SharedPolicy):
    """A circuit breaker guarding one dependency, shared by every worker that names it."""

    kind: ClassVar[str] = "breakers"
    denied_error: ClassVar[type[RetryAfter]] = CircuitOpen
    name: str
    failure_rate: float = 0.5
    window: int = 30
    min_calls: int = 10
    slow_call_seconds: float | None = None
    slow_call_rate: float | None = None
    open_for: float = 30.0
    half_open_probes: int = 1
    probe_ttl: float = 60.0
    failure_on: ExceptionTypes = (Exception,)
    ignore: ExceptionTypes = (Permanent,)
    on_redis_error: FailMode = "open"
    key: KeyFn | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        self.setup_name()
        _rate("failure_rate", self.failure_rate)
        _positive("window", self.window, 1, integer=True)
        if self.window > MAX_WINDOW:  # the bucket ring holds one slot per second of the window
            raise ConfigurationError(f"Breaker.window must be at most {MAX_WINDOW} seconds, got {self.window!r}")
        _positive("min_calls", self.min_calls, 1, integer=True)
        _positive("open_for", self.open_for, 0.01)
        _positive("half_open_probes", self.half_open_probes, 1, integer=True)
        _positive("probe_ttl", self.probe_ttl, 0.1)
        if (self.slow_call_seconds is None) != (self.slow_call_rate is None):
            raise ConfigurationError("Breaker.slow_call_seconds and slow_call_rate go together: give both or neither")
        if self.slow_call_seconds is not None:
            _positive("slow_call_seconds", self.slow_call_seconds, 0.0)
            _rate("slow_call_rate", self.slow_call_rate)
        object.__setattr__(self, "failure_on", exception_types("Breaker.failure_on", self.failure_on))
        object.__setattr__(self, "ignore", exception_types("Breaker.ignore", self.ignore) if self.ignore else ())
        check_fail_mode("Breaker", self.on_redis_error)

    def config(self) -> dict[str, str]:
        return {
            "failure_rate": f"{self.failure_rate:g}", "window": str(self.window),
            "min_calls": str(self.min_calls), "open_for": f"{self.open_for:g}",
            "half_open_probes": str(self.half_open_probes), "probe_ttl": f"{self.probe_ttl:g}",
            "slow_call_seconds": "-" if self.slow_call_seconds is None else f"{self.slow_call_seconds:g}",
            "slow_call_rate": "-" if self.slow_call_rate is None else f"{self.slow_call_rate:g}",
            "failure_on": ",".join(t.__name__ for t in self.failure_on),
            "ignore": ",".join(t.__name__ for t in self.ignore),
            "on_redis_error": self.on_redis_error,
        }

    def classify(self, outcome: Outcome) -> CallKind:
        """Whether a finished call was a dependency failure, a success, or not a call at all."""
        if outcome.kind in ("deferred", "skipped"):
            return "ignore"
        exc = outcome.exc
        if isinstance(exc, ExplicitRetry) and exc.exc is not None:
            exc = exc.exc
        if exc is None:
            return "success" if outcome.kind == "succeeded" else "ignore"
        if self.ignore and isinstance(exc, self.ignore):
            return "ignore"
        if isinstance(exc, self.failure_on) or type(exc).__name__ == "SoftTimeLimitExceeded":
            return "failure"
        return "success"

    def is_slow(self, outcome: Outcome) -> bool:
        return self.slow_call_seconds is not None and outcome.duration >= self.slow_call_seconds

    def params(self) -> BreakerParams:
        return BreakerParams(
            window=self.window, min_calls=self.min_calls, failure_rate=self.failure_rate,
            slow_call_rate=self.slow_call_rate, open_ms=int(self.open_for * 1000),
            probes=self.half_open_probes, probe_ttl_ms=int(self.probe_ttl * 1000),
            busy_wait_ms=max(50, min(1000, int(self.open_for * 100))),
        )

    def try_acquire(self, client: Any, keys: Keys, ctx: JobContext | None, name: str | None = None) -> Decision:
        name = self.name_for(name)
        slot_id = uuid.uuid4().hex
        got = BreakerStore(client, keys).acquire(name, slot_id, self.params(), idle_ms=self.idle_ms())
        if ctx is not None:
            ctx.breaker_states[name] = got.state
        if got.granted:
            return Decision.grant(slot_id if got.probe else f"{CALL_PREFIX}{slot_id}", key=name)
        if got.state == "closed":  # calls already out could trip it: wait for their verdict
            return Decision.deny(got.wait_ms / 1000, f"breaker {name} verdict pending", key=name)
        reason = f"breaker {name} {got.state.replace('_', '-')}"
        return Decision.deny(got.wait_ms / 1000, reason, fallback=True, key=name)

    def give_back(self, client: Any, keys: Keys, decision: Decision, outcome: Outcome) -> None:
        self.record(client, keys, self.classify(outcome), self.is_slow(outcome), decision.token, decision.key)

    def record(self, client: Any, keys: Keys, kind: CallKind, slow: bool = False,
               probe_id: str | None = None, name: str | None = None) -> str:
        """Count one call's outcome and make any transition it implies; returns the new state.

        ``probe_id`` is the granted decision's token: a half-open probe's slot, or (prefixed
        ``call:``) the in-flight slot of a closed-state call. ``name``: the rendered key.
        """
        call_id = ""
        if probe_id is not None and probe_id.startswith(CALL_PREFIX):
            call_id, probe_id = probe_id[len(CALL_PREFIX):], None
        return BreakerStore(client, keys).record(
            self.name_for(name), self.params(), kind=kind, slow=slow, probe_id=probe_id or "", call_id=call_id,
            idle_ms=self.idle_ms(),
        )


def admin(client: Any, keys: Keys, name: str, op: AdminOp) -> str:
    """Operator control of a fixed breaker or one rendered key: force open (a maintenance switch),
    close, or reset; returns the new state."""
    return breaker_admin(client, keys, name, op)


def status(client: Any, keys: Keys, name: str) -> dict[str, Any]:
    """What an operator needs to see about one breaker, read from the state store."""
    return BreakerStore(client, keys).status(name)
