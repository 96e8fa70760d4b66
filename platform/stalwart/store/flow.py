"""Debounce bursts and singleton slots, on the state store (one hash tag per task and key).

* ``<prefix>:{debounce:<task>:<key>}`` (hash: burst id, first enqueue, due time, latest call and
  its deadline on the Redis clock, fire-by time) holds a key's open burst; ``...:closed`` (hash:
  burst id → call, ``<burst id>:deadline`` → its deadline) holds a closed burst's call until its
  job is published. TTL ``ttl_ms`` (the burst's longest wait plus the idempotency retention), set
  on the burst hash at every enqueue and on the closed hash at every close; one burst and a handful of
  closed calls per key, and a published call is removed at once.
* ``<prefix>:{singleton:<task>:<key>}`` (hash: waiting task id, its state and when it was last
  seen; the run slot's holder token and lease expiry). TTL refreshed on every write; at most one
  waiting id and one holder per key.

``<key>`` is the rendered key as it is when short and free of braces (which would move the hash
tag), else ``#`` and its SHA-1.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from stalwart.store.keys import Keys, utf8_text
from stalwart.store.scripts import as_int, guarded, script, text

MAX_PLAIN_KEY = 200


def key_part(task: str, key: str) -> str:
    """``<task>:<key>`` for a key name: a long key, or one with braces, is hashed."""
    raw = f"{task}:{key}"
    if len(raw) > MAX_PLAIN_KEY or "{" in raw or "}" in raw:  # a lone surrogate: as the wire sends it
        return "#" + hashlib.sha1(utf8_text(raw).encode()).hexdigest()  # noqa: S324 - a name, not a secret
    return raw


@dataclass(frozen=True)
class Joined:
    """Where a debounced enqueue went: its burst's task id, and what the caller must do."""

    burst_id: str
    new: bool  # a new burst: publish its trigger
    rearm: bool  # an open burst whose trigger looks lost: publish another
    due_ms: int  # ms from now until the burst is due
    deadline_ms: int | None = None  # the call's deadline, epoch ms on the Redis clock


@dataclass(frozen=True)
class Fired:
    """A trigger's verdict: run the call, wait ``wait_ms`` more (the burst's latest call comes
    along), or no trace of the burst (``gone``: its job was published, or the store lost it).
    ``now_ms`` is the Redis clock when the script ran."""

    action: Literal["run", "wait", "gone"]
    call: str = ""
    wait_ms: int = 0
    deadline_ms: int | None = None  # the call's deadline, epoch ms on the Redis clock
    now_ms: int = 0


def _ms_or_none(value: Any) -> int | None:
    found = text(value)
    return int(found) if found else None


class DebounceStore:
    """The bursts of debounced tasks."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def burst_key(self, task: str, key: str) -> str:
        return f"{self.keys.prefix}:{{debounce:{key_part(task, key)}}}"

    def closed_key(self, task: str, key: str) -> str:
        return f"{self.burst_key(task, key)}:closed"

    @guarded
    def enqueue(self, task: str, key: str, *, new_id: str, wait_ms: int, max_wait_ms: int, call: str,
                ttl_ms: int, rearm_ms: int, deadline_in_ms: int | None = None) -> Joined:
        """Join the key's open burst with ``call`` (due ``deadline_in_ms`` from now on the Redis
        clock, when given) or open a new one named ``new_id``."""
        burst, code, due, deadline = script("debounce_enqueue")(
            self.client, [self.burst_key(task, key)],
            [new_id, wait_ms, max_wait_ms, call, ttl_ms, rearm_ms, "" if deadline_in_ms is None else deadline_in_ms])
        return Joined(text(burst), new=int(code) == 1, rearm=int(code) == 2, due_ms=int(due),
                      deadline_ms=_ms_or_none(deadline))

    @guarded
    def fire(self, task: str, key: str, burst_id: str, *, ttl_ms: int, rearm_ms: int) -> Fired:
        """Close the burst ``burst_id`` if it is due, handing back its call."""
        action, call, wait, deadline, now = script("debounce_fire")(
            self.client, [self.burst_key(task, key), self.closed_key(task, key)], [burst_id, ttl_ms, rearm_ms])
        verdict = text(action)
        if verdict not in ("run", "wait", "gone"):
            raise ValueError(f"debounce_fire answered {verdict!r}")
        return Fired(verdict, call=text(call), wait_ms=as_int(wait),  # type: ignore[arg-type] # checked above
                     deadline_ms=_ms_or_none(deadline), now_ms=as_int(now))

    @guarded
    def done(self, task: str, key: str, burst_id: str) -> bool:
        """The closed burst's job is published: forget its call."""
        return bool(script("debounce_done")(self.client, [self.closed_key(task, key)], [burst_id]))


ClaimCode = Literal["merged", "pending", "claimed"]


class SingletonStore:
    """The waiting job and the run slot of each singleton key."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def key(self, task: str, key: str) -> str:
        return f"{self.keys.prefix}:{{singleton:{key_part(task, key)}}}"

    @guarded
    def claim(self, task: str, key: str, *, new_id: str, ttl_ms: int, pending_ms: int,
              stale_ms: int) -> tuple[ClaimCode, str]:
        """Merge into the key's waiting job, or reserve the wait for ``new_id``."""
        code, task_id = script("singleton_claim")(self.client, [self.key(task, key)],
                                                  [new_id, ttl_ms, pending_ms, stale_ms])
        found = text(code)
        if found not in ("merged", "pending", "claimed"):
            raise ValueError(f"singleton_claim answered {found!r}")
        return found, text(task_id)  # type: ignore[return-value] # checked just above

    @guarded
    def settle(self, task: str, key: str, task_id: str, *, published: bool, ttl_ms: int) -> bool:
        """The reserved waiting job was published (or not: the wait is given back)."""
        return bool(script("singleton_settle")(self.client, [self.key(task, key)],
                                               [task_id, 1 if published else 0, ttl_ms]))

    @guarded
    def acquire(self, task: str, key: str, *, task_id: str, token: str, lease_ms: int, ttl_ms: int,
                max_retry_ms: int) -> tuple[bool, int]:
        """Take the key's run slot (granted, 0) or (False, ms to wait)."""
        granted, wait = script("singleton_acquire")(self.client, [self.key(task, key)],
                                                    [task_id, token, lease_ms, ttl_ms, max_retry_ms])
        return bool(int(granted)), int(wait)

    @guarded
    def release(self, task: str, key: str, token: str) -> bool:
        return bool(script("singleton_release")(self.client, [self.key(task, key)], [token]))

    @guarded
    def forget(self, task: str, key: str, task_id: str, *, ttl_ms: int) -> bool:
        """``task_id`` was dead-lettered: it stops being the key's waiting job if it is."""
        return bool(script("singleton_forget")(self.client, [self.key(task, key)], [task_id, ttl_ms]))

    @guarded
    def renew(self, task: str, key: str, token: str, *, lease_ms: int, ttl_ms: int) -> int:
        """1 renewed, 2 taken back (the state store had lost it), 0 lost to another job."""
        return int(script("singleton_renew")(self.client, [self.key(task, key)], [token, lease_ms, ttl_ms]))
