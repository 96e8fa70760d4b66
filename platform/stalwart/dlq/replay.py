"""Replay dead-letter entries: reset the job's state, republish it, then remove the entry.

The order is what makes replay safe. The job's state hash is reset first (a job marked
``dead`` is never run again otherwise), the message is published next, and the entry is
removed last: a crash anywhere in between leaves the entry in place, so the job is never
lost, at worst replayed twice — and the claim on its job key keeps two copies from running
side by side. A replayed job keeps its task id, idempotency key, trace id and attempt
history, starts again at generation 0 with no deadline (an operator replaying it has decided
it is still wanted) and a fresh message id, so if it dies again it is a new entry.

Entries are skipped, with a reason, when they cannot or should not be replayed: malformed or
refused messages (there is no task to run), an idempotency key whose work is already done,
a job that is running or waiting to run right now, or an entry another operator is
replaying at this moment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import celery

from stalwart.dlq.entry import DeadLetter, Filter
from stalwart.errors import DLQError, EntryNotFound
from stalwart.job.header import HEADER, Meta, now_ms
from stalwart.runtime import runtime_of
from stalwart.store import jobs as job_store

LOCK_MS = 60_000


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


def unreplayable_reason(entry: DeadLetter) -> str | None:
    """Why ``entry`` can never be replayed as it is, or None when it can."""
    if entry.reason in {"malformed", "refused_content"}:
        return f"{entry.reason}: the message never decoded into a task call; inspect it and purge it"
    if not entry.task or not entry.task_id:
        return "no task name or task id recorded; nothing to republish"
    if not entry.replayable:
        return f"{entry.reason} entries cannot be replayed"
    return None


def entry_meta(entry: DeadLetter) -> Meta:
    """The job's ``stalwart`` header as it was when it died, from either kind of entry."""
    headers = entry.headers or {}
    if HEADER in headers:  # written by the consumer: the whole Celery header set
        return Meta.from_header(headers[HEADER])
    if "msg" in headers:  # written by the envelope: the stalwart header itself
        return Meta.from_header(headers)
    return Meta()


def successor_meta(entry: DeadLetter) -> Meta:
    """The header of the replayed message: same key, trace and history; fresh msg; no deadline."""
    old = entry_meta(entry)
    return old.successor(gen=0, deadline=None, sent=now_ms(), first_seen=old.first_seen or entry.first_seen)


def job_key(entry: DeadLetter) -> str:
    """The job's state-hash key: ``k:<idempotency key>`` or ``t:<task id>``."""
    return job_store.job_key(entry_meta(entry).key, str(entry.task_id))


class Replayer:
    """Replays entries of one app's DLQ, one at a time, in the safe order."""

    def __init__(self, app: celery.Celery) -> None:
        self.app = app
        self.runtime = runtime_of(app)
        self.dlq = self.runtime.dlq

    def replay_ids(self, entry_ids: Iterable[str]) -> ReplayReport:
        report = ReplayReport()
        for entry_id in dict.fromkeys(entry_ids):
            self._replay_one(entry_id, report)
        return report

    def replay_matching(self, flt: Filter = Filter()) -> ReplayReport:
        """Replay every entry matching ``flt``; the ids are read first, so new deaths are not."""
        return self.replay_ids([e.id for e in self.dlq.iter(flt)])

    def _replay_one(self, entry_id: str, report: ReplayReport) -> None:
        if not self.dlq.store.lock(entry_id, LOCK_MS):
            report.skipped[entry_id] = "another replay of this entry is in progress"
            return
        try:
            why = self._try_replay(entry_id)
        finally:
            self.dlq.store.unlock(entry_id)
        if why is None:
            report.replayed.append(entry_id)
        else:
            report.skipped[entry_id] = why

    def _try_replay(self, entry_id: str) -> str | None:
        try:
            entry = self.dlq.get(entry_id)
        except EntryNotFound:
            return "not found (already replayed, purged or evicted?)"
        why = unreplayable_reason(entry) or self._state_blocks(entry)
        if why is not None:
            return why
        self.runtime.jobs.reset(job_key(entry))
        self.publish(entry)
        self.dlq.remove([entry.id], "replayed")
        return None

    def _state_blocks(self, entry: DeadLetter) -> str | None:
        """Why the job's current state forbids running it again, or None."""
        job = self.runtime.jobs.read(job_key(entry))
        meta = entry_meta(entry)
        if job.state == "done":
            what = f"idempotency key {meta.key!r}" if meta.key else f"task id {entry.task_id}"
            return f"already done: {what} completed since; replaying would run it twice"
        if job.state == "waiting":
            return "the job is waiting to run again (already replayed?)"
        if job.lease_live:
            return "the job is running right now (already replayed?)"
        return None

    def publish(self, entry: DeadLetter) -> Any:
        """Send the job again under its task id, with the successor header."""
        return self.app.send_task(
            str(entry.task), list(entry.args), dict(entry.kwargs),
            task_id=entry.task_id, queue=entry.queue,
            headers={HEADER: successor_meta(entry).to_header()}, stalwart_successor=True,
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
    narrowed = flt is not None and flt != Filter()
    if not (ids or narrowed or everything):
        raise DLQError("say which entries to replay: entry ids, a filter, or all")
    replayer = Replayer(app)
    if ids:
        return replayer.replay_ids(ids)
    return replayer.replay_matching(flt if flt is not None and narrowed else Filter())


__all__ = ["ReplayReport", "Replayer", "entry_meta", "replay", "successor_meta", "unreplayable_reason"]
