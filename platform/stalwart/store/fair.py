"""Fair lanes: the jobs of one queue list served in rotation over their ``fair_by`` keys.

On the broker Redis, beside each queue list ``<list>`` (its full name, kombu's ``global_keyprefix``
included) that has received a fair job, under one hash tag ``<prefix>:{fair:<list>}``:

* ``:lane``, a sorted set of the queued fair jobs: member ``<16 hex digits of a sequence><payload>``
  (unique even for equal payloads; ties are served first come, first served), scored by the job's
  start tag. Start-time fair queuing: a job of key *k* with weight *w* gets
  ``start = max(v, tail[k])`` and moves ``tail[k]`` to ``start + 1/w``; the fetch serves the
  lowest start and sets ``v`` to it. Holds jobs, not bookkeeping: no TTL, bounded by the jobs
  enqueued, like the queue list itself.
* ``:tails``, a sorted set key → tail. A tail at or below ``v`` delays nobody and is deleted by
  the fetch that passes it, so it holds only keys with queued jobs and keys whose last job was
  served within the last ``1/w`` of virtual time (at most one entry per key served in the
  current round). When the lane empties, it is deleted with the clock.
* ``:clock``, a hash: ``v``, ``plain`` (the plain list's tail: the list is one more key of weight
  1, so plain jobs and fair jobs share the queue) and ``seq``. Three fields; deleted when the
  lane empties.
* ``:delayed``, a sorted set of the lane's retries, deferrals and countdowns by due time, member
  :func:`delayed_member` (the key and weight readable without decoding JSON); the mover moves due
  ones into the lane. Drained by the movers, like the plain delayed sets.

The delayed sets' registry (``<prefix>:{registry}:delayed``) also names each list that has a lane
or a fair delayed set, as ``\0fair:<list>`` (what the movers and ``stalwart status`` scan, with
the one SMEMBERS a mover's tick already makes): one member per queue list, never more.

The first job of an empty lane pushes :data:`WAKE` on the plain list when that list is empty, so
a consumer idly waiting on it (BLMOVE) wakes at once; the fetch drops the token. Celery's
``purge`` empties the plain list only: lanes stay (``stalwart status`` counts them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stalwart.store.keys import Keys
from stalwart.store.scripts import script, text

WAKE = b"stalwart:fair-wake"
MARK = "\0fair:"  # a lane's list in the delayed sets' registry
MOVE_BATCH = 1000


@dataclass(frozen=True)
class FairJob:
    """A job's place in the rotation: its rendered ``fair_by`` key and its weight."""

    key: str
    weight: float


@dataclass(frozen=True)
class LaneKeys:
    """The keys of one queue list's lane."""

    lane: str
    tails: str
    clock: str
    delayed: str

    @classmethod
    def of(cls, prefix: str, list_key: str) -> LaneKeys:
        base = f"{prefix}:{{fair:{list_key}}}"
        return cls(f"{base}:lane", f"{base}:tails", f"{base}:clock", f"{base}:delayed")


def registry(keys: Keys) -> str:
    """The registry lanes share with the delayed sets (their lists marked with :data:`MARK`)."""
    return keys.registry("delayed")


def registry_member(list_key: str) -> str:
    return MARK + list_key


def split_registry(members: Any) -> tuple[list[str], list[str]]:
    """(lists with a delayed set, lists with a lane) of the registry's members."""
    names = [text(m) for m in members]
    return (sorted(n for n in names if not n.startswith(MARK)),
            sorted(n[len(MARK):] for n in names if n.startswith(MARK)))


def delayed_member(job: FairJob, payload: str) -> str:
    """A fair delayed set member: ``<weight> <key bytes> <key><payload>`` (parsed by ``fair_move``)."""
    return f"{job.weight!r} {len(job.key.encode())} {job.key}{payload}"


def _push_args(keys: Keys, list_key: str, job: FairJob, payload: str) -> tuple[list[str], list[Any]]:
    lane = LaneKeys.of(keys.prefix, list_key)
    return [lane.lane, lane.tails, lane.clock, list_key, registry(keys)], [job.key, repr(job.weight), payload]


def push(client: Any, keys: Keys, list_key: str, job: FairJob, payload: str) -> float:
    """Queue ``payload`` in ``list_key``'s lane as ``job.key``'s next job; its start tag.

    Not wrapped: kombu's publish path calls it and retries a publish on connection errors.
    """
    return float(text(script("fair_push")(client, *_push_args(keys, list_key, job, payload))))


def push_command(keys: Keys, list_key: str, job: FairJob, payload: str) -> tuple[Any, ...]:
    """The same as a raw command for a kombu publish batch; load it first with :func:`ensure_loaded`."""
    return script("fair_push").command(*_push_args(keys, list_key, job, payload))


def ensure_loaded(client: Any) -> None:
    script("fair_push").ensure_loaded(client)


def move_due(client: Any, keys: Keys, list_key: str, batch: int = MOVE_BATCH) -> tuple[int, int]:
    """Move the lane's due delayed jobs into it; (moved, ms until the next is due or -1)."""
    lane = LaneKeys.of(keys.prefix, list_key)
    moved, wait = script("fair_move")(
        client, [lane.delayed, lane.lane, lane.tails, lane.clock, list_key, registry(keys)], [batch])
    return int(moved), int(wait)


def lists(client: Any, keys: Keys) -> list[str]:
    """Every queue list that has (or had) a lane."""
    return split_registry(client.smembers(registry(keys)))[1]


def counts(client: Any, keys: Keys, list_keys: list[str]) -> list[tuple[int, int]]:
    """(queued in the lane, waiting in its delayed set) of each list, in one pipeline."""
    with client.pipeline(transaction=False) as pipe:
        for name in list_keys:
            lane = LaneKeys.of(keys.prefix, name)
            pipe.zcard(lane.lane)
            pipe.zcard(lane.delayed)
        flat = [int(n) for n in pipe.execute()]
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def state(client: Any, keys: Keys, list_key: str) -> dict[str, Any]:
    """A lane's whole state (for tests and operators): members with scores, tails and clock."""
    lane = LaneKeys.of(keys.prefix, list_key)
    with client.pipeline(transaction=False) as pipe:
        pipe.zrange(lane.lane, 0, -1, withscores=True)
        pipe.zrange(lane.tails, 0, -1, withscores=True)
        pipe.hgetall(lane.clock)
        members, tails, clock = pipe.execute()
    return {
        "lane": [(bytes(m), float(s)) for m, s in members],
        "tails": {text(k): float(s) for k, s in tails},
        "clock": {text(k): float(text(v)) for k, v in dict(clock).items()},
    }
