"""Per-process handles on shared state: settings, keys, Redis clients, DLQ, hooks."""

from __future__ import annotations

from functools import cached_property
from typing import Protocol

from redis import Redis

from .dlq import DeadLetterQueue
from .hooks import Hooks
from .keys import Keys
from .leases import LeaseKeeper
from .redis.connection import client_from_url
from .settings import Settings


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
        # Run-time switches (pause/disable by task pattern); see stalwart.switches.
        self.switches: SwitchBoard | None = None

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
    def leases(self) -> LeaseKeeper:
        return LeaseKeeper(self.redis, self.keys, self.settings.lease_seconds)

    @cached_property
    def dlq(self) -> DeadLetterQueue:
        return DeadLetterQueue(self.redis, self.keys, self.settings)
