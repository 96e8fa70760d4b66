"""Secret scrubbing for anything that leaves the worker (Sentry events, breadcrumbs).

A key is secret when its lower-cased name contains one of :data:`SECRET_WORDS`, or one of its
``_``/``-``/``.``-separated parts is one of :data:`SECRET_PARTS` (short words like ``pan`` would
match far too much as substrings: ``company``, ``span``). Values under secret keys are replaced,
and the same values are also cut out of every string elsewhere (a message that quotes them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

FILTERED = "[Filtered]"
SECRET_WORDS = (
    "password", "passwd", "secret", "token", "api_key", "apikey", "authorization", "auth",
    "card", "cvv", "cvc", "iban", "cookie", "session", "credential", "private_key", "signature",
)
SECRET_PARTS = frozenset({"pan", "ssn", "pin", "pwd"})
MIN_SECRET_LENGTH = 4  # shorter values are too common to cut out of free text
_SPLIT = re.compile(r"[^a-z0-9]+")


def is_secret(key: object) -> bool:
    """True when ``key`` names something that must never be sent."""
    name = str(key).lower()
    return any(word in name for word in SECRET_WORDS) or bool(SECRET_PARTS.intersection(_SPLIT.split(name)))


def secret_values(value: Any, under_secret: bool = False) -> set[str]:
    """Every scalar found under a secret key in ``value`` (recursively), as text."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            found |= secret_values(v, under_secret or is_secret(k))
    elif isinstance(value, (list, tuple, set)):
        for item in value:
            found |= secret_values(item, under_secret)
    elif under_secret and value is not None and len(str(value)) >= MIN_SECRET_LENGTH:
        found.add(str(value))
    return found


def scrub(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of ``value`` with secret keys filtered and known secret values cut from strings."""
    known = sorted(set(secrets), key=len, reverse=True)
    return _scrub(value, known)


def _scrub(value: Any, known: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: FILTERED if is_secret(k) else _scrub(v, known) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(item, known) for item in value]
    if isinstance(value, str):
        for secret in known:
            value = value.replace(secret, FILTERED)
    return value
