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
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .errors import CircuitOpen, ConfigurationError, Permanent, RetryAfter
from .job import JobContext, Outcome
from .keys import Keys
from .limits import FailMode, SharedPolicy, check_fail_mode, check_name, decode
from .permits import Decision
from .policies import ExceptionTypes, _exception_types
from .redis.scripts import load_script
from .retry import ExplicitRetry

CallKind = Literal["success", "failure", "ignore"]
STATES = ("closed", "open", "half_open", "forced_open")
CALL_PREFIX = "call:"  # marks a closed-state call's in-flight slot in a Decision token


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

    def __post_init__(self) -> None:
        check_name("Breaker", self.name)
        _rate("failure_rate", self.failure_rate)
        _positive("window", self.window, 1, integer=True)
        _positive("min_calls", self.min_calls, 1, integer=True)
        _positive("open_for", self.open_for, 0.01)
        _positive("half_open_probes", self.half_open_probes, 1, integer=True)
        _positive("probe_ttl", self.probe_ttl, 0.1)
        if (self.slow_call_seconds is None) != (self.slow_call_rate is None):
            raise ConfigurationError("Breaker.slow_call_seconds and slow_call_rate go together: give both or neither")
        if self.slow_call_seconds is not None:
            _positive("slow_call_seconds", self.slow_call_seconds, 0.0)
            _rate("slow_call_rate", self.slow_call_rate)
        object.__setattr__(self, "failure_on", _exception_types("Breaker.failure_on", self.failure_on))
        object.__setattr__(self, "ignore", _exception_types("Breaker.ignore", self.ignore) if self.ignore else ())
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

    def keys_for(self, keys: Keys) -> list[str]:
        return [keys.breaker(self.name, "state"), keys.breaker(self.name, "probes"),
                keys.breaker(self.name, "buckets"), keys.breaker(self.name, "inflight")]

    def try_acquire(self, client: Any, keys: Keys, ctx: JobContext | None) -> Decision:
        slot_id = uuid.uuid4().hex
        busy_wait_ms = max(50, min(1000, int(self.open_for * 100)))
        granted, wait_ms, state, probe = load_script("breaker_acquire")(
            client, self.keys_for(keys),
            [self.half_open_probes, int(self.probe_ttl * 1000), slot_id, busy_wait_ms,
             self.window, self.min_calls, f"{self.failure_rate:g}"],
        )
        state = decode(state)
        if ctx is not None:
            ctx.breaker_states[self.name] = state
        if int(granted):
            return Decision.grant(slot_id if int(probe) else f"{CALL_PREFIX}{slot_id}")
        if state == "closed":  # calls already out could trip it: wait for their verdict
            return Decision.deny(int(wait_ms) / 1000, f"breaker {self.name} verdict pending")
        reason = f"breaker {self.name} {state.replace('_', '-')}"
        return Decision.deny(int(wait_ms) / 1000, reason, fallback=True)

    def give_back(self, client: Any, keys: Keys, decision: Decision, outcome: Outcome) -> None:
        self.record(client, keys, self.classify(outcome), self.is_slow(outcome), decision.token)

    def record(self, client: Any, keys: Keys, kind: CallKind, slow: bool = False,
               probe_id: str | None = None) -> str:
        """Count one call's outcome and make any transition it implies; returns the new state.

        ``probe_id`` is the granted decision's token: a half-open probe's slot, or (prefixed
        ``call:``) the in-flight slot of a closed-state call.
        """
        call_id = ""
        if probe_id is not None and probe_id.startswith(CALL_PREFIX):
            call_id, probe_id = probe_id[len(CALL_PREFIX):], None
        state = load_script("breaker_record")(
            client, self.keys_for(keys),
            [kind, int(slow), probe_id or "", self.window, self.min_calls, f"{self.failure_rate:g}",
             -1 if self.slow_call_rate is None else f"{self.slow_call_rate:g}",
             int(self.open_for * 1000), self.half_open_probes, call_id],
        )
        return decode(state)


def admin(client: Any, keys: Keys, name: str, op: Literal["force_open", "close", "reset"]) -> str:
    """Operator control: force open (a maintenance switch), close, or reset; returns the new state."""
    check_name("Breaker", name)
    parts = [keys.breaker(name, p) for p in ("state", "probes", "buckets", "inflight")]
    return decode(load_script("breaker_admin")(client, parts, [op]))


def status(client: Any, keys: Keys, name: str) -> dict[str, Any]:
    """What an operator needs to see about one breaker, read from the state store."""
    sec, usec = client.time()
    now_ms = int(sec) * 1000 + int(usec) // 1000
    state = {decode(k): decode(v) for k, v in client.hgetall(keys.breaker(name, "state")).items()}
    config = {decode(k): decode(v) for k, v in client.hgetall(keys.breaker(name, "config")).items()}
    buckets = {decode(k): int(v) for k, v in client.hgetall(keys.breaker(name, "buckets")).items()}
    probes = client.zcount(keys.breaker(name, "probes"), now_ms, "+inf")
    window = int(config.get("window", "30"))
    totals = {"c": 0, "f": 0, "s": 0}
    for field, count in buckets.items():
        second, _, what = field.partition(":")
        if second.isdigit() and int(second) > int(sec) - window and what in totals:
            totals[what] += count
    open_until = int(state["open_until"]) if state.get("open_until") else None
    return {
        "name": name,
        "state": state.get("state", "closed"),
        "reason": state.get("reason", ""),
        "opened_at": int(state["opened_at"]) if state.get("opened_at") else None,
        "open_until": open_until,
        "half_open_in": max(0.0, (open_until - now_ms) / 1000) if open_until and state.get("state") == "open" else None,
        "calls": totals["c"],
        "failures": totals["f"],
        "slow_calls": totals["s"],
        "failure_rate": round(totals["f"] / totals["c"], 4) if totals["c"] else 0.0,
        "probes_in_flight": int(probes),
        "transitions": int(state.get("transitions", "0")),
        "config": config,
    }
