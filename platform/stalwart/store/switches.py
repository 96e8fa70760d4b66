"""Run-time switches and the jobs parked while their task is paused.

State store (``<prefix>:{switches}`` and ``<prefix>:{switches}:at``): pattern → ``paused``/
``disabled``, and pattern → when it was set. Written only by an operator; bounded by the patterns
operators set (``resume`` removes one).

Broker Redis, beside the queues: ``<prefix>:{parked}:<n>:<queue list>:<task>`` is a sorted set of
the messages of one paused task bound for one queue list (payload → ms parked, so they go back in
order), and ``<prefix>:{parked}:pairs`` registers the (queue list, task) pairs that have one. They
hold jobs, not bookkeeping: no TTL, and bounded by the jobs enqueued while paused; releasing a pair
(:meth:`ParkedStore.release`, on ``resume``/``disable``) empties its set and unregisters it.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from stalwart.store.keys import Keys
from stalwart.store.scripts import as_int, guarded, script, text, text_map

PARK_HEADER = "stalwart_park"  # a message with this header (the task name) is parked, not queued
RELEASE_BATCH = 1000


class SwitchStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    @property
    def changed_key(self) -> str:
        return f"{self.keys.switches()}:at"

    @guarded
    def rules(self) -> dict[str, str]:
        """pattern → state."""
        return text_map(self.client.hgetall(self.keys.switches()))

    @guarded
    def read(self) -> dict[str, tuple[str, int | None]]:
        """pattern → (state, ms it was set)."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.switches())
            pipe.hgetall(self.changed_key)
            states, stamps = pipe.execute()
        at = {k: as_int(v) for k, v in text_map(stamps).items()}
        return {p: (s, at.get(p)) for p, s in sorted(text_map(states).items())}

    @guarded
    def set(self, pattern: str, state: str) -> int:
        """Set a switch; returns the Redis time (ms) it took effect."""
        seconds, micros = self.client.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.switches(), pattern, state)
            pipe.hset(self.changed_key, pattern, now)
            pipe.execute()
        return now

    @guarded
    def clear(self, pattern: str) -> bool:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.switches(), pattern)
            pipe.hdel(self.changed_key, pattern)
            removed, _ = pipe.execute()
        return bool(removed)


class ParkedStore:
    """Jobs of paused tasks, parked on ``client`` (the broker's Redis) until their task resumes."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    @property
    def pairs_key(self) -> str:
        return f"{self.keys.prefix}:{{parked}}:pairs"

    def parked_key(self, list_key: str, task: str) -> str:
        """The parked set of one (queue list, task) pair; the length makes the name unambiguous."""
        return f"{self.keys.prefix}:{{parked}}:{len(list_key)}:{list_key}:{task}"

    @staticmethod
    def member(list_key: str, task: str) -> str:
        return json.dumps([list_key, task], separators=(",", ":"))

    @guarded
    def park(self, list_key: str, message: dict[str, Any]) -> int:
        """Park a kombu message bound for ``list_key`` (its headers name the task); the set's size."""
        headers = message.get("headers") or {}
        task = str(headers.pop(PARK_HEADER, None) or headers.get("task") or "")
        return int(script("parked_add")(
            self.client, [self.parked_key(list_key, task), self.pairs_key],
            [json.dumps(message), self.member(list_key, task)],
        ))

    @guarded
    def pairs(self) -> list[tuple[str, str]]:
        """Every (queue list, task) pair with parked jobs."""
        out = []
        for raw in self.client.smembers(self.pairs_key):
            try:
                list_key, task = json.loads(text(raw))
            except (ValueError, TypeError):
                continue
            out.append((str(list_key), str(task)))
        return sorted(out)

    @guarded
    def release(self, list_key: str, task: str) -> int:
        """Move one pair's parked jobs back to their queue list, oldest first; how many moved."""
        total = 0
        keys = [self.parked_key(list_key, task), list_key, self.pairs_key]
        while True:
            moved = int(script("parked_release")(self.client, keys, [RELEASE_BATCH, self.member(list_key, task)]))
            total += moved
            if moved < RELEASE_BATCH:
                return total

    @guarded
    def counts(self) -> dict[str, int]:
        """Parked jobs per task name."""
        pairs = self.pairs()
        with self.client.pipeline(transaction=False) as pipe:
            for list_key, task in pairs:
                pipe.zcard(self.parked_key(list_key, task))
            sizes = pipe.execute()
        out: dict[str, int] = {}
        for (_, task), size in zip(pairs, sizes, strict=True):
            out[task] = out.get(task, 0) + int(size)
        return out
