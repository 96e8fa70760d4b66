"""Celery's ``Task.retry()`` arguments as the envelope honours them. Pure logic.

``self.retry(args=, kwargs=, exc=, throw=, eta=, countdown=, max_retries=, **options)`` behaves
as Celery documents: the next attempt runs with the new arguments (keyword arguments that a new
positional argument now covers are dropped, as Celery 5.7 does), ``max_retries`` overrides the
task's limit for this call, past the limit ``exc`` (or ``MaxRetriesExceededError``) is raised in
the body, ``throw=False`` publishes the retry and lets the body go on, and ``options`` reach
``apply_async`` (``queue``, ``priority``, ``headers``, ...). Without ``countdown``/``eta`` the
task's backoff policy chooses the delay (Celery would wait ``default_retry_delay``).
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RetryCall:
    """One call of ``self.retry(...)``: what the next attempt changes."""

    args: tuple[Any, ...] | None = None
    kwargs: dict[str, Any] | None = None
    exc: BaseException | None = None
    countdown: float | None = None
    max_retries: int | None = None  # None: the task's own limit
    options: dict[str, Any] = field(default_factory=dict)


def countdown_of(eta: Any, countdown: float | None, now: Callable[[Any], dt.datetime] | None = None) -> float | None:
    """Seconds until the retry: ``countdown`` wins over ``eta`` (as in ``apply_async``)."""
    if countdown is not None:
        return max(0.0, float(countdown))
    if eta is None:
        return None
    if not isinstance(eta, dt.datetime):
        return max(0.0, float(eta))
    current = now(eta.tzinfo) if now is not None else dt.datetime.now(eta.tzinfo)
    return max(0.0, (eta - current).total_seconds())


def exceeded(attempt: int, max_retries: int | None) -> bool:
    """Whether retrying after attempt ``attempt`` (1-based) goes past ``max_retries`` retries."""
    return max_retries is not None and attempt > max_retries


def next_arguments(
    fun: Callable[..., Any], current: tuple[tuple[Any, ...], dict[str, Any]], call: RetryCall
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of the next attempt: ``call``'s where given, the current ones otherwise."""
    cur_args, cur_kwargs = current
    args = tuple(call.args) if call.args is not None else cur_args
    kwargs = dict(call.kwargs) if call.kwargs is not None else dict(cur_kwargs)
    try:
        params = inspect.signature(fun).parameters
    except (TypeError, ValueError):
        return args, kwargs
    if call.args is not None and call.kwargs is None and cur_kwargs:
        # new positionals replace the keyword arguments they now cover
        positional = [p for p in params.values()
                      if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        for p in positional[: len(args)]:
            if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD:
                kwargs.pop(p.name, None)
    elif call.kwargs is not None and call.args is None and cur_args:
        # new keyword arguments replace the positionals they name
        try:
            bound = inspect.signature(fun).bind_partial(*cur_args)
        except TypeError:
            return args, kwargs
        for name in list(kwargs):
            if name in bound.arguments and params[name].kind == inspect.Parameter.POSITIONAL_OR_KEYWORD:
                bound.arguments[name] = kwargs.pop(name)
        args, kwargs = tuple(bound.args), {**bound.kwargs, **kwargs}
    return args, kwargs
