"""Effects exactly once per job: a body's Redis effect and the job's ``done`` mark in one commit.

The envelope alone gives at-least-once delivery and at most one *successful completion* per
key: a body that did its effect but whose worker died before the ``done`` mark runs again.
A body whose effect lives in the state store closes that gap with :func:`commit`::

    @app.task(idempotency_key="charge-{order_id}")
    def charge(order_id: str) -> None:
        commit(lambda pipe: pipe.incrby(f"balance:{order_id}", -10))

The queued commands and the ``done`` mark run in one MULTI/EXEC, guarded by WATCH on the job's
state hash and applied only while this delivery still holds the claim. Either both happen or
neither does, so a redelivered copy finds ``done`` and never repeats the effect. The effect's keys
must live in the state store Redis (on Redis Cluster, in the job's hash slot). Effects outside
Redis need their own idempotency (e.g. the key sent to the payment provider).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import redis
from celery.exceptions import Ignore

from .errors import ConfigurationError, StalwartError, StateStoreError

WATCH_ATTEMPTS = 50
RECONNECT_SECONDS = 5.0


@dataclass(frozen=True)
class Claim:
    """The claim a running delivery holds on its job's state hash."""

    client: redis.Redis
    job_hash: str
    owner: str
    ttl_ms: int


class ClaimLost(Ignore, StalwartError):
    """This delivery no longer holds the job (lease expired, or already committed): stop."""


_current: ContextVar[Claim | None] = ContextVar("stalwart_claim", default=None)


@contextmanager
def holding(claim: Claim) -> Iterator[None]:
    """Make ``claim`` the current delivery's claim while its body runs (used by the envelope)."""
    token = _current.set(claim)
    try:
        yield
    finally:
        _current.reset(token)


def current_claim() -> Claim:
    """The claim of the job running in this context, or a ConfigurationError."""
    claim = _current.get()
    if claim is None:
        raise ConfigurationError("commit() is only available inside a task body run by the envelope")
    return claim


def commit(effect: Callable[[redis.client.Pipeline], object], result: Any = None) -> list[Any]:
    """Run ``effect``'s queued commands and mark the job done, atomically; their replies.

    Raises :class:`ClaimLost` (the delivery is then dropped, not failed) when this delivery no
    longer holds the job, and applies nothing.
    """
    claim = current_claim()
    done = json.dumps({"v": result}, separators=(",", ":"))
    for _ in range(WATCH_ATTEMPTS):
        try:  # a retry after a lost reply is safe: an applied commit reads back as ClaimLost
            return retry_redis(lambda: _try_commit(claim, effect, done), RECONNECT_SECONDS)  # type: ignore[no-any-return]
        except redis.WatchError:  # the lease was renewed meanwhile: check again
            continue
    raise StateStoreError(f"could not commit the effect of {claim.job_hash}: too much contention")


def _try_commit(claim: Claim, effect: Callable[[redis.client.Pipeline], object], done: str) -> list[Any]:
    with claim.client.pipeline(transaction=True) as pipe:
        pipe.watch(claim.job_hash)  # type: ignore[no-untyped-call]
        state, owner = pipe.hmget(claim.job_hash, ["state", "owner"])
        if state != b"running" or owner != claim.owner.encode():
            raise ClaimLost(f"{claim.job_hash} is no longer held by this delivery")
        pipe.multi()
        effect(pipe)
        pipe.hset(claim.job_hash, mapping={"state": "done", "result": done, "deliveries": 0})
        pipe.hdel(claim.job_hash, "owner", "lease")
        pipe.pexpire(claim.job_hash, claim.ttl_ms)
        replies: list[Any] = pipe.execute()
    return replies[:-3]


def retry_redis(call: Callable[[], Any], within: float, first_wait: float = 0.1) -> Any:
    """``call()``, retried on Redis connection errors with doubling waits for ``within`` seconds."""
    deadline, wait = time.monotonic() + within, first_wait
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.BusyLoadingError):
            if time.monotonic() + wait > deadline:
                raise
            time.sleep(wait)
            wait = min(wait * 2, 2.0)


__all__ = ["Claim", "ClaimLost", "commit", "current_claim", "holding", "retry_redis"]
