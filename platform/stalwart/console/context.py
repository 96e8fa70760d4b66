"""What every console handler shares: the app, its runtime, the audit log, bulk actions, and who
may act (read-only for everyone, for Flower's ``--read_only``, or for the read-only logins)."""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hmac
from collections.abc import Iterable
from typing import Any

import celery

from stalwart.dlq.audit import AuditLog
from stalwart.dlq.bulk import BulkActions
from stalwart.dlq.replay import Replayer
from stalwart.runtime import Runtime, runtime_of


def basic_login(authorization: str | None) -> tuple[str, str] | None:
    """``(user, user:password)`` from a Basic ``Authorization`` header, or None."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        credential = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return credential.partition(":")[0], credential


class Console:
    """The console's shared state, built once per Flower process."""

    def __init__(self, capp: celery.Celery, *, flower_read_only: bool = False) -> None:
        self.capp = capp
        self.runtime: Runtime = runtime_of(capp)
        self.settings = self.runtime.settings
        self.readonly_everyone = self.settings.console_readonly or flower_read_only
        self.readonly_logins = tuple(self.settings.console_readonly_auth)
        self.audit = AuditLog(self.runtime.redis, self.runtime.keys)
        self.bulk = BulkActions(capp, self.audit)
        self.replayer = Replayer(capp)

    def is_readonly_login(self, authorization: str | None) -> bool:
        """True when the request logs in with one of the read-only credentials."""
        login = basic_login(authorization)
        return login is not None and any(hmac.compare_digest(login[1], c) for c in self.readonly_logins)

    def readonly(self, authorization: str | None) -> bool:
        return self.readonly_everyone or self.is_readonly_login(authorization)

    def task(self, name: str | None) -> Any:
        """The registered task object of ``name`` here (for parameter names), or None."""
        return self.capp.tasks.get(name) if name else None

    def task_names(self, seen: Iterable[str] = ()) -> list[str]:
        """Task names this console knows: registered here, seen by Flower, and dead-lettered."""
        names = {n for n in self.capp.tasks if not n.startswith("celery.")} | {n for n in seen if n}
        causes, _ = self.runtime.dlq.causes(order="count", limit=500)
        names |= {str(c["task"]) for c in causes if c.get("task")}
        return sorted(names)

    def matching(self, pattern: str, seen: Iterable[str] = ()) -> list[str]:
        """The known task names a switch pattern would match."""
        return [n for n in self.task_names(seen) if fnmatch.fnmatchcase(n, pattern)]
