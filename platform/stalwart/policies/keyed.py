"""Per-key policy names: a fixed name, a template over the task's arguments, or a key callable.

``RateLimit("shopify:{shop_id}", "2/s")`` gives every shop its own budget. A template is
``:``-separated segments: the first is literal text (the family), each other is literal text or
exactly one field naming an argument (``{shop_id}``, ``{order.shop_id}``, ``{payload[shop]}``);
no positional fields, conversions or format specs. ``RateLimit("shopify", "2/s", key=fn)``
renders ``shopify:<fn(*args, **kwargs)>`` instead.

Rendering (at delivery, from the job's arguments bound to the task's signature, defaults
applied) is total: a rendered name, or :class:`~stalwart.errors.PolicyKeyError` naming the
policy and the problem. A field's value must be a non-empty ``str``, an ``int``, a ``float`` or
a ``UUID`` (not ``None``, a bool, a container or another object); it is percent-encoded
(everything but ASCII letters, digits and ``-_.~@+=,;!/|``, so never ``{}``, spaces or ``:``),
so two values give the same name only when their text is equal, and a field never spills into
the next segment. A rendered name is at most :data:`MAX_KEY_CHARS` characters.
"""

from __future__ import annotations

import inspect
import re
import string
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from stalwart.enqueue.keys import template_fields
from stalwart.errors import ConfigurationError, PolicyKeyError

KeyFn = Callable[..., Any]
MAX_KEY_CHARS = 200  # a rendered policy name (and a template) is at most this long
SAFE = "-_.~@+=,;!/|"  # kept as they are in a rendered value, with ASCII letters and digits
FIELD_MARK = "\x00"
CALLABLE_FIELD = "{key()}"  # the field shown for a key callable: family "shopify:{key()}"
_FIELD = re.compile(r"([^.\[\]]+)((?:\.[^.\[\]]+|\[[A-Za-z0-9_-]+\])*)")
_ACCESSOR = re.compile(r"\.([^.\[\]]+)|\[([A-Za-z0-9_-]+)\]")


def literal_ok(text: str) -> bool:
    """Literal text of a template or a keyed family: printable, no whitespace, no ``{}<>``."""
    return all(c.isprintable() and not c.isspace() and c not in "{}<>" for c in text)


def field_ok(field: str) -> bool:
    """``arg``, ``arg.attr`` or ``arg[index]`` (chained), with identifier names."""
    match = _FIELD.fullmatch(field)
    if match is None or not match.group(1).isidentifier():
        return False
    return all(m.group(2) is not None or m.group(1).isidentifier() for m in _ACCESSOR.finditer(match.group(2)))


def _template(where: str, name: str) -> tuple[str, ...]:
    """The argument names of a template, or ConfigurationError saying what is wrong."""
    what = f"{where} name {name!r}"
    fields = template_fields(name, f"{where} name")
    if len(name) > MAX_KEY_CHARS:
        raise ConfigurationError(f"{what} is longer than {MAX_KEY_CHARS} characters")
    skeleton = []
    for literal, field, _spec, _conv in string.Formatter().parse(name):
        if not literal_ok(literal):
            raise ConfigurationError(f"{what}: literal text may not hold whitespace or any of {{}}<> "
                                     f"(got {literal!r})")
        skeleton.append(literal)
        if field is not None:
            if not field_ok(field):
                raise ConfigurationError(f"{what}: field {{{field}}} must be an argument name, optionally "
                                         "followed by .attribute or [index] (letters, digits, _ or -)")
            skeleton.append(FIELD_MARK)
    segments = "".join(skeleton).split(":")
    if not segments[0] or FIELD_MARK in segments[0]:
        raise ConfigurationError(f"{what}: a template starts with literal text before a ':', "
                                 "like 'shopify:{shop_id}'")
    if any(FIELD_MARK in s and s != FIELD_MARK for s in segments):
        raise ConfigurationError(f"{what}: each field must be a whole ':'-separated segment, "
                                 "like 'shopify:{shop_id}' or 'tenant:{tenant_id}:reports'")
    return tuple(fields)


@dataclass(frozen=True)
class PolicyKey:
    """How a policy's declared name becomes the name its Redis state lives under."""

    where: str  # the policy's class name, for messages
    name: str  # as declared
    fn: KeyFn | None = None
    fields: tuple[str, ...] = ()

    @property
    def keyed(self) -> bool:
        return self.fn is not None or bool(self.fields)

    @property
    def family(self) -> str:
        """The name operators see in the registry: the template (or ``<name>:{key()}``)."""
        return f"{self.name}:{CALLABLE_FIELD}" if self.fn is not None else self.name

    def problem(self, text: str) -> PolicyKeyError:
        return PolicyKeyError(f"{self.where} {self.family!r}: {text}")

    def check_task(self, where: str, fun: Callable[..., Any]) -> None:
        """Every field names a parameter of ``fun`` (checked when the policy is attached)."""
        try:
            params = list(inspect.signature(fun).parameters)
        except (TypeError, ValueError):
            return  # a callable without an introspectable signature: checked at delivery
        missing = [f for f in self.fields if f not in params]
        if missing:
            raise ConfigurationError(
                f"{where}: {self.where} name {self.name!r} names {', '.join(missing)}, not "
                f"{'an argument' if len(missing) == 1 else 'arguments'} of the task ({', '.join(params)})"
            )

    def render_call(self, fun: Callable[..., Any] | None, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """The rendered name for one call: ``fun``'s signature binds the arguments (defaults
        applied); without ``fun`` only keyword arguments can fill the fields."""
        if self.fn is not None:
            try:
                value = self.fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a user's key function: reported with its error
                raise self.problem(f"the key callable raised {type(exc).__name__}: {exc}") from None
            return f"{self.name}:{self.segment('key()', value)}"
        if fun is None:
            return self.render_values(dict(kwargs), "arguments")
        try:
            bound = inspect.signature(fun).bind(*args, **kwargs)
        except (TypeError, ValueError) as exc:
            raise self.problem(f"the job's arguments do not fit the task: {exc}") from None
        bound.apply_defaults()
        return self.render_values(bound.arguments, "arguments")

    def render_values(self, values: Mapping[str, Any], what: str = "values") -> str:
        """The rendered name from field values by name (every field must be given)."""
        if self.fn is not None:
            raise self.problem("takes its key from a callable; call for_key() with the task's arguments")
        missing = [f for f in self.fields if f not in values]
        if missing:
            raise self.problem(f"the {what} lack {', '.join(missing)} (given: {', '.join(values) or 'none'})")
        try:
            rendered = _Renderer(self).vformat(self.name, (), dict(values))
        except PolicyKeyError:
            raise
        except Exception as exc:  # noqa: BLE001 - an argument's own __getattr__/__getitem__ may raise anything
            raise self.problem(f"cannot be rendered: {type(exc).__name__}: {exc}") from None
        return self.bounded(rendered)

    def segment(self, field: str, value: object) -> str:
        """One field's value as it appears in the rendered name (type-checked, escaped)."""
        if value is None:
            raise self.problem(f"{{{field}}} is None")
        if isinstance(value, bool) or not isinstance(value, (str, int, float, uuid.UUID)):
            raise self.problem(f"{{{field}}} must be a str, int, float or UUID, got {type(value).__name__}")
        text = _text(value)
        if not text:
            raise self.problem(f"{{{field}}} is an empty string")
        if len(text) > MAX_KEY_CHARS:
            raise self.problem(f"{{{field}}} renders {len(text)} characters, more than {MAX_KEY_CHARS}")
        return escape(text)

    def bounded(self, rendered: str) -> str:
        if len(rendered) > MAX_KEY_CHARS:
            raise self.problem(f"renders a name of {len(rendered)} characters, more than {MAX_KEY_CHARS}")
        return rendered


class _Renderer(string.Formatter):
    """str.format whose fields are type-checked and escaped segments."""

    def __init__(self, key: PolicyKey) -> None:
        self.key = key
        self.current = ""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        self.current = field_name
        try:
            return super().get_field(field_name, args, kwargs)
        except (KeyError, AttributeError, IndexError, TypeError) as exc:
            raise self.key.problem(f"{{{field_name}}} cannot be read from the arguments: "
                                   f"{type(exc).__name__}: {exc}") from None

    def format_field(self, value: Any, format_spec: str) -> str:
        return self.key.segment(self.current, value)


def _text(value: str | int | float | uuid.UUID) -> str:
    """A value's own text, whatever a subclass's ``__str__`` says."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float.__repr__(value)
    return str(value)


def escape(text: str) -> str:
    """Percent-encode a value for a policy name (lone surrogates too): injective, and never
    ``{``, ``}``, ``:``, ``%`` or whitespace in the result."""
    return quote(text, safe=SAFE, encoding="utf-8", errors="surrogatepass")


def parse_name(where: str, name: object, fn: object = None) -> PolicyKey:
    """Check a policy's declared name (and ``key=``): fixed, template or keyed family."""
    if fn is not None:
        if not callable(fn):
            raise ConfigurationError(f"{where}.key must be a callable of the task's arguments, got {fn!r}")
        if not isinstance(name, str) or not name or not literal_ok(name) or len(name) > MAX_KEY_CHARS - 10:
            raise ConfigurationError(
                f"{where}.name with key= is the family name: non-empty, at most {MAX_KEY_CHARS - 10} "
                f"characters, without whitespace or any of {{}}<>, got {name!r}")
        return PolicyKey(where, name, fn)
    if not isinstance(name, str) or not name or " " in name:
        raise ConfigurationError(f"{where}.name must be a non-empty str without spaces, got {name!r}")
    if "{" not in name and "}" not in name:
        return PolicyKey(where, name)
    fields = _template(where, name)
    if not fields:
        raise ConfigurationError(f"{where}.name {name!r}: braces only for fields like {{shop_id}}")
    return PolicyKey(where, name, None, fields)


def is_family(name: str) -> bool:
    """A registry name that is a template (or a key callable's family), not a fixed name."""
    return "{" in name


def matches(family: str, rendered: str) -> bool:
    """Whether ``rendered`` is a name ``family`` could render (same literal segments)."""
    want, got = family.split(":"), rendered.split(":")
    if len(want) != len(got):
        return False
    return all(g if w.startswith("{") else w == g for w, g in zip(want, got, strict=True))
