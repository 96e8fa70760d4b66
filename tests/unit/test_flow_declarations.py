"""Flow-control declarations (issue 12): ``fair_by``/``fair_weights``, ``debounce``, ``singleton``.

Each is checked where the task is declared, like ``idempotency_key``: a template must name the
task's arguments, a weight or a wait must be a finite number in range. The keys are rendered at
enqueue; a call whose arguments cannot render one gets a ConfigurationError, never another error.
"""

from __future__ import annotations

import inspect
import math
import string
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalwart import Debounce
from stalwart.app import Stalwart
from stalwart.enqueue.keys import render_key, template_fields
from stalwart.errors import ConfigurationError
from stalwart.policies.fairness import MAX_KEY_CHARS, MAX_WEIGHT, MIN_WEIGHT, fair_key, weight_of
from stalwart.settings import Settings

APP = Stalwart("flow-decl", settings=Settings.from_env({"STALWART_REDIS_URL": "redis://127.0.0.1:1/0"}))
FAST = settings(max_examples=200, suppress_health_check=list(HealthCheck), deadline=None)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def declare(**options: Any) -> Any:
    def body(tenant_id: Any, doc: Any = None) -> Any:
        return tenant_id

    body.__name__ = body.__qualname__ = f"body_{uuid.uuid4().hex[:8]}"
    return APP.task(**options)(body)


# -- declaration ------------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["fair_by", "singleton"])
def test_a_template_naming_an_argument_is_accepted(option: str) -> None:
    task = declare(**{option: "t:{tenant_id}:{doc}"})
    assert getattr(task, option) == "t:{tenant_id}:{doc}"


@pytest.mark.parametrize("option", ["fair_by", "singleton"])
@pytest.mark.parametrize("template", ["{nope}", "{0}", "{}", "{tenant_id!r}", "{tenant_id:>4}", "{", "a}b", ""])
def test_a_template_that_does_not_name_arguments_is_refused(option: str, template: str) -> None:
    with pytest.raises(ConfigurationError, match=option):
        declare(**{option: template})


def test_a_debounce_key_is_checked_against_the_task_arguments() -> None:
    with pytest.raises(ConfigurationError, match=r"Debounce\.key"):
        declare(debounce=Debounce(key="{missing}", wait=1))
    assert declare(debounce=Debounce(key="{doc}", wait=1, max_wait=5)).debounce.max_wait == 5


@pytest.mark.parametrize("value", [3, "x", Debounce, None.__class__])
def test_debounce_must_be_a_debounce(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="debounce"):
        declare(debounce=value)


@FAST
@given(wait=st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.booleans(),
       max_wait=st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers())
def test_debounce_waits_are_finite_seconds_in_range(wait: Any, max_wait: Any) -> None:
    def ok(v: Any) -> bool:
        return not isinstance(v, bool) and math.isfinite(v) and 0.01 <= v <= 7 * 86400

    valid = ok(wait) and (max_wait is None or (ok(max_wait) and max_wait >= wait))
    if valid:
        assert Debounce("{doc}", wait, max_wait).wait == wait
    else:
        with pytest.raises(ConfigurationError, match="Debounce"):
            Debounce("{doc}", wait, max_wait)


def test_fair_weights_need_fair_by() -> None:
    with pytest.raises(ConfigurationError, match="fair_weights needs fair_by"):
        declare(fair_weights={"a": 2})


@FAST
@given(weight=st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.booleans() | st.text(max_size=3))
def test_fair_weights_are_finite_positive_numbers(weight: Any) -> None:
    valid = (not isinstance(weight, (bool, str)) and math.isfinite(weight) and MIN_WEIGHT <= weight <= MAX_WEIGHT)
    if valid:
        assert declare(fair_by="{tenant_id}", fair_weights={"a": weight}).fair_weights == {"a": float(weight)}
    else:
        with pytest.raises(ConfigurationError, match="fair_weights"):
            declare(fair_by="{tenant_id}", fair_weights={"a": weight})


def test_fair_weights_keys_must_be_strings() -> None:
    with pytest.raises(ConfigurationError, match="fair_weights keys"):
        declare(fair_by="{tenant_id}", fair_weights={1: 2})


# -- rendering at enqueue ---------------------------------------------------------------------

@FAST
@given(value=JSON, doc=JSON)
def test_a_fair_key_renders_or_is_refused_clearly(value: Any, doc: Any) -> None:
    task = declare(fair_by="{tenant_id}/{doc}")
    rendered = f"{value}/{doc}"
    if len(rendered) > MAX_KEY_CHARS:
        with pytest.raises(ConfigurationError, match="fair_by"):
            task.fair_header((value,), {"doc": doc})
        return
    assert task.fair_header((value,), {"doc": doc}) == [rendered, 1.0]


@FAST
@given(args=st.lists(JSON, max_size=4), kwargs=st.dictionaries(st.sampled_from(["tenant_id", "doc", "x"]), JSON))
def test_arguments_that_do_not_fit_are_a_configuration_error(args: list[Any], kwargs: dict[str, Any]) -> None:
    task = declare(fair_by="{tenant_id}")
    try:
        bound = inspect.signature(task.run).bind(*args, **kwargs)
    except TypeError:
        with pytest.raises(ConfigurationError, match="do not fit"):
            task.fair_header(tuple(args), kwargs)
        return
    rendered = str(bound.arguments["tenant_id"])
    if not rendered:
        with pytest.raises(ConfigurationError, match="non-empty"):
            task.fair_header(tuple(args), kwargs)
    elif len(rendered) <= MAX_KEY_CHARS:
        assert task.fair_header(tuple(args), kwargs) == [rendered, 1.0]


def test_a_weight_function_that_fails_or_lies_is_reported() -> None:
    def broken(key: str) -> float:
        raise RuntimeError("no weights today")

    assert weight_of("t", {"vip": 3}, "vip") == 3.0
    assert weight_of("t", {"vip": 3}, "other") == 1.0
    with pytest.raises(ConfigurationError, match="no weights today"):
        weight_of("t", broken, "k")
    with pytest.raises(ConfigurationError, match="fair_weights"):
        weight_of("t", lambda key: float("nan"), "k")


def test_a_key_function_that_raises_is_reported_with_its_error() -> None:
    def key(tenant_id: Any, doc: Any = None) -> str:
        raise KeyError("tenant")

    with pytest.raises(ConfigurationError, match="KeyError"):
        fair_key("t", key, key, ("a",), {})
    with pytest.raises(ConfigurationError, match="non-empty str"):
        render_key("x", lambda *a: 42, key, ("a",), {})  # type: ignore[arg-type,return-value]


def test_an_overlong_key_is_refused() -> None:
    task = declare(fair_by="{tenant_id}")
    assert task.fair_header(("a" * MAX_KEY_CHARS,), {}) == ["a" * MAX_KEY_CHARS, 1.0]
    with pytest.raises(ConfigurationError, match="characters"):
        task.fair_header(("a" * (MAX_KEY_CHARS + 1),), {})


@FAST
@given(template=st.text(alphabet=string.printable, max_size=20))
def test_template_parsing_is_total(template: str) -> None:
    try:
        fields = template_fields(template, "fair_by")
    except ConfigurationError as exc:
        message = str(exc)
    else:
        assert all(f.isidentifier() for f in fields)
        return
    assert "fair_by" in message


def test_an_argument_whose_formatting_raises_is_a_configuration_error() -> None:
    class Hostile:
        def __format__(self, spec: str) -> str:
            raise RuntimeError("no")

    with pytest.raises(ConfigurationError, match="RuntimeError"):
        declare(fair_by="{tenant_id}").fair_header((Hostile(),), {})
