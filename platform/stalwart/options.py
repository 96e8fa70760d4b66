"""The task-option registry: each feature declares the ``@app.task`` options it understands.

A feature is an :class:`OptionGroup`: the option names it owns (with a line of help each) and a
``resolve`` that validates the values given and turns them into task attributes. Adding a
feature means writing its group beside its code and listing it in :data:`GROUPS`. An option no
group and no Celery attribute knows is refused at the ``@app.task`` line, with the known ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from celery.app.task import Task as CeleryTask

from stalwart.enqueue.keys import IDEMPOTENCY_OPTIONS
from stalwart.errors import ConfigurationError
from stalwart.job.spec import ENVELOPE_OPTIONS
from stalwart.policies.permits import PERMIT_OPTIONS
from stalwart.policies.retry import RETRY_OPTIONS


class OptionGroup(Protocol):
    """The task options one feature owns."""

    @property
    def options(self) -> Mapping[str, str]:
        """Option name -> one line of help."""
        ...

    def resolve(self, where: str, fun: Callable[..., Any], given: dict[str, Any]) -> dict[str, Any]:
        """Validate ``given`` (only this group's options) and return the task attributes to set."""
        ...


GROUPS: tuple[OptionGroup, ...] = (ENVELOPE_OPTIONS, RETRY_OPTIONS, PERMIT_OPTIONS, IDEMPOTENCY_OPTIONS)

# Options of @app.task that Celery itself understands but are not Task attributes.
CELERY_DECORATOR_OPTIONS = frozenset({
    "name", "bind", "base", "shared", "lazy", "filter", "pydantic", "pydantic_strict", "pydantic_context",
    "pydantic_dump_kwargs",
    # publishing defaults Celery reads from the task (extract_exec_options)
    "queue", "routing_key", "exchange", "delivery_mode", "compression",
})


RESOLVED = "_stalwart_resolved"  # set on a task class whose options were resolved


def known() -> dict[str, str]:
    """Every Stalwart task option with its help line."""
    return {name: text for group in GROUPS for name, text in group.options.items()}


def _celery_option(name: str) -> bool:
    return name in CELERY_DECORATOR_OPTIONS or (not name.startswith("_") and hasattr(CeleryTask, name))


def resolve(fun: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """Turn ``@app.task`` options into task attributes, or raise :class:`ConfigurationError`."""
    where = getattr(fun, "__qualname__", repr(fun))
    ours = known()
    unknown = sorted(k for k in options if k not in ours and not _celery_option(k))
    if unknown:
        raise ConfigurationError(
            f"unknown task option(s) {', '.join(unknown)} on {where}; Stalwart's options are "
            f"{', '.join(sorted(ours))}, plus Celery's own task options (see celery.app.task.Task)"
        )
    out = {k: v for k, v in options.items() if k not in ours}
    for group in GROUPS:
        given = {k: v for k, v in options.items() if k in group.options}
        out.update(group.resolve(where, fun, given))
    out[RESOLVED] = True
    return out


def resolve_class(cls: type[Any]) -> None:
    """Resolve the raw options a task class carries as attributes (``shared_task``, base classes).

    Tasks made by :meth:`stalwart.Stalwart.task` arrive resolved and are left alone.
    """
    if cls.__dict__.get(RESOLVED):
        return
    ours = known()
    raw = {k: v for k, v in cls.__dict__.items() if k in ours}
    if not raw:
        return
    fun = cls.__dict__.get("__wrapped__") or cls.run
    resolved = resolve(fun, raw)
    for name, value in resolved.items():
        setattr(cls, name, value)
    for name in raw.keys() - resolved.keys():
        delattr(cls, name)
