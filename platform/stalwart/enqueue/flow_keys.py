"""The rendered key of a debounced or singleton call: every template field a plain scalar.

A field's value must be a non-empty ``str``, an ``int``, a ``float`` or a ``UUID`` (the per-key
policies' rule, :mod:`stalwart.policies.keyed`): ``None`` would render as the text ``"None"`` and
silently share the key of the string ``"None"``, and a bool, a container or another object renders
whatever its ``__format__`` says. Such a call is a :class:`~stalwart.errors.ConfigurationError`
naming the field (at enqueue: nothing is stored or published; the run side turns it into a
``PolicyKeyError``, dead-lettered). A key callable must return a non-empty ``str``.
"""

from __future__ import annotations

import string
import uuid
from collections.abc import Callable
from typing import Any

from stalwart.enqueue.keys import KeySpec, render_key
from stalwart.errors import ConfigurationError


class _Checked(string.Formatter):
    """``str.format`` that refuses a field whose value is not a non-empty str, int, float or UUID."""

    def __init__(self, what: str, spec: str) -> None:
        self.what, self.spec, self.current = what, spec, ""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        self.current = field_name
        return super().get_field(field_name, args, kwargs)

    def format_field(self, value: Any, format_spec: str) -> str:
        problem = field_problem(value)
        if problem is not None:
            raise ConfigurationError(f"{self.what} {self.spec!r}: {{{self.current}}} {problem}")
        return str(super().format_field(value, format_spec))


def field_problem(value: object) -> str | None:
    """Why ``value`` cannot be a key field, or None when it can."""
    if value is None:
        return "is None"
    if isinstance(value, bool) or not isinstance(value, (str, int, float, uuid.UUID)):
        return f"must be a non-empty str, int, float or UUID, got {type(value).__name__}"
    if isinstance(value, str) and not value:
        return "is an empty string"
    return None


def render_flow_key(what: str, spec: KeySpec, fun: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> str:
    """The key ``spec`` gives for one call; ConfigurationError naming ``what`` and the problem."""
    checked = None if callable(spec) else _Checked(what, spec)
    return render_key(what, spec, fun, args, kwargs, checked)
