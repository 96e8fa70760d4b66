"""The Stalwart task base class: every job runs inside the envelope."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import celery
from celery import states

from stalwart import options as task_options
from stalwart.enqueue.keys import render
from stalwart.errors import ConfigurationError
from stalwart.job import delivery
from stalwart.job.callbacks import has_followers, record_sent
from stalwart.job.retry import RetryCall, countdown_of
from stalwart.policies.fairness import Weights, fair_header
from stalwart.policies.flow import Debounce
from stalwart.policies.permits import PermitPolicy
from stalwart.policies.retry import ExceptionTypes, Retry
from stalwart.runtime import runtime_of

if TYPE_CHECKING:  # celery.Task is generic in celery-types' stubs, not at run time on Celery 5.5
    _TaskBase = celery.Task[Any, Any]
else:
    _TaskBase = celery.Task


class StalwartTask(_TaskBase):
    """A Celery task whose every delivery goes through :mod:`stalwart.job.delivery`."""

    Strategy = "stalwart.broker.consumer:strategy"
    Request = "stalwart.broker.request:Request"

    retry_policy: Retry = Retry()
    permanent_for: ExceptionTypes = ()
    max_age: float | None = None
    max_deliveries: int = 3
    idempotency_key: str | Callable[..., str] | None = None
    fair_by: str | Callable[..., str] | None = None
    fair_weights: Weights | None = None
    debounce: Debounce | None = None
    singleton: str | Callable[..., str] | None = None
    permits: tuple[PermitPolicy, ...] = ()
    flow_permits: tuple[PermitPolicy, ...] = ()  # singleton's run slot, asked for after ``permits``
    fallback: Callable[..., Any] | None = None
    result_max_bytes: int = 65536

    _signature_cache: inspect.Signature | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly:
            return self.run(*args, **kwargs)
        return delivery.run(self, runtime_of(self.app), args, kwargs)

    def after_return(self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Celery sent a successful job's callbacks and chain (before this): record it, so a
        later delivery of the done job does not send them again (:mod:`stalwart.job.callbacks`)."""
        if status == states.SUCCESS and has_followers(self.request) and not self.request.called_directly:
            record_sent(runtime_of(self.app), self.request, task_id)

    @classmethod
    def on_bound(cls, app: celery.Celery) -> None:
        """Celery binds a task class to an app: resolve options that arrived raw (``shared_task``)."""
        task_options.resolve_class(cls)
        super().on_bound(app)

    def bind_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise TypeError (with Python's own message) when the arguments do not fit ``run``."""
        signature = type(self)._signature_cache
        if signature is None:
            signature = type(self)._signature_cache = inspect.signature(self.run)
        signature.bind(*args, **kwargs)

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: Exception | None = None,
        throw: bool = True,
        eta: Any = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        """Celery's retry(): another attempt with these arguments, limit and options, scheduled by
        the envelope through the delayed set (see :mod:`stalwart.job.retry`)."""
        if self.request.called_directly:
            return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
        call = RetryCall(
            args=tuple(args) if args is not None else None,
            kwargs=dict(kwargs) if kwargs is not None else None,
            exc=exc, countdown=countdown_of(eta, countdown), max_retries=max_retries, options=options,
        )
        return delivery.retry(call, throw=throw)

    def apply_async(  # type: ignore[override] # accepts Stalwart's enqueue options too
        self, args: Any = None, kwargs: Any = None, task_id: str | None = None, **options: Any
    ) -> Any:
        """Celery's apply_async, deriving the idempotency key from the task's template."""
        if self.idempotency_key is not None and "idempotency_key" not in options and not options.get(
            "stalwart_successor"
        ):
            options["idempotency_key"] = self.derive_key(tuple(args or ()), dict(kwargs or {}))
        return super().apply_async(args, kwargs, task_id=task_id, **options)

    def fair_header(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
        """The ``stalwart_fair`` header (``[key, weight]``) of a call, or None without ``fair_by``."""
        if self.fair_by is None:
            return None
        return fair_header(self.name, self.fair_by, self.fair_weights, self.run, args, kwargs)

    def derive_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The idempotency key of a call, from the declared template or callable."""
        if self.idempotency_key is None:
            raise ConfigurationError(f"{self.name} declares no idempotency_key")
        return render(self.name, self.idempotency_key, self.run, args, kwargs)
