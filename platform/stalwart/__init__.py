"""Stalwart: a resilient task platform on Celery."""

from stalwart.broker.compat import require_supported

require_supported()  # before anything imports Celery's internals: one clear line, not a traceback

# The public API. E402: these imports must follow the version check above.
from stalwart.app import Stalwart, create_app  # noqa: E402
from stalwart.dlq.entry import DeadLetter, Filter  # noqa: E402
from stalwart.errors import (  # noqa: E402
    CircuitOpen,
    ConfigurationError,
    DLQError,
    LimitExceeded,
    Permanent,
    RetryAfter,
    StalwartError,
    StateStoreError,
)
from stalwart.hooks import Hook  # noqa: E402
from stalwart.job.commit import ClaimLost, commit  # noqa: E402
from stalwart.job.context import JobContext, Outcome  # noqa: E402
from stalwart.job.delivery import current_job  # noqa: E402
from stalwart.policies.breakers import Breaker  # noqa: E402
from stalwart.policies.flow import Debounce  # noqa: E402
from stalwart.policies.limits import Concurrency, RateLimit  # noqa: E402
from stalwart.policies.permits import Decision, PermitPolicy  # noqa: E402
from stalwart.policies.retry import Retry  # noqa: E402
from stalwart.runtime import Runtime  # noqa: E402
from stalwart.settings import Settings  # noqa: E402
from stalwart.task import StalwartTask  # noqa: E402

__all__ = [
    "Breaker",
    "CircuitOpen",
    "ClaimLost",
    "Concurrency",
    "ConfigurationError",
    "DLQError",
    "DeadLetter",
    "Debounce",
    "Decision",
    "Filter",
    "Hook",
    "JobContext",
    "LimitExceeded",
    "Outcome",
    "Permanent",
    "PermitPolicy",
    "RateLimit",
    "Retry",
    "RetryAfter",
    "Runtime",
    "Settings",
    "Stalwart",
    "StalwartError",
    "StalwartTask",
    "StateStoreError",
    "commit",
    "create_app",
    "current_job",
]
