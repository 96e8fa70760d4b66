"""Stalwart: a resilient task platform on Celery."""

from .app import Stalwart, create_app
from .errors import (
    ConfigurationError,
    DLQError,
    Permanent,
    RetryAfter,
    StalwartError,
    StateStoreError,
)
from .hooks import Hook
from .policies import Retry
from .task import StalwartTask

__all__ = [
    "ConfigurationError",
    "DLQError",
    "Hook",
    "Permanent",
    "Retry",
    "RetryAfter",
    "Stalwart",
    "StalwartError",
    "StalwartTask",
    "StateStoreError",
    "create_app",
]
