"""The Celery and kombu versions Stalwart is proven on, checked once at import.

The broker seam extends kombu's Redis channel and Celery's consumer and request; a version outside
the range the test suite runs on fails here, in one line, instead of misbehaving later.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

SUPPORTED = {"celery": ((5, 5), (5, 8)), "kombu": ((5, 5), (5, 8))}


def _release(text: str) -> tuple[int, int]:
    parts = [*text.split("."), "0", "0"][:2]
    return int("".join(c for c in parts[0] if c.isdigit()) or 0), int("".join(c for c in parts[1] if c.isdigit()) or 0)


def describe() -> str:
    return " and ".join(f"{name}>={lo[0]}.{lo[1]},<{hi[0]}.{hi[1]}" for name, (lo, hi) in SUPPORTED.items())


def problem(found: dict[str, str | None]) -> str | None:
    """Why the installed versions are unsupported, or None when they are supported."""
    bad = []
    for name, (lo, hi) in SUPPORTED.items():
        have = found.get(name)
        if have is None or not lo <= _release(have) < hi:
            bad.append(f"{name} {have or 'missing'}")
    if not bad:
        return None
    return f"stalwart supports {describe()}; installed: {', '.join(bad)}"


def installed() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in SUPPORTED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def require_supported() -> None:
    """Raise ImportError, in one line naming the supported range, on an unsupported Celery or kombu."""
    why = problem(installed())
    if why is not None:
        raise ImportError(why)
