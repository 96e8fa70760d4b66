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
from stalwart.policies.fairness import FAIRNESS_OPTIONS
from stalwart.policies.flow import FLOW_OPTIONS
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


GROUPS: tuple[OptionGroup, ...] = (ENVELOPE_OPTIONS, RETRY_OPTIONS, PERMIT_OPTIONS, IDEMPOTENCY_OPTIONS,
                                   FAIRNESS_OPTIONS, FLOW_OPTIONS)

# Celery's own @app.task options that Stalwart lets through: documented settings, never a Task
# method or a class Stalwart depends on (run, apply_async, Request, Strategy, ... are refused).
CELERY_TASK_OPTIONS = frozenset({
    # the decorator's own
    "name", "bind", "base", "shared", "lazy", "filter", "pydantic", "pydantic_strict", "pydantic_context",
    "pydantic_dump_kwargs",
    # publishing defaults Celery reads from the task (extract_exec_options)
    "queue", "routing_key", "exchange", "exchange_type", "delivery_mode", "compression", "priority", "expires",
    # documented Task attributes
    "serializer", "rate_limit", "time_limit", "soft_time_limit", "ignore_result", "store_errors_even_if_ignored",
    "track_started", "acks_late", "acks_on_failure_or_timeout", "acks_on_failure", "acks_on_timeout",
    "reject_on_worker_lost", "throws", "typing", "trail", "resultrepr_maxsize", "store_eager_result",
    "send_events", "abstract",
})


RESOLVED = "_stalwart_resolved"  # set on a task class whose options were resolved
# What Celery puts in a task class besides the options it was given: _task_from_fun's own names,
# and what Task.bind sets before on_bound (settings copied from the app's config, request_stack).
_GENERATED = frozenset({"app", "name", "run", "request_stack", *(attr for attr, _ in CeleryTask.from_config)})


def known() -> dict[str, str]:
    """Every Stalwart task option with its help line."""
    return {name: text for group in GROUPS for name, text in group.options.items()}


def _celery_option(name: str) -> bool:
    return name in CELERY_TASK_OPTIONS


def _check_celery_values(where: str, options: Mapping[str, Any]) -> None:
    serializer = options.get("serializer")
    if serializer is not None and serializer != "json":
        raise ConfigurationError(f"{where}: serializer must be 'json' (workers accept JSON only), got {serializer!r}")


def resolve(fun: Callable[..., Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """Turn ``@app.task`` options into task attributes, or raise :class:`ConfigurationError`."""
    where = getattr(fun, "__qualname__", repr(fun))
    ours = known()
    unknown = sorted(k for k in options if k not in ours and not _celery_option(k))
    if unknown:
        raise ConfigurationError(
            f"unknown task option(s) {', '.join(unknown)} on {where}; Stalwart's options are "
            f"{', '.join(sorted(ours))}, plus Celery's own: {', '.join(sorted(CELERY_TASK_OPTIONS))}"
        )
    _check_celery_values(where, options)
    out = {k: v for k, v in options.items() if k not in ours}
    for group in GROUPS:
        given = {k: v for k, v in options.items() if k in group.options}
        try:
            out.update(group.resolve(where, fun, given))
        except ConfigurationError as exc:
            if where in str(exc):
                raise
            raise ConfigurationError(f"{where}: {exc}") from None
    out[RESOLVED] = True
    return out


def resolve_class(cls: type[Any]) -> None:
    """Resolve the raw options a task class carries as attributes (``shared_task``, base classes).

    Tasks made by :meth:`stalwart.Stalwart.task` arrive resolved and are left alone.
    """
    if cls.__dict__.get(RESOLVED):
        return
    _check_celery_values(cls.__qualname__, {"serializer": cls.__dict__.get("serializer")})
    if cls.__dict__.get("_decorated"):  # made from a function by Celery (shared_task): all are options
        raw = {k: v for k, v in cls.__dict__.items() if k not in _GENERATED and not k.startswith("_")}
    else:  # a Task subclass: only Stalwart's own names are options; the rest is its code
        raw = {k: v for k, v in cls.__dict__.items() if k in known()}
    if not raw:
        return
    fun = cls.__dict__.get("__wrapped__") or cls.run
    resolved = resolve(fun, raw)
    for name, value in resolved.items():
        setattr(cls, name, value)
    for name in raw.keys() - resolved.keys():
        delattr(cls, name)
