"""Red-team regression (issue 10, point 8): after a burst of dynamic limit and breaker names,
every key Stalwart wrote has a TTL."""
from __future__ import annotations

import redis

from stalwart.policies.breakers import Breaker
from stalwart.policies.limits import Concurrency, RateLimit
from stalwart.runtime import runtime_of


def _no_ttl(r: redis.Redis) -> list[str]:
    return sorted(k.decode() for k in r.scan_iter(count=1000) if r.pttl(k) == -1)


def test_dynamic_policy_names_leave_no_key_without_ttl(app, r: redis.Redis) -> None:
    runtime = runtime_of(app)
    for i in range(50):
        for policy in (Breaker(f"dyn-b-{i}", min_calls=2), RateLimit(f"dyn-r-{i}", "100/s"),
                       Concurrency(f"dyn-c-{i}", 5)):
            try:
                with policy.hold(runtime):
                    if isinstance(policy, Breaker) and i % 2:
                        raise RuntimeError("boom")
            except RuntimeError:
                pass
    assert _no_ttl(r) == []
