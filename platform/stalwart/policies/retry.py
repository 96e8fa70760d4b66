"""Task policies: small frozen objects, validated when the task is declared."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

from stalwart.errors import ConfigurationError

ExceptionTypes = tuple[type[BaseException], ...]


def exception_types(name: str, value: object) -> ExceptionTypes:
    if isinstance(value, type) and issubclass(value, BaseException):
        return (value,)
    if isinstance(value, (tuple, list)) and all(
        isinstance(v, type) and issubclass(v, BaseException) for v in value
    ):
        return tuple(value)
    raise ConfigurationError(f"{name} must be an exception class or a tuple of them, got {value!r}")


# A year: a longer wait cannot be scheduled sensibly (and would overflow a deadline in ms).
MAX_BACKOFF_SECONDS = 365 * 86400.0


def _seconds(name: str, value: object) -> float:
    """A Celery retry option in seconds, or a ConfigurationError naming it."""
    if not _finite(value) or not 0 <= value <= MAX_BACKOFF_SECONDS:
        raise ConfigurationError(f"{name} must be a number of seconds in [0, {MAX_BACKOFF_SECONDS:g}], got {value!r}")
    return float(value)


def _finite(value: object) -> TypeGuard[float]:
    """A real number (not bool, NaN or infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Retry:
    """Retry transient failures with capped exponential backoff and full jitter.

    ``max_attempts`` counts every run including the first (Celery's ``max_retries`` + 1);
    ``None`` means unlimited, still bounded by the job's deadline. With ``jitter`` the delay
    before attempt n+1 is uniform in [0, min(backoff_max, backoff * 2**(n-1))]: plain
    exponential backoff makes every worker that failed together retry together.
    """

    max_attempts: int | None = 4
    backoff: float = 1.0
    backoff_max: float = 600.0
    jitter: bool = True
    on: ExceptionTypes = (Exception,)
    exclude: ExceptionTypes = ()
    exponential: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts is not None and (
            not isinstance(self.max_attempts, int) or self.max_attempts < 1
        ):
            raise ConfigurationError(f"Retry.max_attempts must be an int >= 1 or None, got {self.max_attempts!r}")
        if isinstance(self.max_attempts, bool):
            raise ConfigurationError(f"Retry.max_attempts must be an int >= 1 or None, got {self.max_attempts!r}")
        if not _finite(self.backoff) or self.backoff < 0:
            raise ConfigurationError(f"Retry.backoff must be a number >= 0, got {self.backoff!r}")
        if not _finite(self.backoff_max) or not self.backoff <= self.backoff_max <= MAX_BACKOFF_SECONDS:
            raise ConfigurationError(
                f"Retry.backoff_max must be a number >= backoff ({self.backoff}), got {self.backoff_max!r}"
            )
        object.__setattr__(self, "on", exception_types("Retry.on", self.on))
        object.__setattr__(self, "exclude", exception_types("Retry.exclude", self.exclude) if self.exclude else ())

    def retries(self, exc: BaseException) -> bool:
        """Whether this exception type is one to retry at all."""
        return isinstance(exc, self.on) and not isinstance(exc, self.exclude)

    def ceiling(self, attempt: int) -> float:
        """The largest delay after failed attempt ``attempt`` (1-based)."""
        if not self.exponential:
            return float(self.backoff)
        # The exponent is capped: 2**1024 overflows a float, and unlimited attempts reach it.
        return float(min(self.backoff_max, self.backoff * (2 ** min(max(0, attempt - 1), 64))))


def retry_from_celery_options(options: dict[str, object]) -> Retry:
    """Build the Retry policy from Celery's own option names, popping them from ``options``."""
    max_retries = options.pop("max_retries", 3)
    backoff = options.pop("retry_backoff", True)
    backoff_max = options.pop("retry_backoff_max", 600)
    jitter = options.pop("retry_jitter", True)
    on = options.pop("autoretry_for", None)
    exclude = options.pop("dont_autoretry_for", ())
    default_delay = options.pop("default_retry_delay", 1.0)
    if max_retries is not None and (isinstance(max_retries, bool) or not isinstance(max_retries, int)
                                    or max_retries < 0):
        raise ConfigurationError(f"max_retries must be an int >= 0 or None, got {max_retries!r}")
    if backoff is False:
        base, exponential = default_delay, False
    elif backoff is True:
        base, exponential = default_delay, True
    else:
        base, exponential = backoff, True
    base = _seconds("default_retry_delay" if isinstance(backoff, bool) else "retry_backoff", base)
    backoff_max = _seconds("retry_backoff_max", backoff_max)
    return Retry(
        max_attempts=None if max_retries is None else max_retries + 1,
        backoff=float(base),
        backoff_max=float(max(backoff_max, base)),
        jitter=bool(jitter),
        on=exception_types("autoretry_for", on) if on else (Exception,),
        exclude=exception_types("dont_autoretry_for", exclude) if exclude else (),
        exponential=exponential,
    )


class RetryOptions:
    """``retry=Retry(...)``, or Celery's own retry option names (not both)."""

    options: dict[str, str] = {
        "retry": "a stalwart.Retry policy (or use Celery's max_retries/retry_backoff/... names)",
        "max_retries": "Celery's name: attempts after the first (None: unlimited, bounded by the deadline)",
        "retry_backoff": "Celery's name: True for exponential backoff, or its base in seconds",
        "retry_backoff_max": "Celery's name: the largest backoff in seconds",
        "retry_jitter": "Celery's name: full jitter on the backoff (default True)",
        "autoretry_for": "Celery's name: exception types retried (default: every Exception)",
        "dont_autoretry_for": "Celery's name: exception types never retried",
        "default_retry_delay": "Celery's name: the backoff base when retry_backoff is True or False",
        "retry_kwargs": "Celery's name: accepted and ignored (Retry carries the same settings)",
    }

    def resolve(self, where: str, fun: Callable[..., Any], given: dict[str, Any]) -> dict[str, Any]:
        celery_retry = {k: v for k, v in given.items() if k not in ("retry", "retry_kwargs")}
        policy = given.get("retry")
        if policy is not None and celery_retry:
            raise ConfigurationError(
                f"{where}: give either retry=Retry(...) or Celery's retry options "
                f"({', '.join(sorted(celery_retry))}), not both"
            )
        if policy is not None and not isinstance(policy, Retry):
            raise ConfigurationError(f"{where}: retry must be a stalwart.Retry, got {policy!r}")
        if policy is None and not celery_retry:
            return {}
        return {"retry_policy": policy or retry_from_celery_options(celery_retry)}


RETRY_OPTIONS = RetryOptions()
