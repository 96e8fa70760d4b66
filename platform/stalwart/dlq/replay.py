"""Replay dead-letter entries: re-publish each job exactly as it was sent, or say why not.

A replayed message carries the dead job's task id, arguments, custom headers and canvas
(chain, callbacks, errbacks, chord, group; see :mod:`stalwart.dlq.message`), idempotency key,
trace id and attempt history, a fresh message id and no deadline (an operator replaying it has
decided it is still wanted). Its generation is one above every copy of the job that may still
exist (the job hash is revived with that floor, ``job_revive``), so a leftover redelivered or
delayed copy is dropped as stale instead of running beside the replay.

The order is what makes replay safe: the job hash is revived first, the message published next,
the entry removed last. A crash in between leaves the entry in place, so the job is never lost;
replaying it again raises the generation again, so the earlier copy is dropped as stale.

Entries are skipped, with a reason, when they cannot be replayed faithfully (malformed or
refused messages, a body that never decoded into arguments, an entry without its message's
canvas and headers) or should not be (its work is already done, it is waiting or running right
now, another operator is replaying it at this moment).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import celery

from stalwart.broker.decode import CLOCK_FIELD, LOCAL_CLOCK
from stalwart.dlq import message
from stalwart.dlq.entry import DeadLetter, Filter, unreplayable_reason
from stalwart.errors import DLQError
from stalwart.job.header import HEADER, Meta, now_ms
from stalwart.runtime import runtime_of
from stalwart.store import jobs as job_store

LOCK_MS = 60_000
BATCH = 100
NOT_FOUND = "not found (already replayed, purged or evicted)"
LOCKED = "another replay of this entry is in progress"
STATE_BLOCKS = {
    "done": "already done since: replaying would run it twice",
    "waiting": "the job is waiting to run again (already replayed?)",
    "busy": "the job is running right now (already replayed?)",
    "taken": "a newer job was enqueued with the same idempotency key since: it owns the key now",
}


@dataclass
class ReplayReport:
    """What a replay did: the entries replayed, and each skipped entry with why."""

    replayed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "replayed": len(self.replayed),
            "skipped": len(self.skipped),
            "replayed_ids": list(self.replayed),
            "skipped_reasons": dict(self.skipped),
        }

    def skipped_by_why(self) -> dict[str, int]:
        return dict(Counter(self.skipped.values()))


@dataclass
class Plan:
    """A dry run: how many entries a replay would republish and how many it would skip, and why."""

    replay: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"replay": self.replay, "skip": sum(self.skipped.values()), "why": dict(self.skipped)}


def entry_meta(entry: DeadLetter) -> Meta:
    """The job's ``stalwart`` header as it was when it died, from either kind of entry."""
    headers = entry.headers or {}
    if HEADER in headers:  # written by the consumer: the whole Celery header set
        return Meta.from_header(headers[HEADER])
    if "msg" in headers:  # written by the envelope: the stalwart header itself
        return Meta.from_header(headers)
    return Meta()


def successor_meta(entry: DeadLetter, gen: int) -> Meta:
    """The header of the replayed message: same key, trace and history; fresh msg; no deadline;
    generation ``gen`` (from the revived job hash); ``sent`` now on this process's clock (the
    publisher marks it ``clock: local`` so the transport moves it onto the Redis clock)."""
    old = entry_meta(entry)
    return old.successor(gen=gen, deadline=None, sent=now_ms(), first_seen=old.first_seen or entry.first_seen)


def job_key(entry: DeadLetter) -> str:
    """The job's state-hash key: ``k:<idempotency key>`` or ``t:<task id>``."""
    return job_store.job_key(entry_meta(entry).key, str(entry.task_id))


class Replayer:
    """Replays entries of one app's DLQ, a batch at a time, each in the safe order."""

    def __init__(self, app: celery.Celery) -> None:
        self.app = app
        self.runtime = runtime_of(app)
        self.dlq = self.runtime.dlq
        settings = self.runtime.settings
        # The revived hash must outlive the replayed message's wait in its queue.
        self.revive_ttl_ms = int(max(settings.idempotency_ttl_seconds, settings.done_ttl_seconds) * 1000)

    def replay_ids(self, entry_ids: Iterable[str]) -> ReplayReport:
        report = ReplayReport()
        ids = list(dict.fromkeys(entry_ids))
        for i in range(0, len(ids), BATCH):
            self.replay_batch(ids[i : i + BATCH], report)
        return report

    def replay_matching(self, flt: Filter = Filter()) -> ReplayReport:
        """Replay every entry matching ``flt``; the ids are read first, so new deaths are not."""
        return self.replay_ids([i for batch in self.dlq.iter_ids(flt) for i in batch])

    def replay_batch(self, entry_ids: list[str], report: ReplayReport) -> None:
        """Replay up to a batch of entries: lock, revive, publish, then remove what was sent."""
        locked = [i for i in entry_ids if self.dlq.store.lock(i, LOCK_MS)]
        report.skipped.update({i: LOCKED for i in entry_ids if i not in set(locked)})
        sent: list[str] = []
        try:
            found = {e.id: e for e in self.dlq.get_many(locked)}
            for entry_id in locked:
                entry = found.get(entry_id)
                why = NOT_FOUND if entry is None else self._replay_one(entry)
                if why is None:
                    sent.append(entry_id)
                else:
                    report.skipped[entry_id] = why
        finally:  # what was published leaves the DLQ even when a later entry of the batch failed
            self.dlq.remove(sent, "replayed")
            report.replayed.extend(sent)
            for entry_id in locked:
                self.dlq.store.unlock(entry_id)

    def _replay_one(self, entry: DeadLetter) -> str | None:
        why = unreplayable_reason(entry)
        if why is not None:
            return why
        code, value = self.runtime.jobs.revive(job_key(entry), dead_gen=entry_meta(entry).gen,
                                               ttl_ms=self.revive_ttl_ms, task_id=str(entry.task_id))
        if code != "ok":
            return STATE_BLOCKS.get(code, f"the job's state forbids it ({code})")
        self.publish(entry, gen=value)
        return None

    def plan(self, entry_ids: Iterable[str], plan: Plan | None = None) -> Plan:
        """A dry run over ``entry_ids``: what a replay would do now, changing nothing."""
        plan = plan if plan is not None else Plan()
        ids = list(entry_ids)
        found = {e.id: e for e in self.dlq.get_many(ids)}
        for entry_id in ids:
            entry = found.get(entry_id)
            why = NOT_FOUND if entry is None else unreplayable_reason(entry) or self._state_blocks(entry)
            if why is None:
                plan.replay += 1
            else:
                plan.skipped[why] += 1
        return plan

    def _state_blocks(self, entry: DeadLetter) -> str | None:
        job = self.runtime.jobs.read(job_key(entry))
        if job.task is not None and job.task != entry.task_id:
            return STATE_BLOCKS["taken"]
        if job.state in ("done", "waiting"):
            return STATE_BLOCKS[job.state]
        return STATE_BLOCKS["busy"] if job.lease_live else None

    def publish(self, entry: DeadLetter, gen: int) -> Any:
        """Send the job again under its task id, with its options and the successor header."""
        options, headers = message.replay_options(entry.options or {})
        # ``sent`` is this process's clock: marked so, the transport moves it onto the Redis clock.
        headers[HEADER] = {**successor_meta(entry, gen).to_header(), CLOCK_FIELD: LOCAL_CLOCK}
        return self.app.send_task(
            str(entry.task), list(entry.args), dict(entry.kwargs),
            task_id=entry.task_id, queue=entry.queue, headers=headers, stalwart_successor=True, **options,
        )


def replay(
    app: celery.Celery,
    entry_ids: Iterable[str] | None = None,
    flt: Filter | None = None,
    *,
    everything: bool = False,
) -> ReplayReport:
    """Replay the given entries, or those matching ``flt``, or (``everything``) all of them."""
    ids = list(entry_ids or ())
    narrowed = flt is not None and flt.narrowed
    if not (ids or narrowed or everything):
        raise DLQError("say which entries to replay: entry ids, a filter, or all")
    replayer = Replayer(app)
    if ids:
        return replayer.replay_ids(ids)
    return replayer.replay_matching(flt if flt is not None and narrowed else Filter())


__all__ = ["Plan", "ReplayReport", "Replayer", "entry_meta", "replay", "successor_meta", "unreplayable_reason"]
