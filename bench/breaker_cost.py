"""A breaker's Redis cost per call, after one second and after a day of traffic.

One fresh embedded redis-server. The shipped ``breaker_acquire`` and ``breaker_record`` scripts run
with their clock read from a key this bench sets (the prelude's ``clock_ms`` only), so a day of
traffic, one acquire+record per simulated second (successes; ``--fail-every N`` adds failures),
takes seconds, not a day.
At each checkpoint 2 000 acquire+record pairs run at that simulated second, with three more calls
held in flight so that every acquire also reads the failure window, and the Redis server's own
time for them is read from ``INFO commandstats`` (``CONFIG RESETSTAT`` before).

(The issue that asked for this measured 0.2 ms per pair with fresh buckets and 48 ms after a day,
when the buckets kept one field per second of traffic.)

Last line: ``flat_ratio <cost after a day ÷ cost after one second>``.
"""

from __future__ import annotations

import argparse
import hashlib
import uuid
from typing import Any

import redis

from stalwart.dev.embedded import RedisServer
from stalwart.policies.breakers import Breaker
from stalwart.store.breakers import BreakerStore
from stalwart.store.keys import Keys
from stalwart.store.limits import IDLE_TTL_MS
from stalwart.store.scripts import PRELUDE, Script, script

CLOCK_KEY = "bench:clock_ms"
FAKE_PRELUDE = f"""
local function clock_ms() return tonumber(redis.call('GET', '{CLOCK_KEY}')) end
local function clock_ms_exact() return clock_ms() end
local function clock_s() return clock_ms() / 1000 end
"""
START = 1_700_000_000
KEYS = Keys("bench")
BREAKER = Breaker("cost", window=30, min_calls=20, failure_rate=0.5)


def clocked(name: str) -> Script:
    """The shipped script with its clock read from CLOCK_KEY."""
    shipped = script(name)
    fake = Script(name, shipped.numkeys, "")
    fake.source = FAKE_PRELUDE + shipped.source[len(PRELUDE):]
    fake.sha = hashlib.sha1(fake.source.encode()).hexdigest()  # Redis names scripts by SHA1
    return fake


ACQUIRE, RECORD = clocked("breaker_acquire"), clocked("breaker_record")


def queue_acquire(pipe: Any, call: str) -> None:
    p = BREAKER.params()
    ACQUIRE.queue(pipe, BreakerStore(None, KEYS)._keys(BREAKER.name),
                  [p.probes, p.probe_ttl_ms, call, p.busy_wait_ms, p.window, p.min_calls,
                   f"{p.failure_rate:g}", IDLE_TTL_MS])


def queue_pair(pipe: Any, failure: bool) -> None:
    """One acquire then one record, as the envelope sends them, queued on ``pipe``."""
    p = BREAKER.params()
    call = uuid.uuid4().hex
    queue_acquire(pipe, call)
    RECORD.queue(pipe, BreakerStore(None, KEYS)._keys(BREAKER.name),
                 ["failure" if failure else "success", 0, "", p.window, p.min_calls,
                  f"{p.failure_rate:g}", -1, p.open_ms, p.probes, call, IDLE_TTL_MS])


def traffic(r: redis.Redis, first: int, seconds: int, fail_every: int) -> None:
    """One call a second from ``first`` on, one failure in ``fail_every`` (0: none)."""
    for chunk in range(first, first + seconds, 1000):
        with r.pipeline(transaction=False) as pipe:
            for second in range(chunk, min(chunk + 1000, first + seconds)):
                pipe.set(CLOCK_KEY, (START + second) * 1000 + 500)
                queue_pair(pipe, bool(fail_every) and second % fail_every == 0)
            pipe.execute()


def cost_us(r: redis.Redis, at_second: int, pairs: int) -> float:
    """Redis server time per acquire+record pair at simulated second ``at_second`` (µs)."""
    r.set(CLOCK_KEY, (START + at_second) * 1000 + 900)
    with r.pipeline(transaction=False) as pipe:
        for _ in range(3):  # calls out: every acquire now reads the window for a pending verdict
            queue_acquire(pipe, uuid.uuid4().hex)
        pipe.execute()
    r.config_resetstat()
    with r.pipeline(transaction=False) as pipe:
        for _ in range(pairs):
            queue_pair(pipe, False)
        pipe.execute()
    stats = r.info("commandstats").get("cmdstat_evalsha", {})
    return float(stats.get("usec", 0)) / pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=86_400, help="simulated seconds of traffic")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--fail-every", type=int, default=0, help="one failed call in N (0: none)")
    opts = parser.parse_args()
    with RedisServer() as server:
        r = redis.Redis.from_url(server.url)
        for s in (ACQUIRE, RECORD):
            s.ensure_loaded(r)
        buckets = KEYS.breaker(BREAKER.name, "buckets")
        traffic(r, 0, 1, opts.fail_every)
        fresh = cost_us(r, 0, opts.pairs)
        fresh_fields = r.hlen(buckets)
        traffic(r, 1, opts.seconds - 1, opts.fail_every)
        day = cost_us(r, opts.seconds - 1, opts.pairs)
        day_fields = r.hlen(buckets)
        state = r.hget(KEYS.breaker(BREAKER.name, "state"), "state") or b"closed"
    for label, cost, fields in (("1 s", fresh, fresh_fields), (f"{opts.seconds} s", day, day_fields)):
        print(f"after {label:>8} of traffic: {cost:7.1f} us Redis time per acquire+record, buckets {fields} fields")
    print(f"breaker state after the day: {state.decode()}")
    print(f"flat_ratio {day / fresh:.2f}")


if __name__ == "__main__":
    main()
