"""Tasks the limit and breaker integration tests run in real workers. Effects are recorded in Redis."""

from __future__ import annotations

import time
from typing import Any

import redis
from celery import shared_task

from stalwart import Retry
from stalwart.policies.breakers import Breaker
from stalwart.policies.limits import Concurrency, RateLimit
from tests.integration.effects import state_redis as _redis

HAMMER = RateLimit("hammer", "10/s", burst=5)
POOL = Concurrency("pool", 2, lease=2)
SOLE = Concurrency("sole", 1, lease=2)
DEPENDENCY = Breaker("dependency", failure_rate=0.5, window=2, min_calls=4, open_for=1.5,
                     half_open_probes=2, probe_ttl=10, failure_on=(ConnectionError,))
MAINTENANCE = Breaker("maintenance", open_for=1)
DEGRADABLE = Breaker("degradable", open_for=1)
_MAX = "local m = tonumber(redis.call('GET', KEYS[1]) or '0') " \
       "if tonumber(ARGV[1]) > m then redis.call('SET', KEYS[1], ARGV[1]) end"


def _server_time(r: redis.Redis) -> float:
    sec, usec = r.time()
    return float(sec) + usec / 1e6


@shared_task(bind=True, limits=[HAMMER])
def hammered(self: Any, key: str) -> None:
    """Records when (server time) each permit was used and how many retries the job had used."""
    r = _redis()
    r.rpush(f"grants:{key}", _server_time(r))
    r.rpush(f"retries:{key}", self.request.retries or 0)


@shared_task(limits=[POOL])
def pooled(key: str, sleep: float) -> None:
    """Tracks how many bodies hold the pool at once."""
    r = _redis()
    now = r.incr(f"holding:{key}")
    r.eval(_MAX, 1, f"max:{key}", now)
    time.sleep(sleep)
    r.decr(f"holding:{key}")
    r.incr(f"effect:{key}")


@shared_task(limits=[SOLE])
def sole(key: str, sleep: float) -> None:
    r = _redis()
    r.set(f"started:{key}", _server_time(r))
    time.sleep(sleep)
    r.incr(f"effect:{key}")


@shared_task(breaker=DEPENDENCY, retry=Retry(max_attempts=30, backoff=0.2, backoff_max=0.5))
def call_dependency(key: str) -> None:
    """The dependency is a Redis flag: while ``dependency:down`` is set every call fails slowly."""
    r = _redis()
    state = (r.hget("stalwart:{breaker:dependency}:state", "state") or b"closed").decode()
    transitions = int(r.hget("stalwart:{breaker:dependency}:state", "transitions") or 0)
    if r.get("dependency:down"):
        r.incr("dependency:calls_while_down")
        r.hincrby("dependency:calls_by_round", str(transitions), 1)
        inflight = r.incr("dependency:inflight")
        if state == "half_open":
            r.eval(_MAX, 1, "dependency:max_half_open_inflight", inflight)
        time.sleep(0.2)
        r.decr("dependency:inflight")
        raise ConnectionError("dependency is down")
    r.incr(f"effect:{key}")


@shared_task(bind=True, breaker=MAINTENANCE)
def maintained(self: Any, key: str) -> None:
    r = _redis()
    r.incr(f"effect:{key}")
    r.rpush(f"retries:{key}", self.request.retries or 0)


def _degraded(key: str) -> str:
    _redis().incr(f"fallback:{key}")
    return "degraded"


@shared_task(breaker=DEGRADABLE, fallback=_degraded)
def degradable(key: str) -> str:
    _redis().incr(f"effect:{key}")
    return "full"


def _broken_fallback(key: str) -> str:
    _redis().incr(f"fallback:{key}")
    raise ConnectionError(f"{key}: the fallback's own dependency is down too")


@shared_task(breaker=Breaker("broken-fallback", open_for=1), fallback=_broken_fallback,
             max_retries=1, retry_backoff=0.05)
def broken_fallback(key: str) -> str:
    _redis().incr(f"effect:{key}")
    return "full"


@shared_task(bind=True)
def limited_in_body(self: Any, key: str) -> None:
    """Uses a limit around one call inside the body: a denial defers the job, no attempt used."""
    r = _redis()
    r.rpush(f"retries:{key}", self.request.retries)
    with RateLimit("in-body", "1/s").hold():
        r.incr(f"effect:{key}")
