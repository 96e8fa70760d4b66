"""Debounce and singleton: what is refused where it is written, and the pure helpers."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stalwart import Debounce
from stalwart.app import Stalwart
from stalwart.enqueue.debounce import REFUSED, decode_call, encode_call, stored_options
from stalwart.errors import ConfigurationError, Permanent, PolicyKeyError
from stalwart.job.context import JobContext
from stalwart.job.header import Meta
from stalwart.policies.singleton import SingletonPermit
from stalwart.settings import Settings
from stalwart.store.flow import MAX_PLAIN_KEY, key_part

APP = Stalwart("flow-behaviour", settings=Settings.from_env({"STALWART_REDIS_URL": "redis://127.0.0.1:1/0"}))


def declare(**options: Any) -> Any:
    def body(doc: Any, n: Any = None) -> Any:
        return doc

    body.__name__ = body.__qualname__ = f"body_{uuid.uuid4().hex[:8]}"
    return APP.task(**options)(body)


def test_debounce_and_singleton_cannot_be_combined() -> None:
    with pytest.raises(ConfigurationError, match="cannot be combined"):
        declare(debounce=Debounce(key="{doc}", wait=1), singleton="{doc}")


def test_a_debounced_task_takes_no_idempotency_key() -> None:
    with pytest.raises(ConfigurationError, match="idempotency_key"):
        declare(debounce=Debounce(key="{doc}", wait=1), idempotency_key="{doc}")


def test_a_singleton_task_gets_its_run_slot_as_a_flow_permit() -> None:
    task = declare(singleton="{doc}")
    assert [type(p) for p in task.flow_permits] == [SingletonPermit]
    assert declare().flow_permits == ()


@pytest.mark.parametrize("option", sorted(REFUSED))
def test_options_a_burst_decides_are_refused(option: str) -> None:
    with pytest.raises(ConfigurationError, match=option):
        stored_options({option: 5})


def test_a_deadline_is_kept_relative_until_the_redis_clock_makes_it_absolute() -> None:
    stored, deadline_in_ms = stored_options({"deadline": 30, "expires": 45.5, "queue": "q", "link": None})
    assert (stored, deadline_in_ms) == ({"queue": "q"}, 30_000)
    _, _, options = decode_call(encode_call((1,), {"n": 2}, stored), 1_000_030_000, 1_000_000_000)
    assert options == {"deadline": 30.0, "queue": "q"}


@given(st.text(max_size=300), st.text(max_size=300))
def test_a_key_part_never_moves_the_hash_tag_and_is_bounded(task: str, key: str) -> None:
    part = key_part(task, key)
    assert "{" not in part
    assert "}" not in part
    assert len(part) <= MAX_PLAIN_KEY
    assert key_part(task, key) == part  # the same key, the same name


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=8)


@given(st.lists(JSON, max_size=4), st.dictionaries(st.text(max_size=5), JSON, max_size=3))
def test_a_call_round_trips_through_its_stored_form(args: list[Any], kwargs: dict[str, Any]) -> None:
    text = encode_call(tuple(args), kwargs, {"priority": 3})
    assert decode_call(text) == (args, kwargs, {"priority": 3})
    assert json.loads(text)["args"] == args


def test_a_job_whose_singleton_key_cannot_render_is_permanent_not_retried() -> None:
    """A message from outside (a plain Celery producer) whose arguments miss the key's field:
    the run slot can never be granted, so the job is dead-lettered at once, not retried."""
    task = declare(singleton="{doc.account}")
    ctx = JobContext(task_name=task.name, task_id="t1", queue="celery", args=("no attribute",), kwargs={},
                     meta=Meta(), attempt=1, hostname="h", job_key="t:t1")
    with pytest.raises(PolicyKeyError) as caught:
        task.flow_permits[0].acquire(APP.stalwart, ctx)
    assert isinstance(caught.value, Permanent)
    assert "singleton key" in str(caught.value)
