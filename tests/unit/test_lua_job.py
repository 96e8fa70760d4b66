"""The job and delayed-set Lua scripts, run on a real redis-server."""

from __future__ import annotations

import threading

import pytest
import redis

from stalwart.broker.mover import BATCH, Mover
from stalwart.store.delayed import DelayedStore
from stalwart.store.enqueue import EnqueueStore
from stalwart.store.jobs import JobStore, job_key, owner, owner_prefix
from stalwart.store.keys import Keys
from stalwart.store.scripts import script

KEYS = Keys("stalwart")
JOB = KEYS.job("t:task-1")
TTL_MS = 60_000


def begin(
    r: redis.Redis, owner: str = "host:1:m1", *, lease_ms: int = 5000, max_deliveries: int = 3,
    deadline: int = 0, gen: int = 0,
) -> tuple[str, str]:
    code, value, _now, *_linked = script("job_begin")(
        r, [JOB], [owner, lease_ms, max_deliveries, deadline, gen, TTL_MS]
    )
    return code.decode(), value.decode()


def end(r: redis.Redis, outcome: str, owner: str = "host:1:m1", result: str = "", next_gen: int = 0,
        gen: int | None = None) -> int:
    """``gen`` defaults to the generation on the hash: the delivery that claimed it."""
    own = int(r.hget(JOB, "gen") or 0) if gen is None else gen
    return int(script("job_end")(r, [JOB], [owner, outcome, result, TTL_MS, next_gen, own]))


def job(r: redis.Redis) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall(JOB).items()}


def server_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds * 1000 + micros // 1000)


# -- job_begin ----------------------------------------------------------------------------------


def test_first_delivery_claims_the_job(r: redis.Redis) -> None:
    before = server_ms(r)
    assert begin(r, gen=2) == ("run", "1")
    state = job(r)
    assert (state["state"], state["owner"], state["gen"], state["deliveries"]) == ("running", "host:1:m1", "2", "1")
    assert before + 5000 <= int(state["lease"]) <= server_ms(r) + 5000
    assert 0 < r.pttl(JOB) <= TTL_MS


def test_live_claim_of_another_owner_is_busy(r: redis.Redis) -> None:
    begin(r, "host:1:a", lease_ms=5000)
    code, wait_ms = begin(r, "host:2:b")
    assert code == "busy"
    assert 4000 < int(wait_ms) <= 5000
    assert job(r)["deliveries"] == "1"  # a busy answer is not a delivery


def test_expired_claim_is_taken_over(r: redis.Redis) -> None:
    begin(r, "host:1:a", lease_ms=1)
    r.hset(JOB, "lease", server_ms(r) - 1)
    assert begin(r, "host:2:b") == ("run", "2")
    assert job(r)["owner"] == "host:2:b"


def test_deliveries_past_the_limit_are_poison(r: redis.Redis) -> None:
    for n in (1, 2, 3):
        assert begin(r, max_deliveries=3) == ("run", str(n))
    assert begin(r, max_deliveries=3) == ("poison", "4")


def test_past_deadline_is_expired_and_counted(r: redis.Redis) -> None:
    assert begin(r, deadline=server_ms(r) - 1) == ("expired", "1")
    assert "state" not in job(r)  # not claimed


def test_future_deadline_runs(r: redis.Redis) -> None:
    assert begin(r, deadline=server_ms(r) + 60_000)[0] == "run"


def test_done_job_returns_its_result_and_is_not_counted(r: redis.Redis) -> None:
    begin(r)
    end(r, "done", result='{"v":42}')
    assert begin(r, "host:2:b") == ("done", '{"v":42}')
    assert job(r)["deliveries"] == "0"


def test_a_done_job_remembers_that_its_callbacks_were_sent(r: redis.Redis) -> None:
    """Red team (issue 10): a duplicate delivery of a done job sent its link callback again."""
    jobs = JobStore(r, KEYS)
    assert not jobs.linked("t:task-1")  # not done: nothing recorded
    begin(r)
    assert not jobs.begin("t:task-1", owner="host:3:c", lease_ms=5000, max_deliveries=3, deadline_ms=None,
                          gen=0, ttl_ms=TTL_MS).linked
    end(r, "done", result='{"v":42}')
    assert not jobs.begin("t:task-1", owner="host:2:b", lease_ms=5000, max_deliveries=3, deadline_ms=None,
                          gen=0, ttl_ms=TTL_MS).linked
    assert jobs.linked("t:task-1")
    again = jobs.begin("t:task-1", owner="host:2:b", lease_ms=5000, max_deliveries=3, deadline_ms=None,
                       gen=0, ttl_ms=TTL_MS)
    assert (again.code, again.value, again.linked) == ("done", '{"v":42}', True)


def test_dead_job_is_not_run_again(r: redis.Redis) -> None:
    begin(r)
    end(r, "dead")
    assert begin(r, "host:2:b")[0] == "dead"


def test_an_older_generation_is_stale(r: redis.Redis) -> None:
    begin(r, gen=0)
    end(r, "waiting", next_gen=1)
    assert begin(r, "host:2:b", gen=0) == ("stale", "1")
    assert begin(r, "host:2:c", gen=1)[0] == "run"


# -- job_end ------------------------------------------------------------------------------------


def test_done_records_the_result_and_drops_the_claim(r: redis.Redis) -> None:
    begin(r)
    assert end(r, "done", result='{"v":1}') == 1
    state = job(r)
    assert (state["state"], state["result"], state["deliveries"]) == ("done", '{"v":1}', "0")
    assert "owner" not in state
    assert "lease" not in state


def test_waiting_bumps_the_generation_and_resets_deliveries(r: redis.Redis) -> None:
    begin(r, gen=1)
    begin(r, gen=1)
    assert end(r, "waiting", next_gen=2) == 1
    state = job(r)
    assert (state["state"], state["gen"], state["deliveries"]) == ("waiting", "2", "0")
    assert "owner" not in state


def test_waiting_never_lowers_the_generation(r: redis.Redis) -> None:
    begin(r, gen=5)
    end(r, "waiting", next_gen=3)
    assert job(r)["gen"] == "5"


def test_only_the_owner_may_release(r: redis.Redis) -> None:
    begin(r, "host:1:a")
    assert end(r, "waiting", owner="host:2:b", next_gen=1) == 0
    assert job(r)["state"] == "running"
    assert job(r)["owner"] == "host:1:a"


# -- job_crashed and job_renew ------------------------------------------------------------------


def test_crash_frees_the_claim_of_the_dead_child_only(r: redis.Redis) -> None:
    crashed = script("job_crashed")
    begin(r, "host:10:msg")
    assert crashed(r, [JOB], ["host:11:"]) == 0
    assert crashed(r, [JOB], ["host:10:"]) == 1
    state = job(r)
    assert state["state"] == "crashed"
    assert "owner" not in state
    assert begin(r, "host:12:msg") == ("run", "2")  # redelivered at once, still counted


def test_renew_extends_only_the_owners_lease(r: redis.Redis) -> None:
    renew = script("job_renew")
    begin(r, "host:1:a", lease_ms=1000)
    first = int(job(r)["lease"])
    assert renew(r, [JOB], ["host:2:b", 60_000, TTL_MS]) == 0
    assert int(job(r)["lease"]) == first
    assert renew(r, [JOB], ["host:1:a", 60_000, TTL_MS]) == 1
    assert int(job(r)["lease"]) >= first + 59_000


def test_renewal_keeps_the_job_hash_alive_past_its_ttl(r: redis.Redis) -> None:
    """Issue 10.2: a job running longer than its hash's TTL kept losing its state."""
    begin(r, "host:1:a", lease_ms=1000)
    r.pexpire(JOB, 50)  # the TTL is about to lapse while the body still runs
    assert script("job_renew")(r, [JOB], ["host:1:a", 1000, TTL_MS]) == 1
    assert r.pttl(JOB) > TTL_MS - 5_000


def test_the_hash_outlives_the_lease_however_short_its_ttl(r: redis.Redis) -> None:
    script("job_begin")(r, [JOB], ["host:1:a", 10_000, 3, 0, 0, 1_000])
    assert r.pttl(JOB) > 10_000
    assert script("job_renew")(r, [JOB], ["host:1:a", 10_000, 1_000]) == 1
    assert r.pttl(JOB) > 10_000


# -- one delivery, one owner (issue 10.1) and owner-checked verdicts (issue 10.9) -----------------


def test_two_deliveries_of_one_message_in_one_process_are_two_owners(r: redis.Redis) -> None:
    """A redelivered copy of a running message in the same process (threads pool, connection
    blip) must find the first delivery's claim busy, never claim it beside it."""
    first, second = owner("host", 7, "msg-1"), owner("host", 7, "msg-1")
    assert first != second
    assert begin(r, first)[0] == "run"
    assert begin(r, second)[0] == "busy"
    assert job(r)["owner"] == first


def test_the_main_process_still_frees_a_dead_childs_claim_by_its_prefix(r: redis.Redis) -> None:
    begin(r, owner("host", 7, "msg-1"))
    assert script("job_crashed")(r, [JOB], [owner_prefix("host", 7)]) == 1
    assert job(r)["state"] == "crashed"


def test_a_fresh_enqueue_takes_a_dead_key_over_and_leftover_copies_are_stale(r: redis.Redis) -> None:
    """Issue 10.9: a dead key blocked a fresh enqueue for the whole idempotency TTL."""
    enqueues, jobs = EnqueueStore(r, KEYS), JobStore(r, KEYS)
    hash_key = job_key("k1", "")
    assert enqueues.claim("k1", "old-task", TTL_MS) == "old-task"
    assert enqueues.claim("k1", "dup-task", TTL_MS) == "old-task"  # pending: the key is taken
    assert jobs.begin(hash_key, owner="h:1:a", lease_ms=5000, max_deliveries=3, deadline_ms=None, gen=2,
                      ttl_ms=TTL_MS, task_id="old-task").code == "run"
    assert jobs.end(hash_key, owner="h:1:a", outcome="dead", ttl_ms=TTL_MS, gen=2)
    assert enqueues.claim("k1", "new-task", TTL_MS) == "new-task"
    leftover = jobs.begin(hash_key, owner="h:1:b", lease_ms=5000, max_deliveries=3, deadline_ms=None, gen=2,
                          ttl_ms=TTL_MS, task_id="old-task")
    assert leftover.code == "stale"
    fresh = jobs.begin(hash_key, owner="h:1:c", lease_ms=5000, max_deliveries=3, deadline_ms=None, gen=0,
                       ttl_ms=TTL_MS, task_id="new-task")
    assert fresh.code == "run"
    assert enqueues.claim("k1", "other-task", TTL_MS) == "new-task"  # running: the key is taken


@pytest.mark.parametrize("outcome", ["done", "dead", "waiting"])
def test_a_lapsed_delivery_cannot_overwrite_a_newer_live_claim(r: redis.Redis, outcome: str) -> None:
    """A frozen delivery whose lease expired wakes up after another took the job over."""
    begin(r, "host:1:frozen", lease_ms=1)
    r.hset(JOB, "lease", server_ms(r) - 1)
    assert begin(r, "host:2:new", lease_ms=60_000)[0] == "run"
    assert end(r, outcome, owner="host:1:frozen", result='{"v":1}', next_gen=1) == 0
    state = job(r)
    assert (state["state"], state["owner"]) == ("running", "host:2:new")


def test_a_verdict_over_a_lapsed_claim_of_another_is_recorded(r: redis.Redis) -> None:
    """A poison/expired verdict is written by a delivery that never claimed: the lapsed holder's
    claim does not block it."""
    begin(r, "host:1:dead", lease_ms=1)
    r.hset(JOB, "lease", server_ms(r) - 1)
    assert end(r, "dead", owner="host:2:judge") == 1
    assert job(r)["state"] == "dead"


@pytest.mark.parametrize("outcome", ["done", "waiting", "dead"])
def test_a_dead_job_stays_dead(r: redis.Redis, outcome: str) -> None:
    begin(r, "host:1:a")
    end(r, "dead", owner="host:1:a")
    assert end(r, outcome, owner="host:1:b", next_gen=1) == 0
    assert job(r)["state"] == "dead"


# -- the delayed set ----------------------------------------------------------------------------

LIST = "celery"
DELAYED = KEYS.delayed(LIST)


def schedule(r: redis.Redis, payload: str, delay_ms: int) -> int:
    return int(script("delayed_schedule")(
        r, [DELAYED, KEYS.registry("delayed")], [delay_ms, payload, LIST]
    ))


def make_due(r: redis.Redis, payloads: list[str]) -> None:
    """Put payloads in the delayed set already due, in order."""
    with r.pipeline() as pipe:
        for i, p in enumerate(payloads):
            pipe.zadd(DELAYED, {p: i})
        pipe.sadd(KEYS.registry("delayed"), LIST)
        pipe.execute()


def test_schedule_scores_by_the_redis_clock(r: redis.Redis) -> None:
    before = server_ms(r)
    due = schedule(r, "m1", 1500)
    assert before + 1500 <= due <= server_ms(r) + 1500
    assert r.zscore(DELAYED, "m1") == due
    assert r.smembers(KEYS.registry("delayed")) == {LIST.encode()}


def test_move_publishes_only_due_jobs_oldest_first(r: redis.Redis) -> None:
    make_due(r, ["a", "b", "c"])
    schedule(r, "later", 60_000)
    moved, wait_ms = DelayedStore(r, KEYS).move_due(LIST, BATCH)
    assert moved == 3
    assert 59_000 < wait_ms <= 60_000
    # Workers pop from the right: the job due first is consumed first.
    assert [r.rpop(LIST) for _ in range(3)] == [b"a", b"b", b"c"]
    assert r.zrange(DELAYED, 0, -1) == [b"later"]


def test_move_of_an_empty_set_reports_no_next(r: redis.Redis) -> None:
    assert DelayedStore(r, KEYS).move_due(LIST, BATCH) == (0, -1)


def test_move_takes_at_most_one_batch(r: redis.Redis) -> None:
    payloads = [f"m{i}" for i in range(1234)]
    make_due(r, payloads)
    assert DelayedStore(r, KEYS).move_due(LIST, 1000) == (1000, 0)
    assert (r.llen(LIST), r.zcard(DELAYED)) == (1000, 234)
    assert DelayedStore(r, KEYS).move_due(LIST, 1000) == (234, -1)
    assert sorted(r.lrange(LIST, 0, -1)) == sorted(p.encode() for p in payloads)


def test_every_move_is_atomic(r: redis.Redis) -> None:
    """An observer reading both keys at once never sees a job in neither or in both."""
    total = 3000
    make_due(r, [f"m{i}" for i in range(total)])
    mover_client = redis.Redis(connection_pool=r.connection_pool)
    sums: list[int] = []
    done = threading.Event()

    def observe() -> None:
        while not done.is_set():
            with r.pipeline(transaction=True) as pipe:
                llen, zcard = pipe.llen(LIST).zcard(DELAYED).execute()
            sums.append(llen + zcard)

    observer = threading.Thread(target=observe)
    observer.start()
    try:
        while DelayedStore(mover_client, KEYS).move_due(LIST, 7)[0]:
            pass
    finally:
        done.set()
        observer.join()
    assert sums
    assert set(sums) == {total}
    assert len(set(r.lrange(LIST, 0, -1))) == total


def test_mover_tick_drains_every_registered_queue(r: redis.Redis) -> None:
    make_due(r, [f"m{i}" for i in range(2500)])
    other = KEYS.delayed("orders")
    r.zadd(other, {"o1": 0})
    r.sadd(KEYS.registry("delayed"), "orders")
    schedule(r, "later", 30)
    mover = Mover(DelayedStore(r, KEYS), interval=0.5)
    sleep = mover.tick()
    assert mover.moved == 2501
    assert (r.llen(LIST), r.llen("orders")) == (2500, 1)
    assert sleep <= 0.03  # wakes for the next due job, not after the whole interval
    assert DelayedStore(r, KEYS).depth() == {LIST: 1}  # an emptied delayed set leaves the registry
    assert r.smembers(KEYS.registry("delayed")) == {LIST.encode()}
    DelayedStore(r, KEYS).schedule("orders", delay_ms=30_000, payload="o2")  # back with its next job
    assert r.smembers(KEYS.registry("delayed")) == {LIST.encode(), b"orders"}


@pytest.mark.parametrize("interval", [0.02])
def test_mover_thread_moves_and_stops(r: redis.Redis, interval: float) -> None:
    mover = Mover(DelayedStore(r, KEYS), interval=interval)
    mover.start()
    try:
        schedule(r, "soon", 20)
        assert r.brpop([LIST], timeout=5) == (LIST.encode(), b"soon")
    finally:
        mover.stop()
    assert mover.errors == 0
