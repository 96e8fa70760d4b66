"""The job hash's states and transitions, as declared in ``store/jobs.py``, hold on a real Redis.

Random sequences of every writer's operations (claims by several owners, renewals, verdicts,
crashes, commits, replay resets, leases lapsing) run against a real redis-server; each observed
change of state must be a declared transition of the writer that made it, and nothing else may
change the state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalwart.store.enqueue import EnqueueStore
from stalwart.store.jobs import NEW, STATES, TRANSITIONS, JobStore, NotHeld, job_key
from stalwart.store.keys import Keys

KEYS = Keys("proto")
KEY = "proto-1"
JOB = job_key(KEY, "")
TASKS = ("task-a", "task-b")
OWNERS = ("h1:1:m:a", "h1:1:m:b", "h2:2:m:c")
PREFIXES = ("h1:1:", "h2:2:")
TTL_MS = 60_000


@dataclass(frozen=True)
class Op:
    kind: str
    who: int = 0
    gen: int = 0
    flag: int = 0


OPS = st.one_of(
    st.builds(Op, st.just("begin"), st.integers(0, 2), st.integers(0, 3), st.integers(0, 5)),
    st.builds(Op, st.just("enqueue"), st.integers(0, 1)),
    st.builds(Op, st.just("end"), st.integers(0, 2), st.integers(0, 4), st.integers(0, 2)),
    st.builds(Op, st.just("renew"), st.integers(0, 2)),
    st.builds(Op, st.just("crashed"), st.integers(0, 1)),
    st.builds(Op, st.just("commit"), st.integers(0, 2)),
    st.builds(Op, st.just("reset")),
    st.builds(Op, st.just("lapse")),
)


def read(r: redis.Redis) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall(KEYS.job(JOB)).items()}


def begin(jobs: JobStore, r: redis.Redis, op: Op) -> bool:
    """flag % 3: 0 a live lease, 1 a lease lapsed at once, 2 past the job's deadline; flag // 3: task."""
    begun = jobs.begin(JOB, owner=OWNERS[op.who], lease_ms=0 if op.flag % 3 == 1 else 60_000, max_deliveries=3,
                       deadline_ms=1 if op.flag % 3 == 2 else None, gen=op.gen, ttl_ms=TTL_MS,
                       task_id=TASKS[op.flag // 3])
    return begun.code == "run"


def enqueue(jobs: JobStore, r: redis.Redis, op: Op) -> bool:
    """An enqueue of the key by one of two task ids; a change only when it took a dead key over."""
    taken_over = jobs.read(JOB).state == "dead" and r.get(KEYS.idem(KEY)) != TASKS[op.who].encode()
    assert EnqueueStore(r, KEYS).claim(KEY, TASKS[op.who], TTL_MS) == TASKS[op.who] or not taken_over
    return taken_over


def end(jobs: JobStore, r: redis.Redis, op: Op) -> bool:
    outcome: Any = ("done", "dead", "waiting")[op.flag]
    return jobs.end(JOB, owner=OWNERS[op.who], outcome=outcome, ttl_ms=TTL_MS, result='{"v":1}', gen=op.gen,
                    next_gen=op.gen + 1)


def commit(jobs: JobStore, r: redis.Redis, op: Op) -> bool:
    try:
        jobs.commit(JOB, owner=OWNERS[op.who], ttl_ms=TTL_MS, result=1, effect=lambda pipe: pipe.incr("proto:effect"))
    except NotHeld:
        return False
    return True


def reset(jobs: JobStore, r: redis.Redis, op: Op) -> bool:
    """What replay checks before it resets."""
    state = jobs.read(JOB)
    if state.state in ("done", "waiting") or state.lease_live:
        return False
    jobs.reset(JOB)
    return True


def lapse(jobs: JobStore, r: redis.Redis, op: Op) -> bool:
    """The clock moves past the lease (not a writer of the state)."""
    if r.hexists(KEYS.job(JOB), "lease"):
        r.hset(KEYS.job(JOB), "lease", 0)
    return False


WRITERS: dict[str, tuple[str | None, Callable[[JobStore, redis.Redis, Op], bool]]] = {
    "begin": ("job_begin", begin),
    "enqueue": ("enqueue_claim", enqueue),
    "end": ("job_end", end),
    "renew": ("job_renew", lambda jobs, r, op: jobs.renew(JOB, owner=OWNERS[op.who], lease_ms=60_000, ttl_ms=TTL_MS)),
    "crashed": ("job_crashed", lambda jobs, r, op: jobs.crashed(JOB, owner_prefix=PREFIXES[op.who])),
    "commit": ("JobStore.commit", commit),
    "reset": ("JobStore.reset", reset),
    "lapse": (None, lapse),
}


def apply(jobs: JobStore, r: redis.Redis, op: Op) -> tuple[str | None, bool]:
    """Run one operation; (the writer named in TRANSITIONS, whether it reports a change)."""
    writer, run = WRITERS[op.kind]
    return writer, run(jobs, r, op)


def allowed(writer: str, before: str, after: str) -> bool:
    return any(t.writer.startswith(writer) and before in t.source and after == t.target
               for t in TRANSITIONS.values())


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_every_transition_is_between_declared_states(name: str) -> None:
    t = TRANSITIONS[name]
    assert {*t.source, t.target} <= {*STATES, NEW}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=1, max_size=30))
def test_random_operations_only_make_declared_transitions(r: redis.Redis, ops: list[Op]) -> None:
    r.delete(KEYS.job(JOB), KEYS.idem(KEY))
    jobs = JobStore(r, KEYS)
    for op in ops:
        before = read(r).get("state", NEW)
        writer, changed = apply(jobs, r, op)
        fields = read(r)
        after = fields.get("state", NEW)
        assert after in {*STATES, NEW}
        if writer is None:
            assert after == before
        elif changed:
            assert allowed(writer, before, after), f"{op}: {writer} made {before} -> {after}, not declared"
        else:
            assert after == before, f"{op}: {writer} refused, yet changed {before} -> {after}"
        assert ("owner" in fields) == (after == "running"), f"{op}: owner field in state {after}"
        assert ("lease" in fields) == (after == "running"), f"{op}: lease field in state {after}"
        if r.exists(KEYS.job(JOB)):
            assert r.pttl(KEYS.job(JOB)) > 0, "the job hash lost its TTL"
