"""Lua scripts live beside their callers as .lua files, loaded once and called by SHA.

Every script is read when this module is imported, with plain file reads. Reading them lazily
through importlib.resources took per-module import locks; a worker thread holding one when the
prefork pool forked left the children deadlocked forever on their first script.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import NoScriptError


class Script:
    """One Lua script: EVALSHA first, reload on NOSCRIPT (restart, failover, SCRIPT FLUSH)."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA1

    def __call__(self, client: Any, keys: list[str], args: list[Any]) -> Any:
        """Run on ``client`` (a Redis client or pipeline) with ``keys`` and ``args``."""
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)

    def in_pipeline(self, pipe: redis.client.Pipeline, keys: list[str], args: list[Any]) -> None:
        """Queue on a pipeline; the caller loads it first with :meth:`ensure_loaded`."""
        pipe.evalsha(self.sha, len(keys), *keys, *args)

    def ensure_loaded(self, client: redis.Redis) -> None:
        if not client.script_exists(self.sha)[0]:
            client.script_load(self.source)


SCRIPTS: dict[str, Script] = {
    path.stem: Script(path.stem, path.read_text(encoding="utf-8"))
    for path in sorted((Path(__file__).resolve().parent / "scripts").glob("*.lua"))
}


def load_script(name: str) -> Script:
    """The script ``redis/scripts/<name>.lua`` shipped with the package."""
    try:
        return SCRIPTS[name]
    except KeyError:
        raise KeyError(f"no Lua script {name!r}; shipped: {', '.join(SCRIPTS)}") from None
