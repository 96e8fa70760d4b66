"""Idempotency keys: a ``str.format`` template over the task's arguments, or a callable.

The key is checked when the task is declared (every field must name an argument) and rendered
at enqueue time, prefixed with the task name.
"""

from __future__ import annotations

import inspect
import string
from collections.abc import Callable
from typing import Any

from stalwart.errors import ConfigurationError

KeySpec = str | Callable[..., str]


def template_fields(template: str) -> list[str]:
    """The argument names a key template refers to; ConfigurationError for a template that is not
    one (unbalanced braces, positional ``{}``/``{0}`` fields, conversions or format specs)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigurationError(f"idempotency_key {template!r} is not a valid template: {exc}") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        field = name.split(".")[0].split("[")[0]
        if not field.isidentifier():
            raise ConfigurationError(f"idempotency_key {template!r}: every field must name an argument, got {{{name}}}")
        if spec or conversion:
            raise ConfigurationError(f"idempotency_key {template!r}: fields take no conversion or format spec")
        names.append(field)
    return names


def render(task_name: str, spec: KeySpec, fun: Callable[..., Any], args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> str:
    """The idempotency key of one call of ``fun``: ``<task name>:<rendered key>``."""
    if callable(spec):
        key = spec(*args, **kwargs)
    else:
        bound = inspect.signature(fun).bind(*args, **kwargs)
        bound.apply_defaults()
        try:
            key = spec.format(**bound.arguments)
        except (KeyError, IndexError, AttributeError, ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"idempotency_key template {spec!r} of {task_name} cannot be rendered from the arguments "
                f"{list(bound.arguments)}: {type(exc).__name__}: {exc}"
            ) from None
    if not isinstance(key, str) or not key:
        raise ConfigurationError(f"idempotency key of {task_name} must be a non-empty str, got {key!r}")
    return f"{task_name}:{key}"


class IdempotencyOptions:
    """``idempotency_key=``: a template over the arguments, or a callable of them."""

    options: dict[str, str] = {
        "idempotency_key": "a str.format template over the arguments, or a callable(*args, **kwargs)",
    }

    def resolve(self, where: str, fun: Callable[..., Any], given: dict[str, Any]) -> dict[str, Any]:
        if "idempotency_key" not in given:
            return {}
        key = given["idempotency_key"]
        if key is None:
            return {"idempotency_key": None}
        if callable(key):
            return {"idempotency_key": staticmethod(key)}
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"{where}: idempotency_key must be a template string or a callable")
        params = set(inspect.signature(fun).parameters)
        missing = [f for f in template_fields(key) if f not in params]
        if missing:
            raise ConfigurationError(
                f"{where}: idempotency_key {key!r} names {', '.join(missing)}, not arguments of "
                f"the task ({', '.join(sorted(params))})"
            )
        return {"idempotency_key": key}


IDEMPOTENCY_OPTIONS = IdempotencyOptions()
