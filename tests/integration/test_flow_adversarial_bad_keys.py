"""Bad rendered keys at a debounced or singleton enqueue (issue 12 red team, brought in).

Guarantee: bad input (unrenderable key, huge key, unicode, braces, None) is a clear
ConfigurationError at enqueue or a DLQ entry with a reason, never a crash or a silent loss.

1. A key with braces, or longer than 200 characters, holding a lone surrogate (valid in a Python
   str and in a JSON message, e.g. '\\udc80' from a surrogateescape'd file name) works like a
   short brace-free one (store/flow.py key_part hashes it as the wire sends it).
2. ``None`` (and a bool, a container, an empty string) in a key field is a ConfigurationError at
   enqueue, with nothing stored or published: it would render as the text "None" and join the
   burst of (or merge into the job for) the string "None".
3. A message from outside (a plain Celery producer) carrying such a value for a singleton task is
   dead-lettered with a reason (the run slot's key cannot be rendered: permanent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from stalwart.app import Stalwart
from stalwart.errors import ConfigurationError
from stalwart.testing import WorkerProcess, wait_until
from tests.integration.jobs_flow_adversarial import ENV, JOBS, dead_reasons, make_app, runs, started

pytestmark = pytest.mark.integration

SURROGATE_KEYS = {"braces": "doc{\udc80}", "long": "d" * 300 + "\udc80"}
BAD_VALUES = {"none": None, "bool": True, "list": ["a"], "dict": {"a": 1}, "object": object(), "empty": ""}


@pytest.fixture
def flow_app(worker_env: dict[str, str]) -> Stalwart:
    return make_app(worker_env)


@pytest.fixture
def plain(redis_url: str) -> Iterator[Celery]:
    producer = Celery("plain-producer", broker=redis_url)
    yield producer
    producer.close()


def published(r: redis.Redis) -> int:
    """Messages queued or delayed on the broker (the test redis is both broker and state store)."""
    delayed = sum(int(r.zcard(k)) for k in r.scan_iter("stalwart:{delayed:*", count=1000) if r.type(k) == b"zset")
    return int(r.llen("celery")) + delayed


@pytest.mark.parametrize("task", ["bounce", "single"])
@pytest.mark.parametrize("kind", list(SURROGATE_KEYS))
def test_a_key_with_a_lone_surrogate_is_hashed_not_a_crash(task: str, kind: str, flow_app: Stalwart,
                                                           r: redis.Redis) -> None:
    args: list[Any] = [SURROGATE_KEYS[kind], 1] if task == "bounce" else [SURROGATE_KEYS[kind], 0.0]
    first = flow_app.send_task(f"{JOBS}.{task}", args=args)
    again = flow_app.send_task(f"{JOBS}.{task}", args=args)
    assert again.id == first.id  # the same key: one burst, or merged into the waiting job
    other = flow_app.send_task(f"{JOBS}.{task}", args=[SURROGATE_KEYS[kind].replace("\udc80", "\udc81"), *args[1:]])
    assert other.id != first.id  # a different surrogate is a different key
    short = ["doc\udc80", 1] if task == "bounce" else ["doc\udc80", 0.0]
    assert flow_app.send_task(f"{JOBS}.{task}", args=short).id not in (first.id, other.id)


@pytest.mark.parametrize("task", ["bounce", "single"])
@pytest.mark.parametrize("kind", list(BAD_VALUES))
def test_a_key_field_that_is_not_a_plain_scalar_is_refused_at_enqueue(task: str, kind: str, flow_app: Stalwart,
                                                                      r: redis.Redis) -> None:
    before = set(r.scan_iter("*"))
    # (a debounced call that is not JSON, like object(), is refused as such first)
    with pytest.raises(ConfigurationError, match=r"\{(doc|account)\}|must be JSON"):
        flow_app.send_task(f"{JOBS}.{task}", args=[BAD_VALUES[kind], 1])
    assert set(r.scan_iter("*")) == before  # nothing stored, nothing published
    assert published(r) == 0


def test_none_and_the_text_none_are_not_one_key(flow_app: Stalwart, r: redis.Redis) -> None:
    with pytest.raises(ConfigurationError, match="is None"):
        flow_app.send_task(f"{JOBS}.bounce", args=[None, 1])
    with pytest.raises(ConfigurationError, match="is None"):
        flow_app.send_task(f"{JOBS}.single", args=[None, 0.0])
    with pytest.raises(ConfigurationError, match="is None"):
        flow_app.send_task(f"{JOBS}.single", kwargs={"account": None, "sleep": 0.0})
    assert flow_app.send_task(f"{JOBS}.bounce", args=["None", 2]).id
    assert flow_app.send_task(f"{JOBS}.single", args=["None", 0.0]).id


def test_a_plain_producer_s_none_singleton_key_is_dead_lettered_with_a_reason(
    flow_app: Stalwart, plain: Celery, make_worker: Callable[..., WorkerProcess], r: redis.Redis
) -> None:
    make_worker(env=ENV, concurrency=1)
    bad = plain.send_task(f"{JOBS}.single", args=[None, 0.0]).id
    good = plain.send_task(f"{JOBS}.single", args=["None", 0.0]).id
    wait_until(lambda: dead_reasons(flow_app, bad) and good in started(r, "None"), 30, 0.1,
               message="the None key was not dead-lettered, or the 'None' key did not run")
    assert dead_reasons(flow_app, bad) == ["permanent"]
    entry = next(e for e in flow_app.stalwart.dlq.iter() if e.task_id == bad)
    assert entry.exc_type == "PolicyKeyError"
    assert "{account} is None" in (entry.exc_message or "")
    assert list(started(r, "None")) == [good]
    assert runs(r, "None") == []
