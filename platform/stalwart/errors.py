"""One error tree for the whole platform, plus the signals a task author raises."""

from __future__ import annotations


class StalwartError(Exception):
    """Base class of every error Stalwart raises."""


class ConfigurationError(StalwartError, ValueError):
    """A setting, task option or policy value is invalid."""


class StateStoreError(StalwartError):
    """The Redis state store failed or could not be reached."""


class StoreUnavailable(StateStoreError):
    """The state store could not be reached (connection refused or lost, timeout, loading)."""


class DLQError(StalwartError):
    """A dead-letter queue operation could not be carried out."""


class EntryNotFound(DLQError, KeyError):
    """No dead-letter entry has the given id."""


class Permanent(StalwartError):
    """Raise from a task body: this job can never succeed, dead-letter it now."""


class RetryAfter(StalwartError):
    """Raise from a task body: a transient failure, try again after ``seconds``."""

    def __init__(self, seconds: float, message: str = "") -> None:
        if seconds < 0:
            raise ConfigurationError(f"RetryAfter seconds must be >= 0, got {seconds!r}")
        self.seconds = float(seconds)
        super().__init__(message or f"retry after {self.seconds:g}s")


class LimitExceeded(RetryAfter):
    """A rate or concurrency limit used inside a task body is exhausted: retry after the wait."""


class CircuitOpen(RetryAfter):
    """A breaker used inside a task body is open: retry after the wait (or catch it and degrade)."""


class PolicyKeyError(Permanent, ConfigurationError):
    """A per-key policy's name cannot be rendered from a job's arguments (a missing or ``None``
    field, a wrong type, a key callable that raised, a name too long): the job can never get its
    permit, so the envelope dead-letters it as permanent, naming the policy and the problem."""
