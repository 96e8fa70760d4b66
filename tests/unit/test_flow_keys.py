"""Debounce and singleton keys: which field values render, and how a key becomes a key name."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart.enqueue.debounce import decode_call, encode_call, stored_options
from stalwart.enqueue.flow_keys import field_problem, render_flow_key
from stalwart.errors import ConfigurationError
from stalwart.store.flow import MAX_PLAIN_KEY, key_part


def task(doc: Any, n: int = 0) -> None: ...


SCALARS = st.one_of(st.text(min_size=1), st.integers(), st.floats(allow_nan=False), st.uuids())
OTHERS = st.one_of(st.none(), st.booleans(), st.just(""), st.lists(st.integers()),
                   st.dictionaries(st.text(), st.integers()), st.binary(), st.builds(object), st.tuples(st.integers()))


@given(SCALARS)
def test_a_scalar_field_renders_as_str_format_does(value: Any) -> None:
    assert field_problem(value) is None
    assert render_flow_key("k", "doc:{doc}", task, (value,), {}) == f"doc:{value}"


@given(OTHERS)
def test_none_bools_empty_text_and_non_scalars_are_refused_naming_the_field(value: Any) -> None:
    assert field_problem(value) is not None
    with pytest.raises(ConfigurationError, match=r"\{doc\}"):
        render_flow_key("k", "doc:{doc}", task, (value,), {})
    with pytest.raises(ConfigurationError, match=r"\{doc\}"):
        render_flow_key("k", "{doc}", task, (), {"doc": value})


def test_attribute_and_index_fields_are_checked_on_the_value_they_reach() -> None:
    assert render_flow_key("k", "{doc[id]}", task, ({"id": 7},), {}) == "7"
    with pytest.raises(ConfigurationError, match=r"\{doc\[id\]\} is None"):
        render_flow_key("k", "{doc[id]}", task, ({"id": None},), {})
    with pytest.raises(ConfigurationError, match="cannot be rendered"):
        render_flow_key("k", "{doc[id]}", task, ({},), {})


def test_a_key_callable_must_return_a_non_empty_str() -> None:
    assert render_flow_key("k", lambda doc, n=0: f"d-{doc}", task, (None,), {}) == "d-None"  # its own choice
    for bad in (None, "", 3):
        with pytest.raises(ConfigurationError, match="non-empty str"):
            render_flow_key("k", lambda doc, n=0, out=bad: out, task, (1,), {})


def test_arguments_that_do_not_fit_the_task_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="do not fit"):
        render_flow_key("k", "{doc}", task, (1,), {"nope": 2})


ANY_TEXT = st.text(st.characters(exclude_categories=()))  # lone surrogates too


@given(ANY_TEXT, ANY_TEXT)
def test_key_part_takes_any_text_and_separates_keys(first: str, second: str) -> None:
    one, two = key_part("t", first), key_part("t", second)
    assert not {"{", "}"} & set(one)
    assert len(one) <= MAX_PLAIN_KEY
    if first != second and "\\" not in first + second:  # a surrogate is written as backslash text
        assert one != two


@given(st.lists(st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False)), min_size=1, max_size=2))
def test_a_debounced_deadline_is_kept_as_ms_from_the_enqueue(values: list[float]) -> None:
    names = ["deadline", "expires"][: len(values)]
    options, deadline_in_ms = stored_options(dict(zip(names, values, strict=True)))
    assert not {"deadline", "expires", "deadline_at"} & set(options)
    assert deadline_in_ms == math.floor(min(values) * 1000)


@given(st.integers(0, 2**45), st.integers(-10**7, 10**7))
def test_a_stored_deadline_comes_back_as_seconds_left_on_the_redis_clock(now_ms: int, left_ms: int) -> None:
    call = encode_call(("d", 1), {"x": [1]}, {"queue": "q", "trace_id": "t"})
    args, kwargs, options = decode_call(call, now_ms + left_ms, now_ms)
    assert (args, kwargs) == (["d", 1], {"x": [1]})
    assert options == {"queue": "q", "trace_id": "t", "deadline": left_ms / 1000}
    assert "deadline" not in decode_call(call, None, now_ms)[2]
    assert json.loads(call)["options"] == {"queue": "q", "trace_id": "t"}


def test_bad_deadlines_are_refused() -> None:
    for bad in (True, "soon", math.inf, math.nan):
        with pytest.raises(ConfigurationError):
            stored_options({"expires": bad})
    assert stored_options({"deadline": None, "countdown": None}) == ({}, None)
