"""What every console handler shares: the app, its runtime, the audit log, bulk actions, and who
may act (read-only for everyone, for Flower's ``--read_only``, or for the read-only logins)."""

from __future__ import annotations

import base64
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
    """``(user, user:password)`` from a Basic ``Authorization`` header, or None: parsed exactly as
    Flower's ``BaseHandler.get_current_user`` parses it (split on any whitespace into two parts,
    scheme exactly ``Basic``, ``b64decode`` without validation, so characters outside the alphabet
    are dropped), so the console sees the very login Flower accepted."""
    try:
        scheme, encoded = (authorization or "").split()
        credential = base64.b64decode(encoded.encode()).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors, as Flower catches
        return None
    if scheme != "Basic" or not credential:
        return None
    return credential.partition(":")[0], credential


class Console:
    """The console's shared state, built once per Flower process."""

    def __init__(self, capp: celery.Celery, *, flower_read_only: bool = False,
                 full_logins: Iterable[str] = ()) -> None:
        self.capp = capp
        self.runtime: Runtime = runtime_of(capp)
        self.settings = self.runtime.settings
        self.readonly_everyone = self.settings.console_readonly or flower_read_only
        self.readonly_logins = tuple(self.settings.console_readonly_auth)
        self.full_logins = tuple(full_logins)  # Flower's own --basic_auth credentials
        self.audit = AuditLog(self.runtime.redis, self.runtime.keys)
        self.bulk = BulkActions(capp, self.audit)
        self.replayer = Replayer(capp)

    def is_readonly_login(self, authorization: str | None) -> bool:
        """True when the request logs in with one of the read-only credentials."""
        login = basic_login(authorization)
        return login is not None and any(hmac.compare_digest(login[1], c) for c in self.readonly_logins)

    def is_full_login(self, authorization: str | None) -> bool:
        """True when the request logs in with one of Flower's own (full-access) credentials and
        not with a read-only one."""
        login = basic_login(authorization)
        return (login is not None and not self.is_readonly_login(authorization)
                and any(hmac.compare_digest(login[1], c) for c in self.full_logins))

    def readonly(self, authorization: str | None) -> bool:
        """Read-only for everyone, or (when read-only logins exist) for every request that is not
        recognised as a full-access login: a header the console cannot read is never full access."""
        if self.readonly_everyone:
            return True
        return bool(self.readonly_logins) and not self.is_full_login(authorization)

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
