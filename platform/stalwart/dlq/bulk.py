"""Bulk actions on dead letters (replay, purge, and their dry runs), run in the background with a
name and progress an operator can watch, each one written to the audit log.

A dry run records its selection bounded in time (entries dead up to the moment it ran); the
confirmed action takes the selection from the dry run, so it acts on what the operator saw
counted, not on entries that died since. Progress lives in the state store
(:mod:`stalwart.store.bulk`), so every console process shows it; the thread that does the work
lives in the process that started it (a restart stops the action where it was: what was done
stays done, the rest stays in the DLQ).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import celery

from stalwart.dlq.audit import AuditLog
from stalwart.dlq.entry import Filter
from stalwart.dlq.replay import Plan, Replayer, ReplayReport
from stalwart.errors import DLQError, StalwartError
from stalwart.runtime import runtime_of
from stalwart.store.bulk import BulkStore

log = logging.getLogger("stalwart.dlq.bulk")
ACTIONS = ("replay", "purge")
MAX_IDS = 10_000  # ids one selection may list; larger selections are filters
AUDIT_IDS = 20  # ids of a listed selection the audit record keeps (with their count)
MAX_REASONS = 20  # skip reasons kept per job (the rest are counted under "other")
BATCH = 100


@dataclass(frozen=True)
class Selection:
    """Which entries a bulk action applies to: listed ids, or every entry matching a filter."""

    ids: tuple[str, ...] = ()
    flt: Filter | None = None

    def __post_init__(self) -> None:
        if bool(self.ids) == (self.flt is not None):
            raise DLQError("a selection is either entry ids or a filter")
        if len(self.ids) > MAX_IDS:
            raise DLQError(f"select at most {MAX_IDS} entries by id; use a filter for more")

    def to_dict(self) -> dict[str, Any]:
        if self.flt is not None:
            return {"filter": {k: v for k, v in asdict(self.flt).items() if v is not None}}
        return {"ids": list(self.ids)}

    def summary(self) -> dict[str, Any]:
        """The selection as the audit log keeps it: the filter, or how many ids and a few of them."""
        if self.flt is not None:
            return self.to_dict()
        return {"ids": len(self.ids), "sample": list(self.ids[:AUDIT_IDS])}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Selection:
        if "filter" in data:
            return cls(flt=Filter(**data["filter"]))
        return cls(ids=tuple(str(i) for i in data.get("ids", ())))

    def bounded(self, until_ms: int) -> Selection:
        """The same selection, a filter limited to entries dead at or before ``until_ms``."""
        return self if self.flt is None else Selection(flt=self.flt.until(until_ms))


def _top(reasons: Counter[str]) -> dict[str, int]:
    top = dict(reasons.most_common(MAX_REASONS))
    rest = sum(reasons.values()) - sum(top.values())
    return {**top, "other reasons": rest} if rest else top


class BulkActions:
    """Start, run and report bulk actions of one app's DLQ."""

    def __init__(self, app: celery.Celery, audit: AuditLog, max_running: int = 2) -> None:
        self.app = app
        self.runtime = runtime_of(app)
        self.dlq = self.runtime.dlq
        self.store = BulkStore(self.runtime.redis, self.runtime.keys)
        self.audit = audit
        self.max_running = max_running
        self._running: set[str] = set()
        self._lock = threading.Lock()

    # -- starting -------------------------------------------------------------------------------

    def dry_run(self, action: str, selection: Selection, *, who: str) -> dict[str, Any]:
        """Count in the background what ``action`` would do to ``selection``; nothing changes."""
        if action not in ACTIONS:
            raise DLQError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
        now = self.store.now_ms()
        return self._start(f"dry-run-{action}", selection.bounded(now), name=f"dry run: {action}", who=who)

    def confirm(self, plan_id: str, *, name: str, who: str) -> dict[str, Any]:
        """Run the action a finished dry run counted, on the selection it counted."""
        plan = self.store.get(plan_id)
        if plan is None or not str(plan.get("kind", "")).startswith("dry-run-"):
            raise DLQError(f"no dry run {plan_id!r} (they are kept for 7 days)")
        if plan.get("state") != "done":
            raise DLQError("the dry run has not finished; confirm once it shows its counts")
        action = str(plan["kind"]).removeprefix("dry-run-")
        selection = Selection.from_dict(plan["selection"])
        job = self._start(action, selection, name=name.strip()[:200] or action, who=who, plan_of=plan_id)
        self.audit.record(who, f"{action} started", job["name"], plan.get("total"),
                          {"job": job["id"], "selection": selection.summary()})
        return job

    def _start(self, kind: str, selection: Selection, *, name: str, who: str,
               plan_of: str | None = None) -> dict[str, Any]:
        with self._lock:
            if len(self._running) >= self.max_running:
                raise DLQError(f"{len(self._running)} bulk actions are running; start this one when one ends")
            job_id = uuid.uuid4().hex[:16]
            self._running.add(job_id)
        try:
            record = {"id": job_id, "name": name, "kind": kind, "who": who, "state": "running",
                      "selection": selection.to_dict(), "total": None, "done": 0, "replayed": 0, "purged": 0,
                      "skipped": 0, "why": {}, "started": self.store.now_ms(), "finished": None,
                      "error": None, "plan_of": plan_of, "result": None}
            self.store.create(job_id, record)
        except BaseException:
            self._running.discard(job_id)
            raise
        threading.Thread(target=self._run, args=(job_id, kind, selection, who, name),
                         name=f"stalwart-bulk-{job_id}", daemon=True).start()
        return record

    # -- running --------------------------------------------------------------------------------

    def _batches(self, selection: Selection) -> Iterator[list[str]]:
        if selection.flt is None:
            ids = list(dict.fromkeys(selection.ids))
            for i in range(0, len(ids), BATCH):
                yield ids[i : i + BATCH]
            return
        yield from self.dlq.iter_ids(selection.flt, batch=BATCH)

    def _total(self, selection: Selection) -> int:
        return len(set(selection.ids)) if selection.flt is None else self.dlq.count(selection.flt)

    def _run(self, job_id: str, kind: str, selection: Selection, who: str, name: str) -> None:
        try:
            self.store.update(job_id, {"total": self._total(selection)})
            result = self._work(job_id, kind, selection)
            self.store.update(job_id, {"state": "done", "finished": self.store.now_ms(), "result": result})
            if not kind.startswith("dry-run-"):
                count = result.get("replayed", result.get("purged", 0))
                self.audit.record(who, kind, name, count, {"job": job_id, **result})
        except Exception as exc:  # a background thread: any error becomes the job's recorded failure
            log.exception("bulk action %s (%s) failed", job_id, kind)
            self._fail(job_id, exc)
        finally:
            with self._lock:
                self._running.discard(job_id)

    def _fail(self, job_id: str, exc: BaseException) -> None:
        try:
            self.store.update(job_id, {"state": "failed", "error": f"{type(exc).__name__}: {exc}"})
        except StalwartError:
            log.exception("could not record the failure of bulk action %s", job_id)

    def _work(self, job_id: str, kind: str, selection: Selection) -> dict[str, Any]:
        replayer = Replayer(self.app)
        plan, report, purged, done = Plan(), ReplayReport(), 0, 0
        for batch in self._batches(selection):
            if kind == "dry-run-replay":
                replayer.plan(batch, plan)
            elif kind == "dry-run-purge":
                purged += len(self.dlq.get_many(batch))
            elif kind == "replay":
                replayer.replay_batch(batch, report)
            else:
                purged += self.dlq.remove(batch, "purged")
            done += len(batch)
            skipped = Counter(report.skipped_by_why()) + plan.skipped
            self.store.update(job_id, {"done": done, "replayed": len(report.replayed) + plan.replay,
                                       "purged": purged, "skipped": sum(skipped.values()), "why": _top(skipped)})
        if kind == "dry-run-replay":
            return {"replay": plan.replay, "skip": sum(plan.skipped.values()), "why": _top(plan.skipped)}
        if kind == "replay":
            return {"replayed": len(report.replayed), "skipped": len(report.skipped),
                    "why": _top(Counter(report.skipped_by_why()))}
        return {"purge": purged} if kind == "dry-run-purge" else {"purged": purged}

    # -- reading --------------------------------------------------------------------------------

    def get(self, job_id: str) -> dict[str, Any] | None:
        return self.store.get(job_id)

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        return self.store.recent(max(1, min(limit, 200)))

    def wait(self, job_id: str, timeout: float) -> dict[str, Any] | None:
        """The job's record once it is no longer running in this process (tests, scripts)."""
        for thread in threading.enumerate():
            if thread.name == f"stalwart-bulk-{job_id}":
                thread.join(timeout)
        return self.get(job_id)


__all__ = ["ACTIONS", "BulkActions", "Selection"]
