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

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import redis
from celery.exceptions import Ignore

from stalwart.errors import ConfigurationError, StalwartError, StateStoreError, StoreUnavailable
from stalwart.store.jobs import JobStore, NotHeld

WATCH_ATTEMPTS = 50
RECONNECT_SECONDS = 5.0


@dataclass(frozen=True)
class Claim:
    """The claim a running delivery holds on its job's state hash."""

    jobs: JobStore
    job_key: str
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

    def attempt() -> list[Any]:
        try:
            return claim.jobs.commit(claim.job_key, owner=claim.owner, ttl_ms=claim.ttl_ms,
                                     result=result, effect=effect)
        except NotHeld as exc:
            raise ClaimLost(str(exc)) from None
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.BusyLoadingError) as exc:
            raise StoreUnavailable(f"commit of {claim.job_key}: {exc}") from exc

    for _ in range(WATCH_ATTEMPTS):
        try:  # a retry after a lost reply is safe: an applied commit reads back as ClaimLost
            return retry_store(attempt, RECONNECT_SECONDS)  # type: ignore[no-any-return]
        except redis.WatchError:  # the lease was renewed meanwhile: check again
            continue
    raise StateStoreError(f"could not commit the effect of {claim.job_key}: too much contention")


def retry_store(call: Callable[[], Any], within: float, first_wait: float = 0.1) -> Any:
    """``call()``, retried while the state store is unreachable, with doubling waits, for ``within`` s."""
    deadline, wait = time.monotonic() + within, first_wait
    while True:
        try:
            return call()
        except StoreUnavailable:
            if time.monotonic() + wait > deadline:
                raise
            time.sleep(wait)
            wait = min(wait * 2, 2.0)


__all__ = ["Claim", "ClaimLost", "commit", "current_claim", "holding", "retry_store"]
