"""Idempotent-enqueue records: idempotency key → the task id that owns it, with a TTL.

Keys are scoped per task name (:func:`scoped`): the same key given to two tasks is two jobs. The
record lives at ``<prefix>:{job:k:<key>}:enqueued``, beside the job's state hash (same slot), with
the idempotency TTL. A key whose job was dead-lettered is taken over by a fresh enqueue.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from stalwart.store.jobs import job_key
from stalwart.store.keys import Keys
from stalwart.store.scripts import guarded, script, text


def scoped(task_name: str, key: str) -> str:
    """The idempotency key of ``task_name`` for a key given at enqueue: ``<task name>:<key>``.

    A key that already starts with the task name (one derived from the task's template, or
    given scoped) is kept as it is, so a derived key and the same key given explicitly agree.
    """
    prefix = f"{task_name}:"
    return key if key.startswith(prefix) else prefix + key


class EnqueueStore:
    """Claim and release idempotency keys at enqueue time."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def _claim_keys(self, key: str) -> list[str]:
        return [self.keys.idem(key), self.keys.job(job_key(key, ""))]

    @guarded
    def claim(self, key: str, task_id: str, ttl_ms: int) -> str:
        """The task id that owns ``key``: ``task_id`` when this call claimed it."""
        return text(script("enqueue_claim")(self.client, self._claim_keys(key), [task_id, ttl_ms]))

    @guarded
    def claim_many(self, claims: Sequence[tuple[str, str]], ttl_ms: int) -> list[str]:
        """The owner of each ``(key, task id)``, claimed in one pipeline, in order."""
        claim = script("enqueue_claim")
        claim.ensure_loaded(self.client)
        with self.client.pipeline(transaction=False) as pipe:
            for key, task_id in claims:
                claim.queue(pipe, self._claim_keys(key), [task_id, ttl_ms])
            return [text(owner) for owner in pipe.execute()]

    @guarded
    def release(self, keys: Sequence[str]) -> None:
        """Give back keys claimed for jobs that were then not published."""
        if keys:
            self.client.delete(*(self.keys.idem(k) for k in keys))
