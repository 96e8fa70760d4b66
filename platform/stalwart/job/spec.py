"""What the envelope needs of a task: the declared policies and Celery's request API.

:class:`stalwart.task.StalwartTask` satisfies it; the envelope depends on this protocol, not on
the task class, so the two modules do not import each other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from stalwart.errors import ConfigurationError
from stalwart.policies.permits import PermitPolicy
from stalwart.policies.retry import ExceptionTypes, Retry, exception_types

# Ten years: a longer max_age cannot become a deadline in epoch milliseconds sensibly.
MAX_AGE_SECONDS = 10 * 365 * 86400.0


class EnvelopeTask(Protocol):
    """A task as the envelope runs it."""

    name: str
    retry_policy: Retry
    permanent_for: ExceptionTypes
    max_age: float | None
    max_deliveries: int
    permits: tuple[PermitPolicy, ...]
    flow_permits: tuple[PermitPolicy, ...]  # asked for after ``permits`` (singleton's run slot)
    fallback: Callable[..., Any] | None
    result_max_bytes: int

    @property
    def request(self) -> Any: ...

    @property
    def app(self) -> Any: ...

    def run(self, *args: Any, **kwargs: Any) -> Any: ...

    def bind_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None: ...

    def signature_from_request(self, request: Any = None, args: Any = None, kwargs: Any = None,
                               queue: Any = None, **extra_options: Any) -> Any: ...


class EnvelopeOptions:
    """The envelope's own task options: deadline, poison guard, result size, permanent errors."""

    options: dict[str, str] = {
        "permanent_for": "exception types that dead-letter at once, never retried",
        "max_age": "seconds after enqueue past which the job is dead-lettered as expired",
        "max_deliveries": "deliveries without finishing before the job is a poison pill (default 3)",
        "result_max_bytes": "largest JSON result stored for idempotent replies (default 65536)",
    }
    minimums: dict[str, float] = {"max_age": 0.0, "max_deliveries": 1, "result_max_bytes": 16}
    maximums: dict[str, float] = {"max_age": MAX_AGE_SECONDS, "max_deliveries": 1_000_000,
                                  "result_max_bytes": 512 * 1024 * 1024}

    def resolve(self, where: str, fun: Callable[..., Any], given: dict[str, Any]) -> dict[str, Any]:
        out = dict(given)
        for name, minimum in self.minimums.items():
            value = out.get(name)
            if value is None:
                continue
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or not minimum <= value <= self.maximums[name]):
                raise ConfigurationError(f"{where}: {name} must be a number >= {minimum}, got {value!r}")
        if "max_deliveries" in out and not isinstance(out["max_deliveries"], int):
            raise ConfigurationError(f"{where}: max_deliveries must be an int, got {out['max_deliveries']!r}")
        if "permanent_for" in out:
            out["permanent_for"] = exception_types("permanent_for", out["permanent_for"])
        return out


ENVELOPE_OPTIONS = EnvelopeOptions()
