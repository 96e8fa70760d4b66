"""The decode boundary is total: any list item is run, dead-lettered with its raw bytes, or scheduled.

Hypothesis generates thousands of items per run: any bytes, any JSON value, and Celery envelopes
with fields removed, replaced by any JSON value (any type, size, depth), or added. Each goes through
what the worker's main process does with it (the fetch script on a real redis-server, the decode
boundary, kombu's message, Celery's request) and nothing may raise.
"""

from __future__ import annotations

import base64
import json
import pickle
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery.worker.request import Request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kombu import Connection

from stalwart.app import Stalwart
from stalwart.broker import decode
from stalwart.broker.consumer import body_problem, entry_for_message, quarantine_reason
from stalwart.job.header import HEADER
from stalwart.settings import Settings
from stalwart.store import broker as broker_store
from stalwart.store.broker import BrokerKeys, FetchLimits, Quarantined, Taken

TASK = "fuzz.record"
NOW_MS = 1_800_000_000_000
KEYS = BrokerKeys.build(prefix="fuzz", global_prefix="", unacked="unacked", index="unacked_index")
LIMITS = FetchLimits(max_fetches=3, max_item_bytes=decode.MAX_ITEM_BYTES, visibility_ms=60_000,
                     max_depth=decode.MAX_DEPTH)
ACCEPT = {"application/json"}

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**53, max_value=2**70)
           | st.floats() | st.text(max_size=20) | st.sampled_from(["\ud800", "2024-01-01T00:00:00", "", "x" * 300]))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@st.composite
def deep(draw: Any) -> Any:
    """A value nested 1 to 1500 levels deep (lists, objects or both)."""
    value: Any = draw(scalars)
    shape = draw(st.sampled_from(["list", "object", "both"]))
    for level in range(draw(st.integers(1, 1500))):
        value = [value] if shape == "list" or (shape == "both" and level % 2) else {"k": value}
    return value


def template(plain: bool) -> dict[str, Any]:
    task_id = str(uuid.uuid4())
    headers: dict[str, Any] = {
        "lang": "py", "task": TASK, "id": task_id, "shadow": None, "eta": None, "expires": None, "group": None,
        "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id, "parent_id": None,
        "argsrepr": "('a',)", "kwargsrepr": "{}", "origin": "gen1@host", "ignore_result": False,
        "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
    }
    if not plain:
        headers[HEADER] = {"msg": uuid.uuid4().hex, "gen": 0, "trace": "t", "sent": NOW_MS - 10}
    return {
        "body": base64.b64encode(json.dumps([["a"], {}, {"callbacks": None, "errbacks": None, "chain": None,
                                                           "chord": None}]).encode()).decode(),
        "content-encoding": "utf-8", "content-type": "application/json", "headers": headers,
        "properties": {"correlation_id": task_id, "reply_to": str(uuid.uuid4()), "delivery_mode": 2,
                       "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0,
                       "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())},
    }


PATHS = [
    ("body",), ("content-type",), ("content-encoding",), ("headers",), ("properties",),
    *[("headers", h) for h in ("task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
                               "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin",
                               "ignore_result", "replaced_task_nesting", "stamped_headers", "stamps", "lang",
                               "compression", "called_directly", "update", "__class__", HEADER)],
    *[("headers", HEADER, f) for f in ("msg", "gen", "key", "trace", "deadline", "sent", "first_seen", "history")],
    *[("properties", p) for p in ("delivery_tag", "body_encoding", "delivery_info", "priority", "correlation_id",
                                  "reply_to")],
    ("properties", "delivery_info", "routing_key"), ("properties", "delivery_info", "exchange"),
]


def _set(env: Any, path: tuple[str, ...], value: Any, delete: bool) -> None:
    for part in path[:-1]:
        if not isinstance(env, dict) or not isinstance(env.get(part), dict):
            return
        env = env[part]
    if isinstance(env, dict):
        if delete:
            env.pop(path[-1], None)
        else:
            env[path[-1]] = value


@st.composite
def envelopes(draw: Any) -> bytes:
    """A Celery message with up to five of its fields removed, replaced or added, or a bad body."""
    env = template(plain=draw(st.booleans()))
    for _ in range(draw(st.integers(0, 5))):
        path = draw(st.sampled_from(PATHS) | st.tuples(st.just("headers"), st.text(max_size=6)))
        value = draw(json_values | deep() | st.sampled_from(["2024-01-01T00:00:00+00:00", "2999-01-01", "nope"]))
        _set(env, path, value, delete=draw(st.booleans()))
    if draw(st.booleans()):
        body = draw(json_values | deep() | st.tuples(st.lists(json_values), st.dictionaries(st.text(), json_values),
                                                      json_values))
        env["body"] = base64.b64encode(json.dumps(body).encode()).decode()
    return json.dumps(env).encode()


TIMES = ["2000-01-01T00:00:00+00:00", "2999-01-01T00:00:00+00:00", "2027-01-15T08:00:00", "2027-01-15", None,
         "tomorrow", "2027-13-45T99:00:00"]


@st.composite
def timed(draw: Any) -> bytes:
    """A plain or Stalwart message with Celery's eta/expires in the past, the future or garbage."""
    env = template(plain=draw(st.booleans()))
    env["headers"]["eta"] = draw(st.sampled_from(TIMES))
    env["headers"]["expires"] = draw(st.sampled_from(TIMES))
    return json.dumps(env).encode()


items = (st.binary(max_size=200) | timed() | json_values.map(lambda v: json.dumps(v).encode()) | envelopes()
         | deep().map(lambda v: json.dumps(v).encode()) | st.just(b"") | st.just(json.dumps(template(True)).encode()))


@pytest.fixture(scope="module")
def app() -> Stalwart:
    application = Stalwart("fuzz", settings=Settings())

    @application.task(name=TASK)
    def record(key: str) -> str:
        return key

    return application


@pytest.fixture(scope="module")
def channel() -> Iterator[Any]:
    with Connection("memory://") as conn:
        yield conn.default_channel


def consume(envelope: dict[str, Any], app: Stalwart, channel: Any) -> str:
    """What the worker's main process does with a delivered envelope: 'run' or 'dead:<reason>'.

    Follows Stalwart's consumer (stalwart.broker.consumer) and Celery's request; raising here is
    what killed workers before the boundary existed.
    """
    message = channel.Message(envelope, channel=channel)
    message.accept = ACCEPT
    headers = message.headers if isinstance(message.headers, dict) else {}
    if message.errors:
        verdict = ("malformed", "undecodable")
    elif message.content_type == decode.MALFORMED_CONTENT_TYPE:
        verdict = (quarantine_reason(message), str(headers.get(decode.MALFORMED_HEADER)))
    elif not isinstance(headers.get("task"), str):
        verdict = ("malformed", "not a task")
    elif headers["task"] != TASK:
        verdict = ("unregistered", "no such task")
    else:
        verdict = body_problem(message, ACCEPT) or ("run", "")
    if verdict[0] != "run":
        json.loads(entry_for_message(message, *verdict).to_json())
        return f"dead:{verdict[0]}"
    request = Request(message, app=app, task=app.tasks[TASK], hostname="h", body=message.body,
                      headers=message.headers, decoded=False, utc=True)
    assert request.eta is None
    assert request.expires is None
    pickle.dumps((request.request_dict, message.body))  # what the pool sends to its child
    return "run"


def check(item: bytes, verdict: decode.Verdict, app: Stalwart, channel: Any, now_ms: int = NOW_MS) -> str:
    if verdict.problem is not None:
        assert verdict.envelope["content-type"] == decode.MALFORMED_CONTENT_TYPE
        assert base64.b64decode(verdict.envelope["body"]) == item  # the raw item is kept
    if verdict.due_ms is not None:
        assert verdict.problem is None
        assert verdict.due_ms > now_ms
        json.dumps(verdict.envelope)
        return "scheduled"
    return consume(verdict.envelope, app, channel)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(item=items)
def test_every_item_is_run_dead_lettered_or_scheduled(item: bytes, app: Stalwart, channel: Any) -> None:
    verdict = decode.inspect(item, tag=_tag(item), queue="celery", now_ms=NOW_MS)
    assert check(item, verdict, app, channel) in ("run", "scheduled", "dead:malformed", "dead:unregistered",
                                                  "dead:refused_content")


def _tag(item: bytes) -> str:
    """The tag the fetch script would have recorded the item under (any, when it has none)."""
    try:
        tag = json.loads(item)["properties"]["delivery_tag"]
    except Exception:
        return "tag"
    return tag if isinstance(tag, str) else "tag"


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(item=items)
def test_the_fetch_script_records_or_quarantines_every_item_byte_for_byte(
    item: bytes, r: redis.Redis, app: Stalwart, channel: Any
) -> None:
    r.delete("celery", KEYS.unacked, KEYS.index, KEYS.fetches, KEYS.quarantine)
    r.lpush("celery", item)
    found = broker_store.fetch(r, KEYS, [("celery", "celery")], LIMITS)
    assert r.llen("celery") == 0
    if isinstance(found, Quarantined):
        assert found.item == item
        [(_, fields)] = r.xrange(KEYS.quarantine)
        assert fields[b"item"] == item
        envelope = decode.quarantine(found.item, "celery", found.detail, "q-tag", reason=found.reason,
                                     source=found.source, context=decode.item_context(found.item))
        assert consume(envelope, app, channel) == "dead:malformed"
        return
    assert isinstance(found, Taken)
    record = r.hget(KEYS.unacked, found.tag)
    assert decode.restore_target(record) == (item, "", "celery")  # a restore puts back the exact bytes
    check(item, decode.inspect(item, tag=found.tag, queue="celery", now_ms=found.now_ms), app, channel, found.now_ms)


@pytest.mark.parametrize("raw", [b"", b"\x00", b"[" * 3000 + b"]" * 3000, b"{" * 200, b'"\\ud800"', b"NaN",
                                 b"1e400", b"[1,]", b"\xff\xfe"])
def test_known_killers_are_quarantined_not_raised(raw: bytes) -> None:
    verdict = decode.inspect(raw, tag="t", queue="celery", now_ms=NOW_MS)
    assert verdict.problem is not None
    assert base64.b64decode(verdict.envelope["body"]) == raw


@pytest.mark.parametrize(("path", "value", "problem"), [
    (("headers", "timelimit"), 5, "header 'timelimit' must be [soft, hard] seconds"),
    (("headers", "retries"), "3", "header 'retries' must be an integer"),
    (("headers", "task"), ["x"], "header 'task' must be a string"),
    (("headers", "called_directly"), True, "header 'called_directly' would shadow"),
    (("headers", "eta"), "next tuesday", "is not an ISO 8601 time"),
    (("headers", HEADER, "gen"), 1e300, "stalwart header field 'gen' must be an integer"),
    (("properties", "body_encoding"), "rot13", "property 'body_encoding' must be"),
    (("properties", "delivery_info"), [], "property 'delivery_info' must be an object"),
    (("body",), 42, "'body' must be a string"),
    (("body",), "abc", "'body' is not base64"),
    (("content-type",), decode.MALFORMED_CONTENT_TYPE, "is Stalwart's own"),
])
def test_a_bad_field_is_named_in_the_reason(path: tuple[str, ...], value: Any, problem: str) -> None:
    env = template(plain=False)
    _set(env, path, value, delete=False)
    verdict = decode.inspect(json.dumps(env).encode(), tag=env["properties"]["delivery_tag"], queue="celery",
                             now_ms=NOW_MS)
    assert verdict.problem is not None
    assert problem in verdict.problem
    assert verdict.envelope["headers"][decode.CONTEXT_HEADERS["id"]] == env["headers"]["id"]


def test_a_plain_message_is_normalised_deterministically() -> None:
    env = template(plain=True)
    env["headers"]["expires"] = "2027-01-15T08:00:00+00:00"
    item, tag = json.dumps(env).encode(), env["properties"]["delivery_tag"]
    first = decode.inspect(item, tag=tag, queue="celery", now_ms=NOW_MS)
    again = decode.inspect(item, tag=tag, queue="celery", now_ms=NOW_MS)
    assert first == again
    assert first.changed
    meta = first.envelope["headers"][HEADER]
    assert meta["sent"] == NOW_MS
    assert meta["deadline"] == decode.parse_time_ms("2027-01-15T08:00:00+00:00")
    assert meta["msg"] == f"celery:{tag}"


def test_a_due_time_after_the_deadline_schedules_at_the_deadline() -> None:
    env = template(plain=True)
    env["headers"]["eta"] = "2999-01-01T00:00:00+00:00"
    env["headers"]["expires"] = "2998-01-01T00:00:00+00:00"
    verdict = decode.inspect(json.dumps(env).encode(), tag=env["properties"]["delivery_tag"], queue="celery",
                             now_ms=NOW_MS)
    assert verdict.due_ms == decode.parse_time_ms("2998-01-01T00:00:00+00:00")


def test_a_stalwart_message_passes_unchanged() -> None:
    env = template(plain=False)
    verdict = decode.inspect(json.dumps(env).encode(), tag=env["properties"]["delivery_tag"], queue="celery",
                             now_ms=NOW_MS)
    assert verdict == decode.Verdict(env)
