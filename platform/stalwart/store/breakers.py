"""Circuit breaker state, under the ``{breaker:<name>}`` hash tag.

The name is a fixed name or one rendered key of a per-key template (``{breaker:smtp:sendgrid}``:
each rendered key is its own breaker under its own hash tag). Keys, and what bounds each:

- ``state`` hash (state, reason, opened_at, open_until, transitions, ...): expires ``idle_ms``
  after its last transition (an open breaker: after ``open_until`` plus that), where ``idle_ms``
  is :data:`IDLE_TTL_MS` for a fixed name and :data:`~stalwart.store.limits.KEY_IDLE_MS` for a
  rendered key; a breaker an operator forced open has no TTL until an operator closes or resets
  it (an operator's action, one key at a time, never a job's).
- ``probes`` zset (half-open probe id → expiry ms) and ``inflight`` zset (closed-state call id →
  expiry ms): bounded by the calls in flight, expired entries dropped on every acquire, and a TTL
  of two slot lifetimes.
- ``buckets`` hash: a ring of ``window`` one-second slots (``<second % window>:t`` = the second a
  slot counts, ``:c``/``:f``/``:s`` = its calls, failures and slow calls) plus running totals over
  the window (``sum:c|f|s``, ``swept``, ``w``), so at most 4 * ``window`` + 5 fields (``window`` is
  at most 3600) however many days of traffic it sees, an O(1) amortised cost per call, and a TTL
  of ``window`` + 5 s.
- ``config`` hash (fixed names only; a template's settings live in its ``template`` hash, and its
  busiest keys in its capped ``keys`` set, see :mod:`stalwart.store.limits`): written by
  :meth:`stalwart.store.limits.LimitStore.register`, with a TTL of :data:`IDLE_TTL_MS` renewed
  while the breaker is used.

Only the ``breaker_*`` scripts write state; this module is also the one reader of the bucket format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from stalwart.store.keys import Keys
from stalwart.store.limits import IDLE_TTL_MS, KEY_IDLE_MS, LimitStore
from stalwart.store.scripts import as_int, guarded, script, text, text_map

AdminOp = Literal["force_open", "close", "reset"]


@dataclass(frozen=True)
class Acquired:
    granted: bool
    wait_ms: int
    state: str
    probe: bool


@dataclass(frozen=True)
class BreakerParams:
    """A breaker's settings as its scripts take them."""

    window: int
    min_calls: int
    failure_rate: float
    slow_call_rate: float | None
    open_ms: int
    probes: int
    probe_ttl_ms: int
    busy_wait_ms: int


def window_totals(buckets: dict[str, int], now_s: int, window: int) -> dict[str, int]:
    """Calls (c), failures (f) and slow calls (s) in the last ``window`` seconds of the ring."""
    slots: dict[str, dict[str, int]] = {}
    for field, count in buckets.items():
        slot, _, what = field.partition(":")
        if slot.isdigit():
            slots.setdefault(slot, {})[what] = count
    totals = {"c": 0, "f": 0, "s": 0}
    for counts in slots.values():
        second = counts.get("t")
        if second is not None and now_s - window < second <= now_s:
            for what in totals:
                totals[what] += counts.get(what, 0)
    return totals


class BreakerStore:
    """Every read and write of breaker state. ``client`` may be a Redis or RedisCluster client."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def _keys(self, name: str) -> list[str]:
        return [self.keys.breaker(name, p) for p in ("state", "probes", "buckets", "inflight")]

    @guarded
    def acquire(self, name: str, slot_id: str, p: BreakerParams, *, idle_ms: int = IDLE_TTL_MS) -> Acquired:
        granted, wait_ms, state, probe = script("breaker_acquire")(
            self.client, self._keys(name),
            [p.probes, p.probe_ttl_ms, slot_id, p.busy_wait_ms, p.window, p.min_calls, f"{p.failure_rate:g}",
             idle_ms],
        )
        return Acquired(bool(int(granted)), int(wait_ms), text(state), bool(int(probe)))

    @guarded
    def record(self, name: str, p: BreakerParams, *, kind: str, slow: bool, probe_id: str, call_id: str,
               idle_ms: int = IDLE_TTL_MS) -> str:
        """Count one call's outcome and make the transition it implies; the state after it."""
        return text(script("breaker_record")(
            self.client, self._keys(name),
            [kind, int(slow), probe_id, p.window, p.min_calls, f"{p.failure_rate:g}",
             -1 if p.slow_call_rate is None else f"{p.slow_call_rate:g}", p.open_ms, p.probes, call_id,
             idle_ms],
        ))

    @guarded
    def admin(self, name: str, op: AdminOp, family: str | None = None) -> str:
        """An operator's force-open, close or reset; the breaker is listed from then on (a rendered
        key of template ``family``: among that template's busiest keys, never in the registry)."""
        idle_ms = IDLE_TTL_MS if family is None else KEY_IDLE_MS
        state = text(script("breaker_admin")(self.client, self._keys(name), [op, idle_ms]))
        if family is None:
            LimitStore(self.client, self.keys).touch("breakers", name)
        else:
            LimitStore(self.client, self.keys).note_key("breakers", family, name)
        return state

    @guarded
    def state(self, name: str) -> str:
        """The state alone (closed when the breaker has none yet)."""
        raw = self.client.hget(self.keys.breaker(name, "state"), "state")
        return text(raw).replace("-", "_") if raw else "closed"

    @guarded
    def status(self, name: str, config: dict[str, str] | None = None) -> dict[str, Any]:
        """What an operator needs to see about one breaker (a rendered key: pass its template's config)."""
        sec, usec = self.client.time()
        now_ms = int(sec) * 1000 + int(usec) // 1000
        state = text_map(self.client.hgetall(self.keys.breaker(name, "state")))
        if config is None and "{" in name:  # a template: its settings, and no state of its own
            config = LimitStore(self.client, self.keys).template_config("breakers", name)
        elif config is None:
            config = text_map(self.client.hgetall(self.keys.breaker(name, "config")))
        buckets = {k: as_int(v) for k, v in text_map(self.client.hgetall(self.keys.breaker(name, "buckets"))).items()}
        probes = self.client.zcount(self.keys.breaker(name, "probes"), now_ms, "+inf")
        totals = window_totals(buckets, int(sec), int(config.get("window", "30")))
        open_until = int(state["open_until"]) if state.get("open_until") else None
        is_open = open_until is not None and state.get("state") == "open"
        return {
            "name": name,
            "state": state.get("state", "closed"),
            "reason": state.get("reason", ""),
            "opened_at": int(state["opened_at"]) if state.get("opened_at") else None,
            "open_until": open_until,
            "half_open_in": max(0.0, (open_until - now_ms) / 1000) if is_open and open_until else None,
            "calls": totals["c"],
            "failures": totals["f"],
            "slow_calls": totals["s"],
            "failure_rate": round(totals["f"] / totals["c"], 4) if totals["c"] else 0.0,
            "probes_in_flight": int(probes),
            "transitions": as_int(state.get("transitions")),
            "config": config,
        }
