"""Tasks the per-key policy integration tests run in real workers (test_keyed_workers.py).

Bodies record what they saw in Redis, with times from the Redis clock (TIME).
"""

from __future__ import annotations

import time
from typing import Any

import redis
from celery import shared_task

from stalwart import Retry
from stalwart.policies.breakers import Breaker
from stalwart.policies.limits import Concurrency, RateLimit
from stalwart.store.scripts import PRELUDE, SCRIPTS, Script, script
from tests.integration.effects import state_redis as _redis

TENANT = Concurrency("tenant:{tenant_id}", 2, lease=2)
API = RateLimit("api:{account}", "5/s")
SMTP = Breaker("smtp:{provider}", failure_rate=0.5, window=10, min_calls=3, open_for=60,
               failure_on=(ConnectionError,))
# Entering a body: KEYS = this key's holding counter and its max, all keys' holding counter and its
# max, this key's spans list; the span times come from the Redis clock.
_ENTER = """
local t = redis.call('TIME')
for i = 1, 3, 2 do
  local n = redis.call('INCR', KEYS[i])
  if n > tonumber(redis.call('GET', KEYS[i + 1]) or '0') then redis.call('SET', KEYS[i + 1], n) end
end
redis.call('RPUSH', KEYS[5], 'start ' .. t[1] .. '.' .. string.format('%06d', t[2]))
"""
_LEAVE = """
local t = redis.call('TIME')
redis.call('DECR', KEYS[1])
redis.call('DECR', KEYS[2])
redis.call('RPUSH', KEYS[3], 'end ' .. t[1] .. '.' .. string.format('%06d', t[2]))
"""


GRANT = "local function grant(new_tat, how)\n"
GRANT_LOG = "test:grant_log:"  # + the gcra key: "<job key> <Redis ms of the grant>" per grant


def _logged(name: str) -> Script:
    """The shipped rate script, also logging each grant's exact Redis time (test instrumentation:
    a body reads the clock a few ms after its grant, this measures by how much)."""
    shipped = script(name)
    if GRANT not in shipped.source:
        raise RuntimeError(f"{name}: cannot find where it grants")
    log = f"  redis.call('RPUSH', '{GRANT_LOG}' .. KEYS[1], ARGV[3] .. ' ' .. string.format('%.3f', now))\n"
    return Script(name, shipped.numkeys, shipped.source[len(PRELUDE):].replace(GRANT, GRANT + log))


SCRIPTS["rate_acquire"] = _logged("rate_acquire")


def _server_time(r: redis.Redis) -> float:
    sec, usec = r.time()
    return float(sec) + usec / 1e6


@shared_task(limits=[TENANT])
def tenant_job(tenant_id: Any, sleep: float) -> None:
    """Holds one slot of its tenant's budget for ``sleep`` seconds, recording start and end."""
    r = _redis()
    r.eval(_ENTER, 5, f"holding:{tenant_id}", f"max:{tenant_id}", "holding:all", "max:all", f"spans:{tenant_id}")
    time.sleep(sleep)
    r.eval(_LEAVE, 3, f"holding:{tenant_id}", "holding:all", f"spans:{tenant_id}")
    r.incr(f"effect:{tenant_id}")


@shared_task(bind=True, limits=[API])
def api_call(self: Any, account: str) -> None:
    """Records (Redis clock) when its permit was used, and the retries it had used."""
    r = _redis()
    r.rpush(f"grants:{account}", f"t:{self.request.id} {_server_time(r)}")
    r.rpush(f"retries:{account}", self.request.retries or 0)


@shared_task(breaker=SMTP, retry=Retry(max_attempts=20, backoff=0.1, backoff_max=0.2))
def send_mail(provider: str, n: int) -> None:
    """The provider named ``down`` always fails; every other provider works."""
    r = _redis()
    r.incr(f"calls:{provider}")
    if provider == "down":
        raise ConnectionError(f"{provider} refused mail {n}")
    r.incr(f"effect:{provider}")
