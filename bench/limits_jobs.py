"""Stalwart tasks for bench/ratelimit.py and bench/breaker.py; effects are recorded in Redis."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis
from celery import shared_task

from stalwart import Retry, RetryAfter
from stalwart.policies.breakers import Breaker
from stalwart.policies.limits import RateLimit

LIMIT = RateLimit("bench", "20/s")
FAILURE_RATE, WINDOW, MIN_CALLS, OPEN_FOR = 0.5, 10.0, 5, 2.0
SHARED = Breaker("bench-dependency", failure_rate=FAILURE_RATE, window=int(WINDOW), min_calls=MIN_CALLS,
                 open_for=OPEN_FOR, half_open_probes=1, probe_ttl=10, failure_on=(ConnectionError,))
RETRY = Retry(max_attempts=None, backoff=0.2, backoff_max=0.5)
_local = threading.local()


def _redis() -> redis.Redis:
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = redis.Redis.from_url(os.environ["STALWART_REDIS_URL"])
    return client


def _stamp(key: str) -> None:
    r = _redis()
    sec, usec = r.time()
    r.rpush(key, sec + usec / 1e6)


@shared_task(name="bench.limited", limits=[LIMIT])
def limited() -> None:
    _stamp("ran:limited")


@shared_task(name="bench.unlimited")
def unlimited() -> None:
    _stamp("ran:unlimited")


def _dependency() -> None:
    """The dependency: while the ``down`` flag is set every call fails (and is counted)."""
    r = _redis()
    if r.get("down"):
        r.incr("calls_while_down")
        time.sleep(0.05)
        raise ConnectionError("dependency down")
    r.incr("done")


@shared_task(name="bench.shared_breaker", breaker=SHARED, retry=RETRY)
def shared_breaker() -> None:
    _dependency()


class LocalBreaker:
    """What a per-process breaker (pybreaker-style, in memory) does: same thresholds, own state."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, bool]] = []
        self.open_until = 0.0
        self.half_open = False
        self.probing = False

    def before(self) -> None:
        now = time.monotonic()
        if now < self.open_until:
            raise RetryAfter(self.open_until - now)
        if self.open_until and not self.half_open:
            self.half_open = True
        if self.half_open:
            if self.probing:
                raise RetryAfter(0.2)
            self.probing = True

    def after(self, failed: bool) -> None:
        now = time.monotonic()
        if self.half_open:
            self.probing = False
            self.half_open = False
            self.open_until = now + OPEN_FOR if failed else 0.0
            self.calls = []
            return
        self.calls = [c for c in self.calls if c[0] > now - WINDOW] + [(now, failed)]
        failures = sum(1 for _, f in self.calls if f)
        if len(self.calls) >= MIN_CALLS and failures / len(self.calls) >= FAILURE_RATE:
            self.open_until = now + OPEN_FOR
            self.calls = []


_LOCAL = LocalBreaker()


@shared_task(name="bench.local_breaker", retry=RETRY)
def local_breaker() -> Any:
    _LOCAL.before()
    try:
        _dependency()
    except ConnectionError:
        _LOCAL.after(True)
        raise
    _LOCAL.after(False)
