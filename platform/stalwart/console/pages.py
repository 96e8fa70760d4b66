"""The console's pages inside Flower's layout. List pages render their frame here and fill in
from the JSON API (refreshing every few seconds); the entry page is rendered here in full.
Templates autoescape everything; scripts set only ``textContent``."""

from __future__ import annotations

from tornado import web

from stalwart.console import views
from stalwart.console.base import PageHandler, guard
from stalwart.dlq.entry import REASONS


class DeadLettersPage(PageHandler):
    @web.authenticated
    def get(self) -> None:
        self.page("dead_letters.html", "stalwart-dead-letters", title="Dead letters", reasons=REASONS)


class EntryPage(PageHandler):
    @web.authenticated
    @guard
    async def get(self, entry_id: str) -> None:
        entry = await self.blocking(self.console.runtime.dlq.get, entry_id)
        self.page("entry.html", "stalwart-dead-letters", title=f"Dead letter {entry_id[:8]}",
                  entry=views.detail(entry, self.console.task(entry.task)))


class CausesPage(PageHandler):
    @web.authenticated
    def get(self) -> None:
        self.page("causes.html", "stalwart-causes", title="Causes")


class BreakersPage(PageHandler):
    @web.authenticated
    def get(self) -> None:
        self.page("breakers.html", "stalwart-breakers", title="Breakers")


class LimitsPage(PageHandler):
    @web.authenticated
    def get(self) -> None:
        self.page("limits.html", "stalwart-limits", title="Limits")


class SwitchesPage(PageHandler):
    @web.authenticated
    def get(self) -> None:
        self.page("switches.html", "stalwart-switches", title="Switches")


class QueuesPage(PageHandler):
    @web.authenticated
    def get(self) -> None:
        self.page("queues.html", "stalwart-queues", title="Queues")


class AuditPage(PageHandler):
    @web.authenticated
    def get(self) -> None:
        self.page("audit.html", "stalwart-audit", title="Audit")
