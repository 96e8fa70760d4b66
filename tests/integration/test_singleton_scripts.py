"""Property tests of the singleton scripts on a real redis-server, on the Redis clock.

Random sequences of enqueues (published or failed), job starts, ends, renewals, holder deaths,
clock advances and lost records, against a model: never two live holders of a key's slot; a
merged enqueue is always handed a job that has not started; at most one waiting job, plus one
per time the records were lost; every key has a TTL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalwart.store.flow import SingletonStore
from stalwart.store.keys import Keys

pytestmark = pytest.mark.integration

LEASE, TTL = 40, 60_000
KEY = st.sampled_from("ab")
OPS = st.lists(st.one_of(
    st.tuples(st.just("enqueue"), KEY, st.booleans()),
    st.tuples(st.just("start"), KEY, st.integers(0, 3)),
    st.tuples(st.just("end"), KEY, st.just(0)),
    st.tuples(st.just("kill"), KEY, st.just(0)),
    st.tuples(st.just("renew"), KEY, st.just(0)),
    st.tuples(st.just("lose"), KEY, st.just(0)),
    st.tuples(st.just("sleep"), KEY, st.integers(0, 60)),
), max_size=35)


def now_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


@dataclass
class Holder:
    job: str
    token: str
    renewed_before: int
    dead: bool = False
    lost_since: bool = False  # the records were lost after its last renewal


@dataclass
class Key:
    created: list[str] = field(default_factory=list)  # published by an enqueue, not started yet
    redelivered: list[str] = field(default_factory=list)  # a dead holder's job, to run again
    holders: list[Holder] = field(default_factory=list)
    losses: int = 0


class Run:
    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self.store = SingletonStore(r, Keys("stalwart"))
        self.keys = {"a": Key(), "b": Key()}
        self.serial = 0

    def enqueue(self, k: str, published: bool) -> None:
        state = self.keys[k]
        self.serial += 1
        fresh = f"job-{self.serial}"
        code, task_id = self.store.claim("t", k, new_id=fresh, ttl_ms=TTL, pending_ms=5000, stale_ms=600_000)
        if code == "merged":  # handed a job that will still run: it has not started
            assert task_id in state.created or task_id in state.redelivered
            return
        assert (code, task_id) == ("claimed", fresh)
        self.store.settle("t", k, fresh, published=published, ttl_ms=TTL)
        if published:
            state.created.append(fresh)
            assert len(state.created) <= 1 + state.losses  # one waiting job (plus one per loss)

    def start(self, k: str, pick: int) -> None:
        state = self.keys[k]
        queue = state.created + state.redelivered
        if not queue:
            return
        job = queue[pick % len(queue)]
        self.serial += 1
        token = f"{job}:{self.serial}"
        before = now_ms(self.r)
        granted, wait = self.store.acquire("t", k, task_id=job, token=token, lease_ms=LEASE, ttl_ms=TTL,
                                           max_retry_ms=1000)
        after = now_ms(self.r)
        if not granted:
            assert 0 < wait <= LEASE
            return
        for other in state.holders:  # another holder may only be one whose lease ran out
            assert other.dead or other.lost_since
            assert other.lost_since or after >= other.renewed_before + LEASE
        state.holders = [h for h in state.holders if not h.dead and not h.lost_since]
        state.holders.append(Holder(job, token, before))
        (state.created if job in state.created else state.redelivered).remove(job)

    def live(self, k: str) -> Holder | None:
        found = [h for h in self.keys[k].holders if not h.dead]
        return found[-1] if found else None

    def apply(self, op: str, k: str, arg: int | bool) -> None:
        state, holder = self.keys[k], self.live(k)
        if op == "enqueue":
            self.enqueue(k, bool(arg))
        elif op == "start":
            self.start(k, int(arg))
        elif op == "end" and holder is not None:
            self.store.release("t", k, holder.token)
            state.holders.remove(holder)
        elif op == "kill" and holder is not None:
            holder.dead = True
            state.redelivered.append(holder.job)
        elif op == "renew" and holder is not None:
            before = now_ms(self.r)
            if self.store.renew("t", k, holder.token, lease_ms=LEASE, ttl_ms=TTL):
                holder.renewed_before, holder.lost_since = before, False
        elif op == "lose":
            self.r.delete(self.store.key("t", k))
            state.losses += 1
            for h in state.holders:
                h.lost_since = True
        elif op == "sleep":
            time.sleep(int(arg) / 1000)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=OPS)
def test_one_holder_one_waiting_and_no_merge_into_a_started_job(
    r: redis.Redis, ops: list[tuple[str, str, int | bool]]
) -> None:
    r.flushall()
    run = Run(r)
    for op, k, arg in ops:
        run.apply(op, k, arg)
    keys = list(r.scan_iter("*"))
    assert len(keys) <= 2  # one hash per key
    assert all(int(r.pttl(k)) > 0 for k in keys)  # every key has a TTL
