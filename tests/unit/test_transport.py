"""The transport's guard: any list item becomes a valid kombu envelope; delays go to a zset."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
import redis
from kombu import Connection

from stalwart.broker.transport import MALFORMED_CONTENT_TYPE, MALFORMED_HEADER, decode_envelope
from stalwart.job.header import DELAY_HEADER
from stalwart.store.keys import Keys


def envelope(**overrides: Any) -> dict[str, Any]:
    """A kombu envelope as kombu's Redis transport writes it."""
    message: dict[str, Any] = {
        "body": base64.b64encode(b'[[1], {}, {}]').decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"task": "tests.integration.jobs.record", "id": str(uuid.uuid4()), "lang": "py"},
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": "", "routing_key": "celery"},
            "priority": 0,
        },
    }
    message.update(overrides)
    return message


def assert_quarantined(item: bytes, decoded: dict[str, Any], problem: str) -> None:
    assert decoded["content-type"] == MALFORMED_CONTENT_TYPE
    assert problem in decoded["headers"][MALFORMED_HEADER]
    assert base64.b64decode(decoded["body"]) == item  # the raw bytes are kept, not dropped
    props = decoded["properties"]
    assert props["body_encoding"] == "base64"
    assert props["delivery_tag"]
    assert props["delivery_info"]["routing_key"] == "orders"


def test_valid_envelope_passes_through_unchanged() -> None:
    message = envelope()
    assert decode_envelope(json.dumps(message).encode(), "celery") == message
    assert decode_envelope(json.dumps(message), "celery") == message


def test_valid_envelope_with_null_headers_passes() -> None:
    message = envelope(headers=None)
    assert decode_envelope(json.dumps(message).encode(), "celery") == message


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        (b"\x80\x04\x95 pickle bytes", "not a JSON envelope"),
        (b"hello world", "not a JSON envelope"),
        (b"", "not a JSON envelope"),
        (b'{"body": ', "not a JSON envelope"),
        (b"[1, 2, 3]", "JSON list"),
        (b'"just a string"', "JSON str"),
        (b"42", "JSON int"),
        (b"null", "JSON NoneType"),
        (b'{"task": "x", "args": []}', "lacks body, properties, headers, content-type"),
    ],
)
def test_garbage_is_quarantined_with_its_raw_bytes(item: bytes, problem: str) -> None:
    assert_quarantined(item, decode_envelope(item, "orders"), problem)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"properties": {"body_encoding": "base64"}}, "delivery_tag"),
        ({"properties": "nope"}, "delivery_tag"),
        ({"headers": ["task", "x"]}, "headers are not an object"),
        ({"headers": "x"}, "headers are not an object"),
    ],
)
def test_bad_envelope_shapes_are_quarantined(changes: dict[str, Any], problem: str) -> None:
    item = json.dumps(envelope(**changes)).encode()
    assert_quarantined(item, decode_envelope(item, "orders"), problem)


def test_envelope_missing_one_field_names_it() -> None:
    message = envelope()
    del message["content-type"]
    item = json.dumps(message).encode()
    assert_quarantined(item, decode_envelope(item, "orders"), "lacks content-type")


def test_non_utf8_bytes_are_quarantined() -> None:
    item = b'\xff\xfe{"body": 1}'
    assert_quarantined(item, decode_envelope(item, "orders"), "not a JSON envelope")
    partial = b'{"body": "\xff\xfe"}'
    assert_quarantined(partial, decode_envelope(partial, "orders"), "lacks properties")


def test_problem_text_is_bounded() -> None:
    item = json.dumps({"x" * 2000: 1}).encode()
    decoded = decode_envelope(item, "orders")
    assert len(decoded["headers"][MALFORMED_HEADER]) <= 500


# -- publishing through the transport on a real redis-server -----------------------------------


@pytest.fixture
def connection(redis_url: str) -> Any:
    with Connection(redis_url, transport="stalwart.broker.transport:Transport",
                    transport_options={"stalwart_prefix": "stalwart"}) as conn:
        yield conn


def test_delayed_message_goes_to_the_delayed_set(connection: Any, r: redis.Redis) -> None:
    with connection.Producer() as producer:
        producer.publish({"n": 1}, routing_key="q1", headers={DELAY_HEADER: 60_000, "x": 1},
                         declare=[connection.SimpleQueue("q1").queue])
    keys = Keys("stalwart")
    assert r.llen("q1") == 0
    entries = r.zrange(keys.delayed("q1"), 0, -1, withscores=True)
    assert len(entries) == 1
    payload, due = entries[0]
    message = json.loads(payload)
    assert message["headers"] == {"x": 1}  # the delay header is consumed, not forwarded
    seconds, micros = r.time()
    now_ms = seconds * 1000 + micros // 1000
    assert 55_000 < due - now_ms <= 60_000
    assert r.smembers(keys.registry("delayed")) == {b"q1"}


@pytest.mark.parametrize("delay", [0, -5, None])
def test_message_without_a_positive_delay_goes_straight_to_the_list(
    connection: Any, r: redis.Redis, delay: int | None
) -> None:
    headers = {} if delay is None else {DELAY_HEADER: delay}
    with connection.Producer() as producer:
        producer.publish({"n": 1}, routing_key="q2", headers=headers,
                         declare=[connection.SimpleQueue("q2").queue])
    assert r.llen("q2") == 1
    assert r.zcard(Keys("stalwart").delayed("q2")) == 0


def test_reader_survives_garbage_at_the_head_of_the_queue(connection: Any, r: redis.Redis) -> None:
    queue = connection.SimpleQueue("q3")
    r.lpush("q3", b"\x00 not json")
    queue.put({"n": 2})
    first = queue.get(timeout=5)
    assert first.content_type == MALFORMED_CONTENT_TYPE
    assert first.body == b"\x00 not json"
    first.ack()
    second = queue.get(timeout=5)
    assert second.payload == {"n": 2}
    second.ack()
    queue.close()
