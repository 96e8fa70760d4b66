"""Per-key state does not grow with the keys ever seen (issue 12, point 1): 10,000 distinct keys
of each policy kind through the real acquire/release path on a real redis-server, then every key
in Redis has a TTL within its documented bound, each template's busiest-keys set holds at most
its cap, and the registries list the three templates, not 30,000 names."""

from __future__ import annotations

from collections import Counter

import pytest
import redis

from stalwart.job.context import Outcome
from stalwart.policies.breakers import Breaker
from stalwart.policies.limits import Concurrency, RateLimit
from stalwart.policies.survey import breaker_status, limit_status
from stalwart.runtime import Runtime
from stalwart.settings import Settings
from stalwart.store.keys import Keys
from stalwart.store.limits import BUSIEST_CAP, BUSIEST_TTL_MS, IDLE_TTL_MS, KEY_IDLE_MS, REGISTRIES

pytestmark = pytest.mark.integration

N = 10_000
K = Keys("stalwart")
RATE = RateLimit("api:{account}", "5/s")
SLOTS = Concurrency("tenant:{tenant_id}", 3, lease=1)
SMTP = Breaker("smtp:{provider}", min_calls=1, open_for=1, window=30, failure_on=(ConnectionError,))

# The documented bound of every key a per-key policy writes (store/limits.py, store/breakers.py)
BOUNDS_MS = {
    "gcra": RATE.interval_ms * (RATE.burst + 1) + 60_000,  # just past the TAT, plus a minute
    "reserved": 10_000 + 60_000,
    "holders": 2 * SLOTS.lease_ms,
    "stats": KEY_IDLE_MS,
    "inflight": 2 * int(SMTP.probe_ttl * 1000),
    "probes": 2 * int(SMTP.probe_ttl * 1000),
    "buckets": (SMTP.window + 5) * 1000,
    "state": int(SMTP.open_for * 1000) + KEY_IDLE_MS,
    "keys": BUSIEST_TTL_MS,  # one per template
    "template": IDLE_TTL_MS,  # one per template
    **dict.fromkeys(REGISTRIES.values(), IDLE_TTL_MS),  # one per kind
}


def test_ten_thousand_keys_of_each_kind_leave_bounded_state(redis_url: str, r: redis.Redis) -> None:
    runtime = Runtime(Settings.from_env({"STALWART_REDIS_URL": redis_url}))
    for i in range(N):
        rate = RATE.for_key(account=f"acct-{i}")
        rate.release(runtime, None, rate.acquire(runtime, None), Outcome("succeeded", 0.001))
        slot = SLOTS.for_key(tenant_id=i)
        slot.release(runtime, None, slot.acquire(runtime, None), Outcome("succeeded", 0.001))
        smtp = SMTP.for_key(provider=f"p{i}")
        outcome = Outcome("retried", 0.001, ConnectionError("refused")) if i % 2 else Outcome("succeeded", 0.001)
        smtp.release(runtime, None, smtp.acquire(runtime, None), outcome)

    parts: Counter[str] = Counter()
    for raw in r.scan_iter(count=5000):
        key = raw.decode()
        part = key.rsplit(":", 1)[1]
        ttl = r.pttl(key)
        assert part in BOUNDS_MS, key
        assert 0 < ttl <= BOUNDS_MS[part], (key, ttl, BOUNDS_MS[part])
        parts[part] += 1
    # per-key structures exist (each key its own budget) but every one of them expires soon;
    # what lives long is one entry per template, never one per key
    assert parts["gcra"] == N
    assert parts["stats"] == N
    assert parts["state"] == N // 2  # the failing half of the breaker keys opened, each its own
    assert parts["keys"] == 3
    assert parts["template"] == 3
    assert parts["config"] == 0  # no settings hash per rendered key
    assert sum(n for part, n in parts.items() if BOUNDS_MS[part] > KEY_IDLE_MS + 1000) == 3 + 3 + 2
    # the registries list the templates, not 30,000 names; each busiest-keys set is capped
    assert r.zrange(K.registry("limit_names"), 0, -1) == [b"api:{account}", b"tenant:{tenant_id}"]
    assert r.zrange(K.registry("breaker_names"), 0, -1) == [b"smtp:{provider}"]
    for family in ("{limit:api:<account>}", "{limit:tenant:<tenant_id>}", "{breaker:smtp:<provider>}"):
        assert r.zcard(f"stalwart:{family}:keys") == BUSIEST_CAP

    # operators: a template shows its busiest keys (here the latest, each used once), a key its state
    shown = limit_status(r, K, "tenant:{tenant_id}", top=5)
    assert shown is not None
    assert shown["tracked_keys"] == BUSIEST_CAP
    assert [k["name"] for k in shown["keys"]] == [f"tenant:{i}" for i in range(N - 1, N - 6, -1)]
    one = limit_status(r, K, "tenant:9999")
    assert one is not None
    assert one["template"] == "tenant:{tenant_id}"
    assert one["granted"] == 1
    assert one["holders"] == 0
    smtp_key = breaker_status(r, K, f"smtp:p{N - 1}")
    assert smtp_key is not None
    assert smtp_key["state"] == "open"
    assert limit_status(r, K, "tenant:nobody:else") is None
