"""Property tests of the debounce scripts on a real redis-server, on the Redis clock.

Random sequences of enqueues, clock advances and trigger firings (including a trigger that dies
after closing its burst and is delivered again) against a model: every enqueue of an open burst
gets its id, a burst runs once with its latest call, never before it is due and always once
``wait`` after its last enqueue or ``max_wait`` after its first has passed; every key has a TTL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalwart.store.flow import DebounceStore
from stalwart.store.keys import Keys

pytestmark = pytest.mark.integration

WAIT, MAX_WAIT, TTL = 20, 50, 60_000
OPS = st.lists(st.one_of(
    st.tuples(st.just("enqueue"), st.sampled_from("ab")),
    st.tuples(st.just("sleep"), st.integers(0, 35)),
    st.tuples(st.just("fire"), st.sampled_from("ab")),
    st.tuples(st.just("fire_and_die"), st.sampled_from("ab")),
    st.tuples(st.just("fire_old"), st.sampled_from("ab")),
), max_size=30)


def now_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


@dataclass
class Burst:
    id: str
    first_before: int
    first_after: int
    last_before: int = 0
    last_after: int = 0
    call: str = ""


@dataclass
class Model:
    open: dict[str, Burst] = field(default_factory=dict)
    closed: dict[str, str] = field(default_factory=dict)  # burst id -> call, closed not published
    ran: dict[str, str] = field(default_factory=dict)  # burst id -> call it ran with
    seen: set[str] = field(default_factory=set)
    serial: int = 0


def enqueue(r: redis.Redis, store: DebounceStore, model: Model, key: str) -> None:
    model.serial += 1
    call, fresh = f"call-{model.serial}", f"id-{model.serial}"
    before = now_ms(r)
    joined = store.enqueue("t", key, new_id=fresh, wait_ms=WAIT, max_wait_ms=MAX_WAIT, call=call, ttl_ms=TTL,
                           rearm_ms=10_000)
    after = now_ms(r)
    burst = model.open.get(key)
    if burst is None:
        assert joined.new
        assert joined.burst_id == fresh
        assert fresh not in model.seen
        burst = model.open[key] = Burst(fresh, before, after)
    else:
        assert not joined.new
        assert joined.burst_id == burst.id  # an open burst is joined, whatever its age
    model.seen.add(joined.burst_id)
    burst.last_before, burst.last_after, burst.call = before, after, call


def fire(r: redis.Redis, store: DebounceStore, model: Model, key: str, *, die: bool) -> None:
    burst = model.open.get(key)
    if burst is None:
        return
    before = now_ms(r)
    verdict = store.fire("t", key, burst.id, ttl_ms=TTL, rearm_ms=10_000)
    after = now_ms(r)
    due_at_latest = min(burst.last_after + WAIT, burst.first_after + MAX_WAIT)
    due_at_earliest = min(burst.last_before + WAIT, burst.first_before + MAX_WAIT)
    if verdict.action == "wait":
        assert before < due_at_latest  # a due burst is never kept waiting
        assert 0 < verdict.wait_ms <= WAIT
        return
    assert verdict.action == "run"
    assert after >= due_at_earliest  # never run before it is due
    assert verdict.call == burst.call  # the latest call of the burst
    del model.open[key]
    if die:  # the trigger dies before publishing; its redelivery publishes the same call
        again = store.fire("t", key, burst.id, ttl_ms=TTL, rearm_ms=10_000)
        assert (again.action, again.call) == ("run", burst.call)
    assert burst.id not in model.ran
    model.ran[burst.id] = burst.call
    assert store.done("t", key, burst.id)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=OPS)
def test_bursts_run_once_with_their_latest_call_on_time(r: redis.Redis, ops: list[tuple[str, object]]) -> None:
    r.flushall()
    store, model = DebounceStore(r, Keys("stalwart")), Model()
    for op, arg in ops:
        if op == "enqueue":
            enqueue(r, store, model, str(arg))
        elif op == "sleep":
            time.sleep(int(arg) / 1000)  # type: ignore[call-overload]
        elif op == "fire_old":
            gone = [b for b in model.ran if b not in {x.id for x in model.open.values()}]
            if gone:  # a stale trigger of a burst that already ran does nothing
                assert store.fire("t", str(arg), gone[-1], ttl_ms=TTL, rearm_ms=10_000).action == "gone"
        else:
            fire(r, store, model, str(arg), die=op == "fire_and_die")
    keys = list(r.scan_iter("*"))
    assert len(keys) <= 4  # a burst and a closed hash per key, at most
    assert all(int(r.pttl(k)) > 0 for k in keys)  # every key has a TTL
