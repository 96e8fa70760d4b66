"""The rate, concurrency and breaker scripts on a real redis-server and a real 3-node Redis Cluster."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalwart.dev.embedded import RedisCluster
from stalwart.job.context import JobContext, Outcome
from stalwart.job.header import Meta
from stalwart.policies.breakers import Breaker, admin, status
from stalwart.policies.limits import RENEWER, Concurrency, RateLimit, redis_errors
from stalwart.runtime import Runtime
from stalwart.settings import Settings
from stalwart.store.keys import Keys
from stalwart.store.scripts import SCRIPTS
from tests.scripted_clock import clocked, set_clock

K = Keys("t")


def ctx(job_key: str) -> JobContext:
    return JobContext("t.task", job_key, "celery", (), {}, Meta(), 1, "host", job_key)


def boom() -> Outcome:
    return Outcome("retried", 0.01, ConnectionError("down"))


# -- rate --------------------------------------------------------------------------------------


def test_rate_burst_then_exact_retry_after(r: redis.Redis) -> None:
    limit = RateLimit("api", "10/s", burst=3)
    assert [limit.try_acquire(r, K, None).granted for _ in range(3)] == [True, True, True]
    denied = limit.try_acquire(r, K, None)
    assert not denied.granted
    assert 0.07 < denied.retry_after <= 0.1
    time.sleep(denied.retry_after)
    assert limit.try_acquire(r, K, None).granted


def test_rate_one_per_second_waits_the_whole_interval(r: redis.Redis) -> None:
    limit = RateLimit("slow", "1/s")
    assert limit.try_acquire(r, K, None).granted
    wait = limit.try_acquire(r, K, None).retry_after
    assert 0.95 < wait <= 1.0


def test_rate_denied_jobs_reserve_spread_out_slots(r: redis.Redis) -> None:
    limit = RateLimit("spread", "20/s")
    assert limit.try_acquire(r, K, ctx("t:a")).granted
    waits = [limit.try_acquire(r, K, ctx(f"t:{i}")).retry_after for i in range(5)]
    assert waits == sorted(waits)
    assert all(0.04 < b - a < 0.06 for a, b in itertools.pairwise(waits))
    # a newcomer does not steal the reserved slots; a job back early is told the rest of its wait
    assert limit.try_acquire(r, K, None).retry_after >= waits[-1] - 0.01
    early = limit.try_acquire(r, K, ctx("t:0"))
    assert not early.granted
    assert early.retry_after <= waits[0]
    time.sleep(waits[0] + 0.005)
    assert limit.try_acquire(r, K, ctx("t:0")).granted


def test_rate_is_one_budget_across_threads(r: redis.Redis, redis_url: str) -> None:
    limit = RateLimit("shared", "50/s", burst=5)
    granted: list[float] = []
    stop = time.monotonic() + 2.0

    def hammer() -> None:
        client = redis.Redis.from_url(redis_url)
        while time.monotonic() < stop:
            if limit.try_acquire(client, K, None).granted:
                granted.append(time.monotonic())

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 50 * 2.0 * 0.8 <= len(granted) <= 50 * (granted[-1] - granted[0]) + 5 + 1


# -- concurrency ---------------------------------------------------------------------------------


def test_concurrency_slots_release_and_reclaim(r: redis.Redis) -> None:
    sem = Concurrency("db", 2, lease=0.4)
    a, b = sem.try_acquire(r, K, None), sem.try_acquire(r, K, None)
    assert a.granted
    assert b.granted
    third = sem.try_acquire(r, K, None)
    assert not third.granted
    assert 0 < third.retry_after <= 0.4
    sem.give_back(r, K, a, Outcome("succeeded", 0.05))
    c = sem.try_acquire(r, K, None)
    assert c.granted
    assert c.token is not None
    assert b.token is not None
    # b's holder "dies" (nothing renews it); c is renewed by hand, b is reclaimed
    RENEWER.remove(b.token)
    RENEWER.remove(c.token)
    time.sleep(0.25)
    assert sem.renew(r, K, c.token)
    time.sleep(0.25)
    d = sem.try_acquire(r, K, None)
    assert d.granted
    sem.give_back(r, K, d, Outcome("succeeded", 0.01))
    assert not sem.renew(r, K, b.token)
    assert int(r.hget(K.limit("db", "stats"), "reclaimed") or 0) == 1


# -- breaker -------------------------------------------------------------------------------------


def test_breaker_holds_new_calls_while_calls_in_flight_could_trip_it(r: redis.Redis) -> None:
    br = Breaker("dep", min_calls=4, failure_rate=0.5, open_for=5)
    out = [br.try_acquire(r, K, None) for _ in range(4)]  # four workers call at once
    assert all(d.granted for d in out)
    assert br.record(r, K, "failure", probe_id=out[0].token) == "closed"
    held = br.try_acquire(r, K, None)  # 1 failure + 3 out: if they fail too, it trips
    assert not held.granted
    assert not held.fallback  # not open: the job just waits for the verdict
    assert "verdict pending" in held.reason
    for d in out[1:3]:
        assert br.record(r, K, "failure", probe_id=d.token) == "closed"
    assert br.record(r, K, "failure", probe_id=out[3].token) == "open"  # min_calls calls, no more
    assert r.zcard(K.breaker("dep", "inflight")) == 0


def test_healthy_calls_in_flight_are_never_held(r: redis.Redis) -> None:
    br = Breaker("ok", min_calls=4, failure_rate=0.5)
    out = [br.try_acquire(r, K, None) for _ in range(20)]
    assert all(d.granted for d in out)
    for d in out:
        assert br.record(r, K, "success", probe_id=d.token) == "closed"
    assert r.zcard(K.breaker("ok", "inflight")) == 0


def test_breaker_opens_on_failure_rate_after_min_calls(r: redis.Redis) -> None:
    br = Breaker("pay", min_calls=4, failure_rate=0.5, open_for=0.3)
    for kind in ["success", "failure", "success"]:
        assert br.record(r, K, kind) == "closed"  # type: ignore[arg-type]
    assert br.record(r, K, "failure") == "open"  # 2 of 4 failed
    denied = br.try_acquire(r, K, None)
    assert not denied.granted
    assert denied.fallback
    assert 0.2 < denied.retry_after <= 0.3
    assert status(r, K, "pay")["state"] == "open"


def test_breaker_ignored_errors_do_not_trip_it(r: redis.Redis) -> None:
    br = Breaker("input", min_calls=2, failure_on=(ConnectionError,), ignore=(KeyError,))
    assert br.classify(Outcome("dead", 0, ValueError("bad input"))) == "success"
    assert br.classify(Outcome("dead", 0, KeyError("x"))) == "ignore"
    for _ in range(5):
        br.give_back(r, K, br.try_acquire(r, K, None), Outcome("dead", 0, ValueError("bad")))
    assert status(r, K, "input")["state"] == "closed"
    assert status(r, K, "input")["failures"] == 0


def test_breaker_half_open_probes_and_recovery(r: redis.Redis) -> None:
    br = Breaker("dep", min_calls=2, open_for=0.2, half_open_probes=2, probe_ttl=0.3)
    br.record(r, K, "failure")
    assert br.record(r, K, "failure") == "open"
    time.sleep(0.21)
    c = ctx("t:x")
    probes = [br.try_acquire(r, K, c) for _ in range(3)]
    assert [p.granted for p in probes] == [True, True, False]
    assert c.breaker_states["dep"] == "half_open"
    assert br.record(r, K, "success", probe_id=probes[0].token) == "half_open"
    again = br.try_acquire(r, K, None)  # one slot is free again; probes[1] is still in flight
    assert again.granted
    assert again.token
    assert not br.try_acquire(r, K, None).granted
    assert br.record(r, K, "success", probe_id=again.token) == "closed"
    assert br.try_acquire(r, K, None).granted


def test_breaker_crashed_prober_frees_its_slot(r: redis.Redis) -> None:
    br = Breaker("crashy", min_calls=1, open_for=0.1, probe_ttl=0.3)
    assert br.record(r, K, "failure") == "open"
    time.sleep(0.11)
    assert br.try_acquire(r, K, None).granted  # this prober dies without recording
    assert not br.try_acquire(r, K, None).granted
    time.sleep(0.31)
    assert br.try_acquire(r, K, None).granted


def test_breaker_failed_probe_reopens(r: redis.Redis) -> None:
    br = Breaker("flaky", min_calls=1, open_for=0.1)
    assert br.record(r, K, "failure") == "open"
    time.sleep(0.11)
    probe = br.try_acquire(r, K, None)
    br.give_back(r, K, probe, boom())
    assert status(r, K, "flaky")["state"] == "open"


def test_breaker_slow_calls_trip_it(r: redis.Redis) -> None:
    br = Breaker("slowdep", min_calls=3, slow_call_seconds=0.5, slow_call_rate=0.6)
    for _ in range(3):
        br.give_back(r, K, br.try_acquire(r, K, None), Outcome("succeeded", 0.8))
    assert status(r, K, "slowdep")["state"] == "open"


def test_breaker_operator_switches(r: redis.Redis) -> None:
    br = Breaker("maint")
    assert admin(r, K, "maint", "force_open") == "forced_open"
    assert not br.try_acquire(r, K, None).granted
    assert admin(r, K, "maint", "close") == "closed"
    assert br.try_acquire(r, K, None).granted
    admin(r, K, "maint", "reset")
    assert status(r, K, "maint")["transitions"] == 0


# -- Redis trouble -------------------------------------------------------------------------------


def test_scripts_survive_script_flush(r: redis.Redis) -> None:
    limit = RateLimit("flush", "100/s", burst=5)
    assert limit.try_acquire(r, K, None).granted
    r.script_flush()
    assert limit.try_acquire(r, K, None).granted


@pytest.mark.parametrize(("mode", "granted"), [("open", True), ("closed", False)])
def test_unreachable_redis_fails_open_or_closed(mode: Any, granted: bool) -> None:
    runtime = Runtime(Settings(redis_url="redis://127.0.0.1:1/0"))
    for policy in (RateLimit(f"down-{mode}", "5/s", on_redis_error=mode),
                   Concurrency(f"down-c-{mode}", 1, on_redis_error=mode),
                   Breaker(f"down-b-{mode}", on_redis_error=mode)):
        before = redis_errors().get(policy.name, 0)
        decision = policy.acquire(runtime, ctx("t:down"))
        assert decision.granted is granted
        assert granted or 0 < decision.retry_after <= 2
        policy.release(runtime, ctx("t:down"), decision, Outcome("succeeded"))
        assert redis_errors()[policy.name] == before + 1


# -- Redis Cluster ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[redis.RedisCluster]:
    with RedisCluster() as nodes:
        client = nodes.client()
        yield client
        client.close()


def test_rate_limit_on_cluster(cluster: redis.RedisCluster) -> None:
    limit = RateLimit("c-api", "10/s", burst=2)
    assert [limit.try_acquire(cluster, K, ctx("t:1")).granted for _ in range(2)] == [True, True]
    assert not limit.try_acquire(cluster, K, ctx("t:2")).granted
    cluster.script_flush()
    assert 0.05 < limit.try_acquire(cluster, K, ctx("t:2")).retry_after <= 0.1


def test_concurrency_on_cluster(cluster: redis.RedisCluster) -> None:
    sem = Concurrency("c-db", 1, lease=1)
    held = sem.try_acquire(cluster, K, None)
    assert held.granted
    assert not sem.try_acquire(cluster, K, None).granted
    sem.give_back(cluster, K, held, Outcome("succeeded", 0.01))
    again = sem.try_acquire(cluster, K, None)
    assert again.granted
    sem.give_back(cluster, K, again, Outcome("succeeded", 0.01))


def test_breaker_on_cluster(cluster: redis.RedisCluster) -> None:
    br = Breaker("c-dep", min_calls=2, open_for=0.1)
    br.record(cluster, K, "failure")
    assert br.record(cluster, K, "failure") == "open"
    time.sleep(0.11)
    probe = br.try_acquire(cluster, K, None)
    assert probe.granted
    assert probe.token
    assert br.record(cluster, K, "success", probe_id=probe.token) == "closed"
    assert admin(cluster, K, "c-dep", "force_open") == "forced_open"
    assert status(cluster, K, "c-dep")["state"] == "forced_open"


# -- breaker cost stays flat over days of traffic (issue 10.3) ----------------------------------


@pytest.fixture
def breaker_clock(monkeypatch: pytest.MonkeyPatch, r: redis.Redis) -> Any:
    for name in ("breaker_acquire", "breaker_record"):
        monkeypatch.setitem(SCRIPTS, name, clocked(name))
    return lambda seconds: set_clock(r, int(seconds * 1000))


def test_breaker_buckets_stay_bounded_over_an_hour_of_traffic(r: redis.Redis, breaker_clock: Any) -> None:
    """Successful calls every second for an hour, on the scripts' clock: the buckets hold the
    window's ring, not an hour of seconds (one field per second of traffic, before)."""
    breaker = Breaker("hourly", window=30, min_calls=5)
    start = 1_700_000_000
    for second in range(3600):
        breaker_clock(start + second)
        breaker.record(r, K, "success")
    assert r.hlen(K.breaker("hourly", "buckets")) <= 4 * 30 + 5
    for _ in range(10):  # the window is still counted right: 30 successes, 10 failures
        state = breaker.record(r, K, "failure")
    assert state == "closed"


def test_breaker_window_counts_only_its_last_seconds_on_the_ring(r: redis.Redis, breaker_clock: Any) -> None:
    breaker = Breaker("ring", window=10, min_calls=5, failure_rate=0.5)
    for second in range(100):  # successes, one per second
        breaker_clock(1_000 + second)
        breaker.record(r, K, "success")
    breaker_clock(1_099.5)
    for _ in range(4):
        assert breaker.record(r, K, "failure") == "closed"  # 10 successes in the window, 4 failures
    for second in range(100, 106):  # the successes age out of the ring; failures keep coming
        breaker_clock(1_000 + second)
        state = breaker.record(r, K, "failure")
    assert state == "open"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    window=st.integers(1, 12),
    steps=st.lists(st.tuples(st.integers(0, 15), st.sampled_from(["success", "failure", "slow"])), max_size=60),
)
def test_breaker_window_totals_match_a_recount(
    r: redis.Redis, breaker_clock: Any, window: int, steps: list[tuple[int, str]]
) -> None:
    """The running totals the scripts keep equal a recount of the calls of the last ``window``
    seconds, however the calls are spread (gaps longer than the window included)."""
    name = f"recount-{uuid.uuid4().hex[:8]}"
    breaker = Breaker(name, window=window, min_calls=10**9, slow_call_seconds=1.0, slow_call_rate=1.0)
    second, calls = 5_000, []
    for gap, kind in steps:
        second += gap
        breaker_clock(second + 0.5)
        breaker.record(r, K, "success" if kind == "slow" else kind, slow=kind == "slow")  # type: ignore[arg-type]
        calls.append((second, kind))
    if not calls:
        return
    live = [k for at, k in calls if at > second - window]
    sums = {k.decode(): int(v) for k, v in r.hgetall(K.breaker(name, "buckets")).items() if k.startswith(b"sum:")}
    assert sums == {"sum:c": len(live), "sum:f": live.count("failure"), "sum:s": live.count("slow")}
    assert r.hlen(K.breaker(name, "buckets")) <= 4 * window + 5
