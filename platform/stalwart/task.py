"""The Stalwart task base class: every job runs inside the envelope."""

from __future__ import annotations

import inspect
import string
from collections.abc import Callable
from typing import Any

import celery

from . import envelope
from .errors import ConfigurationError
from .permits import PermitPolicy
from .policies import ExceptionTypes, Retry
from .retry import ExplicitRetry

# Options Stalwart adds to @app.task(...), with what each one means.
STALWART_OPTIONS: dict[str, str] = {
    "retry": "a stalwart.Retry policy (or use Celery's max_retries/retry_backoff/... names)",
    "permanent_for": "exception types that dead-letter at once, never retried",
    "max_age": "seconds after enqueue past which the job is dead-lettered as expired",
    "max_deliveries": "deliveries without finishing before the job is a poison pill (default 3)",
    "idempotency_key": "a str.format template over the arguments, or a callable(*args, **kwargs)",
    "limits": "RateLimit/Concurrency policies the job needs a permit from before it runs",
    "breaker": "a Breaker guarding the dependency this task calls",
    "fallback": "callable run instead of the body while the breaker is open",
    "result_max_bytes": "largest JSON result stored for idempotent replies (default 65536)",
}


class StalwartTask(celery.Task[Any, Any]):
    """A Celery task whose every delivery goes through :mod:`stalwart.envelope`."""

    Strategy = "stalwart.consumer:strategy"
    Request = "stalwart.request:Request"

    retry_policy: Retry = Retry()
    permanent_for: ExceptionTypes = ()
    max_age: float | None = None
    max_deliveries: int = 3
    idempotency_key: str | Callable[..., str] | None = None
    permits: tuple[PermitPolicy, ...] = ()
    fallback: Callable[..., Any] | None = None
    result_max_bytes: int = 65536

    _signature_cache: inspect.Signature | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly:
            return self.run(*args, **kwargs)
        return envelope.run(self, args, kwargs)

    def bind_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise TypeError (with Python's own message) when the arguments do not fit ``run``."""
        if self._signature_cache is None:
            type(self)._signature_cache = inspect.signature(self.run)
        assert self._signature_cache is not None
        self._signature_cache.bind(*args, **kwargs)

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
        """Ask for another attempt; the envelope schedules it through the delayed set."""
        if self.request.called_directly:
            return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
        if eta is not None and countdown is None:
            import datetime as dt  # noqa: PLC0415

            countdown = max(0.0, (eta - dt.datetime.now(eta.tzinfo)).total_seconds())
        raise ExplicitRetry(exc, countdown)

    def apply_async(  # type: ignore[override] # accepts Stalwart's enqueue options too
        self, args: Any = None, kwargs: Any = None, task_id: str | None = None, **options: Any
    ) -> Any:
        """Celery's apply_async, deriving the idempotency key from the task's template."""
        if self.idempotency_key is not None and "idempotency_key" not in options and not options.get(
            "stalwart_successor"
        ):
            options["idempotency_key"] = self.derive_key(tuple(args or ()), dict(kwargs or {}))
        return super().apply_async(args, kwargs, task_id=task_id, **options)

    def derive_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The idempotency key of a call, from the declared template or callable."""
        spec = self.idempotency_key
        if callable(spec):
            key = spec(*args, **kwargs)
        else:
            assert spec is not None
            bound = inspect.signature(self.run).bind(*args, **kwargs)
            bound.apply_defaults()
            try:
                key = spec.format(**bound.arguments)
            except (KeyError, IndexError) as exc:
                raise ConfigurationError(
                    f"idempotency_key template {spec!r} of {self.name} names {exc}, "
                    f"which is not an argument of {list(bound.arguments)}"
                ) from None
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"idempotency key of {self.name} must be a non-empty str, got {key!r}")
        return f"{self.name}:{key}"


def template_fields(template: str) -> list[str]:
    """The argument names a key template refers to."""
    return [name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name]
