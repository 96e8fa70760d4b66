"""Run-time switches: pause or disable task types by name pattern, on every worker at once.

The switches live in one Redis hash (pattern → ``paused``/``disabled``); a companion hash keeps
when each was set. Each process caches the hash and rereads it at most every ``ttl`` seconds,
so a change reaches every worker within a second. On a Redis error the board fails open (no
switch applies) and says so in the log: a switch must never stop the platform by itself.

A paused task's jobs are *parked* (:class:`stalwart.store.switches.ParkedStore`): each is
delivered once, put in its task's parked set on the broker, and not delivered again until the
task is no longer paused, so a paused backlog takes no worker time. Every switch change made
here releases the parked jobs of the tasks it unpauses (:func:`release_unpaused`); a worker that
parks a job checks the switch again afterwards, so a resume racing a park strands nothing.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable, Mapping

import redis

from stalwart.errors import ConfigurationError, StateStoreError
from stalwart.store.keys import Keys
from stalwart.store.switches import ParkedStore, SwitchStore

log = logging.getLogger("stalwart.policies.switches")
STATES = ("paused", "disabled")


def resolve(rules: Mapping[str, str], task_name: str) -> str | None:
    """The state of ``task_name`` under ``rules``: ``disabled`` wins over ``paused``."""
    found = {state for pattern, state in rules.items() if fnmatch.fnmatchcase(task_name, pattern)}
    for state in reversed(STATES):
        if state in found:
            return state
    return None


def read(client: redis.Redis, keys: Keys) -> dict[str, dict[str, object]]:
    """Every switch: pattern → {state, at}."""
    return {p: {"state": state, "at": at} for p, (state, at) in SwitchStore(client, keys).read().items()}


def set_switch(client: redis.Redis, keys: Keys, pattern: str, state: str, broker: redis.Redis | None = None) -> int:
    """Pause or disable ``pattern``; returns the Redis time (ms) the switch took effect.

    ``broker`` is the broker's Redis when it is not ``client``: disabling a paused task releases
    its parked jobs (they are then dead-lettered as ``disabled``).
    """
    if state not in STATES:
        raise ConfigurationError(f"switch state must be one of {', '.join(STATES)}, got {state!r}")
    if not pattern or pattern != pattern.strip():
        raise ConfigurationError(f"switch pattern must be a non-empty task name pattern, got {pattern!r}")
    at = SwitchStore(client, keys).set(pattern, state)
    release_unpaused(client, broker or client, keys)
    return at


def clear(client: redis.Redis, keys: Keys, pattern: str, broker: redis.Redis | None = None) -> bool:
    """Resume ``pattern`` and release the parked jobs of the tasks it no longer pauses; False when
    no switch had that exact pattern. ``broker``: the broker's Redis when it is not ``client``."""
    removed = SwitchStore(client, keys).clear(pattern)
    release_unpaused(client, broker or client, keys)
    return removed


def release_unpaused(client: redis.Redis, broker: redis.Redis, keys: Keys, task: str | None = None) -> int:
    """Move the parked jobs of every task (or of ``task``) that is not paused now back to their
    queues; how many moved. Reads the switches fresh, not from a cache."""
    rules = {p: s for p, s in SwitchStore(client, keys).rules().items() if s in STATES}
    parked = ParkedStore(broker, keys)
    moved = 0
    for list_key, name in parked.pairs():
        if (task is None or name == task) and resolve(rules, name) != "paused":
            moved += parked.release(list_key, name)
    if moved:
        log.info("released %d parked jobs", moved)
    return moved


def parked_counts(broker: redis.Redis, keys: Keys) -> dict[str, int]:
    """Jobs parked per paused task name."""
    return ParkedStore(broker, keys).counts()


class SwitchBoard:
    """The switches as one process sees them: cached, refreshed at most every ``ttl`` seconds."""

    def __init__(
        self,
        client: Callable[[], redis.Redis],
        keys: Keys,
        ttl: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._keys = keys
        self._ttl = ttl
        self._clock = clock
        self._rules: dict[str, str] = {}
        self._expires = float("-inf")
        self._lock = threading.Lock()
        self._failing = False

    def state(self, task_name: str) -> str | None:
        """``paused``, ``disabled`` or None for ``task_name`` right now."""
        return resolve(self.rules(), task_name)

    def rules(self) -> dict[str, str]:
        """The cached pattern → state map, reread when older than ``ttl``."""
        if self._clock() < self._expires:
            return self._rules
        with self._lock:
            if self._clock() >= self._expires:
                self._rules = self._fetch()
                self._expires = self._clock() + self._ttl
        return self._rules

    def _fetch(self) -> dict[str, str]:
        try:
            raw = SwitchStore(self._client(), self._keys).rules()
        except StateStoreError as exc:
            if not self._failing:
                log.warning("switches unreadable, running every task until Redis answers: %s", exc)
            self._failing = True
            return {}
        if self._failing:
            log.warning("switches readable again")
        self._failing = False
        return {p: s for p, s in raw.items() if s in STATES}
