"""Secret scrubbing for anything that leaves the worker (Sentry events, breadcrumbs).

A key is secret when its lower-cased name, with every separator removed (``x-api-key``,
``private.key`` and ``api_key`` alike), contains one of :data:`SECRET_WORDS`, or one of its
separated parts is one of :data:`SECRET_PARTS` (short words like ``pan`` would match far too much
as substrings: ``company``, ``span``). Values under secret keys are replaced, and the same values
are also cut out of every string elsewhere (a message that quotes them). Celery's ``argsrepr`` and
``kwargsrepr`` (repr() of the arguments, where an escaped secret no longer matches its value) are
replaced whole: :data:`REPR_KEYS`. :func:`scrub_raw` does the same inside undecoded message text.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable
from typing import Any

FILTERED = "[Filtered]"
SECRET_WORDS = (
    "password", "passwd", "passphrase", "secret", "token", "apikey", "authorization", "auth", "bearer",
    "card", "cvv", "cvc", "iban", "cookie", "session", "credential", "privatekey", "signature",
)
REPR_KEYS = frozenset({"argsrepr", "kwargsrepr"})
SECRET_PARTS = frozenset({"pan", "ssn", "pin", "pwd"})
MIN_SECRET_LENGTH = 4  # shorter values are too common to cut out of free text
_SPLIT = re.compile(r"[^a-z0-9]+")


def is_secret(key: object) -> bool:
    """True when ``key`` names something that must never be sent."""
    name = str(key).lower()
    compact = _SPLIT.sub("", name)
    return any(word in compact for word in SECRET_WORDS) or bool(SECRET_PARTS.intersection(_SPLIT.split(name)))


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
        return {k: FILTERED if is_secret(k) or k in REPR_KEYS else _scrub(v, known) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(item, known) for item in value]
    if isinstance(value, str):
        for secret in known:
            value = value.replace(secret, FILTERED)
    return value


# "key": value in JSON-like text: a quoted key, then a quoted string or a bare scalar.
_PAIR = re.compile(r'"((?:[^"\\]|\\.){1,200})"(\s*:\s*)("(?:[^"\\]|\\.)*"|[^\s,}\]]+)')


def scrub_raw(text: str, secrets: Iterable[str] = ()) -> str:
    """Undecoded message text with the values of secret-looking keys filtered wherever the text
    reads as ``"key": value`` (JSON and JSON-like text), and every secret value (given,
    or found under a secret key of the text parsed as JSON) cut out."""
    found = set(secrets)
    with contextlib.suppress(ValueError):
        found |= secret_values(json.loads(text))
    # as the text holds them: JSON-escaped (quotes, backslashes, control and non-ASCII characters)
    found |= {json.dumps(v, ensure_ascii=a)[1:-1] for v in set(found) for a in (True, False)}

    def pair(match: re.Match[str]) -> str:
        key = match.group(1)
        if not (is_secret(key) or key in REPR_KEYS):
            return match.group(0)
        return f'"{key}"{match.group(2)}"{FILTERED}"'

    cut: str = scrub(_PAIR.sub(pair, text), found)
    return cut
