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


def template_fields(template: str, option: str = "idempotency_key") -> list[str]:
    """The argument names a key template refers to; ConfigurationError for a template that is not
    one (unbalanced braces, positional ``{}``/``{0}`` fields, conversions or format specs)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigurationError(f"{option} {template!r} is not a valid template: {exc}") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        field = name.split(".")[0].split("[")[0]
        if not field.isidentifier():
            raise ConfigurationError(f"{option} {template!r}: every field must name an argument, got {{{name}}}")
        if spec or conversion:
            raise ConfigurationError(f"{option} {template!r}: fields take no conversion or format spec")
        names.append(field)
    return names


def render_key(what: str, spec: KeySpec, fun: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any], formatter: string.Formatter | None = None) -> str:
    """The key ``spec`` (a template over ``fun``'s arguments, or a callable of them) gives for one
    call; ConfigurationError naming ``what`` when it cannot be rendered or is not a non-empty str.
    ``formatter`` renders a template (one that checks each field's value, say); ``str.format`` by
    default."""
    if callable(spec):
        try:
            key = spec(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a user's key function: reported with its error
            raise ConfigurationError(f"{what} could not be computed: {type(exc).__name__}: {exc}") from None
    else:
        try:
            bound = inspect.signature(fun).bind(*args, **kwargs)
        except TypeError as exc:
            raise ConfigurationError(f"{what} {spec!r}: the arguments do not fit the task: {exc}") from None
        bound.apply_defaults()
        try:
            key = (formatter or string.Formatter()).vformat(spec, (), dict(bound.arguments))
        except ConfigurationError:
            raise
        except Exception as exc:  # noqa: BLE001 - an argument's own __format__ may raise anything
            raise ConfigurationError(
                f"{what} {spec!r} cannot be rendered from the arguments "
                f"{list(bound.arguments)}: {type(exc).__name__}: {exc}"
            ) from None
    if not isinstance(key, str) or not key:
        raise ConfigurationError(f"{what} must be a non-empty str, got {key!r}")
    return key


def render(task_name: str, spec: KeySpec, fun: Callable[..., Any], args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> str:
    """The idempotency key of one call of ``fun``: ``<task name>:<rendered key>``."""
    if callable(spec):
        key = spec(*args, **kwargs)
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"idempotency key of {task_name} must be a non-empty str, got {key!r}")
        return f"{task_name}:{key}"
    return f"{task_name}:{render_key(f'idempotency_key template of {task_name}', spec, fun, args, kwargs)}"


def check_key_spec(where: str, option: str, spec: object, fun: Callable[..., Any]) -> KeySpec:
    """A declared key: a callable, or a template whose every field names an argument of ``fun``."""
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec:
        raise ConfigurationError(f"{where}: {option} must be a template string or a callable, got {spec!r}")
    params = set(inspect.signature(fun).parameters)
    missing = [f for f in template_fields(spec, option) if f not in params]
    if missing:
        raise ConfigurationError(
            f"{where}: {option} {spec!r} names {', '.join(missing)}, not arguments of "
            f"the task ({', '.join(sorted(params))})"
        )
    return spec


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
        checked = check_key_spec(where, "idempotency_key", key, fun)
        return {"idempotency_key": staticmethod(checked) if callable(checked) else checked}


IDEMPOTENCY_OPTIONS = IdempotencyOptions()
