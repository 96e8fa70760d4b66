"""Stalwart's routes in Flower, and how the console is added to Flower's app at start."""

from __future__ import annotations

from typing import Any

from tornado.web import StaticFileHandler, url

from stalwart.console import api, pages
from stalwart.console.base import Forbidden
from stalwart.console.context import Console
from stalwart.console.flower import HERE, prefixed

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ENTRY = r"([0-9A-Za-z_.:-]{1,200})"


def routes() -> list[Any]:
    """Pages under /stalwart/, the JSON API under /api/stalwart/."""
    return [
        url(r"/stalwart/?", pages.DeadLettersPage, name="stalwart-home"),
        url(r"/stalwart/dead-letters", pages.DeadLettersPage, name="stalwart-dead-letters"),
        url(rf"/stalwart/dead-letters/{ENTRY}", pages.EntryPage, name="stalwart-entry"),
        url(r"/stalwart/causes", pages.CausesPage, name="stalwart-causes"),
        url(r"/stalwart/breakers", pages.BreakersPage, name="stalwart-breakers"),
        url(r"/stalwart/limits", pages.LimitsPage, name="stalwart-limits"),
        url(r"/stalwart/switches", pages.SwitchesPage, name="stalwart-switches"),
        url(r"/stalwart/queues", pages.QueuesPage, name="stalwart-queues"),
        url(r"/stalwart/audit", pages.AuditPage, name="stalwart-audit"),
        url(r"/stalwart/static/(.*)", StaticFileHandler, {"path": str(HERE / "static")}, name="stalwart-static"),
        (r"/api/stalwart/csrf", api.Csrf),
        (r"/api/stalwart/dead-letters", api.DeadLetters),
        (r"/api/stalwart/dead-letters/dry-run", api.DryRun),
        (r"/api/stalwart/dead-letters/confirm", api.Confirm),
        (rf"/api/stalwart/dead-letters/{ENTRY}", api.Entry),
        (rf"/api/stalwart/dead-letters/{ENTRY}/(replay|purge)", api.EntryAction),
        (r"/api/stalwart/jobs", api.Jobs),
        (r"/api/stalwart/jobs/([0-9a-f]{1,32})", api.Jobs),
        (r"/api/stalwart/causes", api.Causes),
        (r"/api/stalwart/audit", api.Audit),
        (r"/api/stalwart/breakers", api.Breakers),
        (r"/api/stalwart/breakers/(.+)/(open|close|reset)", api.BreakerAction),
        (r"/api/stalwart/limits", api.Limits),
        (r"/api/stalwart/switches", api.Switches),
        (r"/api/stalwart/queues", api.Queues),
    ]


def build(app: Any) -> None:
    """Add the console to a starting Flower app: its state, its routes, its read-only logins."""
    options = app.options
    console = Console(app.capp, flower_read_only=bool(getattr(options, "read_only", False)),
                      full_logins=options.basic_auth or ())
    app.console = console
    if console.readonly_logins:  # Flower's own basic-auth check must accept them too
        options.basic_auth = [*(options.basic_auth or []), *console.readonly_logins]

    def refuse(request: Any) -> type | None:
        """A read-only login, or anyone in read-only mode, may look anywhere (Flower's pages too)
        but change nothing: Flower's own actions (revoke, pool resize, shutdown) included."""
        if request.method not in SAFE_METHODS and console.readonly(request.headers.get("Authorization")):
            return Forbidden
        return None

    app.refuse = refuse
    app.add_handlers(r".*", prefixed(routes(), options.url_prefix))
