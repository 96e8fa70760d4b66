"""The job hash: the one record of a job's claim, lease, deliveries, generation and result.

This module owns the protocol. Its fields, states and transitions are defined here, once, as
data; the ``job_*`` scripts and :meth:`JobStore.commit` are the only writers, and no other
module reads the hash. A job is identified by its *job key*: ``k:<idempotency key>`` when it
has one, else ``t:<task id>``. The hash lives at ``<prefix>:{job:<job key>}``.

Fields
    ``state``       one of :data:`STATES` (absent: never claimed, or reset by replay)
    ``owner``       the delivery holding the claim: ``host:pid:message id:token`` (:func:`owner`),
                    unique per delivery, so two deliveries in one process are two owners
    ``lease``       Redis-clock ms until which ``owner`` holds the claim; renewed while it runs
    ``gen``         the generation: each successor message (retry, deferral) carries gen + 1, and
                    a copy with a lower gen than the hash is stale and dropped
    ``deliveries``  deliveries of the current generation that started without finishing
    ``result``      JSON ``{"v": ...}`` of a ``done`` job, for idempotent replies
    ``task``        the task id the job key belongs to: a copy of another task id is stale (a
                    fresh enqueue that takes over a dead job's key names its own task id here)

Every write sets the hash's TTL (``done_ttl`` without an idempotency key, ``idempotency_ttl``
with one, and never less than two leases); each lease renewal extends it again, so a job that
runs longer than its TTL keeps its state for as long as it runs. The ``:reported:`` markers
(:meth:`JobStore.first_report`) have their own TTL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import redis

from stalwart.errors import StalwartError
from stalwart.store.keys import Keys
from stalwart.store.scripts import as_int, guarded, script, text, text_or_none

NEW = "new"  # no hash: never claimed, expired, or reset by a replay

STATES: dict[str, str] = {
    "running": "a delivery holds the claim under a live or lapsed lease",
    "waiting": "a successor message (retry or deferral) was published; it will claim next",
    "crashed": "the pool child holding the claim died; the requeued copy may claim at once",
    "done": "final: the body succeeded; the result is kept for idempotent replies",
    "dead": "final: the job was dead-lettered",
}


@dataclass(frozen=True)
class Transition:
    """One named change of a job's state, the states it may start from, and who makes it."""

    source: tuple[str, ...]
    target: str
    writer: str


TRANSITIONS: dict[str, Transition] = {
    # job_begin: a delivery claims the job; a running job only when its lease lapsed (another
    # owner's live lease answers busy). Past max_deliveries or the deadline it counts the
    # delivery without claiming, and job_end writes the verdict.
    "claim": Transition((NEW, "running", "waiting", "crashed"), "running", "job_begin"),
    "renew": Transition(("running",), "running", "job_renew"),
    # job_end refuses a verdict while another owner's lease is live, and never revives a dead
    # job; done may be written again over done (a body that committed, then returned).
    "finish": Transition(("running", "waiting", "crashed", "done", NEW), "done", "job_end"),
    "commit": Transition(("running",), "done", "JobStore.commit"),
    "bury": Transition(("running", "waiting", "crashed", NEW), "dead", "job_end"),
    "hand_on": Transition(("running", "waiting", "crashed", NEW), "waiting", "job_end"),
    "crash": Transition(("running",), "crashed", "job_crashed"),
    # enqueue_claim: a fresh enqueue takes over the key of a dead job (the hash names its task)
    "take_over": Transition(("dead",), NEW, "enqueue_claim"),
    # replay checks first that the job is not done, waiting or under a live lease
    "reset": Transition(("dead", "crashed", "running", NEW), NEW, "JobStore.reset (replay)"),
    # job_revive (replay): not done, not waiting, no live lease; the generation is raised
    "revive": Transition(("dead", "crashed", "running", NEW), NEW, "job_revive (replay)"),
}

EndOutcome = Literal["done", "dead", "waiting"]
BeginCode = Literal["run", "done", "busy", "poison", "expired", "dead", "stale"]


def owner(host: str, pid: int, message_id: str, token: str | None = None) -> str:
    """The owner string of one delivery: ``host:pid:message id:token``.

    The token (random unless given) makes every delivery its own owner: a second delivery of a
    running message in the same process (threads, gevent, a redelivery after a connection blip)
    finds the first one's live claim and is deferred instead of running beside it.
    """
    return f"{owner_prefix(host, pid)}{message_id}:{token or uuid.uuid4().hex[:16]}"


def owner_prefix(host: str, pid: int) -> str:
    """What every owner a process creates starts with, so its main process can free them."""
    return f"{host}:{pid}:"


def job_key(idempotency_key: str | None, task_id: str) -> str:
    """The job key: ``k:<idempotency key>`` when the job has one, else ``t:<task id>``."""
    return f"k:{idempotency_key}" if idempotency_key else f"t:{task_id}"


@dataclass(frozen=True)
class Begin:
    """The answer of ``job_begin``: what to do with this delivery, and the Redis time."""

    code: BeginCode
    value: str  # deliveries (run/poison/expired), result JSON (done), wait ms (busy), gen (stale)
    now_ms: int
    linked: bool = False  # done: its link callbacks and chain were sent already


@dataclass(frozen=True)
class JobState:
    """The job hash as an operator sees it (replay, `stalwart dev`)."""

    state: str  # one of STATES, or NEW
    lease_ms: int
    now_ms: int
    task: str | None = None  # the task id the key belongs to (``task`` field), when recorded

    @property
    def lease_live(self) -> bool:
        return self.state == "running" and self.lease_ms > self.now_ms


class NotHeld(StalwartError):
    """This delivery no longer holds the job (lease expired, or already committed)."""


class JobStore:
    """Every read and write of job hashes."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def hash_key(self, job: str) -> str:
        return self.keys.job(job)

    @guarded
    def begin(self, job: str, *, owner: str, lease_ms: int, max_deliveries: int,
              deadline_ms: int | None, gen: int, ttl_ms: int, task_id: str = "") -> Begin:
        """Start a delivery: deadline, staleness, done/busy/dead checks, delivery count, claim."""
        code, value, now, *linked = script("job_begin")(
            self.client, [self.keys.job(job)],
            [owner, lease_ms, max_deliveries, deadline_ms or 0, gen, ttl_ms, task_id],
        )
        return Begin(text(code), text(value), int(now), bool(linked) and text(linked[0]) == "1")  # type: ignore[arg-type]

    @guarded
    def linked(self, job: str) -> bool:
        """Record that the done job's link callbacks and chain were sent; False when not done."""
        return bool(script("job_linked")(self.client, [self.keys.job(job)], []))

    @guarded
    def end(self, job: str, *, owner: str, outcome: EndOutcome, ttl_ms: int, gen: int,
            result: str = "", next_gen: int = 0, due_ms: int = 0) -> bool:
        """Record how a delivery of generation ``gen`` ended: done (with result), dead, or waiting
        for a successor.

        False when refused: another owner holds a live claim (or, for ``waiting``, any claim),
        the job is dead, it is done and the outcome is not, or the outcome is dead/waiting and the
        job has moved on to a newer generation than ``gen``. A ``waiting`` hash lives ``ttl_ms``
        past its successor's due time (``due_ms`` from now).
        """
        return bool(script("job_end")(
            self.client, [self.keys.job(job)], [owner, outcome, result, ttl_ms, next_gen, gen, max(0, due_ms)]
        ))

    @guarded
    def renew(self, job: str, *, owner: str, lease_ms: int, ttl_ms: int) -> bool:
        """Extend ``owner``'s lease and the hash's TTL; False when it no longer holds the job."""
        return bool(script("job_renew")(self.client, [self.keys.job(job)], [owner, lease_ms, ttl_ms]))

    @guarded
    def crashed(self, job: str, *, owner_prefix: str) -> bool:
        """Free the claim of a dead pool child (owners starting with ``owner_prefix``)."""
        return bool(script("job_crashed")(self.client, [self.keys.job(job)], [owner_prefix]))

    @guarded
    def read(self, job: str) -> JobState:
        """The job's state and lease, with the Redis time they were read at."""
        # Two commands, not a pipeline: a cluster client refuses TIME in a pipeline.
        state, lease, task = self.client.hmget(self.keys.job(job), ["state", "lease", "task"])
        sec, usec = self.client.time()
        return JobState(text_or_none(state) or NEW, as_int(lease), int(sec) * 1000 + int(usec) // 1000,
                        text_or_none(task))

    @guarded
    def reset(self, job: str) -> None:
        """Forget the job (replay): its next delivery starts a new life."""
        self.client.delete(self.keys.job(job))

    @guarded
    def revive(self, job: str, *, dead_gen: int, ttl_ms: int, task_id: str = "") -> tuple[str, int]:
        """Replay: ``("ok", new generation)`` after forgetting the claim and raising the generation
        above every copy of the job (stale copies are then dropped), or why not: ``("done", 0)``,
        ``("waiting", 0)``, ``("taken", 0)`` (a fresh enqueue owns the key now), ``("busy", lease
        ms left)``."""
        code, value = script("job_revive")(self.client, [self.keys.job(job)], [dead_gen, ttl_ms, task_id])
        return text(code), int(value)

    @guarded
    def first_report(self, job: str, *, kind: str, message_id: str, ttl_ms: int) -> bool:
        """True the first time one message of a job is reported as ``kind`` (Sentry: lost/dead)."""
        marker = f"{self.keys.job(job)}:reported:{kind}:{message_id}"
        return bool(self.client.set(marker, 1, nx=True, px=ttl_ms))

    def commit(self, job: str, *, owner: str, ttl_ms: int, result: Any,
               effect: Callable[[redis.client.Pipeline], object]) -> list[Any]:
        """Queue ``effect``'s commands and mark the job done in one MULTI/EXEC, while ``owner``
        holds it; raises :class:`NotHeld` and applies nothing otherwise. Raises
        ``redis.WatchError`` when the hash changed meanwhile (the caller tries again)."""
        key = self.keys.job(job)
        done = json.dumps({"v": result}, separators=(",", ":"))
        with self.client.pipeline(transaction=True) as pipe:
            pipe.watch(key)  # type: ignore[no-untyped-call]
            state, held_by = pipe.hmget(key, ["state", "owner"])
            if state != b"running" or held_by != owner.encode():
                raise NotHeld(f"{key} is no longer held by this delivery")
            pipe.multi()
            effect(pipe)
            pipe.hset(key, mapping={"state": "done", "result": done, "deliveries": 0})
            pipe.hdel(key, "owner", "lease")
            pipe.pexpire(key, ttl_ms)
            replies: list[Any] = pipe.execute()
        return replies[:-3]


__all__ = [
    "NEW",
    "STATES",
    "TRANSITIONS",
    "Begin",
    "JobState",
    "JobStore",
    "NotHeld",
    "Transition",
    "job_key",
    "owner",
    "owner_prefix",
]
