"""Idempotent-enqueue records: idempotency key → the task id that owns it, with a TTL."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from stalwart.store.keys import Keys
from stalwart.store.scripts import guarded, script, text


class EnqueueStore:
    """Claim and release idempotency keys at enqueue time."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    @guarded
    def claim(self, key: str, task_id: str, ttl_ms: int) -> str:
        """The task id that owns ``key``: ``task_id`` when this call claimed it."""
        return text(script("enqueue_claim")(self.client, [self.keys.idem(key)], [task_id, ttl_ms]))

    @guarded
    def claim_many(self, claims: Sequence[tuple[str, str]], ttl_ms: int) -> list[str]:
        """The owner of each ``(key, task id)``, claimed in one pipeline, in order."""
        claim = script("enqueue_claim")
        claim.ensure_loaded(self.client)
        with self.client.pipeline(transaction=False) as pipe:
            for key, task_id in claims:
                claim.queue(pipe, [self.keys.idem(key)], [task_id, ttl_ms])
            return [text(owner) for owner in pipe.execute()]

    @guarded
    def release(self, keys: Sequence[str]) -> None:
        """Give back keys claimed for jobs that were then not published."""
        if keys:
            self.client.delete(*(self.keys.idem(k) for k in keys))
