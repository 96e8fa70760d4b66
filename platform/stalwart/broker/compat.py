"""The Celery and kombu versions Stalwart is proven on, checked once at import.

The broker seam extends kombu's Redis channel and Celery's consumer and request; a version outside
the range the test suite runs on fails here, in one line, instead of misbehaving later. The same
ranges are declared in pyproject.toml (a unit test keeps the two equal).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

SUPPORTED = {"celery": ">=5.5,<5.8", "kombu": ">=5.5,<5.8"}


def describe() -> str:
    return " and ".join(f"{name}{spec}" for name, spec in SUPPORTED.items())


def _supported(spec: str, have: str) -> bool:
    try:
        return Version(have) in SpecifierSet(spec, prereleases=True)
    except InvalidVersion:
        return False


def problem(found: dict[str, str | None]) -> str | None:
    """Why the installed versions are unsupported, or None when they are supported."""
    bad = [f"{name} {found.get(name) or 'missing'}" for name, spec in SUPPORTED.items()
           if not _supported(spec, found.get(name) or "")]
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
