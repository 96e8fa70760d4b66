"""Lua scripts: read once at import, the prelude prepended, called by SHA with a checked key count.

Each script is ``lua/<name>-<number of keys>.lua`` (BullMQ's convention), so a call with the wrong
number of keys fails here, loudly, instead of inside Redis. ``<name>-<n>+.lua`` takes at least n keys
(a fetch over however many queue lists a worker consumes). Only the store's entity modules call
scripts; they pass named arguments and get decoded results (see :mod:`stalwart.store`).

Every script is read when this module is imported, with plain file reads. Reading them lazily
through importlib.resources took per-module import locks; a worker thread holding one when the
prefork pool forked left the children deadlocked forever on their first script.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.exceptions import BusyLoadingError, ClusterDownError, NoScriptError, RedisClusterException

from stalwart.errors import StateStoreError, StoreUnavailable
from stalwart.store.keys import utf8_text

LUA_DIR = Path(__file__).resolve().parent / "lua"
PRELUDE = (LUA_DIR / "prelude.lua").read_text(encoding="utf-8")


def wire(values: list[Any]) -> list[Any]:
    """``values`` as Redis can take them: a str that is not valid UTF-8 is sent with its
    surrogates as backslash text (:func:`stalwart.store.keys.utf8_text`); others pass as they are."""
    return [utf8_text(v) if isinstance(v, str) else v for v in values]


class Script:
    """One Lua script: EVALSHA first, reload on NOSCRIPT (restart, failover, SCRIPT FLUSH)."""

    def __init__(self, name: str, numkeys: int, body: str, variadic: bool = False) -> None:
        self.name = name
        self.numkeys = numkeys
        self.variadic = variadic
        self.source = PRELUDE + body
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA1

    def _check(self, keys: list[str]) -> None:
        if len(keys) != self.numkeys and not (self.variadic and len(keys) > self.numkeys):
            more = " or more" if self.variadic else ""
            raise TypeError(f"script {self.name} takes {self.numkeys}{more} keys, got {len(keys)}")

    def __call__(self, client: Any, keys: list[str], args: list[Any]) -> Any:
        """Run on ``client`` (a Redis client) with ``keys`` and ``args``."""
        self._check(keys)
        keys, args = wire(keys), wire(args)
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)

    def queue(self, pipe: Any, keys: list[str], args: list[Any]) -> None:
        """Queue on a pipeline; the caller loads it first with :meth:`ensure_loaded`."""
        self._check(keys)
        pipe.evalsha(self.sha, len(keys), *wire(keys), *wire(args))

    def command(self, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
        """The EVALSHA command as a tuple, for pipelines that take raw commands (kombu's)."""
        self._check(keys)
        return ("evalsha", self.sha, len(keys), *wire(keys), *wire(args))

    def ensure_loaded(self, client: redis.Redis) -> None:
        if not client.script_exists(self.sha)[0]:
            client.script_load(self.source)


INCLUDE = re.compile(r"^--- @include (\w+)$", re.MULTILINE)


def expand(body: str) -> str:
    """``--- @include <name>`` lines replaced by ``lua/include/<name>.lua`` (BullMQ's convention)."""
    return INCLUDE.sub(lambda m: (LUA_DIR / "include" / f"{m.group(1)}.lua").read_text(encoding="utf-8"), body)


def _read_all() -> dict[str, Script]:
    scripts: dict[str, Script] = {}
    for path in sorted(LUA_DIR.glob("*-*.lua")):
        name, _, numkeys = path.stem.rpartition("-")
        scripts[name] = Script(name, int(numkeys.rstrip("+")), expand(path.read_text(encoding="utf-8")),
                               variadic=numkeys.endswith("+"))
    return scripts


SCRIPTS: dict[str, Script] = _read_all()


def script(name: str) -> Script:
    """The script ``lua/<name>-N.lua`` shipped with the package."""
    try:
        return SCRIPTS[name]
    except KeyError:
        raise KeyError(f"no Lua script {name!r}; shipped: {', '.join(SCRIPTS)}") from None


def text(value: Any) -> str:
    """A Redis reply as str: bytes decoded as UTF-8, anything else through str()."""
    return value.decode() if isinstance(value, bytes) else str(value)


def text_or_none(value: Any) -> str | None:
    return None if value is None else text(value)


def text_map(raw: Any) -> dict[str, str]:
    """An HGETALL reply with keys and values decoded."""
    return {text(k): text(v) for k, v in dict(raw).items()}


def as_int(value: Any, default: int = 0) -> int:
    """An integer reply (or a stored number); ``default`` when absent or not a number."""
    if value is None:
        return default
    try:
        return int(float(text(value)))
    except ValueError:
        return default


F = TypeVar("F", bound=Callable[..., Any])
UNAVAILABLE_ERRORS = (redis.ConnectionError, redis.TimeoutError, BusyLoadingError, ClusterDownError)


def guarded(fn: F) -> F:
    """Wrap a store method: Redis errors become :class:`StateStoreError`, raised ``from`` them."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StateStoreError:
            raise
        except UNAVAILABLE_ERRORS as exc:
            raise StoreUnavailable(f"{fn.__qualname__}: state store unreachable: {exc}") from exc
        except (redis.RedisError, RedisClusterException) as exc:
            raise StateStoreError(f"{fn.__qualname__}: {type(exc).__name__}: {exc}") from exc

    return call  # type: ignore[return-value]
