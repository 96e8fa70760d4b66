"""Per-process handles on shared state: settings, keys, Redis clients, stores, DLQ, hooks."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from functools import cached_property
from typing import Any, Protocol

from redis import Redis

from stalwart.dlq.queue import DeadLetterQueue
from stalwart.errors import ConfigurationError
from stalwart.hooks import Hooks
from stalwart.job.leases import LeaseKeeper
from stalwart.settings import Settings
from stalwart.store.breakers import BreakerStore
from stalwart.store.connection import client_from_url
from stalwart.store.delayed import DelayedStore
from stalwart.store.enqueue import EnqueueStore
from stalwart.store.jobs import JobStore
from stalwart.store.keys import Keys
from stalwart.store.limits import LimitStore
from stalwart.store.presence import PresenceStore
from stalwart.store.switches import SwitchStore


class SwitchBoard(Protocol):
    """Answers whether a task name is paused or disabled right now."""

    def state(self, task_name: str) -> str | None: ...


class Runtime:
    """What the envelope, the consumer and the CLI share. Clients are created lazily.

    redis-py connection pools notice a fork and reconnect, so one Runtime serves the worker's
    main process and its pool children alike.
    """

    def __init__(self, settings: Settings, hooks: Hooks | None = None) -> None:
        self.settings = settings
        self.keys = Keys(settings.prefix)
        self.hooks = hooks if hooks is not None else Hooks()
        # Run-time switches (pause/disable by task pattern), set by the worker's bootstep.
        self.switches: SwitchBoard | None = None
        self.wired = False  # the worker's bootstep wired this process (stalwart.worker.steps)
        # A task name's registered task, set by the app: the DLQ scrubs positional secrets by it.
        self.task_of: Callable[[str], Any] = lambda name: None
        _RUNTIMES.add(self)

    def forget_clients(self) -> None:
        """Set aside every client and store made so far; the next use makes fresh ones.

        The old ones are kept, never closed: closing a client takes its pool's lock, which a
        forked child may have inherited held.
        """
        for name, value in vars(Runtime).items():
            if isinstance(value, cached_property) and name in self.__dict__:
                _SET_ASIDE.append(self.__dict__.pop(name))

    @cached_property
    def redis(self) -> Redis:
        """The state store (idempotency, DLQ, limits, breakers, switches)."""
        return client_from_url(self.settings.redis_url, self.settings.redis_timeout_seconds)

    @cached_property
    def broker_redis(self) -> Redis:
        """The broker's Redis, where the delayed sets live beside the queues."""
        if self.settings.broker_url == self.settings.redis_url:
            return self.redis
        return client_from_url(self.settings.broker_url, self.settings.redis_timeout_seconds)

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.redis, self.keys)

    @cached_property
    def delayed(self) -> DelayedStore:
        return DelayedStore(self.broker_redis, self.keys)

    @cached_property
    def enqueues(self) -> EnqueueStore:
        return EnqueueStore(self.redis, self.keys)

    @cached_property
    def limits(self) -> LimitStore:
        return LimitStore(self.redis, self.keys)

    @cached_property
    def breakers(self) -> BreakerStore:
        return BreakerStore(self.redis, self.keys)

    @cached_property
    def switch_store(self) -> SwitchStore:
        return SwitchStore(self.redis, self.keys)

    @cached_property
    def presence(self) -> PresenceStore:
        return PresenceStore(self.redis, self.keys)

    @cached_property
    def leases(self) -> LeaseKeeper:
        return LeaseKeeper(self.jobs, self.settings.lease_seconds)

    @cached_property
    def dlq(self) -> DeadLetterQueue:
        return DeadLetterQueue(self.redis, self.keys, self.settings, task_of=self.task_of)


_RUNTIMES: weakref.WeakSet[Runtime] = weakref.WeakSet()
_SET_ASIDE: list[Any] = []  # a forked child's inherited clients: never used, never closed


def _forget_clients_in_child() -> None:
    """A forked process (a pool child, also one that replaces a recycled child while the main
    process's threads run) never uses its parent's Redis clients: a thread of the parent may have
    held a client's pool lock at the fork, and redis-py 8 waits on that copied lock for ever."""
    for runtime in list(_RUNTIMES):
        runtime.forget_clients()


os.register_at_fork(after_in_child=_forget_clients_in_child)


def runtime_of(app: Any) -> Runtime:
    """The Runtime of a Stalwart app (a plain Celery app has none)."""
    runtime = getattr(app, "stalwart", None)
    if not isinstance(runtime, Runtime):
        raise ConfigurationError(f"{app!r} is not a Stalwart app (stalwart.Stalwart); it has no runtime")
    return runtime
