"""The console's JSON API under Flower's ``/api/`` (``/api/stalwart/...``), with Flower's auth.

Reads (GET) answer what each page shows; actions (POST, JSON body) need the CSRF token and are
refused (403) in read-only mode. Every string of message content is returned as the pages show
it: secrets scrubbed, control characters as visible escapes (see :mod:`stalwart.console.views`).
"""

from __future__ import annotations

from typing import Any

from tornado import web

from stalwart.console import panels, views
from stalwart.console.base import ApiHandler, guard
from stalwart.dlq.bulk import Selection
from stalwart.dlq.entry import Filter
from stalwart.dlq.replay import ReplayReport
from stalwart.dlq.times import parse_time
from stalwart.errors import DLQError, EntryNotFound

PAGE_LIMIT = 200


def seen_task_names(handler: ApiHandler) -> list[str]:
    """Task names Flower has seen in events (for switch previews)."""
    try:
        return sorted(str(n) for n in handler.application.events.state.task_types())
    except AttributeError:
        return []


class Csrf(ApiHandler):
    @web.authenticated
    def get(self) -> None:
        """The CSRF token to send back (``X-XSRFToken``) with the ``_xsrf`` cookie now set."""
        self.send({"token": self.xsrf_token.decode(), "readonly": self.readonly})


class DeadLetters(ApiHandler):
    @web.authenticated
    @guard
    async def get(self) -> None:
        """One page of dead letters, newest first: filters as query arguments (queue, task,
        reason, since, until, cause, q), ``cursor`` from the previous page, ``limit``."""
        flt = self.filter_from_args()
        limit = self.int_arg("limit", 50, 1, PAGE_LIMIT)
        page = await self.blocking(self.console.runtime.dlq.page, flt, self.arg("cursor"), limit)
        stats = await self.blocking(self.console.runtime.dlq.stats)
        cause = await self.blocking(self.console.runtime.dlq.cause, flt.cause) if flt.cause else None
        self.send({
            "entries": [views.row(e, self.console.task(e.task)) for e in page.entries],
            "cursor": page.cursor, "total": page.total, "stats": stats,
            "cause": views.show(cause) if cause else None, "readonly": self.readonly,
        })


class Entry(ApiHandler):
    @web.authenticated
    @guard
    async def get(self, entry_id: str) -> None:
        entry = await self.blocking(self.console.runtime.dlq.get, entry_id)
        self.send(views.detail(entry, self.console.task(entry.task)))


class EntryAction(ApiHandler):
    @web.authenticated
    @guard
    async def post(self, entry_id: str, action: str) -> None:
        """Replay or purge one entry now."""
        self.refuse_if_readonly()
        if action == "purge":
            purged = await self.blocking(self.console.runtime.dlq.remove, [entry_id], "purged")
            if not purged:
                raise EntryNotFound(f"no dead-letter entry {entry_id!r} (already replayed or purged?)")
            await self.blocking(self.console.audit.record, self.who, "purge", entry_id, 1)
            self.send({"purged": 1})
            return
        report: ReplayReport = await self.blocking(self.console.replayer.replay_ids, [entry_id])
        await self.blocking(self.console.audit.record, self.who, "replay", entry_id, len(report.replayed),
                            {"skipped": report.skipped})
        self.send({"replayed": len(report.replayed), "skipped": report.skipped})


def selection_of(data: dict[str, Any]) -> Selection:
    """The entries an action applies to: ``ids``, or ``filter`` (dead-letter filter fields)."""
    if data.get("ids"):
        ids = data["ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise DLQError("ids must be a list of entry ids")
        return Selection(ids=tuple(ids))
    raw = data.get("filter")
    if not isinstance(raw, dict):
        raise DLQError("say which entries: ids, or a filter (an empty filter means every entry)")
    known = {"queue", "task", "reason", "since", "until", "since_ms", "until_ms", "cause", "search"}
    unknown = set(raw) - known
    if unknown:
        raise DLQError(f"unknown filter fields: {', '.join(sorted(unknown))}")
    values = {k: v for k, v in raw.items() if v not in (None, "")}
    for name in ("since", "until"):  # as typed in the page's filter: ISO-8601, relative or epoch ms
        if name in values:
            values[f"{name}_ms"] = parse_time(str(values.pop(name)))
    for name in ("since_ms", "until_ms"):
        if name in values and (isinstance(values[name], bool) or not isinstance(values[name], int)):
            raise DLQError(f"{name} must be epoch milliseconds")
    for name in ("queue", "task", "reason", "cause", "search"):
        if name in values and not isinstance(values[name], str):
            raise DLQError(f"{name} must be text")
    return Selection(flt=Filter(**values))


class DryRun(ApiHandler):
    @web.authenticated
    @guard
    async def post(self) -> None:
        """Start a dry run of ``action`` (replay or purge) over a selection; poll the job."""
        self.refuse_if_readonly()
        data = self.body()
        selection = selection_of(data)
        job = await self.blocking(self.console.bulk.dry_run, str(data.get("action")), selection, who=self.who)
        self.send({"job": job}, status=202)


class Confirm(ApiHandler):
    @web.authenticated
    @guard
    async def post(self) -> None:
        """Run what a finished dry run (``plan``) counted, as a named background action."""
        self.refuse_if_readonly()
        data = self.body()
        job = await self.blocking(self.console.bulk.confirm, str(data.get("plan", "")),
                                  name=str(data.get("name") or ""), who=self.who)
        self.send({"job": job}, status=202)


class Jobs(ApiHandler):
    @web.authenticated
    @guard
    async def get(self, job_id: str | None = None) -> None:
        if job_id:
            job = await self.blocking(self.console.bulk.get, job_id)
            if job is None:
                raise web.HTTPError(404, f"no bulk action {job_id!r}")
            self.send(views.show(job))
            return
        self.send({"jobs": views.show(await self.blocking(self.console.bulk.recent, 50))})


class Causes(ApiHandler):
    @web.authenticated
    @guard
    async def get(self) -> None:
        order = self.arg("order") or "count"
        offset = self.int_arg("offset", 0, 0, 10**9)
        limit = self.int_arg("limit", 50, 1, PAGE_LIMIT)
        found, total = await self.blocking(self.console.runtime.dlq.causes, order, offset, limit)
        for cause in found:
            cause["first_iso"], cause["last_iso"] = views.iso(cause.get("first")), views.iso(cause.get("last"))
        self.send({"causes": views.show(found), "total": total, "readonly": self.readonly})


class Audit(ApiHandler):
    @web.authenticated
    @guard
    async def get(self) -> None:
        offset = self.int_arg("offset", 0, 0, 10**9)
        records, total = await self.blocking(self.console.audit.page, offset, 100)
        for record in records:
            record["at_iso"] = views.iso(record.get("at"))
        self.send({"records": views.show(records), "total": total})


class Breakers(ApiHandler):
    @web.authenticated
    @guard
    async def get(self) -> None:
        self.send({"breakers": await self.blocking(panels.breakers, self.console), "readonly": self.readonly})


class BreakerAction(ApiHandler):
    @web.authenticated
    @guard
    async def post(self, name: str, action: str) -> None:
        self.refuse_if_readonly()
        state = await self.blocking(panels.breaker_action, self.console, name, action, self.who)
        self.send({"name": name, "state": state})


class Limits(ApiHandler):
    @web.authenticated
    @guard
    async def get(self) -> None:
        self.send(await self.blocking(panels.limits, self.console))


class Switches(ApiHandler):
    @web.authenticated
    @guard
    async def get(self) -> None:
        """Every switch with the task names it matches; ``?preview=PATTERN`` lists a pattern's."""
        seen = seen_task_names(self)
        preview = self.arg("preview")
        matches = await self.blocking(self.console.matching, preview, seen) if preview else None
        self.send({"switches": await self.blocking(panels.switch_list, self.console, seen),
                   "preview": views.show(matches), "readonly": self.readonly})

    @web.authenticated
    @guard
    async def post(self) -> None:
        """``{"pattern": ..., "state": "paused"|"disabled"}``, or ``"state": "resume"``."""
        self.refuse_if_readonly()
        data = self.body()
        pattern, state = str(data.get("pattern") or ""), str(data.get("state") or "")
        seen = seen_task_names(self)
        if state == "resume":
            removed = await self.blocking(panels.resume, self.console, pattern, self.who, seen)
            self.send({"pattern": pattern, "resumed": removed})
            return
        self.send(await self.blocking(panels.set_switch, self.console, pattern, state, self.who, seen))


class Queues(ApiHandler):
    @web.authenticated
    @guard
    async def get(self) -> None:
        self.send(await self.blocking(panels.queues, self.console))
