"""Which values of a dead letter are secret: arguments under secret-looking names (positional ones
named through the task's signature when the task is registered here), and every value found under
a secret key of its kwargs and headers. Shared by the DLQ's indexes (search text, cause sample)
and by everything that shows an entry. Pure functions (the rules: :mod:`stalwart.ops.scrub`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from stalwart.ops.scrub import FILTERED, is_secret, scrub, secret_values


def parameter_names(task: Any, count: int) -> list[str | None]:
    """The names of the first ``count`` positional parameters of a registered task's ``run``."""
    try:
        params = list(inspect.signature(task.run).parameters.values())
    except (AttributeError, TypeError, ValueError):
        return [None] * count
    names: list[str | None] = []
    for p in params:
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            break
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
    return (names + [None] * count)[:count]


def scrubbed_call(task: Any, args: list[Any], kwargs: dict[str, Any],
                  headers: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any], set[str]]:
    """Arguments with secret-named ones filtered (positional ones named through the task's
    signature when it is registered here), and the secret values found, to cut from text."""
    names = parameter_names(task, len(args)) if task is not None else [None] * len(args)
    named = {n: a for n, a in zip(names, args, strict=True) if n is not None}
    secrets = secret_values(named) | secret_values(kwargs) | secret_values(dict(headers))
    shown = [FILTERED if n is not None and is_secret(n) else scrub(a, secrets) for n, a in zip(names, args,
                                                                                                strict=True)]
    return shown, scrub(kwargs, secrets), secrets


__all__ = ["parameter_names", "scrubbed_call"]
