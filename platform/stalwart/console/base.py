"""Handler bases of the console: Flower's own auth and rendering, plus what Flower does not do for
basic auth: a CSRF token on every state-changing request, and read-only mode refusing actions.

Flower checks only the request's origin when basic auth is on; every console POST must also
carry the ``_xsrf`` token (Tornado's check: a ``X-XSRFToken`` header or ``_xsrf`` field matching
the ``_xsrf`` cookie), so a page elsewhere cannot make a logged-in browser act. Scripts get a
token from ``GET /api/stalwart/csrf`` and send it back with its cookie.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import tornado.web
from flower.api import BaseApiHandler
from flower.views import BaseHandler
from tornado.ioloop import IOLoop

from stalwart.console.context import Console, basic_login
from stalwart.dlq.entry import Filter
from stalwart.dlq.times import parse_time
from stalwart.errors import ConfigurationError, DLQError, EntryNotFound, StalwartError, StoreUnavailable

log = logging.getLogger("stalwart.console")
T = TypeVar("T")
READONLY_MESSAGE = "the console is read-only"


class Forbidden(tornado.web.RequestHandler):
    """Every request refused: a read-only login's attempt to change anything, anywhere."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(403, READONLY_MESSAGE)

    def check_xsrf_cookie(self) -> None:
        """Refused in prepare() whatever the token."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The console API's own answer (``{"error": ...}``), for Flower's routes too."""
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"error": READONLY_MESSAGE}))


class ConsoleMixin:
    """Shared by pages and the JSON API."""

    application: Any
    request: Any
    current_user: Any

    @property
    def console(self) -> Console:
        console: Console = self.application.console
        return console

    @property
    def readonly(self) -> bool:
        return self.console.readonly(self.request.headers.get("Authorization"))

    @property
    def who(self) -> str:
        """The operator: the OAuth user, else the basic-auth user name."""
        if isinstance(self.current_user, str) and self.current_user:
            return self.current_user
        login = basic_login(self.request.headers.get("Authorization"))
        return login[0] if login else "anonymous"

    def check_xsrf_cookie(self) -> None:
        BaseHandler.check_xsrf_cookie(self)  # Flower's same-origin checks first
        tornado.web.RequestHandler.check_xsrf_cookie(self)  # type: ignore[arg-type] # then always the token

    def refuse_if_readonly(self) -> None:
        if self.readonly:
            raise tornado.web.HTTPError(403, READONLY_MESSAGE)

    def arg(self, name: str) -> str | None:
        """A query argument as sent (Flower's get_argument HTML-escapes by default), or None."""
        value = self.get_argument(name, None, escape=False)  # type: ignore[attr-defined]
        return value.strip() or None if isinstance(value, str) else None

    def int_arg(self, name: str, default: int, low: int, high: int) -> int:
        """An integer query argument, clamped to [low, high]; DLQError when not a number."""
        text = self.arg(name)
        try:
            value = default if text is None else int(text)
        except ValueError:
            raise DLQError(f"{name} must be a whole number, got {text!r}") from None
        return max(low, min(value, high))

    def filter_from_args(self) -> Filter:
        """The dead-letter filter of the query string."""
        times = {name: parse_time(text) if (text := self.arg(name)) else None for name in ("since", "until")}
        return Filter(queue=self.arg("queue"), task=self.arg("task"), reason=self.arg("reason"),
                      since_ms=times["since"], until_ms=times["until"], cause=self.arg("cause"),
                      search=self.arg("q"))

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a Redis-bound call on Flower's executor, off the event loop."""
        return await IOLoop.current().run_in_executor(None, functools.partial(fn, *args, **kwargs))


def status_of(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and message for an error raised by an action or a read."""
    if isinstance(exc, EntryNotFound):
        return 404, str(exc.args[0]) if exc.args else "not found"
    if isinstance(exc, StoreUnavailable):
        return 503, "the state store is unreachable; try again"
    if isinstance(exc, (ConfigurationError, DLQError)):
        return 400, str(exc)
    if isinstance(exc, StalwartError):
        return 500, f"{type(exc).__name__}: {exc}"
    return 500, "internal error (see the console's log)"


class PageHandler(ConsoleMixin, BaseHandler):  # type: ignore[misc]
    """A console page: Flower's layout, navbar and auth."""

    def page(self, template: str, active: str, **values: Any) -> None:
        prefix = self.application.options.url_prefix or ""
        base = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.render(f"stalwart/{template}", active_tab=active, readonly=self.readonly,
                    csrf=self.xsrf_token.decode(), api=f"{base}/api/stalwart", base=base, **values)


class ApiHandler(ConsoleMixin, BaseApiHandler):  # type: ignore[misc]
    """A JSON endpoint under Flower's /api/, with Flower's API auth rule."""

    def send(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data, default=str))

    def body(self) -> dict[str, Any]:
        """The JSON object the request carries ({} when empty)."""
        if not self.request.body:
            return {}
        try:
            data = json.loads(self.request.body)
        except ValueError:
            raise tornado.web.HTTPError(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise tornado.web.HTTPError(400, "the body must be a JSON object")
        return data

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.get_message() if isinstance(exc, tornado.web.HTTPError) else None
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Basic realm="flower"')
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"error": message or self._reason}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, StalwartError):
            return  # answered with its status (see guard); not a server fault
        super().log_exception(typ, value, tb)


def guard(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn Stalwart's errors into HTTP answers with a clear message."""

    @functools.wraps(method)
    async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except StalwartError as exc:
            status, message = status_of(exc)
            if status >= 500:
                log.error("console %s %s failed: %s", self.request.method, self.request.path, exc)
            raise tornado.web.HTTPError(status, message) from exc

    return call
