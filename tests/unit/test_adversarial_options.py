"""Adversarial regressions for the architecture change (issue 8), from a red-team pass.

Red team, claim 3: every unknown or invalid task option is refused at the decorator line with a
ConfigurationError naming it; Celery's own options pass; every declaration form behaves alike.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import celery
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalwart.app import Stalwart
from stalwart.errors import ConfigurationError
from stalwart.settings import Settings

APP = Stalwart("rt-options", settings=Settings.from_env({"STALWART_REDIS_URL": "redis://127.0.0.1:1/0"}))


def declare(**options: Any) -> Any:
    def body(x: Any, y: Any = 1) -> Any:
        return x

    body.__name__ = body.__qualname__ = f"body_{uuid.uuid4().hex[:8]}"
    return APP.task(**options)(body)


# Task attributes that are behaviour, not configuration: an option with one of these names replaces
# the method on the generated task class (Celery's _task_from_fun puts options in the class dict).
SHADOWING = ["run", "apply_async", "delay", "apply", "signature", "s", "si", "on_failure", "on_success",
             "on_retry", "after_return", "request", "backend", "app", "AsyncResult", "update_state",
             "send_event", "replace", "subtask", "chunks", "map", "starmap", "add_to_chord",
             "MaxRetriesExceededError", "OperationalError", "Request", "Strategy"]


@pytest.mark.parametrize("name", SHADOWING)
def test_an_option_named_after_a_task_method_is_refused(name: str) -> None:
    """`@app.task(run=print)` silently replaces the body; `apply_async=None` makes the task
    un-enqueueable; `Request=`/`Strategy=` silently swap out Stalwart's lost-child handling and
    bad-message guard for Celery's. All pass because `hasattr(celery.Task, name)` is the test."""
    with pytest.raises(ConfigurationError, match=name):
        declare(**{name: None})


def test_base_must_keep_the_envelope() -> None:
    """`base=celery.Task` is accepted, and the task then runs with no envelope at all (no DLQ,
    no idempotency claim, no deadline, no poison guard)."""
    with pytest.raises(ConfigurationError, match="base"):
        declare(base=celery.Task)


def test_a_pickle_serializer_is_refused_where_it_is_declared() -> None:
    """The worker accepts JSON only, so every job of this task is dead-lettered as
    refused_content; the decorator accepts it without a word."""
    with pytest.raises(ConfigurationError, match="serializer"):
        declare(serializer="pickle")


@pytest.mark.parametrize("name", ["max_age", "result_max_bytes", "retry_backoff", "retry_backoff_max"])
@given(value=st.floats(allow_nan=True, allow_infinity=True))
@settings(max_examples=60, suppress_health_check=list(HealthCheck), deadline=None)
def test_numeric_options_take_only_finite_values_in_range(name: str, value: float) -> None:
    """NaN and infinities (and max_age values whose milliseconds overflow) must be refused."""
    if math.isfinite(value) and math.isfinite(value * 1000):
        return
    with pytest.raises(ConfigurationError):
        declare(**{name: value})


@pytest.mark.parametrize("options", [{"retry_backoff": -1}, {"default_retry_delay": -1},
                                     {"autoretry_for": "ValueError"}, {"permanent_for": [ValueError, 3]},
                                     {"dont_autoretry_for": 3}])
def test_a_refusal_names_the_option_given_and_the_task(options: dict[str, Any]) -> None:
    """Retry's own checks speak of `Retry.backoff` (not retry_backoff) and name no task; the
    exception-type checks name the option but not the task, unlike every other refusal."""
    task_name = f"body_named_{uuid.uuid4().hex[:6]}"

    def body(x: Any) -> Any:
        return x

    body.__name__ = body.__qualname__ = task_name
    with pytest.raises(ConfigurationError) as raised:
        APP.task(**options)(body)
    assert next(iter(options)) in str(raised.value)
    assert task_name in str(raised.value)


def test_max_retries_true_is_not_taken_as_one() -> None:
    with pytest.raises(ConfigurationError, match="max_retries"):
        declare(max_retries=True)


@pytest.mark.parametrize("template", ["{x", "{x:d}", "{}", "{x[0]"])
def test_a_broken_idempotency_template_is_refused_at_the_decorator_line(template: str) -> None:
    """'{x' raises a plain ValueError from string.Formatter (no option named); '{}', '{x:d}' and
    '{x.missing}' are accepted and fail only at enqueue time, with IndexError/ValueError/
    AttributeError escaping apply_async."""
    with pytest.raises(ConfigurationError, match="idempotency_key"):
        declare(idempotency_key=template)


@given(option=st.from_regex(r"\A[a-z][a-z0-9_]{0,20}\Z"), value=st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5), st.lists(st.integers(), max_size=2)))
@settings(max_examples=150, suppress_health_check=list(HealthCheck), deadline=None)
def test_decorator_never_raises_anything_but_configuration_error(option: str, value: Any) -> None:
    with contextlib.suppress(ConfigurationError):
        declare(**{option: value})


SHARED = """
import sys
from celery import shared_task
from stalwart.app import Stalwart
from stalwart.errors import ConfigurationError
from stalwart.settings import Settings

@shared_task({options})
def job(x):
    return x

app = Stalwart("rt", settings=Settings.from_env({{"STALWART_REDIS_URL": "redis://127.0.0.1:1/0"}}))
try:
    app.finalize()
except ConfigurationError as exc:
    print("refused:", exc)
    sys.exit(0)
print("accepted")
"""


@pytest.mark.parametrize("options", ["bogus_option=1", "apply_async=None", "max_age=float('nan')",
                                     "serializer='pickle'"])
def test_shared_task_refuses_what_app_task_refuses(options: str) -> None:
    """`@app.task(bogus_option=1)` is refused; `@shared_task(bogus_option=1)` bound to a Stalwart
    app is accepted: resolve_class only looks at attributes that are Stalwart's own options."""
    code = SHARED.format(options=options)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.stdout.startswith("refused:"), done.stdout + done.stderr[-2000:]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e308])
def test_max_age_that_cannot_become_a_deadline_is_refused(value: float) -> None:
    """Each passes the decorator; each then makes every delivery raise before the envelope starts
    (see test_delivery_redteam.py::test_a_huge_max_age_does_not_lose_the_job)."""
    with pytest.raises(ConfigurationError, match="max_age"):
        declare(max_age=value)
