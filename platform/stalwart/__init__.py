"""Stalwart: a resilient task platform on Celery."""

from .app import Stalwart, create_app
from .breakers import Breaker
from .errors import (
    CircuitOpen,
    ConfigurationError,
    DLQError,
    LimitExceeded,
    Permanent,
    RetryAfter,
    StalwartError,
    StateStoreError,
)
from .hooks import Hook
from .limits import Concurrency, RateLimit
from .policies import Retry
from .task import StalwartTask

__all__ = [
    "Breaker",
    "CircuitOpen",
    "Concurrency",
    "ConfigurationError",
    "DLQError",
    "Hook",
    "LimitExceeded",
    "Permanent",
    "RateLimit",
    "Retry",
    "RetryAfter",
    "Stalwart",
    "StalwartError",
    "StalwartTask",
    "StateStoreError",
    "create_app",
]
