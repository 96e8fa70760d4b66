"""Task options are validated when the task is declared; Celery's retry names map to Retry."""

from __future__ import annotations

import contextlib
from typing import Any

import celery
import pytest
from celery.exceptions import CDeprecationWarning

from stalwart import ConfigurationError, Retry
from stalwart.app import Stalwart
from stalwart.options import known
from stalwart.policies.retry import retry_from_celery_options
from stalwart.settings import Settings


@pytest.fixture
def app() -> Stalwart:
    """An app that never connects anywhere: declaring tasks is pure."""
    return Stalwart("unit", settings=Settings())


def declare(app: Stalwart, **options: Any) -> Any:
    """Declare a task eagerly (lazy=False) so validation runs at once.

    ``shared=False``: a shared task would be declared again in every app created later.
    """

    def job(order_id: str, amount: int = 0) -> None:
        """A task body."""

    return app.task(lazy=False, shared=False, **options)(job)


# -- unknown options ----------------------------------------------------------------------------


def test_unknown_option_names_the_option_and_every_known_one(app: Stalwart) -> None:
    with pytest.raises(ConfigurationError) as err:
        declare(app, retyr=Retry())
    message = str(err.value)
    assert "retyr" in message
    assert "job" in message
    for name in known():
        assert name in message


def test_unknown_option_fails_at_the_decorator_line_even_for_a_lazy_task(app: Stalwart) -> None:
    with pytest.raises(ConfigurationError, match="max_retrys"):

        @app.task(max_retrys=3, shared=False)
        def job() -> None:
            """A task body."""


def test_celery_own_options_are_accepted(app: Stalwart) -> None:
    task = declare(app, name="orders.charge", bind=False, time_limit=5, soft_time_limit=4,
                   acks_late=True, ignore_result=True)
    assert task.name == "orders.charge"
    assert task.time_limit == 5


def test_celery_publishing_defaults_are_accepted(app: Stalwart) -> None:
    # Celery 5.7 deprecates them (earlier versions say nothing), but still honours them.
    deprecated = pytest.warns(CDeprecationWarning) if celery.VERSION >= (5, 7) else contextlib.nullcontext()
    with deprecated:
        task = declare(app, queue="orders", routing_key="orders")
    assert task._get_exec_options()["queue"] == "orders"


def test_stalwart_options_become_task_attributes(app: Stalwart) -> None:
    task = declare(app, max_age=30, max_deliveries=5, permanent_for=KeyError,
                   idempotency_key="order-{order_id}", result_max_bytes=1024)
    assert task.max_age == 30
    assert task.max_deliveries == 5
    assert task.permanent_for == (KeyError,)
    assert task.idempotency_key == "order-{order_id}"
    assert task.result_max_bytes == 1024


# -- invalid values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"max_age": -1}, "max_age"),
        ({"max_age": "60"}, "max_age"),
        ({"max_deliveries": 0}, "max_deliveries"),
        ({"max_deliveries": 2.5}, "max_deliveries"),
        ({"max_deliveries": True}, "max_deliveries"),
        ({"result_max_bytes": 1}, "result_max_bytes"),
        ({"permanent_for": "KeyError"}, "permanent_for"),
        ({"permanent_for": (KeyError, 3)}, "permanent_for"),
        ({"retry": {"max_attempts": 3}}, "retry"),
        ({"retry": Retry(), "max_retries": 3}, "not both"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": "3"}, "max_retries"),
        ({"retry_backoff": "fast"}, "retry_backoff"),
        ({"autoretry_for": (ValueError, "x")}, "autoretry_for"),
        ({"idempotency_key": "order-{customer}"}, "customer"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": 42}, "idempotency_key"),
        ({"limits": "10/s"}, "limits"),
        ({"limits": ["10/s"]}, "limit"),
        ({"breaker": object()}, "breaker"),
        ({"fallback": "use cache"}, "fallback"),
    ],
)
def test_invalid_values_are_refused_at_declaration(
    app: Stalwart, options: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        declare(app, **options)


def test_configuration_error_is_a_value_error(app: Stalwart) -> None:
    with pytest.raises(ValueError):
        declare(app, max_age=-5)


# -- the Retry policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": 2.0},
        {"max_attempts": "3"},
        {"backoff": -0.1},
        {"backoff": "1"},
        {"backoff": 10.0, "backoff_max": 5.0},
        {"on": "Exception"},
        {"on": (ValueError, int)},
        {"exclude": [object]},
    ],
)
def test_retry_validates_its_fields(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Retry(**kwargs)


def test_retry_normalisesexception_types_and_is_frozen() -> None:
    policy = Retry(on=ConnectionError, exclude=[ConnectionRefusedError])
    assert policy.on == (ConnectionError,)
    assert policy.exclude == (ConnectionRefusedError,)
    assert policy.retries(ConnectionResetError())
    assert not policy.retries(ConnectionRefusedError())
    with pytest.raises(AttributeError):
        policy.backoff = 2.0  # type: ignore[misc]


def test_retry_object_is_used_as_given(app: Stalwart) -> None:
    policy = Retry(max_attempts=7, backoff=0.1, backoff_max=1.0)
    assert declare(app, retry=policy).retry_policy is policy


# -- Celery's retry names -----------------------------------------------------------------------

def test_celery_defaults_map_to_four_attempts_with_jittered_backoff() -> None:
    assert retry_from_celery_options({}) == Retry(
        max_attempts=4, backoff=1.0, backoff_max=600.0, jitter=True, exponential=True
    )


def test_max_retries_counts_retries_not_attempts() -> None:
    assert retry_from_celery_options({"max_retries": 5}).max_attempts == 6
    assert retry_from_celery_options({"max_retries": 0}).max_attempts == 1
    assert retry_from_celery_options({"max_retries": None}).max_attempts is None


def test_retry_backoff_number_is_the_exponential_base() -> None:
    policy = retry_from_celery_options({"retry_backoff": 0.5, "retry_backoff_max": 4, "retry_jitter": False})
    assert (policy.backoff, policy.backoff_max, policy.jitter, policy.exponential) == (0.5, 4.0, False, True)


def test_retry_backoff_false_is_constant_default_retry_delay() -> None:
    policy = retry_from_celery_options({"retry_backoff": False, "default_retry_delay": 3})
    assert (policy.backoff, policy.exponential) == (3.0, False)
    assert policy.ceiling(5) == 3.0


def test_backoff_max_below_base_is_raised_to_the_base() -> None:
    policy = retry_from_celery_options({"retry_backoff": 10, "retry_backoff_max": 2})
    assert policy.backoff_max == 10.0


def test_autoretry_for_and_dont_autoretry_for_map_to_on_and_exclude() -> None:
    policy = retry_from_celery_options(
        {"autoretry_for": (ConnectionError,), "dont_autoretry_for": (ConnectionRefusedError,)}
    )
    assert policy.on == (ConnectionError,)
    assert policy.exclude == (ConnectionRefusedError,)


def test_declared_task_gets_the_mapped_policy(app: Stalwart) -> None:
    task = declare(app, max_retries=2, retry_backoff=0.25, retry_backoff_max=1, retry_jitter=False,
                   autoretry_for=(TimeoutError,))
    assert task.retry_policy == Retry(
        max_attempts=3, backoff=0.25, backoff_max=1.0, jitter=False, on=(TimeoutError,)
    )
